"""Robust consensus: worker-aware votes with drift, collusion, crowd-size-aware stopping and set-level goals.

For the crowds a lab really has (issue 16): 3 to 50 annotators, 5% to 50% positives, some of them
careless, drifting, spamming or copying one answer sheet. On top of the two-coin / two-difficulty
model of worker_aware.py (robust_em.py):

* **costs stated against the set-level goals** (`stopping="cost"`, robust_stop.cost_plan): each
  item's Bayes-optimal stopping plan (stopping.plan_stops) prices a false accept at
  c_p / ((1 - T) pi) votes and a false reject at c_r / ((1 - R) pi), T and R the precision and
  recall targets, pi the synset's fitted prevalence: a price per unit of each constraint's
  budget ((1 - T) pi N false accepts, (1 - R) pi N false rejects), so the same c_p = 1, c_r =
  1.25 hold at 5% and at 50% positives. Accepting is free only above 1 - s_p (1 - T) (s_p =
  0.5: coins fitted on a few hundred items are a little overconfident; with n > `slack_items`
  items 1 - s_p shrinks by sqrt(slack_items / n), as the coins' error); under it, accepts the
  prices allow are kept likeliest first while the accepted set's expected precision holds the
  target (`accept_budget`, robust_stop.budget_accepts). `stopping="bounds"`
  (robust_stop.bounds_plan) is the earlier rule: fixed posterior bounds, fewest unanimous votes.
* **crowd-size-aware stopping**: `eligible[i]` = workers who could still vote on item i; the
  plan's horizon is min(max_votes - votes so far, eligible). An item it stops between the
  bounds only because the crowd is used up is flagged `insufficient_crowd` (with its
  posterior, `p_yes_`), never left waiting for votes that cannot come; `crowd_needed_`
  estimates the crowd (of the measured skill) it would need.
* **drift** (drift.py): each worker's history is cut where their rate of being right (gold, and
  agreement with the leave-one-out posterior) changes; each stretch has its own coins.
* **dependence** (dependence.py, dependence_pairs.py): groups agreeing far beyond independent
  annotators are one source per item (`groups_`; `redundant_workers`: all but one member of
  each), with one coin per group fitted on all its votes and one capped gold prior (`tie_groups`:
  a sheet that passes gold weighs what its real votes show); groups found before
  (`fit(groups=...)`: stored, or pooled.py's pass) are joined. Pairs
  the test has not confirmed yet but that are more likely copying than not (`dependence_prior`,
  dependence_soft.py) weigh as that share of one source (`soft_pairs_`: a, b, rho).
* **pooled skill prior** (empirical Bayes): an unmeasured stretch's Beta prior is centred on
  the crowd's median measured skill (between base_accuracy and `pooled_cap`), or before three
  workers are measured on the crowd's skill as one shared coin (`pooled_early`).
* **hard images**: their shrink toward a coin flip has a Beta prior (`shrink_prior`), so a few
  contested votes cannot make every suspected-hard item need ~7 unanimous votes.
* **uninformative workers**: `uninformative_[w]` when the worker's current stretch has
  >= `min_evidence` votes and balanced accuracy under `uninformative_below` (Youden's J near 0:
  always-yes, always-no, near-chance); routing should stop giving them work.

Chosen on bench/consensus.py's TUNING_SEEDS (held-out not looked at): s_p, s_r, `max_shrink`,
c_p / c_r, `shrink_prior`, `accept_budget`; `uninformative_below`, the drift penalty and the
dependence test's levels are first guesses checked there, not searched.
"""

from __future__ import annotations

import numpy as np

from curation.consensus.base import (
    ACCEPT,
    REJECT,
    UNDECIDED,
    YES,
    StoppingAggregator,
    Votes,
    logit,
    sigmoid,
)
from curation.consensus.dependence import dependent_groups
from curation.consensus.dependence_pairs import merge_groups
from curation.consensus.dependence_soft import soft_pairs, vote_weights
from curation.consensus.drift import change_times, segment_of
from curation.consensus.robust_em import (
    Fit,
    GoldAnswers,
    coins,
    fit_em,
    shared_skill,
    tie_groups,
)
from curation.consensus.robust_stop import bounds_plan, cost_plan, crowd_needed

INSUFFICIENT = "insufficient_crowd"


class RobustConsensus(StoppingAggregator):
    """After fit: `p_yes_`, `decisions_` (accept / reject / undecided / insufficient_crowd),
    `needs_`, `insufficient_`, `sens_`/`spec_`/`skills_` (each worker's current stretch),
    `changes_` (per worker, times where a new stretch starts), `groups_` (worker-code arrays),
    `uninformative_`, `prevalence_`, `accept_at_`, `reject_at_`, `crowd_needed_`, `soft_pairs_`."""

    name = "robust"

    def __init__(
        self,
        target_precision: float = 0.997,
        target_recall: float = 0.98,
        max_votes: int = 25,
        batch: int = 3,
        first_votes: int = 2,
        prior: float = 0.25,
        base_accuracy: float = 0.75,
        base_strength: float = 4.0,
        gold_weight: float = 1.0,
        gold_cap: float = 10.0,
        precision_slack: float = 0.5,
        slack_items: float = 200.0,
        recall_slack: float = 2.0,
        difficulty: bool = True,
        drift: bool = True,
        dependence: bool = True,
        dependence_evidence: float = 3.0,
        dependence_alpha: float = 1e-4,
        dependence_prior: float = 0.05,
        min_segment: int = 12,
        change_penalty: float = 8.0,
        uninformative_below: float = 0.62,
        min_evidence: int = 12,
        max_shrink: float = 0.6,
        min_shrink: float = 0.0,
        shrink_prior: float = 8.0,
        n_iter: int = 60,
        pooled_prior: bool = True,
        pooled_cap: float = 0.9,
        pooled_early: bool = True,
        settle_stuck: bool = True,
        settle_slack: float = 1.0,
        accept_budget: bool = True,
        tie_groups: bool = True,
        stopping: str = "cost",
        cost_precision: float = 1.0,
        cost_recall: float = 1.25,
    ) -> None:
        self.target_precision, self.target_recall = target_precision, target_recall
        self.max_votes, self.batch, self.first_votes = max_votes, batch, first_votes
        self.prior, self.base_accuracy, self.base_strength = prior, base_accuracy, base_strength
        self.gold_weight, self.gold_cap = gold_weight, gold_cap
        self.precision_slack, self.recall_slack = precision_slack, recall_slack
        self.slack_items = slack_items
        self.difficulty, self.drift, self.dependence = difficulty, drift, dependence
        self.dependence_evidence, self.dependence_alpha = dependence_evidence, dependence_alpha
        self.dependence_prior = dependence_prior if dependence else 0.0
        self.min_segment, self.change_penalty = min_segment, change_penalty
        self.uninformative_below, self.min_evidence = uninformative_below, min_evidence
        # With a few hundred items the ambiguous images' shrink is barely identified and its
        # MLE drifts to "as clear as the rest" (0.95), which makes the model overconfident on
        # exactly the images that fool it; capping it keeps a run of yes votes from proving
        # more than an ambiguous image allows. `min_shrink` (off by default: within noise on
        # the tuning seeds, and it cost precision on a small set) floors it: at 0 ("hard =
        # pure noise") no run can decide a suspected-hard item.
        self.max_shrink, self.min_shrink = max_shrink, min_shrink
        self.shrink_prior = shrink_prior
        self.n_iter = n_iter
        # Empirical Bayes: an unmeasured worker's prior skill is the crowd's measured median
        # (never under base_accuracy, never over pooled_cap), so a crowd of careful annotators
        # is not charged extra votes for a generic 0.75 prior while each one's record builds.
        self.pooled_prior, self.pooled_cap = pooled_prior, pooled_cap
        self.pooled_early = pooled_early
        self.prior_accuracy_ = base_accuracy
        self.settle_stuck, self.settle_slack = settle_stuck, settle_slack
        self.accept_budget = accept_budget
        self.tie_groups = tie_groups
        if stopping not in ("cost", "bounds"):
            raise ValueError(f"stopping must be 'cost' or 'bounds', not {stopping!r}")
        self.stopping, self.cost_precision, self.cost_recall = stopping, cost_precision, cost_recall
        self._set_bounds(1 - precision_slack * (1 - target_precision), None)

    # -- fitting -----------------------------------------------------------------------------

    def fit(
        self,
        votes: Votes,
        gold: GoldAnswers | None = None,
        known: np.ndarray | None = None,
        eligible: np.ndarray | None = None,
        groups: list[np.ndarray] | None = None,
    ) -> RobustConsensus:
        """`gold`: gold answers; `known`: -1 / 0 / 1 per item; `eligible[i]`: workers who could
        still give item i a vote (default: unlimited, i.e. only `max_votes` bounds it);
        `groups`: dependent groups found before (other synsets; worker-code arrays), kept and
        joined with those these votes show."""
        known = self._known(votes, known)
        nw, ni = votes.n_workers, votes.n_items
        gold = gold or GoldAnswers(
            np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64)
        )
        it, w, yes = votes.item, votes.worker, votes.label == YES
        assert votes.order is not None
        weight = np.ones(len(it))
        changes: list[np.ndarray] = [np.zeros(0, np.int64) for _ in range(nw)]
        self.groups_: list[np.ndarray] = []
        self.found_groups_: list[np.ndarray] = []  # those these votes show (not given ones)
        self.prior_accuracy_ = self.base_accuracy
        fit, vw, nv = self._em(votes, gold, changes, weight, known)
        if self.pooled_prior and len(it):
            pooled = self._pooled(votes, fit, vw, nv)
            if pooled > self.prior_accuracy_ + 0.01:
                self.prior_accuracy_ = pooled
                fit, vw, nv = self._em(votes, gold, changes, weight, known)
        if self.drift and len(it):
            changes = self._changes(votes, gold, fit, vw)
            fit, vw, nv = self._em(votes, gold, changes, weight, known)
        if self.dependence and len(it):
            found = dependent_groups(
                it,
                w,
                yes.astype(np.int64),
                ni,
                nw,
                min_evidence=self.dependence_evidence,
                alpha=self.dependence_alpha,
                measure=True,
                order=votes.order,
            )
            self.groups_ = merge_groups([*(groups or []), *found], nw)
            self.found_groups_ = found
        elif groups:
            self.groups_ = merge_groups(list(groups), nw)
        soft = soft_pairs(
            it, w, yes, ni, nw, self.groups_, self.dependence_prior, order=votes.order
        )
        if self.groups_ or len(soft[0]):
            weight = vote_weights(it, w, ni, nw, self.groups_, soft)
            fit, vw, nv = self._em(votes, gold, changes, weight, known)
        self.soft_pairs_ = soft
        self.changes_ = changes
        self.worker_keys_ = list(votes.worker_keys)
        self.fit_ = fit
        self.weight_ = weight
        # Each worker's current stretch: the last virtual worker of theirs.
        offset = np.r_[0, np.cumsum([len(c) + 1 for c in changes], dtype=np.int64)]
        current = offset[1:] - 1
        self.sens_, self.spec_ = fit.sens[current], fit.spec[current]
        self.skills_ = (self.sens_ + self.spec_) / 2
        seg_votes = np.bincount(vw, minlength=nv)[current]
        self.current_votes_ = seg_votes
        g_seen, g_ok = self._gold_v[0][current], self._gold_v[1][current]
        # Gold that the current stretch passes vetoes the flag: a colluding group can capture
        # the fit for a few rounds and make honest workers look like noise to it.
        gold_says_good = (g_seen >= 3) & (g_ok >= 0.8 * g_seen)
        self.uninformative_ = (
            (seg_votes >= self.min_evidence)
            & (self.skills_ < self.uninformative_below)
            & ~gold_says_good
        )
        self.prevalence_ = fit.prior
        pi = fit.prior
        # The slack is for coins fitted on a few hundred items; the posteriors' overconfidence
        # shrinks like the coins' error (at 2,000 items they were calibrated), so it does too.
        total = np.bincount(it, minlength=ni)
        shrink = min(1.0, np.sqrt(self.slack_items / max(int((total > 0).sum()), 1)))
        s_p = 1 - (1 - self.precision_slack) * shrink
        self.accept_at_ = float(1 - s_p * (1 - self.target_precision))
        self.reject_at_ = float(
            min(self.recall_slack * (1 - self.target_recall) * pi / (1 - pi), 0.5)
        )
        self.reject_below = self.reject_at_
        p = fit.resp[:, 1, :].sum(axis=1)
        self._last = (votes, p, total, known)
        self._stop(votes, p, total, known, eligible)
        return self

    def decide(self, eligible: np.ndarray | None) -> np.ndarray:
        """Redo the stopping decisions for new per-item eligible counts (e.g. after routing
        stopped some workers) without refitting; returns `decisions_`."""
        self._stop(*self._last, eligible)
        return self.decisions_

    def _em(
        self,
        votes: Votes,
        gold: GoldAnswers,
        changes: list[np.ndarray],
        weight: np.ndarray,
        known: np.ndarray,
    ) -> tuple[Fit, np.ndarray, int]:
        nw = votes.n_workers
        assert votes.order is not None
        offset = np.r_[0, np.cumsum([len(c) + 1 for c in changes], dtype=np.int64)]
        nv = int(offset[-1])
        vw = offset[votes.worker] + segment_of(votes.worker, votes.order, changes)
        gv = (
            offset[gold.worker] + segment_of(gold.worker, gold.order, changes)
            if nw
            else gold.worker
        )
        tie = tie_groups(offset, self.groups_) if self.tie_groups else np.arange(nv)
        vw, gv = tie[vw], tie[gv]
        seen = np.bincount(gv, minlength=nv).astype(float)
        ok = np.bincount(gv, gold.correct.astype(float), minlength=nv)
        self._gold_v = (seen, ok)
        # Gold is a prior, capped: a group that passes gold but not real items (a shared sheet)
        # must not be trusted beyond what its real votes show.
        scale = np.minimum(1.0, self.gold_cap / np.maximum(seen, 1e-9)) * self.gold_weight
        a0 = self.base_strength * self.prior_accuracy_ + scale * ok
        b0 = self.base_strength * (1 - self.prior_accuracy_) + scale * (seen - ok)
        fit = fit_em(
            votes.item,
            vw,
            votes.label == YES,
            weight,
            votes.n_items,
            nv,
            a0,
            b0,
            known,
            self.prior,
            self.difficulty,
            self.n_iter,
            max_shrink=self.max_shrink,
            min_shrink=self.min_shrink,
            shrink_prior=self.shrink_prior,
        )
        fit.sens, fit.spec = fit.sens[tie], fit.spec[tie]  # each member reads the group's coin
        return fit, vw, nv

    def _pooled(self, votes: Votes, fit: Fit, vw: np.ndarray, nv: int) -> float:
        """The median balanced accuracy of workers with >= min_evidence votes (the prior's
        mean for the rest); while fewer than 3 are measured, the crowd's skill as one shared
        coin (`pooled_early`: agreement on items with several votes identifies it long before
        any one worker's record does); base_accuracy when neither is there."""
        n = np.bincount(vw, minlength=nv)
        ok = n >= self.min_evidence
        if ok.sum() >= 3:
            skill = float(np.median((fit.sens[ok] + fit.spec[ok]) / 2))
        elif self.pooled_early:
            skill = shared_skill(votes, self.base_accuracy, self.base_strength, self.prior)
        else:
            return self.base_accuracy
        return float(np.clip(skill, self.base_accuracy, self.pooled_cap))

    def _changes(
        self, votes: Votes, gold: GoldAnswers, fit: Fit, vw: np.ndarray
    ) -> list[np.ndarray]:
        """Change points from gold and from agreement with each vote's leave-one-out posterior."""
        assert votes.order is not None
        it, yes = votes.item, votes.label == YES
        sens, spec = fit.sens[vw], fit.spec[vw]
        llr = np.where(yes, np.log(sens / (1 - spec)), np.log((1 - sens) / spec))
        p = fit.resp[:, 1, :].sum(axis=1)
        loo = sigmoid(logit(p)[it] - llr)
        score = np.where(yes, loo, 1 - loo)
        multi = np.bincount(it, minlength=votes.n_items)[it] >= 2
        w = np.r_[votes.worker[multi], gold.worker]
        order = np.r_[votes.order[multi], gold.order]
        s = np.r_[score[multi], gold.correct.astype(float)]
        return change_times(w, order, s, votes.n_workers, self.min_segment, self.change_penalty)

    # -- stopping ----------------------------------------------------------------------------

    def typical_p_yes(self) -> np.ndarray:
        """(2 classes, 2 difficulties) P(yes) of a typical informative worker now."""
        ok = ~self.uninformative_ & (self.current_votes_ > 0)
        if not ok.any():
            sens = spec = np.array([self.base_accuracy])
        else:
            sens = np.array([float(np.median(self.sens_[ok]))])
            spec = np.array([float(np.median(self.spec_[ok]))])
        c = coins(sens, spec, self.fit_.hard_shrink)
        return np.array([[c[d][1][0] for d in (0, 1)], [c[d][0][0] for d in (0, 1)]])

    def _stop(
        self,
        votes: Votes,
        p: np.ndarray,
        total: np.ndarray,
        known: np.ndarray,
        eligible: np.ndarray | None,
    ) -> None:
        plan = cost_plan if self.stopping == "cost" else bounds_plan
        dec, run = plan(self, p, total, known, eligible)
        self._finish(dec, run, p, total, known)

    def _finish(
        self, dec: np.ndarray, run: np.ndarray, p: np.ndarray, total: np.ndarray, known: np.ndarray
    ) -> None:
        dec[known == 1] = ACCEPT
        dec[known == 0] = REJECT
        limit = np.where(total == 0, min(self.batch, self.first_votes), self.batch)
        self.needs_ = np.where(dec == UNDECIDED, np.minimum(run, limit), 0).astype(np.int64)
        self.insufficient_ = dec == INSUFFICIENT
        self.p_yes_ = p
        self.probas_ = np.column_stack([1 - p, p])
        self.labels_ = (p >= 0.5).astype(np.int64)
        self.decisions_ = dec
        self.crowd_needed_ = crowd_needed(self, p, total)


def uninformative_workers(model: RobustConsensus) -> list:
    """The caller's keys of workers whose current votes carry almost no information (routing
    should stop giving them work)."""
    return [k for k, bad in zip(model.worker_keys_, model.uninformative_, strict=True) if bad]


def redundant_workers(model: RobustConsensus) -> np.ndarray:
    """Per worker code: True for every member of a dependent group but its most skilled one
    (routing need pay only one of them; the others add nothing the group's first vote lacks)."""
    out = np.zeros(len(model.skills_), dtype=bool)
    for g in model.groups_:
        out[g] = True
        out[g[int(np.argmax(model.skills_[g]))]] = False
    return out


def dependent_worker_groups(model: RobustConsensus) -> list[list]:
    """The caller's keys of each group of workers who vote as one source (for the review page)."""
    return [[model.worker_keys_[int(w)] for w in g] for g in model.groups_]
