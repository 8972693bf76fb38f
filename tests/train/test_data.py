"""Reading ilsvrc and webdataset exports, augmentation parameters, device-side preparation."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from train.data import (
    EIGVAL,
    EIGVEC,
    MEAN_RGB,
    DevicePrep,
    EpochSampler,
    ExportError,
    ImageDataset,
    augment_params,
    decode_square,
    load_samples,
    ten_crop,
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
    with pytest.raises(ExportError, match="LOC_synset_mapping"):
        load_samples(tmp_path, "ilsvrc", "train")
    (tmp_path / "LOC_synset_mapping.txt").write_text("n01440764 tench\n")
    with pytest.raises(ExportError, match="no images"):
        load_samples(tmp_path, "ilsvrc", "train")
    with pytest.raises(ExportError, match="no val"):
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


def test_device_prep_lighting_and_mean() -> None:
    img = torch.randint(0, 256, (2, 8, 8, 3), dtype=torch.uint8)
    alpha = torch.tensor([[0.1, -0.2, 0.05], [0.0, 0.0, 0.0]])
    out = DevicePrep(torch.device("cpu"), channels_last=True)(img, alpha)
    assert out.shape == (2, 3, 8, 8) and out.is_contiguous(memory_format=torch.channels_last)
    eig = torch.tensor(EIGVEC) @ (alpha[0] * torch.tensor(EIGVAL))
    want = img[0].float() - torch.tensor(MEAN_RGB) * 255 + 255 * eig
    torch.testing.assert_close(out[0].permute(1, 2, 0), want)
    std = DevicePrep(torch.device("cpu"), normalize="std", lighting=False)(img, alpha)
    assert abs(float(std.mean())) < 1.5 and std.is_contiguous()


def test_ten_crop_corners_centre_and_flips() -> None:
    x = torch.arange(2 * 1 * 6 * 6, dtype=torch.float32).view(2, 1, 6, 6)
    crops = ten_crop(x, 4)
    assert crops.shape == (20, 1, 4, 4)
    assert torch.equal(crops[0], x[0, :, :4, :4])  # top-left of image 0
    assert torch.equal(crops[4], x[0, :, 1:5, 1:5])  # centre
    assert torch.equal(crops[9], x[0, :, 1:5, 1:5].flip(-1))  # flipped centre
    assert torch.equal(crops[10], x[1, :, :4, :4])  # image 1 starts at 10
