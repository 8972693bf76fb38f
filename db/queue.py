"""Work queue over any table with LeaseMixin columns: claim with a lease, renew, complete, re-take.

Many processes on many machines share one queue. On PostgreSQL a claim is
`UPDATE ... WHERE id = ANY(ARRAY(SELECT ... FOR UPDATE SKIP LOCKED)) RETURNING`, so concurrent
claimers never block each other or get the same row. On SQLite the same UPDATE runs inside
`BEGIN IMMEDIATE`, which serialises writers; a busy database is retried (both in db/tx.py).
A row whose lease has expired (its worker died) is claimable again.

A claim costs O(log n + limit) at any table size: expired leases and pending rows are two separate
index range scans, on `(status, lease_until)` and `(status, id)`. One `status = pending OR (status =
claimed AND lease_until < now)` condition defeats both indexes: SQLite then sorted every pending row
in a temp B-tree and PostgreSQL walked the finished rows in id order (bench/claim_scale.py).
tests/db/test_queue_plans.py fails if a claim's plan scans or sorts the table again.
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from collections.abc import Iterable, Sequence
from functools import partial
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Engine,
    Table,
    any_,
    bindparam,
    func,
    literal,
    select,
    update,
)

from db.models import Base
from db.tx import retry_busy, write_connection


def make_owner(prefix: str = "") -> str:
    """A lease owner id unique across machines and processes."""
    return f"{prefix}{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


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
    after_id: int | None = None,
    kinds: Sequence[str] = ("expired", "pending"),
) -> list[dict[str, Any]]:
    """Lease up to `limit` rows whose lease expired or that are pending; return their id + columns.

    Expired leases go first, oldest expiry first (older work whose worker died); then pending rows
    in id order. `kinds` may name only one of the two. `after_id` skips pending rows up to that
    id: a keyset cursor for a caller that walks the queue once (an index range, where a NOT IN
    list of the rows it has seen grows past the bound-parameter limit).
    """
    if limit <= 0:
        return []
    t = model.__table__
    now = time.time()
    values = {
        "status": claimed,
        "lease_owner": owner,
        "lease_until": now + lease_seconds,
        "attempts": t.c.attempts + 1,
    }
    out = (t.c.id, *(t.c[c] for c in columns))
    pg = engine.dialect.name == "postgresql"
    expired = _status_is(t.c.status, claimed, pg) & (t.c.lease_until < now)
    fresh = _status_is(t.c.status, pending, pg)
    if after_id is not None:
        fresh = fresh & (t.c.id > after_id)
    # Each ORDER BY is its index's whole key, so neither pick sorts: (status, lease_until) for
    # expired leases (the oldest expiry first), (status, id) for pending rows (first come first).
    orders = {"expired": (t.c.status, t.c.lease_until), "pending": (t.c.status, t.c.id)}
    conds = {"expired": expired, "pending": fresh}
    picks = [(conds[k], orders[k]) for k in ("expired", "pending") if k in kinds]

    def run() -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = []
        with write_connection(engine) as conn, conn.begin():
            for cond, order in picks:
                want = limit - len(rows)
                if want <= 0:
                    break
                if where is not None:
                    cond = cond & where
                sub = select(t.c.id).where(cond).order_by(*order).limit(_const(want))
                if pg:
                    # `id = ANY(ARRAY(...))` fetches the picked rows by primary key, always;
                    # for `id IN (...)` PostgreSQL may choose a hash join over a table scan.
                    sub = sub.with_for_update(skip_locked=True)
                    picked = t.c.id == any_(func.array(sub.scalar_subquery()))
                else:
                    picked = t.c.id.in_(sub.scalar_subquery())
                stmt = update(t).where(picked).values(values).returning(*out)
                rows += [dict(r._mapping) for r in conn.execute(stmt)]
        return rows

    rows = retry_busy(run)
    rows.sort(key=lambda r: r["id"])
    return rows


def _status_is(col: Any, value: str, pg: bool) -> Any:
    if not pg:
        return col == _const(value)
    # A range, not `=`, on PostgreSQL: after `status = 'pending'` the planner drops status from
    # ORDER BY status, id, and may then walk the primary key and filter. With statistics taken
    # before the finished rows piled up at the low ids it expects a pending row at every step and
    # walks them all (1.6 s at 2.5M done). Ordered by the full (status, id) key, only the
    # composite index gives the order without sorting every pending row.
    return col.between(_const(value), _const(value))


def _const(value: Any) -> Any:
    # Rendered into the SQL text: psycopg turns a statement run 5 times into a server-side
    # prepared one, and PostgreSQL may then reuse a generic plan made for any `status = $1 ...
    # LIMIT $2` (it guesses 10% of the table for the limit); with constants it plans for these.
    return literal(value, literal_execute=True)


def count_claimable(
    engine: Engine,
    model: type[Base],
    *,
    pending: str = "pending",
    claimed: str = "fetching",
) -> int:
    """How many rows a claim could take now (pending + expired), counted on the claim indexes."""
    t = model.__table__
    with engine.connect() as conn:
        n_pending = conn.execute(select(func.count()).where(t.c.status == pending)).scalar()
        n_expired = conn.execute(
            select(func.count()).where(t.c.status == claimed, t.c.lease_until < time.time())
        ).scalar()
    return int(n_pending or 0) + int(n_expired or 0)


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
    return retry_busy(lambda: _write(engine, stmt))


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
        row = {"_id": r["id"], "_owner": owner, **r}
        row.pop("id")
        shapes.setdefault(keys, []).append(row)

    def run() -> int:
        done = 0
        with write_connection(engine) as conn, conn.begin():
            for keys, params in shapes.items():
                stmt = (
                    update(t)
                    .where(
                        t.c.id == bindparam("_id"),
                        t.c.lease_owner == bindparam("_owner"),
                        t.c.status == claimed,
                    )
                    .values(
                        {
                            **{k: bindparam(k) for k in keys},
                            "lease_owner": None,
                            "lease_until": None,
                        }
                    )
                )
                done += conn.execute(stmt, params).rowcount
        return done

    return retry_busy(run)


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


def dead_local_owners(owners: Iterable[str | None], *, keep: str | None = None) -> list[str]:
    """The lease owners (`make_owner` ids) that were processes on this host and are gone."""
    host = socket.gethostname()
    dead = []
    for owner in owners:
        if not owner or owner == keep:
            continue
        try:
            head, pid_s, _tag = owner.rsplit(":", 2)
            pid = int(pid_s)
        except ValueError:
            continue
        if head.endswith(host) and not _alive(pid):
            dead.append(owner)
    return dead


def expire_dead_local(engine: Engine, models: Sequence[type[Base]] | None = None) -> int:
    """End the leases of owners that were processes on this host and are gone (e.g. SIGKILLed).

    Their rows become claimable at once instead of after the lease time. Owners on other hosts are
    left alone: only their lease expiry can tell that they died. Returns how many rows were freed.
    """
    from db.models import LeaseMixin

    if models is None:
        models = [m.class_ for m in Base.registry.mappers if LeaseMixin in m.class_.__mro__]
    now = time.time()

    def free(t: Table) -> int:
        freed = 0
        with write_connection(engine) as conn, conn.begin():
            owners = conn.execute(
                select(t.c.lease_owner)
                .where(t.c.lease_owner.is_not(None), t.c.lease_until > now)
                .distinct()
            ).scalars()
            for owner in dead_local_owners(list(owners)):
                freed += conn.execute(
                    update(t).where(t.c.lease_owner == owner).values(lease_until=now - 1)
                ).rowcount
        return freed

    return sum(retry_busy(partial(free, m.__table__)) for m in models)


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
    return retry_busy(lambda: _write(engine, stmt))


def _write(engine: Engine, stmt: Any) -> int:
    with write_connection(engine) as conn, conn.begin():
        return conn.execute(stmt).rowcount
