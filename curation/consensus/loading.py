"""Reading votes per synset: streamed from the database into compact arrays, one synset at a time."""

from __future__ import annotations

import functools
import hashlib
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sqlalchemy import ColumnElement, Select, String, bindparam, or_, select
from sqlalchemy.orm import Session

from curation.consensus.base import ACCEPT, REJECT, Votes
from db.models import Assignment, Candidate, Hit, Image, Label, Vote, Worker
from imnet.core.settings import Settings

# Assignment statuses whose votes do not count.
DISCARDED_ASSIGNMENTS = ("Rejected", "Invalid")
# Rows fetched per round trip when streaming (server-side cursor on PostgreSQL).
STREAM_ROWS = 20_000
# Vote and gold times (float seconds) as Votes.order's integer clock: microseconds.
TICKS = 1_000_000


@dataclass
class SynsetVotes:
    """Everything the algorithms need about one synset, read from the database."""

    wnid: str
    candidate_ids: list[int]
    votes: Votes
    calibration: np.ndarray  # bool per item
    known: np.ndarray  # -1 unknown, 0/1 hand label (label.overridden)
    gold_seen: np.ndarray  # per worker code
    gold_correct: np.ndarray
    # Per worker code: blocked and no better than consensus_min_voter_gold on gold (or without
    # gold). The gold bar that blocks a worker is about the price of evidence (a 0.7 worker's
    # vote is worth less than a 0.9 worker's at the same pay); distrust is about chance-level
    # answers. Only the worker-aware model, which weighs each vote by its worker's gold-seeded
    # coins, counts every vote (see `counted_votes`).
    blocked: np.ndarray | None = None
    manual: dict[int, str] = field(default_factory=dict)  # candidate_id -> hand decision
    # Gold answers as timed rows (worker code, correct, time on Votes.order's clock): this
    # synset's HITs dated, other synsets' gold undated (before every vote).
    gold_rows: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
    # Per item: workers who could still vote on it (active, not blocked, not routed away, not
    # voted on it); None when the crowd is unknown (no worker seen, no consensus_crowd_size).
    eligible: np.ndarray | None = None
    crowd: int | None = None  # workers who can vote at all (None: unknown)
    groups: list[np.ndarray] = field(default_factory=list)  # dependent groups (worker codes)

    def counted_votes(self, algorithm: str) -> Votes:
        """The votes `algorithm` reads: all of them for worker-aware and robust, else none from
        distrusted blocked workers (a worker-agnostic model would take a spammer's votes at
        face value)."""
        if (
            algorithm in ("worker-aware", "robust")
            or self.blocked is None
            or not self.blocked.any()
        ):
            return self.votes
        return self.votes.subset(~self.blocked[self.votes.worker])


def _settings(settings: Settings | None) -> Settings:
    if settings is None:
        return Settings()
    return settings


def eligible_candidates(session: Session, wnids: list[str] | None) -> dict[str, list[int]]:
    """wnid -> eligible candidate ids (fetched, not rejected by quality, not a near duplicate).

    Holds every id of the selection: for a whole dataset use `synset_wnids` and
    `synset_candidates`, one synset at a time."""
    q = _eligible().order_by(Candidate.wnid, Candidate.id)
    if wnids is not None:
        q = q.where(Candidate.wnid.in_(list(wnids)))
    out: dict[str, list[int]] = defaultdict(list)
    for cid, wnid in session.execute(q):
        out[wnid].append(cid)
    return dict(out)


def eligible_filter() -> tuple[ColumnElement[bool], ...]:
    """What makes a candidate eligible for votes, over Candidate joined to its Image: fetched,
    not rejected by the quality filter, not a near duplicate."""
    return (
        Candidate.status == "fetched",
        or_(Image.quality.is_(None), Image.quality != "rejected"),
        Image.near_dup_of.is_(None),
    )


def _eligible() -> Select[int, str]:
    return (
        select(Candidate.id, Candidate.wnid)
        .join(Image, Image.sha256 == Candidate.image_sha256)
        .where(*eligible_filter())
    )


def synset_wnids(
    session: Session, wnids: list[str] | None = None, shard: tuple[int, int] | None = None
) -> list[str]:
    """The synsets to decide, sorted: those given (or every synset with a fetched candidate),
    restricted to shard (i, n) of a stable hash partition. A synset may turn out to have no
    eligible candidate; `iter_synset_votes` skips it."""
    if wnids is None:
        q = select(Candidate.wnid).where(Candidate.status == "fetched").distinct()
        found = set(session.scalars(q))
    else:
        found = set(wnids)
    return sorted(w for w in found if shard is None or in_shard(w, shard))


def in_shard(wnid: str, shard: tuple[int, int]) -> bool:
    """Synset `wnid` belongs to shard (i, n): a hash partition every process computes alike."""
    i, n = shard
    return int.from_bytes(hashlib.sha256(wnid.encode()).digest()[:8], "big") % n == i


def synset_candidates(session: Session, wnid: str) -> np.ndarray:
    """One synset's eligible candidate ids, ascending."""
    ids = session.connection().execute(_statements()["candidates"], {"wnid": wnid}).scalars()
    return np.asarray(ids.all(), dtype=np.int64)


@functools.cache
def _statements() -> dict[str, Any]:
    """The per-synset queries, built once: run per synset, building them would cost more than
    running them. Parameter: wnid."""
    wnid = bindparam("wnid", type_=String)
    return {
        "candidates": _eligible()
        .where(Candidate.wnid == wnid)
        .order_by(Candidate.id)
        .with_only_columns(Candidate.id),
        "votes": select(Vote.candidate_id, Vote.worker_id, Vote.is_match, Vote.created_at)
        .join(Assignment, Assignment.assignment_id == Vote.assignment_id)
        .where(Vote.wnid == wnid, Assignment.status.not_in(DISCARDED_ASSIGNMENTS))
        # Ties on time by worker before the (random) assignment id: the same crowd, the same order.
        .order_by(Vote.created_at, Vote.worker_id, Vote.assignment_id, Vote.candidate_id)
        .execution_options(yield_per=STREAM_ROWS),
        "manual": select(Label.candidate_id, Label.decision).where(
            Label.wnid == wnid, Label.overridden.is_(True)
        ),
        "machine": select(Label.candidate_id).where(
            Label.wnid == wnid, Label.overridden.is_(False)
        ),
        # Gold answered in this synset's HITs, per assignment, dated (hit.wnid is indexed).
        "gold": select(
            Assignment.worker_id,
            Assignment.gold_seen,
            Assignment.gold_correct,
            Assignment.submitted_at,
        )
        .join(Hit, Hit.hit_id == Assignment.hit_id)
        .where(Hit.wnid == wnid, Assignment.gold_seen > 0),
    }


@dataclass
class WorkerTable:
    """The only input shared across synsets: each worker's gold record and whether their votes
    are distrusted (blocked and near chance on gold). One small row per worker, read once."""

    gold: dict[str, tuple[int, int]]
    distrusted: set[str]
    # Workers who can still be given work (not blocked, not routed away), and each worker's
    # dependent group (its key) as earlier runs found it.
    active: set[str] = field(default_factory=set)
    group: dict[str, str] = field(default_factory=dict)
    crowd_size: int = 0

    @classmethod
    def read(cls, session: Session, settings: Settings) -> WorkerTable:
        gold: dict[str, tuple[int, int]] = {}
        distrusted: set[str] = set()
        active: set[str] = set()
        group: dict[str, str] = {}
        q = select(
            Worker.worker_id,
            Worker.gold_seen,
            Worker.gold_correct,
            Worker.blocked,
            Worker.routing,
            Worker.dependence_group,
        )
        for wid, seen, correct, is_blocked, routing, dep in session.execute(
            q.execution_options(yield_per=STREAM_ROWS)
        ):
            gold[wid] = (seen, correct)
            if not is_blocked and routing is None:
                active.add(wid)
            if dep is not None:
                group[wid] = dep
            # A blocked worker's votes are distrusted when their gold says near chance.
            if is_blocked and (
                not seen or (correct or 0) / seen < settings.consensus_min_voter_gold
            ):
                distrusted.add(wid)
        return cls(gold, distrusted, active, group, int(settings.consensus_crowd_size or 0))

    def crowd(self) -> int | None:
        """Workers who can vote at all: the active ones seen, at least consensus_crowd_size;
        None when neither says anything (no worker seen yet: the crowd is unknown)."""
        n = max(len(self.active), self.crowd_size)
        return n if n > 0 else None


def vote_parts(
    session: Session, wnid: str, codes: dict[str, int]
) -> Iterator[tuple[np.ndarray, ...]]:
    """One synset's counted votes in time order, streamed: (candidate id, worker code, label,
    time on Votes.order's clock) arrays per batch; `codes` (worker id -> code) grows."""
    vq = _statements()["votes"]
    for rows in session.connection().execute(vq, {"wnid": wnid}).partitions():
        n = len(rows)
        cid = np.fromiter((r[0] for r in rows), np.int64, n)
        wk = np.fromiter((codes.setdefault(r[1], len(codes)) for r in rows), np.int64, n)
        lab = np.fromiter((bool(r[2]) for r in rows), np.int64, n)
        ts = np.fromiter((round((r[3] or 0.0) * TICKS) for r in rows), np.int64, n)
        yield cid, wk, lab, ts


def _synset_votes(session: Session, wnid: str, cids: np.ndarray) -> Votes:
    """The counted votes on `cids` (one synset) in time order, streamed into numpy arrays: a
    worker's second vote on the same image is no independent evidence, only the first counts."""
    codes: dict[str, int] = {}
    parts = list(vote_parts(session, wnid, codes))
    if parts:
        cid, wk, lab, ts = (np.concatenate(a) for a in zip(*parts, strict=True))
    else:
        cid = wk = lab = ts = np.zeros(0, dtype=np.int64)
    del parts
    item = np.searchsorted(cids, cid)
    ok = item < len(cids)
    ok[ok] = cids[item[ok]] == cid[ok]
    item, wk, lab, ts = item[ok], wk[ok], lab[ok], ts[ok]
    _, first = np.unique(item * max(len(codes), 1) + wk, return_index=True)
    keep = np.sort(first)
    item, wk, lab, ts = item[keep], wk[keep], lab[keep], ts[keep]
    # Worker codes in sorted id order, as Votes.from_tuples gives them.
    by_code = np.array(list(codes), dtype=object)
    present = np.unique(wk)
    names = by_code[present].tolist()
    order = sorted(range(len(names)), key=names.__getitem__)
    recode = np.zeros(len(codes), dtype=np.int64)
    recode[present[order]] = np.arange(len(present))
    return Votes(
        item=item,
        worker=recode[wk],
        label=lab,
        n_items=len(cids),
        n_workers=len(present),
        item_keys=cids.tolist(),
        worker_keys=[names[k] for k in order],
        # Time order as rows come (created_at, then ids); ties keep that order.
        order=np.maximum.accumulate(ts) if len(ts) else ts,
    )


def load_synset(
    session: Session,
    wnid: str,
    settings: Settings | None = None,
    workers: WorkerTable | None = None,
) -> SynsetVotes | None:
    """One synset's eligible items, counted votes, hand labels, gold stats and distrusted
    workers (None when it has no eligible candidate). Memory: this synset's votes."""
    s = _settings(settings)
    cids = synset_candidates(session, wnid)
    if not len(cids):
        return None
    workers = workers or WorkerTable.read(session, s)
    votes = _synset_votes(session, wnid, cids)
    mq = _statements()["manual"]
    manual = {cid: d for cid, d in session.connection().execute(mq, {"wnid": wnid})}
    ids: list[int] = cids.tolist()  # the same keys _synset_votes gave `votes`, as ints
    known = np.array(
        [1 if manual.get(c) == ACCEPT else 0 if manual.get(c) == REJECT else -1 for c in ids],
        dtype=np.int64,
    )
    from curation.consensus.dynamic import choose_calibration

    calib = choose_calibration(ids, s.consensus_initial_subset, f"imnet-calibration:{wnid}")
    gold = [workers.gold.get(str(w), (0, 0)) for w in votes.worker_keys]
    crowd = workers.crowd()
    return SynsetVotes(
        wnid=wnid,
        candidate_ids=ids,
        votes=votes,
        calibration=np.array([c in calib for c in ids], dtype=bool),
        known=known,
        gold_seen=np.array([g[0] for g in gold], dtype=float),
        gold_correct=np.array([g[1] for g in gold], dtype=float),
        blocked=np.array([w in workers.distrusted for w in votes.worker_keys], dtype=bool),
        manual=manual,
        gold_rows=_gold_rows(session, wnid, votes, gold),
        eligible=_eligible_counts(votes, workers, crowd),
        crowd=crowd,
        groups=_groups(votes, workers),
    )


def _gold_rows(
    session: Session, wnid: str, votes: Votes, lifetime: list[tuple[int, int]]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each voter's gold answers as rows: those in this synset's HITs at their submit time,
    the rest of their lifetime record undated (before every vote)."""
    code = {k: i for i, k in enumerate(votes.worker_keys)}
    here_seen = np.zeros(len(code), np.int64)
    here_ok = np.zeros(len(code), np.int64)
    ws: list[np.ndarray] = []
    oks: list[np.ndarray] = []
    ts: list[np.ndarray] = []
    for wid, seen, correct, at in session.connection().execute(
        _statements()["gold"], {"wnid": wnid}
    ):
        c = code.get(wid)
        if c is None or not seen:
            continue
        right = min(int(correct or 0), int(seen))
        here_seen[c] += seen
        here_ok[c] += right
        ws.append(np.full(seen, c, np.int64))
        oks.append(np.r_[np.ones(right, np.int64), np.zeros(seen - right, np.int64)])
        ts.append(np.full(seen, round((at or 0.0) * TICKS), np.int64))
    rest_seen = np.maximum(np.array([g[0] for g in lifetime], np.int64) - here_seen, 0)
    rest_ok = np.clip(np.array([g[1] for g in lifetime], np.int64) - here_ok, 0, rest_seen)
    w0 = np.repeat(np.arange(len(code), dtype=np.int64), rest_seen)
    ok0 = np.concatenate(
        [np.zeros(0, np.int64)]
        + [
            np.r_[np.ones(o, np.int64), np.zeros(s - o, np.int64)]
            for s, o in zip(rest_seen, rest_ok, strict=True)
        ]
    )
    t0 = np.full(len(w0), np.iinfo(np.int64).min // 2, np.int64)
    return (
        np.concatenate([w0, *ws]),
        np.concatenate([ok0, *oks]),
        np.concatenate([t0, *ts]),
    )


def _eligible_counts(votes: Votes, workers: WorkerTable, crowd: int | None) -> np.ndarray | None:
    """Per item: workers who could still vote on it, the crowd less the active ones who did."""
    if crowd is None:
        return None
    is_active = np.array([str(k) in workers.active for k in votes.worker_keys], dtype=bool)
    voted = np.bincount(
        votes.item[is_active[votes.worker]] if len(votes) else votes.item,
        minlength=votes.n_items,
    )
    return np.maximum(crowd - voted, 0).astype(np.int64)


def _groups(votes: Votes, workers: WorkerTable) -> list[np.ndarray]:
    """The dependent groups earlier runs found, as this synset's worker codes (2+ voters)."""
    by: dict[str, list[int]] = defaultdict(list)
    for i, k in enumerate(votes.worker_keys):
        g = workers.group.get(str(k))
        if g is not None:
            by[g].append(i)
    return [np.array(v, np.int64) for _g, v in sorted(by.items()) if len(v) >= 2]


def iter_synset_votes(
    session: Session,
    wnids: list[str] | None = None,
    settings: Settings | None = None,
    shard: tuple[int, int] | None = None,
) -> Iterator[SynsetVotes]:
    """`load_synset` for each selected synset in wnid order: memory is bounded by the largest
    synset, not the dataset. The worker table is read once, first."""
    s = _settings(settings)
    workers = WorkerTable.read(session, s)
    for wnid in synset_wnids(session, wnids, shard):
        data = load_synset(session, wnid, s, workers)
        if data is not None:
            yield data


def load_votes(
    session: Session, wnids: list[str] | None, settings: Settings | None = None
) -> list[SynsetVotes]:
    """Every selected synset's `SynsetVotes` at once (for a few synsets; whole-dataset loops
    use `iter_synset_votes`)."""
    return list(iter_synset_votes(session, wnids, settings))


def machine_label_ids(session: Session, wnid: str) -> np.ndarray:
    """Ids of the synset's labels written by consensus (not by hand)."""
    rows = session.connection().execute(_statements()["machine"], {"wnid": wnid}).scalars()
    return np.asarray(rows.all(), dtype=np.int64)
