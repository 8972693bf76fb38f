"""Worker-aware consensus: per-worker two-coin model seeded by gold-question accuracy, with early stopping.

Model: a binary Dawid-Skene model (Dawid & Skene, Applied Statistics 1979) in its "two-coin" form
(Raykar et al., "Learning From Crowds", JMLR 11, 2010): worker w says yes to a good image with
probability sens_w and no to a bad one with probability spec_w. Gold questions (MTurk's standard
quality control; Snow et al., EMNLP 2008; Oleson et al., HCOMP 2011 "programmatic gold") seed each
worker: gold_correct of gold_seen right become Beta pseudo-counts on both coins (the `worker` table
keeps one accuracy, so gold acts as a one-coin prior, `gold_weight` per answer), on top of a weak
population prior. EM then refines the coins on all votes (MAP), so a worker who always says yes
drifts to sens ~ 1, spec ~ 0, i.e. a weight of ~ 0, whatever their gold score said.

Item difficulty (`difficulty=True`, in the spirit of GLAD, Whitehill et al., NIPS 2009, with two
levels instead of a continuous one): a share eta of images is ambiguous, and on those every
worker's coins are pulled toward a coin flip, 0.5 + lam * (coin - 0.5). eta and lam are fitted by
EM per synset (lam on a grid); an easy synset fits eta ~ 0 and the model is plain two-coin. Without
it, a run of yes votes on an ambiguous negative looks as convincing as on a clear positive, and
precision falls below the threshold it claims.

Stopping, two rules:

* cost rule (`fp_cost`, `fn_cost` given; imnet's default, settings `consensus_fp_cost` 600 and
  `consensus_fn_cost` 210): each item solves the Bayes-optimal stopping problem of
  curation/consensus/stopping.py (a false accept costs fp_cost votes, a false reject fn_cost,
  `threshold` is the precision target of the accepted set), looking ahead over votes from a
  typical worker (the vote-weighted median coins) up to `max_votes`. It is what the set-level
  goal asks for: precision and recall of the accepted set at the fewest votes, where a fixed
  per-item threshold either over-buys certainty on clear items or gives up ambiguous positives.
  An item the plan stops is accepted or rejected, also at the cap.
* threshold rule (the dynamic consensus's, Deng et al., CVPR 2009): accept at posterior >=
  threshold, reject at <= `reject_below`, stop at either or at `max_votes` (then undecided); in
  effect a sequential probability ratio test (Wald 1945) whose per-vote likelihood ratios are
  each worker's coins (settings `consensus_wa_max_votes`, `consensus_wa_reject_below`).

`needs_` is the fewest further votes after which the item could stop (cost rule: the shortest
path to a stopping state of its plan; threshold rule: the shorter unanimous run from a typical
worker that crosses a bound), at most `batch` per round and at most `first_votes` for an item
with no votes yet (before any vote the run length rests on the prior coins alone; asking 3 where
2 end most negatives cost ~0.4 votes per item in bench/consensus.py); 0 once it stops.
"""

from __future__ import annotations

import numpy as np

from curation.consensus.base import (
    ACCEPT,
    LAMBDA_GRID,
    REJECT,
    UNDECIDED,
    YES,
    StoppingAggregator,
    Votes,
    class_posterior,
    responsibilities,
)
from curation.consensus.stopping import plan_stops


class WorkerAwareConsensus(StoppingAggregator):
    """After fit: `sens_`, `spec_`, `skills_` (balanced accuracy) per worker; `prior_`,
    `hard_share_`, `hard_shrink_`; `p_yes_`; `decisions_`; `needs_`; `labels_`, `probas_`."""

    name = "worker-aware"

    def __init__(
        self,
        threshold: float = 0.997,
        max_votes: int = 10,
        prior: float = 0.25,
        base_accuracy: float = 0.75,
        base_strength: float = 4.0,
        n_iter: int = 100,
        tol: float = 1e-4,
        batch: int = 3,
        reject_below: float | None = None,
        gold_weight: float = 1.0,
        difficulty: bool = True,
        first_votes: int = 2,
        fp_cost: float | None = None,
        fn_cost: float | None = None,
    ) -> None:
        if (fp_cost is None) != (fn_cost is None):
            raise ValueError("worker-aware: give both fp_cost and fn_cost, or neither")
        self._set_bounds(threshold, reject_below)
        # With costs, stopping is `stopping.plan_stops` (threshold = the precision target);
        # without, the threshold / reject_below / cap rule.
        self.fp_cost = fp_cost
        self.fn_cost = fn_cost
        self.max_votes = max_votes
        self.prior = prior
        self.base_accuracy = base_accuracy
        self.base_strength = base_strength
        self.n_iter = n_iter
        self.tol = tol
        self.batch = batch
        self.gold_weight = gold_weight
        self.difficulty = difficulty
        self.first_votes = first_votes

    def fit(
        self,
        votes: Votes,
        gold_seen: np.ndarray | None = None,
        gold_correct: np.ndarray | None = None,
        known: np.ndarray | None = None,
    ) -> WorkerAwareConsensus:
        """`gold_seen[w]`, `gold_correct[w]` per worker code; `known`: -1 / 0 / 1 per item."""
        known = self._known(votes, known)
        nw, ni = votes.n_workers, votes.n_items
        seen = np.zeros(nw) if gold_seen is None else np.asarray(gold_seen, float)
        corr = np.zeros(nw) if gold_correct is None else np.asarray(gold_correct, float)
        corr = np.minimum(corr, seen)
        a0 = self.base_strength * self.base_accuracy + self.gold_weight * corr
        b0 = self.base_strength * (1 - self.base_accuracy) + self.gold_weight * (seen - corr)
        yes = votes.label == YES
        w, it = votes.worker, votes.item
        total = np.bincount(it, minlength=ni)
        voted = total > 0
        sens = a0 / (a0 + b0)
        spec = sens.copy()
        pi, eta, lam = self.prior, (0.1 if self.difficulty else 0.0), 0.5
        for _ in range(self.n_iter):
            resp = responsibilities(self._components(votes, sens, spec, pi, eta, lam), known)
            # Coins from the clear (easy) items; ambiguous ones carry little about a worker.
            r1 = resp[:, 1, 0][it]
            r0 = resp[:, 0, 0][it]
            new_sens = (np.bincount(w, r1 * yes, nw) + a0) / (np.bincount(w, r1, nw) + a0 + b0)
            new_spec = (np.bincount(w, r0 * ~yes, nw) + a0) / (np.bincount(w, r0, nw) + a0 + b0)
            new_sens = np.clip(new_sens, 1e-4, 1 - 1e-4)
            new_spec = np.clip(new_spec, 1e-4, 1 - 1e-4)
            change = max(
                np.abs(new_sens - sens).max(initial=0), np.abs(new_spec - spec).max(initial=0)
            )
            sens, spec = new_sens, new_spec
            p1 = resp[:, 1, :].sum(axis=1)
            pi = float(
                np.clip((p1[voted].sum() + 2 * self.prior) / (voted.sum() + 2), 1e-4, 1 - 1e-4)
            )
            if self.difficulty:
                hard = resp[:, :, 1].sum(axis=1)
                # Beta(1, 9) prior: a synset is mostly clear unless its votes say otherwise.
                new_eta = float(np.clip((hard[voted].sum() + 1) / (voted.sum() + 10), 1e-4, 0.9))
                new_lam = self._fit_lambda(votes, resp, sens, spec)
                change = max(change, abs(new_eta - eta), abs(new_lam - lam))
                eta, lam = new_eta, new_lam
            if change < self.tol:
                break
        self.sens_, self.spec_, self.prior_ = sens, spec, pi
        self.hard_share_, self.hard_shrink_ = eta, lam
        comp = self._components(votes, sens, spec, pi, eta, lam)
        p = responsibilities(comp, known)[:, 1, :].sum(axis=1)
        self.skills_ = (sens + spec) / 2
        dec = self._decide(p, voted, known)
        if self.fp_cost is None:
            self.needs_ = self._needs(votes, comp, total, dec, known)
        else:
            self.needs_ = self._plan(votes, comp, total, voted, known)
        return self

    def _typical_p_yes(self, votes: Votes) -> np.ndarray:
        """P(a typical worker says yes | class c, difficulty d) as a (2, 2) array: the
        vote-weighted median coins (the base accuracy before anyone has voted)."""
        share = np.bincount(votes.worker, minlength=votes.n_workers).astype(float)
        if share.sum() == 0:
            share[:] = 1.0
        sens = _weighted_median(self.sens_, share, self.base_accuracy)
        spec = _weighted_median(self.spec_, share, self.base_accuracy)
        coins = self._coins(np.array([sens]), np.array([spec]), self.hard_shrink_)
        return np.array([[coins[d][1][0] for d in (0, 1)], [coins[d][0][0] for d in (0, 1)]])

    def _plan(
        self,
        votes: Votes,
        comp: np.ndarray,
        total: np.ndarray,
        voted: np.ndarray,
        known: np.ndarray,
    ) -> np.ndarray:
        """Cost rule: decisions and needs from each item's optimal stopping plan."""
        assert self.fp_cost is not None and self.fn_cost is not None
        open_ = known < 0
        horizon = np.where(open_, np.maximum(self.max_votes - total, 0), 0)
        plan = plan_stops(
            comp, self._typical_p_yes(votes), horizon, self.fp_cost, self.fn_cost, self.threshold
        )
        self.plan_ = plan
        dec = np.full(votes.n_items, UNDECIDED, dtype=object)
        done = open_ & voted & plan.stop
        dec[done & plan.accept] = ACCEPT
        dec[done & ~plan.accept] = REJECT
        dec[known == 1] = ACCEPT
        dec[known == 0] = REJECT
        self.decisions_ = dec
        limit = np.where(total == 0, min(self.batch, self.first_votes), self.batch)
        return np.where(open_ & ~plan.stop, np.minimum(plan.run, limit), 0).astype(np.int64)

    @staticmethod
    def _coins(sens: np.ndarray, spec: np.ndarray, lam: float) -> list[tuple[np.ndarray, ...]]:
        """[(P(yes | good), P(yes | bad)) for easy, hard] per worker."""
        hs, hp = 0.5 + lam * (sens - 0.5), 0.5 + lam * (spec - 0.5)
        return [(sens, 1 - spec), (hs, 1 - hp)]

    def _components(
        self,
        votes: Votes,
        sens: np.ndarray,
        spec: np.ndarray,
        pi: float,
        eta: float,
        lam: float,
    ) -> np.ndarray:
        """log P(item's votes, class c, difficulty d) as an (n_items, 2, 2) array."""
        ni = votes.n_items
        yes = votes.label == YES
        out = np.empty((ni, 2, 2))
        share = (1 - eta, eta)
        for d, (p_good, p_bad) in enumerate(self._coins(sens, spec, lam)):
            for c, p in ((1, p_good), (0, p_bad)):
                pv = p[votes.worker]
                ll = np.where(yes, np.log(pv), np.log1p(-pv))
                out[:, c, d] = np.bincount(votes.item, ll, ni)
                out[:, c, d] += np.log(pi if c else 1 - pi) + np.log(max(share[d], 1e-300))
        return out

    def _fit_lambda(
        self, votes: Votes, resp: np.ndarray, sens: np.ndarray, spec: np.ndarray
    ) -> float:
        """The shrink factor maximising the expected log-likelihood of the ambiguous components.

        The objective only depends on each worker's responsibility-weighted yes/no counts on
        ambiguous items, so those are summed once and the grid costs O(workers) per point.
        """
        nw = votes.n_workers
        yes = votes.label == YES
        r1 = resp[:, 1, 1][votes.item]
        r0 = resp[:, 0, 1][votes.item]
        good_yes = np.bincount(votes.worker, r1 * yes, nw)
        good_no = np.bincount(votes.worker, r1 * ~yes, nw)
        bad_yes = np.bincount(votes.worker, r0 * yes, nw)
        bad_no = np.bincount(votes.worker, r0 * ~yes, nw)
        hs = 0.5 + LAMBDA_GRID[:, None] * (sens[None, :] - 0.5)
        hp = 0.5 + LAMBDA_GRID[:, None] * (spec[None, :] - 0.5)
        q = (
            good_yes * np.log(hs)
            + good_no * np.log1p(-hs)
            + bad_yes * np.log1p(-hp)
            + bad_no * np.log(hp)
        ).sum(axis=1)
        return float(LAMBDA_GRID[int(np.argmax(q))])

    def _needs(
        self,
        votes: Votes,
        comp: np.ndarray,
        total: np.ndarray,
        dec: np.ndarray,
        known: np.ndarray,
    ) -> np.ndarray:
        p_yes = self._typical_p_yes(votes)
        step_yes, step_no = np.log(p_yes), np.log1p(-p_yes)
        out = np.zeros(votes.n_items, dtype=np.int64)
        open_ = (known < 0) & (dec == UNDECIDED) & (total < self.max_votes)
        todo = np.flatnonzero(open_)
        if not len(todo):
            return out
        found = np.zeros(len(todo), dtype=np.int64)
        base = comp[todo]
        for j in range(1, self.max_votes + 1):
            left_ok = j <= self.max_votes - total[todo]
            p_y = class_posterior(base + j * step_yes)
            p_n = class_posterior(base + j * step_no)
            hit = (found == 0) & left_ok & ((p_y >= self.threshold) | (p_n <= self.reject_below))
            found[hit] = j
        # Before an item's first vote the run rests on prior coins alone: ask no more than
        # first_votes, and let the next round's fit size the rest.
        limit = np.where(total[todo] == 0, min(self.batch, self.first_votes), self.batch)
        out[todo] = np.minimum(found, limit)
        return out


def _weighted_median(values: np.ndarray, weights: np.ndarray, empty: float) -> float:
    if not len(values):
        return empty
    order = np.argsort(values)
    cw = np.cumsum(weights[order])
    return float(values[order][np.searchsorted(cw, cw[-1] / 2)])
