"""Engines, sessions and schema upgrades for SQLite (embedded) and PostgreSQL (server)."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from db.migrations import HEADS

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS = Path(__file__).parent / "migrations"
_upgraded: set[tuple[str, str]] = set()
_lock = threading.Lock()


class DatabaseError(RuntimeError):
    """The database cannot be reached or upgraded; the message is one line for the user."""


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    # WAL lets readers run beside the one writer; busy_timeout makes writers wait, not fail.
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.close()


def make_engine(url: str, **kw: Any) -> Engine:
    """An engine with the project's connection settings for either backend."""
    if url.startswith("sqlite"):
        path = url.split("///", 1)[1] if "///" in url else ""
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 30}, **kw)
        event.listen(engine, "connect", _sqlite_pragmas)

        # pysqlite's own transaction handling defers BEGIN; emit it ourselves so that a write
        # transaction (BEGIN IMMEDIATE via db/tx.py) is really atomic.
        @event.listens_for(engine, "connect")
        def _no_autobegin(dbapi_conn: Any, _rec: Any) -> None:
            dbapi_conn.isolation_level = None

        @event.listens_for(engine, "begin")
        def _begin(conn: Connection) -> None:
            mode = conn.info.pop("sqlite_begin", "BEGIN")
            conn.exec_driver_sql(mode)

        return engine
    kw.setdefault("pool_pre_ping", True)
    return create_engine(url, **kw)


def session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


@dataclass(frozen=True)
class Chain:
    """One Alembic lineage: its script folder, its head revision(s) and its own version table.

    The core schema is one chain; the self-hosted MTurk server's tables are another
    (mturk/server/migrations), applied only where the server runs. Each keeps its own version
    table, so neither needs the other's scripts to read where a database stands.
    """

    scripts: Path
    heads: frozenset[str]
    version_table: str = "alembic_version"


CORE = Chain(MIGRATIONS, HEADS)


def alembic_config(url: str, chain: Chain = CORE) -> Config:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(chain.scripts))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    cfg.set_main_option("version_table", chain.version_table)
    return cfg


def upgrade(
    url: str, revision: str = "head", engine: Engine | None = None, chain: Chain = CORE
) -> None:
    """Bring `chain`'s tables to `revision`; a no-op when already there (checked once per process)."""
    key = (url, chain.version_table)
    with _lock:
        if revision == "head" and key in _upgraded:
            return
        if revision == "head" and _at_heads(url, engine, chain):
            _upgraded.add(key)
            return
        from alembic import command
        from alembic.runtime.migration import MigrationContext
        from alembic.script import ScriptDirectory

        from db.tx import write_lock

        cfg = alembic_config(url, chain)
        eng = engine or make_engine(url)
        try:
            # Processes started together on a new database (docker-compose, a cluster's
            # workers) would all see no version and all run CREATE TABLE: one migrates, the
            # others wait and then find it done.
            with write_lock(eng, f"migrate-{chain.version_table}"):
                with eng.connect() as conn:
                    opts = {"version_table": chain.version_table}
                    current = set(MigrationContext.configure(conn, opts=opts).get_current_heads())
                heads = set(ScriptDirectory.from_config(cfg).get_heads())
                if revision != "head" or current != heads:
                    with eng.begin() as conn:
                        cfg.attributes["connection"] = conn
                        command.upgrade(cfg, revision)
        except OperationalError as e:
            raise DatabaseError(f"cannot open database {_safe(url)}: {_one_line(e)}") from None
        except OSError as e:  # the SQLite lock file beside the database
            raise DatabaseError(f"cannot lock database {_safe(url)}: {e.strerror or e}") from None
        finally:
            if engine is None:
                eng.dispose()
        if revision == "head":
            _upgraded.add(key)


def _at_heads(url: str, engine: Engine | None, chain: Chain = CORE) -> bool:
    """True when the chain's version table names exactly its heads (no alembic import)."""
    eng = engine or make_engine(url)
    try:
        with eng.connect() as conn:
            rows = (
                conn.execute(text(f"SELECT version_num FROM {chain.version_table}")).scalars().all()
            )
    except Exception:  # no version table yet, or unreachable: the full path says which
        return False
    finally:
        if engine is None:
            eng.dispose()
    return set(rows) == chain.heads


def check_connection(engine: Engine) -> None:
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except OperationalError as e:
        raise DatabaseError(
            f"cannot reach database {_safe(str(engine.url))}: {_one_line(e)}"
        ) from None


def _safe(url: str) -> str:
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "<database url>"


def _one_line(e: Exception) -> str:
    msg = str(getattr(e, "orig", e)).strip().splitlines()
    return msg[0] if msg else type(e).__name__
