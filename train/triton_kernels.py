"""Triton kernels for the 2012 net's memory-bound layers on channels_last tensors: ReLU+LRN, max-pool.

Each kernel reads and writes every element once from device memory; the channel-window and
pooling-window neighbours come from L1/L2. Imported only on the CUDA path (and by the tests,
which run these kernels on CPU tensors under TRITON_INTERPRET=1). `train.kernels` wraps them as
custom ops, so torch.compile treats them as opaque calls instead of re-deriving them per element.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor

# elements per program: 16 per thread at 4 warps, enough loads in flight to cover latency
_TILE = 2048


@triton.jit
def _lrn_fwd_kernel(z_ptr, y_ptr, q_ptr, R, C, scale, beta, k, CG: tl.constexpr,
                    SIZE: tl.constexpr, RELU: tl.constexpr,
                    BLOCK_R: tl.constexpr, BLOCK_C: tl.constexpr):  # fmt: skip
    rows = tl.program_id(0) * BLOCK_R + tl.arange(0, BLOCK_R)
    c = (tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C))[None, :]
    base = rows.to(tl.int64)[:, None] * C
    own = (rows < R)[:, None] & (c < C)
    ci = c % CG  # place inside the group; CG is a constant, so no division at run time
    s = tl.zeros((BLOCK_R, BLOCK_C), dtype=tl.float32)
    for o in tl.static_range(SIZE):
        m = own & (ci + (o - SIZE // 2) >= 0) & (ci + (o - SIZE // 2) < CG)
        v = tl.load(z_ptr + base + c + (o - SIZE // 2), mask=m, other=0.0).to(tl.float32)
        if RELU:
            v = tl.maximum(v, 0.0)
        s += v * v
    x = tl.load(z_ptr + base + c, mask=own, other=0.0).to(tl.float32)
    if RELU:
        x = tl.maximum(x, 0.0)
    ld = tl.log2(k + scale * s)
    tl.store(y_ptr + base + c, (x * tl.exp2(-beta * ld)).to(y_ptr.dtype.element_ty), own)
    # q = d^(-b-1) is what the backward needs at every neighbour: no pow per neighbour there
    tl.store(q_ptr + base + c, tl.exp2((-beta - 1.0) * ld).to(q_ptr.dtype.element_ty), own)


@triton.jit
def _lrn_bwd_kernel(g_ptr, z_ptr, q_ptr, gz_ptr, R, C, coef, bexp, CG: tl.constexpr,
                    SIZE: tl.constexpr, RELU: tl.constexpr,
                    BLOCK_R: tl.constexpr, BLOCK_C: tl.constexpr):  # fmt: skip
    rows = tl.program_id(0) * BLOCK_R + tl.arange(0, BLOCK_R)
    c = (tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C))[None, :]
    base = rows.to(tl.int64)[:, None] * C
    own = (rows < R)[:, None] & (c < C)
    ci = c % CG
    # gx_i = g_i d_i^-b - (2ab/n) x_i sum_{j: i in window(j)} g_j x_j q_j
    t = tl.zeros((BLOCK_R, BLOCK_C), dtype=tl.float32)
    for o in tl.static_range(SIZE):
        off = (SIZE // 2) - o  # the channels j = i + off whose window holds this one
        m = own & (ci + off >= 0) & (ci + off < CG)
        xj = tl.load(z_ptr + base + c + off, mask=m, other=0.0).to(tl.float32)
        if RELU:
            xj = tl.maximum(xj, 0.0)
        qj = tl.load(q_ptr + base + c + off, mask=m, other=0.0).to(tl.float32)
        gj = tl.load(g_ptr + base + c + off, mask=m, other=0.0).to(tl.float32)
        t += gj * xj * qj
    zi = tl.load(z_ptr + base + c, mask=own, other=0.0).to(tl.float32)
    xi = tl.maximum(zi, 0.0) if RELU else zi
    qi = tl.load(q_ptr + base + c, mask=own, other=1.0).to(tl.float32)
    gi = tl.load(g_ptr + base + c, mask=own, other=0.0).to(tl.float32)
    gx = gi * tl.exp2(bexp * tl.log2(qi)) - coef * xi * t  # d^-b = q^(b/(b+1))
    if RELU:
        gx = tl.where(zi > 0.0, gx, 0.0)
    tl.store(gz_ptr + base + c, gx.to(gz_ptr.dtype.element_ty), own)


@triton.jit
def _pool_fwd_kernel(x_ptr, y_ptr, idx_ptr, P, C, H, W, OH, OW,
                     K: tl.constexpr, S: tl.constexpr, RELU: tl.constexpr,
                     BLOCK_P: tl.constexpr, BLOCK_C: tl.constexpr):  # fmt: skip
    p = tl.program_id(0) * BLOCK_P + tl.arange(0, BLOCK_P)  # output position n, oh, ow
    c = (tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C))[None, :]
    ow = p % OW
    oh = (p // OW) % OH
    n = (p // OW // OH).to(tl.int64)
    m = (p < P)[:, None] & (c < C)
    best = tl.full((BLOCK_P, BLOCK_C), float("-inf"), tl.float32)
    arg = tl.zeros((BLOCK_P, BLOCK_C), dtype=tl.int32)
    for dh in tl.static_range(K):
        for dw in tl.static_range(K):
            row = ((n * H + oh * S + dh) * W + ow * S + dw) * C
            v = tl.load(x_ptr + row[:, None] + c, mask=m, other=float("-inf")).to(tl.float32)
            take = (v > best) | (v != v)  # the first maximum, and NaN wins, as ATen does
            best = tl.where(take, v, best)
            arg = tl.where(take, dh * K + dw, arg)
    if RELU:  # max(relu(x)) = relu(max(x)); a window with no positive value passes no gradient
        keep = (best > 0.0) | (best != best)
        best = tl.where(keep, best, 0.0)
        arg = tl.where(keep, arg, -1)
    out = p.to(tl.int64)[:, None] * C + c
    tl.store(y_ptr + out, best.to(y_ptr.dtype.element_ty), m)
    tl.store(idx_ptr + out, arg.to(tl.int8), m)


@triton.jit
def _pool_bwd_kernel(g_ptr, idx_ptr, gx_ptr, Q, C, H, W, OH, OW,
                     K: tl.constexpr, S: tl.constexpr,
                     BLOCK_P: tl.constexpr, BLOCK_C: tl.constexpr):  # fmt: skip
    q = tl.program_id(0) * BLOCK_P + tl.arange(0, BLOCK_P)  # input position n, h, w
    c = (tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C))[None, :]
    w = q % W
    h = (q // W) % H
    n = (q // W // H).to(tl.int64)
    own = (q < Q)[:, None] & (c < C)
    acc = tl.zeros((BLOCK_P, BLOCK_C), dtype=tl.float32)
    # the windows holding (h, w): oh in h//S - a for a < ceil(K/S), where 0 <= h - oh*S < K
    for a in tl.static_range((K + S - 1) // S):
        oh = h // S - a
        dh = h - oh * S
        vh = (oh >= 0) & (oh < OH) & (dh < K)
        for b in tl.static_range((K + S - 1) // S):
            ow = w // S - b
            dw = w - ow * S
            v = vh & (ow >= 0) & (ow < OW) & (dw < K)
            row = ((n * OH + oh) * OW + ow) * C
            m = own & v[:, None]
            ix = tl.load(idx_ptr + row[:, None] + c, mask=m, other=-1).to(tl.int32)
            hit = m & (ix == (dh * K + dw)[:, None])
            acc += tl.load(g_ptr + row[:, None] + c, mask=hit, other=0.0).to(tl.float32)
    tl.store(gx_ptr + q.to(tl.int64)[:, None] * C + c, acc.to(gx_ptr.dtype.element_ty), own)


def _blocks(c: int) -> tuple[int, int]:
    """(rows, channels) per program: channel tiles that divide C, so no lane idles."""
    bc = next((b for b in (64, 32, 16) if c % b == 0), min(triton.next_power_of_2(c), 64))
    return _TILE // bc, bc


def _nhwc(x: Tensor) -> Tensor:
    return x.contiguous(memory_format=torch.channels_last)


def _into(like: Tensor, fill) -> Tensor:
    """Run `fill(out)` on an NHWC buffer and return it in `like`'s layout (what the fake says)."""
    want = torch.empty_like(like)
    if want.is_contiguous(memory_format=torch.channels_last):
        fill(want)
        return want
    tmp = torch.empty_like(like, memory_format=torch.channels_last)
    fill(tmp)
    return want.copy_(tmp)


def lrn_forward(
    z: Tensor, size: int, alpha: float, beta: float, k: float, groups: int, relu: bool
) -> tuple[Tensor, Tensor]:
    n, c, h, w = z.shape
    zc, rows = _nhwc(z), n * h * w
    br, bc = _blocks(c)
    grid = (triton.cdiv(rows, br), triton.cdiv(c, bc))
    q = torch.empty_like(zc)

    def fill(y: Tensor) -> None:
        _lrn_fwd_kernel[grid](zc, y, q, rows, c, alpha / size, beta, k, CG=c // groups,
                              SIZE=size, RELU=relu, BLOCK_R=br, BLOCK_C=bc)  # fmt: skip

    y = _into(z, fill)
    return y, (q if q.stride() == y.stride() else torch.empty_like(z).copy_(q))


def lrn_backward(
    g: Tensor, z: Tensor, q: Tensor, size: int, alpha: float, beta: float, groups: int, relu: bool
) -> Tensor:
    n, c, h, w = z.shape
    gc, zc, qc, rows = _nhwc(g), _nhwc(z), _nhwc(q), n * h * w
    br, bc = _blocks(c)
    grid = (triton.cdiv(rows, br), triton.cdiv(c, bc))

    def fill(gz: Tensor) -> None:
        _lrn_bwd_kernel[grid](gc, zc, qc, gz, rows, c, 2.0 * alpha * beta / size,
                              beta / (beta + 1.0), CG=c // groups, SIZE=size, RELU=relu,
                              BLOCK_R=br, BLOCK_C=bc)  # fmt: skip

    return _into(z, fill)


def max_pool(x: Tensor, kernel: int, stride: int, relu: bool) -> tuple[Tensor, Tensor]:
    n, c, h, w = x.shape
    oh, ow = (h - kernel) // stride + 1, (w - kernel) // stride + 1
    xc = _nhwc(x)
    cl = torch.channels_last
    y = torch.empty((n, c, oh, ow), dtype=x.dtype, device=x.device, memory_format=cl)
    idx = torch.empty((n, c, oh, ow), dtype=torch.int8, device=x.device, memory_format=cl)
    bp, bc = _blocks(c)
    grid = (triton.cdiv(n * oh * ow, bp), triton.cdiv(c, bc))
    _pool_fwd_kernel[grid](xc, y, idx, n * oh * ow, c, h, w, oh, ow, K=kernel, S=stride,
                           RELU=relu, BLOCK_P=bp, BLOCK_C=bc)  # fmt: skip
    return y, idx


def max_pool_backward(g: Tensor, idx: Tensor, h: int, w: int, kernel: int, stride: int) -> Tensor:
    n, c, oh, ow = idx.shape
    gc = _nhwc(g)
    gx = torch.empty(
        (n, c, h, w), dtype=g.dtype, device=g.device, memory_format=torch.channels_last
    )
    bp, bc = _blocks(c)
    grid = (triton.cdiv(n * h * w, bp), triton.cdiv(c, bc))
    _pool_bwd_kernel[grid](gc, _nhwc(idx), gx, n * h * w, c, h, w, oh, ow, K=kernel, S=stride,
                           BLOCK_P=bp, BLOCK_C=bc)  # fmt: skip
    return gx
