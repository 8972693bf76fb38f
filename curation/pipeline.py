"""`imnet curate`: exact dedup, perceptual hashing, quality filters and near-dup clustering."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

log = logging.getLogger(__name__)

STEPS = ("dedup", "phash", "filter", "neardup")


def run_curation(
    app: Any, steps: Sequence[str] = STEPS, radius: int | None = None, flip: bool = False
) -> dict[str, Any]:
    """Run the named steps in pipeline order; returns counts and rejections by reason per step.

    phash and filter share one decode of each image when both are asked for.
    """
    unknown = [s for s in steps if s not in STEPS]
    if unknown:
        raise ValueError(f"unknown curation step(s) {unknown}; choose from {', '.join(STEPS)}")
    from curation.dedup import exact_dedup, mark_near_duplicates
    from curation.filters import run_scan

    report: dict[str, Any] = {"steps": [s for s in STEPS if s in steps]}
    if "dedup" in steps:
        report["dedup"] = exact_dedup(app)
        log.info("dedup: %s", report["dedup"])
    if "phash" in steps or "filter" in steps:
        scan = run_scan(app, want_phash="phash" in steps, want_filter="filter" in steps)
        report["scan"] = scan
        report["rejected_by_reason"] = dict(scan["rejected_by_reason"])
        log.info(
            "scan: %d images, %d hashed, %d ok, %d rejected, %d errors",
            scan["scanned"],
            scan["hashed"],
            scan["ok"],
            scan["rejected"],
            len(scan["errors"]),
        )
    if "neardup" in steps:
        report["neardup"] = mark_near_duplicates(app, radius=radius, flip=flip)
        log.info("neardup: %s", report["neardup"])
    report["totals"] = image_totals(app)
    return report


def image_totals(app: Any) -> dict[str, Any]:
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
