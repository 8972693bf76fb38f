"""The ILSVRC-2012 layout: train/<wnid>/, flat val/ and test/, and the devkit files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from curation.export.base import (
    ClassInfo,
    HashingFile,
    Sample,
    place_file,
    synset_mapping,
    write_file,
)
from curation.export.devkit import meta_mat

SOLUTION = "LOC_val_solution.csv"
TRUTH = "data/ILSVRC2012_validation_ground_truth.txt"


class IlsvrcWriter:
    """Files under `root` as in ILSVRC2012_img_{train,val,test} plus devkit/Kaggle metadata.

    Sample names decide file names: train `<wnid>_<n>`, val `ILSVRC2012_val_<8 digits>`, test
    `ILSVRC2012_test_<8 digits>`; the val ground truth lines follow the val numbering, so val
    samples must come in name order: the two val files are written as they come (memory stays
    bounded by the number of classes, whatever the number of images).
    """

    def __init__(self, root: Path, classes: list[ClassInfo]) -> None:
        self.root = root
        self.classes = classes
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
            if sample.split == "val":
                if sample.name <= self.last_val:
                    raise ValueError(
                        f"val samples out of order: {sample.name} after {self.last_val}"
                    )
                self.last_val = sample.name
                w, h = sample.width, sample.height
                self.solution.write(f"{sample.name},{sample.wnid} 0 0 {w - 1} {h - 1}\n".encode())
                self.truth.write(f"{sample.class_index + 1}\n".encode())
        rel = f"{folder}/{sample.name}.JPEG"
        meta = {
            "split": sample.split,
            "wnid": sample.wnid,
            "class_index": sample.class_index,
            "image_sha256": sample.image_sha256,
        }
        if sample.source is None:
            return [write_file(self.root, rel, sample.jpeg, **meta)]
        if folder not in self.dirs:
            (self.root / folder).mkdir(parents=True, exist_ok=True)
            self.dirs.add(folder)
        place_file(sample.source, self.root / rel)
        return [{"path": rel, "sha256": sample.jpeg_sha256(), "bytes": sample.jpeg_bytes(), **meta}]

    def close(self) -> list[dict[str, Any]]:
        done = []
        for rel, f in ((SOLUTION, self.solution), (TRUTH, self.truth)):
            digest, size = f.close()
            done.append({"path": rel, "sha256": digest, "bytes": size})
        return [
            write_file(self.root, "LOC_synset_mapping.txt", synset_mapping(self.classes)),
            *done,
            write_file(self.root, "data/meta.mat", meta_mat(self.classes, self.train_counts)),
        ]
