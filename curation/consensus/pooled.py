"""Dependence across synsets: one crowd-wide pass over recent votes, before a run decides synset by synset.

A pair of copiers in a small crowd co-votes on few items of any one synset when positives are
rare (at 5% positives items stop after about two votes: 9-31 co-votes per synset in
bench/consensus.py's 5-worker cell), too few for the per-synset test in robust.py, and in some
synset the pair captures the fit and its shared mistakes are accepted. Their co-votes over all
synsets are plenty. So before the per-synset loop, `pooled_groups` runs the same test
(dependence.dependent_groups, accuracy measured against the outside) on the votes of the most
recently voted synsets, whole synsets newest first up to `consensus_dependence_votes` votes
(memory and time stay bounded at any dataset size; co-votes never straddle synsets), and the
groups it finds are given to every synset's fit, as groups stored by earlier runs are.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from sqlalchemy import func, select

from curation.consensus.loading import DISCARDED_ASSIGNMENTS, vote_parts
from db.models import Assignment, Vote

# The pass's pair tables are dense in workers: beyond this many, only the most active are kept
# (a copier too thin in every synset is still among them; a huge crowd's occasional workers
# co-vote too little to test anyway).
MAX_WORKERS = 2000

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from imnet.core.settings import Settings


def recent_synsets(session: Session, max_votes: int) -> list[str]:
    """Synsets newest-voted first, as many whole synsets as fit in `max_votes` counted votes
    (at least one). One aggregate over the vote table (its wnid index)."""
    q = (
        select(Vote.wnid, func.count(), func.max(Vote.created_at))
        .join(Assignment, Assignment.assignment_id == Vote.assignment_id)
        .where(Assignment.status.not_in(DISCARDED_ASSIGNMENTS))
        .group_by(Vote.wnid)
    )
    rows = sorted(session.execute(q).all(), key=lambda r: (-(r[2] or 0.0), r[0]))
    out: list[str] = []
    total = 0
    for wnid, n, _last in rows:
        if out and total + n > max_votes:
            break
        out.append(wnid)
        total += n
    return out


def crowd_votes(
    session: Session, wnids: list[str]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """(item, worker, label, order, worker keys) over `wnids`: items are dense codes of
    candidate ids, workers of worker ids (keys sorted), order on loading.py's clock; a worker's
    second vote on an image is dropped, as everywhere in consensus."""
    codes: dict[str, int] = {}
    parts = [part for wnid in wnids for part in vote_parts(session, wnid, codes)]
    if not parts:
        z = np.zeros(0, np.int64)
        return z, z, z, z, []
    cid, wk, lab, ts = (np.concatenate(a) for a in zip(*parts, strict=True))
    del parts
    _, item = np.unique(cid, return_inverse=True)
    _, first = np.unique(item * len(codes) + wk, return_index=True)
    keep = np.sort(first)
    item, wk, lab, ts = item[keep], wk[keep], lab[keep], ts[keep]
    names = list(codes)  # in code order
    by_name = sorted(range(len(names)), key=names.__getitem__)
    recode = np.empty(len(names), np.int64)
    recode[by_name] = np.arange(len(names))
    return item, recode[wk], lab, ts, [names[k] for k in by_name]


def pooled_groups(session: Session, settings: Settings) -> list[set[str]]:
    """Dependent groups (sets of worker ids) in the votes of the most recently voted synsets,
    up to settings.consensus_dependence_votes votes (0: none)."""
    from curation.consensus.decide import robust_model
    from curation.consensus.dependence import dependent_groups

    cap = int(settings.consensus_dependence_votes)
    if cap <= 0:
        return []
    wnids = recent_synsets(session, cap)
    item, worker, label, order, keys = crowd_votes(session, wnids)
    if not len(item):
        return []
    if len(keys) > MAX_WORKERS:
        n = np.bincount(worker, minlength=len(keys))
        top = np.sort(np.argsort(-n, kind="stable")[:MAX_WORKERS])
        keep = np.isin(worker, top)
        item, label, order = item[keep], label[keep], order[keep]
        worker = np.searchsorted(top, worker[keep])
        keys = [keys[int(k)] for k in top]
    model = robust_model(settings)
    found = dependent_groups(
        item,
        worker,
        label,
        int(item.max()) + 1,
        len(keys),
        min_evidence=model.dependence_evidence,
        alpha=model.dependence_alpha,
        measure=True,
        order=order,
    )
    return [{keys[int(w)] for w in g} for g in found]
