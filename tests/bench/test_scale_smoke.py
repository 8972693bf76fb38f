"""bench/scale.py stays runnable: its fixture web, its measurements and a tiny end-to-end run."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from bench import _scaleweb as web
from bench._scalemeasure import run
from bench._scalestages import UNITS
from bench.scale import analyse, exponent, project

ROOT = Path(__file__).resolve().parents[2]


def test_fixture_kinds_are_deterministic_and_dups_stay_in_their_class() -> None:
    kinds = [web.kind_of(0, i, 20) for i in range(4000)]
    assert kinds == [web.kind_of(0, i, 20) for i in range(4000)]
    share = {k: kinds.count(k) / len(kinds) for k in set(kinds)}
    assert 0.06 < sum(share.get(b, 0) for b in web.BROKEN) < 0.12
    assert 0.03 < share["dup"] < 0.07 and 0.03 < share["neardup"] < 0.07
    for i, k in enumerate(kinds):
        if k in ("dup", "neardup"):
            src = web.source_of(0, i, 20)
            assert src // 20 == i // 20 and kinds[src] in ("true", "wrong")
        if i % 20 == 0:
            assert k not in ("dup", "neardup")  # the first URL of a class has nothing to copy


def test_pack_bodies_and_truth(tmp_path: Path) -> None:
    pack = web.Pack(tmp_path, seed=3, per_class=10)
    idx = pack.ensure(30, workers=1, out=lambda _l: None)
    again = pack.ensure(20, workers=1, out=lambda _l: None)  # a smaller size reuses the pack
    assert again["sha256"] == idx["sha256"]
    data = (pack.dir / "bodies.bin").read_bytes()
    for i, kind in enumerate(idx["kinds"]):
        body = data[idx["offsets"][i] : idx["offsets"][i + 1]]
        assert body == web.body_of(3, i, 10)[1]
        if kind == "dup":
            src = web.source_of(3, i, 10)
            assert idx["sha256"][i] == idx["sha256"][src]
    truth = web.truth_for(idx, ["n01440764", "n01443537", "n01484850"], 30, 10, 3)["images"]
    good = [i for i, k in enumerate(idx["kinds"]) if k == "true"]
    assert good and all(truth[idx["sha256"][i]] is not None for i in good)
    wrong = [i for i, k in enumerate(idx["kinds"]) if k == "wrong"]
    assert all(truth[idx["sha256"][i]] is None for i in wrong)
    assert hashlib.sha256(b"").hexdigest() not in truth


def test_run_measures_cpu_and_rss_of_the_whole_tree(tmp_path: Path) -> None:
    # Parent and child each hold 100 MB at once and the child burns CPU: the command is charged
    # for both processes' memory together (a max over processes would say 100) and the child's CPU.
    child = "import time; b = b'x' * (100 * 2**20); t = time.process_time()\n" + (
        "while time.process_time() - t < 1.0: pass"
    )
    parent = (
        f"import subprocess, sys; b = b'y' * (100 * 2**20); "
        f"subprocess.run([sys.executable, '-c', {child!r}])"
    )
    m = run([sys.executable, "-c", parent], {"PATH": "/usr/bin:/bin"}, tmp_path / "log")
    assert m["rc"] == 0
    assert m["cpu_s"] >= 0.9
    assert m["rss_peak_mb"] >= 195
    assert 100 <= m["rss_max_proc_mb"] < 160
    assert m["wall_s"] >= 1.0


def test_exponent_and_projection() -> None:
    a = {"cpu_total": 10.0, "items": 1000}
    b = {"cpu_total": 40.0, "items": 2000}
    assert exponent(a, b) == pytest.approx(2.0)
    assert project(a, b, 4000, 2.0) == pytest.approx(160.0)  # super-linear: the power law
    lin = {"cpu_total": 15.0, "items": 2000}  # 5 s start-up + 5 ms per unit
    assert project(a, lin, 4000, exponent(a, lin)) == pytest.approx(25.0)
    assert exponent(a, {**b, "error": "boom"}) is None
    # The time-bounded crowd gets no exponent or projection; a real stage gets both.
    runs = [
        {"stages": {"crawl": dict(a, cpu_s=10.0), "simulate": dict(a, cpu_s=1.0)}},
        {"stages": {"crawl": dict(b, cpu_s=40.0), "simulate": dict(b, cpu_s=9.0)}},
    ]
    ana = analyse(runs)
    assert ana["crawl"]["exponents"] == [pytest.approx(2.0)] and ana["crawl"]["projected_cpu_s"]
    assert ana["simulate"]["exponents"] == [None] and ana["simulate"]["projected_cpu_s"] is None


def test_bad_sizes_exit_2() -> None:
    p = subprocess.run(
        [sys.executable, "bench/scale.py", "--sizes", "10,x"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert p.returncode == 2 and "Traceback" not in p.stderr and p.stderr.strip()


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_tiny_end_to_end_run(tmp_path: Path) -> None:
    out = tmp_path / "scale.json"
    # Its own session, so a timeout takes down every command and server the bench started.
    p = subprocess.Popen(
        [sys.executable, "bench/scale.py", "--sizes", "60", "--per-class", "20"]
        + ["--sim-seconds", "3", "--processes", "1", "--workdir", str(tmp_path / "w")]
        + ["--cache", str(tmp_path / "cache"), "--json", str(out)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        stdout, _ = p.communicate(timeout=1700)
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
    assert p.returncode == 0, stdout[-5000:]
    res = json.loads(out.read_text())
    assert [r["n"] for r in res["runs"]] == [60]
    run = res["runs"][0]
    failed = {k: v.get("error") for k, v in run["stages"].items() if v.get("rc")}
    assert not failed, failed
    assert set(run["stages"]) == set(UNITS)
    assert run["counts"]["candidates"].get("fetched", 0) > 30
    assert run["counts"]["votes"] > 0 and run["counts"]["exported"] > 0
    assert run["stages"]["crawl"]["cpu_s"] > 0 and run["stages"]["crawl"]["rss_peak_mb"] > 20
    ana = analyse(res["runs"])
    assert ana["crawl"]["exponents"] == [] and ana["crawl"]["projected_cpu_s"] > 0
    assert res["goals"]["projected_build_hours"] > 0
    assert "full ILSVRC-2012 build" in stdout
