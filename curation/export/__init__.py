"""Export writers (`ilsvrc`, `webdataset`) behind write(sample)/close(), and `run_export`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

FORMATS = ("ilsvrc", "webdataset")


def run_export(
    app: Any,
    set_name: str,
    fmt: str,
    out_dir: str | Path,
    resize: int = 0,
    quality: int = 90,
    seed: int = 0,
    name: str | None = None,
) -> dict[str, Any]:
    """Export a class set's accepted images (see curation.export.run.run_export)."""
    from curation.export.run import run_export as _run

    return _run(app, set_name, fmt, out_dir, resize=resize, quality=quality, seed=seed, name=name)
