"""The export's output folder: refuse what is not an earlier export, stage, swap in."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path


class ExportError(ValueError):
    """The export cannot run; the message is one line for the user. Nothing was changed."""


def _check_out_dir(out_dir: Path) -> None:
    """Refuse to replace anything but an earlier export (checked before any work is done)."""
    if out_dir.exists():
        if not out_dir.is_dir():
            raise ExportError(f"{out_dir} exists and is not a directory")
        if any(out_dir.iterdir()) and not (out_dir / "manifest.jsonl").exists():
            raise ExportError(
                f"{out_dir} is not empty and holds no imnet export; choose another --out"
            )
    # The export is staged next to out_dir and renamed into place: fail now, not after the
    # plan, where that is impossible (/proc/x, a file in the path, a read-only folder).
    for up in (out_dir.parent, *out_dir.parent.parents):
        if up.exists() and not up.is_dir():
            raise ExportError(f"cannot write {out_dir}: {up} is not a directory")
    try:
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        os.rmdir(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    except OSError as e:
        raise ExportError(f"cannot write in {out_dir.parent}: {e.strerror or e}") from None


def _reset(staging: Path) -> None:
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)


def _swap_in(staging: Path, out_dir: Path) -> None:
    """Replace out_dir by the finished staging directory; the old export goes only after."""
    old = out_dir.parent / f".{out_dir.name}.old"
    if old.exists():
        shutil.rmtree(old)
    if out_dir.exists():
        out_dir.rename(old)
    staging.rename(out_dir)
    if old.exists():
        shutil.rmtree(old)
