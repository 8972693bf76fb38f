"""Cost-based stopping: per item, the Bayes-optimal choice between accepting, rejecting and one more vote.

The goal is set-level: precision >= `target` over the accepted set (ImageNet's 99.7%) and a recall
floor, at the fewest votes. Its Lagrangian (Mueller, Parmigiani, Robert & Rice, "Optimal sample
size for multiple testing: the case of gene expression microarrays", JASA 99, 2004, who derive
Bayesian FDR/FNR decision rules this way; Parameswaran et al., "CrowdScreen: algorithms for
filtering data with humans", SIGMOD 2012, for the crowd-filtering form with a vote cost) splits
into one problem per item:

    minimise  E[votes] + fp_cost * E[FP - (1 - target) * accepted] + fn_cost * E[FN],

so accepting an item at P(good) = p costs fp_cost * (target - p), rejecting it costs
fn_cost * p, and each further vote costs `vote_cost`. That is an optimal stopping problem (Wald &
Wolfowitz 1948: for i.i.d. observations its solution is a sequential probability ratio test);
here it is solved exactly by backward induction over the votes still allowed (`horizon`), with
the further votes coming from a typical worker whose P(yes | class, difficulty) is `p_yes`,
starting from the item's current log joint P(votes, class, difficulty) of the two-level model.

fp_cost and fn_cost are the multipliers of the two constraints: one (fp, fn) pair is one point on
the precision/recall/votes frontier, the same for every synset (bench/consensus_oracle.py finds
them under the simulation; the pipeline reads them from settings). An item may stop at a middle
posterior when no affordable run of votes would settle it (an ambiguous image at its cap): it is
then accepted when fp_cost * (target - p) <= fn_cost * p, as the set-level goal allows.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class StopPlan:
    """Per item: `stop` now?, `accept` if stopping now, and `run`: the fewest further votes after
    which the optimal policy could stop (0 when it stops now)."""

    stop: np.ndarray
    accept: np.ndarray
    run: np.ndarray
    p: np.ndarray


def stop_costs(
    p: np.ndarray, fp_cost: float, fn_cost: float, target: float
) -> tuple[np.ndarray, np.ndarray]:
    """(cost of accepting, cost of rejecting) at P(good) = p."""
    return fp_cost * (target - p), fn_cost * p


def accept_when_stopping(
    p: np.ndarray, fp_cost: float, fn_cost: float, target: float
) -> np.ndarray:
    acc, rej = stop_costs(p, fp_cost, fn_cost, target)
    return acc <= rej


def _posterior(logj: np.ndarray, p_yes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """P(good) and P(next typical vote is yes) from log joints (..., 2 classes, 2 difficulties)."""
    m = logj.max(axis=(-2, -1), keepdims=True)
    w = np.exp(logj - m)
    w /= w.sum(axis=(-2, -1), keepdims=True)
    return w[..., 1, :].sum(axis=-1), (w * p_yes).sum(axis=(-2, -1))


def plan_stops(
    comp: np.ndarray,
    p_yes: np.ndarray,
    horizon: np.ndarray,
    fp_cost: float,
    fn_cost: float,
    target: float,
    vote_cost: float = 1.0,
) -> StopPlan:
    """Solve each item's stopping problem.

    `comp`: (n, 2, 2) log P(item's votes, class c, difficulty d); `p_yes`: (2, 2) P(a typical
    worker says yes | c, d); `horizon`: (n,) further votes allowed (0 = must stop now).
    """
    comp = np.asarray(comp, dtype=float)
    n = comp.shape[0]
    horizon = np.maximum(np.asarray(horizon, dtype=np.int64), 0)
    ly, ln = np.log(p_yes), np.log1p(-p_yes)
    top = int(horizon.max(initial=0))
    # Layer s holds the states after s further votes, j of them yes (j = 0..s).
    go: list[np.ndarray] = [np.zeros((n, 1), bool)] * (top + 1)
    value = np.zeros((n, 1))
    p0 = np.zeros(n)
    for s in range(top, -1, -1):
        j = np.arange(s + 1)
        logj = comp[:, None] + (j[:, None, None] * ly + (s - j)[:, None, None] * ln)[None]
        p, pred = _posterior(logj, p_yes)
        acc, rej = stop_costs(p, fp_cost, fn_cost, target)
        stop = np.minimum(acc, rej)
        if s == top:
            cont = np.full_like(stop, np.inf)
        else:
            # A yes moves j -> j + 1 in layer s + 1, a no keeps j.
            cont = vote_cost + pred * value[:, 1:] + (1 - pred) * value[:, :-1]
        cont = np.where(s < horizon[:, None], cont, np.inf)
        go[s] = cont < stop
        value = np.minimum(stop, cont)
        if s == 0:
            p0 = p[:, 0]
    run = np.zeros(n, dtype=np.int64)
    found = ~go[0][:, 0]
    reach = go[0].copy()  # states still moving on, reachable from the item's current state
    for s in range(1, top + 1):
        nxt = np.zeros((n, s + 1), bool)
        nxt[:, 1:] |= reach
        nxt[:, :-1] |= reach
        hit = ~found & (nxt & ~go[s]).any(axis=1)
        run[hit] = s
        found |= hit
        reach = nxt & go[s]
    return StopPlan(
        stop=~go[0][:, 0],
        accept=accept_when_stopping(p0, fp_cost, fn_cost, target),
        run=run,
        p=p0,
    )
