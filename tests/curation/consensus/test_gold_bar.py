"""The gold bar (curation.consensus.crowd.under_gold_bar): a test in a small crowd, a point estimate in a big one."""

from __future__ import annotations

import numpy as np

from curation.consensus.crowd import under_gold_bar
from imnet.core.settings import Settings

S = Settings()
BAR, MIN_SEEN, ALPHA, CROWD = (
    S.mturk_min_worker_gold,
    S.mturk_min_gold_seen,
    S.mturk_gold_bar_alpha,
    S.mturk_gold_bar_crowd,
)


def _bar(seen: list[int], correct: list[int], others: int = 0) -> list[bool]:
    out = under_gold_bar(np.array(seen), np.array(correct), BAR, MIN_SEEN, ALPHA, CROWD, others)
    return out.tolist()


def test_a_small_crowd_shuts_out_only_what_the_test_shows() -> None:
    # 4 of 6 (a 0.9 worker's bad luck, P 0.11) stays; 2 of 6 goes; 5 of 10 is not yet proof.
    assert _bar([6, 6, 10, 10, 5], [4, 2, 5, 4, 0]) == [False, True, False, True, False]


def test_a_big_crowd_applies_the_bar_to_the_point_estimate() -> None:
    # With CROWD workers left after it, 4 of 6 < 0.75 is enough, as before the test.
    assert _bar([6, 6, 10, 10, 5], [4, 2, 5, 4, 0], others=CROWD) == [True, True, True, True, False]


def test_the_point_estimate_only_while_enough_workers_are_left() -> None:
    # CROWD + 1 measured workers, two under the bar's point estimate: CROWD - 1 would be left,
    # so only the test decides (the 4-of-6 worker stays, the 1-of-6 one goes).
    seen = [6] * (CROWD + 1)
    correct = [6] * (CROWD - 1) + [4, 1]
    out = _bar(seen, correct)
    assert out[-2:] == [False, True] and not any(out[:-2])
    # One more worker not yet measured: CROWD are left, and the point estimate applies.
    assert _bar(seen, correct, others=1)[-2:] == [True, True]


def _shut_out(accuracy: float, crowds: int, checks: int, point: bool, seed: int) -> int:
    """How many workers at `accuracy`, in `crowds` crowds of 14 (`imnet demo`'s careful
    workers), the bar shuts out at some look over `checks` gold answers each, looked at after
    each answer (as collect does every round); `point`: in a crowd big enough for the point
    estimate (CROWD more workers, all above the bar)."""
    rng = np.random.default_rng(seed)
    right = np.cumsum(rng.random((crowds, 14, checks)) < accuracy, axis=2)
    out = np.zeros((crowds, 14), bool)
    others = CROWD if point else 0
    for c in range(crowds):
        for n in range(MIN_SEEN, checks + 1):
            seen = np.full(14, n)
            out[c] |= under_gold_bar(seen, right[c, :, n - 1], BAR, MIN_SEEN, ALPHA, CROWD, others)
    return int(out.sum())


def test_careful_workers_survive_bad_luck_where_the_point_estimate_lost_them() -> None:
    # 30 crowds of 14 simulated 0.9 workers, 40 checks each: the point estimate loses about one
    # in five (0-3 of `imnet demo`'s 14 careful workers per seed); the test about one in 500.
    assert _shut_out(0.9, 30, 40, point=True, seed=1) >= 50
    assert _shut_out(0.9, 30, 40, point=False, seed=1) <= 4


def test_coin_flippers_still_go_in_a_small_crowd() -> None:
    assert _shut_out(0.5, 30, 40, point=False, seed=2) >= 380
