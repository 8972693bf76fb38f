"""Many processes starting at once on a fresh database: each migrates it or finds it migrated.

docker-compose starts the app, workers and the MTurk-compatible server together against one new
PostgreSQL; the first command of each upgrades the schema. Without a lock, two of them both see
an empty version table and both run CREATE TABLE, and all but one fail.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from sqlalchemy import text

from db.migrations import HEADS
from db.session import make_engine
from mturk.server import migrations as server_migrations

ROOT = Path(__file__).resolve().parents[2]
# Each child waits at a barrier file so that all of them reach the migration together.
CHILD = """
import os, sys, time
sys.path.insert(0, {root!r})
from db.session import make_engine, upgrade
from mturk.server.migrations import upgrade_server
url, go = sys.argv[1], sys.argv[2]
engine = make_engine(url)
while not os.path.exists(go):
    time.sleep(0.005)
upgrade(url, engine=engine)
upgrade_server(engine)
print("ok")
"""


def _race(url: str, tmp_path: Path, n: int = 6) -> list[subprocess.CompletedProcess[str]]:
    go = tmp_path / "go"
    code = CHILD.format(root=str(ROOT))
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, url, str(go)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(n)
    ]
    import time

    time.sleep(2.0)  # imports done; all children are polling for the barrier
    go.write_text("")
    out = []
    for p in procs:
        stdout, stderr = p.communicate(timeout=120)
        out.append(subprocess.CompletedProcess(p.args, p.returncode, stdout, stderr))
    return out


def _versions(url: str, table: str) -> set[str]:
    engine = make_engine(url)
    with engine.connect() as conn:
        rows = set(conn.execute(text(f"SELECT version_num FROM {table}")).scalars())
    engine.dispose()
    return rows


def test_processes_migrating_a_fresh_database_at_once_all_succeed(
    db_url: str, tmp_path: Path
) -> None:
    results = _race(db_url, tmp_path)
    failed = [r.stderr.strip().splitlines()[-1:] for r in results if r.returncode != 0]
    assert not failed, failed
    assert all(r.stdout.strip() == "ok" for r in results)
    assert _versions(db_url, "alembic_version") == set(HEADS)
    assert _versions(db_url, server_migrations.VERSION_TABLE) == set(server_migrations.HEADS)
