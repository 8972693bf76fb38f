"""`imnet mturk collect`: fetch submitted work, store votes, review it by policy, ask for more.

Policy (stated, and the feedback the worker reads says which rule applied):
- an answer that cannot be parsed (malformed XML, missing, duplicated or unknown fields) is
  rejected, its reason recorded on the assignment (status "Invalid"), and it gives no votes;
- an answer that gets under `mturk_min_assignment_gold` of its hidden check images right (two
  or more of them) is rejected; its votes are stored but consensus ignores rejected assignments;
- everything else is approved;
- a worker's second answer on the same item (from a later round's HIT) is not stored as a vote;
- a worker whose check-image accuracy over all their work falls under `mturk_min_worker_gold`
  after `mturk_min_gold_seen` checks (in a crowd under `mturk_gold_bar_crowd`: once a binomial
  test at `mturk_gold_bar_alpha` shows it, curation.consensus.crowd.under_gold_bar) gets the
  exclusion qualification (the HIT type requires that
  they lack it) and is marked blocked locally: they get no more HITs. Their earlier votes stay;
  worker-aware consensus weighs them by the worker's record, the others drop them when the
  worker's gold accuracy is under `consensus_min_voter_gold`;
- a worker with `mturk_warmup_gold` gold answers who is not shut out gets the warm-up
  qualification that regular HITs require (mturk/warmup.py).
Every step is recorded right after its API call, so a rerun repeats nothing and finishes
whatever a crash interrupted. At scale: HITs and reviews go in batches, each batch's requests run
concurrently (`concurrency` threads, one shared boto3 client) and its rows are written in one
transaction (executemany); nothing is loaded per HIT or per assignment.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from functools import partial
from typing import TYPE_CHECKING, Any

from sqlalchemy import Float, bindparam, func, insert, select, update

from db.models import Assignment, Hit, HitItem, Vote, Worker
from mturk.answers import AnswerError, parse_grid_answer
from mturk.client import (
    CONCURRENCY,
    call_all,
    first_error,
    make_client,
    paginate,
    write_session,
)
from mturk.grading import exclude_workers, send_reviews
from mturk.more import request_more
from mturk.verify import chunked

if TYPE_CHECKING:
    from imnet.core.app import App
    from imnet.core.settings import Settings

__all__ = ["collect", "exclude_workers", "request_more"]

log = logging.getLogger(__name__)
# HITs per round of concurrent listing calls and per transaction.
COLLECT_BATCH = 200
# What is kept of a listed assignment (its HIT's question is never needed here).
_KEEP = ("AssignmentId", "WorkerId", "AssignmentStatus", "SubmitTime", "Answer")
_ITEMS = ("Submitted", "Approved", "Rejected")


def _review(item: dict[str, Any], gold: dict[int, bool], positions: list[int], s: Settings) -> dict:
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
    # One check image cannot tell a careful worker's slip from carelessness (a warmed-up
    # worker's HITs carry one, mturk/warmup.py): the worker-level bar judges those.
    if seen >= 2 and correct / seen < s.mturk_min_assignment_gold:
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


def _ts(v: Any) -> float | None:
    return v.timestamp() if hasattr(v, "timestamp") else (float(v) if v is not None else None)


def _hit_info(h: dict[str, Any]) -> tuple[str, int, float | None]:
    return h["HITStatus"], h["MaxAssignments"], _ts(h.get("Expiration"))


def _fetch(
    client: Any, listed: dict[str, tuple[str, int, float | None]], hit_id: str
) -> tuple[list[dict[str, Any]], tuple[str, int, float | None]]:
    """One HIT's assignments, and its state: from ListReviewableHITs, else GetHIT."""
    got = [
        {k: a.get(k) for k in _KEEP}
        for a in paginate(
            client.list_assignments_for_hit, "Assignments", HITId=hit_id, AssignmentStatuses=_ITEMS
        )
    ]
    info = listed.get(hit_id)
    if info is None:
        info = _hit_info(client.get_hit(HITId=hit_id)["HIT"])
    return got, info


def _collect_batch(
    app: App,
    client: Any,
    batch: list[tuple[str, str]],
    listed: dict[str, tuple[str, int, float | None]],
    server_status: dict[str, str],
    concurrency: int,
) -> int:
    """Fetch a batch of HITs concurrently; store their new assignments, votes, worker counts and
    HIT states in one transaction. Returns the number of new assignments."""
    s = app.settings
    hit_ids = [hid for hid, _w in batch]
    known: set[str] = set()
    items: dict[str, list[tuple[int, int, bool | None]]] = defaultdict(list)
    with app.Session() as session:
        for part in chunked(hit_ids):
            known.update(
                session.scalars(select(Assignment.assignment_id).where(Assignment.hit_id.in_(part)))
            )
            q = select(HitItem.hit_id, HitItem.position, HitItem.candidate_id, HitItem.gold_label)
            for hid, pos, cid, g in session.execute(q.where(HitItem.hit_id.in_(part))):
                items[hid].append((pos, cid, g))
    results = call_all(partial(_fetch, client, listed), hit_ids, concurrency)
    wnids = dict(batch)
    now = time.time()
    assignments: list[dict[str, Any]] = []
    # (assignment, worker, wnid, [(candidate, is_match)]) in listing order: the first answer of a
    # worker on an item is the one kept.
    votes: list[tuple[str, str, str, list[tuple[int, bool]]]] = []
    states: list[dict[str, Any]] = []
    for hid, res, _err in results:
        if res is None:
            continue
        got, (status, max_a, expires) = res
        its = sorted(items[hid])
        gold = {pos: bool(g) for pos, _c, g in its if g is not None}
        for a in got:
            aid = a["AssignmentId"]
            if a["AssignmentStatus"] != "Submitted":
                server_status[aid] = a["AssignmentStatus"]
            if aid in known:
                continue
            known.add(aid)
            d = _review(a, gold, [pos for pos, _c, _g in its], s)
            assignments.append(
                {
                    "assignment_id": aid,
                    "hit_id": hid,
                    "worker_id": a["WorkerId"],
                    "status": d["status"],
                    "submitted_at": _ts(a.get("SubmitTime")),
                    "answer_xml": a.get("Answer"),
                    "reject_reason": d["reason"]
                    or (d["feedback"] if d["status"] != "Approved" else None),
                    "gold_seen": d["seen"],
                    "gold_correct": d["correct"],
                    "reviewed_at": None,
                }
            )
            if d["ticked"] is not None:
                ticked = d["ticked"]
                pairs = [(c, bool(ticked.get(p, False))) for p, c, g in its if g is None]
                votes.append((aid, a["WorkerId"], wnids[hid], pairs))
        states.append(
            {
                "h": hid,
                "st": status,
                "mx": max_a,
                "ex": expires,
                "co": now if status == "Reviewable" else None,
            }
        )
    # Votes in the order workers submitted them, not the order the (randomly named) HITs were
    # listed in: consensus reads votes in time order, so this keeps one crowd's result the same.
    # Equal submit times (a coarse clock) go by worker, not by the random assignment id.
    submitted = {a["assignment_id"]: a["submitted_at"] or now for a in assignments}
    votes.sort(key=lambda v: (submitted[v[0]], v[1], v[0]))
    _write_batch(app, assignments, votes, states)
    first_error(results)
    return len(assignments)


def _write_batch(
    app: App,
    assignments: list[dict[str, Any]],
    votes: list[tuple[str, str, str, list[tuple[int, bool]]]],
    states: list[dict[str, Any]],
) -> None:
    W, H = Worker.__table__, Hit.__table__
    with write_session(app) as session:
        # Read again under the write lock: a concurrent collect may have stored some meanwhile.
        dup: set[str] = set()
        for part in chunked([a["assignment_id"] for a in assignments]):
            dup.update(
                session.scalars(
                    select(Assignment.assignment_id).where(Assignment.assignment_id.in_(part))
                )
            )
        rows = [a for a in assignments if a["assignment_id"] not in dup]
        # One vote per worker and item: a worker who meets an item again in a later round's HIT
        # would otherwise count twice in a consensus that assumes independent votes.
        prior: set[tuple[str, int]] = set()
        for part in chunked({c for aid, _w, _n, ps in votes if aid not in dup for c, _m in ps}):
            q = select(Vote.worker_id, Vote.candidate_id).where(Vote.candidate_id.in_(part))
            prior.update((w, c) for w, c in session.execute(q))
        vote_rows: list[dict[str, Any]] = []
        submitted = {a["assignment_id"]: a["submitted_at"] for a in assignments}
        for aid, wid, wnid, pairs in votes:
            if aid in dup:
                continue
            for cid, match in pairs:
                if (wid, cid) not in prior:
                    prior.add((wid, cid))
                    vote_rows.append(
                        {
                            "assignment_id": aid,
                            "candidate_id": cid,
                            "worker_id": wid,
                            "wnid": wnid,
                            "is_match": match,
                            # a vote's time is its worker's submit time, not the collect's
                            "created_at": submitted.get(aid) or time.time(),
                        }
                    )
        delta: dict[str, list[int]] = {}
        for a in rows:
            d = delta.setdefault(a["worker_id"], [0, 0, 0, 0])
            d[0] += a["gold_seen"]
            d[1] += a["gold_correct"]
            d[2 if a["status"] == "Approved" else 3] += 1
        old: set[str] = set()
        for part in chunked(set(delta)):
            old.update(session.scalars(select(Worker.worker_id).where(Worker.worker_id.in_(part))))
        if rows:
            session.execute(insert(Assignment), rows)
        if vote_rows:
            session.execute(insert(Vote), vote_rows)
        fresh = [
            {"worker_id": w, "gold_seen": d[0], "gold_correct": d[1], "approved": d[2]}
            | {"rejected": d[3], "blocked": False}
            for w, d in delta.items()
            if w not in old
        ]
        if fresh:
            session.execute(insert(Worker), fresh)
        bumps = [
            {"w": w, "gs": d[0], "gc": d[1], "ap": d[2], "rj": d[3]}
            for w, d in delta.items()
            if w in old
        ]
        if bumps:
            session.execute(
                update(W)
                .where(W.c.worker_id == bindparam("w"))
                .values(
                    gold_seen=W.c.gold_seen + bindparam("gs"),
                    gold_correct=W.c.gold_correct + bindparam("gc"),
                    approved=W.c.approved + bindparam("ap"),
                    rejected=W.c.rejected + bindparam("rj"),
                ),
                bumps,
            )
        if states:
            session.execute(
                update(H)
                .where(H.c.hit_id == bindparam("h"))
                .values(
                    status=bindparam("st"),
                    max_assignments=bindparam("mx"),
                    expires_at=bindparam("ex"),
                    collected_at=func.coalesce(bindparam("co", type_=Float), H.c.collected_at),
                ),
                states,
            )
        session.commit()


def collect(
    app: App,
    *,
    client: Any = None,
    more: bool = True,
    yes: bool = True,
    out: Any = print,
    concurrency: int = CONCURRENCY,
) -> dict[str, Any]:
    """Collect every known HIT's submitted assignments; then ask for votes still needed.

    HITs go in batches: `concurrency` listing requests in flight, one transaction per batch."""
    client = client or make_client(app.settings, connections=2 * concurrency)
    with app.Session() as session:
        local = {
            hid: (wnid, collected)
            for hid, wnid, collected in session.execute(
                select(Hit.hit_id, Hit.wnid, Hit.collected_at).where(Hit.status != "Disposed")
            )
        }
        have = dict(
            session.execute(
                select(Assignment.hit_id, func.count()).group_by(Assignment.hit_id)
            ).all()
        )
    # Reviewable HITs first (MTurk's own list), then every local HIT still open for partial work.
    listed: dict[str, tuple[str, int, float | None]] = {}
    order: list[str] = []
    for h in paginate(client.list_reviewable_hits, "HITs", Status="Reviewable"):
        hid = h["HITId"]
        row = local.get(hid)
        # Finished and fully collected before: nothing new can be there.
        if row is None or hid in listed or (row[1] and have.get(hid, 0) >= h["MaxAssignments"]):
            continue
        listed[hid] = _hit_info(h)
        order.append(hid)
    order += [
        hid for hid, (_w, collected) in local.items() if collected is None and hid not in listed
    ]
    report: dict[str, Any] = {"hits": 0, "assignments_new": 0, "invalid": 0}
    # Only verdicts other than "Submitted" are kept: the review step assumes Submitted otherwise.
    server_status: dict[str, str] = {}
    for i in range(0, len(order), COLLECT_BATCH):
        batch = [(hid, local[hid][0]) for hid in order[i : i + COLLECT_BATCH]]
        report["assignments_new"] += _collect_batch(
            app, client, batch, listed, server_status, concurrency
        )
        report["hits"] += len(batch)
    reviews = send_reviews(app, client, server_status, concurrency)
    report.update(reviews)
    report["excluded_workers"] = exclude_workers(app, client, concurrency)
    from mturk.warmup import sync_warmed

    report["warmed_up"] = sync_warmed(app, client, concurrency=concurrency)
    with app.Session() as session:
        report["invalid"] = session.scalar(
            select(func.count()).select_from(Assignment).where(Assignment.status == "Invalid")
        )
    if more:
        report["more"] = request_more(app, client=client, yes=yes, out=out, concurrency=concurrency)
    out(
        f"collected {report['assignments_new']} new assignments from {report['hits']} HITs: "
        f"{reviews['approved']} approved, {reviews['rejected']} rejected"
    )
    return report
