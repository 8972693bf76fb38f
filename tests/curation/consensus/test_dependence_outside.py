"""The outside a group is measured against (curation/consensus/dependence_outside.py)."""

from __future__ import annotations

import numpy as np

from curation.consensus.dependence_outside import outside_ceiling


def _first_round(seed: int, n: int = 200, nw: int = 50) -> tuple[np.ndarray, ...]:
    """A synset's first round: two votes per item from a crowd of 0.92-accurate workers."""
    rng = np.random.default_rng(seed)
    truth = (rng.random(n) < 0.25).astype(np.int64)
    w = np.concatenate([rng.choice(nw, 2, replace=False) for _ in range(n)])
    it = np.repeat(np.arange(n), 2)
    lab = np.where(rng.random(len(it)) < 0.92, truth[it], 1 - truth[it])
    return it, w, lab


def test_an_outside_that_cannot_identify_its_accuracy_measures_nothing() -> None:
    # 34 of 50 careful workers against the other 16, who voted twice on ~20 items: the
    # outside's fit cannot tell its accuracy from its prevalence, and read the careful workers'
    # accuracy so low that their honest agreement (0.85) looked like copying.
    honest = 0.92**2 + 0.08**2
    low, measured = 0, 0
    for seed in range(10):
        it, w, lab = _first_round(seed)
        group = np.sort(np.random.default_rng(seed + 1000).choice(50, 34, replace=False))
        args = (it, w, lab, np.ones(len(it)), 200, group, np.arange(len(it)))
        assert outside_ceiling(*args) is None
        q = outside_ceiling(*args, min_identified=0)
        if q is not None and q == q:
            measured += 1
            low += q < honest
    assert measured >= 8 and low >= 3, (measured, low)


def test_an_identified_outside_still_measures_a_poor_sheet() -> None:
    # Four votes per item, 20 copiers of a 0.75 sheet among 50: the outside (30 careful workers)
    # votes twice or more on most items, and the copiers measure near the sheet's accuracy.
    rng = np.random.default_rng(3)
    n, nw = 400, 50
    truth = (rng.random(n) < 0.5).astype(np.int64)
    sheet = np.where(rng.random(n) < 0.75, truth, 1 - truth)
    w = np.concatenate([rng.choice(nw, 4, replace=False) for _ in range(n)])
    it = np.repeat(np.arange(n), 4)
    own = np.where(rng.random(len(it)) < 0.92, truth[it], 1 - truth[it])
    lab = np.where(w < 20, sheet[it], own)
    weight = np.ones(len(it))
    q = outside_ceiling(it, w, lab, weight, n, np.arange(20), np.arange(len(it)))
    assert q is not None and q < 0.75, q  # a 0.75 pair agrees 0.625; the bound is a little above
