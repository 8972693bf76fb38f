"""Copying pairs tested on all their co-votes (the small crowd's case); groups joined and weighed.

dependence.dependent_groups forms clusters on half the items and tests them on the other half,
because greedy merging over a large crowd picks agreeing workers by chance. A small crowd has few
pairs to choose from (10 in a 5-worker crowd) and spreads its votes thin (1.5-2 per item at 5%
positives), so halving the co-votes let a copying pair go unfound for whole synsets: in
bench/consensus.py's colluders n=5 5% cell (dev seed 201) the pair had 21-35 test-half
agreements and no disagreement by the third synset, short of the 1e-4 level at its measured
ceiling (0.77), while it held the model (0.99 skill each, the careful workers 0.65-0.69) and 7
of its 9 accepts there were false. Here every pair of active workers is tested on all its
co-votes at alpha / (number of pairs), Bonferroni for the choice among them, so no split is
needed. The ceiling is the agreement two independent workers can reach: `honest_agreement`
(85%), or more where the pair's accuracy measured against everyone else (dependence._copies)
allows more. Never less: measured on every co-vote, the outside's de-noised accuracy read low
enough to call two honest 0.75-accurate workers copiers. In a large crowd a pair seldom co-votes
often enough to pass (alpha / 1225 pairs needs >= 100 agreements in a row), and the clusters
find its groups.
"""

from __future__ import annotations

import numpy as np
from scipy import sparse
from scipy.stats import binom

MAX_MEASURED = 20  # each measurement fits the outside's votes once


def add_pairs(
    groups: list[np.ndarray],
    item: np.ndarray,
    worker: np.ndarray,
    label: np.ndarray,
    measure: bool,
    n_items: int,
    counts: tuple[np.ndarray, np.ndarray],
    active: np.ndarray,
    honest_agreement: float,
    alpha: float,
    order: np.ndarray | None,
) -> list[np.ndarray]:
    """`groups` joined with the copying pairs among the `active` workers: pairs whose
    disagreements over all co-votes (`counts`: co-votes and agreements per pair) are below the
    binomial alpha / pairs tail at the ceiling (`honest_agreement`, or with `measure` the
    measured one where higher).

    Pairs are tested most telling first, each against an outside that counts every group found
    so far as one source (not each candidate cluster: one that failed its test is no evidence),
    and only where that outside holds two sources or more. Three copiers of a 0.75 sheet beside
    two 0.98-accurate workers: tested first (no disagreement in 1,500 co-votes), the copiers
    become one source, and the careful pair, which measured against three copiers looked
    0.75-accurate and so far too agreeing, has nobody to be measured against."""
    from curation.consensus.dependence import _binomial, _copies, _counts

    n_active = int(active.sum())
    n_pairs = n_active * (n_active - 1) // 2
    co, agree = counts
    dis = co - agree
    a, b = np.nonzero(np.triu(np.outer(active, active), k=1) & (co > 0))
    if n_pairs == 0 or not len(a):
        return groups
    level = alpha / n_pairs
    # The ceiling is never under `honest_agreement`: measured on all of a pair's co-votes (not
    # half), the outside's de-noised accuracy read low enough to call two honest 0.75-accurate
    # workers copiers. The measurement only raises it, for excellent workers; a pair that fails
    # at the floor needs no outside fit.
    tail = binom.logcdf(dis[a, b], co[a, b], 1 - honest_agreement)
    keep = tail < np.log(level)
    a, b, tail = a[keep], b[keep], tail[keep]
    pa, pd = _counts(co, agree)
    n_workers = len(active)
    gid: np.ndarray | None = None  # each worker's source (a group counts as one); None: stale
    weight: np.ndarray | None = None
    for i in np.argsort(tail, kind="stable")[:MAX_MEASURED]:
        pair = np.array([a[i], b[i]])
        if gid is None:
            gid = np.arange(n_workers)
            for k, g in enumerate(groups):
                gid[g] = n_workers + k
            weight = group_weights(item, worker, groups, n_workers) if measure else None
        if gid[pair[0]] == gid[pair[1]]:
            continue
        q = honest_agreement
        if weight is not None:
            mine = np.isin(worker, pair)
            shared = np.zeros(n_items, bool)
            shared[item[mine]] = True
            if len(np.unique(gid[worker[~mine & shared[item]]])) < 2:
                continue  # nobody outside to tell copying from excellence
            found = _copies(
                item, worker, label, weight, n_items, pair, pa, pd, honest_agreement, level, order
            )
            if found is None:
                continue
            if np.isfinite(found[1]):
                q = max(found[1], honest_agreement)
        if _binomial(pair, pa, pd, q, level):
            groups = merge_groups([*groups, pair], n_workers)
            gid = None
    return groups


def merge_groups(groups: list[np.ndarray], n_workers: int) -> list[np.ndarray]:
    """Overlapping groups joined (connected components); singletons dropped."""
    groups = [np.asarray(g, dtype=np.int64) for g in groups if len(g) >= 2]
    if not groups:
        return []
    a = np.concatenate([np.full(len(g) - 1, g[0]) for g in groups])
    b = np.concatenate([g[1:] for g in groups])
    graph = sparse.coo_matrix((np.ones(len(a)), (a, b)), shape=(n_workers, n_workers))
    _, comp = sparse.csgraph.connected_components(graph, directed=False)
    out = []
    for c in np.unique(comp[np.concatenate(groups)]):
        members = np.flatnonzero(comp == c)
        if len(members) >= 2:
            out.append(members)
    return out


def group_weights(
    item: np.ndarray, worker: np.ndarray, groups: list[np.ndarray], n_workers: int
) -> np.ndarray:
    """Per vote, 1 / (number of its worker's group members who voted on the same item)."""
    w = np.ones(len(item))
    if not groups:
        return w
    gid = np.full(n_workers, -1)
    for g, members in enumerate(groups):
        gid[members] = g
    g = gid[worker]
    grouped = g >= 0
    key = item[grouped] * (len(groups) + 1) + g[grouped]
    _, inv, counts = np.unique(key, return_inverse=True, return_counts=True)
    w[grouped] = 1.0 / counts[inv]
    return w
