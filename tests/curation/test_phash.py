"""The perceptual hash: deterministic, robust to re-encoding, exact for mirroring, far for others."""

from __future__ import annotations

import numpy as np
from PIL import Image

from curation.phash import FLIP_MASK, flipped, hamming, hash_gray, phash_bytes
from tests.curation.images import encode, photo, photos


def test_hash_is_deterministic_and_64_bit() -> None:
    data = encode(photo("chelsea"), "PNG")
    h = phash_bytes(data)
    assert h == phash_bytes(data)
    assert 0 <= h < 1 << 64
    assert h.bit_count() > 8  # not degenerate


def test_mirror_is_a_fixed_xor() -> None:
    # A horizontal mirror negates the odd horizontal frequencies: the hash flips exactly FLIP_MASK.
    g = np.random.default_rng(1).normal(size=(32, 32))
    assert hash_gray(g[:, ::-1]) == hash_gray(g) ^ FLIP_MASK
    im = photo("coffee")
    h = phash_bytes(encode(im, "PNG"))
    hm = phash_bytes(encode(im.transpose(Image.Transpose.FLIP_LEFT_RIGHT), "PNG"))
    assert hamming(h, hm) > 10, "a mirror is a different picture for the plain hash"
    assert hamming(flipped(h), hm) <= 1, "resampling rounding may move at most one bit"


def test_different_photos_are_far_apart() -> None:
    hashes = [phash_bytes(encode(im, "PNG")) for im in photos()]
    dists = [hamming(a, b) for i, a in enumerate(hashes) for b in hashes[i + 1 :]]
    print(
        f"distances between {len(hashes)} different photos: min {min(dists)}, "
        f"mean {np.mean(dists):.1f}"
    )
    assert min(dists) > 6
