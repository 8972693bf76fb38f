"""The work queue's claims stay index range scans: a plan that scans or sorts the table fails here."""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, event, insert, text

from db import queue
from db.models import Candidate, Query, Synset
from db.session import make_engine, upgrade

DONE, PENDING, LEASED = 6000, 1500, 500  # finished rows first, as in a crawl half way through


def _fill(engine: Engine, table: str, stale: bool = False) -> None:
    """Rows by INSERT ... SELECT: done, then pending, then leased (half of them expired).

    `stale`: statistics taken while every row was still pending, then the first rows finished
    (a crawl between two autovacuum ANALYZEs): the case that led PostgreSQL down the primary key.
    """
    pg = engine.dialect.name == "postgresql"
    n = DONE + PENDING + LEASED
    series = (
        f"SELECT i FROM generate_series(1, {n}) AS i"
        if pg
        else f"WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < {n}) "
        "SELECT i FROM s"
    )
    now = time.time()
    status = (
        f"CASE WHEN i <= {0 if stale else DONE} THEN 'done' WHEN i <= {DONE + PENDING} "
        "THEN 'pending' "
        "ELSE :claimed END"
    )
    lease = (
        f"CASE WHEN i <= {DONE + PENDING} THEN NULL "
        f"WHEN i % 2 = 0 THEN {now - 60} ELSE {now + 3600} END"
    )
    with engine.begin() as conn:
        conn.execute(insert(Synset).values(wnid="n1", lemmas=["x"], gloss="", depth=0))
        if table == "candidate":
            sql = (
                "INSERT INTO candidate (wnid, url, source, status, lease_owner, lease_until, "
                f"attempts, created_at) SELECT 'n1', 'http://127.0.0.1/' || i, 't', {status}, "
                f"'w', {lease}, 0, 0 FROM ({series}) AS g"
            )
            conn.execute(text(sql), {"claimed": "fetching"})
        else:
            sql = (
                "INSERT INTO query (wnid, text, lang, source, status, lease_owner, lease_until, "
                f"attempts, n_results, updated_at) SELECT 'n1', 'q' || i, 'en', 'wikimedia', "
                f"{status}, 'w', {lease}, 0, 0, 0 FROM ({series}) AS g"
            )
            conn.execute(text(sql), {"claimed": "searching"})
        if pg:
            conn.execute(text(f"ALTER TABLE {table} SET (autovacuum_enabled = false)"))
        conn.execute(text("ANALYZE"))
        if stale:
            conn.execute(text(f"UPDATE {table} SET status = 'done' WHERE id <= {DONE}"))


@contextlib.contextmanager
def _captured(engine: Engine) -> Iterator[list[tuple[str, object]]]:
    """The UPDATE statements (and their parameters) that run on `engine` meanwhile."""
    seen: list[tuple[str, object]] = []

    def grab(_c, _cur, stmt, params, _ctx, _many):  # type: ignore[no-untyped-def]
        if stmt.lstrip().upper().startswith("UPDATE"):
            seen.append((stmt, params))

    event.listen(engine, "before_cursor_execute", grab)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", grab)


def _plans(engine: Engine, stmts: list[tuple[str, object]]) -> list[str]:
    """One plan text per statement, as the database would run it now (nothing is executed)."""
    out = []
    with engine.connect() as conn:
        for stmt, params in stmts:
            if engine.dialect.name == "sqlite":
                rows = conn.exec_driver_sql("EXPLAIN QUERY PLAN " + stmt, params).all()  # type: ignore[arg-type]
                out.append("\n".join(r[3] for r in rows))
            else:
                rows = conn.exec_driver_sql("EXPLAIN " + stmt, params).all()  # type: ignore[arg-type]
                out.append("\n".join(r[0] for r in rows))
    return out


def _assert_index_range(
    plan: str, table: str, index: str, dialect: str, may_sort: bool = False
) -> None:
    """The pick is a range of `index`; `may_sort`: PostgreSQL may sort the rows of that range."""
    if dialect == "sqlite":
        assert f"USING COVERING INDEX {index} (status=?" in plan, plan
        assert f"SCAN {table}" not in plan and "TEMP B-TREE" not in plan, plan
        return
    assert "Seq Scan" not in plan, plan
    assert "LockRows" in plan, plan  # FOR UPDATE SKIP LOCKED is still there
    assert re.search(r"Index Cond: \(+\(status\)::text >?= '", plan), plan
    if may_sort:
        # Expecting few expired leases, PostgreSQL may fetch them all as a bitmap and sort them:
        # the sort is over that index range (the expired leases), never over the table.
        assert re.search(rf"(Index Scan using|Bitmap Index Scan on) {index}\b", plan), plan
    else:
        assert f"Index Scan using {index} on {table}" in plan and "Sort" not in plan, plan


@pytest.mark.parametrize(
    ("model", "claimed"),
    [(Candidate, "fetching"), (Query, "searching")],
    ids=["candidate", "query"],
)
@pytest.mark.parametrize("stale", [False, True], ids=["fresh-stats", "stale-stats"])
def test_claim_plans_are_index_range_scans(
    db_url: str, model: type, claimed: str, stale: bool
) -> None:
    upgrade(db_url)
    engine = make_engine(db_url)
    table = model.__tablename__
    _fill(engine, table, stale)
    with _captured(engine) as stmts:
        got = queue.claim(engine, model, "me", LEASED, 60, claimed=claimed)
    # LEASED // 2 expired rows, the rest from the first pending ones
    assert len(got) == LEASED
    assert len(stmts) == 2, [s for s, _ in stmts]
    expired, pending = _plans(engine, stmts)
    dialect = engine.dialect.name
    _assert_index_range(expired, table, f"ix_{table}_status_lease_until", dialect, may_sort=True)
    _assert_index_range(pending, table, f"ix_{table}_status_id", dialect)
    if dialect == "sqlite":
        assert "lease_until<?" in expired, expired
        # The outer UPDATE finds each chosen row by its primary key.
        assert f"SEARCH {table} USING INTEGER PRIMARY KEY (rowid=?)" in pending, pending
    else:
        # `id = ANY(ARRAY(...))`: the picked rows by primary key, never a hash join over a scan.
        assert re.search(rf"(Index Scan using|Bitmap Index Scan on) pk_{table}", pending), pending
    engine.dispose()


def test_claim_after_id_is_a_range_of_the_pending_index(db_url: str) -> None:
    """The search's keyset cursor: a range seek, not a walk past the rows already seen."""
    upgrade(db_url)
    engine = make_engine(db_url)
    _fill(engine, "query")
    first = DONE + PENDING - 10
    with _captured(engine) as stmts:
        got = queue.claim(
            engine, Query, "me", 50, 60, claimed="searching", after_id=first, kinds=("pending",)
        )
    assert [r["id"] for r in got] == list(range(first + 1, DONE + PENDING + 1))
    (plan,) = _plans(engine, stmts)
    if engine.dialect.name == "sqlite":
        assert "ix_query_status_id (status=? AND id>?)" in plan, plan
        assert "TEMP B-TREE" not in plan and "SCAN query" not in plan, plan
    else:
        # Either index is a range seek here; PostgreSQL picks by its (exact) estimate of the rows
        # past the cursor, and may sort those few, never the table.
        assert re.search(r"Index Cond: .*(id > |\(status\)::text >?= 'pending')", plan), plan
        assert "Seq Scan" not in plan, plan
    engine.dispose()
