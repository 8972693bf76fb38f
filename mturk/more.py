"""Votes still needed after a collect: extend finished HITs, else publish new ones."""

from __future__ import annotations

import hashlib
import time
from functools import partial
from typing import TYPE_CHECKING, Any

from sqlalchemy import bindparam, func, select, update

from db.models import Hit, HitItem, Vote
from mturk.client import (
    CONCURRENCY,
    call_all,
    error_code,
    first_error,
    make_client,
    write_session,
)
from mturk.fees import MAX_ASSIGNMENTS_PER_HIT

if TYPE_CHECKING:
    from imnet.core.app import App

# HITs per round of concurrent extension requests and per transaction.
EXTEND_BATCH = 200


def _vote_counts(app: App, cids: list[int]) -> dict[int, int]:
    from mturk.verify import chunked

    out: dict[int, int] = {}
    with app.Session() as session:
        for part in chunked(cids):
            q = select(Vote.candidate_id, func.count()).where(Vote.candidate_id.in_(part))
            out.update(session.execute(q.group_by(Vote.candidate_id)).all())
    return out


def _extendable(app: App, needs: dict[int, int]) -> list[tuple[str, int, int]]:
    """(hit_id, max_assignments, k): finished HITs worth extending by k assignments.

    MTurk keeps a HIT's own workers out of its extension, not the workers who answered its
    images in other HITs: a HIT is extended only while no item of it has more votes than the
    HIT has assignments (else a re-ask HIT, which names every voter, wastes less)."""
    out: list[tuple[str, int, int]] = []
    counts = _vote_counts(app, sorted(needs))
    q = (
        select(Hit.hit_id, Hit.max_assignments, HitItem.candidate_id)
        .join(HitItem, HitItem.hit_id == Hit.hit_id)
        .where(
            Hit.status == "Reviewable",
            Hit.expires_at > time.time() + 600,
            HitItem.gold_label.is_(None),
        )
        .order_by(Hit.hit_id)
    )

    def consider(hid: str, max_a: int, cids: list[int]) -> None:
        want = [needs[c] for c in cids if c in needs]
        # Extend only when most of the HIT still needs votes; otherwise a new HIT wastes less.
        if not want or 2 * len(want) < len(cids):
            return
        if any(counts.get(c, 0) > max_a for c in cids if c in needs):
            return
        # Enough for the neediest item: fewer rounds; the others just get a surer posterior.
        k = min(max(want), MAX_ASSIGNMENTS_PER_HIT - max_a)
        if k >= 1:
            out.append((hid, max_a, k))

    cur: tuple[str, int] | None = None
    cids: list[int] = []
    with app.Session() as session:
        for hid, max_a, cid in session.execute(q):
            if cur is not None and cur[0] != hid:
                consider(cur[0], cur[1], cids)
                cids = []
            cur = (hid, max_a)
            cids.append(cid)
    if cur is not None:
        consider(cur[0], cur[1], cids)
    return out


def _extend(client: Any, target: tuple[str, int, int]) -> int:
    """One extension per (HIT, size): a rerun after a crash repeats the same token."""
    hid, max_a, k = target
    token = "imnet-more-" + hashlib.sha256(f"{hid}|{max_a}".encode()).hexdigest()[:50]
    try:
        client.create_additional_assignments_for_hit(
            HITId=hid, NumberOfAdditionalAssignments=k, UniqueRequestToken=token
        )
        return max_a + k
    except client.exceptions.RequestError as e:
        if "DuplicateRequest" not in error_code(e):
            raise
        return int(client.get_hit(HITId=hid)["HIT"]["MaxAssignments"])


def request_more(
    app: App,
    *,
    client: Any = None,
    yes: bool = True,
    out: Any = print,
    needs: dict[int, int] | None = None,
    concurrency: int = CONCURRENCY,
) -> dict:
    """Items consensus still leaves undecided: extend their finished HITs, else publish new ones.

    `needs` (candidate_id -> votes) defaults to `mturk.verify.needs_votes`."""
    from mturk.publish import publish
    from mturk.verify import needs_from_consensus

    client = client or make_client(app.settings, connections=2 * concurrency)
    if needs is None:
        needs = needs_from_consensus(app, None)
    extended = 0
    targets = _extendable(app, needs) if needs and yes else []
    if targets:
        from mturk.routing import sync_routing

        # The routing verdicts `needs_votes` just stored reach the endpoint before extended
        # HITs open again (publish syncs for the HITs it creates).
        sync_routing(app, client, concurrency=concurrency)
    H = Hit.__table__
    for i in range(0, len(targets), EXTEND_BATCH):
        results = call_all(partial(_extend, client), targets[i : i + EXTEND_BATCH], concurrency)
        rows = [{"h": t[0], "mx": new_max} for t, new_max, _e in results if new_max is not None]
        if rows:
            with write_session(app) as session:
                session.execute(
                    update(H)
                    .where(H.c.hit_id == bindparam("h"))
                    .values(
                        max_assignments=bindparam("mx"), status="Assignable", collected_at=None
                    ),
                    rows,
                )
                session.commit()
        extended += len(rows)
        first_error(results)
    if extended:
        out(f"asked for more assignments on {extended} HITs")
    # The needs computed above still hold: items of the HITs just extended are open now, so
    # publish defers them, and consensus need not run over every vote a second time.
    result = publish(
        app,
        None,
        yes=yes,
        client=client,
        out=out,
        needs=needs,
        confirm=(lambda _p: False) if not yes else None,
        concurrency=concurrency,
    )
    return {"extended_hits": extended, "published": result}
