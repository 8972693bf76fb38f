"""`imnet mturk collect`: fetch submitted work, store votes, review it by policy, ask for more.

Policy (stated, and the feedback the worker reads says which rule applied):
- an answer that cannot be parsed (malformed XML, missing, duplicated or unknown fields) is
  rejected, its reason recorded on the assignment (status "Invalid"), and it gives no votes;
- an answer that gets under `mturk_min_assignment_gold` of its hidden check images right is
  rejected; its votes are stored but consensus ignores rejected assignments;
- everything else is approved;
- a worker's second answer on the same item (from a later round's HIT) is not stored as a vote;
- a worker whose check-image accuracy over all their work falls under `mturk_min_worker_gold`
  after `mturk_min_gold_seen` checks gets the exclusion qualification (the HIT type requires that
  they lack it) and is marked blocked locally: they get no more HITs. Their earlier votes stay;
  worker-aware consensus weighs them by the worker's record, the others drop them when the
  worker's gold accuracy is under `consensus_min_voter_gold`.
Every step is recorded before or with its API call, so a rerun repeats nothing and finishes
whatever a crash interrupted.
"""

from __future__ import annotations

import hashlib
import logging
import time
from typing import Any

from sqlalchemy import func, select

from db.models import Assignment, Hit, HitItem, Vote, Worker
from mturk.answers import AnswerError, parse_grid_answer
from mturk.client import error_code, make_client, paginate, write_session
from mturk.planning import MAX_ASSIGNMENTS_PER_HIT
from mturk.publish import exclusion_qualification

log = logging.getLogger(__name__)


def _review(item: dict[str, Any], gold: dict[int, bool], positions: list[int], s: Any) -> dict:
    """Decide one assignment: status, feedback, votes and gold counts."""
    try:
        ans = parse_grid_answer(item.get("Answer"), positions)
    except AnswerError as e:
        return {
            "status": "Invalid",
            "reason": str(e),
            "ticked": None,
            "seen": 0,
            "correct": 0,
            "feedback": f"Your answer could not be read ({str(e)[:200]}); it was rejected.",
        }
    seen = len(gold)
    correct = sum(1 for p, want in gold.items() if ans.ticked.get(p) == want)
    if seen and correct / seen < s.mturk_min_assignment_gold:
        return {
            "status": "Rejected",
            "reason": f"gold: {correct}/{seen} check images right",
            "ticked": ans.ticked,
            "seen": seen,
            "correct": correct,
            "feedback": f"Rejected: {seen - correct} of {seen} check images with known "
            "answers were marked wrongly.",
        }
    return {
        "status": "Approved",
        "reason": None,
        "ticked": ans.ticked,
        "seen": seen,
        "correct": correct,
        "feedback": "Thank you.",
    }


def _store(app: Any, hit: Hit, item: dict[str, Any], items: list[HitItem]) -> bool:
    """Record one assignment with its votes and the worker's counts in one transaction."""
    s = app.settings
    gold = {i.position: bool(i.gold_label) for i in items if i.gold_label is not None}
    d = _review(item, gold, [i.position for i in items], s)
    with write_session(app) as session:
        if session.get(Assignment, item["AssignmentId"]) is not None:
            return False
        session.add(
            Assignment(
                assignment_id=item["AssignmentId"],
                hit_id=hit.hit_id,
                worker_id=item["WorkerId"],
                status=d["status"],
                submitted_at=_ts(item.get("SubmitTime")),
                answer_xml=item.get("Answer"),
                reject_reason=d["reason"] or (d["feedback"] if d["status"] != "Approved" else None),
                gold_seen=d["seen"],
                gold_correct=d["correct"],
                reviewed_at=None,
            )
        )
        session.flush()
        if d["ticked"] is not None:
            # One vote per worker and item: a worker who meets an item again in a later round's
            # HIT would otherwise count twice in a consensus that assumes independent votes.
            voted = set(
                session.scalars(
                    select(Vote.candidate_id).where(
                        Vote.worker_id == item["WorkerId"],
                        Vote.candidate_id.in_([i.candidate_id for i in items]),
                    )
                )
            )
            for i in items:
                if i.gold_label is None and i.candidate_id not in voted:
                    session.add(
                        Vote(
                            assignment_id=item["AssignmentId"],
                            candidate_id=i.candidate_id,
                            worker_id=item["WorkerId"],
                            wnid=hit.wnid,
                            is_match=bool(d["ticked"].get(i.position, False)),
                        )
                    )
        w = session.get(Worker, item["WorkerId"])
        if w is None:
            w = Worker(
                worker_id=item["WorkerId"],
                gold_seen=0,
                gold_correct=0,
                approved=0,
                rejected=0,
                blocked=False,
            )
            session.add(w)
        w.gold_seen += d["seen"]
        w.gold_correct += d["correct"]
        if d["status"] == "Approved":
            w.approved += 1
        else:
            w.rejected += 1
        session.commit()
    return True


def _ts(v: Any) -> float | None:
    return v.timestamp() if hasattr(v, "timestamp") else (float(v) if v is not None else None)


def _send_reviews(app: Any, client: Any, server_status: dict[str, str]) -> dict[str, int]:
    """Approve or reject every locally decided, not yet reviewed assignment (resumable).

    When the server already holds a verdict (reviewed before a crash, or auto-approved), its word
    stands and the local status follows it (an "Invalid" answer stays Invalid: it has no votes)."""
    done = {"approved": 0, "rejected": 0, "already": 0}
    with app.Session() as session:
        todo = list(session.scalars(select(Assignment).where(Assignment.reviewed_at.is_(None))))
    for a in todo:
        approve = a.status == "Approved"
        verdict = server_status.get(a.assignment_id, "Submitted")
        try:
            if verdict == "Submitted":
                if approve:
                    client.approve_assignment(
                        AssignmentId=a.assignment_id, RequesterFeedback="Thank you."
                    )
                else:
                    feedback = a.reject_reason or "Rejected by the review policy."
                    client.reject_assignment(
                        AssignmentId=a.assignment_id, RequesterFeedback=feedback[:1000]
                    )
                done["approved" if approve else "rejected"] += 1
                verdict = "Approved" if approve else "Rejected"
            else:
                done["already"] += 1
        except client.exceptions.RequestError as e:
            if "InvalidAssignmentState" not in error_code(e):
                raise
            got = client.get_assignment(AssignmentId=a.assignment_id)["Assignment"]
            verdict = got["AssignmentStatus"]
            done["already"] += 1
        with write_session(app) as session:
            row = session.get(Assignment, a.assignment_id)
            if row is not None:
                if row.status != "Invalid" and verdict in ("Approved", "Rejected"):
                    row.status = verdict
                row.reviewed_at = time.time()
                session.commit()
    return done


def exclude_workers(app: Any, client: Any) -> list[str]:
    """Give the exclusion qualification to workers under the accuracy bar (once each)."""
    s = app.settings
    with app.Session() as session:
        rows = list(
            session.scalars(
                select(Worker).where(
                    Worker.blocked.is_(False), Worker.gold_seen >= max(1, s.mturk_min_gold_seen)
                )
            )
        )
    bad = [w.worker_id for w in rows if w.gold_correct / w.gold_seen < s.mturk_min_worker_gold]
    if not bad:
        return []
    qual = exclusion_qualification(client)
    for wid in bad:
        client.associate_qualification_with_worker(
            QualificationTypeId=qual, WorkerId=wid, IntegerValue=1, SendNotification=False
        )
        with write_session(app) as session:
            w = session.get(Worker, wid)
            if w is not None:
                w.blocked = True
                session.commit()
    return bad


def collect(
    app: Any, *, client: Any = None, more: bool = True, yes: bool = True, out: Any = print
) -> dict[str, Any]:
    """Collect every known HIT's submitted assignments; then ask for votes still needed."""
    client = client or make_client(app.settings)
    with app.Session() as session:
        local = {h.hit_id: h for h in session.scalars(select(Hit).where(Hit.status != "Disposed"))}
    # Reviewable HITs first (MTurk's own list), then every local HIT still open for partial work.
    with app.Session() as session:
        have = dict(
            session.execute(
                select(Assignment.hit_id, func.count()).group_by(Assignment.hit_id)
            ).all()
        )
    order: list[str] = []
    for h in paginate(client.list_reviewable_hits, "HITs", Status="Reviewable"):
        row = local.get(h["HITId"])
        # Finished and fully collected before: nothing new can be there.
        if row is None or (row.collected_at and have.get(row.hit_id, 0) >= h["MaxAssignments"]):
            continue
        order.append(h["HITId"])
    order += [hid for hid, h in local.items() if hid not in order and h.collected_at is None]
    report = {"hits": 0, "assignments_new": 0, "invalid": 0, "server_status": {}}
    server_status: dict[str, str] = {}
    for hit_id in order:
        hit = local[hit_id]
        with app.Session() as session:
            items = list(session.scalars(select(HitItem).where(HitItem.hit_id == hit_id)))
        n_new = 0
        for a in paginate(
            client.list_assignments_for_hit,
            "Assignments",
            HITId=hit_id,
            AssignmentStatuses=["Submitted", "Approved", "Rejected"],
        ):
            server_status[a["AssignmentId"]] = a["AssignmentStatus"]
            if _store(app, hit, a, items):
                n_new += 1
        report["assignments_new"] += n_new
        report["hits"] += 1
        info = client.get_hit(HITId=hit_id)["HIT"]
        with write_session(app) as session:
            row = session.get(Hit, hit_id)
            assert row is not None
            row.status = info["HITStatus"]
            row.max_assignments = info["MaxAssignments"]
            row.expires_at = info["Expiration"].timestamp()
            if info["HITStatus"] == "Reviewable":
                row.collected_at = time.time()
            session.commit()
    reviews = _send_reviews(app, client, server_status)
    report.update(reviews)
    report["excluded_workers"] = exclude_workers(app, client)
    with app.Session() as session:
        report["invalid"] = len(
            list(
                session.scalars(
                    select(Assignment.assignment_id).where(Assignment.status == "Invalid")
                )
            )
        )
    del report["server_status"]
    if more:
        report["more"] = request_more(app, client=client, yes=yes, out=out)
    out(
        f"collected {report['assignments_new']} new assignments from {report['hits']} HITs: "
        f"{reviews['approved']} approved, {reviews['rejected']} rejected"
    )
    return report


def request_more(
    app: Any,
    *,
    client: Any = None,
    yes: bool = True,
    out: Any = print,
    needs: dict[int, int] | None = None,
) -> dict:
    """Items consensus still leaves undecided: extend their finished HITs, else publish new ones.

    `needs` (candidate_id -> votes) defaults to consensus's `needs_votes`."""
    from mturk.publish import needs_from_consensus, publish

    client = client or make_client(app.settings)
    given = needs is not None
    if needs is None:
        needs = needs_from_consensus(app, None)
    extended = 0
    if needs:
        with app.Session() as session:
            hits = list(
                session.scalars(
                    select(Hit).where(
                        Hit.status == "Reviewable", Hit.expires_at > time.time() + 600
                    )
                )
            )
            items = {}
            for h in hits:
                items[h.hit_id] = [
                    i.candidate_id
                    for i in session.scalars(
                        select(HitItem).where(
                            HitItem.hit_id == h.hit_id, HitItem.gold_label.is_(None)
                        )
                    )
                ]
        for h in hits:
            want = [needs[c] for c in items[h.hit_id] if c in needs]
            # Extend only when most of the HIT still needs votes; otherwise a new HIT wastes less.
            if not want or 2 * len(want) < len(items[h.hit_id]):
                continue
            # Enough for the neediest item: fewer rounds; the others just get a surer posterior.
            k = min(max(want), MAX_ASSIGNMENTS_PER_HIT - h.max_assignments)
            if k < 1 or not yes:
                continue
            # One extension per (HIT, size): a rerun after a crash repeats the same token.
            token = (
                "imnet-more-"
                + hashlib.sha256(f"{h.hit_id}|{h.max_assignments}".encode()).hexdigest()[:50]
            )
            try:
                client.create_additional_assignments_for_hit(
                    HITId=h.hit_id, NumberOfAdditionalAssignments=k, UniqueRequestToken=token
                )
                new_max = h.max_assignments + k
            except client.exceptions.RequestError as e:
                if "DuplicateRequest" not in error_code(e):
                    raise
                new_max = client.get_hit(HITId=h.hit_id)["HIT"]["MaxAssignments"]
            with write_session(app) as session:
                row = session.get(Hit, h.hit_id)
                assert row is not None
                row.max_assignments = new_max
                row.status = "Assignable"
                row.collected_at = None
                session.commit()
            extended += 1
    if extended:
        out(f"asked for more assignments on {extended} HITs")
    result = publish(
        app,
        None,
        yes=yes,
        client=client,
        out=out,
        needs=needs if given else None,
        confirm=(lambda _p: False) if not yes else None,
    )
    return {"extended_hits": extended, "published": result}
