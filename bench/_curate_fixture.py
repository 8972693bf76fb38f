"""bench/curate_scale.py's generated collection: real JPEG blobs with crawl-like shares, direct row inserts."""

from __future__ import annotations

import io
import os
from typing import Any

import numpy as np

SYNSETS = 20


def kind_of(i: int) -> str:
    """Every block of 100 has the same mix, so any prefix has the stated shares."""
    r = i % 100
    if r < 75:
        return "original"
    if r < 85:
        return "near"
    if r < 90:
        return "exact"
    if r < 94:
        return "broken"
    return "low"


def source_of(i: int) -> int:
    """The original (same block, hence same synset) a near or exact duplicate copies."""
    r = i % 100
    return i - r + (r * 7) % 75


def _jpeg(im: Any, quality: int = 85) -> bytes:
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def _picture(i: int) -> Any:
    from PIL import Image

    rng = np.random.default_rng(1_000_003 * i + 17)
    w, h = int(rng.integers(200, 501)), int(rng.integers(200, 501))
    low = rng.integers(0, 256, size=(int(rng.integers(6, 17)), int(rng.integers(6, 17)), 3))
    im = Image.fromarray(low.astype(np.uint8), "RGB").resize((w, h), Image.Resampling.BICUBIC)
    # Grain, so the JPEGs weigh and decode like photos rather than flat gradients.
    grain = rng.integers(0, 24, size=(h, w, 3), dtype=np.uint8)
    arr = np.asarray(im, dtype=np.uint8)
    return Image.fromarray(arr - arr // 8 + grain, "RGB")  # <= 224 + 23: no overflow


def content(i: int) -> bytes | None:
    """The bytes of item i (None for an exact duplicate: it reuses its source's bytes)."""
    from PIL import Image

    kind = kind_of(i)
    if kind == "original":
        return _jpeg(_picture(i))
    if kind == "exact":
        return None
    if kind == "near":
        src = _picture(source_of(i))
        w, h = src.size
        how = i % 3
        if how == 0:
            return _jpeg(src.resize((w * 3 // 4, h * 3 // 4), Image.Resampling.BILINEAR))
        if how == 1:
            return _jpeg(src, quality=40)
        cw, ch = max(1, w // 50), max(1, h // 50)
        return _jpeg(src.crop((cw, ch, w - cw, h - ch)))
    if kind == "broken":
        data = _jpeg(_picture(i))
        return data[: len(data) * 2 // 5] if i % 2 else b"<html>not an image</html>" * 20
    r = i % 3
    if r == 0:
        return _jpeg(_picture(i).resize((48, 36)))
    if r == 1:
        flat = np.full((240, 320, 3), (i % 251, 140, 200), np.uint8)
        return _jpeg(Image.fromarray(flat))
    return _jpeg(_picture(i).resize((900, 120)))


def _size(data: bytes) -> tuple[int, int, str]:
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as im:
            return im.width, im.height, im.format or "?"
    except OSError:
        return 0, 0, "?"


def populate(n: int, db_url: str, blobs: Any) -> dict[str, int]:
    """Blobs through the store; synset, image, candidate and label rows by direct inserts."""
    from sqlalchemy import insert

    from db.models import Candidate, Image, Label, Synset
    from db.session import make_engine, upgrade

    upgrade(db_url)
    engine = make_engine(db_url)
    wnids = [f"n9{k:07d}" for k in range(SYNSETS)]
    shas: dict[int, str] = {}
    images: dict[str, dict[str, Any]] = {}
    cands, labels = [], []
    # Generating the pictures is the slow part of the setup: both cores, in item order.
    from concurrent.futures import ProcessPoolExecutor

    pool = ProcessPoolExecutor(os.cpu_count() or 1)
    for i, data in enumerate(pool.map(content, range(n), chunksize=64)):
        if data is None:
            sha = shas[source_of(i)]
        else:
            sha = blobs.put(data, sync=False)
            if sha not in images:
                w, h, fmt = _size(data)
                images[sha] = {
                    "sha256": sha,
                    "blob_key": f"{sha[:2]}/{sha[2:4]}/{sha}",
                    "width": w,
                    "height": h,
                    "format": fmt,
                    "bytes": len(data),
                }
        shas[i] = sha
        wnid = wnids[(i // 100) % SYNSETS]
        cands.append(
            {
                "id": i + 1,
                "wnid": wnid,
                "url": f"http://fixture.invalid/{wnid}/{i}.jpg",
                "source": "urllist",
                "status": "fetched",
                "image_sha256": sha,
                "attempts": 1,
            }
        )
        if i % 10 == 3:  # a tenth already labelled: the near-dup representative rule sees them
            labels.append({"candidate_id": i + 1, "wnid": wnid, "decision": "accept"})
    pool.shutdown()
    blobs.sync()
    with engine.begin() as conn:
        conn.execute(insert(Synset), [{"wnid": w, "lemmas": [w], "gloss": "bench"} for w in wnids])
        rows = list(images.values())
        for k in range(0, len(rows), 5000):
            conn.execute(insert(Image), rows[k : k + 5000])
        for k in range(0, len(cands), 5000):
            conn.execute(insert(Candidate), cands[k : k + 5000])
        if labels:
            conn.execute(insert(Label), labels)
    engine.dispose()
    return {"images": len(images), "candidates": len(cands), "labels": len(labels), "shas": rows}
