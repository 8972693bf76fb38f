"""Exports read back independently: a directory walk against the devkit files and the manifest,
the webdataset library over the shards, and byte-identical reruns."""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage
from sqlalchemy import func, select

from curation.classes import choose_classes
from curation.export import run_export
from curation.neardup import brute_force_pairs
from curation.phash import FLIP_MASK
from db.models import Export, ExportItem, Image, phash_from_db
from tests.curation.images import encode, photos, smooth_image
from tests.dbrows import add_candidate, add_synset

CHIHUAHUA, SPANIEL, TABBY = "n02085620", "n02085782", "n02123045"
CLASSES = (CHIHUAHUA, SPANIEL, TABBY)


@pytest.fixture
def small_app(app):  # type: ignore[no-untyped-def]
    """A database with three classes of accepted images, shared content and near copies."""
    app.settings.val_per_class = 3
    app.settings.test_per_class = 3
    app.settings.train_max_per_class = 14
    app.settings.train_min_per_class = 2
    real = photos(8)
    with app.Session.begin() as s:
        for w in CLASSES:
            add_synset(s, w, lemmas=[w.replace("n0", "cls_")])
        seed = 0
        for ci, w in enumerate(CLASSES):
            for k in range(20):
                seed += 1
                im = smooth_image(seed, (100 + 7 * k, 90 + 3 * ci))
                data = encode(im, "JPEG", quality=92) if k % 2 else encode(im, "PNG")
                add_candidate(s, app.blobs, w, data, posterior=0.99 + k / 10000)
            # Real photos, and near copies of them filed under the next class (cross-class).
            for k in range(2):
                im = real[2 * ci + k]
                add_candidate(s, app.blobs, w, encode(im, "JPEG", quality=90))
                nxt = CLASSES[(ci + 1) % 3]
                add_candidate(
                    s, app.blobs, nxt, encode(im.resize((im.width // 2, im.height // 2)), "PNG")
                )
                add_candidate(s, app.blobs, nxt, encode(im.transpose(0), "JPEG", quality=70))
        # The same content accepted in two classes: it must be exported once, under TABBY
        # (higher posterior), and an undecided / rejected label never counts.
        shared = encode(photos(9)[8], "JPEG", quality=88)
        add_candidate(s, app.blobs, CHIHUAHUA, shared, posterior=0.995)
        add_candidate(s, app.blobs, TABBY, shared, posterior=0.9995)
        app.shared_sha = hashlib.sha256(shared).hexdigest()
        add_candidate(s, app.blobs, SPANIEL, encode(smooth_image(999), "PNG"), decision="reject")
        add_candidate(s, app.blobs, SPANIEL, encode(smooth_image(998), "PNG"), decision="undecided")
    choose_classes(app, "three", n=3)
    return app


def _tree(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def _manifest(root: Path) -> list[dict]:
    return [json.loads(line) for line in (root / "manifest.jsonl").read_text().splitlines()]


def _check_sha256sums(root: Path) -> None:
    listed = {}
    for line in (root / "SHA256SUMS").read_text().splitlines():
        digest, rel = line.split("  ", 1)
        listed[rel] = digest
    on_disk = {rel for rel in _tree(root) if rel != "SHA256SUMS"}
    assert set(listed) == on_disk
    for rel, digest in listed.items():
        assert hashlib.sha256((root / rel).read_bytes()).hexdigest() == digest, rel


def _assert_no_heldout_near_dups(app, entries: list[dict]) -> None:  # type: ignore[no-untyped-def]
    with app.Session() as s:
        ph = {
            sha: phash_from_db(v)
            for sha, v in s.execute(
                select(Image.sha256, Image.phash).where(Image.phash.is_not(None))
            )
        }
    held = [ph[e["source_sha256"]] for e in entries if e.get("split") in ("val", "test")]
    train = [ph[e["source_sha256"]] for e in entries if e.get("split") == "train"]
    assert held and train
    for mirror in (0, FLIP_MASK):
        h = np.array(held + [t ^ mirror for t in train], dtype=np.uint64)
        bad = [
            (a, b) for a, b in brute_force_pairs(h, app.settings.phash_radius) if a < len(held) <= b
        ]
        assert bad == [], "a near-duplicate of a val/test image is in train"


@pytest.mark.slow
def test_ilsvrc_export_reads_back_and_is_reproducible(small_app, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    app = small_app
    blobs_before = {sha: app.blobs.get(sha) for sha in app.blobs.iter()}
    a = run_export(app, "three", "ilsvrc", tmp_path / "a", resize=64, quality=85, seed=1)
    b = run_export(
        app, "three", "ilsvrc", tmp_path / "b", resize=64, quality=85, seed=1, name="again"
    )
    print(a)
    tree = _tree(tmp_path / "a")
    assert tree == _tree(tmp_path / "b"), "two exports of the same database differ"
    assert a["manifest_sha256"] == b["manifest_sha256"]
    root = tmp_path / "a"
    _check_sha256sums(root)

    # Plain directory walk, checked against the manifest.
    entries = _manifest(root)
    images = [e for e in entries if e.get("split")]
    assert {e["path"] for e in images} == {
        rel for rel in tree if rel.split("/")[0] in ("train", "val", "test")
    }
    wnids = sorted({e["wnid"] for e in images if e["wnid"]})
    assert wnids == sorted(CLASSES)
    # A public export: test images carry no class, nowhere.
    assert all(
        e["wnid"] is None and e["class_index"] is None for e in images if e["split"] == "test"
    )
    assert all(e["wnid"] for e in images if e["split"] != "test")
    assert "worker" not in (root / "manifest.jsonl").read_text()
    mapping = (root / "LOC_synset_mapping.txt").read_text().splitlines()
    assert [line.split(" ", 1)[0] for line in mapping] == wnids
    assert mapping[0] == f"{CHIHUAHUA} cls 2085620"  # lemma underscores become spaces
    for e in images:
        assert hashlib.sha256(tree[e["path"]]).hexdigest() == e["sha256"]
        assert e["split"] == "test" or e["class_index"] == wnids.index(e["wnid"])
        if e["split"] == "train":
            assert e["path"].startswith(f"train/{e['wnid']}/{e['wnid']}_") and e["path"].endswith(
                ".JPEG"
            )
        with PILImage.open(io.BytesIO(tree[e["path"]])) as im:
            assert im.format == "JPEG" and min(im.size) == 64
    val = sorted((e for e in images if e["split"] == "val"), key=lambda e: e["path"][-13:])
    assert [e["path"] for e in val] == [
        f"val/{e['wnid']}/ILSVRC2012_val_{k:08d}.JPEG" for k, e in enumerate(val, 1)
    ]
    truth = (root / "data/ILSVRC2012_validation_ground_truth.txt").read_text().split()
    assert [int(t) for t in truth] == [e["class_index"] + 1 for e in val]
    solution = (root / "LOC_val_solution.csv").read_text().splitlines()
    assert solution[0] == "ImageId,PredictionString"
    assert [ln.split(",")[1].split()[0] for ln in solution[1:]] == [e["wnid"] for e in val]
    test = [e for e in images if e["split"] == "test"]
    assert all(e["path"].startswith("test/unlabelled/ILSVRC2012_test_") for e in test)
    counts = {p: sum(e["split"] == p for e in images) for p in ("train", "val", "test")}
    assert counts == a["counts"] and counts["val"] > 0 and counts["test"] > 0
    for w in wnids:
        assert sum(e["wnid"] == w and e["split"] == "train" for e in images) <= 14
        assert sum(e["wnid"] == w and e["split"] == "val" for e in images) <= 3

    # meta.mat read the way torchvision's ImageNet does (leaves = num_children == 0).
    from scipy.io import loadmat

    meta = loadmat(root / "data/meta.mat", squeeze_me=True)["synsets"]
    rows = list(meta)
    leaves = [r for r in rows if r[4] == 0]
    assert [(int(r[0]), str(r[1])) for r in leaves] == [(i + 1, w) for i, w in enumerate(wnids)]
    by_wnid = {str(r[1]): r for r in rows}
    toy = by_wnid["n02085374"]  # toy dog: the two breeds' parent
    assert sorted(np.atleast_1d(toy[5]).tolist()) == [1, 2]
    # wordnet_height is the FULL WordNet's (toy spaniel's breeds lie below toy dog), not 1.
    from nltk.corpus import wordnet as wn

    def full_height(syn) -> int:  # type: ignore[no-untyped-def]
        kids = syn.hyponyms() + syn.instance_hyponyms()
        return 1 + max((full_height(k) for k in kids), default=-1)

    for wnid in ("n02085374", CHIHUAHUA, TABBY):
        syn = wn.synset_from_pos_and_offset("n", int(wnid[1:]))
        assert int(by_wnid[wnid][6]) == full_height(syn), wnid
    assert int(toy[6]) == 3  # toy dog > toy spaniel > English toy spaniel > Blenheim spaniel
    assert [f for f in meta.dtype.names] == [
        "ILSVRC2012_ID", "WNID", "words", "gloss", "num_children", "children",
        "wordnet_height", "num_train_images",
    ]  # fmt: skip
    assert int(toy[7]) == counts_train(images, CHIHUAHUA) + counts_train(images, SPANIEL)
    assert int(by_wnid[TABBY][7]) == counts_train(images, TABBY)

    # Dedup rule 3: the shared photo appears once, under TABBY; no near copy of val/test in train.
    shas = [e["source_sha256"] for e in images]
    assert len(shas) == len(set(shas))
    assert [e["wnid"] for e in images if e["source_sha256"] == app.shared_sha] in ([TABBY], [])
    assert app.shared_sha not in {e["source_sha256"] for e in images if e["wnid"] == CHIHUAHUA}
    _assert_no_heldout_near_dups(app, images)
    assert a["dropped_images"].get("near_dup_of_heldout", 0) >= 1

    # The database records the export; the originals were only read.
    with app.Session() as s:
        exp = s.scalar(select(Export).where(Export.name == a["name"]))
        assert exp.manifest_sha256 == a["manifest_sha256"] and exp.format == "ilsvrc"
        n_items = s.scalar(
            select(func.count()).select_from(ExportItem).where(ExportItem.export_id == exp.id)
        )
        assert n_items == len(images)
    assert {sha: app.blobs.get(sha) for sha in app.blobs.iter()} == blobs_before


def counts_train(images: list[dict], wnid: str) -> int:
    return sum(e["wnid"] == wnid and e["split"] == "train" for e in images)


def test_webdataset_shards_read_back_with_webdataset(small_app, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    import webdataset as wds

    app = small_app
    app.settings.export_shard_maxcount = 7  # force several shards per split
    rep = run_export(app, "three", "webdataset", tmp_path / "w", resize=0, seed=0)
    again = run_export(app, "three", "webdataset", tmp_path / "w2", resize=0, seed=0)
    assert _tree(tmp_path / "w") == _tree(tmp_path / "w2")
    root = tmp_path / "w"
    _check_sha256sums(root)
    entries = _manifest(root)
    samples = {(e["path"], e["member"]): e for e in entries if "member" in e}
    shards = sorted(p.name for p in root.glob("*.tar"))
    assert "train-000001.tar" in shards and "val-000000.tar" in shards
    assert rep["manifest_sha256"] == again["manifest_sha256"]
    seen = 0
    for shard in shards:
        ds = wds.WebDataset(str(root / shard), shardshuffle=False)
        for sample in ds:
            seen += 1
            e = samples[(shard, sample["__key__"] + ".jpg")]
            assert hashlib.sha256(sample["jpg"]).hexdigest() == e["sha256"]
            meta = json.loads(sample["json"])
            if e["split"] == "test":  # public export: no class
                assert "cls" not in sample and meta["wnid"] is None
            else:
                assert int(sample["cls"].decode()) == e["class_index"]
            # One meaning per name: sha256 = these bytes, source_sha256 = the original.
            assert meta["wnid"] == e["wnid"] and meta["source_sha256"] == e["source_sha256"]
            assert meta["sha256"] == e["sha256"]
            assert meta["url"].startswith("http://127.0.0.1/")
            with PILImage.open(io.BytesIO(sample["jpg"])) as im:
                assert (im.width, im.height) == (meta["width"], meta["height"])
            assert shard.startswith(e["split"] + "-")
    assert seen == len(samples) == sum(rep["counts"].values())
    _assert_no_heldout_near_dups(app, list(samples.values()))


def test_splits_stay_put_when_images_arrive(small_app, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    app = small_app
    app.settings.train_max_per_class = 1000  # no train quota pressure
    app.settings.val_per_class = app.settings.test_per_class = 2
    first = run_export(app, "three", "ilsvrc", tmp_path / "one", seed=7)
    with app.Session.begin() as s:
        for ci, w in enumerate(CLASSES):
            for k in range(15):
                add_candidate(s, app.blobs, w, encode(smooth_image(5000 + 100 * ci + k), "PNG"))
    second = run_export(app, "three", "ilsvrc", tmp_path / "two", seed=7)
    split_of = [
        {e["source_sha256"]: e["split"] for e in _manifest(tmp_path / d) if e.get("split")}
        for d in ("one", "two")
    ]
    from curation.splits import SplitParams, split_key

    params = SplitParams.from_settings(app.settings, seed=7)
    common = set(split_of[0]) & set(split_of[1])
    bucket = {sha: params.bucket(split_key(7, sha)) for sha in common}
    # Train images stay; an image moves only if it was borrowed from its class's train bucket to
    # fill val/test (stratified quotas), and then only back to train or to the other held split.
    assert {sha for sha, p in split_of[0].items() if p == "train"} <= set(split_of[1])
    moved = [sha for sha in common if split_of[0][sha] != split_of[1][sha]]
    assert all(bucket[sha] == "train" != split_of[0][sha] for sha in moved), moved
    for rep in (first, second):
        assert rep["counts"]["val"] == rep["counts"]["test"] == 2 * 3  # every class, exactly
    assert second["counts"]["train"] > first["counts"]["train"]


def test_shards_roll_over_by_size(tmp_path: Path) -> None:
    import tarfile

    from curation.export.base import ClassInfo, Sample
    from curation.export.webdataset import ShardWriter

    # One sample takes 4,608 tar bytes (2,048-byte jpg, cls, json, three headers): two fit 10,000.
    w = ShardWriter(tmp_path, [ClassInfo(0, "n01", ["a"], "")], maxcount=100, maxsize=10_000)
    payload = bytes(range(256)) * 8
    entries = []
    for k in range(5):
        entries += w.write(Sample("train", f"n01_{k + 1}", "n01", 0, "0" * 64, "", payload, 1, 1))
    entries += w.close()
    shards = [(e["path"], e["samples"]) for e in entries if "samples" in e]
    assert shards == [("train-000000.tar", 2), ("train-000001.tar", 2), ("train-000002.tar", 1)]
    with tarfile.open(tmp_path / "train-000000.tar") as tf:
        members = tf.getmembers()
    assert [m.name for m in members] == [
        "n01_1.jpg",
        "n01_1.cls",
        "n01_1.json",
        "n01_2.jpg",
        "n01_2.cls",
        "n01_2.json",
    ]
    assert all(m.mtime == 0 and m.uid == 0 and m.uname == "" for m in members)
