"""Deciding labels from votes: one algorithm per synset (`decide`), and `run_consensus`, which writes them."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from sqlalchemy import Connection
from sqlalchemy.orm import Session

from curation.consensus.base import ACCEPT, INSUFFICIENT, REJECT, UNDECIDED, YES
from curation.consensus.loading import (
    SynsetVotes,
    WorkerTable,
    _settings,
    load_synset,
    machine_label_ids,
    synset_wnids,
)
from db.tx import retry_busy, write_session

if TYPE_CHECKING:
    from curation.consensus.crowd import CrowdTally
    from curation.consensus.dynamic import DynamicConsensus
    from imnet.core.settings import Settings

# Votes already asked for, per candidate of one synset (the crowd loop's open HITs:
# `mturk.verify.pending_asks`); consensus itself knows nothing of HITs.
AskedVotes = Callable[[Session, str], Mapping[int, int]]

log = logging.getLogger(__name__)

ALGORITHMS = ("robust", "dynamic", "worker-aware", "majority", "dawid-skene")


@dataclass
class SynsetResult:
    wnid: str
    candidate_ids: list[int]
    yes: np.ndarray
    no: np.ndarray
    p_yes: np.ndarray
    decisions: np.ndarray
    needs: np.ndarray  # more votes wanted now (before votes already asked for)
    extra: dict[str, Any] = field(default_factory=dict)
    model: Any = None  # the fitted model (robust: routing and crowd figures read it)


def dynamic_model(settings: Settings | None = None) -> DynamicConsensus:
    """The DynamicConsensus the settings describe (also used by `imnet consensus table`)."""
    from curation.consensus.dynamic import DynamicConsensus

    s = _settings(settings)
    return DynamicConsensus(
        threshold=s.consensus_threshold,
        calibration_votes=s.consensus_initial_votes,
        max_votes=s.consensus_max_votes,
        smoothing=s.consensus_smoothing,
        batch=s.consensus_batch_votes,
        reject_below=s.consensus_reject_below,
    )


def robust_model(settings: Settings | None = None) -> Any:
    """The RobustConsensus the settings describe: set-level precision and recall targets."""
    from curation.consensus.robust import RobustConsensus

    s = _settings(settings)
    return RobustConsensus(
        target_precision=s.consensus_target_precision,
        target_recall=s.consensus_target_recall,
        max_votes=s.consensus_robust_max_votes,
        batch=s.consensus_batch_votes,
        dependence_prior=s.consensus_dependence_prior,
    )


def _robust(data: SynsetVotes, votes: Any, s: Settings) -> tuple[Any, dict[str, Any]]:
    from curation.consensus.robust import GoldAnswers

    gold = (
        GoldAnswers(*data.gold_rows)
        if data.gold_rows is not None
        else GoldAnswers.from_counts(data.gold_seen, data.gold_correct)
    )
    m = robust_model(s).fit(
        votes, gold, known=data.known, eligible=data.eligible, groups=data.groups
    )
    extra = {
        "prior": round(float(m.prevalence_), 4),
        "insufficient": int(m.insufficient_.sum()),
        "crowd_needed": m.crowd_needed_,
        "eligible_workers": data.crowd,
        "dependent_groups": len(m.groups_),
        "uninformative_workers": int(m.uninformative_.sum()),
    }
    return m, extra


def dynamic_stalls(data: SynsetVotes, settings: Settings) -> bool:
    """Dynamic consensus calibrates on items with consensus_initial_votes votes each: a crowd
    smaller than that can never give them, and every item would wait for ever."""
    return data.crowd is not None and data.crowd < settings.consensus_initial_votes


def cost_rule(settings: Settings) -> dict[str, float | None]:
    """The worker-aware stopping costs from settings: cost-based stopping when both are > 0,
    else None for both (the threshold / reject-below / cap rule)."""
    fp, fn = float(settings.consensus_fp_cost), float(settings.consensus_fn_cost)
    if fp > 0 and fn > 0:
        return {"fp_cost": fp, "fn_cost": fn}
    return {"fp_cost": None, "fn_cost": None}


def decide(data: SynsetVotes, algorithm: str, settings: Settings | None = None) -> SynsetResult:
    """Run one algorithm on one synset's votes."""
    s = _settings(settings)
    votes = data.counted_votes(algorithm)
    counts = votes.counts()
    yes, no = counts[:, YES], counts[:, 0]
    total = yes + no
    thr = s.consensus_threshold
    extra: dict[str, Any] = {}
    m: Any  # the fitted model: each algorithm has its own class
    if algorithm == "dynamic" and dynamic_stalls(data, s):
        # ImageNet's rule cannot calibrate with this crowd: decide by the worker-aware rule.
        res = decide(data, "worker-aware", s)
        res.extra["fallback"] = (
            f"dynamic: crowd of {data.crowd} < {s.consensus_initial_votes} calibration votes; "
            "worker-aware rule used"
        )
        return res
    if algorithm == "robust":
        m, extra = _robust(data, votes, s)
        p, dec, needs = m.p_yes_, m.decisions_, m.needs_
    elif algorithm == "dynamic":
        m = dynamic_model(s).fit(votes, calibration=data.calibration, known=data.known)
        p, dec, needs = m.p_yes_, m.decisions_, m.needs_
        extra = {
            "calibration_items": m.n_calibration_,
            "calibrating": m.calibrating_,
            "prior": round(m.prior_, 4),
            "p_yes_given_yes": round(m.sens_, 4),
            "p_yes_given_no": round(m.fpr_, 4),
        }
    elif algorithm == "worker-aware":
        from curation.consensus.worker_aware import WorkerAwareConsensus

        costs = cost_rule(s)
        m = WorkerAwareConsensus(
            threshold=thr,
            max_votes=s.consensus_wa_max_votes,
            reject_below=s.consensus_wa_reject_below,
            batch=s.consensus_batch_votes,
            fp_cost=costs["fp_cost"],
            fn_cost=costs["fn_cost"],
        ).fit(votes, data.gold_seen, data.gold_correct, known=data.known)
        p, dec, needs = m.p_yes_, m.decisions_, m.needs_
        extra = {
            "prior": round(m.prior_, 4),
            "ambiguous_share": round(m.hard_share_, 4),
            "ambiguous_shrink": round(m.hard_shrink_, 4),
            "stopping": "threshold" if m.fp_cost is None else f"cost {m.fp_cost:g}/{m.fn_cost:g}",
        }
    elif algorithm in ("majority", "dawid-skene"):
        if algorithm == "majority":
            from curation.consensus.majority import MajorityVote

            m = MajorityVote().fit(votes)
            p = m.probas_[:, YES].copy()
            dec = np.where(m.labels_ == YES, ACCEPT, REJECT).astype(object)
        else:
            from curation.consensus.base import threshold_decisions
            from curation.consensus.dawid_skene import DawidSkene

            m = DawidSkene().fit(votes)
            p = m.probas_[:, YES].copy()
            dec = threshold_decisions(p, thr, total > 0)
        # Fixed budget: every item gets consensus_fixed_votes votes, then is decided.
        fixed = s.consensus_fixed_votes
        needs = np.maximum(0, fixed - total)
        dec[total < fixed] = UNDECIDED
        p[data.known >= 0] = data.known[data.known >= 0]
        dec[data.known == 1] = ACCEPT
        dec[data.known == 0] = REJECT
        needs[data.known >= 0] = 0
    else:
        raise ValueError(
            f"unknown consensus algorithm {algorithm!r}; one of {', '.join(ALGORITHMS)}"
        )
    res = SynsetResult(data.wnid, data.candidate_ids, yes, no, p, dec, needs, extra, m)
    if algorithm != "robust":  # robust stops by the crowd itself
        _cap_to_crowd(res, data)
    return res


def _write_tally(session: Session, tally: CrowdTally) -> None:
    bind = session.get_bind()
    with write_session(bind.engine if isinstance(bind, Connection) else bind) as ws:
        tally.write(ws)
        ws.commit()


def _cap_to_crowd(res: SynsetResult, data: SynsetVotes) -> None:
    """No item waits for votes the crowd cannot give: an undecided item nobody is left to vote
    on is flagged insufficient_crowd, the rest ask for at most what the crowd has left."""
    if data.eligible is None:
        return
    res.needs = np.minimum(res.needs, data.eligible)
    stuck = (res.decisions == UNDECIDED) & (data.eligible == 0) & (data.known < 0)
    res.decisions = np.where(stuck, INSUFFICIENT, res.decisions).astype(object)
    res.extra["insufficient"] = int(stuck.sum())


def empty_totals() -> dict[str, Any]:
    """A consensus report's totals before any synset: decisions, votes wanted, votes, overrides."""
    return {
        ACCEPT: 0,
        REJECT: 0,
        UNDECIDED: 0,
        INSUFFICIENT: 0,
        "needs_votes": 0,
        "votes": 0,
        "manual": 0,
    }


def run_consensus(
    session: Session,
    algorithm: str = "dynamic",
    wnids: list[str] | None = None,
    settings: Settings | None = None,
    shard: tuple[int, int] | None = None,
    asked: AskedVotes | None = None,
    pooled: list[set[str]] | None = None,
) -> dict[str, Any]:
    """Update `label` rows from the votes; hand overrides are never touched. Commits per synset.

    One synset at a time (memory: the largest synset): read, commit, decide, upsert its labels,
    commit. `shard` (i, n) takes only the synsets of hash partition i of n, so n processes on
    any machines sharing the database split the work (`run_parallel`); each synset's labels
    depend on its own votes and the worker table only, so any split gives the same labels.
    `needs_votes` counts the items that want more votes, less those `asked(session, wnid)` says
    are already asked for (without it, every item that wants more).

    What the run learns about the crowd (robust: routing verdicts, dependent groups; every
    algorithm: insufficient items, the crowd needed, a dynamic fallback) is stored by
    `CrowdTally.write` at the end.

    Returns {"algorithm", "totals": {accept, reject, undecided, insufficient_crowd,
    needs_votes, votes, crowd_needed}, "per_wnid": {wnid: {... same counts ..., model details}}}.
    """
    from curation.consensus.crowd import CrowdTally
    from curation.consensus.labels import write_labels

    s = _settings(settings)
    if algorithm not in ALGORITHMS:
        raise ValueError(
            f"unknown consensus algorithm {algorithm!r}; one of {', '.join(ALGORITHMS)}"
        )
    report: dict[str, Any] = {"algorithm": algorithm, "per_wnid": {}}
    totals = empty_totals()
    workers = WorkerTable.read(session, s)
    tally = CrowdTally(
        min_gold_seen=s.mturk_min_gold_seen, complete=wnids is None and shard is None
    )
    if algorithm == "robust":
        from curation.consensus.crowd import stored_groups
        from curation.consensus.pooled import pooled_groups

        # Copiers who co-vote too little in any one synset are seen across them (pooled.py).
        # `pooled`: the pass's groups, found once by the caller of several shards.
        tally.pooled = pooled if pooled is not None else pooled_groups(session, s)
        # A complete run tests the crowd afresh: groups stored by earlier runs are not read
        # back (one found on early, thin evidence would otherwise stay for good). A partial
        # run starts each synset from the groups stored for the synsets it does not decide,
        # and replaces the rows of those it does (crowd.py).
        if not (tally.complete and s.consensus_dependence_votes > 0):
            tally.stored = stored_groups(session)
    for wnid in synset_wnids(session, wnids, shard):
        if algorithm == "robust":
            # Groups found in synsets decided before this one count here too (a cartel that
            # spreads its votes thin is seen in full only across synsets).
            workers.group = {k: min(g) for g in tally.groups_for(wnid) for k in g}
        tally.decided(wnid, algorithm)
        data = load_synset(session, wnid, s, workers)
        if data is None:
            continue
        existing = machine_label_ids(session, wnid)
        pending = asked(session, wnid) if asked is not None else {}
        # End the read transaction before writing: on SQLite a write that follows reads in the
        # same transaction fails at once when another process wrote meanwhile.
        session.commit()
        res = decide(data, algorithm, s)
        tally.add(data, res, algorithm)
        per = write_labels(
            session,
            wnid,
            algorithm,
            res.candidate_ids,
            res.yes,
            res.no,
            res.p_yes,
            res.decisions,
            data.manual,
            existing,
        )
        session.commit()
        more = res.needs - np.array([pending.get(c, 0) for c in res.candidate_ids], np.int64)
        needing = int((more > 0).sum())
        n_votes = len(data.counted_votes(algorithm))
        report["per_wnid"][wnid] = {
            **per,
            "items": len(res.candidate_ids),
            "needs_votes": needing,
            "votes": n_votes,
            **res.extra,
        }
        for k in per:
            totals[k] += per[k]
        totals["needs_votes"] += needing
        totals["votes"] += n_votes
    # Its own write transaction (SQLite: BEGIN IMMEDIATE, retried while busy): a read-then-write
    # session would fail at once on SQLite when another process wrote since its snapshot.
    session.commit()
    retry_busy(lambda: _write_tally(session, tally))
    needed = [r["crowd_needed"] for r in tally.synsets.values() if r["crowd_needed"]]
    totals["crowd_needed"] = max(needed) if needed else None
    report["totals"] = totals
    if tally.fallbacks:
        # One line per run, not per synset: the same crowd stalls every synset alike.
        log.warning(
            "dynamic consensus cannot calibrate with %s workers (wants %d votes per calibration "
            "item): worker-aware rule used for %d synsets",
            tally.synsets[tally.fallbacks[0]]["eligible_workers"],
            s.consensus_initial_votes,
            len(tally.fallbacks),
        )
    log.info("consensus %s: %s", algorithm, totals)
    return report
