"""Custom ops for ReLU+LRN and max-pool: Triton kernels on CUDA, the same math in torch elsewhere.

torch.compile cannot see inside a custom op, which is the point: Inductor, left to itself,
inlines the LRN's channel window and the max-pool backward into every consumer and reads
channels_last tensors across the grain (3 ms of a 9 ms step on an H200). As opaque calls each
layer is one kernel forward and one backward, each touching every element once.
"""

from __future__ import annotations

import importlib.util

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["lrn", "max_pool", "triton_ready"]


# looked up once, without importing it: torch.compile traces triton_ready as a constant
_HAVE_TRITON = importlib.util.find_spec("triton") is not None


def triton_ready(x: Tensor) -> bool:
    """True when x's layer runs as a Triton kernel: a 4-D CUDA tensor and Triton installed."""
    return x.is_cuda and x.dim() == 4 and _HAVE_TRITON


def _pool_shape(x: Tensor, kernel: int, stride: int) -> tuple[int, int, int, int]:
    n, c, h, w = x.shape
    return n, c, (h - kernel) // stride + 1, (w - kernel) // stride + 1


# ---------------------------------------------------------------- torch forms (CPU, no Triton)
def window_sum(v: Tensor, size: int, groups: int, dim: int = -1, reverse: bool = False) -> Tensor:
    """Sum over each channel's LRN window (channels on axis `dim`), zero-padded at the groups'
    edges; `reverse` sums over the channels whose window holds it instead (differs for even
    sizes)."""
    half = size // 2
    lo, hi = (size - 1 - half, half) if reverse else (half, size - 1 - half)
    dim %= v.dim()
    grouped = v.unflatten(dim, (groups, v.shape[dim] // groups))
    cdim = dim + 1
    padded = F.pad(grouped, [0, 0] * (grouped.dim() - 1 - cdim) + [lo, hi])
    n = grouped.shape[cdim]
    out = padded.narrow(cdim, 0, n)
    for i in range(1, size):
        out = out + padded.narrow(cdim, i, n)
    return out.flatten(dim, cdim)


def _lrn_forward_torch(z, size, alpha, beta, k, groups, relu):
    ct = torch.promote_types(z.dtype, torch.float32)
    x = z.movedim(1, -1).to(ct)  # channels last: a free view of a channels_last tensor
    x = x.clamp_min(0) if relu else x
    d = k + (alpha / size) * window_sum(x * x, size, groups)
    y = x * d.pow(-beta)
    out = (torch.empty_like(z), torch.empty_like(z))
    out[0].copy_(y.movedim(-1, 1))
    out[1].copy_(d.pow(-beta - 1.0).movedim(-1, 1))  # q, what the backward needs per neighbour
    return out


def _lrn_backward_torch(g, z, q, size, alpha, beta, groups, relu):
    ct = torch.promote_types(z.dtype, torch.float32)
    zf, gf, qf = (t.movedim(1, -1).to(ct) for t in (z, g, q))
    x = zf.clamp_min(0) if relu else zf
    t = window_sum(gf * x * qf, size, groups, reverse=True)
    gx = gf * qf.pow(beta / (beta + 1.0)) - (2.0 * alpha * beta / size) * x * t
    if relu:
        gx = gx * (zf > 0)
    return torch.empty_like(z).copy_(gx.movedim(-1, 1))


def _max_pool_torch(x, kernel, stride, relu):
    n, c, oh, ow = _pool_shape(x, kernel, stride)
    y, flat = F.max_pool2d(x, kernel, stride, return_indices=True)
    w = x.shape[-1]
    rows = torch.arange(oh, device=x.device).view(-1, 1) * stride
    cols = torch.arange(ow, device=x.device).view(1, -1) * stride
    arg = (flat // w - rows) * kernel + (flat % w - cols)  # position inside the window
    if relu:
        keep = (y > 0) | y.isnan()
        y, arg = torch.where(keep, y, 0), torch.where(keep, arg, -1)
    cl = torch.channels_last
    return y.contiguous(memory_format=cl), arg.to(torch.int8).contiguous(memory_format=cl)


def _max_pool_backward_torch(g, idx, h, w, kernel, stride):
    n, c, oh, ow = idx.shape
    arg = idx.long()
    rows = torch.arange(oh, device=g.device).view(-1, 1) * stride
    cols = torch.arange(ow, device=g.device).view(1, -1) * stride
    flat = (rows + arg.clamp_min(0) // kernel) * w + cols + arg.clamp_min(0) % kernel
    src = torch.where(arg >= 0, g, 0).to(torch.promote_types(g.dtype, torch.float32))
    gx = src.new_zeros((n, c, h * w)).scatter_add_(2, flat.reshape(n, c, -1), src.reshape(n, c, -1))
    return gx.view(n, c, h, w).to(g.dtype).contiguous(memory_format=torch.channels_last)


# ---------------------------------------------------------------- the ops
@torch.library.custom_op("imnet::lrn_forward", mutates_args=())
def _lrn_forward(
    z: Tensor, size: int, alpha: float, beta: float, k: float, groups: int, relu: bool
) -> tuple[Tensor, Tensor]:
    if triton_ready(z):
        from train import triton_kernels

        return triton_kernels.lrn_forward(z, size, alpha, beta, k, groups, relu)
    return _lrn_forward_torch(z, size, alpha, beta, k, groups, relu)


@_lrn_forward.register_fake
def _(z, size, alpha, beta, k, groups, relu):
    return torch.empty_like(z), torch.empty_like(z)


@torch.library.custom_op("imnet::lrn_backward", mutates_args=())
def _lrn_backward(
    g: Tensor,
    z: Tensor,
    q: Tensor,
    size: int,
    alpha: float,
    beta: float,
    groups: int,
    relu: bool,
) -> Tensor:
    if triton_ready(z):
        from train import triton_kernels

        return triton_kernels.lrn_backward(g, z, q, size, alpha, beta, groups, relu)
    return _lrn_backward_torch(g, z, q, size, alpha, beta, groups, relu)


@_lrn_backward.register_fake
def _(g, z, q, size, alpha, beta, groups, relu):
    return torch.empty_like(z)


def _lrn_setup(ctx, inputs, output) -> None:
    z, size, alpha, beta, _k, groups, relu = inputs
    ctx.save_for_backward(z, output[1])
    ctx.args = (size, alpha, beta, groups, relu)


def _lrn_grad(ctx, gy: Tensor, _gd: Tensor):
    z, q = ctx.saved_tensors
    return _lrn_backward(gy, z, q, *ctx.args), None, None, None, None, None, None


_lrn_forward.register_autograd(_lrn_grad, setup_context=_lrn_setup)


@torch.library.custom_op("imnet::max_pool", mutates_args=())
def _max_pool(x: Tensor, kernel: int, stride: int, relu: bool) -> tuple[Tensor, Tensor]:
    if triton_ready(x):
        from train import triton_kernels

        return triton_kernels.max_pool(x, kernel, stride, relu)
    return _max_pool_torch(x, kernel, stride, relu)


@_max_pool.register_fake
def _(x, kernel, stride, relu):
    shape, cl = _pool_shape(x, kernel, stride), torch.channels_last
    y = x.new_empty(shape).contiguous(memory_format=cl)
    return y, x.new_empty(shape, dtype=torch.int8).contiguous(memory_format=cl)


@torch.library.custom_op("imnet::max_pool_backward", mutates_args=())
def _max_pool_backward(g: Tensor, idx: Tensor, h: int, w: int, kernel: int, stride: int) -> Tensor:
    if triton_ready(g):
        from train import triton_kernels

        return triton_kernels.max_pool_backward(g, idx, h, w, kernel, stride)
    return _max_pool_backward_torch(g, idx, h, w, kernel, stride)


@_max_pool_backward.register_fake
def _(g, idx, h, w, kernel, stride):
    n, c = idx.shape[:2]
    return g.new_empty((n, c, h, w)).contiguous(memory_format=torch.channels_last)


def _pool_setup(ctx, inputs, output) -> None:
    x, kernel, stride, _relu = inputs
    ctx.mark_non_differentiable(output[1])
    ctx.save_for_backward(output[1])
    ctx.args = (x.shape[-2], x.shape[-1], kernel, stride)


def _pool_grad(ctx, gy: Tensor, _gi):
    (idx,) = ctx.saved_tensors
    return _max_pool_backward(gy, idx, *ctx.args), None, None, None


_max_pool.register_autograd(_pool_grad, setup_context=_pool_setup)


# ---------------------------------------------------------------- what the layers call
def lrn(
    z: Tensor,
    size: int,
    alpha: float,
    beta: float,
    k: float,
    groups: int,
    relu: bool,
) -> Tensor:
    """LRN (of relu(z) when `relu`), per channel group, as one op forward and one backward."""
    return _lrn_forward(z, size, alpha, beta, k, groups, relu)[0]


def max_pool(x: Tensor, kernel: int = 3, stride: int = 2, relu: bool = False) -> Tensor:
    """Max-pool without padding (of relu(x) when `relu`), floor mode, as one op each way."""
    return _max_pool(x, kernel, stride, relu)[0]
