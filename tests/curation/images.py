"""Small real images for the curation tests: skimage photos, tiles, smooth random fields, variants.

Database rows for them come from the one row factory, tests/dbrows.py.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np
from PIL import Image as PILImage

PHOTOS = (
    "astronaut", "brick", "camera", "cell", "chelsea", "clock", "coffee", "coins", "colorwheel",
    "grass", "gravel", "hubble_deep_field", "immunohistochemistry", "moon", "page", "rocket",
    "text", "retina",
)  # fmt: skip


def photo(name: str) -> PILImage.Image:
    """A real photograph bundled with scikit-image, as RGB."""
    import skimage.data

    arr = getattr(skimage.data, name)()
    if arr.ndim == 2:
        arr = np.stack([arr] * 3, axis=-1)
    return PILImage.fromarray(arr[..., :3].astype(np.uint8)).convert("RGB")


def photos(limit: int | None = None) -> list[PILImage.Image]:
    """Distinct real photos, at most 400 px a side (tests stay fast)."""
    out = []
    for name in PHOTOS[:limit]:
        im = photo(name)
        im.thumbnail((400, 400))
        out.append(im)
    return out


def smooth_image(seed: int, size: tuple[int, int] = (120, 96)) -> PILImage.Image:
    """A distinct generated picture: a random 12x16 colour field, bicubically enlarged."""
    rng = np.random.default_rng(seed)
    low = rng.integers(0, 256, size=(12, 16, 3), dtype=np.uint8)
    return PILImage.fromarray(low, "RGB").resize(size, PILImage.Resampling.BICUBIC)


def photo_tiles() -> list[PILImage.Image]:
    """The photos and their four quadrants: 90 distinct real pictures."""
    out = []
    for im in photos():
        w, h = im.size
        out.append(im)
        out += [
            im.crop((i * w // 2, j * h // 2, (i + 1) * w // 2, (j + 1) * h // 2))
            for i in range(2)
            for j in range(2)
        ]
    return out


def encode(im: PILImage.Image, fmt: str = "JPEG", **kw: Any) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **kw)
    return buf.getvalue()


# -- variants a near-duplicate detector should (or should not) match ---------------------------
def crop(im: PILImage.Image, frac: float) -> PILImage.Image:
    """Cut frac of the width and height off every side."""
    w, h = im.size
    cw, ch = max(1, round(w * frac)), max(1, round(h * frac))
    return im.crop((cw, ch, w - cw, h - ch))


def variants(im: PILImage.Image) -> dict[str, PILImage.Image | bytes]:
    w, h = im.size
    return {
        "resized_50": im.resize((w // 2, h // 2), PILImage.Resampling.LANCZOS),
        "resized_75": im.resize((w * 3 // 4, h * 3 // 4), PILImage.Resampling.BILINEAR),
        "jpeg_q30": encode(im, "JPEG", quality=30),
        "jpeg_q60": encode(im, "JPEG", quality=60),
        "png": encode(im, "PNG"),
        "crop_1pct": crop(im, 0.01),  # 2% of each dimension cut
        "crop_2pct": crop(im, 0.02),  # 4% cut: reported, beyond what radius 6 promises
        "flipped": im.transpose(PILImage.Transpose.FLIP_LEFT_RIGHT),
    }
