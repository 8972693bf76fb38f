"""A fresh export opened, with no preparation, by the readers people use, each label compared
with manifest.jsonl: torchvision's ImageNet and ImageFolder and timm (folders and WebDataset
shards) in a separate venv holding the CUDA build of torch (torchvision's wheels need it), Hugging
Face's imagefolder loader and webdataset here."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from curation.classes import choose_classes
from curation.export import run_export
from imnet.core.app import App
from imnet.core.settings import Settings
from tests.curation.images import encode, smooth_image
from tests.dbrows import add_candidate, add_synset

ROOT = Path(__file__).resolve().parents[2]
VENV = ROOT / ".venv-export-readers"
# The pair that lies on this machine's disk (bench/curation.py uses it too), and timm with the
# webdataset package its shard reader needs.
PACKAGES = (
    "torch==2.14.1",
    "torchvision==0.29.1",
    "timm",
    "webdataset",
    "pillow",
    "numpy",
    "scipy",
)
CLASSES = ("n02085620", "n02085782", "n02123045", "n01440764")


def reader_python() -> Path:
    """The readers' venv, created on first use from the configured package index."""
    py = VENV / "bin" / "python"
    probe = [str(py), "-c", "import torchvision, timm, webdataset"]
    if py.exists() and subprocess.run(probe, capture_output=True).returncode == 0:
        return py
    subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    got = subprocess.run(
        [str(py), "-m", "pip", "install", "-q", *PACKAGES], capture_output=True, text=True
    )
    if got.returncode != 0 or subprocess.run(probe, capture_output=True).returncode != 0:
        pytest.fail(f"could not build {VENV} ({' '.join(PACKAGES)}): {got.stderr[-500:]}")
    return py


@pytest.fixture(scope="module")
def exports(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Four classes of uneven size (so a hash-only split would leave one short of val), exported
    as ILSVRC (folders and flat val), as a private ILSVRC export, and as WebDataset shards."""
    tmp = tmp_path_factory.mktemp("readers")
    settings = Settings(
        data_dir=str(tmp / "data"),
        database_url=f"sqlite:///{tmp / 'db.sqlite3'}",
        val_per_class=3,
        test_per_class=2,
        train_max_per_class=20,
        train_min_per_class=2,
        export_shard_maxcount=9,
    )
    app = App(settings)
    with app.Session.begin() as s:
        for ci, w in enumerate(CLASSES):
            add_synset(s, w, lemmas=[f"class_{ci}", f"alias_{ci}"])
            for k in range((8, 16, 11, 9)[ci]):
                im = smooth_image(7000 + 100 * ci + k, (60 + k, 50 + ci))
                add_candidate(s, app.blobs, w, encode(im, "JPEG", quality=90))
    choose_classes(app, "four", n=len(CLASSES))
    out = {
        "folders": tmp / "ilsvrc",
        "flat": tmp / "flat",
        "private": tmp / "private",
        "wds": tmp / "wds",
    }
    run_export(app, "four", "ilsvrc", out["folders"], resize=48, workers=1)
    run_export(app, "four", "ilsvrc", out["flat"], resize=48, workers=1, val_layout="flat")
    run_export(app, "four", "ilsvrc", out["private"], resize=48, workers=1, with_test_labels=True)
    run_export(app, "four", "webdataset", out["wds"], resize=48, workers=1)
    app.close()
    return out


def _manifest(root: Path) -> dict[str, dict[str, Any]]:
    lines = (root / "manifest.jsonl").read_text().splitlines()
    out = {}
    for e in map(json.loads, lines):
        if e.get("split") and "samples" not in e:  # images, not the shards
            out[f"{e['path']}#{e['member']}" if "member" in e else e["path"]] = e
    return out


def _check(root: Path, got: list[tuple[str, int, str]], split: str) -> None:
    """got: (path relative to root, label index, the reader's class wnid) per image."""
    manifest = {p: e for p, e in _manifest(root).items() if e["split"] == split}
    assert got, f"the reader found no {split} images"
    assert sorted(p for p, _, _ in got) == sorted(manifest), split
    for path, label, wnid in got:
        e = manifest[path]
        assert (label, wnid) == (e["class_index"], e["wnid"]), path
    assert len({w for _, _, w in got}) == len(CLASSES), f"{split} lacks a class"
    assert all(w is not None for _, _, w in got)


SIDE = r"""
import json, os, sys
root, what = sys.argv[1], sys.argv[2]
rel = lambda p: os.path.relpath(p, root)
out = {}
if what == "torchvision":
    from torchvision.datasets import ImageFolder, ImageNet
    for split in ("train", "val"):
        ds = ImageNet(root, split=split)
        out["imagenet_" + split] = [(rel(p), t, ds.wnids[t]) for p, t in ds.samples]
        out["imagenet_" + split + "_words"] = [list(c) for c in ds.classes]
        f = ImageFolder(os.path.join(root, split))
        out["folder_" + split] = [(rel(p), t, f.classes[t]) for p, t in f.samples]
    if os.path.isdir(os.path.join(root, "test")) and any(
        os.path.isdir(os.path.join(root, "test", d)) for d in os.listdir(os.path.join(root, "test"))
    ):
        f = ImageFolder(os.path.join(root, "test"))
        out["folder_test"] = [(rel(p), t, f.classes[t]) for p, t in f.samples]
elif what == "timm_folder":
    from timm.data import create_dataset
    for split in ("train", "validation"):
        ds = create_dataset("", root=root, split=split)
        names = {i: c for c, i in ds.reader.class_to_idx.items()}
        out[split] = [(rel(p), t, names[t]) for p, t in ds.reader.samples]
elif what == "timm_wds":
    from timm.data import create_dataset
    for split in ("train", "validation"):
        ds = create_dataset("wds/imnet", root=root, split=split, is_training=False)
        out[split] = [int(t) for _, t in ds]
json.dump(out, sys.stdout)
"""


def _side(root: Path, what: str) -> dict[str, Any]:
    py = reader_python()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    got = subprocess.run(
        [str(py), "-c", SIDE, str(root), what], capture_output=True, text=True, env=env, timeout=600
    )
    assert got.returncode == 0, got.stderr[-3000:]
    return json.loads(got.stdout)


@pytest.mark.slow
def test_torchvision_imagenet_and_imagefolder(exports: dict[str, Path]) -> None:
    root = exports["folders"]
    before = sorted(p.name for p in root.iterdir())
    res = _side(root, "torchvision")
    for split in ("train", "val"):
        _check(root, [tuple(x) for x in res[f"imagenet_{split}"]], split)  # type: ignore[misc]
        _check(root, [tuple(x) for x in res[f"folder_{split}"]], split)  # type: ignore[misc]
    assert res["imagenet_train_words"][0] == ["class 3", "alias 3"]  # meta.bin's words, by wnid
    assert sorted(p.name for p in root.iterdir()) == before, "the reader had to write files"
    # A private export's labelled test/ is a folder tree too.
    private = _side(exports["private"], "torchvision")
    _check(exports["private"], [tuple(x) for x in private["folder_test"]], "test")  # type: ignore[misc]


@pytest.mark.slow
def test_timm_on_folders(exports: dict[str, Path]) -> None:
    res = _side(exports["folders"], "timm_folder")
    _check(exports["folders"], [tuple(x) for x in res["train"]], "train")  # type: ignore[misc]
    _check(exports["folders"], [tuple(x) for x in res["validation"]], "val")  # type: ignore[misc]


@pytest.mark.slow
def test_timm_on_webdataset_shards(exports: dict[str, Path]) -> None:
    root = exports["wds"]
    res = _side(root, "timm_wds")
    manifest = list(_manifest(root).values())  # output order = shard order, member order
    for split, name in (("train", "train"), ("val", "validation")):
        want = [e["class_index"] for e in manifest if e["split"] == split]
        assert res[name] == want, split
    info = json.loads((root / "_info.json").read_text())
    assert info["splits"]["val"]["num_samples"] == len(res["validation"])


def test_huggingface_imagefolder(exports: dict[str, Path], tmp_path: Path) -> None:
    import datasets

    root = exports["folders"]
    ds = datasets.load_dataset("imagefolder", data_dir=str(root), cache_dir=str(tmp_path / "hf"))
    assert {"train", "validation"} <= set(ds)
    for name, split in (("train", "train"), ("validation", "val")):
        part = ds[name]
        names = part.features["label"].names
        # test/unlabelled/ (a public export) adds one name, after every wnid: no index shifts.
        assert names == [*sorted(CLASSES), "unlabelled"]
        plain = part.cast_column("image", datasets.Image(decode=False))
        got = [
            (os.path.relpath(row["image"]["path"], root), row["label"], names[row["label"]])
            for row in plain
        ]
        _check(root, got, split)


def test_webdataset_reader(exports: dict[str, Path]) -> None:
    import webdataset as wds

    root = exports["wds"]
    info = json.loads((root / "_info.json").read_text())
    for split in ("train", "val", "test"):
        shards = [str(root / f) for f in info["splits"][split]["filenames"]]
        got, count = [], 0
        for sample in wds.WebDataset(shards, shardshuffle=False, empty_check=False):
            count += 1
            path = f"{Path(sample['__url__']).name}#{sample['__key__']}.jpg"
            meta = json.loads(sample["json"])
            if split == "test":  # public export: no label anywhere
                assert "cls" not in sample and meta["wnid"] is None and meta["class_index"] is None
                continue
            got.append((path, int(sample["cls"]), meta["wnid"]))
        assert count == info["splits"][split]["num_samples"]
        if split != "test":
            _check(root, got, split)


def test_flat_val_layout_keeps_ilsvrc_files(exports: dict[str, Path]) -> None:
    root = exports["flat"]
    val = sorted(p.name for p in (root / "val").iterdir())
    assert val and all(n.startswith("ILSVRC2012_val_") and n.endswith(".JPEG") for n in val)
    truth = (root / "data/ILSVRC2012_validation_ground_truth.txt").read_text().split()
    manifest = _manifest(root)
    assert [int(t) - 1 for t in truth] == [manifest[f"val/{n}"]["class_index"] for n in val]
