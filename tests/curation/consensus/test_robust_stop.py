"""Robust consensus stopping: accepts under the bound stay within the set's precision budget."""

from __future__ import annotations

import numpy as np

from curation.consensus.base import Votes
from curation.consensus.robust import GoldAnswers, RobustConsensus


def test_accepts_under_the_bound_keep_the_set_within_its_precision() -> None:
    # The cost rule accepts an item under the accept bound when its next votes cost more than
    # its share of a false accept; in a weak crowd (0.75 annotators) that took the accepted
    # set, by its own posteriors, to 0.9946 expected precision (target 0.997). The budget keeps
    # the likeliest of those accepts and asks the rest for more votes.
    rng = np.random.default_rng(5)
    n, nw, k = 300, 8, 7
    truth = (rng.random(n) < 0.5).astype(np.int64)
    items = np.repeat(np.arange(n), k)
    workers = np.concatenate([rng.choice(nw, k, replace=False) for _ in range(n)])
    labels = np.where(rng.random(len(items)) < 0.75, truth[items], 1 - truth[items])
    votes = Votes(
        item=items,
        worker=workers,
        label=labels,
        n_items=n,
        n_workers=nw,
        order=np.arange(len(items)),
    )
    gw = np.repeat(np.arange(nw), 12)
    gold = GoldAnswers(gw, (rng.random(len(gw)) < 0.75).astype(np.int64), np.zeros(len(gw), int))

    def fit(budget: bool) -> RobustConsensus:
        m = RobustConsensus(accept_budget=budget)
        return m.fit(votes, gold, eligible=np.full(n, 1))

    def expected_false_share(m: RobustConsensus) -> float:
        acc = m.decisions_ == "accept"
        return float((1 - m.p_yes_[acc]).sum() / max(int(acc.sum()), 1))

    off, on = fit(False), fit(True)
    assert expected_false_share(off) > 1 - off.target_precision  # the overspend, without
    assert (on.decisions_ == "accept").sum() > 0
    assert expected_false_share(on) <= 1 - on.target_precision
    cut = (off.decisions_ == "accept") & (on.decisions_ != "accept")
    assert cut.any() and (on.needs_[cut] > 0).all()  # asked for more votes, not dropped
