"""Filter stages and the scan's error policy, on real images stored in a real database."""

from __future__ import annotations

import numpy as np
from PIL import Image as PILImage
from sqlalchemy import select

import curation
from curation.filters import FilterParams, Probe, aspect_ratio, min_side, near_blank, single_colour
from db.models import Candidate, Image
from tests.curation.images import encode, photo
from tests.dbrows import add_candidate


def _probe(arr: np.ndarray, w: int = 200, h: int = 150) -> Probe:
    return Probe(w, h, arr.astype(np.uint8))


def test_stages_decide_with_reasons() -> None:
    fp = FilterParams(min_side=64, max_aspect=4.0, blank_std=3.0, single_colour=0.95)
    rng = np.random.default_rng(0)
    noisy = rng.integers(0, 256, size=(48, 64, 3))
    assert min_side(_probe(noisy, 63, 200), fp) == "too_small: 63x200 < 64"
    assert min_side(_probe(noisy, 64, 64), fp) is None
    assert aspect_ratio(_probe(noisy, 500, 100), fp).startswith("aspect: 5.00 > 4")
    assert aspect_ratio(_probe(noisy, 400, 100), fp) is None
    flat = np.full((48, 64, 3), 120) + rng.integers(0, 2, size=(48, 64, 3))
    assert near_blank(_probe(flat), fp).startswith("blank: std")
    assert near_blank(_probe(noisy), fp) is None
    logo = np.full((48, 64, 3), 255)
    logo[20:22, 30:34] = (10, 200, 30)  # a speck on white: not blank by std, but one colour
    assert near_blank(_probe(logo), fp) is None
    assert single_colour(_probe(logo), fp).startswith("single_colour: 100%") or single_colour(
        _probe(logo), fp
    ).startswith("single_colour: 99%")
    assert single_colour(_probe(noisy), fp) is None


def test_scan_records_every_rejection_and_resumes(app) -> None:  # type: ignore[no-untyped-def]
    good = encode(photo("chelsea"), "JPEG", quality=90)
    tiny = encode(photo("coffee").resize((40, 30)), "PNG")
    wide = encode(photo("rocket").resize((600, 100)), "PNG")
    blank = np.full((120, 160, 3), 200, np.uint8)
    blank_png = encode(PILImage.fromarray(blank), "PNG")
    logo = np.full((120, 160, 3), 255, np.uint8)
    logo[50:53, 70:76] = (200, 0, 0)
    logo_png = encode(PILImage.fromarray(logo), "PNG")
    truncated = good[: len(good) // 3]
    garbage = b"this is not an image at all" * 10
    with app.Session.begin() as s:
        for data in (good, tiny, wide, blank_png, logo_png, truncated, garbage):
            add_candidate(s, app.blobs, "n02123045", data, decision=None)
        missing = add_candidate(
            s, app.blobs, "n02123045", encode(photo("moon"), "PNG"), decision=None
        )
        sha_missing = s.get(Candidate, missing).image_sha256
    app.blobs.delete(sha_missing)  # a row whose blob is gone

    report = curation.run_curation(app, steps=("phash", "filter"))
    print(report)
    with app.Session() as s:
        rows = {r.sha256: r for r in s.scalars(select(Image))}
    by_reason = {
        sha: (r.quality, (r.quality_reason or "").split(":", 1)[0]) for sha, r in rows.items()
    }
    from imnet.core.blobstore import sha256_hex

    assert by_reason[sha256_hex(good)] == ("ok", "")
    assert rows[sha256_hex(good)].phash is not None
    assert by_reason[sha256_hex(tiny)] == ("rejected", "too_small")
    assert by_reason[sha256_hex(wide)] == ("rejected", "aspect")
    assert by_reason[sha256_hex(blank_png)] == ("rejected", "blank")
    assert by_reason[sha256_hex(logo_png)] == ("rejected", "single_colour")
    assert by_reason[sha256_hex(truncated)] == ("rejected", "unreadable")
    assert by_reason[sha256_hex(garbage)] == ("rejected", "unreadable")
    assert by_reason[sha_missing] == ("rejected", "unreadable")
    assert "missing" in rows[sha_missing].quality_reason
    assert report["scan"]["scanned"] == 8 and report["scan"]["errors"] == []
    assert report["rejected_by_reason"] == {
        "too_small": 1,
        "aspect": 1,
        "blank": 1,
        "single_colour": 1,
        "unreadable": 3,
    }
    assert report["totals"]["images_by_quality"] == {"ok": 1, "rejected": 7}
    # Resumable and idempotent: a second run has nothing left to do.
    again = curation.run_curation(app, steps=("phash", "filter"))
    assert again["scan"]["scanned"] == 0


def test_a_failing_stage_leaves_the_image_unchecked(app, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Error policy: an unexpected exception is reported and retried later, never a rejection."""
    import curation.filters as filters

    def broken(p: Probe, fp: FilterParams) -> str | None:
        raise RuntimeError("stage bug")

    with app.Session.begin() as s:
        cid = add_candidate(
            s, app.blobs, "n02123045", encode(photo("astronaut"), "PNG"), decision=None
        )
        sha = s.get(Candidate, cid).image_sha256
    monkeypatch.setattr(filters, "STAGES", (("broken", broken),))
    report = curation.run_curation(app, steps=("filter",))
    assert (
        report["scan"]["errors"]
        and "broken: RuntimeError: stage bug" in report["scan"]["errors"][0]
    )
    with app.Session() as s:
        assert s.get(Image, sha).quality is None
    monkeypatch.undo()
    assert curation.run_curation(app, steps=("filter",))["scan"]["ok"] == 1
