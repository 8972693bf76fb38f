"""Majority vote with deterministic tie-breaking (the baseline every crowd paper starts from).

Model: each item's label is the class with the most votes; P(class) is the class's share of the
item's votes. No worker model. Ties are broken by the class that is more frequent over all votes
of the table (the empirical prior), then by the lower class index, so the result never depends on
row order or a random seed (crowd-kit's MajorityVote picks among ties at random). Reference: the
"majority voting" baseline of Sheng, Provost & Ipeirotis, "Get another label? Improving data quality
and data mining using multiple, noisy labelers", KDD 2008.
"""

from __future__ import annotations

import numpy as np

from curation.consensus.base import Aggregator, Votes, agreement_skills


class MajorityVote(Aggregator):
    """`labels_` = most-voted class; items without votes get the tie-break class."""

    def fit(self, votes: Votes) -> MajorityVote:
        counts = votes.counts().astype(float)
        totals = counts.sum(axis=1, keepdims=True)
        k = votes.n_classes
        with np.errstate(invalid="ignore", divide="ignore"):
            probas = np.where(totals > 0, counts / np.maximum(totals, 1), 1.0 / k)
        class_freq = counts.sum(axis=0)
        # Tie-break rank: more frequent class first, then lower index (stable sort keeps order).
        preference = np.argsort(-class_freq, kind="stable")
        rank = np.empty(k, dtype=np.int64)
        rank[preference] = np.arange(k)
        top = counts.max(axis=1, keepdims=True)
        tied = counts == top
        # Among the tied classes pick the one with the best (smallest) preference rank.
        score = np.where(tied, rank[None, :], k + 1)
        self.labels_ = score.argmin(axis=1).astype(np.int64)
        self.probas_ = probas
        self.tie_order_ = preference
        self.skills_ = agreement_skills(votes, self.labels_)
        return self
