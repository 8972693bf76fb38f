"""Re-asks go to workers who have not voted on the item yet, via qualifications, as on MTurk.

MTurk keeps a worker from doing the same HIT twice, not from seeing the same image in a later
HIT. A re-ask (an item that already has votes and needs more) therefore names the workers who
voted on its items. Each worker with a vote holds a qualification of their own,
`imnet-voter-<number>` (the number a hash of the worker id, so no id is shown to anyone), and
the re-ask HIT requires that the voters' ones do NOT exist: at most 15 of them, the most active
voters, who are the likeliest to take it. `DoesNotExist` is the comparison a worker without
any imnet qualification passes (MTurk's value comparisons, NotIn included, shut out workers
who hold no value), so a newcomer can take every re-ask.

Without this the most active workers of a small crowd take the few re-ask HITs left, their
second answer to an image is dropped (one vote per worker and item), and the items stay
undecided round after round while eligible workers wait (the demo's last three items).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from db.models import Vote, Worker
from mturk.client import CONCURRENCY, call_all, find_or_create_qualification, first_error, paginate

if TYPE_CHECKING:
    from sqlalchemy.orm import Session


VOTER_QUAL_PREFIX = "imnet-voter-"
MAX_EXCLUDED = 15  # voters named per re-ask HIT (requirements per HIT stay few)


def worker_number(worker_id: str) -> int:
    """A stable positive int32 per worker: the same in every process, no table to keep. Two
    workers sharing one (about 1 pair in 2,000 among 1,000 workers) share a qualification and
    only keep each other out of the re-asks the other voted in."""
    return int.from_bytes(hashlib.sha256(worker_id.encode()).digest()[:4], "big") % 2**31 or 1


def voter_qual_name(worker_id: str) -> str:
    return f"{VOTER_QUAL_PREFIX}{worker_number(worker_id)}"


def exclusion_requirements(quals: dict[str, str], workers: Iterable[str]) -> list[dict[str, Any]]:
    """The HIT's requirements: the workers named can neither find nor accept it (`quals`:
    worker -> their qualification type id; a worker without one is not named)."""
    ids = sorted({quals[w] for w in workers if w in quals})
    return [
        {
            "QualificationTypeId": q,
            "Comparator": "DoesNotExist",
            "ActionsGuarded": "DiscoverPreviewAndAccept",
        }
        for q in ids
    ]


def voters(session: Session, cids: Iterable[int]) -> dict[int, set[str]]:
    """candidate_id -> the workers who voted on it (items without votes are absent). One
    index-only read per chunk of ids (ix_vote_candidate_id_worker_id)."""
    from mturk.verify import chunked

    out: dict[int, set[str]] = {}
    names: dict[str, str] = {}  # one string object per worker, however many votes
    for part in chunked(set(cids)):
        q = select(Vote.candidate_id, Vote.worker_id).where(Vote.candidate_id.in_(part))
        for cid, wid in session.execute(q):
            out.setdefault(cid, set()).add(names.setdefault(wid, wid))
    return out


def crowd(session: Session) -> tuple[set[str], dict[str, int]]:
    """(the workers who can take a re-ask: known, not blocked, not routed away; each
    known worker's assignments so far, the activity that orders who is excluded first)."""
    active: set[str] = set()
    activity: dict[str, int] = {}
    q = select(Worker.worker_id, Worker.approved, Worker.rejected, Worker.blocked, Worker.routing)
    for wid, ok, bad, blocked, routing in session.execute(q):
        activity[wid] = int(ok or 0) + int(bad or 0)
        if not blocked and routing is None:
            active.add(wid)
    return active, activity


def to_exclude(workers: set[str], activity: dict[str, int]) -> list[str]:
    """The (at most 15) voters a re-ask names: the most active first, then by id."""
    ranked = sorted(workers, key=lambda w: (-activity.get(w, 0), w))
    return ranked[:MAX_EXCLUDED]


def sync_voter_quals(
    client: Any, workers: Iterable[str], concurrency: int = CONCURRENCY
) -> tuple[dict[str, str], int]:
    """Each of `workers` holds their own voter qualification; returns (worker -> its type id,
    how many were created now). The types are listed once (one paginated read); a missing
    one is created and granted in the same step, so a worker is named only once they hold it
    (a crash between the two leaves a type whose worker is simply not kept out)."""
    want = {w: voter_qual_name(w) for w in set(workers)}
    have = {
        q["Name"]: str(q["QualificationTypeId"])
        for q in paginate(
            client.list_qualification_types,
            "QualificationTypes",
            Query=VOTER_QUAL_PREFIX,
            MustBeRequestable=False,
            MustBeOwnedByCaller=True,
        )
        if str(q.get("Name", "")).startswith(VOTER_QUAL_PREFIX)
    }
    missing = sorted(w for w, name in want.items() if name not in have)

    def create(wid: str) -> str:
        qid = find_or_create_qualification(
            client,
            want[wid],
            "Marks images you have already answered, so that they are not shown to you again.",
        )
        client.associate_qualification_with_worker(
            QualificationTypeId=qid, WorkerId=wid, IntegerValue=1, SendNotification=False
        )
        return qid

    results = call_all(create, missing, concurrency)
    first_error(results)
    made = {w: qid for w, qid, err in results if qid is not None}
    out = {w: have[name] for w, name in want.items() if name in have}
    out.update(made)
    return out, len(made)
