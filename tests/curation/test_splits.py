"""Hash-based splits: deterministic, quota-bound, stable as images arrive, no held-out leakage."""

from __future__ import annotations

import hashlib

import numpy as np

from curation.neardup import brute_force_pairs
from curation.phash import FLIP_MASK
from curation.splits import Item, SplitParams, assign_splits, split_key


def _items(n_per_class: dict[str, int], seed: int = 0) -> list[Item]:
    rng = np.random.default_rng(seed)
    out = []
    for w, n in n_per_class.items():
        for k in range(n):
            sha = hashlib.sha256(f"{seed}:{w}:{k}".encode()).hexdigest()
            out.append(
                Item(sha, w, int(rng.integers(0, 2**64 - 1, dtype=np.uint64, endpoint=True)))
            )
    return out


PARAMS = SplitParams(
    seed=3,
    val_per_class=5,
    test_per_class=10,
    train_max_per_class=60,
    train_min_per_class=2,
    radius=6,
)


def test_deterministic_and_seeded() -> None:
    items = _items({"n01": 80, "n02": 40, "n03": 1})
    a = assign_splits(items, PARAMS)
    b = assign_splits(list(reversed(items)), PARAMS)
    assert a.by_split() == b.by_split() and a.dropped == b.dropped
    c = assign_splits(items, SplitParams(**{**PARAMS.__dict__, "seed": 4}))
    assert [i.sha256 for i in c.val] != [i.sha256 for i in a.val]


def test_quotas_and_small_classes() -> None:
    items = _items({"n01": 400, "n02": 40, "n03": 1})
    r = assign_splits(items, PARAMS)
    for split, cap in (("train", 60), ("val", 5), ("test", 10)):
        per = {}
        for it in r.by_split()[split]:
            per[it.wnid] = per.get(it.wnid, 0) + 1
        assert max(per.values()) <= cap
    assert sum(1 for it in r.train if it.wnid == "n01") == 60
    assert sum(1 for it in r.val if it.wnid == "n01") == 5
    assert list(r.dropped_classes) == ["n03"]
    assert r.dropped_classes["n03"].startswith("too_few_val: ")  # 1 image: short of val first
    # Every image is either in exactly one split or dropped with a reason.
    placed = [it.sha256 for part in r.by_split().values() for it in part]
    assert len(placed) == len(set(placed))
    assert set(placed) | set(r.dropped) == {it.sha256 for it in items}
    assert not set(placed) & set(r.dropped)
    # Train is grouped by class; val/test mix classes in hash order.
    assert [it.wnid for it in r.train] == sorted(it.wnid for it in r.train)
    keys = [split_key(PARAMS.seed, it.sha256) for it in r.val]
    assert keys == sorted(keys)


def test_stable_when_images_arrive() -> None:
    old = _items({"n01": 50, "n02": 30}, seed=1)
    new = old + _items({"n01": 40, "n02": 20, "n04": 30}, seed=2)
    a = assign_splits(old, PARAMS)
    b = assign_splits(new, PARAMS)
    split_a = {it.sha256: s for s, part in a.by_split().items() for it in part}
    split_b = {it.sha256: s for s, part in b.by_split().items() for it in part}
    both = set(split_a) & set(split_b)
    assert len(both) > 0.8 * len(split_a)
    # Only an image borrowed from its train bucket to fill a short class's val/test may move (back
    # to train, or to the other held-out split) when its class gets images of its own.
    key = {s: PARAMS.bucket(split_key(PARAMS.seed, s)) for s in both}
    moved = [s for s in both if split_a[s] != split_b[s]]
    assert all(key[s] == "train" != split_a[s] for s in moved), moved
    assert all(split_a[s] == split_b[s] for s in both if split_a[s] == key[s]), "an image moved"


def test_every_class_gets_its_val_and_test_quota() -> None:
    # 17 images: the val/test buckets (5:10:60) hold about 3 and 2; the rest is borrowed from train.
    items = _items({"n01": 17, "n02": 200, "n03": 14}, seed=4)
    r = assign_splits(items, PARAMS)
    for w in ("n01", "n02"):
        assert sum(it.wnid == w for it in r.val) == PARAMS.val_per_class
        assert sum(it.wnid == w for it in r.test) == PARAMS.test_per_class
        assert sum(it.wnid == w for it in r.train) >= PARAMS.train_min_per_class
    # 14 < 5 + 10: n03 cannot have both, so it is reported, never exported lopsided.
    assert r.dropped_classes == {"n03": "too_few_test: 9 < 10"}
    assert not any(it.wnid == "n03" for part in r.by_split().values() for it in part)
    again = assign_splits(list(reversed(items)), PARAMS)
    assert again.by_split() == r.by_split()


def test_no_near_duplicate_of_heldout_in_train_across_classes() -> None:
    items = _items({"n01": 120, "n02": 120}, seed=5)
    base = assign_splits(items, PARAMS)
    rng = np.random.default_rng(9)
    extra = []
    # Near copies (a few bits off, some mirrored) of held-out images of n01, labelled n02.
    for k, it in enumerate(base.val + base.test):
        h = it.phash ^ (FLIP_MASK if k % 3 == 0 else 0)
        for bit in rng.choice(64, size=int(rng.integers(0, 5)), replace=False):
            h ^= 1 << int(bit)
        extra.append(Item(hashlib.sha256(f"copy{k}".encode()).hexdigest(), "n02", h))
    r = assign_splits(items + extra, PARAMS)
    held = r.val + r.test
    assert held
    hashes = np.array([it.phash for it in held] + [it.phash for it in r.train], dtype=np.uint64)
    mirrored = hashes.copy()
    mirrored[len(held) :] ^= np.uint64(FLIP_MASK)
    for h in (hashes, mirrored):
        bad = [(a, b) for a, b in brute_force_pairs(h, PARAMS.radius) if a < len(held) <= b]
        assert bad == [], "a train image is a near-duplicate of a val/test image"
    leaked = [reason for reason in r.dropped.values() if reason.startswith("near_dup_of_heldout")]
    assert (
        len(leaked)
        >= len([e for e in extra if PARAMS.bucket(split_key(3, e.sha256)) == "train"]) * 0.9
    )
    print(f"{len(leaked)} train images removed as near-duplicates of val/test images")
