"""`imnet demo` end to end in a subprocess: report, export checksums, resume, kill + rerun, PG + S3."""

from __future__ import annotations

import hashlib
import json
import os
import selectors
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest

STAGES = [
    "synsets+queries",
    "search",
    "crawl",
    "curate",
    "gold",
    "verify",
    "consensus",
    "classes",
    "export",
    "train",
    "evaluate",
]
pytestmark = pytest.mark.slow


def _env(**extra: str) -> dict[str, str]:
    # The developer's own IMNET_* settings must not leak into the demo under test.
    env = {k: v for k, v in os.environ.items() if not k.startswith("IMNET_")}
    env.update(extra)
    return env


def _slow_clock_env() -> dict[str, str]:
    """The demo's environment with a skewed clock that stalls at random (_slow_clock/): threads
    interleave and every timestamp differs from any other run, as on a loaded machine. The skew
    stays inside SigV4's window (boto3 signs with the real clock, the server checks the skewed one)."""
    here = str(Path(__file__).with_name("_slow_clock"))
    path = os.pathsep.join(p for p in (here, os.environ.get("PYTHONPATH", "")) if p)
    return _env(PYTHONPATH=path, DEMO_TEST_CLOCK_OFFSET="300", DEMO_TEST_CLOCK_STALL="0.002")


def _demo_cmd(workdir: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "imnet",
        "demo",
        "--workdir",
        str(workdir),
        "--scale",
        "1",
        "--epochs",
        "1",
    ]


def _run_demo(workdir: Path, env: dict[str, str] | None = None) -> dict:
    r = subprocess.run(
        _demo_cmd(workdir),
        cwd=workdir.parent,
        env=env or _env(),
        capture_output=True,
        text=True,
        timeout=540,
    )
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "== summary" in r.stdout
    return json.loads((workdir / "report.json").read_text())


def _check_report(report: dict) -> None:
    assert report["ok"] is True
    assert report["stage_order"] == STAGES and set(report["stages"]) == set(STAGES)
    for name, section in report["stages"].items():
        assert "error" not in section, (name, section)
    st = report["stages"]
    assert st["synsets+queries"]["synsets"] >= 10 and len(st["synsets+queries"]["roots"]) >= 2
    assert st["crawl"]["candidates"]["fetched"] > 0
    # The fixture web serves broken and duplicated images; each shows up with its reason.
    for reason in ("http_404", "not_image", "decode_error", "same_content"):
        assert st["crawl"]["reasons"].get(reason, 0) > 0, reason
    assert st["curate"]["totals"]["near_duplicates"] > 0
    assert st["verify"]["votes"] > 0 and st["verify"]["hits"] > 0
    assert st["verify"]["cost_estimate"].startswith("$")
    cons = st["consensus"]
    # Floors that hold for the crowd a seed draws, not for one draw: CI once got recall 0.959 with
    # 1 false accept for seed 0 where every run here gave 0.982 and none (cause not found: not
    # the workdir, ports, hash seed, NumPy's SIMD level, libjpeg-turbo's SIMD or load). Seeds 0-60
    # here (the gold bar as a test in a crowd under mturk_gold_bar_crowd): recall 0.959-1.0,
    # median 0.982; precision 0.988-1.0, 55 of 61 at 1.0 (the model aims at 0.997 on ~170
    # accepts: 2 false ones happen). With the bar's point estimate seeds 0-10 gave 0.911-0.994.
    # Undecided and insufficient_crowd items count as misses.
    assert cons["precision"] >= 0.98, cons
    assert cons["recall"] >= 0.95, cons
    # Re-asks reach workers who have not answered yet: no item waits for votes that cannot come.
    assert cons["undecided"] == 0 and st["verify"]["still_needing_votes"] == 0, cons
    # Gold keeps coming: confident labels become gold after the first round.
    assert sum(r.get("gold_promoted", 0) for r in st["verify"]["per_round"]) > 0
    assert st["classes"]["chosen_count"] >= 10
    ev = st["evaluate"]
    assert 0.0 <= ev["top1_err"] <= 1.0 and 0.0 <= ev["top5_err"] <= ev["top1_err"]


def _verify_export(report: dict) -> None:
    """Re-check every file the manifest lists, independently of the demo's own check."""
    ilsvrc = Path(report["stages"]["export"]["ilsvrc"]["path"])
    entries = [json.loads(x) for x in (ilsvrc / "manifest.jsonl").read_text().splitlines()]
    assert entries
    for e in entries:
        data = (ilsvrc / e["path"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == e["sha256"], e["path"]
    sums = dict(
        reversed(line.split("  ", 1)) for line in (ilsvrc / "SHA256SUMS").read_text().splitlines()
    )
    for path, digest in sums.items():
        assert hashlib.sha256((ilsvrc / path).read_bytes()).hexdigest() == digest, path
    splits = {e.get("split") for e in entries if e["path"].endswith(".JPEG")}
    assert {"train", "val"} <= splits
    wds = Path(report["stages"]["export"]["webdataset"]["path"])
    members = 0
    for e in (json.loads(x) for x in (wds / "manifest.jsonl").read_text().splitlines()):
        if "member" in e:
            with tarfile.open(wds / e["path"]) as tf:
                data = tf.extractfile(e["member"]).read()  # type: ignore[union-attr]
            assert hashlib.sha256(data).hexdigest() == e["sha256"]
            members += 1
    assert members > 0


def _counts(db_url: str) -> dict[str, int]:
    from sqlalchemy import create_engine, text

    eng = create_engine(db_url)
    with eng.connect() as c:
        out = {
            t: c.execute(text(f"SELECT count(*) FROM {t}")).scalar_one()
            for t in ("candidate", "image", "hit", "vote")
        }
        out["unfinished"] = c.execute(
            text("SELECT count(*) FROM candidate WHERE status IN ('pending', 'fetching')")
        ).scalar_one()
    eng.dispose()
    return out


def _figures(report: dict) -> dict:
    """What one seed must reproduce in any workdir: harvest counts, votes, consensus, splits."""
    st = report["stages"]
    cons = {k: v for k, v in st["consensus"].items() if k != "seconds"}
    # Round by round, not only the end: two runs may reach the same totals by different paths.
    rounds = [{k: v for k, v in r.items() if k != "seconds"} for r in st["verify"]["per_round"]]
    return {
        "per_round": rounds,
        "candidates": st["crawl"]["candidates"],
        "reasons": st["crawl"]["reasons"],
        "hits": st["verify"]["hits"],
        "votes": st["verify"]["votes"],
        "rounds": st["verify"]["rounds"],
        "consensus": cons,
        "classes": st["classes"]["chosen"],
        "splits": st["export"]["ilsvrc"].get("splits"),
    }


def _mtimes(*dirs: Path) -> dict[str, int]:
    return {str(p): p.stat().st_mtime_ns for d in dirs for p in sorted(d.rglob("*")) if p.is_file()}


def test_demo_same_seed_same_figures_anywhere_and_a_rerun_is_a_no_op(tmp_path: Path) -> None:
    workdir = tmp_path / "demo"
    first = _run_demo(workdir)
    _check_report(first)
    _verify_export(first)
    ckpt = Path(first["stages"]["train"]["checkpoint"])
    assert ckpt.is_file() and ckpt.stat().st_size > 0
    import torch

    state = torch.load(ckpt, map_location="cpu", weights_only=False)
    assert "model" in state and state["epoch"] == 0
    assert first["fixture_requests"]["image_requests"] > 0

    # The same seed in another workdir (another path, other ports for the fixture web and the
    # MTurk server, another database) under a skewed, stalling clock: the same verification
    # figures round by round, not merely similar ones. Nothing that decides may read the clock.
    other = _run_demo(tmp_path / "a-second-demo-in-another-workdir", env=_slow_clock_env())
    _check_report(other)
    assert other["workdir"] != first["workdir"]
    assert _figures(other) == _figures(first)

    db = f"sqlite:///{workdir / 'imnet.sqlite3'}"
    before = _counts(db)
    assert before["unfinished"] == 0
    outputs = [
        Path(first["stages"]["export"]["ilsvrc"]["path"]),
        Path(first["stages"]["export"]["webdataset"]["path"]),
        Path(first["stages"]["train"]["run_dir"]),
    ]
    files_before = _mtimes(*outputs)

    # A rerun of a finished demo is a no-op: same report, nothing fetched, published, exported
    # or trained again.
    second = _run_demo(workdir)
    _check_report(second)
    assert second["run"] == 2 and second["skipped_stages"] == STAGES
    assert second["stages"] == first["stages"]
    assert second["fixture_requests"].get("image_requests", 0) == 0
    assert second["fixture_requests"].get("search_requests", 0) == 0
    assert _counts(db) == before  # no candidate, image, HIT or vote added
    assert _mtimes(*outputs) == files_before  # no export file or checkpoint rewritten


def _start_and_kill_when(workdir: Path, marker: str, timeout: float = 300.0) -> str:
    """Run the demo until a log line contains marker, then SIGKILL it; returns what it printed."""
    proc = subprocess.Popen(
        _demo_cmd(workdir),
        cwd=workdir.parent,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    sel = selectors.DefaultSelector()
    assert proc.stdout is not None
    sel.register(proc.stdout, selectors.EVENT_READ)
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if not sel.select(timeout=max(0.1, deadline - time.monotonic())):
                continue
            line = proc.stdout.readline()
            if not line:
                break
            seen.append(line)
            if marker in line:
                proc.send_signal(signal.SIGKILL)
                proc.wait(30)
                return "".join(seen)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)
    raise AssertionError(f"demo never printed {marker!r}:\n{''.join(seen)[-3000:]}")


def test_demo_killed_mid_run_then_rerun_completes(tmp_path: Path) -> None:
    workdir = tmp_path / "demo"
    # Killed while HITs are out and simulated workers are doing them.
    out = _start_and_kill_when(workdir, "simulated workers at work")
    assert "== verify" in out and "== summary" not in out
    report = _run_demo(workdir)
    _check_report(report)
    _verify_export(report)
    assert report["run"] == 2
    assert _counts(f"sqlite:///{workdir / 'imnet.sqlite3'}")["unfinished"] == 0
    assert Path(report["stages"]["train"]["checkpoint"]).is_file()


def test_demo_on_postgresql_and_s3(tmp_path: Path, postgres, s3_server) -> None:  # type: ignore[no-untyped-def]
    db_url = postgres.create_database()
    bucket = s3_server.create_bucket()
    env = _env(
        IMNET_DATABASE_URL=db_url,
        IMNET_BLOB_URL=f"s3://{bucket}/blobs",
        IMNET_S3_ENDPOINT_URL=s3_server.endpoint,
        IMNET_S3_ACCESS_KEY=s3_server.access_key,
        IMNET_S3_SECRET_KEY=s3_server.secret_key,
    )
    workdir = tmp_path / "demo"
    report = _run_demo(workdir, env)
    _check_report(report)
    _verify_export(report)
    assert report["database"].startswith("postgresql+psycopg://")
    assert report["blobs"] == f"s3://{bucket}/blobs"
    assert not (workdir / "imnet.sqlite3").exists() and not (workdir / "blobs").exists()
    counts = _counts(db_url)
    keys = [
        o["Key"]
        for page in s3_server.client()
        .get_paginator("list_objects_v2")
        .paginate(Bucket=bucket, Prefix="blobs/")
        for o in page.get("Contents", [])
    ]
    assert len(keys) == counts["image"] > 0
