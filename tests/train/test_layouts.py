"""Real ImageNet layouts found from the files: torchvision's prepared root, Kaggle's CLS-LOC,
WebDataset shards and imnet's own ilsvrc export with either val/ layout; every label checked."""

from __future__ import annotations

import json
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pytest

from train.layouts import ExportError, detect, load_samples
from train.synthetic import make_export, make_image

# Deliberately unsorted, so a reader numbering classes by creation or mapping order would differ.
WNIDS = ["n03000134", "n01440764", "n02102040", "n01443537"]


def _jpeg(path: Path, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(make_image(seed % 4, seed, 16))


def torchvision_tree(root: Path, missing_in_val: str) -> dict[str, str]:
    """train/<wnid>/, val/<wnid>/ as torchvision.datasets.ImageNet leaves them; one class has no
    val images. Returns path -> true wnid."""
    truth = {}
    for k, w in enumerate(WNIDS):
        for i in range(3):
            p = root / "train" / w / f"{w}_{i}.JPEG"
            _jpeg(p, 10 * k + i)
            truth[str(p)] = w
        if w != missing_in_val:
            for i in range(2):
                p = root / "val" / w / f"ILSVRC2012_val_{10 * k + i + 1:08d}.JPEG"
                _jpeg(p, 100 + 10 * k + i)
                truth[str(p)] = w
    return truth


def kaggle_tree(root: Path, mapping: list[str], missing_in_val: str) -> dict[str, str]:
    """ILSVRC/Data/CLS-LOC/{train/<wnid>/,val/} with LOC_val_solution.csv (rows out of order,
    several boxes each) and LOC_synset_mapping.txt in `mapping` order."""
    data = root / "ILSVRC" / "Data" / "CLS-LOC"
    truth: dict[str, str] = {}
    for k, w in enumerate(WNIDS):
        for i in range(3):
            p = data / "train" / w / f"{w}_{i}.JPEG"
            _jpeg(p, 10 * k + i)
            truth[str(p)] = w
    rows = []
    val_wnids = [w for w in WNIDS if w != missing_in_val] * 2
    for n, w in enumerate(val_wnids, 1):
        name = f"ILSVRC2012_val_{n:08d}"
        _jpeg(data / "val" / f"{name}.JPEG", 200 + n)
        truth[str(data / "val" / f"{name}.JPEG")] = w
        rows.append(f"{name},{w} 1 2 10 12 {w} 0 0 15 15")
    rows.reverse()
    (root / "LOC_val_solution.csv").write_text("ImageId,PredictionString\n" + "\n".join(rows))
    (root / "LOC_synset_mapping.txt").write_text("".join(f"{w} words of {w}\n" for w in mapping))
    (data / "test").mkdir()
    return truth


def _check(root: Path, split: str, truth: dict[str, str], classes: list[str]) -> int:
    samples, n = load_samples(root, "auto", split)
    assert n == len(classes)
    assert sorted(s.path for s in samples) == sorted(p for p in truth if f"/{split}/" in p)
    for s in samples:
        assert classes[s.label] == truth[s.path], s.path
    return len(samples)


def test_torchvision_root_numbers_classes_by_sorted_wnid_in_both_splits(tmp_path: Path) -> None:
    truth = torchvision_tree(tmp_path, missing_in_val=sorted(WNIDS)[0])
    assert detect(tmp_path).kind == "folders"
    classes = sorted(WNIDS)
    assert _check(tmp_path, "train", truth, classes) == 12
    # the first class has no val images: ImageFolder on val/ alone would shift every label by one
    assert _check(tmp_path, "val", truth, classes) == 6
    (tmp_path / "meta.bin").write_bytes(b"torchvision's cache")  # present in a prepared root
    assert _check(tmp_path, "val", truth, classes) == 6


def test_kaggle_cls_loc_follows_the_mapping_order(tmp_path: Path) -> None:
    mapping = [WNIDS[2], WNIDS[0], WNIDS[3], WNIDS[1]]  # not sorted: the file decides
    truth = kaggle_tree(tmp_path, mapping, missing_in_val=mapping[0])
    layout = detect(tmp_path)
    assert layout.kind == "kaggle"
    assert _check(tmp_path, "train", truth, mapping) == 12
    assert _check(tmp_path, "val", truth, mapping) == 6
    # pointed at ILSVRC/Data/CLS-LOC itself, the label files two levels up still count
    inner = tmp_path / "ILSVRC" / "Data" / "CLS-LOC"
    assert detect(inner).kind == "kaggle"
    val, _ = load_samples(inner, "auto", "val")
    assert [mapping[s.label] for s in val] == [truth[s.path] for s in val]


def test_kaggle_solution_naming_an_unknown_class_is_refused(tmp_path: Path) -> None:
    kaggle_tree(tmp_path, WNIDS, missing_in_val="")
    sol = tmp_path / "LOC_val_solution.csv"
    sol.write_text(sol.read_text().replace(WNIDS[1], "n09999999", 1))
    with pytest.raises(ExportError, match="n09999999.* not a known class"):
        load_samples(tmp_path, "auto", "val")


def test_webdataset_export_found_without_format(tmp_path: Path) -> None:
    root = make_export(tmp_path / "w", classes=3, train_per_class=2, val_per_class=2, size=24,
                       fmt="webdataset")  # fmt: skip
    classes = (root / "LOC_synset_mapping.txt").read_text().split("\n")
    classes = [ln.split()[0] for ln in classes if ln]
    assert detect(root).kind == "webdataset"
    for split, count in (("train", 6), ("val", 6)):
        samples, n = load_samples(root, "auto", split)
        assert n == 3 and len(samples) == count
        with tarfile.open(root / f"{split}-000000.tar") as tf:
            metas = [json.load(tf.extractfile(m)) for m in tf if m.name.endswith(".json")]
        assert [classes[s.label] for s in samples] == [m["wnid"] for m in metas]
    # found by its manifest alone: the shards' absence is named, not "no images"
    bare = tmp_path / "bare"
    bare.mkdir()
    member = {"path": "train-000000.tar", "member": "a.jpg", "split": "train"}
    (bare / "manifest.jsonl").write_text(json.dumps(member) + "\n")
    with pytest.raises(ExportError, match=r"no train-\*\.tar shards"):
        load_samples(bare, "auto", "train")


@pytest.fixture()
def export(tmp_path: Path) -> Path:
    return make_export(tmp_path / "e", classes=4, train_per_class=2, val_per_class=3, size=24)


def _manifest(root: Path) -> dict[str, int]:
    lines = (root / "manifest.jsonl").read_text().splitlines()
    return {str(root / m["path"]): m["class_index"] for m in map(json.loads, lines)}


def test_imnet_flat_val_from_the_csv_the_devkit_truth_or_meta_mat(export: Path) -> None:
    want = _manifest(export)

    def labels() -> list[tuple[str, int]]:
        val, n = load_samples(export, "auto", "val")
        assert n == 4 and len(val) == 12
        return [(s.path, s.label) for s in val]

    assert labels() == sorted((p, c) for p, c in want.items() if "/val/" in p)
    (export / "LOC_val_solution.csv").unlink()
    assert labels() == sorted((p, c) for p, c in want.items() if "/val/" in p)
    # the real devkit's ILSVRC2012_IDs do not follow wnid order: meta.mat says which is which
    from scipy.io import savemat

    wnids = [ln.split()[0] for ln in (export / "LOC_synset_mapping.txt").read_text().splitlines()]
    ids = [3, 1, 4, 2]  # ILSVRC2012_ID of class index 0..3
    rows = np.array([(ids[i], w, 0) for i, w in enumerate(wnids)],
                    dtype=[("ILSVRC2012_ID", "O"), ("WNID", "O"), ("num_children", "O")])  # fmt: skip
    savemat(export / "data" / "meta.mat", {"synsets": rows})
    gt = export / "data" / "ILSVRC2012_validation_ground_truth.txt"
    old = [int(x) - 1 for x in gt.read_text().split()]
    gt.write_text("".join(f"{ids[c]}\n" for c in old))
    assert labels() == sorted((p, c) for p, c in want.items() if "/val/" in p)
    gt.unlink()
    with pytest.raises(ExportError, match="flat but there is no LOC_val_solution.csv"):
        load_samples(export, "auto", "val")


def test_imnet_val_in_class_folders_keeps_the_mapping_order(export: Path) -> None:
    """The export's val/<wnid>/ option: labels from the folders, numbered by the mapping file,
    with one class left without val images."""
    want = _manifest(export)
    wnids = [ln.split()[0] for ln in (export / "LOC_synset_mapping.txt").read_text().splitlines()]
    moved: dict[str, int] = {}
    for path, c in list(want.items()):
        if "/val/" not in path:
            moved[path] = c
            continue
        if c == 0:
            Path(path).unlink()  # class 0 loses its val images
            continue
        dest = export / "val" / wnids[c] / Path(path).name
        dest.parent.mkdir(exist_ok=True)
        shutil.move(path, dest)
        moved[str(dest)] = c
    (export / "LOC_val_solution.csv").unlink()
    shutil.rmtree(export / "data")
    for split, count in (("train", 8), ("val", 9)):
        samples, n = load_samples(export, "auto", split)
        assert n == 4 and len(samples) == count
        assert all(moved[s.path] == s.label for s in samples)


def test_layout_errors_name_what_was_expected(tmp_path: Path) -> None:
    with pytest.raises(ExportError, match=r"no ImageNet layout found: expected train/<wnid>/"):
        load_samples(tmp_path, "auto", "train")
    with pytest.raises(ExportError, match="is not a directory"):
        load_samples(tmp_path / "nope", "auto", "train")
    torchvision_tree(tmp_path, missing_in_val="")
    (tmp_path / "LOC_synset_mapping.txt").write_text("".join(f"{w} x\n" for w in WNIDS[:3]))
    with pytest.raises(ExportError, match=f"class folder {WNIDS[3]} is not in"):
        load_samples(tmp_path, "auto", "train")
    (tmp_path / "LOC_synset_mapping.txt").unlink()
    _jpeg(tmp_path / "train" / "loose.JPEG", 1)
    with pytest.raises(ExportError, match="outside class folders"):
        load_samples(tmp_path, "auto", "train")
    with pytest.raises(ExportError, match="no train-"):
        load_samples(tmp_path, "webdataset", "train")
