"""ImageNet layouts on disk (imnet exports, torchvision's prepared root, Kaggle's CLS-LOC,
WebDataset shards): which one a root holds, its class order, and every image with its label."""

from __future__ import annotations

import csv
import json
import os
import tarfile
from dataclasses import dataclass
from pathlib import Path

from train.args import FORMATS

IMAGE_EXTS = (".jpeg", ".jpg", ".png")
MAPPING = "LOC_synset_mapping.txt"
SOLUTION = "LOC_val_solution.csv"
KAGGLE_IMAGES = Path("ILSVRC", "Data", "CLS-LOC")
# Devkit ground truth: imnet's export puts it under data/, the devkit tarball under
# ILSVRC2012_devkit_t12/data/; each line is the ILSVRC2012_ID of one val image, in name order.
DEVKIT_DIRS = ("data", "ILSVRC2012_devkit_t12/data")
GROUND_TRUTH = "ILSVRC2012_validation_ground_truth.txt"
EXPECTED = (
    "expected train/<wnid>/ and val/ (torchvision's prepared root or an imnet ilsvrc export), "
    f"{KAGGLE_IMAGES}/ with {SOLUTION} (Kaggle) or train-*.tar/val-*.tar shards (webdataset)"
)


class ExportError(ValueError):
    """The data at --data-path is missing files or malformed; the message says which."""


@dataclass
class Sample:
    """Where one image lives: a file path, or (tar path, byte offset, size)."""

    label: int
    path: str
    offset: int = -1
    size: int = -1

    def read(self) -> bytes:
        with open(self.path, "rb") as f:
            if self.offset < 0:
                return f.read()
            f.seek(self.offset)
            return f.read(self.size)

    def where(self) -> str:
        return self.path if self.offset < 0 else f"{self.path} at byte {self.offset}"


@dataclass(frozen=True)
class Layout:
    """kind: folders (train/<wnid>/, val/<wnid>/ or flat val/), kaggle or webdataset; `meta` holds
    the mapping and label files, `images` the split folders (or the shards)."""

    kind: str
    meta: Path
    images: Path


def _is_shard_set(root: Path) -> bool:
    if any(root.glob("train-*.tar")) or any(root.glob("val-*.tar")):
        return True
    manifest = root / "manifest.jsonl"
    if manifest.is_file():
        # imnet's webdataset manifest names the member inside a shard for every image
        with manifest.open() as f:
            first = f.readline()
        try:
            return "member" in json.loads(first)
        except ValueError:
            return False
    return False


def detect(root: str | Path, fmt: str = "auto") -> Layout:
    """The layout under `root`; `fmt` ilsvrc or webdataset narrows the search to that family."""
    root = Path(root)
    if not root.is_dir():
        raise ExportError(f"--data-path {root} is not a directory")
    if fmt not in FORMATS:
        raise ExportError(f"unknown format {fmt!r} ({', '.join(FORMATS)})")
    if fmt in ("auto", "webdataset") and _is_shard_set(root):
        return Layout("webdataset", root, root)
    if fmt == "webdataset":
        raise ExportError(f"{root}: no train-*.tar or val-*.tar shards (--format webdataset)")
    if (root / KAGGLE_IMAGES).is_dir():
        return Layout("kaggle", root, root / KAGGLE_IMAGES)
    if root.name == "CLS-LOC" and (root.parents[2] / MAPPING).is_file():
        return Layout("kaggle", root.parents[2], root)  # pointed at ILSVRC/Data/CLS-LOC itself
    if (root / "train").is_dir() or (root / "val").is_dir():
        return Layout("folders", root, root)
    raise ExportError(f"{root}: no ImageNet layout found: {EXPECTED}")


def _subdirs(d: Path) -> list[str]:
    if not d.is_dir():
        return []
    return sorted(e.name for e in os.scandir(d) if e.is_dir() and not e.name.startswith("."))


def _images(d: Path) -> list[Path]:
    return sorted(
        d / e.name
        for e in os.scandir(d)
        if e.is_file() and e.name.lower().endswith(IMAGE_EXTS) and not e.name.startswith(".")
    )


def read_mapping(path: Path) -> list[str]:
    """wnids in class-index order from LOC_synset_mapping.txt (`<wnid> <words>` per line)."""
    wnids = [ln.split()[0] for ln in path.read_text().splitlines() if ln.strip()]
    if not wnids:
        raise ExportError(f"{path} lists no classes")
    if len(set(wnids)) != len(wnids):
        raise ExportError(f"{path} lists a wnid twice")
    return wnids


def read_classes(root: Path) -> list[str]:
    """wnids in class-index order from root's LOC_synset_mapping.txt."""
    mapping = root / MAPPING
    if not mapping.exists():
        raise ExportError(f"{mapping} is missing")
    return read_mapping(mapping)


def class_order(layout: Layout) -> list[str]:
    """The mapping file's order when there is one, else the sorted wnid folders of train/ and
    val/ together: the same list for every split, so a class absent from one split never shifts
    the labels of the others (per-split ImageFolder numbering would)."""
    mapping = layout.meta / MAPPING
    found = sorted(set(_subdirs(layout.images / "train")) | set(_subdirs(layout.images / "val")))
    if not mapping.is_file():
        if not found:
            raise ExportError(f"{layout.images}: no class folders under train/ or val/, {EXPECTED}")
        return found
    wnids = read_mapping(mapping)
    known = set(wnids)
    stray = [w for w in found if w not in known]
    if stray:
        raise ExportError(f"{layout.images}: class folder {stray[0]} is not in {mapping}")
    return wnids


def _devkit_ids(meta: Path) -> tuple[list[int], dict[int, str] | None] | None:
    """(ILSVRC2012_ID per val image, ID -> wnid from meta.mat beside it, if any)."""
    for d in DEVKIT_DIRS:
        gt = meta / d / GROUND_TRUTH
        if not gt.is_file():
            continue
        try:
            ids = [int(s) for s in gt.read_text().split()]
        except ValueError:
            raise ExportError(f"{gt}: not a list of class ids") from None
        mat = gt.parent / "meta.mat"
        if not mat.is_file():
            return ids, None
        from scipy.io import loadmat

        try:
            rows = loadmat(str(mat), squeeze_me=True)["synsets"]
            return ids, {int(r["ILSVRC2012_ID"]): str(r["WNID"]) for r in rows}
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise ExportError(f"{mat}: unreadable devkit synsets ({e})") from None
    return None


def flat_val_labels(layout: Layout, index: dict[str, int]) -> dict[str, int]:
    """Labels of a flat val/ by image stem: Kaggle's LOC_val_solution.csv (first token of
    PredictionString is the wnid), else the devkit ground truth (IDs through meta.mat, or the
    mapping file's order when meta.mat is absent, as imnet writes them)."""
    sol = layout.meta / SOLUTION
    labels: dict[str, int] = {}
    if sol.is_file():
        with sol.open(newline="") as f:
            rows = csv.reader(f)
            header = next(rows, [])
            if header[:2] != ["ImageId", "PredictionString"]:
                raise ExportError(f"{sol}: header is not ImageId,PredictionString")
            for n, row in enumerate(rows, 2):
                if not row:
                    continue
                wnid = row[1].split()[0] if len(row) > 1 and row[1].split() else ""
                if wnid not in index:
                    raise ExportError(f"{sol} line {n}: class {wnid!r} is not a known class")
                labels[row[0]] = index[wnid]
        return labels
    got = _devkit_ids(layout.meta)
    if got is None:
        raise ExportError(
            f"{layout.images / 'val'} is flat but there is no {SOLUTION} nor "
            f"data/{GROUND_TRUTH} to label it (or use val/<wnid>/ folders)"
        )
    ids, id_to_wnid = got
    if id_to_wnid is None and not (layout.meta / MAPPING).is_file():
        raise ExportError(f"{layout.meta}: {GROUND_TRUTH} without meta.mat nor {MAPPING}")
    for i, cid in enumerate(ids):
        if id_to_wnid is None:
            label = cid - 1
            ok = 0 <= label < len(index)
        else:
            label = index.get(id_to_wnid.get(cid, ""), -1)
            ok = label >= 0
        if not ok:
            raise ExportError(f"{GROUND_TRUTH} line {i + 1}: class id {cid} is not a known class")
        # the ground truth numbers val images by name: ILSVRC2012_val_<line, 8 digits>
        labels[f"ILSVRC2012_val_{i + 1:08d}"] = label
    return labels


def folder_samples(layout: Layout, split: str) -> tuple[list[Sample], list[str]]:
    """One split of a folders or Kaggle layout, labels by the layout-wide class order."""
    wnids = class_order(layout)
    index = {w: i for i, w in enumerate(wnids)}
    d = layout.images / split
    samples: list[Sample] = []
    if split not in ("train", "val"):
        raise ExportError(f"unknown split {split!r}")
    if not d.is_dir():
        raise ExportError(f"{d} is missing: {EXPECTED}")
    for w in _subdirs(d):
        samples += [Sample(index[w], str(p)) for p in _images(d / w)]
    flat = _images(d)
    if flat and split == "train":
        raise ExportError(f"{d} holds images outside class folders: expected train/<wnid>/")
    if flat:
        if samples:
            raise ExportError(f"{d} mixes class folders and loose images")
        labels = flat_val_labels(layout, index)
        for p in flat:
            if p.stem not in labels:
                raise ExportError(f"{p.name} has no ground-truth label")
            samples.append(Sample(labels[p.stem], str(p)))
    if not samples:
        raise ExportError(f"{d}: the {split} split has no images")
    return samples, wnids


def webdataset_samples(root: Path, split: str) -> tuple[list[Sample], int]:
    """Index `<split>-*.tar` shards by byte offset, so they read as a map-style dataset."""
    shards = sorted(root.glob(f"{split}-*.tar"))
    if not shards:
        raise ExportError(f"{root}: no {split}-*.tar shards")
    samples: list[Sample] = []
    for shard in shards:
        found: dict[str, dict[str, tuple[int, int]]] = {}
        labels: dict[str, int] = {}
        try:
            with tarfile.open(shard) as tf:
                for m in tf:
                    if not m.isfile() or "." not in m.name:
                        continue
                    key, ext = m.name.split(".", 1)
                    found.setdefault(key, {})[ext.lower()] = (m.offset_data, m.size)
                    if ext == "cls":
                        f = tf.extractfile(m)
                        assert f is not None  # m.isfile(): a regular member has a reader
                        labels[key] = int(f.read().decode().strip())
        except (tarfile.TarError, ValueError, UnicodeDecodeError) as e:
            raise ExportError(f"{shard.name}: unreadable shard ({e})") from None
        for key in sorted(found):
            img = found[key].get("jpg") or found[key].get("jpeg")
            if img is None or key not in labels:
                raise ExportError(f"{shard.name}: sample {key} lacks .jpg or .cls")
            samples.append(Sample(labels[key], str(shard), img[0], img[1]))
    if not samples:
        raise ExportError(f"{root}: the {split} shards hold no samples")
    num_classes = max(s.label for s in samples) + 1
    if (root / MAPPING).exists():
        num_classes = max(num_classes, len(read_classes(root)))
    return samples, num_classes


def load_samples(root: str | Path, fmt: str, split: str) -> tuple[list[Sample], int]:
    """(samples, number of classes) for a split of the data at `root`; `fmt` auto detects the
    layout, ilsvrc means any folder layout, webdataset the shards."""
    layout = detect(root, fmt)
    if layout.kind == "webdataset":
        samples, n = webdataset_samples(layout.images, split)
    else:
        samples, wnids = folder_samples(layout, split)
        n = len(wnids)
    bad = [s.label for s in samples if not 0 <= s.label < n]
    if bad:
        raise ExportError(f"{root}: {split} label {bad[0]} outside 0..{n - 1}")
    return samples, n
