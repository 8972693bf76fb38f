"""Quality filters as small streaming stages, plus the one-decode scan that also stores the phash."""

from __future__ import annotations

import io
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from PIL.Image import Image as PILImage

    from imnet.core.app import App
    from imnet.core.blobstore import FileStore, S3Store
    from imnet.core.settings import Settings

log = logging.getLogger(__name__)

# Error policy (explicit, per image):
# - the blob is missing or corrupt, or the bytes do not decode (truncated, not an image, bomb):
#   the image is rejected with quality_reason "unreadable: ..."; nothing else is lost.
# - a stage raises anything else (a bug, an exotic mode): the image is NOT rejected; its quality
#   stays NULL, the error is reported in the run's summary, and the next run retries it.
# - the blob store itself fails (network, permissions): the image stays unchecked and is counted
#   under "errors"; after MAX_STORE_ERRORS such failures in a row the run stops, because the store,
#   not the images, is at fault. Finished batches are committed, so a rerun resumes.
MAX_STORE_ERRORS = 20


@dataclass(frozen=True)
class FilterParams:
    min_side: int = 64
    max_aspect: float = 4.0
    blank_std: float = 3.0
    single_colour: float = 0.95

    @classmethod
    def from_settings(cls, s: Settings) -> FilterParams:
        return cls(s.min_side, s.max_aspect, s.filter_blank_std, s.filter_single_colour)


@dataclass
class Probe:
    """What the stages see: original size and a small upright RGB rendering."""

    width: int
    height: int
    thumb: np.ndarray  # uint8 (h, w, 3), at most 64 px a side


Stage = Callable[[Probe, FilterParams], str | None]


def min_side(p: Probe, fp: FilterParams) -> str | None:
    if min(p.width, p.height) < fp.min_side:
        return f"too_small: {p.width}x{p.height} < {fp.min_side}"
    return None


def aspect_ratio(p: Probe, fp: FilterParams) -> str | None:
    ratio = max(p.width, p.height) / max(1, min(p.width, p.height))
    if ratio > fp.max_aspect:
        return f"aspect: {ratio:.2f} > {fp.max_aspect:g}"
    return None


def near_blank(p: Probe, fp: FilterParams) -> str | None:
    std = float(p.thumb.reshape(-1, 3).astype(np.float64).std(axis=0).max())
    if std < fp.blank_std:
        return f"blank: std {std:.2f} < {fp.blank_std:g}"
    return None


def single_colour(p: Probe, fp: FilterParams) -> str | None:
    q = (p.thumb.reshape(-1, 3) >> 3).astype(np.int32)
    codes = (q[:, 0] << 10) | (q[:, 1] << 5) | q[:, 2]
    share = float(np.bincount(codes).max()) / len(codes)
    if share >= fp.single_colour:
        return f"single_colour: {share:.0%} of pixels one colour"
    return None


# Applied in order; the first stage that objects decides the reason (cheap checks first).
STAGES: tuple[tuple[str, Stage], ...] = (
    ("min_side", min_side),
    ("aspect", aspect_ratio),
    ("blank", near_blank),
    ("single_colour", single_colour),
)


def probe(im: PILImage) -> tuple[Probe, Any]:
    """Decode once: original size, a <= 64 px RGB thumbnail, and the reduced image for hashing."""
    from PIL import Image

    from curation.phash import reduced_rgb

    width, height = im.size
    rgb = reduced_rgb(im)
    thumb = rgb.copy()
    thumb.thumbnail((64, 64), Image.Resampling.BOX)
    return Probe(width, height, np.asarray(thumb, dtype=np.uint8)), rgb


@dataclass
class Result:
    sha256: str
    phash: int | None = None
    quality: str | None = None  # None = unchanged
    reason: str | None = None
    error: str | None = None  # an error that left the image unchecked
    store_error: bool = False
    store_down: bool = False  # the store did not answer at all: no other blob will do better


def analyse(
    data: bytes, sha256: str, want_phash: bool, want_filter: bool, fp: FilterParams
) -> Result:
    """Run the decode, the hash and the filter stages on one image's bytes."""
    from PIL import Image

    from curation.phash import gray_thumbnail, hash_gray

    res = Result(sha256)
    try:
        with Image.open(io.BytesIO(data)) as im:
            pr, rgb = probe(im)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        # Pillow names the BytesIO with its address: drop it so a reason is reproducible.
        msg = re.sub(r" <[^<>]* at 0x[0-9a-fA-F]+>", "", str(e))
        res.quality, res.reason = "rejected", f"unreadable: {type(e).__name__}: {msg}"[:500]
        return res
    stage = "phash"
    try:
        if want_phash:
            res.phash = hash_gray(gray_thumbnail(rgb))
        if want_filter:
            res.quality = "ok"
            for name, fn in STAGES:
                stage = name
                reason = fn(pr, fp)
                if reason:
                    res.quality, res.reason = "rejected", reason
                    break
    except Exception as e:  # a bug or an exotic image: leave it unchecked, report it
        res.quality = None
        res.phash = None
        res.error = f"{stage}: {type(e).__name__}: {e}"[:500]
    return res


# -- worker processes ---------------------------------------------------------------------------
_store: Any = None


def _init_worker(settings: Settings) -> None:
    global _store
    from imnet.core.blobstore import open_store

    _store = open_store(settings.resolved_blob_url(), settings)


def _fetch(store: FileStore | S3Store, sha256: str) -> tuple[bytes | None, Result | None]:
    from imnet.core.blobstore import BlobError, BlobStoreUnreachable

    try:
        return store.get(sha256), None
    except BlobStoreUnreachable as e:
        return None, Result(
            sha256, error=f"blob store: {e}"[:500], store_error=True, store_down=True
        )
    except BlobError as e:
        msg = str(e)
        if "missing" in msg or "NoSuchKey" in msg or "corrupt" in msg or "Not Found" in msg:
            return None, Result(sha256, quality="rejected", reason=f"unreadable: {msg}"[:500])
        return None, Result(sha256, error=f"blob store: {msg}"[:500], store_error=True)


def _work(task: tuple[str, bool, bool, FilterParams]) -> Result:
    sha, want_phash, want_filter, fp = task
    data, failed = _fetch(_store, sha)
    if failed is not None:
        return failed
    assert data is not None
    return analyse(data, sha, want_phash, want_filter, fp)


def _apply(
    app: App, results: Any, report: dict[str, Any], bar: Any = None, owner: str | None = None
) -> dict[str, Result]:
    """Store a batch of results in one transaction and count them into the report.

    Set-based: one cached UPDATE per shape of values, run as executemany over the batch. With an
    owner, a row is written (and its lease ended) only while that owner still holds it.
    """
    from sqlalchemy import bindparam, update

    from db.models import Image, phash_to_db

    done: dict[str, Result] = {}
    shapes: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    streak = report.setdefault("_store_streak", 0)
    for res in results:
        done[res.sha256] = res
        report["scanned"] += 1
        if bar is not None:
            bar.update(1)
        values: dict[str, Any] = {}
        if res.error:
            report["errors"].append(f"{res.sha256}: {res.error}")
            streak = streak + 1 if res.store_error else 0
            if res.store_down:
                raise RuntimeError(f"blob store unreachable, stopped; {res.error}")
            if streak >= MAX_STORE_ERRORS:
                raise RuntimeError(
                    f"blob store failing, stopped after {MAX_STORE_ERRORS} errors in a row; "
                    f"last: {res.error}"
                )
        else:
            streak = 0
            if res.phash is not None:
                values["phash"] = phash_to_db(res.phash)
                report["hashed"] += 1
            if res.quality is not None:
                values["quality"], values["quality_reason"] = res.quality, res.reason
                report[res.quality] += 1
                if res.reason:
                    code = res.reason.split(":", 1)[0]
                    by = report["rejected_by_reason"]
                    by[code] = by.get(code, 0) + 1
        # An unchecked image still has its lease ended, so that the next run retries it.
        if values or owner is not None:
            shapes.setdefault(tuple(values), []).append({"_sha": res.sha256, **values})
    report["_store_streak"] = streak
    t = Image.__table__
    sent = written = 0
    with app.engine.begin() as conn:
        for keys, params in shapes.items():
            cond = t.c.sha256 == bindparam("_sha")
            vals: dict[str, Any] = {k: bindparam(k) for k in keys}
            if owner is not None:
                cond = cond & (t.c.lease_owner == owner)
                vals.update(lease_owner=None, lease_until=None)
            written += conn.execute(update(t).where(cond).values(vals), params).rowcount or 0
            sent += len(params)
    if owner is not None and written < sent:
        # Leases that ran out and went to another process: that one writes the same results.
        report["lease_lost"] = report.get("lease_lost", 0) + sent - written
    return done


def _new_report() -> dict[str, Any]:
    return {
        "scanned": 0,
        "hashed": 0,
        "ok": 0,
        "rejected": 0,
        "rejected_by_reason": {},
        "errors": [],
    }


def scan_passes(want_phash: bool, want_filter: bool) -> list[tuple[Any, bool, bool]]:
    """(rows to do, hash them, filter them) per pass; each `where` matches a partial index."""
    from sqlalchemy import or_

    from db.models import Image

    passes: list[tuple[Any, bool, bool]] = []
    if want_filter:
        passes.append((Image.quality.is_(None), want_phash, True))
    if want_phash:
        # Left by an earlier filter-only run (with want_filter), or the whole job (without).
        rest = (
            Image.quality == "ok"
            if want_filter
            else or_(Image.quality.is_(None), Image.quality != "rejected")
        )
        passes.append((Image.phash.is_(None) & rest, True, False))
    return passes


def run_scan(
    app: App,
    want_phash: bool = True,
    want_filter: bool = True,
    batch: int = 512,
    lease_seconds: float | None = None,
) -> dict[str, Any]:
    """Hash and/or filter every image not done yet, in committed batches; returns counts.

    Any number of processes on any number of machines may run this at once on one database and
    blob store: each leases its batches (curation/workers.py ImageLeases), so they split the
    images with no overlap, and a killed process's rows are taken up by the next run.
    """
    from collections import deque

    from sqlalchemy import func, select
    from tqdm import tqdm

    from curation.workers import LEASE_SECONDS, ImageLeases, Mapper
    from db.models import Image

    fp = FilterParams.from_settings(app.settings)
    report = _new_report()
    passes = scan_passes(want_phash, want_filter)
    if not passes:
        return report
    leases = ImageLeases(app.engine, lease_seconds or LEASE_SECONDS)
    total = 0
    with app.engine.connect() as conn:
        for where, _, _ in passes:
            total += (
                conn.execute(select(func.count()).select_from(Image).where(where)).scalar() or 0
            )
    bar = tqdm(total=total, desc="curate scan", unit="img", disable=True if total < 100 else None)
    app.blobs  # noqa: B018 - an S3 endpoint that does not answer stops here, before any worker
    with Mapper(app.settings, _init_worker, total) as mapper:
        for where, wp, wf in passes:
            leases.free_dead_local(where)
            after = ""
            # Two batches in flight: the pool works on the next while this one is written.
            inflight: deque[Any] = deque()
            try:
                while True:
                    shas = leases.claim(where, after, batch)
                    if shas:
                        after = shas[-1]
                        tasks = [(sha, wp, wf, fp) for sha in shas]
                        inflight.append(mapper.map(_work, tasks, chunksize=8))
                    if inflight and (len(inflight) > 1 or not shas):
                        _apply(app, inflight.popleft(), report, bar, leases.owner)
                    if not shas and not inflight:
                        break
            except BaseException:
                leases.release(where)
                raise
    bar.close()
    report.pop("_store_streak", None)
    report["owner"] = leases.owner
    if report["errors"]:
        log.warning("%d images left unchecked (see the report's errors)", len(report["errors"]))
    return report


def hash_images(app: App, shas: list[str]) -> dict[str, tuple[int | None, str | None]]:
    """Compute and store the phash of the given images now: sha -> (db phash or None, reason)."""
    from curation.workers import Mapper
    from db.models import phash_to_db

    fp = FilterParams.from_settings(app.settings)
    report = _new_report()
    out: dict[str, tuple[int | None, str | None]] = {}
    with Mapper(app.settings, _init_worker, len(shas)) as mapper:
        for start in range(0, len(shas), 512):
            tasks = [(sha, True, False, fp) for sha in shas[start : start + 512]]
            for sha, res in _apply(app, mapper.map(_work, tasks, chunksize=8), report).items():
                if res.phash is not None:
                    out[sha] = (phash_to_db(res.phash), None)
                else:
                    out[sha] = (None, res.reason or res.error or "unhashed")
    return out
