"""The ILSVRC-2012 layout: train/<wnid>/, val/<wnid>/ (or ILSVRC's flat val/), test/, the devkit
files, and torchvision's meta.bin so that `torchvision.datasets.ImageNet(root)` opens it as is."""

from __future__ import annotations

import gzip
import io
import tarfile
from pathlib import Path
from typing import Any

from curation.export.base import (
    ClassInfo,
    HashingFile,
    Sample,
    place_file,
    sample_meta,
    synset_mapping,
    write_file,
)
from curation.export.devkit import meta_mat

SOLUTION = "LOC_val_solution.csv"
TRUTH = "data/ILSVRC2012_validation_ground_truth.txt"
DEVKIT = "ILSVRC2012_devkit_t12"
META_BIN = "meta.bin"
UNLABELLED = "unlabelled"


class IlsvrcWriter:
    """Files under `root` as in ILSVRC2012_img_{train,val,test} plus devkit/Kaggle metadata.

    val_layout "folders" (default) puts val images under val/<wnid>/, as torchvision's ImageNet,
    ImageFolder, timm and Hugging Face's imagefolder read them, and test images under test/<wnid>/
    (private export) or test/unlabelled/; "flat" is ILSVRC's own flat val/ and test/ (val labels
    then only in the ground truth file and LOC_val_solution.csv).

    Sample names decide file names: train `<wnid>_<n>`, val `ILSVRC2012_val_<8 digits>`, test
    `ILSVRC2012_test_<8 digits>`; the val ground truth lines follow the val numbering, so val
    samples must come in name order: the two val files are written as they come (memory stays
    bounded by the number of classes, whatever the number of images).
    """

    def __init__(self, root: Path, classes: list[ClassInfo], val_layout: str = "folders") -> None:
        self.root = root
        self.classes = classes
        self.folders = val_layout == "folders"
        self.val_wnids: list[str] = []  # meta.bin's second half, bounded by the val quota
        self.train_counts = [0] * len(classes)
        self.dirs: set[str] = set()
        self.last_val = ""
        # Kaggle's LOC_val_solution.csv: the box is the whole image (there are no boxes here).
        self.solution = HashingFile(root / SOLUTION)
        self.solution.write(b"ImageId,PredictionString\n")
        self.truth = HashingFile(root / TRUTH)

    def write(self, sample: Sample) -> list[dict[str, Any]]:
        if sample.split == "train":
            folder = f"train/{sample.wnid}"
            self.train_counts[sample.class_index] += 1
        else:
            folder = sample.split
            if self.folders:
                # Every split at the same depth: Hugging Face's imagefolder infers labels only
                # then. Unlabelled test images get one folder whose name sorts after every wnid
                # (n...), so it shifts no class index in readers that pool the folder names.
                folder = f"{sample.split}/{sample.wnid if sample.labelled else UNLABELLED}"
            if sample.split == "val":
                if sample.name <= self.last_val:
                    raise ValueError(
                        f"val samples out of order: {sample.name} after {self.last_val}"
                    )
                self.last_val = sample.name
                w, h = sample.width, sample.height
                self.solution.write(f"{sample.name},{sample.wnid} 0 0 {w - 1} {h - 1}\n".encode())
                self.truth.write(f"{sample.class_index + 1}\n".encode())
                self.val_wnids.append(sample.wnid)
        rel = f"{folder}/{sample.name}.JPEG"
        meta = sample_meta(sample)
        if sample.source is None:
            return [write_file(self.root, rel, sample.jpeg, **meta)]
        if folder not in self.dirs:
            (self.root / folder).mkdir(parents=True, exist_ok=True)
            self.dirs.add(folder)
        place_file(sample.source, self.root / rel)
        return [{"path": rel, **meta}]

    def close(self) -> list[dict[str, Any]]:
        done = []
        for rel, f in ((SOLUTION, self.solution), (TRUTH, self.truth)):
            digest, size = f.close()
            done.append({"path": rel, "sha256": digest, "bytes": size})
        mat = meta_mat(self.classes, self.train_counts)
        truth = (self.root / TRUTH).read_bytes()  # one short line per val image
        return [
            write_file(self.root, "LOC_synset_mapping.txt", synset_mapping(self.classes)),
            *done,
            write_file(self.root, "data/meta.mat", mat),
            write_file(self.root, f"{DEVKIT}.tar.gz", devkit_archive(mat, truth)),
            write_file(self.root, META_BIN, meta_bin(self.classes, self.val_wnids)),
        ]


def devkit_archive(mat: bytes, truth: bytes) -> bytes:
    """ILSVRC2012_devkit_t12.tar.gz with the two files torchvision's parse_devkit_archive reads
    (its md5 check refuses any archive but the original, so meta.bin is what it loads; the
    archive is for tools that unpack the devkit themselves). mtime 0 everywhere: reproducible."""
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0, filename="") as gz:
        with tarfile.open(fileobj=gz, mode="w", format=tarfile.USTAR_FORMAT) as tar:
            for name, data in (("data/meta.mat", mat), (TRUTH, truth)):
                info = tarfile.TarInfo(f"{DEVKIT}/{name}")
                info.size, info.mtime, info.mode = len(data), 0, 0o644
                tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def meta_bin(classes: list[ClassInfo], val_wnids: list[str]) -> bytes:
    """torchvision's meta.bin, as its parse_devkit_archive writes it: torch.save of
    ({wnid: words}, [wnid of each val image in val numbering order])."""
    import torch

    buf = io.BytesIO()
    torch.save(({c.wnid: tuple(", ".join(c.words).split(", ")) for c in classes}, val_wnids), buf)
    return buf.getvalue()
