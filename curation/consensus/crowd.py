"""What a consensus run learns about the crowd: routing verdicts, dependent groups, per-synset needs.

`CrowdTally` gathers, synset by synset, what the robust model says about workers (uninformative
now; in a dependent group it found there) and about the crowd (items it cannot decide, the
annotators that would take); `write` stores it: one `worker_verdict` row per (synset, worker
with a verdict), replacing the rows of the synsets this run decided, then `worker.routing` and
`worker.dependence_group` recomputed from every synset's rows (read back by the next run, by
routing and by the review page), and one `consensus_synset` row per synset. So runs over some
synsets (`--shard i/n` on many machines) refresh their own synsets' verdicts and never undo
another shard's, and a worker the refitted synsets no longer flag gets work again.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from sqlalchemy import bindparam, delete, or_, select, text, update
from sqlalchemy.orm import Session

from db.models import ConsensusSynset, Worker, WorkerVerdict

if TYPE_CHECKING:
    from curation.consensus.decide import SynsetResult
    from curation.consensus.loading import SynsetVotes

UNINFORMATIVE, REDUNDANT = "uninformative", "redundant"
CROWD_WIDE = "*"  # worker_verdict.wnid of the crowd-wide dependence pass's groups


def under_gold_bar(
    seen: np.ndarray,
    correct: np.ndarray,
    bar: float,
    min_seen: int,
    alpha: float,
    crowd: int,
    others: int = 0,
) -> np.ndarray:
    """Which of these workers the gold bar shuts out, after `min_seen` gold answers each.

    While the workers it would leave (these and `others` not shut out) number at least `crowd`,
    the bar applies to the point estimate: a 0.7 worker goes after 6-8 checks, and a 0.9 worker
    who missed 2 of the first 6 (P 0.11) goes too, which a big crowd can spare. Under that, only
    a one-sided binomial test shuts a worker out: P(at most `correct` right of `seen` | accuracy
    = bar) < alpha (at 0.05 and the 0.75 bar: 2 of 6, 3 of 8, 4 of 10, 8 of 16 right). The
    point estimate left `imnet demo`'s 20 workers 0-3 of their 14 careful ones and items without
    annotators, and all-0.7 crowds of 20 with almost no one (bench/consensus.py, held-out seeds:
    recall 0.094 -> 0.513 with the test)."""
    seen = np.asarray(seen, dtype=np.int64)
    correct = np.minimum(np.asarray(correct, dtype=np.int64), seen)
    measured = seen >= max(1, min_seen)
    point = measured & (correct < bar * seen)
    if len(seen) + others - int(point.sum()) >= crowd:
        return point
    from scipy.special import bdtr

    return measured & (bdtr(correct, np.maximum(seen, 1), bar) < alpha)


@dataclass
class CrowdTally:
    """Routing verdicts and crowd figures over the synsets of one run."""

    min_gold_seen: int = 6
    # The run decides every synset: rows of synsets it did not decide (no votes left) go too.
    complete: bool = True
    synsets: dict[str, dict[str, Any]] = field(default_factory=dict)
    fallbacks: list[str] = field(default_factory=list)
    robust: bool = False
    # Per synset a robust fit decided: worker -> (uninformative, group found there, skill there).
    verdicts: dict[str, dict[str, tuple[bool, str | None, float]]] = field(default_factory=dict)
    pooled: list[set[str]] = field(default_factory=list)  # the crowd-wide pass's groups
    # Groups earlier runs found, per synset: a fit starts from those of the synsets this run
    # has not decided (a partial run's; a complete run re-tests with the crowd-wide pass).
    stored: dict[str, list[set[str]]] = field(default_factory=dict)
    skill: dict[str, float] = field(default_factory=dict)
    found: list[set[str]] = field(default_factory=list)  # groups this run's fits found

    def decided(self, wnid: str, algorithm: str) -> None:
        """The run decides `wnid` (even with no votes left there): after a robust run its old
        verdict rows go, whatever replaces them."""
        if algorithm == "robust":
            self.robust = True
            self.verdicts.setdefault(wnid, {})

    def add(self, data: SynsetVotes, res: SynsetResult, algorithm: str) -> None:
        row = {
            "algorithm": algorithm,
            "items": len(res.candidate_ids),
            "insufficient": int(res.extra.get("insufficient", 0)),
            "crowd_needed": res.extra.get("crowd_needed"),
            "eligible_workers": data.crowd,
            "note": res.extra.get("fallback"),
        }
        self.synsets[data.wnid] = row
        if row["note"]:
            self.fallbacks.append(data.wnid)
        m = res.model
        if m is None or not hasattr(m, "uninformative_"):
            return
        keys = [str(k) for k in m.worker_keys_]
        seen = data.gold_seen
        out: dict[str, tuple[bool, str | None, float]] = {}
        for i, k in enumerate(keys):
            self.skill[k] = max(self.skill.get(k, 0.0), float(m.skills_[i]))
            # Routing needs measured gold as well as votes: "uninformative" on a few votes
            # alone could be a model captured by a cartel (robust.py vetoes on passed gold).
            if m.uninformative_[i] and seen[i] >= self.min_gold_seen:
                out[k] = (True, None, float(m.skills_[i]))
        # Only the groups this synset's votes show: those the fit was given (stored, pooled,
        # earlier synsets') have rows of their own, and copying them here would keep a group
        # for good once found.
        for g in m.found_groups_:
            members = sorted(keys[int(w)] for w in g)
            self.found.append(set(members))
            for w in g:
                k = keys[int(w)]
                out[k] = (out.get(k, (False,))[0], members[0], float(m.skills_[int(w)]))
        self.verdicts[data.wnid] = out

    def groups_for(self, wnid: str) -> list[set[str]]:
        """The groups `wnid`'s fit starts from: the crowd-wide pass's, those found in the
        synsets this run decided before it, and those earlier runs found in other synsets this
        run has not decided (yet)."""
        sets = [*self.pooled, *self.found]
        sets += [
            set(g)
            for w, gs in self.stored.items()
            if w != wnid and w not in self.verdicts
            for g in gs
        ]
        return components(sets)

    def write(self, session: Session) -> None:
        """Store each synset's row and, after a robust run, its verdict rows, then every
        worker's routing and group from all synsets' rows; the caller commits."""
        now = time.time()
        for wnid, row in self.synsets.items():
            have = session.get(ConsensusSynset, wnid)
            if have is None:
                session.add(ConsensusSynset(wnid=wnid, updated_at=now, **row))
            else:
                for k, v in row.items():
                    setattr(have, k, v)
                have.updated_at = now
        if not self.robust:
            return
        conn = session.connection()
        if conn.dialect.name == "postgresql":
            # Shards finishing together: each recomputes from all rows, so they take turns (on
            # SQLite the write transaction already does).
            conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _LOCK_KEY})
        t = WorkerVerdict.__table__
        if self.complete:
            conn.execute(delete(t))
        else:
            done = [*self.verdicts, CROWD_WIDE]
            for i in range(0, len(done), 500):
                conn.execute(delete(t).where(t.c.wnid.in_(done[i : i + 500])))
        rows = [
            {"wnid": w, "worker_id": k, "uninformative": u, "dependence_group": g, "skill": sk}
            for w, per in self.verdicts.items()
            for k, (u, g, sk) in per.items()
        ]
        rows += [
            {
                "wnid": CROWD_WIDE,
                "worker_id": k,
                "uninformative": False,
                "dependence_group": min(g),
                "skill": self.skill.get(k),
            }
            for g in self.pooled
            for k in g
        ]
        if rows:
            conn.execute(t.insert(), rows)
        _recompute(conn)


_LOCK_KEY = 0x696D7631  # "imv1": the worker_verdict recompute


def clear_verdicts(session: Session) -> None:
    """Drop every synset's verdict rows (before a complete run split over processes)."""
    session.execute(delete(WorkerVerdict.__table__))


def stored_groups(session: Session) -> dict[str, list[set[str]]]:
    """Per synset, the dependent groups earlier runs found there (not the crowd-wide pass's:
    every robust run does that pass afresh)."""
    t = WorkerVerdict.__table__
    q = select(t.c.wnid, t.c.dependence_group, t.c.worker_id).where(
        t.c.dependence_group.is_not(None), t.c.wnid != CROWD_WIDE
    )
    by: dict[tuple[str, str], set[str]] = {}
    for wnid, g, k in session.execute(q):
        by.setdefault((wnid, g), set()).add(k)
    out: dict[str, list[set[str]]] = {}
    for (wnid, _g), members in by.items():
        out.setdefault(wnid, []).append(members)
    return out


def components(sets: list[set[str]]) -> list[set[str]]:
    """Groups that share a worker joined into one (dependence_pairs.merge_groups on worker codes)."""
    from curation.consensus.dependence_pairs import merge_groups

    keys = sorted(set().union(*sets)) if sets else []
    code = {k: i for i, k in enumerate(keys)}
    groups = [np.array([code[k] for k in g], np.int64) for g in sets]
    return [{keys[int(i)] for i in g} for g in merge_groups(groups, len(keys))]


def _recompute(conn: Any) -> None:
    """`worker.routing` / `worker.dependence_group` from every synset's verdict rows: routed away
    as uninformative where any synset's fit says so (with gold measured), as redundant for every
    member of a dependent group but its most skilled; NULL for everyone else who had either."""
    t = WorkerVerdict.__table__
    unin: set[str] = set()
    skill: dict[str, float] = {}
    found: dict[tuple[str, str], set[str]] = {}
    for wnid, k, u, g, sk in conn.execute(
        select(t.c.wnid, t.c.worker_id, t.c.uninformative, t.c.dependence_group, t.c.skill)
    ):
        if u:
            unin.add(k)
        if sk is not None:
            skill[k] = max(skill.get(k, 0.0), sk)
        if g is not None:
            found.setdefault((wnid, g), set()).add(k)
    want: dict[str, tuple[str | None, str | None]] = {}
    for g in components(list(found.values())):
        best = max(sorted(g), key=lambda k: skill.get(k, 0.0))
        for k in g:
            want[k] = (None if k == best else REDUNDANT, min(g))
    for k in unin:
        want[k] = (UNINFORMATIVE, want.get(k, (None, None))[1])
    w = Worker.__table__
    had = conn.execute(
        select(w.c.worker_id, w.c.routing, w.c.dependence_group).where(
            or_(w.c.routing.is_not(None), w.c.dependence_group.is_not(None))
        )
    ).all()
    now = {k: (r, g) for k, r, g in had}
    # Only what changes: a run rewrites no row for the workers whose verdict stands.
    changes = [
        {"wid": k, "routing": r, "dep": g}
        for k, (r, g) in {**dict.fromkeys(now, (None, None)), **want}.items()
        if now.get(k, (None, None)) != (r, g)
    ]
    if changes:
        conn.execute(
            update(w)
            .where(w.c.worker_id == bindparam("wid"))
            .values(routing=bindparam("routing"), dependence_group=bindparam("dep")),
            changes,
        )
