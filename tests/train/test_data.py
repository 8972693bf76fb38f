"""Reading ilsvrc and webdataset exports, batched decoding, augmentation parameters."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from train.data import (
    EpochSampler,
    ExportError,
    ImageDataset,
    augment_params,
    collate_batch,
    decode_square,
    load_samples,
)
from train.synthetic import make_export, make_image


@pytest.fixture(scope="module")
def export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_export(tmp_path_factory.mktemp("ilsvrc"), classes=3, train_per_class=4,
                       val_per_class=2, size=40)  # fmt: skip


def test_ilsvrc_layout_and_labels(export: Path) -> None:
    train, n = load_samples(export, "ilsvrc", "train")
    val, _ = load_samples(export, "ilsvrc", "val")
    assert n == 3 and len(train) == 12 and len(val) == 6
    manifest = [json.loads(ln) for ln in (export / "manifest.jsonl").read_text().splitlines()]
    truth = {m["path"]: m["class_index"] for m in manifest}
    for s in train + val:
        assert truth[str(Path(s.path).relative_to(export))] == s.label
    # without the devkit file the val labels come from LOC_val_solution.csv, identically
    gt = export / "data" / "ILSVRC2012_validation_ground_truth.txt"
    saved = gt.read_text()
    gt.unlink()
    try:
        again, _ = load_samples(export, "ilsvrc", "val")
    finally:
        gt.write_text(saved)
    assert [s.label for s in again] == [s.label for s in val]


def test_webdataset_shards_read_like_ilsvrc(tmp_path: Path) -> None:
    wds = make_export(tmp_path / "w", classes=3, train_per_class=4, val_per_class=2, size=40,
                      fmt="webdataset")  # fmt: skip
    samples, n = load_samples(wds, "webdataset", "train")
    assert n == 3 and len(samples) == 12
    for s in samples:
        data = s.read()
        assert data[:2] == b"\xff\xd8"  # the JPEG itself, found by byte offset
        assert decode_square(data, 32).shape == (32, 32, 3)
    assert sorted({s.label for s in samples}) == [0, 1, 2]


def test_webdataset_library_shards(tmp_path: Path) -> None:
    """Shards written by the `webdataset` library itself read back with the right labels."""
    import webdataset  # dev extra; a missing install must fail, not skip

    root = tmp_path / "lib"
    root.mkdir()
    with webdataset.TarWriter(str(root / "val-000000.tar")) as sink:
        for i in range(5):
            sink.write({"__key__": f"s{i:04d}", "jpg": make_image(i % 2, i, 40),
                        "cls": str(i % 2).encode(), "json": json.dumps({"wnid": "n0"}).encode()})  # fmt: skip
    samples, n = load_samples(root, "webdataset", "val")
    assert [s.label for s in samples] == [0, 1, 0, 1, 0] and n == 2
    from PIL import Image

    with Image.open(io.BytesIO(samples[3].read())) as im:
        assert im.size == (50, 40)  # index 3 is one of the wide images


def test_missing_export_parts_fail_clearly(tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="no ImageNet layout found"):
        load_samples(tmp_path, "ilsvrc", "train")
    (tmp_path / "LOC_synset_mapping.txt").write_text("n01440764 tench\n")
    (tmp_path / "train" / "n01440764").mkdir(parents=True)
    with pytest.raises(ExportError, match="no images"):
        load_samples(tmp_path, "ilsvrc", "train")
    with pytest.raises(ExportError, match="no train-.*val-.*shards"):
        load_samples(tmp_path, "webdataset", "val")


def test_decode_square_resizes_shorter_side_and_centre_crops() -> None:
    from PIL import Image

    arr = np.zeros((60, 120, 3), np.uint8)
    arr[:, 30:90] = 255  # the centre 60 columns white
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "PNG")
    out = decode_square(buf.getvalue(), 30)
    assert out.shape == (30, 30, 3) and out.dtype == np.uint8
    assert out.mean() > 240  # only the white centre survives the centre crop


def test_augmentation_is_fixed_by_seed_epoch_index(export: Path) -> None:
    a1, a2 = augment_params(0, 1, 5, 32), augment_params(0, 1, 5, 32)
    assert a1[:3] == a2[:3] and torch.equal(a1[3], a2[3])
    draws = {augment_params(0, e, 5, 32)[:3] for e in range(20)}
    assert len(draws) > 10
    alphas = torch.stack([augment_params(1, 0, i, 32)[3] for i in range(2000)])
    assert abs(float(alphas.std()) - 0.1) < 0.01
    samples, _ = load_samples(export, "ilsvrc", "train")
    ds = ImageDataset(samples, True, resize=40, crop=32, seed=3)
    a, la, aa = ds[(2, 4)]
    b, lb, ab = ds[(2, 4)]
    assert a.shape == (32, 32, 3) and a.dtype == torch.uint8
    assert torch.equal(a, b) and la == lb and torch.equal(aa, ab)


def test_epoch_sampler_shards_and_shuffles() -> None:
    parts = []
    for rank in range(2):
        s = EpochSampler(10, True, seed=0, rank=rank, world=2)
        s.set_epoch(3)
        parts.append(list(s))
    idx = sorted(i for p in parts for i, _ in p)
    assert idx == list(range(10)) and all(e == 3 for p in parts for _, e in p)
    s = EpochSampler(10, True, seed=0)
    s.set_epoch(0)
    first = list(s)
    s.set_epoch(1)
    assert first != list(s)


def _reference_crop(data: bytes, resize: int, oy: int, ox: int, crop: int, flip: bool):
    """The paper's crop written the plain way: Pillow decode, shorter side to `resize`, centre
    square, then the crop and the mirror in numpy."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as im:
        im = im.convert("RGB")
        w, h = im.size
        s = resize / min(w, h)
        nw, nh = max(resize, round(w * s)), max(resize, round(h * s))
        if (nw, nh) != (w, h):
            im = im.resize((nw, nh), Image.BILINEAR, reducing_gap=None)
        a = np.asarray(im)
    t, left = (nh - resize) // 2, (nw - resize) // 2
    a = a[t : t + resize, left : left + resize][oy : oy + crop, ox : ox + crop]
    return a[:, ::-1] if flip else a


@pytest.mark.parametrize("decoder", ["simplejpeg", "pillow"])
def test_batched_fetch_matches_the_plain_crop(
    export: Path, decoder: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """__getitems__ decodes a whole batch into one tensor; every image in it is the paper's crop
    (offsets and flip from augment_params), with either decoder."""
    import train.data as data_mod

    if decoder == "pillow":
        monkeypatch.setattr(data_mod, "_simplejpeg", lambda: None)
    else:
        assert data_mod._simplejpeg(), "simplejpeg is a dependency: install it"
    samples, _ = load_samples(export, "ilsvrc", "train")
    ds = ImageDataset(samples, True, resize=40, crop=32, seed=3)
    keys = [(i, 7) for i in range(len(samples))]
    images, labels, alphas = collate_batch(ds.__getitems__(keys))
    assert images.shape == (len(keys), 32, 32, 3) and images.dtype == torch.uint8
    flips = 0
    for j, (i, epoch) in enumerate(keys):
        oy, ox, flip, alpha = augment_params(3, epoch, i, 8)
        flips += flip
        want = _reference_crop(samples[i].read(), 40, oy, ox, 32, flip)
        diff = np.abs(images[j].numpy().astype(int) - want.astype(int))
        assert diff.max() <= 2 and diff.mean() < 0.3, (i, diff.max(), diff.mean())
        assert labels[j] == samples[i].label and torch.equal(alphas[j], alpha)
    assert 0 < flips < len(keys)  # both branches ran
    # evaluation: the centre crop, no lighting; ten-crop: the whole square
    val = ImageDataset(samples, False, resize=40, crop=32)
    img, _, alpha = val[0]
    want = _reference_crop(samples[0].read(), 40, 4, 4, 32, False)
    assert np.abs(img.numpy().astype(int) - want.astype(int)).max() <= 2 and not alpha.any()
    full = ImageDataset(samples, False, resize=40, crop=32, full=True)[0][0]
    assert full.shape == (40, 40, 3)


def test_loader_workers_hand_over_the_batch_in_shared_memory(export: Path) -> None:
    samples, _ = load_samples(export, "ilsvrc", "train")
    ds = ImageDataset(samples, True, resize=40, crop=32, seed=1)
    sampler = EpochSampler(len(ds), True, seed=1)
    sampler.set_epoch(2)
    loader = torch.utils.data.DataLoader(ds, batch_size=5, sampler=sampler, num_workers=1,
                                         collate_fn=collate_batch)  # fmt: skip
    got = list(loader)
    keys = list(sampler)
    want = collate_batch(ds.__getitems__(keys))
    assert torch.equal(torch.cat([b[0] for b in got]), want[0])
    assert torch.equal(torch.cat([b[1] for b in got]), want[1])
    # the default collate_fn still works on the per-sample items, just with a copy
    plain = torch.utils.data.DataLoader(ds, batch_size=5, sampler=sampler)
    assert torch.equal(next(iter(plain))[0], got[0][0])


def test_undecodable_and_non_jpeg_images(tmp_path: Path) -> None:
    """A PNG or CMYK JPEG in an export decodes through Pillow; a broken file names itself."""
    from PIL import Image

    export = make_export(tmp_path / "e", classes=2, train_per_class=2, val_per_class=1, size=40)
    samples, _ = load_samples(export, "ilsvrc", "train")
    rgb = np.random.default_rng(0).integers(0, 255, (40, 48, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(samples[0].path, "PNG")  # PNG bytes under a .JPEG name
    Image.fromarray(rgb).convert("CMYK").save(samples[1].path, "JPEG", quality=95)
    Path(samples[2].path).write_bytes(b"<html>not an image</html>")
    ds = ImageDataset(samples, False, resize=40, crop=40)
    png = ds[0][0].numpy()
    assert np.array_equal(png, rgb[:, 4:44])  # lossless: exactly the centre square
    assert ds[1][0].shape == (40, 40, 3)
    with pytest.raises(ExportError, match=rf"{Path(samples[2].path).name}: cannot decode"):
        ds[2]


def test_hybrid_decoding_splits_batches_between_cpu_and_gpu(export: Path) -> None:
    """--decode hybrid: a fixed share of batches comes as JPEG bytes for nvJPEG, the rest
    decoded, the same batches every run; the bytes are the file's and the labels agree."""
    import argparse

    from train.loaders import gpu_share

    samples, _ = load_samples(export, "ilsvrc", "train")
    ds = ImageDataset(samples, True, resize=40, crop=32, seed=1, encoded=0.4)
    batches = [[(i % len(samples), epoch)] for epoch in range(50) for i in range(12)]
    kinds = [len(collate_batch(ds.__getitems__(k))) for k in batches]
    assert set(kinds) == {3, 5}
    share = kinds.count(5) / len(kinds)
    assert 0.3 < share < 0.5, share
    again = [len(collate_batch(ds.__getitems__(k))) for k in batches]
    assert again == kinds
    enc = next(k for k, kind in zip(batches, kinds, strict=True) if kind == 5)
    data, lengths, labels, _alpha, params = collate_batch(ds.__getitems__(enc))
    assert bytes(data.numpy()) == samples[enc[0][0]].read()
    assert int(labels[0]) == samples[enc[0][0]].label and params.shape == (1, 3)
    assert len(ImageDataset(samples, True, 40, 32, encoded=0.0).__getitems__(enc)) == 1
    assert all(
        len(collate_batch(ImageDataset(samples, True, 40, 32, encoded=1.0).__getitems__(k))) == 5
        for k in batches[:20]
    )
    ns = argparse.Namespace(decode="hybrid", gpu_share=0.3)
    assert gpu_share(ns, True) == 0.3 and gpu_share(ns, False) == 0.0
    assert gpu_share(argparse.Namespace(decode="gpu", gpu_share=0.3), True) == 1.0
    assert gpu_share(argparse.Namespace(decode="auto", gpu_share=0.3), True) == 0.3
    with pytest.raises(ValueError, match="between 0 and 1"):
        gpu_share(argparse.Namespace(decode="hybrid", gpu_share=1.5), True)
