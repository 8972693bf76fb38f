"""Deterministic, hash-based train/val/test splits that stay put when new images arrive."""

from __future__ import annotations

import hashlib
from collections import defaultdict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from imnet.core.settings import Settings

# How an image's split is decided: u = first 8 bytes of sha256("<seed>:<image sha256>") as an
# integer; v = u / 2^64 is uniform in [0, 1). The image's split bucket is val when
# v < V / (V + T + M), test when v < (V + T) / (V + T + M), else train, where V, T, M are
# val_per_class, test_per_class and train_max_per_class (the ILSVRC-2012 proportions by default:
# 50 : 100 : 1300). The bucket is a function of (seed, image) only, so adding images never moves an
# existing image to another split, with one exception below. Within each class and bucket, images
# are taken in order of u up to the quota (V val, T test, M train); images past a quota are left out
# of the export, never moved to another split.
# Stratified: every class gets exactly V val and T test images. A class whose val (test) bucket
# holds fewer than V (T) borrows the missing ones from its own train bucket, lowest u first (val
# before test); that is the one case where an image can move when images arrive: a borrowed image
# goes back to train once its class has enough of its own. A class that still falls short (fewer
# than V + T images) is reported in dropped_classes as too_few_val / too_few_test: the export
# refuses it, or leaves it out, but never exports it with a class missing from val or test (every
# folder-based reader would then number the classes of val differently from train).
# Train images that are near-duplicates of any kept val or test image (any class, mirrored too) are
# removed before the train quota is filled, as ILSVRC did. A class with fewer than
# train_min_per_class train images is left out entirely.

SPLITS = ("train", "val", "test")


def split_key(seed: int, sha256: str) -> int:
    """The image's position in the seeded hash order (unsigned 64-bit)."""
    return int.from_bytes(hashlib.sha256(f"{seed}:{sha256}".encode()).digest()[:8], "big")


@dataclass(frozen=True)
class SplitParams:
    seed: int = 0
    val_per_class: int = 50
    test_per_class: int = 100
    train_max_per_class: int = 1300
    train_min_per_class: int = 1
    radius: int = 6
    flip: bool = True

    @classmethod
    def from_settings(cls, s: Settings, seed: int | None = None) -> SplitParams:
        return cls(
            seed=s.split_seed if seed is None else seed,
            val_per_class=s.val_per_class,
            test_per_class=s.test_per_class,
            train_max_per_class=s.train_max_per_class,
            train_min_per_class=s.train_min_per_class,
            radius=s.phash_radius,
        )

    def bucket(self, u: int) -> str:
        total = self.val_per_class + self.test_per_class + self.train_max_per_class
        if total <= 0:
            raise ValueError("val_per_class + test_per_class + train_max_per_class must be > 0")
        # Integer thresholds: no float rounding can differ between machines.
        t_val = (self.val_per_class << 64) // total
        t_test = ((self.val_per_class + self.test_per_class) << 64) // total
        return "val" if u < t_val else "test" if u < t_test else "train"


@dataclass(frozen=True)
class Item:
    sha256: str
    wnid: str
    phash: int  # unsigned 64-bit


@dataclass
class SplitResult:
    """Chosen images per split, in output order, plus why everything else was left out."""

    train: list[Item] = field(default_factory=list)  # grouped by wnid, each group in u order
    val: list[Item] = field(default_factory=list)  # all classes mixed, in u order
    test: list[Item] = field(default_factory=list)
    dropped: dict[str, str] = field(default_factory=dict)  # sha256 -> reason
    dropped_classes: dict[str, str] = field(default_factory=dict)  # wnid -> reason

    def by_split(self) -> dict[str, list[Item]]:
        return {"train": self.train, "val": self.val, "test": self.test}


def assign_splits(items: list[Item], params: SplitParams) -> SplitResult:
    """Split items (one per image; an image belongs to one class) per the rules above."""
    from curation.neardup import cross_pairs

    res = SplitResult()
    keyed = sorted(
        ((split_key(params.seed, it.sha256), it) for it in items), key=lambda t: (t[0], t[1].sha256)
    )
    per: dict[tuple[str, str], list[tuple[int, Item]]] = defaultdict(list)
    for u, it in keyed:
        per[(it.wnid, params.bucket(u))].append((u, it))
    quota = {"val": params.val_per_class, "test": params.test_per_class}
    held: list[tuple[int, Item]] = []
    held_split: dict[str, str] = {}  # sha256 -> val | test (a borrowed image is not in its bucket)
    short: dict[str, str] = {}
    for wnid in sorted({w for w, _ in per}):
        train_b = per.get((wnid, "train"), [])
        taken = 0
        for split in ("val", "test"):
            members = per.get((wnid, split), [])
            held.extend(members[: quota[split]])
            held_split.update((it.sha256, split) for _, it in members[: quota[split]])
            for _, it in members[quota[split] :]:
                res.dropped[it.sha256] = f"{split}_quota: class {wnid} already has {quota[split]}"
            need = max(0, quota[split] - len(members))
            borrowed = train_b[taken : taken + need]
            taken += len(borrowed)
            held.extend(borrowed)
            held_split.update((it.sha256, split) for _, it in borrowed)
            have = min(len(members), quota[split]) + len(borrowed)
            if have < quota[split] and wnid not in short:
                short[wnid] = f"too_few_{split}: {have} < {quota[split]}"
        if taken:
            per[(wnid, "train")] = train_b[taken:]
    held = [(u, it) for u, it in held if it.wnid not in short]
    # Leakage: no train image may be a near-duplicate of any held-out image, whatever its class.
    train_cands = [(u, it) for (_, split), m in per.items() if split == "train" for u, it in m]
    if held and train_cands:
        pairs = cross_pairs(
            np.array([it.phash for _, it in held], dtype=np.uint64),
            np.array([it.phash for _, it in train_cands], dtype=np.uint64),
            params.radius,
            flip=params.flip,
        )
        for qi, ii, d in zip(pairs.q.tolist(), pairs.i.tolist(), pairs.dist.tolist(), strict=True):
            sha = train_cands[qi][1].sha256
            if sha not in res.dropped:
                other = held[ii][1]
                res.dropped[sha] = (
                    f"near_dup_of_heldout: {other.sha256} ({other.wnid}, distance {d})"
                )
    train: dict[str, list[tuple[int, Item]]] = defaultdict(list)
    for u, it in sorted(train_cands, key=lambda t: (t[0], t[1].sha256)):
        if it.sha256 in res.dropped:
            continue
        if len(train[it.wnid]) >= params.train_max_per_class:
            res.dropped[it.sha256] = (
                f"train_quota: class {it.wnid} already has {params.train_max_per_class}"
            )
            continue
        train[it.wnid].append((u, it))
    classes = sorted({it.wnid for it in items})
    keep = set()
    for w in classes:
        n_train = len(train.get(w, []))
        if w in short:
            res.dropped_classes[w] = short[w]
        elif n_train < params.train_min_per_class:
            res.dropped_classes[w] = f"too_few_train: {n_train} < {params.train_min_per_class}"
        else:
            keep.add(w)
    for w in sorted(keep):
        res.train.extend(it for _, it in train[w])
    for _u, it in sorted(held, key=lambda t: (t[0], t[1].sha256)):
        if it.wnid not in keep:
            continue
        (res.val if held_split[it.sha256] == "val" else res.test).append(it)
    for it in items:
        if it.wnid in res.dropped_classes and it.sha256 not in res.dropped:
            res.dropped[it.sha256] = f"class_dropped: {res.dropped_classes[it.wnid]}"
    return res
