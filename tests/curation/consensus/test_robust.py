"""The robust consensus's mechanisms, each on a small deterministic crowd that breaks without it."""

from __future__ import annotations

import numpy as np

from curation.consensus.base import ACCEPT, REJECT, UNDECIDED, Votes
from curation.consensus.robust import (
    INSUFFICIENT,
    GoldAnswers,
    RobustConsensus,
    dependent_worker_groups,
    redundant_workers,
    uninformative_workers,
)


def _votes(rows: list[tuple[int, int, int]], n_items: int, n_workers: int) -> Votes:
    it, w, lab = (np.array(c, dtype=np.int64) for c in zip(*rows, strict=True))
    return Votes(item=it, worker=w, label=lab, n_items=n_items, n_workers=n_workers)


def _answer(rng: np.random.Generator, truth: np.ndarray, acc: float) -> np.ndarray:
    return np.where(rng.random(len(truth)) < acc, truth, 1 - truth)


def _loop(truth: np.ndarray, accs: list[float], seed: int, **kw: float) -> RobustConsensus:
    """The pipeline's loop: refit, give each item its `needs_` votes from unused workers."""
    rng = np.random.default_rng(seed)
    n, nw = len(truth), len(accs)
    used = np.zeros((n, nw), bool)
    rows: list[tuple[int, int, int]] = []
    model = RobustConsensus(**kw)
    for _ in range(30):
        votes = _votes(rows, n, nw) if rows else Votes(np.zeros(0), np.zeros(0), np.zeros(0), n, nw)
        model.fit(votes, eligible=(~used).sum(axis=1))
        need = model.needs_
        if not need.any():
            break
        for i in np.flatnonzero(need):
            free = np.flatnonzero(~used[i])
            for w in rng.choice(free, size=min(need[i], len(free)), replace=False):
                used[i, w] = True
                rows.append((i, int(w), int(_answer(rng, truth[i : i + 1], accs[w])[0])))
    return model


def test_drift_is_caught_within_tens_of_votes() -> None:
    # Worker 0 is right 95% of the time for 200 votes, then answers at random for 40 more.
    rng = np.random.default_rng(3)
    n = 240
    truth = (rng.random(n) < 0.3).astype(np.int64)
    rows = []
    for w in range(1, 5):
        rows += [(i, w, int(v)) for i, v in enumerate(_answer(rng, truth, 0.95))]
    drift = np.r_[_answer(rng, truth[:200], 0.95), rng.integers(0, 2, 40)]
    rows += [(i, 0, int(v)) for i, v in enumerate(drift)]
    # Time order: worker 0's votes interleaved in item order, as they were cast.
    votes = _votes(rows, n, 5)
    votes.order = np.r_[np.arange(4 * n), 4 * n + np.arange(n)]
    votes.order = np.where(votes.worker == 0, votes.item * 5 + 4, votes.item * 5 + votes.worker - 1)
    on = RobustConsensus().fit(votes)
    off = RobustConsensus(drift=False).fit(votes)
    assert len(on.changes_[0]) >= 1
    cut_item = (on.changes_[0][0] - 4) // 5
    assert 185 <= cut_item <= 215
    assert on.uninformative_[0] and not on.uninformative_[1:].any()
    assert not off.uninformative_[0]  # lifetime skill still looks fine
    assert uninformative_workers(on) == [0]


def test_colluders_are_merged_into_one_source() -> None:
    # Workers 0-2 copy one answer sheet (70% right) and pass every gold question; 3-5 are honest.
    rng = np.random.default_rng(7)
    n = 400
    truth = (rng.random(n) < 0.25).astype(np.int64)
    sheet = _answer(rng, truth, 0.7)
    rows = []
    for w in range(3):
        rows += [(i, w, int(sheet[i])) for i in range(n)]
    for w in range(3, 6):
        take = rng.random(n) < 0.5
        rows += [
            (i, w, int(v))
            for i, v in zip(np.flatnonzero(take), _answer(rng, truth[take], 0.9), strict=True)
        ]
    votes = _votes(rows, n, 6)
    gold = GoldAnswers.from_counts(np.full(6, 20), np.array([20, 20, 20, 18, 18, 18]))
    on = RobustConsensus().fit(votes, gold)
    off = RobustConsensus(dependence=False).fit(votes, gold)
    assert dependent_worker_groups(on) == [[0, 1, 2]]
    assert redundant_workers(on).sum() == 2
    false_on = ((on.decisions_ == ACCEPT) & (truth == 0)).sum()
    false_off = ((off.decisions_ == ACCEPT) & (truth == 0)).sum()
    assert false_off > 5 * max(false_on, 1)
    honest = RobustConsensus().fit(_votes([r for r in rows if r[1] >= 3], n, 6))
    assert honest.groups_ == []


def test_insufficient_crowd_when_eligible_workers_run_out() -> None:
    # Three careful workers (97% right) voted on items 2-199; items 0 and 1 got a 1-1 split.
    rng = np.random.default_rng(2)
    truth = (rng.random(200) < 0.25).astype(np.int64)
    rows = [(0, 0, 1), (0, 1, 0), (1, 0, 1), (1, 1, 0)]
    for w in range(3):
        rows += [
            (i, w, int(v))
            for i, v in zip(range(2, 200), _answer(rng, truth[2:], 0.97), strict=True)
        ]
    votes = _votes(rows, 200, 3)
    m = RobustConsensus().fit(votes, eligible=np.r_[0, 40, np.zeros(198, int)])
    assert m.groups_ == []
    assert m.decisions_[0] == INSUFFICIENT  # nobody left to settle a 1-1 split
    assert m.decisions_[1] == UNDECIDED and m.needs_[1] > 0  # enough workers left
    assert (np.isin(m.decisions_[2:], [ACCEPT, REJECT])).mean() > 0.9
    assert not (m.decisions_[2:] == UNDECIDED).any()  # nothing waits for votes that cannot come
    assert 0 < m.p_yes_[0] < 1 and m.crowd_needed_ is not None and m.crowd_needed_ > 3
    unlimited = RobustConsensus().fit(votes)
    assert unlimited.decisions_[0] == UNDECIDED and unlimited.needs_[0] > 0


def test_same_settings_hold_at_5_and_50_percent_positives() -> None:
    accs = [0.9] * 20
    rng = np.random.default_rng(11)
    for share in (0.05, 0.5):
        truth = (rng.random(3000) < share).astype(np.int64)
        m = _loop(truth, accs, seed=int(share * 100))
        acc = m.decisions_ == ACCEPT
        assert not (m.decisions_ == UNDECIDED).any()
        assert (acc & (truth == 1)).sum() / truth.sum() >= 0.975
        assert (acc & (truth == 1)).sum() / acc.sum() >= 0.995
        # The reject bound follows the fitted prevalence: fixed bounds tuned at one share lose
        # recall (or votes) at the other.
        pi = m.prevalence_
        assert abs(pi - truth.mean()) < 0.02
        assert np.isclose(m.reject_at_, m.recall_slack * 0.02 * pi / (1 - pi))


def test_uninformative_workers_are_flagged() -> None:
    rng = np.random.default_rng(5)
    n = 300
    truth = (rng.random(n) < 0.3).astype(np.int64)
    kinds = {0: 0.92, 1: 0.92, 2: 0.92, 3: 0.75, 4: 0.55}
    rows = []
    for w, a in kinds.items():
        rows += [(i, w, int(v)) for i, v in enumerate(_answer(rng, truth, a))]
    rows += [(i, 5, 1) for i in range(n)]  # always yes
    rows += [(i, 6, 0) for i in range(n)]  # always no
    m = RobustConsensus().fit(_votes(rows, n, 7))
    assert m.uninformative_.tolist() == [False, False, False, False, True, True, True]
