"""robust_em.tie_groups: a dependent group's members share one coin, fitted on their real votes, not their gold."""

from __future__ import annotations

import numpy as np

from curation.consensus.base import Votes
from curation.consensus.robust import GoldAnswers, RobustConsensus, redundant_workers


def _crowd(seed: int) -> tuple[Votes, GoldAnswers, np.ndarray, np.ndarray]:
    """Workers 0-9 copy one sheet, right on 75% of the images and on all 10 of their gold
    answers each (the cartel knows the gold); 10-19 are honest at 0.9 (9 of 10 gold right).
    Each image gets 6 votes from random workers, as a big crowd's HITs spread them."""
    rng = np.random.default_rng(seed)
    n, nw = 300, 20
    truth = (rng.random(n) < 0.5).astype(np.int64)
    sheet = np.where(rng.random(n) < 0.75, truth, 1 - truth)
    it, w, lab = [], [], []
    for i in range(n):
        for k in rng.choice(nw, 6, replace=False):
            right = rng.random() < 0.9
            it.append(i)
            w.append(int(k))
            lab.append(int(sheet[i]) if k < 10 else int(truth[i] if right else 1 - truth[i]))
    votes = Votes(
        item=np.array(it), worker=np.array(w), label=np.array(lab), n_items=n, n_workers=nw
    )
    votes.order = np.arange(len(it))
    gold = GoldAnswers.from_counts(np.full(nw, 10), np.r_[np.full(10, 10), np.full(10, 9)])
    return votes, gold, truth, sheet


def test_a_groups_skill_is_its_real_votes_not_its_gold() -> None:
    votes, gold, truth, sheet = _crowd(11)
    group = [np.arange(10)]
    tied = RobustConsensus(dependence=False).fit(votes, gold, groups=group)
    apart = RobustConsensus(dependence=False, tie_groups=False).fit(votes, gold, groups=group)
    # One coin for the group, near the sheet's 0.75; member by member each one's perfect gold
    # outweighs its few (shared-weight) votes.
    assert np.ptp(tied.skills_[:10]) == 0
    assert abs(tied.skills_[0] - 0.75) < 0.06, tied.skills_[0]
    assert apart.skills_[:10].min() > 0.85, apart.skills_[:10]
    # The honest workers' coins are their own either way.
    assert abs(tied.skills_[10:] - 0.9).max() < 0.06
    # Where the sheet is wrong, the over-trusted group pulls the posterior its way.
    wrong = sheet != truth
    p_tied = np.where(truth == 1, tied.p_yes_, 1 - tied.p_yes_)[wrong]
    p_apart = np.where(truth == 1, apart.p_yes_, 1 - apart.p_yes_)[wrong]
    assert p_tied.mean() > p_apart.mean() + 0.05, (p_tied.mean(), p_apart.mean())
    # One member stands for the group in routing, the same one on every refit (all share a coin).
    assert redundant_workers(tied).tolist() == [False] + [True] * 9 + [False] * 10
