"""The demo's human-verification loop: publish HITs, simulated workers, collect, consensus, score."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from imnet.core.settings import Settings

if TYPE_CHECKING:
    from imnet.core.app import App
    from imnet.core.webthread import WebThread
    from imnet.demo.stages import Ctx

log = logging.getLogger("imnet.demo")

MAX_VOTE_ROUNDS = 20
STALL_ROUNDS = 3
N_WORKERS = 20


def start_mturk(settings: Settings, workdir: Path) -> tuple[WebThread, App]:
    """The self-hosted MTurk server in this process, on the port the last run used if it is free.

    Returns (server handle, the App it serves); stop the handle, then close the App.
    """
    from imnet.core.app import App
    from mturk.server import start_in_thread

    port_file = workdir / "mturk_port"
    app = App(settings)
    wanted = int(port_file.read_text()) if port_file.exists() else 0
    try:
        handle = start_in_thread(app, "127.0.0.1", wanted, mount_review=False)
    except RuntimeError:
        if not wanted:
            app.close()
            raise
        handle = start_in_thread(app, "127.0.0.1", 0, mount_review=False)
    port_file.write_text(str(handle.port))
    return handle, app


def stage_verify(ctx: Ctx) -> dict[str, Any]:
    """Rounds of publish -> simulated workers -> collect -> consensus until no item needs votes."""
    from decimal import Decimal

    from curation.consensus.decide import run_consensus
    from imnet.demo.crowd import run_crowd
    from mturk.collect import collect
    from mturk.gold import promote_gold
    from mturk.publish import publish
    from mturk.verify import needs_from_consensus, open_items, pending_asks

    app, s = ctx.app, ctx.settings
    quiet = log.info
    rounds: list[dict[str, Any]] = []
    cost = Decimal(0)
    workers: dict[str, int] = {}
    stopped = "round_cap"
    history: list[frozenset[int]] = []
    for rnd in range(MAX_VOTE_ROUNDS):
        needs = needs_from_consensus(app, ctx.synsets)
        with app.Session() as sess:
            busy = open_items(sess)
        if not needs and not busy:
            stopped = "nothing_needs_votes"
            break
        history.append(frozenset(needs))
        if len(history) > STALL_ROUNDS and len(set(history[-STALL_ROUNDS - 1 :])) == 1:
            # The same few items keep asking for votes round after round (their posterior
            # hovers at the threshold): more rounds only add cost; they stay undecided.
            stopped = f"same_{len(needs)}_items_for_{STALL_ROUNDS}_rounds"
            break
        t0 = time.monotonic()
        pub = publish(app, ctx.synsets, yes=True, needs=needs, out=quiet)
        t1 = time.monotonic()
        ctx.out(
            f"  round {rnd + 1}: {len(needs)} items need votes; published "
            f"{pub.get('created', 0)} HITs; simulated workers at work"
        )
        cost += Decimal(pub["cost"]["total"]) if pub.get("created") else Decimal(0)
        # Bots taking turns (not threads), so that the same seed gives the same votes in any
        # workdir; the round number varies their choices from one round to the next.
        sim = run_crowd(
            app, ctx.mturk_url, ctx.truth, n_workers=N_WORKERS, seed=ctx.seed * 1000 + rnd
        )
        t2 = time.monotonic()
        for kind, n in sim["kinds"].items():
            workers[kind] = max(workers.get(kind, 0), n)
        col = collect(app, more=False, out=quiet)
        with app.Session() as sess:
            cons = run_consensus(
                sess, s.consensus_algorithm, ctx.synsets, settings=s, asked=pending_asks
            )
        promoted = 0
        if rnd >= 1:
            # Gold that keeps coming (issue 16): after the first rounds, confident labels and
            # overrides become gold for the next round's HITs, as `imnet mturk gold` does.
            with app.Session() as sess:
                promoted = promote_gold(sess, s, list(ctx.synsets))["totals"].get("added", 0)
        t3 = time.monotonic()
        rounds.append(
            {
                "needed": len(needs),
                "hits_created": pub.get("created", 0),
                "cost": pub["cost"]["total"] if pub.get("created") else "0.00",
                "submitted": sim["submitted"],
                "sim_errors": sim["errors"][:3],
                "collected": col["assignments_new"],
                "approved": col.get("approved", 0),
                "rejected": col.get("rejected", 0),
                "excluded_workers": len(col.get("excluded_workers", [])),
                "gold_promoted": promoted,
                "undecided": cons["totals"]["undecided"],
                "still_needing": cons["totals"]["needs_votes"],
                "seconds": {
                    "publish": round(t1 - t0, 2),
                    "workers": round(t2 - t1, 2),
                    "collect+consensus": round(t3 - t2, 2),
                },
            }
        )
        if sim["submitted"] == 0 and not pub.get("created"):
            stopped = "no_progress"  # nothing was done this round: more would change nothing
            break
    totals = _mturk_totals(app)
    return {
        "rounds": len(rounds),
        "stopped": stopped,
        "per_round": rounds,
        "cost_estimate": f"${cost:.2f}",
        "reward_per_assignment": f"${s.mturk_reward}",
        "workers": workers,
        **totals,
        "still_needing_votes": len(needs_from_consensus(app, ctx.synsets)),
    }


def _mturk_totals(app: App) -> dict[str, Any]:
    """Counts over every run so far, and what all the HITs cost with MTurk's fees."""
    from decimal import Decimal

    from sqlalchemy import func, select

    from db.models import Assignment, Hit, Vote, Worker
    from mturk.fees import fee_rate

    with app.Session() as s:
        votes = s.scalar(select(func.count()).select_from(Vote)) or 0
        items = s.scalar(select(func.count(func.distinct(Vote.candidate_id)))) or 0
        total = Decimal(0)
        for reward, n in s.execute(select(Hit.reward, Hit.max_assignments)):
            total += Decimal(reward) * n * (1 + fee_rate(n))
        by_status = {
            k: n
            for k, n in s.execute(
                select(Assignment.status, func.count()).group_by(Assignment.status)
            )
        }
        return {
            "hits": s.scalar(select(func.count()).select_from(Hit)) or 0,
            "assignments": by_status,
            "cost_all_runs": f"${total:.2f}",
            "votes": votes,
            "votes_per_item": round(votes / items, 2) if items else 0.0,
            "workers_blocked": s.scalar(
                select(func.count()).select_from(Worker).where(Worker.blocked)
            )
            or 0,
        }


def stage_consensus(ctx: Ctx) -> dict[str, Any]:
    from curation.consensus.decide import run_consensus
    from mturk.verify import pending_asks

    with ctx.app.Session() as s:
        rep = run_consensus(
            s, ctx.settings.consensus_algorithm, settings=ctx.settings, asked=pending_asks
        )
    return {"totals": rep["totals"], **score(ctx)}


def score(ctx: Ctx) -> dict[str, Any]:
    """Precision and recall of the labels against the fixture's ground truth.

    Scored over crowd-decided labels (the seeded hand labels are excluded). Recall's denominator
    is every eligible candidate (fetched, not rejected by quality, not a near duplicate) whose
    image truly shows its synset; eligible items never decided count as misses.
    """
    from sqlalchemy import select

    from curation.consensus.loading import eligible_candidates
    from db.models import Candidate, Label

    with ctx.app.Session() as s:
        elig = eligible_candidates(s, ctx.synsets)
        ids = [c for cids in elig.values() for c in cids]
        shas = {
            cid: sha
            for cid, sha in s.execute(
                select(Candidate.id, Candidate.image_sha256).where(Candidate.id.in_(ids))
            )
        }
        labels = {lab.candidate_id: lab for lab in s.scalars(select(Label))}
    tp = fp = fn = tn = undecided = manual = 0
    per: dict[str, dict[str, int]] = {}
    for wnid, cids in elig.items():
        p = per.setdefault(wnid, {"tp": 0, "fp": 0, "fn": 0})
        for cid in cids:
            lab = labels.get(cid)
            if lab is not None and lab.overridden:
                manual += 1
                continue
            true = ctx.truth.get(shas.get(cid) or "") == wnid
            dec = lab.decision if lab is not None else "undecided"
            if dec == "undecided":
                undecided += 1
            if dec == "accept":
                tp += true
                fp += not true
                p["tp" if true else "fp"] += 1
            else:
                fn += true
                tn += not true
                p["fn"] += true
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    return {
        "precision": round(precision, 4),
        "recall": round(recall, 4),
        "true_positives": tp,
        "false_positives": fp,
        "false_negatives": fn,
        "true_negatives": tn,
        "undecided": undecided,
        "manual_labels_excluded": manual,
        "eligible": len(ids),
        "per_wnid": per,
    }
