"""Suspected copying pairs weighed by their posterior probability of copying, before any test confirms them.

dependence.py and dependence_pairs.py report a group only once its agreement passes a test at
alpha / (number of pairs): a copying pair of a 5-worker crowd needs ~71 identical co-votes for
that at the 85% ceiling. Until then its votes count as two independent sources, and long before
71 co-votes a pair that also passes gold can capture the fit: in bench/consensus.py's colluders
n=5 25% cell (dev seed 206, diagnosis only) the pair's 47 identical co-votes made the careful
workers look 0.70-0.74 accurate to the model and 3 of its 34 accepts false; the test would have
passed at 71. Here each active pair gets its posterior probability of copying rho from a prior
(`prior`, the share of pairs that copy) and the likelihood ratio of its co-votes (copying agrees
but for `copy_error`; independent workers agree at most the ceiling: `honest_agreement`, or more
where the pair's accuracy measured against everyone else allows it, as in dependence_pairs.py).
Pairs more likely copying than not weigh as a share of one source: on an item, a vote weighs
1 / (1 + sum of rho over the other voters it may copy), which for a confirmed group of k (rho
1) is group_weights' 1/k. No routing follows from it (dependence_pairs' test decides that).
"""

from __future__ import annotations

import numpy as np
from scipy import sparse

from curation.consensus.dependence_pairs import MAX_MEASURED, group_weights


def soft_pairs(
    item: np.ndarray,
    worker: np.ndarray,
    label: np.ndarray,
    n_items: int,
    n_workers: int,
    groups: list[np.ndarray],
    prior: float,
    honest_agreement: float = 0.85,
    copy_error: float = 0.03,
    order: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(a, b, rho): the pairs of workers more likely copying than not (rho > 1/2), not already
    in one of `groups`, with their posterior probability of copying."""
    from curation.consensus.dependence import _pairs, constant_workers
    from curation.consensus.dependence_outside import outside_ceiling

    empty = (np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0))
    if prior <= 0 or not len(item):
        return empty
    use = ~constant_workers(worker, label, n_workers)[worker]
    co, agree = _pairs(item[use], worker[use], label[use], n_items, n_workers)
    dis = co - agree

    def log_odds(n_agree: np.ndarray, n_dis: np.ndarray, q: np.ndarray | float) -> np.ndarray:
        lr = n_agree * np.log((1 - copy_error) / q) + n_dis * np.log(copy_error / (1 - q))
        return np.log(prior / (1 - prior)) + lr

    gid = np.arange(n_workers)
    for k, g in enumerate(groups):
        gid[g] = n_workers + k
    a, b = np.nonzero(np.triu(co > 0, k=1))
    lo = log_odds(agree[a, b], dis[a, b], honest_agreement)
    keep = (lo > 0) & (gid[a] != gid[b])
    a, b, lo = a[keep], b[keep], lo[keep]
    if not len(a):
        return empty
    # Excellent workers agree beyond the floor without copying: measured against the outside
    # (every group as one source), the ceiling rises to what their accuracy allows.
    weight = group_weights(item, worker, groups, n_workers)
    ok = np.zeros(len(a), bool)
    for i in np.argsort(-lo, kind="stable")[:MAX_MEASURED]:  # the rest: no call
        ok[i] = True
        pair = np.array([a[i], b[i]])
        q = outside_ceiling(item, worker, label, weight, n_items, pair, order)
        if q is None:
            ok[i] = False  # nobody outside to tell copying from excellence
        elif np.isfinite(q) and q > honest_agreement:
            lo[i] = log_odds(agree[a[i], b[i]], dis[a[i], b[i]], min(q, 1 - copy_error))
    keep = ok & (lo > 0)
    return a[keep], b[keep], 1 / (1 + np.exp(-lo[keep]))


def vote_weights(
    item: np.ndarray,
    worker: np.ndarray,
    n_items: int,
    n_workers: int,
    groups: list[np.ndarray],
    soft: tuple[np.ndarray, np.ndarray, np.ndarray],
) -> np.ndarray:
    """Per vote, 1 / (1 + the copying probability summed over the other voters on its item):
    group members copy each other (1), `soft` pairs with their rho."""
    a, b, rho = soft
    if not len(a):
        return group_weights(item, worker, groups, n_workers)
    rows, cols, vals = [a, b], [b, a], [rho, rho]
    for g in groups:
        ga, gb = np.meshgrid(g, g)
        off = ga != gb
        rows.append(ga[off])
        cols.append(gb[off])
        vals.append(np.ones(int(off.sum())))
    r = sparse.csr_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
        shape=(n_workers, n_workers),
    )
    # Duplicate (pair in a group and soft) entries add up; a pair is either, never both.
    voted = sparse.csr_matrix((np.ones(len(item)), (item, worker)), shape=(n_items, n_workers))
    copies = (voted @ r).tocsr()
    return 1.0 / (1.0 + np.asarray(copies[item, worker]).ravel())
