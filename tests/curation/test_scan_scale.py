"""The curate scan shared by processes (leases), and set-based writes of its results."""

from __future__ import annotations

import multiprocessing
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, select, update

from curation.pipeline import run_curation
from db.models import Image
from imnet.core.app import App
from imnet.core.settings import Settings
from tests.curation.images import crop, encode, smooth_image
from tests.dbrows import add_candidate, add_synset

STEPS = ("phash", "filter", "neardup")


def _fill(app: App, n: int = 90) -> int:
    """n distinct pictures, a resized copy and a crop of every tenth, and two broken ones;
    returns how many image rows."""
    count = 0
    with app.Session.begin() as s:
        add_synset(s, "n02123045")
        for k in range(n):
            im = smooth_image(7000 + k, (160, 120))
            add_candidate(s, app.blobs, "n02123045", encode(im, "JPEG", quality=90), None)
            count += 1
            if k % 10 == 0:
                for near in (im.resize((128, 96)), crop(im, 0.01)):
                    add_candidate(s, app.blobs, "n02123045", encode(near, "JPEG"), None)
                    count += 1
        for bad in (b"\xff\xd8\xff\xe0 truncated", b"not an image"):
            add_candidate(s, app.blobs, "n02123045", bad, None)
            count += 1
    return count


def _state(app: App) -> dict[str, tuple[Any, ...]]:
    with app.Session() as s:
        return {
            r.sha256: (r.phash, r.quality, r.quality_reason, r.near_dup_of, r.lease_owner)
            for r in s.scalars(select(Image))
        }


def _other_url(db_url: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    if db_url.startswith("sqlite"):
        return f"sqlite:///{tmp_path / 'other.sqlite3'}"
    return request.getfixturevalue("postgres").create_database()


def _settings(tmp_path: Path, url: str, blobs: Path) -> Settings:
    return Settings(
        data_dir=str(tmp_path / "data"),
        database_url=url,
        blob_url=f"file://{blobs}",
        curation_workers=1,
    )


def _child(settings: Settings, barrier: Any, out: Any) -> None:
    """One `imnet curate`-like process; each image costs a few ms more so the two overlap."""
    import curation.filters as filters

    real = filters._work

    def slow(task):  # type: ignore[no-untyped-def]
        time.sleep(0.004)
        return real(task)

    filters._work = slow
    app = App(settings)
    try:
        barrier.wait(timeout=120)
        rep = run_curation(app, STEPS, batch=4)
        out.put((rep["scan"]["scanned"], rep["scan"].get("lease_lost", 0), rep["neardup"]))
    finally:
        app.close()


@pytest.mark.slow
def test_two_processes_split_the_scan_with_one_process_result(
    db_url: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """Two processes on one database: every image scanned exactly once, and the rows end up as
    one process leaves them (hashes, quality, reasons, near-duplicate marks)."""
    blobs = tmp_path / "blobs"
    one = App(_settings(tmp_path, _other_url(db_url, tmp_path, request), blobs))
    two = App(_settings(tmp_path, db_url, blobs))
    try:
        n = _fill(one)
        assert _fill(two) == n
        solo = run_curation(one, STEPS, batch=4)
        assert solo["scan"]["scanned"] == n
        ctx = multiprocessing.get_context("spawn")
        barrier, out = ctx.Barrier(2), ctx.Queue()
        procs = [ctx.Process(target=_child, args=(two.settings, barrier, out)) for _ in range(2)]
        for p in procs:
            p.start()
        results = [out.get(timeout=300) for _ in procs]
        for p in procs:
            p.join(timeout=60)
            assert p.exitcode == 0
        scanned = [r[0] for r in results]
        assert sum(scanned) == n and min(scanned) > 0, scanned  # no image twice, both worked
        assert [r[1] for r in results] == [0, 0]
        # At least one of them clustered after all the hashes were in.
        assert any(not r[2].get("deferred") for r in results)
        expected = _state(one)
        assert _state(two) == expected
        assert sum(v[3] is not None for v in expected.values()) >= 9  # near-dups were found
        assert all(v[4] is None for v in expected.values())  # no lease left behind
    finally:
        one.close()
        two.close()


def test_dead_local_leases_are_taken_over_and_live_ones_wait(app: App) -> None:
    """A killed process on this host frees its rows at once; another host's lease must run out,
    and near-duplicate clustering waits for it."""
    n = _fill(app, 20)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    host = socket.gethostname()
    with app.Session.begin() as s:
        shas = sorted(s.scalars(select(Image.sha256)))
        far = time.time() + 3600
        s.execute(
            update(Image)
            .where(Image.sha256.in_(shas[:5]))
            .values(lease_owner=f"curate:{host}:{dead.pid}:x", lease_until=far)
        )
        s.execute(
            update(Image)
            .where(Image.sha256.in_(shas[5:8]))
            .values(lease_owner="curate:elsewhere.example:1:y", lease_until=far)
        )
    rep = run_curation(app, STEPS)
    assert rep["scan"]["scanned"] == n - 3
    assert rep["neardup"] == {"deferred": True, "held_by_others": 3}
    with app.Session.begin() as s:
        s.execute(update(Image).where(Image.sha256.in_(shas[5:8])).values(lease_until=1.0))
    rep = run_curation(app, STEPS)
    assert (
        rep["scan"]["scanned"] == 3 and rep["neardup"]["hashed_images"] == n - 2
    )  # the broken two
    assert all(v[1] is not None and v[4] is None for v in _state(app).values())


def test_results_and_near_dup_marks_are_written_set_based(app: App) -> None:
    """One UPDATE statement (executemany) per shape of values and batch, not one per image."""
    n = _fill(app, 60)
    updates: list[int] = []

    @event.listens_for(app.engine, "before_cursor_execute")
    def count(conn, cursor, statement, params, context, executemany):  # type: ignore[no-untyped-def]
        if statement.lstrip().upper().startswith("UPDATE IMAGE SET"):
            updates.append(len(params) if executemany else 1)

    rep = run_curation(app, ("phash", "filter"), batch=64)
    assert rep["scan"]["scanned"] == n
    batches = -(-n // 64)
    claims = batches + 1  # the last claim finds nothing
    # per batch: its claim, then at most 3 result shapes (ok + hash, rejected + hash, unreadable)
    assert len(updates) <= claims + 3 * batches, updates
    assert max(updates) > 1  # many rows per statement
    updates.clear()
    rep = run_curation(app, ("neardup",))
    assert rep["neardup"]["changed"] >= 12 and len(updates) == 1


def test_cli_batch_and_deferred_neardup(tmp_path: Path, sqlite_url: str, capsys) -> None:  # type: ignore[no-untyped-def]
    """`imnet curate --batch N` scans in batches of N; a bad N is one line and exit code 2; with
    another host's lease live the command says clustering was deferred."""
    from imnet.cli import main

    data_dir = tmp_path / "data"
    app = App(Settings(data_dir=str(data_dir), database_url=sqlite_url))
    n = _fill(app, 10)
    with app.Session.begin() as s:
        first = s.scalars(select(Image.sha256).order_by(Image.sha256).limit(1)).one()
        s.execute(
            update(Image)
            .where(Image.sha256 == first)
            .values(lease_owner="curate:elsewhere.example:1:y", lease_until=time.time() + 600)
        )
    app.close()
    base = ["--data-dir", str(data_dir), "--database-url", sqlite_url]
    with pytest.raises(SystemExit) as bad:
        main([*base, "curate", "--batch", "0"])
    assert bad.value.code == 2
    err = capsys.readouterr().err.strip()
    assert "--batch: 0 is out of range" in err and len(err.splitlines()) == 1, err
    assert main([*base, "curate", "--batch", "3"]) == 0
    out = capsys.readouterr().out
    assert f"scan: {n - 1} images" in out
    assert "neardup: deferred, other processes still scan 1 images" in out
