"""The decision loop: read votes from the database, decide labels, and say which items need more votes."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sqlalchemy.orm import Session

from curation.consensus.base import ACCEPT, REJECT, UNDECIDED, YES

# Re-exported: callers (mturk, demos, `imnet consensus table`) import these from here.
from curation.consensus.loading import (  # noqa: F401
    DISCARDED_ASSIGNMENTS,
    OPEN_HIT_STATUSES,
    STREAM_ROWS,
    SynsetVotes,
    WorkerTable,
    _settings,
    eligible_candidates,
    in_shard,
    iter_synset_votes,
    load_synset,
    load_votes,
    machine_label_ids,
    synset_candidates,
    synset_wnids,
)

log = logging.getLogger(__name__)

ALGORITHMS = ("dynamic", "worker-aware", "majority", "dawid-skene")


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
    for in open HITs. The policy is `settings.consensus_algorithm` (default worker-aware).
    Synsets are read one at a time; the result holds one entry per item that needs votes."""
    s = _settings(settings)
    out: dict[int, int] = {}
    for data in iter_synset_votes(session, wnids, s):
        res = decide(data, s.consensus_algorithm, s)
        more = res.needs - data.pending
        for i in np.flatnonzero(more > 0).tolist():
            out[res.candidate_ids[i]] = int(more[i])
    return out


def run_consensus(
    session: Session,
    algorithm: str = "dynamic",
    wnids: list[str] | None = None,
    settings: Any = None,
    shard: tuple[int, int] | None = None,
) -> dict[str, Any]:
    """Update `label` rows from the votes; hand overrides are never touched. Commits per synset.

    One synset at a time (memory: the largest synset): read, commit, decide, upsert its labels,
    commit. `shard` (i, n) takes only the synsets of hash partition i of n, so n processes on
    any machines sharing the database split the work (`run_parallel`); each synset's labels
    depend on its own votes and the worker table only, so any split gives the same labels.

    Returns {"algorithm", "totals": {accept, reject, undecided, needs_votes, votes},
    "per_wnid": {wnid: {... same counts ..., model details}}}.
    """
    from curation.consensus.labels import write_labels

    s = _settings(settings)
    if algorithm not in ALGORITHMS:
        raise ValueError(
            f"unknown consensus algorithm {algorithm!r}; one of {', '.join(ALGORITHMS)}"
        )
    report: dict[str, Any] = {"algorithm": algorithm, "per_wnid": {}}
    totals = {ACCEPT: 0, REJECT: 0, UNDECIDED: 0, "needs_votes": 0, "votes": 0, "manual": 0}
    workers = WorkerTable.read(session, s)
    for wnid in synset_wnids(session, wnids, shard):
        data = load_synset(session, wnid, s, workers)
        if data is None:
            continue
        existing = machine_label_ids(session, wnid)
        # End the read transaction before writing: on SQLite a write that follows reads in the
        # same transaction fails at once when another process wrote meanwhile.
        session.commit()
        res = decide(data, algorithm, s)
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
        needing = int(((res.needs - data.pending) > 0).sum())
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
    session.commit()
    report["totals"] = totals
    log.info("consensus %s: %s", algorithm, totals)
    return report
