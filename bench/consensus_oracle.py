"""The oracle policy of bench/consensus.py: what a policy that knows the truth's parameters achieves.

It knows each vote's true accuracy (the worker's skill at that moment, drift included, and
whether the image is ambiguous), the synset's true prevalence, and who copies the shared answer
sheet. So it: never gives work to workers whose current votes carry little information
(near-chance, always-yes/no, drifted), lets one colluder stand for the whole group, scores each
item by its exact posterior log-odds, and stops with the same set-level bounds as the robust
consensus, with the same slack (accept at P >= 1 - s_p (1 - T), reject at P <= s_r (1 - R)
pi / (1 - pi)), and the
same fewest-unanimous-votes rule, asking each item's next votes from the typical worker it allows.
An item no run within its horizon (cap and eligible workers) can settle is `insufficient_crowd`.
"""

from __future__ import annotations

import numpy as np
from _crowdsim import AMB_SHRINK, KINDS, SHEET_ACC, State

INFORMATIVE = 0.62  # true accuracy under which the oracle stops giving work


class OraclePolicy:
    def __init__(
        self,
        target_p: float,
        target_r: float,
        max_votes: int,
        batch: int,
        first: int,
        precision_slack: float = 1.0,
        recall_slack: float = 1.0,
    ) -> None:
        self.tp, self.tr = target_p, target_r
        self.sp, self.sr = precision_slack, recall_slack
        self.max_votes, self.batch, self.first = max_votes, batch, first
        self.crowd_needed: int | None = None

    def _posterior(self, st: State) -> tuple[np.ndarray, np.ndarray, float]:
        item, worker, label, _ = st.arrays()
        acc = np.concatenate(st.acc) if st.acc else np.zeros(0)
        n = len(st.syn.truth)
        pi = float(st.syn.truth.mean())
        coll = acc < 0
        sheet = np.where(st.syn.ambiguous, 0.5 + AMB_SHRINK * (SHEET_ACC - 0.5), SHEET_ACC)
        acc = np.where(coll, sheet[item] if len(item) else acc, acc)
        # One colluder per item counts; the others repeat the same sheet.
        first = np.ones(len(item), bool)
        if coll.any():
            idx = np.flatnonzero(coll)
            _, keep = np.unique(item[idx], return_index=True)
            first[idx] = False
            first[idx[keep]] = True
        acc = np.clip(acc, 1e-6, 1 - 1e-6)
        llr = np.log(acc / (1 - acc)) * np.where(label == 1, 1, -1) * first
        lo = np.log(pi / (1 - pi)) + np.bincount(item, llr, n)
        return lo, np.bincount(item, minlength=n), pi

    def _blocked(self, st: State) -> np.ndarray:
        c = st.crowd
        acc = c.accuracy(np.arange(c.n), c.cast)
        names = np.array(KINDS)[c.kind]
        bad = acc < INFORMATIVE
        coll = np.flatnonzero(names == "colluder")
        bad[coll[1:]] = True  # one stands for the group
        bad[coll[:1]] = False
        return bad

    def _bounds(self, pi: float) -> tuple[float, float]:
        a = 1 - self.sp * (1 - self.tp)
        b = min(self.sr * (1 - self.tr) * pi / (1 - pi), 0.5)
        return np.log(a / (1 - a)), np.log(b / (1 - b))

    def step(self, st: State) -> tuple[np.ndarray, np.ndarray]:
        lo, total, pi = self._posterior(st)
        blocked = self._blocked(st)
        hi_b, lo_b = self._bounds(pi)
        c = st.crowd
        acc = c.accuracy(np.arange(c.n), c.cast)[~blocked]
        typical = float(np.median(acc)) if len(acc) else 0.5
        eff = np.where(st.syn.ambiguous, 0.5 + AMB_SHRINK * (typical - 0.5), typical)
        step = np.log(eff / (1 - eff))
        elig = (~st.voted & ~blocked[None, :]).sum(axis=1)
        horizon = np.minimum(np.maximum(self.max_votes - total, 0), elig)
        open_ = (lo < hi_b) & ((lo > lo_b) | (total == 0))
        run = np.minimum(np.ceil((hi_b - lo) / step), np.ceil((lo - lo_b) / step))
        run = np.maximum(run, 1)
        ok = open_ & (run <= horizon)
        limit = np.where(total == 0, min(self.batch, self.first), self.batch)
        need = np.where(ok, np.minimum(run, limit), 0).astype(np.int64)
        self._stuck = open_ & ~ok
        return need, blocked

    def final(self, st: State) -> np.ndarray:
        lo, total, pi = self._posterior(st)
        hi_b, lo_b = self._bounds(pi)
        dec = np.full(len(lo), "insufficient_crowd", dtype=object)
        dec[(lo >= hi_b) & (total > 0)] = "accept"
        dec[(lo <= lo_b) & (total > 0)] = "reject"
        return dec
