"""The `imnet` command: every stage listed, real help, clear one-line errors without tracebacks."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

STAGES = [
    "config",
    "setup",
    "db",
    "synsets",
    "harvest",
    "curate",
    "classes",
    "export",
    "mturk",
    "consensus",
    "train",
    "evaluate",
    "demo",
]


def run(
    args: list[str], cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    e = {k: v for k, v in os.environ.items() if not k.startswith("IMNET_")}
    e.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "imnet", *args],
        cwd=cwd,
        env=e,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_help_lists_every_stage(tmp_path: Path) -> None:
    r = run(["--help"], tmp_path)
    assert r.returncode == 0
    missing = [
        s for s in STAGES if f"\n    {s} " not in r.stdout and f"\n    {s}\n" not in r.stdout
    ]
    assert not missing, f"not in `imnet --help`: {missing}\n{r.stdout}"


@pytest.mark.parametrize("cmd", [["db", "upgrade"], ["config", "show"], ["setup"]])
def test_subcommand_help(tmp_path: Path, cmd: list[str]) -> None:
    r = run([*cmd, "--help"], tmp_path)
    assert r.returncode == 0 and "usage: imnet" in r.stdout and len(r.stdout) > 150


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        ({"IMNET_COLOUR": "blue"}, "unknown setting 'colour'"),
        ({"IMNET_DATABASE_URL": "not a url"}, "is not a sqlite"),
        (
            {"IMNET_DATABASE_URL": "postgresql+psycopg://u:secret@127.0.0.1:9/x"},
            "cannot reach database",
        ),
        ({"IMNET_CONSENSUS_DEPENDENCE_PRIOR": "nan"}, "must be a finite number >= 0"),
        ({"IMNET_CONSENSUS_TARGET_PRECISION": "1"}, "must be in (0, 1)"),
    ],
)
def test_bad_settings_one_line_no_traceback(
    tmp_path: Path, env: dict[str, str], needle: str
) -> None:
    r = run(["db", "upgrade"], tmp_path, env)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], r.stderr
    assert "Traceback" not in r.stderr and "secret" not in r.stderr


@pytest.mark.parametrize(
    "toml",
    [
        'user_agent = "imnet\\u0000x"\n',
        'user_agent = "a\\r\\nX-Evil: 1"\n',
        'mturk_access_key = "k\\u0007"\n',
    ],
)
def test_control_characters_in_settings_are_refused(tmp_path: Path, toml: str) -> None:
    # A NUL or a newline would reach a header (a second header: CRLF injection), a file name
    # or the database; the settings file is where to say so.
    (tmp_path / "imnet.toml").write_text(toml)
    r = run(["config", "show"], tmp_path)
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1 and "control character" in lines[0], r.stderr


def test_config_show_masks_and_reports_sources(tmp_path: Path) -> None:
    (tmp_path / "imnet.toml").write_text("crawl_concurrency = 7\n")
    r = run(["config", "show"], tmp_path, {"IMNET_S3_SECRET_KEY": "topsecret"})
    assert r.returncode == 0
    assert "topsecret" not in r.stdout
    assert "crawl_concurrency = 7" in r.stdout and "imnet.toml" in r.stdout


def test_db_upgrade_and_status(tmp_path: Path) -> None:
    r = run(["--data-dir", str(tmp_path / "d"), "db", "upgrade"], tmp_path)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "d" / "imnet.sqlite3").exists()
    r = run(["--data-dir", str(tmp_path / "d"), "db", "status"], tmp_path)
    assert r.returncode == 0 and "candidate" in r.stdout


def test_text_that_is_not_utf8_is_named_as_usage_names_it(tmp_path: Path) -> None:
    """A positional is named by its metavar, an option by its flag (a positional was once
    reported as a --flag that does not exist)."""
    bad = "n\udcff"
    env = {"IMNET_DATA_DIR": str(tmp_path)}
    got = {}
    for argv in (["synsets", "add", bad], ["mturk", "simulate", "--truth", "t", "--url", bad]):
        r = subprocess.run(
            [sys.executable, "-m", "imnet", *argv],
            cwd=tmp_path,
            env={**os.environ, **env},
            capture_output=True,
            text=True,
            errors="surrogateescape",
            timeout=120,
        )
        assert r.returncode == 2 and "Traceback" not in r.stderr
        got[argv[1]] = r.stderr.strip().splitlines()[-1]
    assert "argument WNID:" in got["add"] and "--wnid" not in got["add"]
    assert "argument --url:" in got["simulate"]
