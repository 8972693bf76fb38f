"""Small database helpers for harvest: portable insert-or-ignore and cross-process write locks."""

from __future__ import annotations

import contextlib
import fcntl
import zlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, Table, literal_column, text


def insert_ignore(conn: Any, table: Table, rows: Sequence[dict[str, Any]], chunk: int = 500) -> int:
    """Insert rows, silently skipping those that hit a unique constraint; returns rows inserted."""
    if not rows:
        return 0
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    # One statement run as executemany: SQLAlchemy batches it into multi-row VALUES ("insert
    # many values") and caches the compiled form, where .values(rows) compiled anew each call.
    # RETURNING lists only the rows really inserted; rowcount is unreliable across drivers.
    stmt = insert(table).on_conflict_do_nothing().returning(literal_column("1"))
    done = 0
    for i in range(0, len(rows), chunk):
        done += len(conn.execute(stmt, list(rows[i : i + chunk])).fetchall())
    return done


@contextlib.contextmanager
def write_lock(engine: Engine, name: str) -> Iterator[None]:
    """Serialise a read-then-write section across processes (and machines on PostgreSQL).

    PostgreSQL: a session advisory lock on its own connection. SQLite: an flock on a file beside
    the database (SQLite is one machine anyway). The protected section may use other connections.
    """
    if engine.dialect.name == "postgresql":
        key = zlib.crc32(name.encode())
        with engine.connect() as conn:
            conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": key})
            conn.commit()
            try:
                yield
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})
                conn.commit()
        return
    db = engine.url.database
    if not db or db == ":memory:":
        yield
        return
    lock_path = Path(f"{db}.{name}.lock")
    with open(lock_path, "a+b") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
