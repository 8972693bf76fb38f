"""Dependent workers: groups who agree far more often than independent annotators can, merged into one source.

A colluding group sharing one answer sheet agrees on every item, and its identical votes would
otherwise count as independent evidence (and, since the sheet passes gold, with a high weight).
Groups are found by a copying-vs-independence likelihood ratio summed over co-voted items
(`dependent_groups`); on each item the votes of a group's k members then weigh 1/k each, so the
group counts as one source (cf. Kajino, Tsuboi & Kashima, AAAI 2012, on redundant annotators;
Dong, Berti-Equille & Srivastava, VLDB 2009, "Integrating conflicting data: the role of source
dependence", for the copy-detection likelihood ratio). A cluster that fails its test is peeled
(the member who disagrees most with the rest dropped, tested again) so that honest workers
pulled into a large group's cluster do not hide it.
"""

from __future__ import annotations

import numpy as np
from scipy import sparse
from scipy.stats import binom


def _pairs(
    item: np.ndarray, worker: np.ndarray, label: np.ndarray, n_items: int, n_workers: int
) -> tuple[np.ndarray, np.ndarray]:
    """(co-voted items, agreements) per worker pair as dense (n_workers, n_workers) arrays."""
    shape = (n_items, n_workers)

    def mat(mask: np.ndarray) -> sparse.csr_matrix:
        return sparse.csr_matrix((mask.astype(float), (item, worker)), shape=shape)

    voted, yes, no = mat(np.ones(len(item), bool)), mat(label == 1), mat(label == 0)
    return (voted.T @ voted).toarray(), (yes.T @ yes + no.T @ no).toarray()


def dependent_groups(
    item: np.ndarray,
    worker: np.ndarray,
    label: np.ndarray,
    n_items: int,
    n_workers: int,
    honest_agreement: float = 0.85,
    copy_error: float = 0.03,
    min_evidence: float = 6.0,
    alpha: float = 1e-4,
    llr: np.ndarray | None = None,
    prior_logit: float = 0.0,
    peel: bool = True,
) -> list[np.ndarray]:
    """Groups (arrays of >= 2 worker codes) of workers who vote as one source.

    Each co-voted item scores the pair log(P(this agreement | copying) / P(it | independent)):
    copying agrees but for `copy_error`, independent workers agree at most `honest_agreement`
    (two 0.92-accurate annotators agree 85% of the time), so an agreement adds
    log(1 / honest_agreement) and a disagreement log(copy_error / (1 - honest_agreement)).
    Workers are merged greedily (average linkage would dilute a large group; the summed score is
    the group's log-likelihood ratio) while two clusters' summed score is positive, and a cluster
    is reported when its internal score exceeds `min_evidence` nats. Pairwise tests alone cannot
    see a large group in a large crowd: its members co-vote on few items each, but the group as a
    whole co-votes on many. The scores use no fitted skill, so a group that has captured the
    model (looks ~1.0 accurate to it) is still found. Clusters are formed on half the items and
    confirmed on the other half: their disagreements there must be unlikely (binomial tail <
    `alpha`) for independent workers agreeing `honest_agreement` of the time, or (given `llr`,
    each vote's log-likelihood ratio under the current fit) as often as the members' accuracy
    measured against the workers outside the cluster implies, so three careful annotators who
    agree 94% are not mistaken for copiers.
    """
    # Clusters are formed on the even items and tested on the odd ones: greedy merging picks
    # agreeing pairs, so a cluster's own co-votes overstate its agreement (a dozen honest
    # workers agreeing 96% on the items that formed them, 85% elsewhere).
    half = item % 2 == 0
    co, agree = _pairs(item[half], worker[half], label[half], n_items, n_workers)
    co_t, agree_t = _pairs(item[~half], worker[~half], label[~half], n_items, n_workers)
    dis = co - agree
    score = agree * np.log(1 / honest_agreement) + dis * np.log(copy_error / (1 - honest_agreement))
    np.fill_diagonal(score, 0.0)
    members = [[w] for w in range(n_workers)]
    internal = np.zeros(n_workers)
    n_agree = np.zeros(n_workers)
    n_dis = np.zeros(n_workers)
    pair_agree, pair_dis = agree_t.copy(), co_t - agree_t
    np.fill_diagonal(pair_agree, 0)
    np.fill_diagonal(pair_dis, 0)
    active = np.ones(n_workers, bool)
    s = score.copy()
    s[:, ~(co.sum(axis=1) > 0)] = -np.inf
    np.fill_diagonal(s, -np.inf)
    while True:
        k = int(np.argmax(s))
        a, b = divmod(k, n_workers)
        if not np.isfinite(s[a, b]) or s[a, b] <= 0:
            break
        internal[a] += internal[b] + s[a, b]
        n_agree[a] += n_agree[b] + pair_agree[a, b]
        n_dis[a] += n_dis[b] + pair_dis[a, b]
        pair_agree[a, :] += pair_agree[b, :]
        pair_agree[:, a] += pair_agree[:, b]
        pair_dis[a, :] += pair_dis[b, :]
        pair_dis[:, a] += pair_dis[:, b]
        members[a] += members[b]
        s[a, :] += s[b, :]
        s[:, a] += s[:, b]
        s[a, a] = -np.inf
        s[b, :] = -np.inf
        s[:, b] = -np.inf
        active[b] = False
    out = []
    pa0, pd0 = agree_t.astype(float), (co_t - agree_t).astype(float)
    np.fill_diagonal(pa0, 0)
    np.fill_diagonal(pd0, 0)
    for c in np.flatnonzero(active):
        if len(members[c]) < 2 or internal[c] < min_evidence:
            continue
        group = np.array(sorted(members[c]))
        # Peeling: in a large crowd greedy merging on a few co-votes each pulls honest workers
        # into the copiers' cluster, and their disagreements fail the test for the whole
        # group. Drop the member who disagrees most with the rest and test again, at alpha
        # split over the tries (the tests look at the same half).
        tries = len(group) - 1 if peel else 1
        for _ in range(tries):
            if _copies(
                item,
                worker,
                label,
                llr,
                prior_logit,
                n_items,
                group,
                pa0,
                pd0,
                honest_agreement,
                alpha / tries,
            ):
                # Honest members the merging pulled in and the test could not see (few test
                # co-votes) show disagreements on both halves together; copiers almost none.
                a_all = (pa0 + agree)[np.ix_(group, group)].sum(1) - np.diag(agree)[group]
                d_all = (pd0 + dis)[np.ix_(group, group)].sum(1) - np.diag(dis)[group]
                keep = d_all <= 2 * copy_error * (a_all + d_all) + 0.5
                if keep.sum() >= 2:
                    out.append(group[keep])
                break
            sub_a, sub_d = pa0[np.ix_(group, group)].sum(1), pd0[np.ix_(group, group)].sum(1)
            group = np.delete(group, int(np.argmax(sub_d / np.maximum(sub_a + sub_d, 1))))
            if len(group) < 2:
                break
    return out


def _copies(
    item: np.ndarray,
    worker: np.ndarray,
    label: np.ndarray,
    llr: np.ndarray | None,
    prior_logit: float,
    n_items: int,
    group: np.ndarray,
    pa: np.ndarray,
    pd: np.ndarray,
    honest_agreement: float,
    alpha: float,
) -> bool:
    """Whether `group`'s disagreements on the test half (pair counts `pa`/`pd`) are too few for
    independent workers at the agreement their accuracy allows."""
    q: float | None = honest_agreement
    if llr is not None:
        q = _outside_ceiling(item, worker, label, llr, prior_logit, n_items, group)
    if q is None:
        return False  # nobody outside to tell copying from excellence
    n_agree = pa[np.ix_(group, group)].sum() / 2
    n_dis = pd[np.ix_(group, group)].sum() / 2
    trials = n_agree + n_dis
    return bool(trials > 0 and binom.cdf(n_dis, trials, 1 - max(q, honest_agreement)) < alpha)


def _outside_ceiling(
    item: np.ndarray,
    worker: np.ndarray,
    label: np.ndarray,
    llr: np.ndarray,
    prior_logit: float,
    n_items: int,
    group: np.ndarray,
    min_items: int = 20,
) -> float | None:
    """The agreement two independent members of `group` would reach at the accuracies their
    votes show against the workers OUTSIDE the group (their posterior without the group's
    votes, de-noised by its own reliability); None without enough outside-voted items."""
    inside = np.isin(worker, group)
    lo = prior_logit + np.bincount(item[~inside], llr[~inside], n_items)
    p_out = 1 / (1 + np.exp(-lo))
    seen = np.bincount(item[~inside], minlength=n_items) > 0
    k = inside & seen[item]
    if k.sum() < min_items:
        return None
    pk = p_out[item[k]]
    agree = np.where(label[k] == 1, pk, 1 - pk).mean()
    r = np.maximum(pk, 1 - pk).mean()  # how often the outside posterior is itself right
    if r <= 0.55:
        return None
    a = float(np.clip((agree - (1 - r)) / (2 * r - 1), 0.5, 0.999))
    return a * a + (1 - a) * (1 - a)


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
