"""Multi-index hashing against brute force, and near-duplicate recall on generated variants."""

from __future__ import annotations

import numpy as np
import pytest

from curation.neardup import (
    MIHIndex,
    brute_force_pairs,
    choose_bands,
    cross_pairs,
    probe_count,
    self_pairs,
)
from curation.phash import FLIP_MASK, phash_bytes
from tests.curation.images import encode, photo_tiles, variants


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


# Every radius with the automatic band count and with fixed counts that keep the pigeonhole
# guarantee (bands <= radius + 1) and a probe count small enough for a test.
COMBOS = [
    (r, b)
    for r in (0, 1, 3, 6, 10)
    for b in (None, 1, 2, 4)
    if b is None or (b <= r + 1 and probe_count(b, r) <= 5000)
]


@pytest.mark.parametrize(("radius", "bands"), COMBOS)
def test_mih_self_join_equals_brute_force(radius: int, bands: int | None) -> None:
    h = planted(1500, seed=radius * 7 + (bands or 0))
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


def _measure(h: np.ndarray, origin: np.ndarray, kind: list[str], r: int, flip: bool):  # type: ignore[no-untyped-def]
    pairs = self_pairs(h, r, flip=flip)
    found = np.zeros((len(h), len(h)), dtype=bool)
    found[pairs.q, pairs.i] = True
    found |= found.T
    same = origin[:, None] == origin[None, :]
    upper = np.triu(np.ones_like(found), k=1)
    originals = np.array([k == "original" for k in kind])
    recall = {}
    for name in sorted(set(kind) - {"original"}):
        sel = np.array([k == name for k in kind])
        hits = found[np.ix_(originals, sel)] & same[np.ix_(originals, sel)]
        recall[name] = hits.sum() / same[np.ix_(originals, sel)].sum()
    diff = upper & ~same
    return recall, int((found & diff).sum()), int(diff.sum())


@pytest.mark.slow
def test_near_duplicate_recall_and_false_positives() -> None:
    """Variants of 90 real pictures (18 photos and their quadrants); prints recall and FPR."""
    hashes, origin, kind = [], [], []
    for k, im in enumerate(photo_tiles()):
        hashes.append(phash_bytes(encode(im, "PNG")))
        origin.append(k)
        kind.append("original")
        for name, v in variants(im).items():
            hashes.append(phash_bytes(v if isinstance(v, bytes) else encode(v, "PNG")))
            origin.append(k)
            kind.append(name)
    h = np.array(hashes, dtype=np.uint64)
    org = np.array(origin)
    results = {}
    for r, flip in ((6, False), (6, True), (10, False)):
        recall, fp, n_diff = _measure(h, org, kind, r, flip)
        results[(r, flip)] = (recall, fp / n_diff)
        print(
            f"\nradius {r}, flip={flip}: recall "
            + ", ".join(f"{k} {v:.3f}" for k, v in recall.items())
            + f"; false positives {fp}/{n_diff} = {fp / n_diff:.5f}"
        )
    plain, fpr = results[(6, False)]
    for k in ("resized_50", "resized_75", "jpeg_q30", "jpeg_q60", "png"):
        assert plain[k] >= 0.95, (k, plain[k])
    assert plain["crop_1pct"] >= 0.85
    assert plain["flipped"] <= 0.05, "mirror images must not match unless asked"
    assert results[(6, True)][0]["flipped"] >= 0.95
    assert results[(10, False)][0]["crop_2pct"] >= 0.85  # a larger radius buys crop tolerance
    assert fpr <= 0.001 and results[(6, True)][1] <= 0.002 and results[(10, False)][1] <= 0.002
