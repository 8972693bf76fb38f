"""The leasing work queue: exactly-once completion, lease expiry, and many processes on PostgreSQL."""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import time

from sqlalchemy import func, insert, select

from db import queue
from db.models import Candidate, Synset
from db.session import make_engine, upgrade


def _fill(url: str, n: int) -> None:
    upgrade(url)
    engine = make_engine(url)
    with engine.begin() as conn:
        conn.execute(
            insert(Synset).values(
                wnid="n1", lemmas=["x"], gloss="", depth=0, is_leaf=True, created_at=0.0
            )
        )
        conn.execute(
            insert(Candidate),
            [
                {
                    "wnid": "n1",
                    "url": f"http://127.0.0.1/{i}",
                    "source": "t",
                    "status": "pending",
                    "attempts": 0,
                    "created_at": 0.0,
                }
                for i in range(n)
            ],
        )
    engine.dispose()


def test_claim_complete_exactly_once(db_url: str) -> None:
    _fill(db_url, 25)
    engine = make_engine(db_url)
    a, b = queue.make_owner("a"), queue.make_owner("b")
    got_a = queue.claim(engine, Candidate, a, 10, 60, columns=["url"])
    got_b = queue.claim(engine, Candidate, b, 10, 60)
    assert len(got_a) == 10 and len(got_b) == 10
    assert not {r["id"] for r in got_a} & {r["id"] for r in got_b}
    assert got_a[0]["url"].startswith("http://127.0.0.1/")
    # b cannot complete a's rows
    assert queue.complete(engine, Candidate, b, [{"id": got_a[0]["id"], "status": "fetched"}]) == 0
    done = queue.complete(
        engine,
        Candidate,
        a,
        [{"id": r["id"], "status": "fetched", "http_status": 200} for r in got_a],
    )
    assert done == 10
    assert queue.renew(engine, Candidate, b, [r["id"] for r in got_b], 60) == 10
    assert queue.release(engine, Candidate, b, [r["id"] for r in got_b]) == 10
    rest = queue.claim(engine, Candidate, a, 100, 60)
    assert len(rest) == 15  # b's released 10 + the 5 never claimed
    with engine.connect() as conn:
        counts = dict(
            conn.execute(select(Candidate.status, func.count()).group_by(Candidate.status)).all()
        )
    assert counts == {"fetched": 10, "fetching": 15}
    engine.dispose()


def test_expired_lease_is_taken_again(db_url: str) -> None:
    _fill(db_url, 3)
    engine = make_engine(db_url)
    dead, live = queue.make_owner("dead"), queue.make_owner("live")
    first = queue.claim(engine, Candidate, dead, 3, lease_seconds=-1)  # already expired
    assert len(first) == 3
    second = queue.claim(engine, Candidate, live, 3, 60)
    assert [r["id"] for r in second] == [r["id"] for r in first]
    # the dead worker's late result is refused; the live one's is kept
    assert (
        queue.complete(engine, Candidate, dead, [{"id": first[0]["id"], "status": "failed"}]) == 0
    )
    assert (
        queue.complete(engine, Candidate, live, [{"id": first[0]["id"], "status": "fetched"}]) == 1
    )
    with engine.connect() as conn:
        attempts = conn.execute(
            select(Candidate.attempts).where(Candidate.id == first[0]["id"])
        ).scalar()
    assert attempts == 2
    engine.dispose()


def _worker(url: str, name: str, die_after: int, lease: float, start=None) -> None:  # type: ignore[no-untyped-def]
    engine = make_engine(url)
    owner = queue.make_owner(name)
    batches = 0
    if start is not None:
        # Spawned processes come up at different speeds; without a common start the first ones
        # can finish every row before the one that is meant to die has claimed its third batch.
        start.wait(60)
    while True:
        rows = queue.claim(engine, Candidate, owner, 25, lease)
        if not rows:
            # rows leased by a killed worker come back once their lease expires
            with engine.connect() as conn:
                left = conn.execute(
                    select(func.count()).select_from(Candidate).where(Candidate.status != "fetched")
                ).scalar()
            if left == 0:
                return
            time.sleep(0.2)
            continue
        batches += 1
        time.sleep(0.005)  # the work on a batch: keeps the four workers taking turns
        if die_after and batches == die_after:
            os.kill(os.getpid(), signal.SIGKILL)  # mid-batch: claimed, never completed
        queue.complete(
            engine,
            Candidate,
            owner,
            [
                {
                    "id": r["id"],
                    "status": "fetched",
                    "error": None,
                    "http_status": 200,
                    "source_ref": owner,
                }
                for r in rows
            ],
        )


def test_four_processes_share_postgres_queue_and_survive_sigkill(pg_url: str) -> None:
    n = 2000
    _fill(pg_url, n)
    ctx = mp.get_context("spawn")
    start = ctx.Barrier(4)
    procs = [
        ctx.Process(target=_worker, args=(pg_url, f"w{i}", 3 if i == 0 else 0, 3.0, start))
        for i in range(4)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(180)
    assert procs[0].exitcode == -signal.SIGKILL
    assert all(p.exitcode == 0 for p in procs[1:]), [p.exitcode for p in procs]
    engine = make_engine(pg_url)
    with engine.connect() as conn:
        rows = conn.execute(
            select(Candidate.status, Candidate.source_ref, Candidate.attempts)
        ).all()
    engine.dispose()
    assert len(rows) == n
    assert all(r.status == "fetched" for r in rows)
    owners = {r.source_ref.split(":")[0] for r in rows}
    assert len(owners) >= 2  # the work really was shared
    retaken = [r for r in rows if r.attempts == 2]
    # exactly the killed worker's batch was re-taken after its lease expired, nothing else twice
    assert len(retaken) == 25, len(retaken)
    # the killed worker's two completed batches stand; its third was finished by others
    assert sum(r.source_ref.startswith("w0") for r in rows) == 50


def _claim_and_die(url: str) -> None:
    engine = make_engine(url)
    queue.claim(engine, Candidate, queue.make_owner("doomed"), 4, 3600)
    os.kill(os.getpid(), signal.SIGKILL)


def test_leases_of_dead_local_processes_are_expired_at_once(db_url: str) -> None:
    _fill(db_url, 6)
    engine = make_engine(db_url)
    alive = queue.make_owner("alive")
    mine = queue.claim(engine, Candidate, alive, 2, 3600)
    p = mp.get_context("spawn").Process(target=_claim_and_die, args=(db_url,))
    p.start()
    p.join(60)
    assert p.exitcode == -signal.SIGKILL
    assert queue.claim(engine, Candidate, alive, 10, 3600) == []  # all leased for an hour
    assert queue.expire_dead_local(engine, [Candidate]) == 4  # the live owner keeps its two
    again = queue.claim(engine, Candidate, queue.make_owner("rerun"), 10, 60)
    assert len(again) == 4 and not {r["id"] for r in again} & {r["id"] for r in mine}
    engine.dispose()
