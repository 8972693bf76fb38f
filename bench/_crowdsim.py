"""Crowd simulation for bench/consensus.py: worker kinds, synsets, and the sequential voting loop.

A cell is one crowd (a list of worker kinds) labelling a few synsets of differing difficulty in
turn (the crowd, its drift and its gold record carry over from one synset to the next). Each
round the policy says how many more votes each item needs and which workers get no more work;
votes come from random eligible workers (never twice on an item, at most `PER_ROUND` votes per
worker per round, as a refit happens every few HITs), and real votes bring gold answers, counted
in votes/item. The pipeline's layout (mturk/warmup.py): a new worker answers a warm-up page of
WARMUP (mturk_warmup_gold, 8) gold tiles before any real vote, then GOLD_RATE per vote
(mturk_warmed_gold_per_hit of mturk_images_per_hit on every mturk_warmed_gold_every-th HIT: 1 in
24 on every HIT, 1/23 per vote); with WARMUP = 0,
every HIT's mturk_gold_per_hit (2 in 24, 2/22 per vote). With `gold_schedule` (a what-if the
pipeline has no layout for): GOLD_NEW per vote until a worker has GOLD_KNOWN_AFTER gold answers
(4 gold tiles in 24), then GOLD_KNOWN (1 in 24).

Worker kinds (accuracy = P(right) on a clear image; on an ambiguous image it is pulled halfway to
a coin flip): good 0.92, mediocre 0.75, near-chance 0.55, always-yes, always-no, drifting (0.92
for the first 60..300 votes, then 0.55), colluder (every member copies one answer sheet that is
right on gold and on 75% of real images).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from curation.consensus.crowd import under_gold_bar
from imnet.core.settings import Settings
from mturk.fees import MAX_ASSIGNMENTS_PER_HIT

# The pipeline's layout (mturk/warmup.py, mturk/verify.py plan_hits): a new worker's warm-up
# page of WARMUP gold tiles before any real vote, then every HIT carries the same gold tiles.
WARMUP = Settings.mturk_warmup_gold


def gold_rate(warmup: int, per_hit: int | None = None, every: int | None = None) -> float:
    """Gold answers per real vote in the pipeline's HITs (with a warm-up: the warmed-up
    workers' HITs, `every`-th of them with gold), or with `per_hit` gold tiles of
    mturk_images_per_hit (on every HIT unless `every` is given)."""
    s = Settings
    if every is None:
        every = s.mturk_warmed_gold_every if warmup > 0 and per_hit is None else 1
    if per_hit is None:
        per_hit = s.mturk_warmed_gold_per_hit if warmup > 0 else s.mturk_gold_per_hit
    # A HIT without gold carries one real item fewer, no more (mturk/verify.py plan_hits).
    return per_hit / (max(every, 1) * (s.mturk_images_per_hit - per_hit))


GOLD_RATE = gold_rate(WARMUP)
GOLD_NEW, GOLD_KNOWN, GOLD_KNOWN_AFTER = 4 / 20, 1 / 23, 8
PER_ROUND = 40
# --hit-votes (a what-if): votes come in HITs as the pipeline plans them (hit_votes) instead of
# each from a random eligible worker of its own.
HITS = False
HIT_ITEMS = Settings.mturk_images_per_hit - 1  # one gold tile per HIT
HITS_PER_ROUND = 2  # ~PER_ROUND votes
AMB_SHRINK = 0.5
SHEET_ACC = 0.75
KINDS = (
    "good",
    "mediocre",
    "near-chance",
    "always-yes",
    "always-no",
    "drifting",
    "colluder",
    # The old bench's crowd (git show 8d67f8f:bench/consensus.py): 0.9, 0.7 and coin-flip workers.
    "good-0.9",
    "mediocre-0.7",
    "random",
)
ACC = {
    "good": 0.92,
    "mediocre": 0.75,
    "near-chance": 0.55,
    "drifting": 0.92,
    "colluder": 0.75,
    "good-0.9": 0.9,
    "mediocre-0.7": 0.7,
    "random": 0.5,
}
DRIFT_TO = 0.55


@dataclass
class Crowd:
    kind: np.ndarray  # index into KINDS
    drift_at: np.ndarray  # votes after which a drifting worker turns careless (huge otherwise)
    cast: np.ndarray = field(default=None)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        self.cast = np.zeros(len(self.kind), dtype=np.int64)

    @property
    def n(self) -> int:
        return len(self.kind)

    def accuracy(self, worker: np.ndarray, nth: np.ndarray) -> np.ndarray:
        """True clear-image accuracy of `worker` at their nth vote (0.5 for always-yes/no)."""
        names = np.array(KINDS)[self.kind[worker]]
        acc = np.array([ACC.get(k, 0.5) for k in names])
        drifted = (names == "drifting") & (nth >= self.drift_at[worker])
        return np.where(drifted, DRIFT_TO, acc)


def make_crowd(mix: dict[str, float], size: int, rng: np.random.Generator) -> Crowd:
    """`mix`: share per kind; counts rounded, the remainder goes to the first kind."""
    counts = {k: int(round(s * size)) for k, s in mix.items()}
    first = next(iter(mix))
    counts[first] += size - sum(counts.values())
    kind = np.concatenate([np.full(c, KINDS.index(k)) for k, c in counts.items() if c > 0])
    rng.shuffle(kind)
    return Crowd(kind=kind, drift_at=rng.integers(60, 300, len(kind)))


GOLD_BAR_ALPHA = Settings.mturk_gold_bar_alpha  # bench/consensus.py --gold-bar-alpha (a what-if)
GOLD_BAR_CROWD = Settings.mturk_gold_bar_crowd  # bench/consensus.py --gold-bar-crowd (a what-if)


def gold_blocked(st: State, min_accuracy: float = 0.75, min_seen: int = 6) -> np.ndarray:
    """The mturk stage's qualification (settings mturk_min_worker_gold / mturk_min_gold_seen /
    mturk_gold_bar_alpha, curation.consensus.crowd.under_gold_bar): workers whose lifetime gold
    shows an accuracy under `min_accuracy` get no more work."""
    gw, gc, _ = st.gold()
    seen = np.bincount(gw, minlength=st.crowd.n)
    ok = np.bincount(gw, gc, minlength=st.crowd.n).astype(np.int64)
    return under_gold_bar(seen, ok, min_accuracy, min_seen, GOLD_BAR_ALPHA, GOLD_BAR_CROWD)


@dataclass
class Synset:
    truth: np.ndarray
    ambiguous: np.ndarray
    sheet: np.ndarray  # the colluders' shared answers


def make_synset(n: int, prevalence: float, amb_share: float, rng: np.random.Generator) -> Synset:
    truth = np.zeros(n, dtype=np.int64)
    truth[: int(round(prevalence * n))] = 1
    rng.shuffle(truth)
    amb = rng.random(n) < amb_share
    sheet_acc = np.where(amb, 0.5 + AMB_SHRINK * (SHEET_ACC - 0.5), SHEET_ACC)
    sheet = np.where(rng.random(n) < sheet_acc, truth, 1 - truth)
    return Synset(truth, amb, sheet)


@dataclass
class State:
    """What a policy sees (plus the truth-side arrays the oracle may read)."""

    crowd: Crowd
    syn: Synset
    item: list = field(default_factory=list)
    worker: list = field(default_factory=list)
    label: list = field(default_factory=list)
    time: list = field(default_factory=list)
    acc: list = field(default_factory=list)  # true P(right) of each vote (oracle only)
    gold_worker: list = field(default_factory=list)
    gold_correct: list = field(default_factory=list)
    gold_time: list = field(default_factory=list)
    voted: np.ndarray = field(default=None)  # type: ignore[assignment]

    def arrays(self) -> tuple[np.ndarray, ...]:
        cat = lambda xs: np.concatenate(xs) if xs else np.zeros(0, np.int64)  # noqa: E731
        return tuple(cat(x) for x in (self.item, self.worker, self.label, self.time))

    def gold(self) -> tuple[np.ndarray, ...]:
        cat = lambda xs: np.concatenate(xs) if xs else np.zeros(0, np.int64)  # noqa: E731
        return tuple(cat(x) for x in (self.gold_worker, self.gold_correct, self.gold_time))


class Clock:
    def __init__(self) -> None:
        self.t = 0


def run_synset(
    policy,  # type: ignore[no-untyped-def]
    crowd: Crowd,
    syn: Synset,
    gold_hist: dict,
    clock: Clock,
    rng: np.random.Generator,
    max_rounds: int = 400,
    gold_schedule: bool = False,
) -> tuple[np.ndarray, int, int]:
    """Run the loop; returns (final decisions, real votes, gold answers) for this synset."""
    n = len(syn.truth)
    st = State(crowd=crowd, syn=syn)
    st.voted = np.zeros((n, crowd.n), dtype=bool)
    st.gold_worker, st.gold_correct, st.gold_time = (gold_hist["w"], gold_hist["c"], gold_hist["t"])
    gold_before = sum(len(x) for x in st.gold_worker)
    real = 0
    if WARMUP:
        _warmup(crowd, gold_hist, rng, st, clock)
    for _ in range(max_rounds):
        need, blocked = policy.step(st)
        if not need.any():
            break
        elig = ~st.voted & ~blocked[None, :]
        if HITS:
            items, workers = hit_votes(need, elig, rng)
        else:
            keys = np.where(elig, rng.random(elig.shape), np.inf)
            pick = np.argsort(keys, axis=1)
            col = np.arange(crowd.n)[None, :]
            take = (col < need[:, None]) & np.isfinite(np.take_along_axis(keys, pick, 1))
            items = np.broadcast_to(np.arange(n)[:, None], take.shape)[take]
            workers = pick[take]
        if not len(items):
            break
        perm = rng.permutation(len(items))
        items, workers = items[perm], workers[perm]
        # At most PER_ROUND votes per worker this round; the rest wait for the next round.
        srt = np.argsort(workers, kind="stable")
        ws = workers[srt]
        starts = np.r_[0, np.flatnonzero(np.diff(ws)) + 1]
        rank = np.empty(len(ws), np.int64)
        rank[srt] = np.arange(len(ws)) - np.repeat(starts, np.diff(np.r_[starts, len(ws)]))
        keep = (rank < PER_ROUND) | HITS  # (whoever takes a HIT answers all of it)
        items, workers, rank = items[keep], workers[keep], rank[keep]
        nth = crowd.cast[workers] + rank
        acc = crowd.accuracy(workers, nth)
        eff = np.where(syn.ambiguous[items], 0.5 + AMB_SHRINK * (acc - 0.5), acc)
        truth = syn.truth[items]
        lab = np.where(rng.random(len(items)) < eff, truth, 1 - truth)
        kind = np.array(KINDS)[crowd.kind[workers]]
        lab = np.where(kind == "always-yes", 1, lab)
        lab = np.where(kind == "always-no", 0, lab)
        lab = np.where(kind == "colluder", syn.sheet[items], lab)
        t = clock.t + np.arange(len(items))
        clock.t += len(items)
        st.item.append(items)
        st.worker.append(workers)
        st.label.append(lab.astype(np.int64))
        st.time.append(t)
        st.acc.append(
            np.where(
                np.isin(kind, ("always-yes", "always-no")),
                0.5,
                np.where(kind == "colluder", -1.0, eff),
            )
        )
        st.voted[items, workers] = True
        old = crowd.cast.copy()
        np.add.at(crowd.cast, workers, 1)
        real += len(items)
        _gold(crowd, old, rng, st, clock, gold_schedule)
    dec = policy.final(st)
    gold = sum(len(x) for x in st.gold_worker) - gold_before
    return dec, real, gold


def hit_votes(
    need: np.ndarray, elig: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """(items, workers) of one round's votes as the pipeline asks for them (mturk/verify.py
    plan_hits): items wanting the same number of votes (at most MAX_ASSIGNMENTS_PER_HIT) go
    into HITs of HIT_ITEMS, re-asks with the same earlier voters side by side (_pack_reasks:
    an item joins while enough workers are left who voted on none of the HIT's items), and
    each HIT's assignments go to distinct random workers eligible for all of it (its
    exclusion list), at most HITS_PER_ROUND HITs each: whoever takes a HIT votes on all of it."""
    nw = elig.shape[1]
    items_out: list[np.ndarray] = []
    workers_out: list[np.ndarray] = []
    want = np.minimum(need, MAX_ASSIGNMENTS_PER_HIT)
    todo = np.flatnonzero(want > 0)
    # Same level together, then the same earlier voters side by side (fresh items first).
    sig = np.packbits(~elig[todo], axis=1)
    keys = [sig[:, j] for j in range(sig.shape[1] - 1, -1, -1)] + [-want[todo]]
    todo = todo[np.lexsort(keys)] if len(todo) else todo
    chunks: list[tuple[np.ndarray, int]] = []
    chunk: list[int] = []
    free = np.zeros(nw, bool)
    level = goal = 0
    for i in todo:
        left = free & elig[i]
        alone = int(elig[i].sum())
        if chunk and want[i] == level and len(chunk) < HIT_ITEMS and left.sum() >= min(goal, alone):
            chunk.append(int(i))
            free = left
            continue
        if chunk:
            chunks.append((np.array(chunk), level))
        chunk, free, level = [int(i)], elig[i].copy(), int(want[i])
        goal = min(level, alone)
    if chunk:
        chunks.append((np.array(chunk), level))
    load = np.zeros(nw, np.int64)
    for k in rng.permutation(len(chunks)):
        its, level = chunks[k]
        ok = elig[its].all(axis=0) & (load < HITS_PER_ROUND)
        cand = np.flatnonzero(ok)
        who = rng.permutation(cand)[:level]
        load[who] += 1
        items_out.append(np.repeat(its, len(who)))
        workers_out.append(np.tile(who, len(its)))
    if not items_out:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate(items_out), np.concatenate(workers_out)


def gold_due(cast: np.ndarray, schedule: bool) -> np.ndarray:
    """Gold answers a worker has been given after `cast` real votes."""
    if not schedule:
        return np.floor(cast * GOLD_RATE).astype(int)
    known_at = GOLD_KNOWN_AFTER / GOLD_NEW  # real votes after which the skill counts as known
    early = np.floor(np.minimum(cast, known_at) * GOLD_NEW)
    late = np.floor(np.maximum(cast - known_at, 0) * GOLD_KNOWN)
    return (early + late).astype(int)


def _warmup(
    crowd: Crowd, gold_hist: dict, rng: np.random.Generator, st: State, clock: Clock
) -> None:
    """Each worker not warmed up yet answers WARMUP gold tiles before their first real vote
    (a spammer fails the gold bar there, as collect blocks it in the pipeline)."""
    had = np.concatenate(gold_hist["w"]) if gold_hist["w"] else np.zeros(0, np.int64)
    new = np.flatnonzero((np.bincount(had, minlength=crowd.n) == 0) & (crowd.cast == 0))
    w = np.repeat(new, WARMUP)
    if not len(w):
        return
    acc = crowd.accuracy(w, crowd.cast[w])
    names = np.array(KINDS)[crowd.kind[w]]
    ok = rng.random(len(w)) < acc
    ok = np.where(names == "colluder", True, ok)
    st.gold_worker.append(w)
    st.gold_correct.append(ok.astype(np.int64))
    st.gold_time.append(np.full(len(w), clock.t))


def _gold(
    crowd: Crowd,
    old: np.ndarray,
    rng: np.random.Generator,
    st: State,
    clock: Clock,
    schedule: bool = False,
) -> None:
    due = gold_due(crowd.cast, schedule) - gold_due(old, schedule)
    w = np.repeat(np.arange(crowd.n), due)
    if not len(w):
        return
    acc = crowd.accuracy(w, crowd.cast[w])
    names = np.array(KINDS)[crowd.kind[w]]
    ok = rng.random(len(w)) < acc
    ok = np.where(names == "colluder", True, ok)  # the sheet passes gold
    st.gold_worker.append(w)
    st.gold_correct.append(ok.astype(np.int64))
    st.gold_time.append(np.full(len(w), clock.t))
