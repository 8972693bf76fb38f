"""The robust consensus's mechanisms, each on a small deterministic crowd that breaks without it."""

from __future__ import annotations

import numpy as np
import pytest

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
    model.cast_ = len(rows)  # type: ignore[attr-defined]
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


@pytest.mark.slow
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


def test_pooled_prior_saves_votes_on_a_careful_crowd() -> None:
    # Forty careful annotators: the generic 0.75 prior would ask every item for votes their
    # measured skill makes unnecessary until each one's own record builds.
    truth = (np.random.default_rng(13).random(300) < 0.25).astype(np.int64)
    on = _loop(truth, [0.93] * 40, seed=4)
    off = _loop(truth, [0.93] * 40, seed=4, pooled_prior=False)
    assert on.prior_accuracy_ > 0.85 and off.prior_accuracy_ == off.base_accuracy
    assert on.cast_ < 0.92 * off.cast_  # type: ignore[attr-defined]
    for m in (on, off):
        acc = m.decisions_ == ACCEPT
        assert (acc & (truth == 1)).sum() / acc.sum() >= 0.99


def test_pooled_prior_is_there_before_anyone_is_measured() -> None:
    # Round one of a 40-worker crowd: 2 votes per item, ~5 per worker, nobody at min_evidence.
    # Their agreement (one shared coin) already says the crowd is careful.
    rng = np.random.default_rng(8)
    n, nw = 300, 40
    truth = (rng.random(n) < 0.25).astype(np.int64)
    rows = []
    for i in range(n):
        for w in rng.choice(nw, 2, replace=False):
            rows.append((i, int(w), int(_answer(rng, truth[i : i + 1], 0.93)[0])))
    votes = _votes(rows, n, nw)
    votes.order = np.arange(len(rows))
    early = RobustConsensus(min_evidence=40).fit(votes)
    late = RobustConsensus(min_evidence=40, pooled_early=False).fit(votes)
    assert (early.current_votes_ < early.min_evidence).all()
    assert early.prior_accuracy_ > 0.85 and late.prior_accuracy_ == late.base_accuracy
    assert early.needs_.sum() < late.needs_.sum()


def test_cost_stopping_prices_errors_against_the_goals() -> None:
    # The same settings at 5% and at 50% positives: the prices of a false accept and a false
    # reject are c / ((1 - T) pi) and c / ((1 - R) pi), so what an item at its cap is decided
    # as depends on p and the goals, not on pi; and a 5%-prevalence item with one early "no"
    # among careful workers keeps asking instead of being rejected after two votes.
    from curation.consensus.robust_stop import cost_plan

    rng = np.random.default_rng(6)
    n, nw = 1000, 20
    found = {}
    for share in (0.05, 0.5):
        truth = (rng.random(n) < share).astype(np.int64)
        truth[0] = 1
        rows = [(0, 0, 1), (0, 1, 0)]
        for i in range(1, n):
            for w in rng.choice(nw, 3, replace=False):
                rows.append((i, int(w), int(_answer(rng, truth[i : i + 1], 0.92)[0])))
        votes = _votes(rows, n, nw)
        votes.order = np.arange(len(rows))
        m = RobustConsensus().fit(votes)
        assert abs(m.prevalence_ - share) < 0.03
        if share == 0.05:
            assert m.decisions_[0] == UNDECIDED and m.needs_[0] > 0
        # Every item at its cap (no further votes allowed): decided by p against the goals.
        capped = RobustConsensus(max_votes=3).fit(votes)
        dec, _ = cost_plan(capped, capped.p_yes_, np.full(n, 3), np.full(n, -1), None)
        p = capped.p_yes_
        mid = (p > capped.reject_at_) & (p < capped.accept_at_)
        found[share] = (p[mid], dec[mid])
    lo = max(p[d == ACCEPT].min(initial=1) for p, d in found.values() if (d == ACCEPT).any())
    hi = min(p[d == REJECT].max(initial=0) for p, d in found.values() if (d == REJECT).any())
    assert hi < lo  # one accept threshold for both shares
    assert ((p < 1) & (p > 0)).any()
    fewer = RobustConsensus(stopping="bounds").fit(votes)
    assert fewer.stopping == "bounds"


def test_capped_items_are_settled_within_the_set_budget() -> None:
    # 400 clear items with 3 votes of careful workers; 30 ambiguous ones reached the cap (8
    # votes) at 5 yes / 3 no. The set's budgets (0.3% of the ~100 positives as false accepts,
    # 2% as false rejects) settle some of them; the rest stay insufficient_crowd.
    rng = np.random.default_rng(21)
    n, hard = 430, 30
    truth = np.r_[(rng.random(n - hard) < 0.25).astype(np.int64), np.ones(hard, np.int64)]
    rows = []
    for i in range(n - hard):
        for w in rng.choice(10, 3, replace=False):
            rows.append((i, int(w), int(_answer(rng, truth[i : i + 1], 0.95)[0])))
    for i in range(n - hard, n):
        for j, w in enumerate(rng.choice(10, 8, replace=False)):
            rows.append((i, int(w), int(j < 5)))
    votes = _votes(rows, n, 10)
    votes.order = np.arange(len(rows))
    # settle is the "bounds" stopping's way with capped items ("cost" prices them instead).
    on = RobustConsensus(max_votes=8, stopping="bounds").fit(votes, eligible=np.full(n, 10))
    off = RobustConsensus(max_votes=8, settle_stuck=False, stopping="bounds").fit(
        votes, eligible=np.full(n, 10)
    )
    stuck_off = (off.decisions_[n - hard :] == INSUFFICIENT).sum()
    stuck_on = (on.decisions_[n - hard :] == INSUFFICIENT).sum()
    assert stuck_off >= hard // 2
    assert 0 < stuck_on < stuck_off  # the budget settles some, not all
    budget = (1 - on.target_precision) * on.prevalence_ * n * on.settle_slack
    assert (1 - on.p_yes_[on.decisions_ == ACCEPT]).sum() <= budget + 1e-9
    fn_budget = (1 - on.target_recall) * on.prevalence_ * n
    settled_no = (on.decisions_ == REJECT) & (off.decisions_ == INSUFFICIENT)
    assert on.p_yes_[on.decisions_ == REJECT].sum() <= fn_budget or not settled_no.any()
    assert not (on.decisions_[n - hard :] == UNDECIDED).any()


def test_hard_image_shrink_has_a_floor() -> None:
    # 10% of the images are coin flips even for careful workers and got 8 votes each: the
    # maximum-likelihood shrink of hard images then sits near 0 ("hard = pure noise"), so no run
    # of votes can ever decide an item the model suspects is hard. The floor keeps it >= 0.25.
    rng = np.random.default_rng(1)
    n, nw = 400, 20
    truth = (rng.random(n) < 0.25).astype(np.int64)
    amb = rng.random(n) < 0.1
    rows = []
    for i in range(n):
        for w in rng.choice(nw, 8 if amb[i] else 3, replace=False):
            acc = 0.5 if amb[i] else 0.92
            rows.append((i, int(w), int(_answer(rng, truth[i : i + 1], acc)[0])))
    votes = _votes(rows, n, nw)
    votes.order = np.arange(len(rows))
    off = RobustConsensus(min_shrink=0.0, shrink_prior=0.0).fit(votes, eligible=np.full(n, nw - 8))
    on = RobustConsensus(min_shrink=0.25, shrink_prior=0.0).fit(votes, eligible=np.full(n, nw - 8))
    assert off.fit_.hard_shrink < 0.25 <= on.fit_.hard_shrink + 1e-9
    assert (on.decisions_ == INSUFFICIENT).sum() < (off.decisions_ == INSUFFICIENT).sum()


def test_shrink_prior_keeps_the_hard_images_shrink_off_zero() -> None:
    # Three suspected-hard positives with one yes and one no each (six contested votes): the
    # maximum-likelihood shrink is exactly 0 ("hard = coin flip"), after which an item the
    # model suspects is hard needs ~7 unanimous votes. The Beta prior (strength 8) keeps it off 0
    # until many hard votes say so (240 coin-flip votes: <= 0.15).
    from curation.consensus.robust_em import _fit_lambda

    item = np.repeat(np.arange(3), 2)
    vw = np.arange(6)
    yes = np.tile([True, False], 3)
    resp = np.zeros((6, 2, 2))
    resp[:, 1, 1] = 1.0  # each vote's item: good and hard
    sens = spec = np.full(6, 0.92)
    args = (item, vw, yes, np.ones(6), resp, sens, spec, 6, 0.95, 0.0)
    assert _fit_lambda(*args, 0.0) == 0.0
    assert 0.3 <= _fit_lambda(*args, 8.0) <= 0.6
    many = (
        np.tile(item, 40),
        np.tile(vw, 40),
        np.tile(yes, 40),
        np.ones(240),
        np.tile(resp, (40, 1, 1)),
    )
    assert _fit_lambda(*many, sens, spec, 6, 0.95, 0.0, 8.0) <= 0.15


def test_precision_slack_relaxes_with_the_items_fitted() -> None:
    # The accept bound's slack is for coins fitted on a few hundred items; on 2,000 the
    # posteriors are calibrated, and the bound moves toward the target itself.
    rng = np.random.default_rng(11)
    n, nw = 2000, 12
    truth = (rng.random(n) < 0.25).astype(np.int64)
    accs = rng.uniform(0.7, 0.97, nw)
    rows = []
    for i in range(n):
        for w in rng.choice(nw, 4, replace=False):
            rows.append((i, int(w), int(_answer(rng, truth[i : i + 1], accs[w])[0])))
    votes = _votes(rows, n, nw)
    nominal = 1 - 0.5 * (1 - 0.997)
    on = RobustConsensus(stopping="bounds").fit(votes)
    off = RobustConsensus(stopping="bounds", slack_items=1e18).fit(votes)
    assert off.accept_at_ == pytest.approx(nominal)
    assert on.accept_at_ == pytest.approx(1 - (1 - 0.5 * np.sqrt(0.1)) * 0.003)
    mid = (on.p_yes_ >= on.accept_at_) & (on.p_yes_ < off.accept_at_)
    assert mid.any()
    assert (on.decisions_[mid] == ACCEPT).all() and not (off.decisions_[mid] == ACCEPT).any()
    few = [r for r in rows if r[0] < 150]
    small = RobustConsensus(stopping="bounds").fit(_votes(few, 150, nw))
    assert small.accept_at_ == pytest.approx(nominal)
