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

from curation.consensus import dependence_outside
from curation.consensus.dependence_pairs import MAX_MEASURED, add_pairs, group_weights


def constant_workers(worker: np.ndarray, label: np.ndarray, n_workers: int) -> np.ndarray:
    """Per worker code: gives one answer to everything (20+ votes). Such a worker (always-no)
    agrees with every other one whether or not anyone copies: their agreement is no evidence,
    and at 25% positives it drew careful workers, who mostly say no too, into their cluster."""
    n_w = np.bincount(worker, minlength=n_workers)
    yes_rate = np.bincount(worker, label == 1, minlength=n_workers) / np.maximum(n_w, 1)
    return np.asarray((n_w >= 20) & ((yes_rate <= 0.01) | (yes_rate >= 0.99)))


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
    measure: bool = False,
    peel: bool = True,
    order: np.ndarray | None = None,
    pairs: bool = True,
    retry: bool = True,
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
    `alpha`) for independent workers agreeing `honest_agreement` of the time, or (`measure`)
    as often as the members' accuracy measured against the workers outside the cluster
    implies, so three careful annotators who agree 94% are not mistaken for copiers and two
    copiers of a 75%-right sheet are found on ~20 co-votes (`_copies`). With `pairs`, every
    pair is also tested on all its co-votes (dependence_pairs.add_pairs, for small crowds).
    With `retry`, a cluster that failed is tested again against an outside that counts only
    the groups found as one source each, fewest disagreements first.
    """
    # Clusters are formed on the even items and tested on the odd ones: greedy merging picks
    # agreeing pairs, so a cluster's own co-votes overstate its agreement (a dozen honest
    # workers agreeing 96% on the items that formed them, 85% elsewhere).
    constant = constant_workers(worker, label, n_workers)
    use = ~constant[worker]
    half = use & (item % 2 == 0)
    test = use & (item % 2 == 1)
    co, agree = _pairs(item[half], worker[half], label[half], n_items, n_workers)
    co_t, agree_t = _pairs(item[test], worker[test], label[test], n_items, n_workers)
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
    out: list[np.ndarray] = []
    pa0, pd0 = _counts(co_t, agree_t)

    def quarter(r: int) -> tuple[np.ndarray, np.ndarray]:
        q = test & (item % 4 == r)
        return _counts(*_pairs(item[q], worker[q], label[q], n_items, n_workers))

    quarters: list[tuple[np.ndarray, np.ndarray]] = []  # read only when a cluster is peeled
    candidates = [
        np.array(sorted(members[c]))
        for c in np.flatnonzero(active)
        if len(members[c]) >= 2 and internal[c] >= min_evidence
    ]

    def plain(group: np.ndarray) -> np.ndarray:
        """Members whose disagreements with the rest, both halves together, are a copier's
        (at most 2 copy_error, give or take one)."""
        a_all = (pa0 + agree)[np.ix_(group, group)].sum(1) - np.diag(agree)[group]
        d_all = (pd0 + dis)[np.ix_(group, group)].sum(1) - np.diag(dis)[group]
        return np.asarray(d_all <= 2 * copy_error * (a_all + d_all) + 0.5)

    def verdict(group: np.ndarray, weight: np.ndarray | None) -> np.ndarray | bool | None:
        """The members kept if `group` passes (peeled if need be), False if it fails, None
        without an outside to measure against."""
        # Peeling: in a large crowd greedy merging on a few co-votes each pulls honest workers
        # into the copiers' cluster, and their disagreements fail the test for the whole
        # group. Drop the member who disagrees most with the rest and test again, at alpha
        # split over the tries. Whom to drop is read on one quarter of the items and the
        # peeled group tested on the other (the test half's two halves): chosen by its
        # test-half disagreements, a peeled subset of a sparse crowd's big honest cluster
        # (each pair co-voting once or twice) would pass that same test by selection (500
        # careful workers at 5 votes per item: a false group of ~200 in half of the synsets).
        tries = len(group) - 1 if peel else 1
        first = _copies(
            item, worker, label, weight, n_items, group, pa0, pd0, honest_agreement,
            alpha / tries, order=order,
        )  # fmt: skip
        if first is None:
            return None  # nobody outside to tell copying from excellence
        passed, measured = first
        # A peeled group is held to the higher ceiling (its accuracy was measured with the
        # members peeled off, and one measurement per try would cost a fit each).
        q = max(measured, honest_agreement) if np.isfinite(measured) else honest_agreement
        for _ in range(1, tries if not passed else 1):
            if not quarters:
                quarters.extend([quarter(1), quarter(3)])
            (pa_pick, pd_pick), (pa_test, pd_test) = quarters
            sub_a = (pa_pick + agree)[np.ix_(group, group)].sum(1) - np.diag(agree)[group]
            sub_d = (pd_pick + dis)[np.ix_(group, group)].sum(1) - np.diag(dis)[group]
            group = np.delete(group, int(np.argmax(sub_d / np.maximum(sub_a + sub_d, 1))))
            if _binomial(group, pa_test, pd_test, q, alpha / tries):
                passed = True
                break
        if not passed:
            return False
        # Honest members the merging pulled in and the test could not see (few test
        # co-votes) show disagreements on both halves together; copiers almost none.
        keep = plain(group)
        return group[keep] if keep.sum() >= 2 else False

    # The outside a cluster is measured against counts every other candidate cluster as one
    # source: twenty copiers outside would otherwise capture that fit too, and two honest
    # workers who happened to agree 45 times in a row would be measured against their sheet.
    weight = group_weights(item, worker, candidates, n_workers) if measure else None
    failed = []
    for group in candidates:
        got = verdict(group, weight)
        if isinstance(got, np.ndarray):
            out.append(got)
        elif got is False and measure and retry and plain(group).sum() >= 2:
            failed.append(group)  # (a careful crowd's clusters, which cannot pass, are not)
    # But a failed candidate is no evidence of copying: a cartel's cluster measured against an
    # outside where thirty careful workers' failed cluster counted as one source read 0.89
    # accurate at its upper bound and was not found for ~120 more votes (bench/consensus.py,
    # colluders n=50, tuning seed 102). Each failed one is tested again, fewest test-half
    # disagreements first, against an outside that counts only the groups found as one each.
    rate = [pd0[np.ix_(g, g)].sum() / max((pa0 + pd0)[np.ix_(g, g)].sum(), 1) for g in failed]
    for k in np.argsort(rate, kind="stable")[:MAX_MEASURED]:  # a fit each
        if any(np.isin(failed[k], g).any() for g in out):
            continue
        got = verdict(failed[k], group_weights(item, worker, out, n_workers))
        if isinstance(got, np.ndarray):
            out.append(got)
    if pairs:
        counts = (co + co_t, agree + agree_t)
        active = ~constant & (np.bincount(worker, minlength=n_workers) > 0)
        out = add_pairs(
            out,
            item,
            worker,
            label,
            measure,
            n_items,
            counts,
            active,
            honest_agreement,
            alpha,
            order,
        )
    return out


def _counts(co: np.ndarray, agree: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(agreements, disagreements) per worker pair as floats, zero on the diagonal."""
    a, d = agree.astype(float), (co - agree).astype(float)
    np.fill_diagonal(a, 0)
    np.fill_diagonal(d, 0)
    return a, d


def _copies(
    item: np.ndarray,
    worker: np.ndarray,
    label: np.ndarray,
    weight: np.ndarray | None,
    n_items: int,
    group: np.ndarray,
    pa: np.ndarray,
    pd: np.ndarray,
    honest_agreement: float,
    alpha: float,
    order: np.ndarray | None = None,
) -> tuple[bool, float] | None:
    """(whether `group`'s disagreements on the test half (pair counts `pa`/`pd`) are too few
    for independent workers at the agreement their accuracy allows, the measured ceiling or
    NaN); None when there is no outside to measure against (nothing is called copying then).

    Without `weight` (each vote's weight as one source's share), or where the measurement
    shows no accuracy above chance, the ceiling is `honest_agreement`. With it, the members'
    accuracy is measured against the workers outside the group, fitted on their own votes
    (not on the current fit, which a group that captured it has skewed), and the ceiling is
    the agreement that accuracy allows at its upper confidence bound, however low: two
    members of a sheet that is right on 75% of images may agree 62% as independent workers,
    not 85%, so identical answers give them away after ~20 co-votes instead of ~57. (A
    peeled group is held to the higher of the two ceilings.)"""
    q, measured = honest_agreement, float("nan")
    if weight is not None:
        m = dependence_outside.outside_ceiling(item, worker, label, weight, n_items, group, order)
        if m is None:
            return None
        measured = m
        if not np.isnan(measured):
            q = measured
    return _binomial(group, pa, pd, q, alpha), measured


def _binomial(group: np.ndarray, pa: np.ndarray, pd: np.ndarray, q: float, alpha: float) -> bool:
    """Whether the group's pair disagreements are below the binomial `alpha` tail at agreement q."""
    n_agree = pa[np.ix_(group, group)].sum() / 2
    n_dis = pd[np.ix_(group, group)].sum() / 2
    trials = n_agree + n_dis
    return bool(trials > 0 and binom.cdf(n_dis, trials, 1 - q) < alpha)
