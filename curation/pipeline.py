"""`imnet curate`: exact dedup, perceptual hashing, quality filters and near-dup clustering."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from imnet.core.app import App

log = logging.getLogger(__name__)

STEPS = ("dedup", "phash", "filter", "neardup")


def run_curation(
    app: App,
    steps: Sequence[str] = STEPS,
    radius: int | None = None,
    flip: bool = False,
    batch: int = 512,
) -> dict[str, Any]:
    """Run the named steps in pipeline order; returns counts and rejections by reason per step.

    phash and filter share one decode of each image when both are asked for. Several processes
    (on several machines sharing the database and blob store) may run this at once: they split
    the scan between them, and near-duplicate clustering, which needs every hash, is left to
    whichever finishes its share last (see `_others_scanning`).
    """
    unknown = [s for s in steps if s not in STEPS]
    if unknown:
        raise ValueError(f"unknown curation step(s) {unknown}; choose from {', '.join(STEPS)}")
    from curation.dedup import exact_dedup, mark_near_duplicates
    from curation.filters import run_scan

    report: dict[str, Any] = {"steps": [s for s in STEPS if s in steps]}
    if "dedup" in steps:
        report["dedup"] = exact_dedup(app)
        # `imnet curate` prints these readably; the log repeats them only under -v.
        log.debug("dedup: %s", report["dedup"])
    if "phash" in steps or "filter" in steps:
        scan = run_scan(
            app, want_phash="phash" in steps, want_filter="filter" in steps, batch=batch
        )
        report["scan"] = scan
        report["rejected_by_reason"] = dict(scan["rejected_by_reason"])
        log.debug(
            "scan: %d images, %d hashed, %d ok, %d rejected, %d errors",
            scan["scanned"],
            scan["hashed"],
            scan["ok"],
            scan["rejected"],
            len(scan["errors"]),
        )
    if "neardup" in steps:
        busy = _others_scanning(app) if ("phash" in steps or "filter" in steps) else 0
        if busy:
            report["neardup"] = {"deferred": True, "held_by_others": busy}
        else:
            report["neardup"] = mark_near_duplicates(app, radius=radius, flip=flip)
        log.debug("neardup: %s", report["neardup"])
    report["totals"] = image_totals(app)
    return report


def _others_scanning(app: App) -> int:
    """Images other processes hold leases on now: their scans are still running, and the last of
    them to finish clusters every hash, so clustering here too would be wasted work. (A process
    that dies holding leases defers clustering until a rerun after its leases run out.)"""
    from curation.filters import scan_passes
    from curation.workers import ImageLeases

    leases = ImageLeases(app.engine)
    return sum(leases.held_elsewhere(where) for where, _, _ in scan_passes(True, True))


def image_totals(app: App) -> dict[str, Any]:
    """Database-wide counts: images by quality, rejections by reason code, near-duplicates."""
    from sqlalchemy import func, select

    from db.models import Image

    with app.Session() as s:
        by_quality = {
            (q or "unchecked"): n
            for q, n in s.execute(select(Image.quality, func.count()).group_by(Image.quality))
        }
        reasons: dict[str, int] = {}
        for reason, n in s.execute(
            select(Image.quality_reason, func.count())
            .where(Image.quality == "rejected")
            .group_by(Image.quality_reason)
        ):
            code = (reason or "unknown").split(":", 1)[0]
            reasons[code] = reasons.get(code, 0) + n
        near = s.scalar(select(func.count()).where(Image.near_dup_of.is_not(None))) or 0
        unhashed = s.scalar(select(func.count()).where(Image.phash.is_(None))) or 0
    return {
        "images_by_quality": by_quality,
        "rejected_by_reason": reasons,
        "near_duplicates": near,
        "unhashed": unhashed,
    }
