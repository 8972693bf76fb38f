"""curation stage: dedup, filters, near-duplicates, class selection, splits and export."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def run_curation(
    app: Any,
    steps: Sequence[str] = ("dedup", "phash", "filter", "neardup"),
    radius: int | None = None,
    flip: bool = False,
    **kwargs: Any,
) -> dict[str, Any]:
    """Run curation steps (see curation.pipeline); imported lazily to keep `imnet --help` fast."""
    from curation.pipeline import run_curation as _run

    return _run(app, steps, radius=radius, flip=flip, **kwargs)
