"""Benchmark: one work-queue claim (db/queue.py) at millions of candidates, SQLite and PostgreSQL.

    python bench/claim_scale.py [--rows 100000,1000000] [--engines sqlite,postgresql]
    python bench/claim_scale.py --rows 5000000          # the issue 15 goal run

The candidate table is filled by direct row inserts (INSERT ... SELECT over a recursive CTE on
SQLite, generate_series on PostgreSQL; the crawl never writes rows this way) into the migrated
schema, every index in place. Two layouts per size:
  pending    all N rows pending;
  half-done  the first N/2 done (fetched), then 1,000 expired leases, 1,000 live leases, then
             pending: the crawl half way through, with some dead workers' rows.
Then it times `claim(limit=256)` (the median of --repeat calls; each takes 256 more rows) and the
reclaim of 256 expired leases (re-expired between calls, untimed), and as the peer in the same run
the OLD claim: one `pending OR (claimed AND lease_until < now) ORDER BY id` query, kept below as
it was before issue 15 (fewer calls: it takes seconds at 5M). Goal: < 10 ms per claim at 5M,
checked on wall time and on CPU time (which other jobs on a shared machine do not inflate).
PostgreSQL is a throwaway server from tests/_servers.py, ANALYZEd after the load as autovacuum
would; SQLite gets no ANALYZE (nothing in imnet runs it).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import Engine, and_, or_, select, text, update  # noqa: E402

from db import queue  # noqa: E402
from db.models import Candidate  # noqa: E402
from db.session import make_engine, upgrade  # noqa: E402
from db.tx import write_connection  # noqa: E402

LIMIT = 256
GOAL_MS = 10.0
LEASES = 1000  # expired leases in the half-done layout (and as many live ones)


def old_claim(engine: Engine, owner: str, limit: int, lease_seconds: float) -> list[int]:
    """The claim as db/queue.py had it before issue 15: one OR condition, which no index serves."""
    t = Candidate.__table__
    now = time.time()
    claimable = or_(
        t.c.status == "pending",
        and_(t.c.status == "fetching", t.c.lease_until < now),
    )
    sub = select(t.c.id).where(claimable).order_by(t.c.id).limit(limit)
    if engine.dialect.name == "postgresql":
        sub = sub.with_for_update(skip_locked=True)
    stmt = (
        update(t)
        .where(t.c.id.in_(sub.scalar_subquery()))
        .values(
            status="fetching",
            lease_owner=owner,
            lease_until=now + lease_seconds,
            attempts=t.c.attempts + 1,
        )
        .returning(t.c.id)
    )
    with write_connection(engine) as conn, conn.begin():
        return [r[0] for r in conn.execute(stmt)]


def fill(engine: Engine, n: int, layout: str) -> float:
    """Insert n candidate rows in one statement; returns seconds taken."""
    pg = engine.dialect.name == "postgresql"
    series = (
        f"SELECT i FROM generate_series(1, {n}) AS i"
        if pg
        else f"WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < {n}) "
        "SELECT i FROM s"
    )
    now = time.time()
    if layout == "pending":
        status, owner, lease = "'pending'", "NULL", "NULL"
    else:
        done, exp, live = n // 2, n // 2 + LEASES, n // 2 + 2 * LEASES
        status = (
            f"CASE WHEN i <= {done} THEN 'fetched' WHEN i <= {live} THEN 'fetching' "
            "ELSE 'pending' END"
        )
        owner = f"CASE WHEN i > {done} AND i <= {live} THEN 'dead' END"
        lease = (
            f"CASE WHEN i <= {done} THEN NULL WHEN i <= {exp} THEN {now - 60} "
            f"WHEN i <= {live} THEN {now + 86400} END"
        )
    t0 = time.perf_counter()
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO synset (wnid, lemmas, gloss, parent_wnid, depth, is_leaf, created_at) "
                "VALUES ('n1', '[]', '', NULL, 0, true, 0)"
            )
        )
        conn.execute(
            text(
                "INSERT INTO candidate (wnid, url, source, status, lease_owner, lease_until, "
                f"attempts, created_at) SELECT 'n1', 'http://h/' || i, 'bench', {status}, "
                f"{owner}, {lease}, 0, 0 FROM ({series}) AS g"
            )
        )
    if pg:
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM ANALYZE candidate"))
    return time.perf_counter() - t0


class Clock:
    """Wall time, and CPU time of this process plus the PostgreSQL backend serving it.

    The CPU figure does not grow when other work competes for the cores (this bench shares a
    2-core machine with other jobs); /proc counts in clock ticks, so it is a mean over the calls.
    """

    def __init__(self, engine: Engine) -> None:
        self.stat: Path | None = None
        if engine.dialect.name == "postgresql":
            # One thread: the pool hands every claim this same connection.
            with engine.connect() as conn:
                pid = conn.execute(text("SELECT pg_backend_pid()")).scalar()
            self.stat = Path(f"/proc/{pid}/stat")
        self.tick = os.sysconf("SC_CLK_TCK")

    def cpu(self) -> float:
        own = time.process_time()
        if self.stat is None:
            return own
        fields = self.stat.read_text().rsplit(")", 1)[1].split()
        return own + (int(fields[11]) + int(fields[12])) / self.tick

    def timed(
        self, fn: Callable[[], Any], repeat: int, between: Callable[[Any], None] | None = None
    ) -> tuple[float, float]:
        """(median wall ms, mean CPU ms) of `repeat` calls of fn; `between` runs untimed."""
        wall, cpu = [], 0.0
        for _ in range(repeat):
            c0 = self.cpu()
            t0 = time.perf_counter()
            got = fn()
            wall.append((time.perf_counter() - t0) * 1000)
            cpu += self.cpu() - c0
            if between is not None:
                between(got)
        return statistics.median(wall), cpu * 1000 / repeat


def expire_again(engine: Engine) -> Callable[[list[dict[str, Any]]], None]:
    t = Candidate.__table__

    def run(rows: list[dict[str, Any]]) -> None:
        ids = [r["id"] for r in rows]
        if ids:
            with engine.begin() as conn:
                conn.execute(update(t).where(t.c.id.in_(ids)).values(lease_until=time.time() - 1))

    return run


def one(url: str, n: int, layout: str, repeat: int, old_repeat: int) -> dict[str, Any]:
    upgrade(url)
    engine = make_engine(url)
    fill_s = fill(engine, n, layout)
    owner = queue.make_owner("bench:")
    clock = Clock(engine)
    r: dict[str, Any] = {"fill_s": fill_s, "expired": None}
    r["new"] = clock.timed(lambda: queue.claim(engine, Candidate, owner, LIMIT, 3600), repeat)
    if layout != "pending":
        r["expired"] = clock.timed(
            lambda: queue.claim(engine, Candidate, owner, LIMIT, 3600, kinds=("expired",)),
            repeat,
            expire_again(engine),
        )
    r["old"] = clock.timed(lambda: old_claim(engine, owner, LIMIT, 3600), old_repeat)
    engine.dispose()
    return r


def _pair(t: tuple[float, float] | None) -> str:
    return "-" if t is None else f"{t[0]:.2f}/{t[1]:.2f}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--rows", default="100000,1000000", help="comma-separated table sizes")
    ap.add_argument("--engines", default="sqlite,postgresql")
    ap.add_argument("--layouts", default="pending,half-done")
    ap.add_argument("--repeat", type=int, default=50, help="timed claims per measurement")
    ap.add_argument("--old-repeat", type=int, default=5, help="timed calls of the old claim")
    a = ap.parse_args()
    try:
        sizes = [int(x) for x in a.rows.split(",") if x]
    except ValueError:
        print(
            f"claim_scale: --rows must be comma-separated integers, not {a.rows!r}", file=sys.stderr
        )
        return 2
    engines = [e for e in a.engines.split(",") if e]
    layouts = [x for x in a.layouts.split(",") if x]
    bad = [e for e in engines if e not in ("sqlite", "postgresql")]
    bad += [x for x in layouts if x not in ("pending", "half-done")]
    if bad or not sizes or min(sizes) < 4 * LEASES or a.repeat < 1 or a.old_repeat < 1:
        print(
            f"claim_scale: bad arguments {bad or ''} (engines sqlite,postgresql; layouts "
            f"pending,half-done; rows >= {4 * LEASES}; repeats >= 1)",
            file=sys.stderr,
        )
        return 2
    pg = None
    tmp = tempfile.TemporaryDirectory(prefix="claim-scale-")
    print(
        f"claim(limit={LIMIT}): median of {a.repeat} (old claim: of {a.old_repeat}); rows by "
        "direct INSERT ... SELECT; goal < 10 ms at 5M"
    )
    print("wall = median ms of one claim; cpu = mean ms of CPU (this process + its PG backend)")
    print(f"load average at start: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print(
        f"{'engine':<10} {'rows':>9} {'layout':<9} {'fill_s':>6} {'claim wall/cpu':>15} "
        f"{'expired wall/cpu':>17} {'OLD wall/cpu':>15} {'old/new':>7}  goal"
    )
    try:
        for engine_name in engines:
            for n in sizes:
                for layout in layouts:
                    if engine_name == "sqlite":
                        url = f"sqlite:///{tmp.name}/c{n}-{layout}.sqlite3"
                    else:
                        if pg is None:
                            sys.path.append(str(ROOT / "tests"))
                            from _servers import start_postgres

                            pg = start_postgres()
                        url = pg.create_database()
                    r = one(url, n, layout, a.repeat, a.old_repeat)
                    if engine_name == "sqlite":
                        for f in Path(tmp.name).glob(f"c{n}-{layout}.sqlite3*"):
                            f.unlink()
                    got = [r["new"]] + ([r["expired"]] if r["expired"] else [])
                    ok = " ".join(
                        f"{name} {'ok' if max(g[i] for g in got) < GOAL_MS else 'MISSED'}"
                        for i, name in ((0, "wall"), (1, "cpu"))
                    )
                    print(
                        f"{engine_name:<10} {n:>9} {layout:<9} {r['fill_s']:>6.1f} "
                        f"{_pair(r['new']):>15} {_pair(r['expired']):>17} {_pair(r['old']):>15} "
                        f"{r['old'][0] / r['new'][0]:>6.0f}x  {ok}",
                        flush=True,
                    )
    finally:
        if pg is not None:
            pg.stop()
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
