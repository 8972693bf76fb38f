"""README.md's Tour, command by command, from a fresh directory against the loopback fixture web.

The commands are read from the Tour section's ```bash blocks, so the README and this test cannot
drift: `imnet ...` lines run in order (a trailing `&` starts a server in the background, ready
once it prints its first line), `export K=V ...` lines set the environment of later commands.
Every command must exit 0 without a traceback. Only the fixture web's and the MTurk server's ports
are swapped for free ones, so that the test never collides with a server already running.
"""

from __future__ import annotations

import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def tour_commands(readme: str) -> list[str]:
    """The command lines of the Tour's bash blocks, comments stripped, in order."""
    lines = readme.splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.startswith("## Tour"))
    out: list[str] = []
    fence: str | None = None
    for ln in lines[start + 1 :]:
        if fence is None and ln.startswith("## "):
            break  # the next top-level section (a `## ` inside a code block does not count)
        if ln.startswith("```"):
            fence = ln[3:].strip() if fence is None else None
            continue
        if fence == "bash":
            cmd = ln.split("  #", 1)[0].strip()
            if cmd and not cmd.startswith("#"):
                out.append(cmd)
    return out


def test_the_tour_parses_into_runnable_commands() -> None:
    cmds = tour_commands((ROOT / "README.md").read_text())
    assert cmds[0].startswith("imnet demo --serve-fixture") and cmds[0].endswith("&")
    assert any(c.startswith("imnet mturk serve") for c in cmds)
    assert any(c == "imnet mturk gold" for c in cmds)
    for c in cmds:
        assert c.startswith(("imnet ", "export ")), f"the Tour test cannot run {c!r}"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start(argv: list[str], cwd: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    # Output goes to a file: a server that logs every request would fill a pipe and stall.
    log = cwd / f".bg-{len(list(cwd.glob('.bg-*')))}.log"
    with log.open("wb") as f:
        proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=f, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # ready once it announces its URL
        if b"http://" in log.read_bytes():
            return proc
        assert proc.poll() is None, f"{argv} exited with {proc.returncode}: {log.read_text()}"
        time.sleep(0.2)
    raise AssertionError(f"{argv} announced no URL in 120 s: {log.read_text()}")


def test_readme_tour_runs_as_written(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("IMNET_")}
    fixture_port, mturk_port = _free_port(), _free_port()
    env["IMNET_MTURK_PORT"] = str(mturk_port)  # `imnet mturk serve`'s default port, moved
    background: list[subprocess.Popen[bytes]] = []
    ran: list[str] = []
    try:
        for cmd in tour_commands((ROOT / "README.md").read_text()):
            cmd = cmd.replace("8700", str(fixture_port))
            if cmd.startswith("export "):
                for pair in shlex.split(cmd)[1:]:
                    k, _, v = pair.partition("=")
                    env[k] = v
                continue
            words = shlex.split(cmd.rstrip("&").strip())
            argv = [sys.executable, "-m", "imnet", *words[1:]]
            if cmd.endswith("&"):
                background.append(_start(argv, tmp_path, env))
                ran.append(cmd)
                continue
            r = subprocess.run(
                argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
            )
            ran.append(cmd)
            assert r.returncode == 0 and "Traceback" not in r.stderr, (
                f"Tour step failed: {cmd}\n(after {ran[:-1]})\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}"
            )
    finally:
        for p in background:
            p.send_signal(signal.SIGTERM)
        for p in background:
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(10)
    # What the Tour promises it made, checked on disk.
    assert (tmp_path / "fixture" / "truth.json").is_file()
    assert (tmp_path / "exports/demo/LOC_synset_mapping.txt").is_file()
    assert any((tmp_path / "exports/demo-wds").glob("train-*.tar"))
    assert (tmp_path / "runs/alexnet/checkpoint.pth").is_file()
    import sqlite3

    (db,) = (tmp_path / "imnet-data").glob("*.sqlite3")
    with sqlite3.connect(db) as c:
        n = {t: c.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in ("hit", "vote")}
        # the HITs went to the Tour's own server (followed without any endpoint setting)
        local = c.execute("SELECT count(*) FROM hit WHERE endpoint LIKE 'http://127.0.0.1:%'")
        n["local_hits"] = local.fetchone()[0]
        n["gold"] = c.execute("SELECT count(*) FROM gold_item").fetchone()[0]
    assert n["vote"] > 0 and n["hit"] == n["local_hits"] > 0, n
    assert n["gold"] > 0, n
