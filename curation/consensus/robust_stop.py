"""Robust consensus stopping helpers: settle capped items within the set-level budgets; the crowd needed."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from curation.consensus.base import (
    ACCEPT,
    INSUFFICIENT,
    REJECT,
    UNDECIDED,
    class_posterior,
    logit,
)

if TYPE_CHECKING:
    from curation.consensus.robust import RobustConsensus


def settle(
    model: RobustConsensus,
    dec: np.ndarray,
    stuck: np.ndarray,
    p: np.ndarray,
    seen: np.ndarray,
) -> None:
    """Decide items no affordable run can settle, within the set-level goals' budgets (the
    Lagrangian view of stopping.py): the accepted set may hold s (1 - T) pi N expected false
    accepts (s = settle_slack), the rejected one (1 - R) pi N expected positives; what the
    items decided by the bounds already spend is charged first, then stuck items go in by
    posterior, likeliest first. The rest stay insufficient_crowd."""
    pi, n = model.prevalence_, int(seen.sum())
    fp = model.settle_slack * (1 - model.target_precision) * pi * n
    fp -= float((1 - p[dec == ACCEPT]).sum())
    fn = (1 - model.target_recall) * pi * n - float(p[dec == REJECT].sum())
    idx = np.flatnonzero(stuck & seen)
    up = idx[np.argsort(-p[idx])]
    ok = np.cumsum(1 - p[up]) <= fp
    dec[up[ok]] = ACCEPT
    down = idx[np.argsort(p[idx])]
    down = down[dec[down] == UNDECIDED]
    dec[down[np.cumsum(p[down]) <= fn]] = REJECT


def crowd_needed(model: RobustConsensus, p: np.ndarray, total: np.ndarray) -> int | None:
    """Distinct annotators of the measured (typical) skill that the flagged items would need:
    votes so far plus the expected further votes to reach the nearer bound (a drift of one
    expected log-likelihood ratio per vote), at the 90th percentile of flagged items, capped at
    max_votes."""
    flagged = np.flatnonzero(model.insufficient_)
    if not len(flagged):
        return None
    py = model.typical_p_yes()
    hard = model.fit_.resp[flagged][:, :, 1].sum(axis=1)
    lo, hi = logit(model.reject_at_), logit(model.accept_at_)
    lg = logit(p[flagged])
    up = p[flagged] >= model.prevalence_
    kl_pos = kl_neg = 0.0
    for d, share in ((0, 1 - hard), (1, hard)):
        a, b = py[1, d], py[0, d]  # P(yes | good), P(yes | bad)
        kl_pos = kl_pos + share * (a * np.log(a / b) + (1 - a) * np.log((1 - a) / (1 - b)))
        kl_neg = kl_neg + share * (b * np.log(b / a) + (1 - b) * np.log((1 - b) / (1 - a)))
    dist = np.where(up, (hi - lg) / np.maximum(kl_pos, 1e-3), (lg - lo) / np.maximum(kl_neg, 1e-3))
    need = np.maximum(dist, 1.0)
    wanted = total[flagged] + np.ceil(need)
    # No item takes more than max_votes votes: past the cap a bigger crowd changes nothing.
    return int(min(np.ceil(np.quantile(wanted, 0.9)), model.max_votes))


def budget_accepts(
    model: RobustConsensus, dec: np.ndarray, p: np.ndarray, cand: np.ndarray
) -> np.ndarray:
    """The accepts among `cand` (accepted under the accept bound, by the prices) that would
    take the accepted set's expected precision, by its own posteriors, under the target:
    likeliest first, each kept while sum(1 - p) over every accept stays within (1 - T) per
    accept. A price per vote can make a weak crowd's accepts cheaper than its next votes
    long before the set-level goal allows them."""
    ok = (dec == ACCEPT) & ~cand
    spent, n = float((1 - p[ok]).sum()), int(ok.sum())
    idx = np.flatnonzero(cand & (dec == ACCEPT))
    idx = idx[np.argsort(-p[idx], kind="stable")]
    spend = spent + np.cumsum(1 - p[idx])
    allowed = (1 - model.target_precision) * (n + np.arange(1, len(idx) + 1))
    bad = spend > allowed
    out = np.zeros(len(p), dtype=bool)
    if bad.any():
        out[idx[int(np.argmax(bad)) :]] = True
    return out


def cost_plan(
    model: RobustConsensus,
    p: np.ndarray,
    total: np.ndarray,
    known: np.ndarray,
    eligible: np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray]:
    """Decisions and further-vote runs from each item's Bayes-optimal stopping plan
    (stopping.plan_stops), with the vote costs of a false accept and a false reject stated
    against the set-level goals: fp_cost = c_p / ((1 - T) pi), fn_cost = c_r / ((1 - R) pi).
    The budgets of the two constraints are (1 - T) pi N false accepts and (1 - R) pi N false
    rejects, so a multiplier per unit of budget is a price per item; the same c_p, c_r hold at
    5% and at 50% positives. An item the plan stops only because too few eligible workers are
    left (the cap alone would let it go on) and that no bound settles is insufficient_crowd."""
    from curation.consensus.stopping import plan_stops, stop_costs

    t, r = model.target_precision, model.target_recall
    pi = float(np.clip(model.prevalence_, 0.01, 0.99))
    fp, fn = model.cost_precision / ((1 - t) * pi), model.cost_recall / ((1 - r) * pi)
    open_ = known < 0
    room = np.where(open_, np.maximum(model.max_votes - total, 0), 0)
    crowd = room if eligible is None else np.minimum(room, np.asarray(eligible))
    py = model.typical_p_yes()
    comp = model.fit_.comp
    # Accepting costs nothing only above the precision bound (accept_at_), as with "bounds".
    at = model.accept_at_
    plan = plan_stops(comp, py, crowd, fp, fn, at)
    dec = np.full(len(p), UNDECIDED, dtype=object)
    stop = open_ & plan.stop
    short = np.zeros(len(p), dtype=bool)
    limited = np.flatnonzero(stop & (crowd < room))
    if len(limited):
        free = plan_stops(comp[limited], py, room[limited], fp, fn, at)
        # Short of workers: the cap alone would go on, and deciding now costs more than the
        # vote it cannot get (an item a hair under the accept bound is accepted, not flagged).
        acc, rej = stop_costs(p[limited], fp, fn, at)
        short[limited] = ~free.stop & (np.minimum(acc, rej) > 1.0)
    short |= stop & (total == 0)  # nobody left to give it a first vote
    if not (model.current_votes_ >= model.min_evidence).any():
        # Nobody's skill is measured yet (the prior coins may undersell the crowd): every item
        # that can still get votes gets its first ones instead of being given up on.
        cold = open_ & (crowd > 0) & (plan.stop | short) & ~(p >= model.accept_at_)
        cold &= ~(p <= model.reject_at_) | (total == 0)
        short &= ~cold
        plan.stop[cold] = False
        plan.run[cold] = np.maximum(plan.run[cold], model.first_votes)
        stop &= ~cold
    sure_yes, sure_no = p >= model.accept_at_, p <= model.reject_at_
    short &= ~sure_yes & ~sure_no
    go = stop & ~short
    dec[go & plan.accept] = ACCEPT
    dec[go & ~plan.accept] = REJECT
    if model.accept_budget:
        over = budget_accepts(model, dec, p, open_ & go & ~sure_yes)
        # Over the budget: more votes where the crowd can give them, else insufficient_crowd.
        dec[over] = np.where(crowd[over] > 0, UNDECIDED, INSUFFICIENT)
        plan.stop[over & (crowd > 0)] = False
        plan.run[over] = np.maximum(np.minimum(model.batch, crowd[over]), 1)
    if model.settle_stuck:
        # At the vote cap the plan has no choice but to stop: an item still between the bounds
        # there is settled within the goals' budgets (likeliest first), as with "bounds", not
        # by the prices alone (which accept from p ~ 0.84 at 5% positives).
        capped = go & (room == 0) & (total > 0) & ~sure_yes & ~sure_no
        dec[capped] = UNDECIDED
        settle(model, dec, capped, p, open_ & (total > 0))
        dec[capped & (dec == UNDECIDED)] = INSUFFICIENT
    # What the crowd's size stops between the bounds is insufficient_crowd, never settled: the
    # measured skill of a small crowd is too uncertain to spend the goals' budgets on its mid
    # posteriors (a budgeted accept there cost precision in 8-20-worker crowds at 5% positives).
    dec[short & (dec == UNDECIDED)] = INSUFFICIENT
    run = np.where(open_ & ~plan.stop, plan.run, 0)
    # An item no one has voted on yet is never decided from the prior alone.
    fresh = open_ & (total == 0) & ~short
    dec[fresh] = UNDECIDED
    run[fresh] = np.maximum(run[fresh], 1)
    return dec, run


def bounds_plan(
    model: RobustConsensus,
    p: np.ndarray,
    total: np.ndarray,
    known: np.ndarray,
    eligible: np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray]:
    """stopping="bounds": accept / reject at the posterior bounds; an item asks for the fewest
    unanimous votes of a typical worker that could take it across one, and is
    insufficient_crowd when no run within its horizon (cap, eligible workers) can (items the
    cap stops are settled within the set's budgets first, `settle`)."""
    ni = len(p)
    open_ = known < 0
    room = np.maximum(model.max_votes - total, 0)
    horizon = room if eligible is None else np.minimum(room, np.asarray(eligible))
    dec = np.full(ni, UNDECIDED, dtype=object)
    voted = total > 0
    dec[open_ & voted & (p >= model.accept_at_)] = ACCEPT
    dec[open_ & voted & (p <= model.reject_at_)] = REJECT
    py = model.typical_p_yes()
    step_y, step_n = np.log(py), np.log1p(-py)
    todo = np.flatnonzero(open_ & (dec == UNDECIDED))
    run = np.zeros(ni, dtype=np.int64)
    found = np.zeros(len(todo), dtype=np.int64)
    base = model.fit_.comp[todo]
    for j in range(1, int(horizon[todo].max(initial=0)) + 1):
        ok = j <= horizon[todo]
        hit = (found == 0) & ok
        if not hit.any():
            continue
        py_j = class_posterior(base + j * step_y)
        pn_j = class_posterior(base + j * step_n)
        found[hit & ((py_j >= model.accept_at_) | (pn_j <= model.reject_at_))] = j
    run[todo] = found
    stuck = np.zeros(ni, dtype=bool)
    stuck[todo] = found == 0
    if not (model.current_votes_ >= model.min_evidence).any():
        # Nobody's skill is measured yet (the prior coins may undersell the crowd): give
        # every item that can still get one its first votes instead of giving up on it.
        cold = stuck & (horizon > 0)
        run[cold] = model.first_votes
        stuck &= ~cold
    if model.settle_stuck:
        # Only items the vote cap stops: where the crowd runs out first, the measured skill
        # of a small crowd is too uncertain to spend the goal's budget on its mid posteriors
        # (they stay insufficient_crowd, with the crowd they would need).
        capped = room <= (horizon if eligible is None else np.asarray(eligible))
        settle(model, dec, stuck & capped & (total >= model.max_votes // 2), p, open_ & voted)
        stuck &= dec == UNDECIDED
    dec[stuck] = INSUFFICIENT
    return dec, run
