"""What a consensus run learns about the crowd: routing verdicts, dependent groups, per-synset needs.

`CrowdTally` gathers, synset by synset, what the robust model says about workers (uninformative
now; in a dependent group) and about the crowd (items it cannot decide, the annotators that would
take); `write` stores it: `worker.routing` and `worker.dependence_group` (read back by the next
run, by routing and by the review page) and one `consensus_synset` row per synset.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import bindparam, update
from sqlalchemy.orm import Session

from db.models import ConsensusSynset, Worker

if TYPE_CHECKING:
    from curation.consensus.decide import SynsetResult
    from curation.consensus.loading import SynsetVotes

UNINFORMATIVE, REDUNDANT = "uninformative", "redundant"


@dataclass
class CrowdTally:
    """Routing verdicts and crowd figures over the synsets of one run."""

    min_gold_seen: int = 6
    seen: set[str] = field(default_factory=set)
    uninformative: set[str] = field(default_factory=set)
    groups: list[set[str]] = field(default_factory=list)
    skill: dict[str, float] = field(default_factory=dict)
    synsets: dict[str, dict[str, Any]] = field(default_factory=dict)
    fallbacks: list[str] = field(default_factory=list)
    robust: bool = False
    # The run saw every synset: a worker it no longer flags is handed work again. A partial
    # run (some synsets, one shard) only adds verdicts, so shards never undo each other's.
    complete: bool = True

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
        self.robust = True
        keys = [str(k) for k in m.worker_keys_]
        self.seen.update(keys)
        seen = data.gold_seen
        for i, k in enumerate(keys):
            # Routing needs measured gold as well as votes: "uninformative" on a few votes
            # alone could be a model captured by a cartel (robust.py vetoes on passed gold).
            if m.uninformative_[i] and seen[i] >= self.min_gold_seen:
                self.uninformative.add(k)
            self.skill[k] = max(self.skill.get(k, 0.0), float(m.skills_[i]))
        for g in m.groups_:
            self.join({keys[int(w)] for w in g})

    def join(self, members: set[str]) -> None:
        # Groups found in different synsets that share a worker are one group.
        keep = []
        for g in self.groups:
            if g & members:
                members |= g
            else:
                keep.append(g)
        self.groups = [*keep, members]

    def routing(self) -> dict[str, str | None]:
        """worker -> routing verdict (None: give them work) for every worker this run saw."""
        out: dict[str, str | None] = dict.fromkeys(self.seen)
        for g in self.groups:
            best = max(sorted(g), key=lambda k: self.skill.get(k, 0.0))
            for k in g:
                if k != best:
                    out[k] = REDUNDANT
        for k in self.uninformative:
            out[k] = UNINFORMATIVE
        return out

    def write(self, session: Session) -> None:
        """Store the verdicts of the workers seen and each synset's row; the caller commits."""
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
        group_of = {k: min(g) for g in self.groups for k in g}
        verdict = self.routing()
        rows = [
            {"wid": k, "routing": verdict[k], "dep": group_of.get(k)}
            for k in sorted(verdict)
            if self.complete or verdict[k] is not None
        ]
        if rows:
            t = Worker.__table__
            session.connection().execute(
                update(t)
                .where(t.c.worker_id == bindparam("wid"))
                .values(routing=bindparam("routing"), dependence_group=bindparam("dep")),
                rows,
            )
