"""Multi-index hashing against brute force, and near-duplicate recall on generated variants."""

from __future__ import annotations

import numpy as np
import pytest
from curation_rows import encode, photos, smooth_image, variants

from curation.neardup import MIHIndex, brute_force_pairs, choose_bands, cross_pairs, self_pairs
from curation.phash import FLIP_MASK, phash_bytes


def planted(n: int, seed: int) -> np.ndarray:
    """Random hashes where a third are copies of others with 0-9 bits flipped."""
    rng = np.random.default_rng(seed)
    h = rng.integers(0, 2**64 - 1, size=n, dtype=np.uint64, endpoint=True)
    for b in rng.integers(0, n, size=n // 3):
        x = int(h[rng.integers(0, n)])
        for bit in rng.choice(64, size=rng.integers(0, 10), replace=False):
            x ^= 1 << int(bit)
        h[b] = x
    return h


@pytest.mark.parametrize("radius", [0, 1, 3, 6, 10])
@pytest.mark.parametrize("bands", [None, 1, 2, 4])
def test_mih_self_join_equals_brute_force(radius: int, bands: int | None) -> None:
    if bands is not None and bands > radius + 1:
        pytest.skip("more bands than radius + 1 would break the pigeonhole guarantee")
    h = planted(1500, seed=radius * 7 + (bands or 0))
    if bands == 1 and radius > 3:
        h = h[:300]  # one 64-bit band enumerates every mask within the radius: keep it small
    got = self_pairs(h, radius, bands=bands)
    assert set(zip(got.q.tolist(), got.i.tolist(), strict=True)) == brute_force_pairs(h, radius)
    assert np.all(got.dist <= radius)
    assert np.array_equal(got.dist, np.bitwise_count(h[got.q] ^ h[got.i]))


def test_mih_cross_and_flip_equal_brute_force() -> None:
    rng = np.random.default_rng(5)
    index = planted(800, seed=11)
    queries = index[rng.integers(0, 800, size=300)].copy()
    queries[:100] ^= np.uint64(FLIP_MASK)  # mirrored copies
    queries[100:200] = rng.integers(0, 2**64 - 1, size=100, dtype=np.uint64, endpoint=True)
    r = 6
    plain = cross_pairs(index, queries, r)
    d = np.bitwise_count(queries[:, None] ^ index[None, :])
    want = {(int(a), int(b)) for a, b in zip(*np.nonzero(d <= r), strict=True)}
    assert set(zip(plain.q.tolist(), plain.i.tolist(), strict=True)) == want
    both = cross_pairs(index, queries, r, flip=True)
    dm = np.bitwise_count((queries ^ np.uint64(FLIP_MASK))[:, None] ^ index[None, :])
    want_f = {(int(a), int(b)) for a, b in zip(*np.nonzero((d <= r) | (dm <= r)), strict=True)}
    assert set(zip(both.q.tolist(), both.i.tolist(), strict=True)) == want_f
    assert len(want_f) > len(want)  # the mirrored copies were found only with flip


def test_band_choice_scales_with_size() -> None:
    assert choose_bands(100, 6) == 7  # small: exact-match bands (m = r + 1)
    assert choose_bands(2_000_000, 6) < 7  # large: fewer, longer bands with 1-bit probes
    idx = MIHIndex(planted(100, 1), 6, bands=3)
    assert idx.sub_radius == 2


def test_near_duplicate_recall_and_false_positives() -> None:
    """Variants of 18 real photos and 40 generated pictures; prints measured recall and FPR."""
    sources = photos() + [smooth_image(s, (160, 120)) for s in range(40)]
    hashes, origin, kind = [], [], []
    for k, im in enumerate(sources):
        hashes.append(phash_bytes(encode(im, "PNG")))
        origin.append(k)
        kind.append("original")
        for name, v in variants(im).items():
            data = v if isinstance(v, bytes) else encode(v, "PNG")
            hashes.append(phash_bytes(data))
            origin.append(k)
            kind.append(name)
    h = np.array(hashes, dtype=np.uint64)
    r = 6
    report = {}
    for flip in (False, True):
        pairs = self_pairs(h, r, flip=flip)
        found = set(zip(pairs.q.tolist(), pairs.i.tolist(), strict=True))
        by_kind: dict[str, list[bool]] = {}
        false_pos = 0
        for a in range(len(h)):
            for b in range(a + 1, len(h)):
                same = origin[a] == origin[b]
                if same and kind[a] == "original":
                    by_kind.setdefault(kind[b], []).append((a, b) in found)
                elif not same:
                    false_pos += (a, b) in found
        n_diff = sum(1 for a in range(len(h)) for b in range(a + 1, len(h)) if origin[a] != origin[b])
        recall = {k: float(np.mean(v)) for k, v in by_kind.items()}
        report[flip] = (recall, false_pos / n_diff)
        print(f"\nradius {r}, flip={flip}: recall per variant "
              + ", ".join(f"{k} {v:.3f}" for k, v in recall.items())
              + f"; false-positive rate {false_pos}/{n_diff} = {false_pos / n_diff:.5f}")
    plain, plain_fpr = report[False]
    for k in ("resized_50", "resized_75", "jpeg_q30", "jpeg_q60", "png", "crop_4pct"):
        assert plain[k] >= 0.9, (k, plain[k])
    assert plain["flipped"] <= 0.1, "mirror images must not match unless asked"
    assert report[True][0]["flipped"] >= 0.9
    assert plain_fpr <= 0.005 and report[True][1] <= 0.01
