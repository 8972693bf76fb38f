"""Dawid-Skene: per-worker confusion matrices (full) or one accuracy per worker (one-coin), by EM.

Model (A. P. Dawid and A. M. Skene, "Maximum Likelihood Estimation of Observer Error-Rates Using
the EM Algorithm", Applied Statistics 28(1), 1979): each item has a latent true class z with prior
p(z = k) = priors_[k]; worker w answers l with probability errors_[w, k, l] given z = k,
independently of other workers. EM alternates the posterior over z (E-step) with closed-form
priors and confusion matrices (M-step), starting from majority vote, as crowd-kit's DawidSkene.

The one-coin variant (e.g. Karger, Oh & Shah, NIPS 2011; crowd-kit's OneCoinDawidSkene) gives
each worker a single accuracy s_w: errors[w, k, k] = s_w and (1 - s_w) / (K - 1) elsewhere.

`smoothing` adds that many pseudo-votes per confusion-matrix cell (0 reproduces plain maximum
likelihood; a little keeps a worker with few votes from getting probability-1 cells).
"""

from __future__ import annotations

import numpy as np

from curation.consensus.base import Aggregator, Votes


class DawidSkene(Aggregator):
    """Full-confusion-matrix Dawid-Skene. After fit: `priors_`, `errors_`, `probas_`, `labels_`,
    `skills_` (each worker's accuracy under the fitted priors), `n_iter_`."""

    one_coin = False

    def __init__(self, n_iter: int = 100, tol: float = 1e-5, smoothing: float = 0.01) -> None:
        self.n_iter = n_iter
        self.tol = tol
        self.smoothing = smoothing

    def _initial_probas(self, votes: Votes) -> np.ndarray:
        counts = votes.counts().astype(float)
        totals = counts.sum(axis=1, keepdims=True)
        return np.where(totals > 0, counts / np.maximum(totals, 1), 1.0 / votes.n_classes)

    def _m_step(self, votes: Votes, probas: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        k = votes.n_classes
        priors = probas.mean(axis=0)
        errors = np.full((votes.n_workers, k, k), self.smoothing)
        # errors[w, true, observed] += P(true | item) for every vote (w, item, observed).
        for c in range(k):
            np.add.at(errors[:, c, :], (votes.worker, votes.label), probas[votes.item, c])
        if self.one_coin:
            correct = np.trace(errors, axis1=1, axis2=2)
            total = errors.sum(axis=(1, 2))
            acc = np.where(total > 0, correct / np.maximum(total, 1e-12), 1.0 / k)
            errors = np.empty((votes.n_workers, k, k))
            errors[:] = ((1 - acc) / max(k - 1, 1))[:, None, None]
            idx = np.arange(k)
            errors[:, idx, idx] = acc[:, None]
        else:
            sums = errors.sum(axis=2, keepdims=True)
            errors = np.where(sums > 0, errors / np.maximum(sums, 1e-12), 1.0 / k)
        return priors, errors

    def _e_step(self, votes: Votes, priors: np.ndarray, errors: np.ndarray) -> np.ndarray:
        logp = np.tile(np.log(np.clip(priors, 1e-12, None)), (votes.n_items, 1))
        loge = np.log(np.clip(errors, 1e-12, None))
        for c in range(votes.n_classes):
            np.add.at(logp[:, c], votes.item, loge[votes.worker, c, votes.label])
        logp -= logp.max(axis=1, keepdims=True)
        p = np.exp(logp)
        return p / p.sum(axis=1, keepdims=True)

    def fit(self, votes: Votes) -> DawidSkene:
        probas = self._initial_probas(votes)
        priors, errors = self._m_step(votes, probas)
        self.n_iter_ = 0
        loglik_prev = -np.inf
        for it in range(self.n_iter):
            probas = self._e_step(votes, priors, errors)
            priors, errors = self._m_step(votes, probas)
            self.n_iter_ = it + 1
            loglik = self._loglik(votes, priors, errors)
            if abs(loglik - loglik_prev) < self.tol:
                break
            loglik_prev = loglik
        # Final posterior from the final parameters (crowd-kit does the same).
        self.probas_ = self._e_step(votes, priors, errors)
        self.priors_ = priors
        self.errors_ = errors
        self.labels_ = self.probas_.argmax(axis=1).astype(np.int64)
        self.skills_ = np.einsum("k,wkk->w", priors, errors)
        return self

    def _loglik(self, votes: Votes, priors: np.ndarray, errors: np.ndarray) -> float:
        logp = np.tile(np.log(np.clip(priors, 1e-12, None)), (votes.n_items, 1))
        loge = np.log(np.clip(errors, 1e-12, None))
        for c in range(votes.n_classes):
            np.add.at(logp[:, c], votes.item, loge[votes.worker, c, votes.label])
        m = logp.max(axis=1, keepdims=True)
        return float((m[:, 0] + np.log(np.exp(logp - m).sum(axis=1))).sum())


class OneCoinDawidSkene(DawidSkene):
    """One accuracy per worker (symmetric errors); `skills_` is that accuracy."""

    one_coin = True
