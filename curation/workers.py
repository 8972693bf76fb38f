"""Per-image work in parallel: a local process pool, and leases that split images between hosts."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from imnet.core.settings import Settings


class Mapper:
    """`map(fn, tasks)` in order, in spawned worker processes (nothing of this process, such as a
    database connection or a thread, is inherited) or inline below `inline_below` tasks."""

    def __init__(
        self,
        settings: Settings,
        init: Callable[[Any], None],
        total: int,
        inline_below: int = 48,
        workers: int | None = None,
    ) -> None:
        self.settings = settings
        self.init = init
        self.workers = workers or settings.curation_workers or os.cpu_count() or 1
        self.inline = total < inline_below or self.workers == 1
        self.pool: Any = None

    def __enter__(self) -> Mapper:
        if self.inline:
            self.init(self.settings)
        else:
            from concurrent.futures import ProcessPoolExecutor
            from multiprocessing import get_context

            self.pool = ProcessPoolExecutor(
                self.workers,
                mp_context=get_context("spawn"),
                initializer=self.init,
                initargs=(self.settings,),
            )
        return self

    def map(
        self, fn: Callable[[Any], Any], tasks: Iterable[Any], chunksize: int = 4
    ) -> Iterator[Any]:
        if self.pool is None:
            return map(fn, tasks)
        return self.pool.map(fn, tasks, chunksize=chunksize)

    def __exit__(self, *exc: object) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)


# -- image leases: the scan's work split between processes on any number of machines ------------
# A process claims a batch of image rows by writing its owner id and a lease end into them, in
# sha256 order after its own cursor (keyset), on a partial index that holds only the work left.
# PostgreSQL: `FOR UPDATE SKIP LOCKED` so concurrent claimers never wait for nor get the same row;
# SQLite: `BEGIN IMMEDIATE` serialises claimers. A result is written only while its owner still
# holds the row, so every image is processed once even when a slow process's lease runs out.
LEASE_SECONDS = 600.0


class ImageLeases:
    """Batches of `image` rows leased to this process (see the comment above)."""

    def __init__(self, engine: Engine, lease_seconds: float = LEASE_SECONDS) -> None:
        from db.queue import make_owner

        self.engine = engine
        self.lease_seconds = lease_seconds
        self.owner = make_owner("curate:")

    def begin(self) -> Any:
        """A connection whose next transaction takes SQLite's write lock at once."""
        from db.tx import write_connection

        return write_connection(self.engine)

    def claim(self, where: Any, after: str, limit: int) -> list[str]:
        """Lease up to `limit` rows matching `where` with sha256 > after; returns them sorted."""
        import time

        from sqlalchemy import bindparam, or_, select, update

        from db.models import Image

        t = Image.__table__
        now = time.time()
        pick = (
            select(t.c.sha256)
            .where(
                where,
                t.c.sha256 > after,
                or_(t.c.lease_until.is_(None), t.c.lease_until < now),
            )
            .order_by(t.c.sha256)
            .limit(limit)
        )
        if self.engine.dialect.name == "postgresql":
            pick = pick.with_for_update(skip_locked=True)
        # Pick, then lease by primary key (executemany) in the same transaction, which holds
        # the picked rows: one `UPDATE ... WHERE sha256 IN (subquery)` let PostgreSQL's planner
        # hash-join the subquery against a scan of the whole table.
        lease = (
            update(t)
            .where(t.c.sha256 == bindparam("_sha"))
            .values(lease_owner=self.owner, lease_until=now + self.lease_seconds)
        )
        with self.begin() as conn, conn.begin():
            shas = list(conn.execute(pick).scalars())
            if shas:
                conn.execute(lease, [{"_sha": sha} for sha in shas])
        return shas

    def release(self, where: Any) -> int:
        """Give back the rows matching `where` this process still holds (e.g. after an error)."""
        from sqlalchemy import update

        from db.models import Image

        t = Image.__table__
        stmt = (
            update(t)
            .where(where, t.c.lease_owner == self.owner)
            .values(lease_owner=None, lease_until=None)
        )
        with self.begin() as conn, conn.begin():
            return conn.execute(stmt).rowcount or 0

    def held_elsewhere(self, where: Any) -> int:
        """Rows matching `where` that other processes hold now (their scans are not finished)."""
        import time

        from sqlalchemy import func, select

        from db.models import Image

        t = Image.__table__
        stmt = select(func.count()).where(
            where, t.c.lease_until > time.time(), t.c.lease_owner != self.owner
        )
        with self.engine.connect() as conn:
            return int(conn.execute(stmt).scalar() or 0)

    def free_dead_local(self, where: Any) -> int:
        """End the leases of processes on this host that are gone (killed), so their rows are
        claimable now rather than after the lease time. Other hosts' leases can only expire."""
        import time

        from sqlalchemy import select, update

        from db.models import Image
        from db.queue import dead_local_owners

        t = Image.__table__
        now = time.time()
        freed = 0
        with self.begin() as conn, conn.begin():
            owners = conn.execute(
                select(t.c.lease_owner)
                .where(where, t.c.lease_until > now, t.c.lease_owner.is_not(None))
                .distinct()
            ).scalars()
            for owner in dead_local_owners(list(owners), keep=self.owner):
                freed += (
                    conn.execute(
                        update(t)
                        .where(where, t.c.lease_owner == owner)
                        .values(lease_owner=None, lease_until=None)
                    ).rowcount
                    or 0
                )
        return freed
