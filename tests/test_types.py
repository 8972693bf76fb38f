"""Every package type-checks: mypy over pyproject's [tool.mypy] files reports nothing, no ignores."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _checked_files() -> list[Path]:
    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mypy"]
    skip = [re.compile(pattern) for pattern in cfg.get("exclude", [])]
    return [
        path
        for entry in cfg["files"]
        for path in sorted((ROOT / entry).rglob("*.py"))
        if not any(p.search(path.relative_to(ROOT).as_posix()) for p in skip)
    ]


def test_mypy_reports_no_errors() -> None:
    """`mypy` from the repository root, as a developer runs it; .mypy_cache keeps reruns ~1 s."""
    proc = subprocess.run(
        [sys.executable, "-m", "mypy"], cwd=ROOT, capture_output=True, text=True, check=False
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-6000:]
    checked = re.search(r"Success: no issues found in (\d+) source files", out)
    assert checked, out[-2000:]
    # A config that silently matched nothing would pass vacuously.
    assert int(checked.group(1)) >= len(_checked_files()) > 0, out[-2000:]


def test_checked_floors_have_no_type_ignores() -> None:
    """A checked package fixes the cause (or casts with a reason) instead of silencing mypy."""
    ignores = [
        f"{path.relative_to(ROOT)}:{n}"
        for path in _checked_files()
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if re.search(r"#\s*type:\s*ignore", line)
    ]
    assert not ignores, ignores
