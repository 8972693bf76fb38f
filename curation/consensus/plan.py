"""The decision loop: read votes from the database, decide labels, and say which items need more votes."""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from curation.consensus.base import ACCEPT, REJECT, UNDECIDED, YES, Votes
from db.models import Assignment, Candidate, Hit, HitItem, Image, Label, Vote, Worker

log = logging.getLogger(__name__)

ALGORITHMS = ("dynamic", "worker-aware", "majority", "dawid-skene")
# Hit statuses (MTurk's) under which more assignments can still arrive.
OPEN_HIT_STATUSES = ("Assignable", "Unassignable")
# Assignment statuses whose votes do not count.
DISCARDED_ASSIGNMENTS = ("Rejected", "Invalid")


@dataclass
class SynsetVotes:
    """Everything the algorithms need about one synset, read from the database."""

    wnid: str
    candidate_ids: list[int]
    votes: Votes
    calibration: np.ndarray  # bool per item
    known: np.ndarray  # -1 unknown, 0/1 hand label (label.overridden)
    gold_seen: np.ndarray  # per worker code
    gold_correct: np.ndarray
    pending: np.ndarray  # votes already asked for (open HITs) per item
    # Per worker code: blocked and no better than consensus_min_voter_gold on gold (or without
    # gold). The gold bar that blocks a worker is about the price of evidence (a 0.7 worker's
    # vote is worth less than a 0.9 worker's at the same pay); distrust is about chance-level
    # answers. Only the worker-aware model, which weighs each vote by its worker's gold-seeded
    # coins, counts every vote (see `counted_votes`).
    blocked: np.ndarray | None = None

    def counted_votes(self, algorithm: str) -> Votes:
        """The votes `algorithm` reads: all of them for worker-aware, else none from distrusted
        blocked workers (a worker-agnostic model would take a spammer's votes at face value)."""
        if algorithm == "worker-aware" or self.blocked is None or not self.blocked.any():
            return self.votes
        return self.votes.subset(~self.blocked[self.votes.worker])


@dataclass
class SynsetResult:
    wnid: str
    candidate_ids: list[int]
    yes: np.ndarray
    no: np.ndarray
    p_yes: np.ndarray
    decisions: np.ndarray
    needs: np.ndarray  # more votes wanted now, before subtracting pending
    extra: dict[str, Any] = field(default_factory=dict)


def _settings(settings: Any) -> Any:
    if settings is None:
        from imnet.settings import Settings

        return Settings()
    return settings


def eligible_candidates(session: Session, wnids: list[str] | None) -> dict[str, list[int]]:
    """wnid -> eligible candidate ids (fetched, not rejected by quality, not a near duplicate)."""
    q = (
        select(Candidate.id, Candidate.wnid)
        .join(Image, Image.sha256 == Candidate.image_sha256)
        .where(
            Candidate.status == "fetched",
            or_(Image.quality.is_(None), Image.quality != "rejected"),
            Image.near_dup_of.is_(None),
        )
        .order_by(Candidate.wnid, Candidate.id)
    )
    if wnids is not None:
        q = q.where(Candidate.wnid.in_(list(wnids)))
    out: dict[str, list[int]] = defaultdict(list)
    for cid, wnid in session.execute(q):
        out[wnid].append(cid)
    return dict(out)


def load_votes(
    session: Session, wnids: list[str] | None, settings: Any = None
) -> list[SynsetVotes]:
    """Read eligible items, their votes (not from rejected or invalid assignments), hand labels,
    gold stats, blocked workers and open asks per synset."""
    s = _settings(settings)
    items = eligible_candidates(session, wnids)
    if not items:
        return []
    wanted = list(items)
    vq = (
        select(Vote.candidate_id, Vote.worker_id, Vote.is_match, Vote.created_at, Vote.wnid)
        .join(Assignment, Assignment.assignment_id == Vote.assignment_id)
        .where(Assignment.status.not_in(DISCARDED_ASSIGNMENTS))
        .order_by(Vote.created_at, Vote.assignment_id, Vote.candidate_id)
    )
    if wnids is not None:
        vq = vq.where(Vote.wnid.in_(wanted))
    votes_by_wnid: dict[str, list[tuple[int, str, int]]] = defaultdict(list)
    seen_pairs: set[tuple[int, str]] = set()
    for cid, worker_id, is_match, _created, wnid in session.execute(vq):
        # A worker's second vote on the same image is no independent evidence: keep the first.
        if (cid, worker_id) in seen_pairs:
            continue
        seen_pairs.add((cid, worker_id))
        votes_by_wnid[wnid].append((cid, worker_id, int(bool(is_match))))
    mq = select(Label.candidate_id, Label.decision).where(Label.overridden.is_(True))
    if wnids is not None:
        mq = mq.where(Label.wnid.in_(wanted))
    manual = dict(session.execute(mq).all())
    gold = {}
    blocked = set()
    for wid, seen, correct, is_blocked in session.execute(
        select(Worker.worker_id, Worker.gold_seen, Worker.gold_correct, Worker.blocked)
    ):
        gold[wid] = (seen, correct)
        # A blocked worker's votes are distrusted when their gold says near chance.
        if is_blocked and (not seen or (correct or 0) / seen < s.consensus_min_voter_gold):
            blocked.add(wid)
    pending = _pending_asks(session, wanted if wnids is not None else None)
    out = []
    for wnid in sorted(items):
        cids = items[wnid]
        cset = set(cids)
        rows = [r for r in votes_by_wnid.get(wnid, []) if r[0] in cset]
        workers = sorted({r[1] for r in rows})
        votes = Votes.from_tuples(rows, items=cids, workers=workers)
        from curation.consensus.dynamic import choose_calibration

        calib = choose_calibration(cids, s.consensus_initial_subset, f"imnet-calibration:{wnid}")
        known = np.array(
            [1 if manual.get(c) == ACCEPT else 0 if manual.get(c) == REJECT else -1 for c in cids],
            dtype=np.int64,
        )
        out.append(
            SynsetVotes(
                wnid=wnid,
                candidate_ids=cids,
                votes=votes,
                calibration=np.array([c in calib for c in cids], dtype=bool),
                known=known,
                gold_seen=np.array([gold.get(w, (0, 0))[0] for w in workers], dtype=float),
                gold_correct=np.array([gold.get(w, (0, 0))[1] for w in workers], dtype=float),
                pending=np.array([pending.get(c, 0) for c in cids], dtype=np.int64),
                blocked=np.array([w in blocked for w in workers], dtype=bool),
            )
        )
    return out


def _pending_asks(session: Session, wnids: list[str] | None) -> dict[int, int]:
    """Votes already asked for: open, unexpired HITs' missing assignments, per non-gold item."""
    now = time.time()
    got = select(Assignment.hit_id, func.count().label("n")).group_by(Assignment.hit_id).subquery()
    q = (
        select(HitItem.candidate_id, Hit.max_assignments, func.coalesce(got.c.n, 0))
        .join(Hit, Hit.hit_id == HitItem.hit_id)
        .outerjoin(got, got.c.hit_id == Hit.hit_id)
        .where(
            HitItem.gold_label.is_(None),
            Hit.status.in_(OPEN_HIT_STATUSES),
            or_(Hit.expires_at.is_(None), Hit.expires_at > now),
        )
    )
    if wnids is not None:
        q = q.where(Hit.wnid.in_(wnids))
    out: dict[int, int] = defaultdict(int)
    for cid, max_a, n in session.execute(q):
        out[cid] += max(0, int(max_a or 0) - int(n or 0))
    return dict(out)


def dynamic_model(settings: Any = None) -> Any:
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


def cost_rule(settings: Any) -> dict[str, float | None]:
    """The worker-aware stopping costs from settings: cost-based stopping when both are > 0,
    else None for both (the threshold / reject-below / cap rule)."""
    fp, fn = float(settings.consensus_fp_cost), float(settings.consensus_fn_cost)
    if fp > 0 and fn > 0:
        return {"fp_cost": fp, "fn_cost": fn}
    return {"fp_cost": None, "fn_cost": None}


def decide(data: SynsetVotes, algorithm: str, settings: Any = None) -> SynsetResult:
    """Run one algorithm on one synset's votes."""
    s = _settings(settings)
    votes = data.counted_votes(algorithm)
    counts = votes.counts()
    yes, no = counts[:, YES], counts[:, 0]
    total = yes + no
    thr = s.consensus_threshold
    extra: dict[str, Any] = {}
    if algorithm == "dynamic":
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

        m = WorkerAwareConsensus(
            threshold=thr,
            max_votes=s.consensus_wa_max_votes,
            reject_below=s.consensus_wa_reject_below,
            batch=s.consensus_batch_votes,
            **cost_rule(s),
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
    return SynsetResult(data.wnid, data.candidate_ids, yes, no, p, dec, needs, extra)


def needs_votes(
    session: Session, wnids: list[str] | None = None, settings: Any = None
) -> dict[int, int]:
    """candidate_id -> how many MORE votes it needs now (absent = none), minus votes already asked
    for in open HITs. The policy is `settings.consensus_algorithm` (default worker-aware)."""
    s = _settings(settings)
    out: dict[int, int] = {}
    for data in load_votes(session, wnids, s):
        res = decide(data, s.consensus_algorithm, s)
        more = res.needs - data.pending
        for cid, k in zip(res.candidate_ids, more.tolist(), strict=True):
            if k > 0:
                out[cid] = int(k)
    return out


def run_consensus(
    session: Session,
    algorithm: str = "dynamic",
    wnids: list[str] | None = None,
    settings: Any = None,
) -> dict[str, Any]:
    """Update `label` rows from the votes; hand overrides are never touched. Commits.

    Returns {"algorithm", "totals": {accept, reject, undecided, needs_votes, votes},
    "per_wnid": {wnid: {... same counts ..., model details}}}.
    """
    s = _settings(settings)
    if algorithm not in ALGORITHMS:
        raise ValueError(
            f"unknown consensus algorithm {algorithm!r}; one of {', '.join(ALGORITHMS)}"
        )
    report: dict[str, Any] = {"algorithm": algorithm, "per_wnid": {}}
    totals = {ACCEPT: 0, REJECT: 0, UNDECIDED: 0, "needs_votes": 0, "votes": 0, "manual": 0}
    for data in load_votes(session, wnids, s):
        res = decide(data, algorithm, s)
        existing = {
            lab.candidate_id: lab
            # By wnid, not an IN list: a synset may hold more candidates than a statement's
            # parameter limit.
            for lab in session.scalars(select(Label).where(Label.wnid == data.wnid))
        }
        per = {ACCEPT: 0, REJECT: 0, UNDECIDED: 0, "manual": 0}
        for i, cid in enumerate(res.candidate_ids):
            lab = existing.get(cid)
            total = int(res.yes[i] + res.no[i])
            if lab is not None and lab.overridden:
                # A hand label stands; only its vote counts are refreshed for the review page.
                lab.votes_yes, lab.votes_no = int(res.yes[i]), int(res.no[i])
                per["manual"] += 1
                per[lab.decision if lab.decision in per else UNDECIDED] += 1
                continue
            if lab is None:
                if total == 0:
                    continue
                lab = Label(candidate_id=cid, wnid=data.wnid)
                session.add(lab)
            lab.votes_yes, lab.votes_no = int(res.yes[i]), int(res.no[i])
            lab.posterior = float(res.p_yes[i]) if total > 0 else None
            lab.decision = str(res.decisions[i]) if total > 0 else UNDECIDED
            lab.decided_by = algorithm
            lab.overridden = False
            per[lab.decision] += 1
        needing = int(((res.needs - data.pending) > 0).sum())
        n_votes = len(data.counted_votes(algorithm))
        report["per_wnid"][data.wnid] = {
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
        session.commit()
    report["totals"] = totals
    log.info("consensus %s: %s", algorithm, totals)
    return report
