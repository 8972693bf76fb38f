"""Robust consensus stopping helpers: settle capped items within the set-level budgets; the crowd needed."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from curation.consensus.base import ACCEPT, REJECT, UNDECIDED, logit

if TYPE_CHECKING:
    from curation.consensus.robust import RobustConsensus


def settle(
    model: RobustConsensus, dec: np.ndarray, stuck: np.ndarray, p: np.ndarray, seen: np.ndarray
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
    expected log-likelihood ratio per vote), at the 90th percentile of flagged items."""
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
    return int(np.ceil(np.quantile(wanted, 0.9)))
