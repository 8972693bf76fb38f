"""A dependent group's accuracy measured against the workers outside it (dependence._copies' ceiling).

Two copiers of a sheet right on 75% of the images agree on every item, but two independent
workers of that accuracy agree only 62% of the time: the ceiling an honest pair could reach is
read from the members' accuracy against a fit of the outside's votes alone (`outside_fit`), not
from the current fit, which a group that captured it has skewed. The measurement is trusted only
where the outside identifies its own accuracy: on enough items with two or more outside votes.
"""

from __future__ import annotations

import numpy as np

# Items with >= 2 outside votes a measurement needs: on scans of careful crowds (0.92, 50
# workers, 2-3 votes per item, seeds 0-39; not bench/consensus.py's seeds) 20 such items still
# let 8 of 21 measurements read under the 0.85 two such workers agree, 40 let 1 of 37; at 60
# none did.
MIN_IDENTIFIED = 60


def outside_fit(
    item: np.ndarray,
    worker: np.ndarray,
    label: np.ndarray,
    weight: np.ndarray,
    n_items: int,
    iters: int = 25,
) -> tuple[np.ndarray, np.ndarray]:
    """A two-coin Dawid-Skene fit on these votes alone, each vote's evidence times its
    `weight`: (P(yes) per item, whether it has a vote). Sensitivity and specificity have
    Beta(6, 2) priors; a worker whose two coins add up to a coin flip or worse (always-yes,
    always-no, near chance) weighs nothing. (One coin would call an always-no worker 75%
    accurate at 25% positives and pull the fit towards "no".)"""
    n_workers = int(worker.max()) + 1 if len(worker) else 0
    seen = np.bincount(item, minlength=n_items) > 0
    yes = label == 1
    # One code per (worker, answer): a vote's evidence is one lookup, and one bincount of the
    # posterior over the codes gives both coins' sums (the pass fits this once per cluster).
    code = 2 * worker + yes
    n_yes = np.bincount(worker, yes, n_workers)
    n_no = np.bincount(worker, minlength=n_workers) - n_yes
    sens = np.full(n_workers, 0.75)
    spec = np.full(n_workers, 0.75)
    prior = 0.5
    p = np.full(n_items, 0.5)
    for _ in range(iters):
        informative = sens + spec > 1.0
        l_yes = np.where(informative, np.log(sens / (1 - spec)), 0.0)
        l_no = np.where(informative, np.log((1 - sens) / spec), 0.0)
        vote = np.column_stack([l_no, l_yes]).reshape(-1)[code]
        lo = np.log(prior / (1 - prior)) + np.bincount(item, weight * vote, n_items)
        p = 1 / (1 + np.exp(-np.clip(lo, -30, 30)))
        by = np.bincount(code, p[item], 2 * n_workers).reshape(n_workers, 2)
        pos = by[:, 0] + by[:, 1]
        sens = (by[:, 1] + 6) / (pos + 8)
        spec = (n_no - by[:, 0] + 6) / (n_yes + n_no - pos + 8)
        sens, spec = np.clip(sens, 0.01, 0.995), np.clip(spec, 0.01, 0.995)
        prior = float(np.clip(p[seen].mean(), 0.01, 0.99)) if seen.any() else 0.5
    return p, seen


def outside_ceiling(
    item: np.ndarray,
    worker: np.ndarray,
    label: np.ndarray,
    weight: np.ndarray,
    n_items: int,
    group: np.ndarray,
    order: np.ndarray | None = None,
    min_items: int = 20,
    min_identified: int = MIN_IDENTIFIED,
    z: float = 2.0,
    above_chance: float = 0.55,
) -> float | None:
    """The agreement two independent members of `group` would reach at the accuracy their
    votes show against the workers OUTSIDE the group (a fit of the outside votes alone,
    de-noised by its own reliability), at that accuracy's upper `z`-sigma bound; None without
    enough outside-voted items or without `min_identified` items the outside voted on twice
    or more (nothing is called copying then), NaN without an accuracy clearly above chance.

    Measured on every member vote on an item the outside voted on; where that shows no
    accuracy above chance and `order` is given, again on the votes where adaptive stopping
    cannot have chosen the item by the members' answers (`unbiased`)."""
    inside = np.isin(worker, group)
    out = ~inside
    if (np.bincount(item[out], minlength=n_items) >= 2).sum() < min_identified:
        # Too few items with two outside votes to tell the outside's accuracy from its
        # prevalence: on one vote per item the fit settles where the Beta(6, 2) coins make a
        # 26% yes-rate mean ~2% positives, calls every item "no", and 0.92-accurate workers
        # measured 0.7 (a false group of 32 careful workers in a crowd of 50 was routed away:
        # bench/consensus.py, good n=50 25%, dev seed 201, the first round of its 2nd synset).
        return None
    p_out, seen = outside_fit(item[out], worker[out], label[out], weight[out], n_items)
    k = inside & seen[item]
    # One outside worker's accuracy cannot be fitted from their votes alone (the prior sets it),
    # so four 0.98-accurate annotators measured against one at 0.6 looked like copiers.
    shared = np.zeros(n_items, bool)
    shared[item[inside]] = True
    if k.sum() < min_items or len(np.unique(worker[out & shared[item]])) < 2:
        return None
    q = ceiling(label, p_out[item], k, z, above_chance)
    if q is not None and np.isnan(q) and order is not None:
        k = unbiased(item, order, inside, k, n_items)
        if k.sum() >= min_items:
            again = ceiling(label, p_out[item], k, z, above_chance)
            q = q if again is None else again
    return q


def unbiased(
    item: np.ndarray, order: np.ndarray, inside: np.ndarray, k: np.ndarray, n_items: int
) -> np.ndarray:
    """Of the member votes `k`, the group's first vote on an item that an outside vote came
    to first. Adaptive stopping asks for more votes *because* of the answers so far (two "yes"
    on a negative at 5% positives), so the members' votes on the items the outside saw are
    mostly their mistakes, and copiers' later votes repeat the answer that chose the item:
    honest or copying, they can measure near chance. An item the outside voted on before any
    member was chosen by the outside's answers alone: under independence a member's answer
    there is an unbiased draw of their accuracy, and a copier's a draw of the sheet's. (Only a
    fallback: on fewer votes it is the weaker test where the bias does not hide the group.)"""
    big = np.iinfo(np.int64).max
    first_out = np.full(n_items, big)
    np.minimum.at(first_out, item[~inside], order[~inside])
    first_in = np.full(n_items, big)
    np.minimum.at(first_in, item[inside], order[inside])
    return k & (order > first_out[item]) & (order == first_in[item])


def ceiling(
    label: np.ndarray, p_item: np.ndarray, k: np.ndarray, z: float, above_chance: float
) -> float | None:
    """`outside_ceiling` on the member votes `k` (p_item: each vote's item's outside P(yes))."""
    pk = p_item[k]
    agree = float(np.where(label[k] == 1, pk, 1 - pk).mean())
    # How often a label drawn from the outside posterior matches the truth, if the posterior is
    # calibrated: the soft agreement above is a * r + (1 - a) * (1 - r). (The mean of
    # max(p, 1 - p) would be right for a hard label; here it made 0.9-accurate workers look
    # 0.68-accurate, and honest groups look like copiers.)
    r = float((pk * pk + (1 - pk) * (1 - pk)).mean())
    if r <= 0.55:
        return None
    se = float(np.sqrt(max(agree * (1 - agree), 0.01) / k.sum()) / (2 * r - 1))
    a = (agree - (1 - r)) / (2 * r - 1)
    if a - z * se <= above_chance:
        # The members agree with the outside about as often as chance, or less: on a few dozen
        # items a fit of spam and near-chance votes can be confident and wrong (the demo's
        # careful workers agreed 38% with one). Such a measurement says nothing: NaN, the fixed
        # ceiling then.
        return float("nan")
    a = float(np.clip(a + z * se, 0.5, 0.999))
    return a * a + (1 - a) * (1 - a)
