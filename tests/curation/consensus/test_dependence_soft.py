"""Suspected copying pairs weighed before a test confirms them (curation/consensus/dependence_soft.py)."""

from __future__ import annotations

import numpy as np

from curation.consensus.base import Votes
from curation.consensus.dependence import dependent_groups, group_weights
from curation.consensus.dependence_soft import soft_pairs, vote_weights
from curation.consensus.robust import GoldAnswers, RobustConsensus
from tests.curation.consensus.test_dependence_pairs import _crowd


def test_a_pair_short_of_the_test_is_weighed_by_its_copying_probability() -> None:
    # Two of five copy a sheet, ~35-45 identical co-votes: short of the ~71 the test of every pair
    # needs at alpha / 10 and the 85% floor, but at a 5% prior far more likely copying than not.
    for seed in range(4):
        it, w, lab, _ = _crowd(seed, 130, 3, 0.25, [0.92] * 5, copiers=2)
        assert dependent_groups(it, w, lab, 130, 5, min_evidence=3.0, measure=True) == []
        a, b, rho = soft_pairs(it, w, lab, 130, 5, [], prior=0.05, order=np.arange(len(it)))
        assert list(zip(a.tolist(), b.tolist(), strict=True)) == [(3, 4)], seed
        assert 0.5 < rho[0] <= 1.0
        weight = vote_weights(it, w, 130, 5, [], (a, b, rho))
        both = np.bincount(it, np.isin(w, [3, 4]), 130)[it] == 2
        assert np.allclose(weight[both & np.isin(w, [3, 4])], 1 / (1 + rho[0]))
        assert np.all(weight[~both | ~np.isin(w, [3, 4])] == 1.0)
        assert soft_pairs(it, w, lab, 130, 5, [], prior=0.0)[0].size == 0


def test_careful_and_mediocre_workers_are_not_suspected() -> None:
    # Honest pairs: 0.92 workers agree ~85% (the floor), 0.75 ones ~62%; two 0.98-accurate
    # workers agree 96%, above the floor, and need the measured ceiling.
    for accs in ([0.92] * 5, [0.75] * 5, [0.98, 0.98, 0.98, 0.75, 0.75], [0.98, 0.98, 0.75]):
        for seed in range(4):
            it, w, lab, _ = _crowd(seed, 400, 3, 0.25, accs, copiers=0)
            a, _b, _r = soft_pairs(it, w, lab, 400, len(accs), [], 0.05, order=np.arange(len(it)))
            assert a.size == 0, (accs, seed)


def test_vote_weights_are_group_weights_for_groups() -> None:
    it, w, lab, _ = _crowd(0, 200, 4, 0.25, [0.92] * 6, copiers=3)
    groups = [np.array([3, 4, 5])]
    none = (np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0))
    assert np.array_equal(
        vote_weights(it, w, 200, 6, groups, none), group_weights(it, w, groups, 6)
    )
    # A soft pair beside the group: a vote of 0 on an item with 1 weighs 1 / 1.5, and so does 1's.
    soft = (np.array([0]), np.array([1]), np.array([0.5]))
    got = vote_weights(it, w, 200, 6, groups, soft)
    both = np.bincount(it, np.isin(w, [0, 1]), 200)[it] == 2
    assert np.allclose(got[both & np.isin(w, [0, 1])], 1 / 1.5)
    rest = ~(both & np.isin(w, [0, 1]))
    assert np.array_equal(got[rest], group_weights(it, w, groups, 6)[rest])


def test_a_pair_that_passes_gold_does_not_capture_the_fit() -> None:
    # The copiers answer gold perfectly, the careful workers miss one in twelve; 3 votes per item,
    # 150 items: ~45 identical co-votes, short of the test. Counted as two sources, the pair's
    # identical answers make it the fit's best workers (a sheet right on 75% of images) and, at
    # 5% positives, accept a negative; weighed as the share of one source rho says, neither.
    gaps: dict[float, list[float]] = {0.0: [], 0.05: []}
    false_accepts = dict.fromkeys(gaps, 0)
    for prev in (0.25, 0.05):
        for seed in range(6):
            it, w, lab, truth = _crowd(seed, 150, 3, prev, [0.92] * 5, copiers=2)
            votes = Votes(it, w, lab, n_items=150, n_workers=5, order=np.arange(len(it)))
            gold = GoldAnswers.from_counts(np.full(5, 12), np.array([11, 11, 11, 12, 12]))
            fits = {p: RobustConsensus(dependence_prior=p).fit(votes, gold) for p in gaps}
            if fits[0.05].groups_:
                continue  # the test found the pair: nothing left to weigh softly
            assert len(fits[0.05].soft_pairs_[0]) == 1
            for p, m in fits.items():
                gaps[p].append(m.skills_[3:].mean() - m.skills_[:3].mean())
                false_accepts[p] += int(((m.decisions_ == "accept") & (truth == 0)).sum())
    assert len(gaps[0.0]) >= 8
    assert np.mean(gaps[0.0]) > 0.05  # captured
    assert all(g1 < g0 for g0, g1 in zip(gaps[0.0], gaps[0.05], strict=True))
    assert np.mean(gaps[0.05]) < np.mean(gaps[0.0]) - 0.05
    assert false_accepts[0.0] >= 1 and false_accepts[0.05] == 0
