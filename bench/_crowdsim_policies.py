"""The consensus policies bench/consensus.py runs in _crowdsim's loop: robust and the old worker-aware.

Each policy answers `step(state) -> (votes each item still needs, workers given no more work)`
and `final(state) -> decisions`, as the pipeline's verification loop does around a consensus:
refit on every vote so far, route, ask. Both apply the mturk stage's qualification (`imnet mturk
collect`: workers under mturk_min_worker_gold on gold after mturk_min_gold_seen answers get no
more work), as the pipeline does in every crowd; until 2026-12-07 the robust policy applied it
only in the default-mix row and routed uninformative workers away before their gold was measured,
which the pipeline (curation/consensus/crowd.py) does not.
"""

from __future__ import annotations

import numpy as np
from _crowdsim import KINDS, State, gold_blocked
from _latent_copiers import latent_group

from curation.consensus.base import Votes
from curation.consensus.decide import cost_rule
from curation.consensus.dependence import constant_workers, dependent_groups
from curation.consensus.dependence_pairs import merge_groups
from curation.consensus.robust import GoldAnswers, RobustConsensus, redundant_workers
from curation.consensus.worker_aware import WorkerAwareConsensus
from imnet.core.settings import Settings

MIN_WORKER_GOLD: float | None = None  # bench/consensus.py --min-worker-gold (a what-if)
# bench/consensus.py --groups-known-after (a what-if): the true copiers handed to the policy as one
# group once the first synset has this many votes, and from the start of every later one.
GROUPS_KNOWN_AFTER: int | None = None
# bench/consensus.py --open-window (a what-if): items nobody has voted on get their first votes
# only while fewer than this many items are open, so early votes go deep on a few items.
OPEN_WINDOW: int | None = None
# bench/consensus.py --latent-groups [PRIOR] (a what-if): the latent copying class
# (_latent_copiers.py, at this prior share of copiers) joins the groups the tests found, before
# they confirm it; its members the tests have not confirmed are held back from work while the
# class stands, not routed away for good. None: off.
LATENT_PRIOR: float | None = None


def open_window(
    need: np.ndarray, voted: np.ndarray, blocked: np.ndarray, window: int
) -> np.ndarray:
    """`need` with the fresh items (no vote yet) past the room `window` leaves held back, by
    index. Open items (voted on, asking more) that no eligible worker is left to answer do not
    take room: the loop would otherwise wait on votes that cannot come."""
    cast = voted.sum(axis=1)
    left = (~voted & ~blocked[None, :]).any(axis=1)
    n_open = int(((cast > 0) & (need > 0) & left).sum())
    out = need.copy()
    out[np.flatnonzero((cast == 0) & (need > 0))[max(window - n_open, 0) :]] = 0
    return out


def _votes(st: State) -> Votes:
    item, worker, label, t = st.arrays()
    n, nw = len(st.syn.truth), st.crowd.n
    return Votes(item=item, worker=worker, label=label, n_items=n, n_workers=nw, order=t)


class RobustPolicy:
    """The pipeline's loop around RobustConsensus: refit, route away from uninformative and
    redundant workers, ask each open item its `needs_`, with a horizon of the workers still
    eligible for it."""

    def __init__(self, gold_block: bool = True, **kw: float) -> None:
        self.kw = kw
        self.gold_block = gold_block
        s = Settings()
        self.min_gold, self.min_gold_seen = s.mturk_min_worker_gold, s.mturk_min_gold_seen
        if MIN_WORKER_GOLD is not None:
            self.min_gold = MIN_WORKER_GOLD
        self.blocked: np.ndarray | None = None
        self.model: RobustConsensus | None = None
        self.crowd_needed: int | None = None
        self.hist: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self.offset = 0
        self.held = np.zeros(0, bool)  # latent-class members held back this round
        self.unconfirmed = np.zeros(0, bool)

    def _pooled(self, st: State) -> list[np.ndarray]:
        item, worker, label, t = st.arrays()
        self.unconfirmed = np.zeros(st.crowd.n, bool)
        if GROUPS_KNOWN_AFTER is not None and (self.offset or len(item) >= GROUPS_KNOWN_AFTER):
            copiers = np.flatnonzero(st.crowd.kind == KINDS.index("colluder"))
            if len(copiers) >= 2:
                return [copiers]
        its = [h[0] for h in self.hist] + [item + self.offset]
        ws = [h[1] for h in self.hist] + [worker]
        ls = [h[2] for h in self.hist] + [label]
        ts = [h[3] for h in self.hist] + [t]
        n = self.offset + len(st.syn.truth)
        it, w, lab = np.concatenate(its), np.concatenate(ws), np.concatenate(ls)
        found = dependent_groups(
            it,
            w,
            lab,
            n,
            st.crowd.n,
            min_evidence=self.kw.get("dependence_evidence", 3.0),
            alpha=self.kw.get("dependence_alpha", 1e-4),
            measure=True,
            order=np.concatenate(ts),
        )
        if LATENT_PRIOR is not None:
            const = constant_workers(w, lab, st.crowd.n)
            latent = latent_group(
                it, w, lab, n, st.crowd.n, prior=LATENT_PRIOR, exclude=const, known=found
            )
            if len(latent):
                self.unconfirmed[latent] = True
                for g in found:
                    self.unconfirmed[g] = False
                found = merge_groups([*found, latent], st.crowd.n)
        return found

    def _fit(self, st: State) -> RobustConsensus:
        nw = st.crowd.n
        gw, gc, gt = st.gold()
        # As the pipeline's consensus run: the crowd-wide pass over every vote so far
        # (curation/consensus/pooled.py; a complete run reads no groups stored before).
        groups = self._pooled(st)
        if self.blocked is None:
            self.blocked = np.zeros(nw, bool)
        if len(self.held) != nw:
            self.held = np.zeros(nw, bool)
        if self.gold_block:
            self.blocked |= gold_blocked(st, self.min_gold, self.min_gold_seen)
        elig = (~st.voted & ~(self.blocked | self.held)[None, :]).sum(axis=1)
        m = RobustConsensus(**self.kw).fit(
            _votes(st), GoldAnswers(gw, gc, gt), eligible=elig, groups=groups
        )
        # As the pipeline (crowd.py CrowdTally): routed away as uninformative only with
        # mturk_min_gold_seen gold answers measured, as redundant on the groups alone.
        seen = np.bincount(gw, minlength=nw) >= self.min_gold_seen
        redundant = redundant_workers(m)
        stop = (m.uninformative_ & seen) | (redundant & ~self.unconfirmed)
        held = redundant & self.unconfirmed & ~self.blocked
        if (stop & ~self.blocked).any() or (held != self.held).any():
            self.blocked |= stop
            m.decide((~st.voted & ~(self.blocked | held)[None, :]).sum(axis=1))
        self.held = held
        self.model = m
        return m

    def step(self, st: State) -> tuple[np.ndarray, np.ndarray]:
        m = self._fit(st)
        assert self.blocked is not None
        off = self.blocked | self.held
        if OPEN_WINDOW is not None:
            return open_window(m.needs_, st.voted, off, OPEN_WINDOW), off
        return m.needs_, off

    def final(self, st: State) -> np.ndarray:
        m = self._fit(st)
        item, worker, label, t = st.arrays()
        self.hist.append((item + self.offset, worker, label, t))
        self.offset += len(st.syn.truth)
        if m.crowd_needed_ is not None:
            self.crowd_needed = max(self.crowd_needed or 0, m.crowd_needed_)
        return m.decisions_


class WorkerAwarePolicy:
    """The old default (`worker-aware`, cost-based stopping) with imnet's default settings and
    the mturk gold qualification, as the old bench ran it: blocked workers' votes stay counted
    (the model weighs them by their coins)."""

    def __init__(self) -> None:
        s = Settings()
        self.kw = {
            "threshold": s.consensus_threshold,
            "max_votes": s.consensus_wa_max_votes,
            "reject_below": s.consensus_wa_reject_below,
            "batch": s.consensus_batch_votes,
            **cost_rule(s),
        }
        self.min_gold, self.min_seen = s.mturk_min_worker_gold, s.mturk_min_gold_seen
        self.crowd_needed: int | None = None

    def _fit(self, st: State) -> WorkerAwareConsensus:
        gw, gc, _ = st.gold()
        seen = np.bincount(gw, minlength=st.crowd.n)
        ok = np.bincount(gw, gc, minlength=st.crowd.n)
        return WorkerAwareConsensus(**self.kw).fit(_votes(st), gold_seen=seen, gold_correct=ok)

    def step(self, st: State) -> tuple[np.ndarray, np.ndarray]:
        m = self._fit(st)
        return m.needs_, gold_blocked(st, self.min_gold, self.min_seen)

    def final(self, st: State) -> np.ndarray:
        return self._fit(st).decisions_
