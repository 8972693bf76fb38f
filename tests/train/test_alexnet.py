"""The 2012 AlexNet: parameter counts, shapes, grouped/two-tower parity, LRN and conv1 forms."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from train.alexnet import (
    ABLATIONS,
    LRN,
    AlexNet2012,
    AlexNetConfig,
    AlexNetTowers,
    StemConv,
    build_model,
    copy_weights,
    count_parameters,
    grouped_roles,
    lrn_reference,
)


def conv(o: int, i: int, k: int) -> int:
    return o * i * k * k + o


def fc(o: int, i: int) -> int:
    return o * i + o


# Counted by hand from the paper's layer table (grouped layers see half their input).
C1, C2, C3, C4, C5 = (
    conv(96, 3, 11),
    conv(256, 48, 5),
    conv(384, 256, 3),
    conv(384, 192, 3),
    conv(256, 192, 3),
)
FC6, FC7, FC8 = fc(4096, 9216), fc(4096, 4096), fc(1000, 4096)
EXPECTED = {
    "none": C1 + C2 + C3 + C4 + C5 + FC6 + FC7 + FC8,
    "no-fc7": C1 + C2 + C3 + C4 + C5 + FC6 + FC8,
    "no-fc6-fc7": C1 + C2 + C3 + C4 + C5 + fc(1000, 9216),
    "no-conv3-conv4": C1 + C2 + conv(256, 128, 3) + FC6 + FC7 + FC8,
    "no-conv3-conv4-fc6-fc7": C1 + C2 + conv(256, 128, 3) + fc(1000, 9216),
}


def test_paper_parameter_count() -> None:
    assert EXPECTED["none"] == 60_965_224
    assert count_parameters(AlexNet2012(AlexNetConfig())) == 60_965_224


@pytest.mark.parametrize("ablate", ABLATIONS)
@pytest.mark.parametrize("arch", ["alexnet2012", "alexnet-towers"])
def test_variant_parameter_counts(arch: str, ablate: str) -> None:
    with torch.device("meta"):  # shapes only: no memory, no init cost
        model = build_model(AlexNetConfig(arch=arch, ablate=ablate, devices=("meta", "meta")))
    assert count_parameters(model) == EXPECTED[ablate]


def test_torchvision_variant() -> None:
    with torch.device("meta"):
        model = build_model(AlexNetConfig(arch="alexnet-tv"))
    assert count_parameters(model) == 61_100_840
    assert not any(isinstance(m, LRN | nn.LocalResponseNorm) for m in model.modules())
    convs = [m.out_channels for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert convs == [64, 192, 384, 256, 256]
    with pytest.raises(ValueError):
        build_model(AlexNetConfig(arch="alexnet-tv", ablate="no-fc7"))


@pytest.mark.parametrize("size", [224, 227])
@pytest.mark.parametrize("arch", ["alexnet2012", "alexnet-towers", "alexnet-tv"])
def test_output_shapes(arch: str, size: int) -> None:
    model = build_model(AlexNetConfig(num_classes=7, input_size=size, arch=arch)).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, size, size))
    assert out.shape == (2, 7)
    if arch == "alexnet2012":
        with torch.no_grad():
            feats = model.features(torch.randn(1, 3, size, size))
        assert feats.shape == (1, 256, 6, 6)  # the paper's 6x6x256 after conv5's pooling


def test_paper_init() -> None:
    torch.manual_seed(0)
    roles = grouped_roles(AlexNet2012(AlexNetConfig()))
    for name, m in roles.items():
        assert abs(m.weight.std().item() - 0.01) < 1e-3, name
        want = 1.0 if name in ("conv2", "conv4", "conv5", "fc6", "fc7") else 0.0
        assert torch.all(m.bias == want), name
    released = grouped_roles(AlexNet2012(AlexNetConfig(init="released")))
    assert abs(released["conv3"].weight.std().item() - 0.03) < 2e-3


@pytest.mark.slow
@pytest.mark.parametrize("ablate", ABLATIONS)
def test_grouped_equals_two_towers(ablate: str) -> None:
    """Same weights in both forms give the same outputs: the groups are the two GPUs."""
    torch.manual_seed(1)
    cfg = AlexNetConfig(num_classes=10, ablate=ablate)
    grouped = AlexNet2012(cfg).eval()
    for p in grouped.parameters():  # non-trivial weights, so every connection matters
        p.data.normal_(0, 0.02)
    towers = AlexNetTowers(cfg, devices=("cpu", "cpu")).eval()
    copy_weights(grouped, towers)
    x = torch.randn(3, 3, 224, 224) * 50
    with torch.no_grad():
        a, b = grouped(x), towers(x)
    assert a.abs().max() > 0.1
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    # and back: towers -> a fresh grouped net reproduces the original weights exactly
    again = AlexNet2012(cfg)
    copy_weights(towers, again)
    for (k, v), (_, w) in zip(
        grouped.state_dict().items(), again.state_dict().items(), strict=True
    ):
        assert torch.equal(v, w), k
    # negative control: a change in one tower's conv3 half shows up
    with torch.no_grad():
        towers.towers[1].conv5.weight.add_(0.05)
        c = towers(x)
    assert not torch.allclose(a, c, rtol=1e-5, atol=1e-5)


def test_towers_exchange_only_where_the_gpus_communicated() -> None:
    """Tower 0's conv2 sees only its own 48 conv1 maps; conv3 sees all 256 conv2 maps."""
    tower = AlexNetTowers(AlexNetConfig(num_classes=10)).towers[0]
    assert tower.conv2.in_channels == 48 and tower.conv4.in_channels == 192
    assert tower.conv3.in_channels == 256 and tower.fc6.in_features == 9216


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize(("groups", "size"), [(1, 5), (2, 5), (2, 4)])
@pytest.mark.parametrize("impl", ["function", "kernel", "reference"])
def test_lrn_matches_torch(channels_last: bool, groups: int, size: int, impl: str) -> None:
    """Every LRN form against nn.LocalResponseNorm, forward and backward; an even window is
    lopsided, so its backward must sum over the reversed window."""
    torch.manual_seed(2)
    x = torch.randn(3, 96, 9, 9, dtype=torch.float64) * 4
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    x.requires_grad_(True)
    xr = x.detach().clone().requires_grad_(True)
    lrn = LRN(size=size, groups=groups)
    lrn.impl = impl
    ref = nn.LocalResponseNorm(size, 1e-4, 0.75, 2.0)
    y = lrn(x)
    yr = torch.cat([ref(c) for c in xr.chunk(groups, 1)], 1)
    g = torch.randn_like(yr)
    (y * g).sum().backward()
    (yr * g).sum().backward()
    torch.testing.assert_close(y, yr, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(x.grad, xr.grad, rtol=1e-12, atol=1e-12)
    assert y.is_contiguous(memory_format=torch.channels_last) == channels_last
    small = torch.randn(1, 8, 2, 2, dtype=torch.float64) * 20  # gradcheck: few inputs
    assert torch.autograd.gradcheck(lrn, (small.requires_grad_(True),))


def test_lrn_per_half_differs_from_across_halves() -> None:
    x = torch.rand(1, 96, 3, 3, dtype=torch.float64) * 100
    per_half = lrn_reference(x, 5, 1e-4, 0.75, 2.0, groups=2)
    across = nn.LocalResponseNorm(5, 1e-4, 0.75, 2.0)(x)
    assert torch.allclose(per_half[:, :46], across[:, :46])
    assert not torch.allclose(per_half[:, 46:50], across[:, 46:50])


def test_lrn_bf16_close_to_fp32() -> None:
    x = torch.randn(2, 96, 7, 7) * 30
    y = LRN(groups=2)(x.to(torch.bfloat16))
    ref = LRN(groups=2)(x)
    assert y.dtype == torch.bfloat16
    assert float((y.float() - ref).norm() / ref.norm()) < 1e-2


@pytest.mark.parametrize("size", [227, 67, 66])
@pytest.mark.parametrize("channels_last", [False, True])
def test_space_to_depth_conv1_is_exact(size: int, channels_last: bool) -> None:
    torch.manual_seed(3)
    stem = StemConv(3, 96, 11, stride=4).double()
    x = torch.randn(2, 3, size, size, dtype=torch.float64)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    a = stem(x)
    a.square().sum().backward()
    gw = stem.weight.grad.clone()
    stem.weight.grad = None
    stem.impl = "s2d"
    b = stem(x)
    b.square().sum().backward()
    assert a.shape == b.shape
    torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(gw, stem.weight.grad, rtol=1e-10, atol=1e-9)


@pytest.mark.parametrize("impl", ["split", "blockdiag"])
def test_other_group_impls_equal_grouped_convs(impl: str) -> None:
    """Same outputs and the same gradients (none leaking across groups) as cuDNN groups."""
    torch.manual_seed(4)
    cfg = dict(num_classes=5, input_size=67, fc_dim=32, dropout=0.0)
    a = AlexNet2012(AlexNetConfig(**cfg)).double()
    b = AlexNet2012(AlexNetConfig(**cfg, group_impl=impl)).double()
    b.load_state_dict(a.state_dict())
    x = torch.randn(2, 3, 67, 67, dtype=torch.float64) * 40
    for memory_format in (torch.contiguous_format, torch.channels_last):
        a.zero_grad(), b.zero_grad()
        xa = x.contiguous(memory_format=memory_format)
        ya, yb = a(xa), b(xa)
        torch.testing.assert_close(ya, yb, rtol=1e-9, atol=1e-9)
        ya.square().sum().backward()
        yb.square().sum().backward()
        for (name, pa), pb in zip(a.named_parameters(), b.parameters(), strict=True):
            torch.testing.assert_close(pa.grad, pb.grad, rtol=1e-7, atol=1e-9, msg=name)
