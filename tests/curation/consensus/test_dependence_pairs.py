"""Copying pairs (curation/consensus/dependence_pairs.py) and an outside of one worker."""

from __future__ import annotations

import numpy as np

from curation.consensus.dependence import dependent_groups


def _crowd(
    seed: int, n: int, votes: int, prev: float, accs: list[float], copiers: int
) -> tuple[np.ndarray, ...]:
    """(item, worker, label, truth): `votes` of the workers per item; the last `copiers` copy
    one 0.75-right sheet."""
    rng = np.random.default_rng(seed)
    truth = (rng.random(n) < prev).astype(np.int64)
    sheet = np.where(rng.random(n) < 0.75, truth, 1 - truth)
    rows = []
    for i in range(n):
        for w in rng.choice(len(accs), votes, replace=False):
            own = int(truth[i] if rng.random() < accs[w] else 1 - truth[i])
            rows.append((i, int(w), int(sheet[i]) if w >= len(accs) - copiers else own))
    it, w, lab = (np.array(c, dtype=np.int64) for c in zip(*rows, strict=True))
    return it, w, lab, truth


def test_a_pair_the_split_clusters_miss_is_tested_on_all_its_co_votes() -> None:
    # Two of five copy a sheet, three votes per item, 200 items: on the half the clusters form
    # on, the pair's cluster takes in a careful worker and falls short; tested on its own, on
    # every co-vote, at alpha / 10 pairs and the 85% floor, the pair is plain.
    it, w, lab, _ = _crowd(1, 200, 3, 0.25, [0.92] * 5, copiers=2)
    kw = {"min_evidence": 3.0, "measure": True}
    assert dependent_groups(it, w, lab, 200, 5, pairs=False, **kw) == []
    assert [g.tolist() for g in dependent_groups(it, w, lab, 200, 5, **kw)] == [[3, 4]]


def test_careful_pairs_with_many_co_votes_are_no_copiers() -> None:
    # Every worker votes on every item: each pair co-votes 1,500 times. Two 0.98-accurate
    # workers agree 96%, above the 85% floor: their accuracy measured against the others
    # raises the ceiling. Eight 0.95 workers: 28 pairs, none called copying.
    for accs in ([0.98, 0.98, 0.75], [0.99, 0.99, 0.99], [0.95] * 8):
        for prev in (0.05, 0.5):
            for seed in range(3):
                it, w, lab, _ = _crowd(seed, 1500, min(len(accs), 3), prev, accs, copiers=0)
                found = dependent_groups(it, w, lab, 1500, len(accs), measure=True)
                assert found == [], (accs, prev, seed)


def test_an_outside_of_one_worker_measures_nothing() -> None:
    # Four 0.98-accurate annotators and one at 0.6, everyone on every item. Measured against the
    # one (whose accuracy its own votes cannot show: the prior sets it), the four looked like
    # copiers of one sheet; and each pair, measured against an outside that weighed the four's
    # failed cluster as one source, looked like a copying pair.
    for prev in (0.05, 0.5):
        for seed in range(3):
            it, w, lab, _ = _crowd(seed, 1500, 5, prev, [0.98] * 4 + [0.6], copiers=0)
            assert dependent_groups(it, w, lab, 1500, 5, measure=True) == [], (prev, seed)


def test_copiers_of_a_poor_sheet_among_excellent_workers_are_still_found() -> None:
    # The same crowd shape, but workers 2-4 copy a 0.75 sheet: the outside of the copiers'
    # cluster is two 0.98 workers, enough to measure the sheet as poor.
    it, w, lab, _ = _crowd(0, 1500, 5, 0.25, [0.98] * 5, copiers=3)
    groups = dependent_groups(it, w, lab, 1500, 5, measure=True)
    assert [g.tolist() for g in groups] == [[2, 3, 4]]
