"""Work queue over any table with LeaseMixin columns: claim with a lease, renew, complete, re-take.

Many processes on many machines share one queue. On PostgreSQL a claim is one
`UPDATE ... WHERE id IN (SELECT ... FOR UPDATE SKIP LOCKED) RETURNING`, so concurrent claimers never
block each other or get the same row. On SQLite the same UPDATE runs inside `BEGIN IMMEDIATE`, which
serialises writers. A row whose lease has expired (its worker died) is claimable again.
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import ColumnElement, Engine, and_, bindparam, or_, select, update

from db.models import Base


def make_owner(prefix: str = "") -> str:
    """A lease owner id unique across machines and processes."""
    return f"{prefix}{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def _begin(engine: Engine):  # type: ignore[no-untyped-def]
    conn = engine.connect()
    if engine.dialect.name == "sqlite":
        conn.info["sqlite_begin"] = "BEGIN IMMEDIATE"
    return conn


def claim(
    engine: Engine,
    model: type[Base],
    owner: str,
    limit: int,
    lease_seconds: float,
    *,
    pending: str = "pending",
    claimed: str = "fetching",
    where: ColumnElement[bool] | None = None,
    columns: Sequence[str] = (),
) -> list[dict[str, Any]]:
    """Lease up to `limit` rows that are pending or whose lease expired; return their id + columns."""
    t = model.__table__
    now = time.time()
    claimable = or_(
        t.c.status == pending,
        and_(t.c.status == claimed, t.c.lease_until < now),
    )
    cond = claimable if where is None else and_(claimable, where)
    sub = select(t.c.id).where(cond).order_by(t.c.id).limit(limit)
    if engine.dialect.name == "postgresql":
        sub = sub.with_for_update(skip_locked=True)
    stmt = (
        update(t)
        .where(t.c.id.in_(sub.scalar_subquery()))
        .values(
            status=claimed,
            lease_owner=owner,
            lease_until=now + lease_seconds,
            attempts=t.c.attempts + 1,
        )
        .returning(t.c.id, *(t.c[c] for c in columns))
    )
    with _begin(engine) as conn, conn.begin():
        rows = [dict(r._mapping) for r in conn.execute(stmt)]
    rows.sort(key=lambda r: r["id"])
    return rows


def renew(
    engine: Engine,
    model: type[Base],
    owner: str,
    ids: Sequence[int],
    lease_seconds: float,
    *,
    claimed: str = "fetching",
) -> int:
    """Extend the lease on rows this owner still holds; returns how many it still holds."""
    if not ids:
        return 0
    t = model.__table__
    stmt = (
        update(t)
        .where(t.c.id.in_(list(ids)), t.c.lease_owner == owner, t.c.status == claimed)
        .values(lease_until=time.time() + lease_seconds)
    )
    with _begin(engine) as conn, conn.begin():
        return conn.execute(stmt).rowcount


def complete(
    engine: Engine,
    model: type[Base],
    owner: str,
    results: Sequence[dict[str, Any]],
    *,
    claimed: str = "fetching",
) -> int:
    """Write final values for rows this owner holds (each dict has `id`, `status` and columns).

    A row whose lease was lost to another worker is not touched, so a slow worker can never
    overwrite the result of the one that took over. Returns how many rows were written.
    """
    if not results:
        return 0
    t = model.__table__
    # One cached statement per set of columns, run as executemany: building a statement per row
    # cost the crawl more CPU than fetching (bench/harvest.py).
    shapes: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for r in results:
        keys = tuple(sorted(k for k in r if k != "id"))
        shapes.setdefault(keys, []).append({"_id": r["id"], "_owner": owner, **r})
    done = 0
    with _begin(engine) as conn, conn.begin():
        for keys, params in shapes.items():
            stmt = (
                update(t)
                .where(
                    t.c.id == bindparam("_id"),
                    t.c.lease_owner == bindparam("_owner"),
                    t.c.status == claimed,
                )
                .values(
                    {**{k: bindparam(k) for k in keys}, "lease_owner": None, "lease_until": None}
                )
            )
            for p in params:
                p.pop("id", None)
            done += conn.execute(stmt, params).rowcount
    return done


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def expire_dead_local(engine: Engine, models: Sequence[type[Base]] | None = None) -> int:
    """End the leases of owners that were processes on this host and are gone (e.g. SIGKILLed).

    Their rows become claimable at once instead of after the lease time. Owners on other hosts are
    left alone: only their lease expiry can tell that they died. Returns how many rows were freed.
    """
    from db.models import LeaseMixin

    host = socket.gethostname()
    if models is None:
        models = [m.class_ for m in Base.registry.mappers if issubclass(m.class_, LeaseMixin)]
    freed = 0
    now = time.time()
    for model in models:
        t = model.__table__
        with _begin(engine) as conn, conn.begin():
            owners = conn.execute(
                select(t.c.lease_owner)
                .where(t.c.lease_owner.is_not(None), t.c.lease_until > now)
                .distinct()
            ).scalars()
            for owner in list(owners):
                try:
                    head, pid_s, _tag = owner.rsplit(":", 2)
                    pid = int(pid_s)
                except ValueError:
                    continue
                if not head.endswith(host) or _alive(pid):
                    continue
                freed += conn.execute(
                    update(t).where(t.c.lease_owner == owner).values(lease_until=now - 1)
                ).rowcount
    return freed


def release(
    engine: Engine,
    model: type[Base],
    owner: str,
    ids: Sequence[int],
    *,
    pending: str = "pending",
    claimed: str = "fetching",
) -> int:
    """Give rows back unfinished (e.g. on a clean shutdown) so others can take them at once."""
    if not ids:
        return 0
    t = model.__table__
    stmt = (
        update(t)
        .where(t.c.id.in_(list(ids)), t.c.lease_owner == owner, t.c.status == claimed)
        .values(status=pending, lease_owner=None, lease_until=None)
    )
    with _begin(engine) as conn, conn.begin():
        return conn.execute(stmt).rowcount
