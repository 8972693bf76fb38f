"""`imnet mturk gold`: promote review-page overrides and confident labels to gold, capped.

Gold keeps measuring workers only while new gold keeps coming; but gold taken from the crowd's
own labels can be made by the crowd: a cartel that agrees on an item would write the answer it
is then checked against. So promotion is capped and picky:

* hand overrides first (the requester's own answers), then consensus labels with P(good) >=
  `mturk_gold_min_confidence` (or <= 1 - it) that are no hand label;
* a consensus label is refused when any of its voters is in a dependent group
  (`worker.dependence_group`, stored by consensus) or routed away (`worker.routing`);
* per synset, promoted gold never exceeds min(`mturk_gold_per_synset`, `mturk_gold_max_share`
  x its items): a rerun with nothing new changes nothing (idempotent);
* gold whose source no longer says the same (an override cleared or reversed, a label that
  moved) is dropped first.
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, func, insert, or_, select
from sqlalchemy.orm import Session

from curation.consensus.loading import synset_candidates, synset_wnids
from db.models import GoldItem, Label, Vote, Worker
from mturk.verify import chunked

if TYPE_CHECKING:
    from imnet.core.settings import Settings


def _labels(session: Session, wnid: str, c: float) -> list[tuple[int, bool, bool, float | None]]:
    """(candidate_id, answer, is_override, posterior) of the synset's gold-worthy labels."""
    q = (
        select(Label.candidate_id, Label.decision, Label.overridden, Label.posterior)
        .where(
            Label.wnid == wnid,
            Label.decision.in_(("accept", "reject")),
            or_(Label.overridden.is_(True), Label.posterior >= c, Label.posterior <= 1 - c),
        )
        .order_by(Label.candidate_id)
    )
    out = []
    for cid, decision, overridden, posterior in session.execute(q):
        ok = decision == "accept"
        if not overridden and (posterior is None or (posterior >= c) != ok):
            continue  # a label whose decision and posterior disagree is no gold
        out.append((int(cid), ok, bool(overridden), posterior))
    return out


def _tainted(session: Session, cids: list[int]) -> set[int]:
    """Items with a vote from a worker in a dependent group or routed away."""
    out: set[int] = set()
    for part in chunked(cids):
        q = (
            select(Vote.candidate_id)
            .join(Worker, Worker.worker_id == Vote.worker_id)
            .where(
                Vote.candidate_id.in_(part),
                or_(Worker.dependence_group.is_not(None), Worker.routing.is_not(None)),
            )
            .distinct()
        )
        out.update(int(c) for c in session.scalars(q))
    return out


def promote_gold(
    session: Session, settings: Settings, wnids: list[str] | None = None, dry_run: bool = False
) -> dict[str, Any]:
    """Promote gold per synset (see the module docstring); commits unless `dry_run`.

    Returns {"totals": {added, from_overrides, from_labels, refused_dependent, dropped, gold},
    "per_wnid": {wnid: same counts plus items and cap}}."""
    c = float(settings.mturk_gold_min_confidence)
    report: dict[str, Any] = {"per_wnid": {}}
    totals: dict[str, int] = defaultdict(int)
    for wnid in synset_wnids(session, wnids):
        n_items = len(synset_candidates(session, wnid))
        if not n_items:
            continue
        cap = min(
            int(settings.mturk_gold_per_synset),
            math.floor(float(settings.mturk_gold_max_share) * n_items),
        )
        labels = _labels(session, wnid, c)
        want = {cid: ok for cid, ok, _o, _p in labels}
        have = dict(
            session.execute(
                select(GoldItem.candidate_id, GoldItem.answer).where(GoldItem.wnid == wnid)
            ).all()
        )
        # Gold whose label no longer gives the same answer is no gold any more.
        stale = sorted(cid for cid, ans in have.items() if want.get(cid) != bool(ans))
        kept = len(have) - len(stale)
        fresh = [row for row in labels if row[0] not in have]
        from_labels = [row for row in fresh if not row[2]]
        tainted = _tainted(session, [row[0] for row in from_labels])
        # Overrides first, then the most confident labels (ids break ties: deterministic).
        picks = [row for row in fresh if row[2]] + sorted(
            (row for row in from_labels if row[0] not in tainted),
            key=lambda r: (-abs((r[3] or 0.5) - 0.5), r[0]),
        )
        picks = picks[: max(0, cap - kept)]
        per = {
            "items": n_items,
            "cap": cap,
            "added": len(picks),
            "from_overrides": sum(1 for r in picks if r[2]),
            "from_labels": sum(1 for r in picks if not r[2]),
            "refused_dependent": len(tainted),
            "dropped": len(stale),
            "gold": kept + len(picks),
        }
        report["per_wnid"][wnid] = per
        for k, v in per.items():
            if k not in ("items", "cap"):
                totals[k] += v
        session.commit()  # end the reads before writing (SQLite)
        if dry_run:
            continue
        for part in chunked(stale):
            session.execute(delete(GoldItem).where(GoldItem.candidate_id.in_(part)))
        if picks:
            now = time.time()
            session.execute(
                insert(GoldItem),
                [
                    {
                        "candidate_id": cid,
                        "wnid": wnid,
                        "answer": ok,
                        "source": "override" if is_override else "consensus",
                        "posterior": posterior,
                        "created_at": now,
                    }
                    for cid, ok, is_override, posterior in picks
                ],
            )
        session.commit()
    report["totals"] = {
        k: totals.get(k, 0)
        for k in ("added", "from_overrides", "from_labels", "refused_dependent", "dropped", "gold")
    }
    return report


def gold_count(session: Session) -> int:
    return int(session.scalar(select(func.count()).select_from(GoldItem)) or 0)
