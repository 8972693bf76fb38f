"""Transaction helpers for both backends: write transactions, busy retries, upserts, advisory locks.

SQLite (embedded) has one writer at a time. A deferred transaction that read first and then
writes cannot take the write lock once another process committed since its snapshot, and fails
at once instead of waiting; `BEGIN IMMEDIATE` takes the lock up front. db/session.py emits the
BEGIN itself and reads the mode from the connection's `sqlite_begin` info key, which the helpers
here set. PostgreSQL needs none of it: its transactions begin normally.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import random
import time
import zlib
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, Table, event, literal_column, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

log = logging.getLogger(__name__)
T = TypeVar("T")

# How long a call keeps retrying a busy SQLite database, on top of the busy_timeout the engine
# already waits inside SQLite for each attempt (db/session.py).
BUSY_RETRY_SECONDS = 600.0
_BUSY_MAX_SLEEP = 2.0
_IMMEDIATE = "BEGIN IMMEDIATE"


def write_connection(engine: Engine) -> Connection:
    """A connection whose next transaction is a write transaction (SQLite: BEGIN IMMEDIATE)."""
    conn = engine.connect()
    if engine.dialect.name == "sqlite":
        conn.info["sqlite_begin"] = _IMMEDIATE
    return conn


def immediate(conn: Connection) -> Connection:
    """Make `conn`'s next transaction a write transaction (SQLite: BEGIN IMMEDIATE); returns it."""
    if conn.dialect.name == "sqlite":
        conn.info["sqlite_begin"] = _IMMEDIATE
    return conn


@contextlib.contextmanager
def write_session(engine: Engine) -> Iterator[Session]:
    """A session for ONE read-then-write transaction, begun as a write transaction."""
    conn = write_connection(engine)
    try:
        with Session(bind=conn, expire_on_commit=False) as s:
            yield s
    finally:
        conn.close()


def writes_immediately(engine: Engine) -> Engine:
    """Make every transaction of `engine` a write transaction (SQLite: BEGIN IMMEDIATE).

    For an engine whose transactions all read then write (the self-hosted MTurk server): none
    can then fail on a stale WAL snapshot when another process writes. Returns the engine.
    """
    if engine.dialect.name == "sqlite":

        @event.listens_for(engine, "checkout")
        def _immediate(dbapi_conn: Any, record: Any, proxy: Any) -> None:
            record.info["sqlite_begin"] = _IMMEDIATE

    return engine


def is_busy(e: BaseException) -> bool:
    """True for SQLite's "database is locked" / "database is busy": the same call can succeed later."""
    if not isinstance(e, OperationalError):
        return False
    msg = str(e.orig if e.orig is not None else e).lower()
    return "database is locked" in msg or "database table is locked" in msg or "busy" in msg


def retry_busy(fn: Callable[[], T], *, give_up_after: float | None = None) -> T:
    """Run `fn` (one whole transaction) again, with bounded backoff, while the database is busy.

    A crawl worker that met a long write lock used to die with "database is locked" and leave its
    leases to expire. `fn` must be safe to repeat: a failed attempt rolled its transaction back.
    Any other error, or a database still busy after `give_up_after` seconds, is raised.
    """
    limit = BUSY_RETRY_SECONDS if give_up_after is None else give_up_after
    deadline = time.monotonic() + limit
    delay = 0.05
    attempt = 0
    while True:
        try:
            return fn()
        except OperationalError as e:
            attempt += 1
            if not is_busy(e) or time.monotonic() + delay > deadline:
                raise
            log.warning("database busy (attempt %d), retrying in %.2fs: %s", attempt, delay, e.orig)
        # Jitter so that workers released by the same commit do not collide again at once.
        time.sleep(delay * random.uniform(0.5, 1.0))
        delay = min(delay * 2, _BUSY_MAX_SLEEP)


def dialect_insert(dialect: str) -> Any:
    """The dialect's `insert` construct, which has `on_conflict_do_nothing/_do_update`."""
    from sqlalchemy.dialects import postgresql, sqlite

    return postgresql.insert if dialect == "postgresql" else sqlite.insert


def insert_ignore(
    conn: Connection, table: Table, rows: Sequence[dict[str, Any]], chunk: int = 500
) -> int:
    """Insert rows, silently skipping those that hit a unique constraint; returns rows inserted."""
    if not rows:
        return 0
    insert = dialect_insert(conn.dialect.name)
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


def storable(text: str | None) -> str | None:
    """`text` as both backends can store it: PostgreSQL's text holds no NUL and UTF-8 no lone
    surrogate, and a third party's JSON (a search API) can carry either; None stays None."""
    if text is None:
        return None
    text = str(text).replace("\x00", "")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-8", "replace").decode("utf-8")
    return text


def storable_json(value: Any) -> Any:
    """A JSON value with `storable` strings throughout (keys included)."""
    if isinstance(value, str):
        return storable(value)
    if isinstance(value, dict):
        return {storable(str(k)): storable_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [storable_json(v) for v in value]
    return value
