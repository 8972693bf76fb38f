"""curation stage: dedup, filters, near-duplicates, class selection, splits and export."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from imnet.core.app import App


def run_curation(
    app: App,
    steps: Sequence[str] = ("dedup", "phash", "filter", "neardup"),
    radius: int | None = None,
    flip: bool = False,
    **kwargs: Any,
) -> dict[str, Any]:
    """Run curation steps (see curation.pipeline); imported lazily to keep `imnet --help` fast."""
    from curation.pipeline import run_curation as _run

    return _run(app, steps, radius=radius, flip=flip, **kwargs)
