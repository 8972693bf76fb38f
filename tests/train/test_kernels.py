"""The ReLU+LRN and max-pool ops: torch forms against torch's own layers, the Triton kernels
against those (Triton's CPU interpreter), and the ops inside torch.compile."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from train.alexnet import AlexNet2012, AlexNetConfig, set_lrn_impl, set_pool_impl
from train.layers import LRN, MaxPool

ROOT = Path(__file__).resolve().parents[2]


def _ref_lrn(x, size, groups, relu):
    x = F.relu(x) if relu else x
    ref = nn.LocalResponseNorm(size, 1e-4, 0.75, 2.0)
    return torch.cat([ref(c) for c in x.chunk(groups, 1)], 1)


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize(("size", "groups", "relu"), [(5, 2, True), (5, 1, False), (4, 2, True)])
def test_lrn_op_matches_torch(channels_last: bool, size: int, groups: int, relu: bool) -> None:
    """Even sizes have an asymmetric window: the backward must sum over the reversed one."""
    torch.manual_seed(0)
    x = torch.randn(2, 16, 5, 6, dtype=torch.float64) * 40
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    lrn = LRN(size=size, groups=groups, relu=relu)
    lrn.impl = "kernel"
    xa, xb = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    y, yr = lrn(xa), _ref_lrn(xb, size, groups, relu)
    g = torch.randn_like(yr)
    (y * g).sum().backward()
    (yr * g).sum().backward()
    torch.testing.assert_close(y, yr, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(xa.grad, xb.grad, rtol=1e-12, atol=1e-12)
    assert y.is_contiguous(memory_format=torch.channels_last) == channels_last
    small = (torch.randn(1, 8, 2, 2, dtype=torch.float64) * 20).requires_grad_(True)
    assert torch.autograd.gradcheck(lrn, (small,))


def test_lrn_op_relu_is_applied() -> None:
    x = -torch.rand(1, 8, 3, 3, dtype=torch.float64)
    lrn = LRN(groups=2, relu=True)
    lrn.impl = "kernel"
    assert torch.equal(lrn(x), torch.zeros_like(x))
    lrn.relu = False
    assert lrn(x).lt(0).all()


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("relu", [False, True])
def test_max_pool_op_matches_torch(channels_last: bool, relu: bool) -> None:
    torch.manual_seed(1)
    x = torch.randn(2, 5, 13, 11, dtype=torch.float64)
    x[0, 0, 0, :3] = x[0, 0, 1, 0] = 3.0  # ties: the first maximum takes the gradient
    x[1, 2, 4:7, 4:7] = -1.0  # a window with nothing positive: no gradient under relu
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    pool = MaxPool(relu=relu)
    pool.impl = "kernel"
    xa, xb = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    y = pool(xa)
    yr = F.max_pool2d(F.relu(xb) if relu else xb, 3, 2)
    g = torch.randn_like(yr)
    (y * g).sum().backward()
    (yr * g).sum().backward()
    assert torch.equal(y, yr)
    torch.testing.assert_close(xa.grad, xb.grad, rtol=1e-12, atol=1e-12)
    assert y.is_contiguous(memory_format=torch.channels_last)
    small = torch.randn(1, 3, 7, 7, dtype=torch.float64).requires_grad_(True)
    assert torch.autograd.gradcheck(pool, (small,))


@pytest.mark.slow
def test_kernel_ops_compile_and_match_eager() -> None:
    """The custom ops inside torch.compile: same outputs and gradients as the eager net."""
    torch.manual_seed(3)
    cfg = AlexNetConfig(num_classes=5, input_size=67, fc_dim=32, dropout=0.0)
    eager, native = AlexNet2012(cfg), AlexNet2012(cfg)
    native.load_state_dict(eager.state_dict())
    for m, impl in ((eager, "kernel"), (native, "native")):
        set_lrn_impl(m, impl if impl == "kernel" else "function")
        set_pool_impl(m, impl)
        m.to(memory_format=torch.channels_last)
    compiled = torch.compile(eager)
    x = (torch.randn(3, 3, 67, 67) * 50).contiguous(memory_format=torch.channels_last)
    outs = []
    for run in (compiled, native):
        run.zero_grad()
        y = run(x)
        y.square().sum().backward()
        w = eager.features[1].weight if run is compiled else native.features[1].weight
        outs.append((y.detach(), w.grad.clone()))
    torch.testing.assert_close(outs[0][0], outs[1][0], rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(outs[0][1], outs[1][1], rtol=1e-3, atol=1e-4)


_INTERPRETED = textwrap.dedent(
    """
    import sys, torch
    import torch.nn.functional as F
    from train import kernels as K, triton_kernels as T
    torch.manual_seed(0)
    worst = {}
    def err(name, a, b):
        e = float((a.double() - b.double()).abs().max() / b.double().abs().max().clamp_min(1e-30))
        worst[name] = max(worst.get(name, 0.0), e)
    for n, c, h, w, groups, size in [(2, 12, 5, 7, 2, 5), (1, 96, 3, 2, 2, 5), (1, 8, 4, 4, 1, 4)]:
        z = (torch.randn(n, c, h, w) * 30).contiguous(memory_format=torch.channels_last)
        g = torch.randn(n, c, h, w)
        for relu in (True, False):
            y2, d2 = K._lrn_forward_torch(z, size, 1e-2, 0.75, 2.0, groups, relu)
            g2 = K._lrn_backward_torch(g, z, d2, size, 1e-2, 0.75, groups, relu)
            y1, d1 = T.lrn_forward(z, size, 1e-2, 0.75, 2.0, groups, relu)
            err("lrn y", y1, y2)
            err("lrn q", d1, d2)
            err("lrn grad", T.lrn_backward(g, z, d1, size, 1e-2, 0.75, groups, relu), g2)
        # an NCHW input comes back NCHW, same values
        y3, _ = T.lrn_forward(z.contiguous(), size, 1e-2, 0.75, 2.0, groups, True)
        assert y3.is_contiguous(), "layout"
        err("lrn nchw", y3, K._lrn_forward_torch(z, size, 1e-2, 0.75, 2.0, groups, True)[0])
        # negative control: the group edge matters
        y4, _ = T.lrn_forward(z, size, 1e-2, 0.75, 2.0, 1, False)
        y5 = K._lrn_forward_torch(z, size, 1e-2, 0.75, 2.0, 2, False)[0]
        assert groups == 1 or not torch.allclose(y4, y5), "group edge"
    for n, c, h, w in [(2, 5, 13, 11), (1, 64, 7, 9), (1, 3, 27, 27)]:
        x = torch.randn(n, c, h, w).contiguous(memory_format=torch.channels_last)
        x[..., 2, 2] = x[..., 2, 3]  # ties
        for relu in (True, False):
            y1, i1 = T.max_pool(x, 3, 2, relu)
            y2, i2 = K._max_pool_torch(x, 3, 2, relu)
            assert torch.equal(y1, y2) and torch.equal(i1, i2), "pool forward"
            g = torch.randn_like(y1)
            err("pool grad", T.max_pool_backward(g, i1, h, w, 3, 2),
                K._max_pool_backward_torch(g, i2, h, w, 3, 2))
    print(worst)
    assert all(v < 1e-5 for v in worst.values()), worst
    """
)


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("triton") is None, reason="Triton is not installed")
def test_triton_kernels_match_torch_forms_interpreted() -> None:
    """The CUDA kernels' arithmetic and indexing, run by Triton's CPU interpreter in fp32 (the
    interpreter truncates to bf16, so bf16 is checked on the GPU by bench/train_gpu.py)."""
    env = dict(os.environ, TRITON_INTERPRET="1", PYTHONPATH=str(ROOT))
    r = subprocess.run(
        [sys.executable, "-c", _INTERPRETED], env=env, capture_output=True, text=True, timeout=300
    )
    assert r.returncode == 0, r.stdout + r.stderr
