"""Where a running `imnet mturk serve` listens, recorded in the data dir so publish/collect follow it."""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

FILE = "mturk-endpoint.json"


def record(data_dir: str | Path, url: str) -> Path:
    """Write {url, pid} for this serving process; returns the file (remove it on exit)."""
    path = Path(data_dir) / FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{FILE}.{os.getpid()}")
    tmp.write_text(json.dumps({"url": url.rstrip("/"), "pid": os.getpid()}))
    tmp.replace(path)
    return path


def forget(data_dir: str | Path) -> None:
    """Remove the record if it is this process's own (another server may have replaced it)."""
    path = Path(data_dir) / FILE
    with contextlib.suppress(OSError, ValueError):  # already gone or unreadable: nothing to undo
        if json.loads(path.read_text()).get("pid") == os.getpid():
            path.unlink()


def running(data_dir: str | Path) -> str | None:
    """The URL of a live `imnet mturk serve` on this data dir, or None."""
    try:
        rec = json.loads((Path(data_dir) / FILE).read_text())
        url, pid = str(rec["url"]), int(rec["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return None  # a killed server left its record behind
    except PermissionError:
        pass  # alive, under another user
    return url
