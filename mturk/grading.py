"""Reviewing collected work: approve or reject each assignment at the server, exclude bad workers.

Split from collect.py: collect decides each verdict locally and records it; this sends the
verdicts (resumable: the server's word stands when it already has one) and grants the exclusion
qualification to workers under the gold-accuracy bar.
"""

from __future__ import annotations

import time
from functools import partial
from typing import TYPE_CHECKING, Any

import numpy as np
from sqlalchemy import bindparam, func, select, update

from curation.consensus.crowd import under_gold_bar
from db.models import Assignment, Worker
from mturk.client import CONCURRENCY, call_all, error_code, first_error, write_session
from mturk.publish import exclusion_qualification
from mturk.verify import chunked

if TYPE_CHECKING:
    from imnet.core.app import App

# Assignments per review round.
REVIEW_BATCH = 500


def review_one(
    client: Any, server_status: dict[str, str], row: tuple[str, str, str | None]
) -> tuple[str, str]:
    """Send one verdict; returns (the server's verdict now, approved|rejected|already)."""
    aid, status, reason = row
    approve = status == "Approved"
    verdict = server_status.get(aid, "Submitted")
    if verdict != "Submitted":
        return verdict, "already"
    try:
        if approve:
            client.approve_assignment(AssignmentId=aid, RequesterFeedback="Thank you.")
        else:
            feedback = reason or "Rejected by the review policy."
            client.reject_assignment(AssignmentId=aid, RequesterFeedback=feedback[:1000])
    except client.exceptions.RequestError as e:
        if "InvalidAssignmentState" not in error_code(e):
            raise
        return client.get_assignment(AssignmentId=aid)["Assignment"]["AssignmentStatus"], "already"
    return ("Approved", "approved") if approve else ("Rejected", "rejected")


def send_reviews(
    app: App, client: Any, server_status: dict[str, str], concurrency: int = CONCURRENCY
) -> dict[str, int]:
    """Approve or reject every locally decided, not yet reviewed assignment (resumable).

    When the server already holds a verdict (reviewed before a crash, or auto-approved), its word
    stands and the local status follows it (an "Invalid" answer stays Invalid: it has no votes)."""
    done = {"approved": 0, "rejected": 0, "already": 0}
    A = Assignment.__table__
    last = ""
    while True:
        with app.Session() as session:
            page = [
                (aid, st, reason)
                for aid, st, reason in session.execute(
                    select(A.c.assignment_id, A.c.status, A.c.reject_reason)
                    .where(A.c.reviewed_at.is_(None), A.c.assignment_id > last)
                    .order_by(A.c.assignment_id)
                    .limit(REVIEW_BATCH)
                )
            ]
        if not page:
            return done
        last = page[-1][0]
        results = call_all(partial(review_one, client, server_status), page, concurrency)
        now = time.time()
        rows = []
        for (aid, status, _r), res, _err in results:
            if res is None:
                continue
            verdict, kind = res
            done[kind] += 1
            keep = status == "Invalid" or verdict not in ("Approved", "Rejected")
            rows.append({"a": aid, "st": status if keep else verdict, "t": now})
        if rows:
            with write_session(app) as session:
                session.execute(
                    update(A)
                    .where(A.c.assignment_id == bindparam("a"), A.c.reviewed_at.is_(None))
                    .values(status=bindparam("st"), reviewed_at=bindparam("t")),
                    rows,
                )
                session.commit()
        first_error(results)


def exclude_workers(app: App, client: Any, concurrency: int = CONCURRENCY) -> list[str]:
    """Give the exclusion qualification to workers under the accuracy bar (once each)."""
    s = app.settings
    with app.Session() as session:
        rows = session.execute(
            select(Worker.worker_id, Worker.gold_seen, Worker.gold_correct).where(
                Worker.blocked.is_(False), Worker.gold_seen >= max(1, s.mturk_min_gold_seen)
            )
        ).all()
        active = session.scalar(
            select(func.count()).select_from(Worker).where(Worker.blocked.is_(False))
        )
    if not rows:
        return []
    ids, seen, correct = zip(*rows, strict=True)
    out = under_gold_bar(
        np.array(seen),
        np.array(correct),
        s.mturk_min_worker_gold,
        s.mturk_min_gold_seen,
        s.mturk_gold_bar_alpha,
        s.mturk_gold_bar_crowd,
        others=int(active or 0) - len(rows),
    )
    bad = [w for w, o in zip(ids, out, strict=True) if o]
    if not bad:
        return []
    qual = exclusion_qualification(client)

    def grant(wid: str) -> None:
        client.associate_qualification_with_worker(
            QualificationTypeId=qual, WorkerId=wid, IntegerValue=1, SendNotification=False
        )

    results = call_all(grant, bad, concurrency)
    ok = [w for w, _r, err in results if err is None]
    with write_session(app) as session:
        for part in chunked(ok):
            session.execute(update(Worker).where(Worker.worker_id.in_(part)).values(blocked=True))
        session.commit()
    first_error(results)
    return bad
