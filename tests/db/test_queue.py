"""The leasing work queue: exactly-once completion, lease expiry, and many processes on PostgreSQL."""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import sqlite3
import threading
import time

import pytest
from sqlalchemy import event, func, insert, select, update
from sqlalchemy.exc import OperationalError

import db.tx
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


@pytest.mark.slow
def test_claim_outlasts_a_write_lock_longer_than_the_busy_timeout(sqlite_url: str) -> None:
    """A worker that meets a locked SQLite database waits and retries instead of dying."""
    _fill(sqlite_url, 5)
    engine = make_engine(sqlite_url)
    # A short busy_timeout (after the engine's own pragmas) so the test need not hold a lock 30 s.
    event.listen(engine, "connect", lambda c, _r: c.execute("PRAGMA busy_timeout=100"))
    path = sqlite_url.split("///", 1)[1]
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN IMMEDIATE")
    try:
        # The lock outlasts SQLite's own wait: a plain write gives up ...
        with pytest.raises(OperationalError, match="database is locked"):
            with engine.begin() as conn:
                conn.execute(update(Candidate).values(attempts=0))
        timer = threading.Timer(1.5, holder.execute, ("COMMIT",))
        timer.start()
        t0 = time.monotonic()
        # ... and the queue's calls wait it out.
        got = queue.claim(engine, Candidate, "w", 5, 60)
        waited = time.monotonic() - t0
        timer.join()
    finally:
        holder.close()
    assert len(got) == 5 and waited >= 1.0, waited
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN IMMEDIATE")
    threading.Timer(0.6, holder.execute, ("COMMIT",)).start()
    assert (
        queue.complete(engine, Candidate, "w", [{"id": r["id"], "status": "fetched"} for r in got])
        == 5
    )
    holder.close()
    engine.dispose()


def test_busy_retries_are_bounded(sqlite_url: str, monkeypatch, caplog) -> None:  # type: ignore[no-untyped-def]
    _fill(sqlite_url, 1)
    engine = make_engine(sqlite_url)
    event.listen(engine, "connect", lambda c, _r: c.execute("PRAGMA busy_timeout=50"))
    monkeypatch.setattr(db.tx, "BUSY_RETRY_SECONDS", 0.5)
    holder = sqlite3.connect(sqlite_url.split("///", 1)[1], isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    t0 = time.monotonic()
    try:
        with pytest.raises(OperationalError, match="database is locked"):
            queue.claim(engine, Candidate, "w", 1, 60)
    finally:
        holder.close()
    assert 3.0 > time.monotonic() - t0 >= 0.3
    assert sum("database busy" in r.getMessage() for r in caplog.records) >= 2
    # Other errors are never retried.
    calls = 0

    def broken() -> None:
        nonlocal calls
        calls += 1
        raise OperationalError("SELECT 1", {}, Exception("no such table: nope"))

    with pytest.raises(OperationalError, match="no such table"):
        queue.retry_busy(broken)
    assert calls == 1
    engine.dispose()


def _claim_until_empty(url: str, name: str, out: str, start) -> None:  # type: ignore[no-untyped-def]
    engine = make_engine(url)
    owner = queue.make_owner(name)
    start.wait(60)
    ids: list[int] = []
    while rows := queue.claim(engine, Candidate, owner, 7, 3600):
        ids += [r["id"] for r in rows]
    with open(out, "w") as f:
        f.write("\n".join(map(str, ids)))
    engine.dispose()


@pytest.mark.slow
def test_processes_claim_every_row_exactly_once(db_url: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """N processes drain one queue of pending rows and expired leases; no row is taken twice."""
    n, expired = 3000, 300
    _fill(db_url, n)
    engine = make_engine(db_url)
    with engine.begin() as conn:
        conn.execute(
            update(Candidate)
            .where(Candidate.id % 10 == 0)
            .values(status="fetching", lease_owner="dead", lease_until=time.time() - 5, attempts=1)
        )
    engine.dispose()
    ctx = mp.get_context("spawn")
    k = 3
    start = ctx.Barrier(k)
    outs = [tmp_path / f"w{i}.txt" for i in range(k)]
    procs = [
        ctx.Process(target=_claim_until_empty, args=(db_url, f"w{i}", str(outs[i]), start))
        for i in range(k)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(180)
    assert [p.exitcode for p in procs] == [0] * k
    per = [[int(x) for x in o.read_text().split()] for o in outs]
    claimed = [i for ids in per for i in ids]
    assert len(claimed) == n and sorted(claimed) == list(range(1, n + 1))
    assert sum(1 for ids in per if ids) >= 2, [len(ids) for ids in per]
    engine = make_engine(db_url)
    with engine.connect() as conn:
        left = conn.execute(select(func.count()).where(Candidate.status != "fetching")).scalar()
        retaken = conn.execute(select(func.count()).where(Candidate.attempts == 2)).scalar()
    engine.dispose()
    assert left == 0 and retaken == expired
