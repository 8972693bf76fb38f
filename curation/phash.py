"""64-bit DCT perceptual hash (numpy + Pillow): signs of the 8x8 lowest DCT frequencies."""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from PIL.Image import Image

# The hash: decode, honour EXIF orientation, grey, BOX-resize to 32x32, 2-D DCT-II, keep the 8x8
# lowest frequencies (u = vertical, v = horizontal), bit (u, v) = coefficient > 0, packed MSB first
# at position 63 - (8u + v). The DC coefficient is taken after subtracting the mean, so its bit is
# always 0: 63 bits carry information. Thresholding at zero instead of at the median (imagehash's
# choice) is what makes mirroring cheap: a horizontal flip multiplies coefficient (u, v) by (-1)^v
# exactly, so the hash of the mirrored image is `h ^ FLIP_MASK` and no second hash is stored.
SIZE = 32
LOW = 8


def _dct_matrix(n: int) -> np.ndarray:
    k = np.arange(n)[:, None]
    i = np.arange(n)[None, :]
    return np.cos(np.pi * (2 * i + 1) * k / (2 * n))


_DCT = _dct_matrix(SIZE)[:LOW]  # only the rows we keep: (8, 32)
_WEIGHTS = np.array([1 << (63 - k) for k in range(64)], dtype=np.uint64)


def _mask(pred: Callable[[int, int], bool]) -> int:
    return sum(1 << (63 - (8 * u + v)) for u in range(LOW) for v in range(LOW) if pred(u, v))


FLIP_MASK = _mask(lambda u, v: v % 2 == 1)  # horizontal mirror
VFLIP_MASK = _mask(lambda u, v: u % 2 == 1)  # vertical mirror (not used by default)


def hash_gray(gray: np.ndarray) -> int:
    """Hash of a 32x32 grey array (any real dtype)."""
    g = np.asarray(gray, dtype=np.float64)
    if g.shape != (SIZE, SIZE):
        raise ValueError(f"expected a {SIZE}x{SIZE} array, got {g.shape}")
    g = g - g.mean()
    coeffs = _DCT @ g @ _DCT.T  # (8, 8): rows vertical frequency, columns horizontal
    # Tiny coefficients are numerical noise (e.g. a flat image); treat them as not positive.
    bits = (coeffs > 1e-6 * max(1.0, float(np.abs(coeffs).max()))).reshape(-1)
    return int(np.bitwise_or.reduce(np.where(bits, _WEIGHTS, np.uint64(0))))


def reduced_rgb(im: Image) -> Image:
    """Upright RGB image, JPEGs decoded at a reduced DCT scale (>= 64 px a side): the one decode
    path both the hash and the quality filters use, so a stored hash never depends on the caller."""
    from PIL import ImageOps

    if im.format == "JPEG":
        im.draft("RGB", (2 * SIZE, 2 * SIZE))
    im = ImageOps.exif_transpose(im)
    return im if im.mode == "RGB" else im.convert("RGB")


def gray_thumbnail(rgb: Image) -> np.ndarray:
    """The 32x32 grey array the hash is computed from."""
    from PIL import Image

    return np.asarray(rgb.convert("L").resize((SIZE, SIZE), Image.Resampling.BOX), dtype=np.float64)


def phash_image(im: Image) -> int:
    """Perceptual hash of an opened PIL image (the image object is not modified)."""
    return hash_gray(gray_thumbnail(reduced_rgb(im)))


def phash_bytes(data: bytes) -> int:
    """Perceptual hash of encoded image bytes; raises PIL/OSError errors if they do not decode."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as im:
        return phash_image(im)


def flipped(h: int) -> int:
    """The hash the horizontally mirrored image has."""
    return h ^ FLIP_MASK


def hamming(a: int, b: int) -> int:
    return (a ^ b).bit_count()
