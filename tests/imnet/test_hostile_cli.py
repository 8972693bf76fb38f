"""Every `imnet` subcommand under hostile arguments: exit 2 (130 on SIGINT), one line, no traceback."""

from __future__ import annotations

import argparse
import contextlib
import io
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from imnet.cli import build_parser, main
from tests._servers import free_port

# Commands that never read the data directory: a bad --data-dir is no error for them.
NO_DATA_DIR = {("config", "show"), ("setup",)}
# Commands whose valid run does not end by itself (or is the whole pipeline): in-process they get
# only arguments the parser refuses or bad paths; their runs are driven in subprocesses below.
LONG_RUNNING = {
    ("demo",): "runs the whole pipeline: SIGINT test in a subprocess",
    ("mturk", "serve"): "serves until stopped: busy-port and SIGINT tests in a subprocess",
    ("review",): "serves until stopped: busy-port and SIGINT tests in a subprocess",
}
# Option values that name a file or folder (by dest), and what each expects.
PATH_DESTS = {
    "file": "file",
    "truth": "file",
    "resume": "file",
    "stats_json": "out-file",
    "data_path": "dir",
    "out": "out-dir",
    "output_dir": "out-dir",
    "workdir": "out-dir",
}
# String options whose name looks like a path but are not one (with why).
NOT_PATHS = {"url": "mturk simulate --url: the worker site, covered by the closed-port endpoint"}
NUMERIC_VALUES = ("-1", "0", "nan", "inf", "-inf", "1e999", "9" * 30, "abc", "")
# Free text (names, wnids, sources): argv bytes that are not UTF-8 arrive as lone surrogates,
# which no database or JSON encoder takes; a name far longer than any; empty, blank, a path.
STRING_VALUES = ("n\udcff", "\udcff\udcfe", "n" * 5000, "", " ", "../../x")


def _tree(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()) -> Iterator:
    yield path, parser
    for a in parser._actions:
        if isinstance(a, argparse._SubParsersAction):
            for name, sub in a.choices.items():
                yield from _tree(sub, (*path, name))


COMMANDS = {path: p for path, p in _tree(build_parser()) if path}
LEAVES = {
    path: p
    for path, p in COMMANDS.items()
    if not any(isinstance(a, argparse._SubParsersAction) for a in p._actions)
}


def _is_numeric(a: argparse.Action) -> bool:
    return a.type in (int, float) or getattr(a.type, "__name__", "") in ("integer", "number")


def _is_text(a: argparse.Action) -> bool:
    """A free-text value: not a flag, a choice, a number or a path."""
    takes_value = a.nargs != 0 and not isinstance(
        a, argparse._HelpAction | argparse._VersionAction | argparse._SubParsersAction
    )
    plain = a.type is None and not a.choices
    return takes_value and plain and a.dest not in PATH_DESTS and a.dest not in NOT_PATHS


def _flag(a: argparse.Action) -> str:
    return max(a.option_strings, key=len)


def base_argv(
    path: tuple[str, ...],
    parser: argparse.ArgumentParser,
    tmp: Path,
    override: tuple[argparse.Action, str] | None = None,
) -> list[str]:
    """The command with its required arguments filled (a missing path, a choice, a name), and
    `override`'s action given its value."""
    argv = list(path)
    for a in parser._actions:
        if override and a is override[0]:
            value = override[1]
        elif not a.required or isinstance(a, argparse._SubParsersAction):
            continue
        elif a.choices:
            value = str(next(iter(a.choices)))
        elif a.dest in PATH_DESTS:
            value = str(tmp / "missing" / a.dest)
        else:
            value = "1" if _is_numeric(a) else "n00000001"
        if a.option_strings:
            argv += [f"{_flag(a)}={value}"]
        elif a.nargs not in ("*", "?") or override:
            argv.append(value)
    return argv


@contextlib.contextmanager
def quiet_env(tmp: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for k in [k for k in os.environ if k.startswith("IMNET_")]:
        monkeypatch.delenv(k)
    # Nothing may leave loopback: the MTurk endpoint and S3 point at a closed local port.
    closed = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("IMNET_MTURK_ENDPOINT_URL", closed)
    monkeypatch.setenv("IMNET_S3_ENDPOINT_URL", closed)
    monkeypatch.setenv("IMNET_DATA_DIR", str(tmp / "data"))
    monkeypatch.chdir(tmp)
    yield


def run_inproc(argv: list[str], parse_only: bool = False) -> tuple[int, str, str] | None:
    """Exit code, stdout and stderr of `imnet argv`; with parse_only, None when the parser
    accepts argv (the command is not run)."""
    out, err = io.StringIO(), io.StringIO()
    # What `imnet` logs goes to stderr too (INFO and up, as main configures it in a process).
    root, log_to_err = logging.getLogger(), logging.StreamHandler(err)
    level, root.level = root.level, logging.INFO
    root.addHandler(log_to_err)
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            if parse_only:
                build_parser().parse_args(argv)
                return None
            rc = main(argv)
        except SystemExit as e:
            rc = e.code if isinstance(e.code, int) else (0 if e.code is None else 2)
        except BaseException:  # noqa: BLE001 - the test reports it as a finding
            import traceback

            rc = -1
            err.write("Traceback (escaped main)\n" + traceback.format_exc())
        finally:
            root.removeHandler(log_to_err)
            root.setLevel(level)
    return rc, out.getvalue(), err.getvalue()


def run(argv: list[str]) -> tuple[int, str, str]:
    got = run_inproc(argv)
    assert got is not None
    return got


def verdict(argv: list[str], rc: int, out: str, err: str, ok_codes=(0, 2)) -> str:
    """'' when the run behaved, else why not (one line)."""
    lines = err.strip().splitlines()
    if "Traceback" in out + err:
        return f"{argv}: traceback: {err[-600:]!r}"
    if rc not in ok_codes:
        return f"{argv}: exit {rc} (want {ok_codes}); stderr {err[-300:]!r}"
    if rc != 0 and len(lines) != 1:
        return f"{argv}: exit {rc} with {len(lines)} stderr lines: {err[-400:]!r}"
    return ""


def hostile_cases(tmp: Path) -> Iterator[tuple[list[str], tuple[int, ...], bool]]:
    """(argv, accepted exit codes, parse only) for every command: missing services, bad paths
    and bad numbers. Long-running commands are only parsed when the parser accepts argv."""
    files = {
        "binary": tmp / "k" / "binary.bin",
        "empty": tmp / "k" / "empty",
        "tsv": tmp / "k" / "urls.tsv",
        "dir": tmp / "k" / "adir",
    }
    files["dir"].mkdir(parents=True, exist_ok=True)
    files["binary"].write_bytes(bytes(range(256)) * 64)
    files["empty"].write_bytes(b"")
    files["tsv"].write_text("n01440764\thttp://127.0.0.1:9/a.jpg\nbad line\n")
    bad_dirs = ["/proc/x", "/dev/null/x", str(files["binary"])]
    pg = f"postgresql+psycopg://u:p@127.0.0.1:{free_port()}/x"
    for path in sorted(set(COMMANDS) - set(LEAVES)):  # a group without its action
        yield list(path), (2,), False
    for path, parser in sorted(LEAVES.items()):
        base = base_argv(path, parser, tmp)
        long = path in LONG_RUNNING
        if not long:
            yield base, (0, 2), False
            for d in bad_dirs:
                yield ["--data-dir", d, *base], (0, 2) if path in NO_DATA_DIR else (2,), False
            yield ["--database-url", pg, *base], (0, 2), False
            yield ["--blob-url", "s3://bucket/prefix", *base], (0, 2), False
        elif path == ("demo",):  # fails at its first mkdir, before any work
            for d in bad_dirs:
                yield ["--data-dir", d, *base], (2,), False
        for a in parser._actions:
            kind = PATH_DESTS.get(a.dest)
            if kind:
                out = kind.startswith("out")
                bad = ["/proc/x", "/dev/null/x", str(files["binary"]) + "/x"]
                for v in bad if out else [*map(str, files.values()), "/proc/x", "/dev/null/x"]:
                    # 1: some lines of a TSV were bad, the rest imported
                    yield base_argv(path, parser, tmp, (a, v)), (2,) if out else (1, 2), False
                if out and not long:  # a writable place: valid
                    yield base_argv(path, parser, tmp, (a, str(tmp / "k" / "new"))), (0, 2), False
            elif _is_numeric(a):
                for v in NUMERIC_VALUES:
                    yield base_argv(path, parser, tmp, (a, v)), (0, 2), long
            elif _is_text(a):
                for v in STRING_VALUES:
                    yield base_argv(path, parser, tmp, (a, v)), (0, 2), long


def run_case(argv: list[str], ok: tuple[int, ...], parse_only: bool) -> str:
    """'' when `imnet argv` behaved (or, parse_only, the parser accepted it), else why not."""
    got = run_inproc(argv, parse_only)
    return "" if got is None else verdict(argv, *got, ok_codes=ok)


def test_every_command_is_driven(tmp_path: Path) -> None:
    """A new subcommand is covered by the sweep below, or listed with a reason."""
    assert len(LEAVES) >= 25, sorted(LEAVES)
    seen: set[tuple[str, ...]] = set()
    for argv, *_ in hostile_cases(tmp_path):
        argv = [a for a in argv if not a.startswith("-")]
        seen |= {p for p in LEAVES if tuple(argv[: len(p)]) == p}
    assert set(LEAVES) - seen == set()
    assert set(LONG_RUNNING) <= set(LEAVES) and NO_DATA_DIR <= set(LEAVES)
    # A new path-like option is driven with bad paths, or listed with a reason.
    unlisted = [
        (p, a.dest)
        for p, parser in LEAVES.items()
        for a in parser._actions
        if a.nargs != 0
        and a.type is None
        and not a.choices
        and re.search(r"path|file|dir|out|truth|resume|url", a.dest)
        and a.dest not in PATH_DESTS
        and a.dest not in NOT_PATHS
    ]
    assert not unlisted, f"path-like options missing from PATH_DESTS: {unlisted}"
    # Every numeric flag has a range the parser enforces (no bare int/float).
    bare = [
        (p, a.dest)
        for p, parser in LEAVES.items()
        for a in parser._actions
        if a.type in (int, float)
    ]
    assert not bare, f"numeric flags without a range (use imnet.core.argtypes): {bare}"


@pytest.mark.slow  # ~800 invocations, ~30 s: CI runs it, the fast set does not
def test_hostile_arguments_in_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    failures, n = [], 0
    with quiet_env(tmp_path, monkeypatch):
        for argv, ok, parse_only in hostile_cases(tmp_path):
            n += 1
            problem = run_case(argv, ok, parse_only)
            if problem:
                failures.append(problem)
    print(f"{n} hostile invocations in process")
    assert not failures, f"{len(failures)} of {n}:\n" + "\n".join(failures[:30])


def _env(tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("IMNET_")}
    env.update(IMNET_DATA_DIR=str(tmp / "data"), PYTHONUNBUFFERED="1")
    env["IMNET_MTURK_ENDPOINT_URL"] = f"http://127.0.0.1:{free_port()}"
    return env


def _imnet(args: list[str]) -> list[str]:
    return [sys.executable, "-m", "imnet", *args]


@pytest.mark.parametrize(
    "args", [["config", "show"], ["synsets", "list"], ["db", "status"], ["harvest", "status"]]
)
def test_closed_stdout_pipe(tmp_path: Path, args: list[str]) -> None:
    """`imnet ... | head -0`: the reader is gone before the first byte."""
    r, w = os.pipe()
    os.close(r)
    try:
        p = subprocess.run(
            _imnet(args),
            stdout=w,
            stderr=subprocess.PIPE,
            text=True,
            cwd=tmp_path,
            env=_env(tmp_path),
            timeout=120,
        )
    finally:
        os.close(w)
    assert verdict(args, p.returncode, "", p.stderr, ok_codes=(2,)) == ""
    assert "output closed" in p.stderr


def _wait_line(proc: subprocess.Popen, needle: str, timeout: float) -> str:
    """Read proc's stdout until a line holds needle (the command is then busy or listening)."""
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    seen = []
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        seen.append(line)
        if needle in line:
            return line
    proc.kill()
    raise AssertionError(f"no line with {needle!r} in {timeout}s: {seen[-5:]}")


SIGINT_CASES = {
    "mturk serve": (["mturk", "serve", "--host", "127.0.0.1", "--port", "{port}"], "http://"),
    "review": (["review", "--port", "{port}"], "review page on"),
    "demo": (["demo", "--workdir", "{tmp}/demo", "--epochs", "1"], "== crawl"),
}


@pytest.mark.parametrize(
    "name",
    [pytest.param(n, marks=pytest.mark.slow) if n == "demo" else n for n in sorted(SIGINT_CASES)],
)
def test_sigint_while_running(tmp_path: Path, name: str) -> None:
    """Ctrl-C during a running command: exit 130, one line, no traceback."""
    args, needle = SIGINT_CASES[name]
    port = str(free_port())
    argv = [a.replace("{port}", port).replace("{tmp}", str(tmp_path)) for a in args]
    proc = subprocess.Popen(
        _imnet(argv),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
        env=_env(tmp_path),
    )
    try:
        _wait_line(proc, needle, timeout=120)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert verdict(argv, proc.returncode, "", err, ok_codes=(130,)) == ""


@pytest.mark.parametrize("args", [["mturk", "serve", "--host", "127.0.0.1"], ["review"]])
def test_busy_port(tmp_path: Path, args: list[str]) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        p = subprocess.run(
            _imnet([*args, "--port", str(port)]),
            capture_output=True,
            text=True,
            cwd=tmp_path,
            env=_env(tmp_path),
            timeout=120,
        )
    assert verdict(args, p.returncode, p.stdout, p.stderr, ok_codes=(2,)) == ""
    assert str(port) in p.stderr


@pytest.mark.slow
def test_unreachable_blob_store_stops_the_export(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An S3 blob store on a closed port stops the export in one line, exit 2, with nothing
    written (it used to leave every image out as unreadable and exit 0)."""
    from tests.dbrows import sqlite_with_candidates

    db = sqlite_with_candidates(tmp_path, 8)
    with quiet_env(tmp_path, monkeypatch):
        for key, v in {"VAL_PER_CLASS": "2", "TEST_PER_CLASS": "2", "S3_ACCESS_KEY": "k"}.items():
            monkeypatch.setenv(f"IMNET_{key}", v)
        monkeypatch.setenv("IMNET_S3_SECRET_KEY", "s")
        for argv in (["curate"], ["classes", "choose", "--set", "a", "--n", "1"]):
            assert run(["--database-url", db, *argv])[0] == 0
        out_dir = tmp_path / "export"
        argv = ["--database-url", db, "--blob-url", "s3://bucket/prefix", "export", "--set", "a"]
        rc, out, err = run([*argv, "--format", "ilsvrc", "--out", str(out_dir)])
    assert verdict(argv, rc, out, err, ok_codes=(2,)) == "" and "unusable" in err
    assert not out_dir.exists()
