"""The ILSVRC-2012 layout: train/<wnid>/, flat val/ and test/, and the devkit files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from curation.export.base import ClassInfo, Sample, synset_mapping, write_file
from curation.export.devkit import meta_mat


class IlsvrcWriter:
    """Files under `root` as in ILSVRC2012_img_{train,val,test} plus devkit/Kaggle metadata.

    Sample names decide file names: train `<wnid>_<n>`, val `ILSVRC2012_val_<8 digits>`, test
    `ILSVRC2012_test_<8 digits>`; the val ground truth lines follow the val numbering.
    """

    def __init__(self, root: Path, classes: list[ClassInfo]) -> None:
        self.root = root
        self.classes = classes
        self.val: list[tuple[str, int, str, int, int]] = []  # name, class index, wnid, w, h
        self.train_counts = [0] * len(classes)

    def write(self, sample: Sample) -> list[dict[str, Any]]:
        if sample.split == "train":
            rel = f"train/{sample.wnid}/{sample.name}.JPEG"
            self.train_counts[sample.class_index] += 1
        else:
            rel = f"{sample.split}/{sample.name}.JPEG"
            if sample.split == "val":
                self.val.append(
                    (sample.name, sample.class_index, sample.wnid, sample.width, sample.height)
                )
        return [
            write_file(
                self.root,
                rel,
                sample.jpeg,
                split=sample.split,
                wnid=sample.wnid,
                class_index=sample.class_index,
                image_sha256=sample.image_sha256,
            )
        ]

    def close(self) -> list[dict[str, Any]]:
        val = sorted(self.val)
        # Kaggle's LOC_val_solution.csv: the box is the whole image (there are no boxes here).
        solution = "ImageId,PredictionString\n" + "".join(
            f"{name},{wnid} 0 0 {w - 1} {h - 1}\n" for name, _, wnid, w, h in val
        )
        truth = "".join(f"{idx + 1}\n" for _, idx, _, _, _ in val)
        return [
            write_file(self.root, "LOC_synset_mapping.txt", synset_mapping(self.classes)),
            write_file(self.root, "LOC_val_solution.csv", solution.encode()),
            write_file(self.root, "data/ILSVRC2012_validation_ground_truth.txt", truth.encode()),
            write_file(self.root, "data/meta.mat", meta_mat(self.classes, self.train_counts)),
        ]
