"""Worker-aware consensus: per-worker two-coin model seeded by gold-question accuracy, with early stopping.

Model: a binary Dawid-Skene model (Dawid & Skene, Applied Statistics 1979) in its "two-coin" form
(Raykar et al., "Learning From Crowds", JMLR 11, 2010): worker w says yes to a good image with
probability sens_w and no to a bad one with probability spec_w; an item's posterior log-odds is
logit(pi) + sum over its votes of log(sens/(1-spec)) for a yes and log((1-sens)/spec) for a no.
Gold questions (MTurk's standard quality control; Snow et al., EMNLP 2008; Oleson et al., HCOMP
2011 "programmatic gold") give each worker a Beta prior on both coins: gold_correct of gold_seen
answers correct, split evenly between the two coins because `worker` only keeps the totals. EM
then refines the coins on all votes (MAP with those priors), so a worker who always says yes
drifts to sens ~ 1, spec ~ 0 and a weight of ~ 0, whatever their gold score said.

Decisions and stopping are as the dynamic consensus (Deng et al., CVPR 2009): accept at posterior
>= threshold, reject at <= 1 - threshold, an item stops getting votes at either or at `max_votes`.
`needs_` is the fewest further votes from a typical worker (the vote-weighted median coin) that
could end the item, at most `batch` per round.
"""

from __future__ import annotations

import math

import numpy as np

from curation.consensus.base import (
    ACCEPT,
    REJECT,
    UNDECIDED,
    YES,
    Aggregator,
    Votes,
    logit,
    sigmoid,
)


class WorkerAwareConsensus(Aggregator):
    """After fit: `sens_`, `spec_`, `skills_` (balanced accuracy) per worker; `prior_`; `p_yes_`;
    `decisions_`; `needs_`; `labels_`, `probas_`."""

    def __init__(
        self,
        threshold: float = 0.997,
        max_votes: int = 10,
        prior: float = 0.25,
        base_accuracy: float = 0.75,
        base_strength: float = 4.0,
        n_iter: int = 100,
        tol: float = 1e-6,
        batch: int = 3,
        reject_below: float | None = None,
    ) -> None:
        self.threshold = threshold
        self.max_votes = max_votes
        self.prior = prior
        self.base_accuracy = base_accuracy
        self.base_strength = base_strength
        self.n_iter = n_iter
        self.tol = tol
        self.batch = batch
        # Stop negatives at P <= reject_below (default 1 - threshold, the symmetric rule).
        self.reject_below = 1.0 - threshold if reject_below is None else reject_below

    def fit(
        self,
        votes: Votes,
        gold_seen: np.ndarray | None = None,
        gold_correct: np.ndarray | None = None,
        known: np.ndarray | None = None,
    ) -> WorkerAwareConsensus:
        """`gold_seen[w]`, `gold_correct[w]` per worker code; `known`: -1 / 0 / 1 per item."""
        if votes.n_classes != 2:
            raise ValueError("worker-aware consensus is for yes/no verification votes")
        nw, ni = votes.n_workers, votes.n_items
        seen = np.zeros(nw) if gold_seen is None else np.asarray(gold_seen, float)
        corr = np.zeros(nw) if gold_correct is None else np.asarray(gold_correct, float)
        corr = np.minimum(corr, seen)
        known = np.full(ni, -1) if known is None else np.asarray(known)
        fixed = known >= 0
        # Beta prior pseudo-counts for each coin: population base + half of the gold evidence.
        a0 = self.base_strength * self.base_accuracy + corr / 2
        b0 = self.base_strength * (1 - self.base_accuracy) + (seen - corr) / 2
        yes = votes.label == YES
        w, it = votes.worker, votes.item
        sens = a0 / (a0 + b0)
        spec = sens.copy()
        pi = self.prior
        for _ in range(self.n_iter):
            lo = self._log_odds(votes, sens, spec, pi)
            r = sigmoid(lo)
            r[fixed] = known[fixed]
            rv = r[it]
            s_num = np.bincount(w, weights=rv * yes, minlength=nw) + a0
            s_den = np.bincount(w, weights=rv, minlength=nw) + a0 + b0
            p_num = np.bincount(w, weights=(1 - rv) * ~yes, minlength=nw) + a0
            p_den = np.bincount(w, weights=1 - rv, minlength=nw) + a0 + b0
            new_sens = np.clip(s_num / s_den, 1e-4, 1 - 1e-4)
            new_spec = np.clip(p_num / p_den, 1e-4, 1 - 1e-4)
            change = max(
                np.abs(new_sens - sens).max(initial=0), np.abs(new_spec - spec).max(initial=0)
            )
            sens, spec = new_sens, new_spec
            voted = np.bincount(it, minlength=ni) > 0
            pi = float(np.clip((r[voted].sum() + 2 * self.prior) / (voted.sum() + 2), 1e-4, 0.9999))
            if change < self.tol:
                break
        self.sens_, self.spec_, self.prior_ = sens, spec, pi
        lo = self._log_odds(votes, sens, spec, pi)
        p = sigmoid(lo)
        p[fixed] = known[fixed]
        self.log_odds_ = lo
        self.p_yes_ = p
        self.probas_ = np.column_stack([1 - p, p])
        self.labels_ = (p >= 0.5).astype(np.int64)
        self.skills_ = (sens + spec) / 2
        total = np.bincount(it, minlength=ni)
        dec = np.full(ni, UNDECIDED, dtype=object)
        dec[(total > 0) & (p >= self.threshold)] = ACCEPT
        dec[(total > 0) & (p <= self.reject_below)] = REJECT
        dec[known == 1] = ACCEPT
        dec[known == 0] = REJECT
        self.decisions_ = dec
        self.needs_ = self._needs(votes, lo, total, dec, known)
        return self

    @staticmethod
    def _log_odds(votes: Votes, sens: np.ndarray, spec: np.ndarray, pi: float) -> np.ndarray:
        llr_yes = np.log(sens) - np.log1p(-spec)
        llr_no = np.log1p(-sens) - np.log(spec)
        contrib = np.where(votes.label == YES, llr_yes[votes.worker], llr_no[votes.worker])
        return float(logit(pi)) + np.bincount(votes.item, weights=contrib, minlength=votes.n_items)

    def _needs(
        self,
        votes: Votes,
        lo: np.ndarray,
        total: np.ndarray,
        dec: np.ndarray,
        known: np.ndarray,
    ) -> np.ndarray:
        llr_yes = np.log(self.sens_) - np.log1p(-self.spec_)
        llr_no = np.log1p(-self.sens_) - np.log(self.spec_)
        share = np.bincount(votes.worker, minlength=votes.n_workers).astype(float)
        if share.sum() == 0:
            share[:] = 1.0
        step_yes = _weighted_median(llr_yes, share)
        step_no = _weighted_median(llr_no, share)
        hi = float(logit(self.threshold))
        lo_bound = float(logit(self.reject_below))
        out = np.zeros(votes.n_items, dtype=np.int64)
        for i in range(votes.n_items):
            left = self.max_votes - int(total[i])
            if known[i] >= 0 or dec[i] != UNDECIDED or left <= 0:
                continue
            ks = []
            if step_yes > 0:
                ks.append(math.ceil((hi - lo[i]) / step_yes - 1e-9))
            if step_no < 0:
                ks.append(math.ceil((lo_bound - lo[i]) / step_no - 1e-9))
            k = min(ks) if ks else left
            out[i] = min(k, self.batch) if k <= left else 0
        return out


def _weighted_median(values: np.ndarray, weights: np.ndarray) -> float:
    order = np.argsort(values)
    cw = np.cumsum(weights[order])
    return float(values[order][np.searchsorted(cw, cw[-1] / 2)])
