"""Device-side preparation: mean and PCA lighting, channels_last, ten crops."""

from __future__ import annotations

import torch

from train.data import EIGVAL, EIGVEC, MEAN_RGB
from train.prep import DevicePrep, ten_crop


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
