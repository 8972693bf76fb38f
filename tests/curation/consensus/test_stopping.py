"""The cost-based stopping rule on hand-computed cases (stopping_tables.json)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from curation.consensus.base import Votes
from curation.consensus.stopping import plan_stops
from curation.consensus.worker_aware import WorkerAwareConsensus

TABLES = json.loads((Path(__file__).parent / "stopping_tables.json").read_text())


def _clear_item(prior: float, coin: float, yes: int, no: int) -> np.ndarray:
    """log P(votes, class, difficulty) of one item under a one-coin model without ambiguity."""
    comp = np.full((1, 2, 2), -np.inf)
    comp[0, 1, 0] = np.log(prior) + yes * np.log(coin) + no * np.log1p(-coin)
    comp[0, 0, 0] = np.log1p(-prior) + yes * np.log1p(-coin) + no * np.log(coin)
    return comp


@pytest.mark.parametrize("case", TABLES["cases"], ids=lambda c: c["name"])
def test_plan_stops_by_hand(case: dict) -> None:
    comp = _clear_item(case["prior"], case["coin"], case.get("yes", 0), case.get("no", 0))
    coin = case["coin"]
    p_yes = np.array([[1 - coin, 1 - coin], [coin, coin]])
    plan = plan_stops(comp, p_yes, np.array([case["horizon"]]), case["fp"], case["fn"], 0.997)
    assert plan.stop.tolist() == [case["stop"]]
    assert plan.accept.tolist() == [case["accept"]]
    assert plan.run.tolist() == [case["run"]]
    assert plan.p[0] == pytest.approx(case["p"], abs=1e-12)


def test_plan_stops_many_items_at_once_match_one_by_one() -> None:
    # Items with different evidence and horizons solved together give each item's own answer.
    p_yes = np.array([[0.1, 0.3], [0.9, 0.7]])
    rng = np.random.default_rng(3)
    comp = np.log(rng.dirichlet(np.ones(4), size=12)).reshape(12, 2, 2)
    horizon = rng.integers(0, 9, size=12)
    together = plan_stops(comp, p_yes, horizon, 400.0, 150.0, 0.997)
    for i in range(12):
        alone = plan_stops(comp[i : i + 1], p_yes, horizon[i : i + 1], 400.0, 150.0, 0.997)
        assert alone.stop[0] == together.stop[i] and alone.run[0] == together.run[i]
        assert alone.accept[0] == together.accept[i]
    assert (together.stop[horizon == 0]).all()


def test_worker_aware_cost_rule_by_hand() -> None:
    case = TABLES["worker_aware"]
    v = Votes.from_tuples([tuple(r) for r in case["votes"]], items=case["items"])
    seen = np.array([case["gold"][w][0] for w in v.worker_keys], float)
    corr = np.array([case["gold"][w][1] for w in v.worker_keys], float)
    m = WorkerAwareConsensus(
        prior=case["prior"],
        n_iter=0,
        difficulty=False,
        max_votes=case["max_votes"],
        fp_cost=case["fp"],
        fn_cost=case["fn"],
    ).fit(v, seen, corr)
    assert m.decisions_.tolist() == case["decisions"]
    assert m.needs_[:2].tolist() == case["needs_xy"]
    np.testing.assert_allclose(m.p_yes_[:2], case["p_yes_xy"], atol=1e-12)
    # An item without votes is asked for at most first_votes.
    assert 1 <= m.needs_[2] <= 2
    # A hand label closes an item whatever its votes say.
    m2 = WorkerAwareConsensus(
        prior=case["prior"], n_iter=0, difficulty=False, fp_cost=1000.0, fn_cost=1000.0
    ).fit(v, seen, corr, known=np.array([-1, 1, -1]))
    assert m2.decisions_[1] == "accept" and m2.needs_[1] == 0


def test_worker_aware_costs_come_in_pairs() -> None:
    with pytest.raises(ValueError, match="both"):
        WorkerAwareConsensus(fp_cost=100.0)
