"""Dependent workers (curation/consensus/dependence.py): copiers found, honest workers left alone."""

from __future__ import annotations

import numpy as np
import pytest

from curation.consensus.dependence import dependent_groups


def _answer(rng: np.random.Generator, truth: np.ndarray, acc: float) -> np.ndarray:
    return np.where(rng.random(len(truth)) < acc, truth, 1 - truth)


def test_peeling_finds_copiers_in_a_large_crowd() -> None:
    # 20 copiers of one 0.75 sheet among 30 honest 0.92 annotators, 4 votes per item: each pair
    # co-votes on a handful of items, greedy merging pulls honest workers into the copiers'
    # cluster and their disagreements fail the test for the whole cluster unless it is peeled.
    # (Peeling reads one quarter of the items and tests on another: 600 items, 3 synsets.)
    rng = np.random.default_rng(9)
    n, nw, nc = 600, 50, 20
    truth = (rng.random(n) < 0.25).astype(np.int64)
    sheet = np.where(rng.random(n) < 0.75, truth, 1 - truth)
    rows = []
    for i in range(n):
        for w in rng.choice(nw, 4, replace=False):
            honest = int(_answer(rng, truth[i : i + 1], 0.92)[0])
            rows.append((i, int(w), int(sheet[i]) if w < nc else honest))
    it, w, lab = (np.array(c, dtype=np.int64) for c in zip(*rows, strict=True))
    assert dependent_groups(it, w, lab, n, nw, peel=False) == []
    (group,) = dependent_groups(it, w, lab, n, nw)
    assert (group < nc).sum() >= 15 and (group < nc).mean() >= 0.9


def test_a_sparse_crowd_of_careful_workers_is_no_group() -> None:
    # 500 careful workers (10% at chance), 5 votes per item, 200 items: each pair co-votes
    # once or twice, greedy merging makes one big cluster, and peeling it by its test-half
    # disagreements deleted exactly the disagreements the test counts: a false group of ~200
    # in 51 of 100 such synsets.
    rng = np.random.default_rng(0)
    n, nw = 200, 500
    acc = np.where(rng.random(nw) < 0.1, 0.5, 0.9)
    for seed in range(6):
        truth = (rng.random(n) < 0.25).astype(np.int64)
        w = np.array([rng.choice(nw, 5, replace=False) for _ in range(n)]).ravel()
        it = np.repeat(np.arange(n), 5)
        lab = np.where(rng.random(len(it)) < acc[w], truth[it], 1 - truth[it])
        assert dependent_groups(it, w, lab, n, nw, min_evidence=3.0, measure=True) == [], seed


def _five(seed: int, accs: list[float], copiers: int, n: int = 300) -> tuple[np.ndarray, ...]:
    """Five workers, three votes per item; the last `copiers` copy one 0.75-right sheet."""
    rng = np.random.default_rng(seed)
    truth = (rng.random(n) < 0.25).astype(np.int64)
    sheet = _answer(rng, truth, 0.75)
    rows = []
    for i in range(n):
        for w in rng.choice(5, 3, replace=False):
            own = int(_answer(rng, truth[i : i + 1], accs[w])[0])
            rows.append((i, int(w), int(sheet[i]) if w >= 5 - copiers else own))
    return tuple(np.array(c, dtype=np.int64) for c in zip(*rows, strict=True))


def test_a_copying_pair_in_a_five_worker_crowd_is_found_by_measured_accuracy() -> None:
    # Two of five copy a sheet right on 75% of images (it passes gold): ~45 co-votes per half.
    # Independent 0.75-accurate workers would agree ~62%; the fixed 85% ceiling needs ~57
    # identical test-half answers to tell copying from excellence, the measured one ~20.
    for seed in range(5):
        it, w, lab = _five(seed, [0.92] * 5, copiers=2)
        # The same clusters (RobustConsensus's 3 nats) under the fixed and the measured ceiling
        # (without the test of every pair on all its co-votes, dependence_pairs.py).
        assert dependent_groups(it, w, lab, 300, 5, min_evidence=3.0, pairs=False) == []
        (group,) = dependent_groups(it, w, lab, 300, 5, min_evidence=3.0, measure=True)
        assert group.tolist() == [3, 4]


def test_measured_accuracy_finds_no_group_among_honest_workers() -> None:
    for seed in range(6):
        for accs in ([0.92] * 5, [0.75] * 5, [0.98, 0.98, 0.98, 0.75, 0.75]):
            it, w, lab = _five(seed, accs, copiers=0, n=400)
            found = dependent_groups(it, w, lab, 400, 5, min_evidence=3.0, measure=True)
            assert found == [], (seed, accs)


def test_the_outside_counts_other_clusters_as_one_source(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # 20 copiers of a 0.75 sheet among 30 honest 0.92 annotators, 10,000 items, 4 votes each.
    # Two honest workers (22, 39) happen to agree on all 45 items they share. Measured against
    # an outside that counts the 20 copiers as 20 sources, the fit follows the sheet, the pair
    # looks 0.75-accurate, and 45 agreements in a row look like copying.
    from curation.consensus import dependence

    rng = np.random.default_rng(0)
    n, nw, nc = 10_000, 50, 20
    truth = (rng.random(n) < 0.5).astype(np.int64)
    sheet = np.where(rng.random(n) < 0.75, truth, 1 - truth)
    w = np.array([rng.choice(nw, 4, replace=False) for _ in range(n)]).ravel()
    it = np.repeat(np.arange(n), 4)
    honest = np.where(rng.random(len(it)) < 0.92, truth[it], 1 - truth[it])
    lab = np.where(w < nc, sheet[it], honest)
    kw = {"min_evidence": 3.0, "measure": True}
    groups = dependence.dependent_groups(it, w, lab, n, nw, **kw)
    assert [g.tolist() for g in groups] == [list(range(nc))]
    monkeypatch.setattr(dependence, "group_weights", lambda item, *_a: np.ones(len(item)))
    unweighted = dependence.dependent_groups(it, w, lab, n, nw, **kw)
    assert [22, 39] in [g.tolist() for g in unweighted]


def test_spammers_do_not_make_careful_workers_look_like_copiers() -> None:
    # 4 always-no, 4 always-yes and 12 careful workers, 25% positives. Always-no workers agree
    # with each other whatever happens (no evidence of copying), and a one-coin outside fit
    # would call them 75% accurate and measure the careful workers against "no".
    for seed in range(8):
        rng = np.random.default_rng(seed)
        n = 600
        truth = (rng.random(n) < 0.25).astype(np.int64)
        rows = []
        for i in range(n):
            for w in rng.choice(20, 4, replace=False):
                own = int(_answer(rng, truth[i : i + 1], 0.92)[0])
                rows.append((i, int(w), 0 if w < 4 else 1 if w < 8 else own))
        it, w, lab = (np.array(c, dtype=np.int64) for c in zip(*rows, strict=True))
        assert dependent_groups(it, w, lab, n, 20, min_evidence=3.0, measure=True) == [], seed


def _demo_like(seed: int) -> tuple[np.ndarray, ...]:
    """imnet demo's crowd on one small synset: 14 careful, 4 mediocre, a coin flipper and an
    always-yes worker, 32 items, 5 votes each."""
    rng = np.random.default_rng(seed)
    truth = (rng.random(32) < 0.3).astype(np.int64)
    rows = []
    for i in range(32):
        for w in rng.choice(20, 5, replace=False):
            acc = 0.92 if w < 14 else 0.7 if w < 18 else 0.5
            rows.append((i, int(w), 1 if w == 19 else int(_answer(rng, truth[i : i + 1], acc)[0])))
    return tuple(np.array(c, dtype=np.int64) for c in zip(*rows, strict=True))


def test_an_outside_fit_no_better_than_chance_measures_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # On a few dozen items the outside fit can be confident and wrong: careful workers agree
    # with it less than chance, "measure" 0.5-accurate, and then agree "too often".
    from functools import partial

    from curation.consensus import dependence, dependence_outside

    seeds = range(60)
    kw = {"min_evidence": 3.0, "measure": True}
    for seed in seeds:
        it, w, lab = _demo_like(seed)
        assert dependence.dependent_groups(it, w, lab, 32, 20, **kw) == [], seed
    unchecked = partial(dependence_outside.outside_ceiling, above_chance=0.0, min_identified=0)
    monkeypatch.setattr(dependence_outside, "outside_ceiling", unchecked)
    false = [s for s in seeds if dependence.dependent_groups(*_demo_like(s)[:3], 32, 20, **kw)]
    assert len(false) >= 2


def _adaptive(seed: int, copiers: int, n: int = 1000) -> tuple[np.ndarray, ...]:
    """Five workers at 5% positives in an adaptive loop: votes in random worker order, stopping
    after two (or more) identical answers, at most four; the last `copiers` share a sheet right
    on 75% of images, the others are 0.92-accurate. Returns (item, worker, label, order)."""
    rng = np.random.default_rng(seed)
    truth = (rng.random(n) < 0.05).astype(np.int64)
    sheet = _answer(rng, truth, 0.75)
    rows = []
    for i in range(n):
        said: list[int] = []
        for w in rng.permutation(5):
            own = int(_answer(rng, truth[i : i + 1], 0.92)[0])
            said.append(int(sheet[i]) if w >= 5 - copiers else own)
            rows.append((i, int(w), said[-1], len(rows)))
            if len(said) >= 4 or (len(said) >= 2 and len(set(said)) == 1):
                break
    return tuple(np.array(c, dtype=np.int64) for c in zip(*rows, strict=True))


def test_accuracy_is_measured_where_the_outside_chose_the_item() -> None:
    # Items get more votes *because* of the answers so far, so a pair's votes on the items the
    # outside saw are mostly their own mistakes (a sheet's "yes" on a negative): measured
    # there, a 0.75 sheet looks near chance, and the test falls back to the fixed ceiling,
    # which ~50 identical co-votes cannot pass. The group's first vote on items an outside
    # vote came to first is an unbiased draw.
    from curation.consensus import dependence_outside

    def upper(q: float | None) -> float:  # the accuracy whose agreement ceiling is q
        return (1 + np.sqrt(max(2 * q - 1, 0.0))) / 2 if q is not None and q == q else 0.5

    for copiers, acc in ((2, 0.75), (0, 0.92)):
        fair, biased = [], []
        for seed in range(8):
            it, w, lab, t = _adaptive(seed, copiers)
            inside = np.isin(w, [3, 4])
            p_out, seen = dependence_outside.outside_fit(
                it[~inside], w[~inside], lab[~inside], np.ones((~inside).sum()), 1000
            )
            k = inside & seen[it]
            fair_k = dependence_outside.unbiased(it, t, inside, k, 1000)
            fair.append(upper(dependence_outside.ceiling(lab, p_out[it], fair_k, 2.0, 0.55)))
            biased.append(upper(dependence_outside.ceiling(lab, p_out[it], k, 2.0, 0.55)))
        # The upper bound covers the true accuracy on the unbiased votes, not on all of them.
        assert all(u >= acc for u in fair), (copiers, fair)
        if copiers:
            assert sum(u < acc for u in biased) >= 6, biased
    for seed in range(8):
        it, w, lab, t = _adaptive(seed, 2, 300)
        kw = {"min_evidence": 3.0, "measure": True}
        assert [g.tolist() for g in dependent_groups(it, w, lab, 300, 5, **kw, order=t)] == [
            [3, 4]
        ], seed
        it, w, lab, t = _adaptive(seed, 0, 300)
        assert dependent_groups(it, w, lab, 300, 5, **kw, order=t) == [], seed


def _cartel(seed: int, n: int, accs: list[float], copiers: int = 0) -> tuple[np.ndarray, ...]:
    """Four random workers per item, 25% positives; the last `copiers` copy a 0.75 sheet."""
    rng = np.random.default_rng(seed)
    truth = (rng.random(n) < 0.25).astype(np.int64)
    sheet = _answer(rng, truth, 0.75)
    nw = len(accs)
    w = np.array([rng.choice(nw, 4, replace=False) for _ in range(n)]).ravel()
    it = np.repeat(np.arange(n), 4)
    own = np.where(rng.random(len(it)) < np.asarray(accs)[w], truth[it], 1 - truth[it])
    return it, w, np.where(w >= nw - copiers, sheet[it], own)


def test_a_cluster_that_failed_is_tested_again_against_the_groups_found() -> None:
    # 20 copiers among 50. The careful workers' own cluster fails its test, yet measured
    # against an outside that counted it as one source the copiers' cluster read accurate
    # enough to agree as it does; tested again, with only groups found counted as one, it
    # is plain.
    kw = {"min_evidence": 3.0, "measure": True, "pairs": False}
    for n, seed in ((200, 8), (300, 3), (300, 5)):
        it, w, lab = _cartel(seed, n, [0.92] * 50, copiers=20)
        order = np.arange(len(it))
        assert dependent_groups(it, w, lab, n, 50, retry=False, order=order, **kw) == []
        (group,) = dependent_groups(it, w, lab, n, 50, order=order, **kw)
        assert (group >= 30).sum() >= 12 and (group < 30).sum() <= 2, (n, seed, group)


def test_testing_failed_clusters_again_finds_no_group_among_honest_workers() -> None:
    for accs in ([0.92] * 50, [0.92] * 30 + [0.75] * 20, [0.98] * 10 + [0.8] * 20):
        for n in (200, 600):
            for seed in range(4):
                it, w, lab = _cartel(seed, n, accs)
                kw = {"min_evidence": 3.0, "measure": True, "order": np.arange(len(it))}
                assert dependent_groups(it, w, lab, n, len(accs), **kw) == [], (accs, n, seed)
