"""Device-side preparation: mean and PCA lighting, channels_last, ten crops."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from train.data import EIGVAL, EIGVEC, MEAN_RGB, _decode_rgb, decode_into, load_samples
from train.prep import DevicePrep, crop_batch, ten_crop
from train.synthetic import make_export


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


@pytest.mark.parametrize(("resize", "crop", "tol"), [(40, 32, 0), (32, 24, 1), (48, 40, 1)])
def test_gpu_decode_geometry_matches_the_cpu_crop(
    tmp_path: Path, resize: int, crop: int, tol: int
) -> None:
    """crop_batch (what runs on nvJPEG's output) cuts the same crops and flips as the loader
    workers' decode_into: exactly when the shorter side already is `resize` (an export made
    with --resize), within 1 level where both resample (torch's antialiased bilinear vs
    Pillow's). Run here on CPU tensors; the GPU runs the same torch ops."""
    export = make_export(tmp_path, classes=2, train_per_class=6, val_per_class=1, size=40)
    samples, _ = load_samples(export, "ilsvrc", "train")
    imgs, want, params = [], [], []
    span = resize - crop + 1
    for i, s in enumerate(samples):  # 40x40 and 40x50 images: two shapes in one batch
        data = s.read()
        imgs.append(torch.from_numpy(_decode_rgb(data, resize, s.path)).permute(2, 0, 1))
        oy, ox, flip = i % span, (3 * i + 1) % span, i % 2
        out = torch.empty((crop, crop, 3), dtype=torch.uint8)
        decode_into(data, out, resize, oy, ox, bool(flip))
        want.append(out)
        params.append([oy, ox, flip])
    assert len({tuple(t.shape) for t in imgs}) == 2
    p = torch.tensor(params, dtype=torch.int32)
    got = crop_batch(imgs, p, resize, crop)
    assert got.shape == (len(imgs), crop, crop, 3) and got.is_contiguous()
    assert (got.int() - torch.stack(want).int()).abs().max() <= tol
    unflipped = p.clone()
    unflipped[:, 2] = 0
    plain = crop_batch(imgs, unflipped, resize, crop)
    assert torch.equal(plain[1::2], got[1::2].flip(2)) and torch.equal(plain[0::2], got[0::2])
    # ten-crop evaluation: params -1 ask for the whole centre square
    full = crop_batch(imgs, torch.full_like(p, -1), resize, crop)
    square = torch.empty((resize, resize, 3), dtype=torch.uint8)
    decode_into(samples[1].read(), square, resize)
    assert full.shape == (len(imgs), resize, resize, 3)
    assert (full[1].int() - square.int()).abs().max() <= tol
