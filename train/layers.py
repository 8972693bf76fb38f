"""Layers of the 2012 AlexNet made fast: ReLU+LRN, max-pool, conv1, grouped convs."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from train import kernels


# ---------------------------------------------------------------- local response normalisation
def _channels_last_view(x: Tensor) -> tuple[Tensor, int]:
    """A view whose channel axis is contiguous when x is channels_last, so LRN reads it in place."""
    if (
        x.dim() == 4
        and not x.is_contiguous()
        and x.is_contiguous(memory_format=torch.channels_last)
    ):
        return x.permute(0, 2, 3, 1), -1
    return x, 1


def _compute_dtype(x: Tensor) -> torch.dtype:
    # bf16/fp16 inputs are normalised in fp32 (the pow would lose too much); fp64 stays fp64.
    return torch.promote_types(x.dtype, torch.float32)


def lrn_reference(x: Tensor, size: int, alpha: float, beta: float, k: float, groups: int) -> Tensor:
    """LRN written with plain differentiable ops: torch.compile fuses it into one kernel."""
    v, cdim = _channels_last_view(x)
    xf = v.to(_compute_dtype(x))
    div = (k + (alpha / size) * kernels.window_sum(xf * xf, size, groups, cdim)).pow(-beta)
    y = (xf * div).to(x.dtype)
    return y.permute(0, 3, 1, 2) if cdim == -1 else y


class _LRNFunction(torch.autograd.Function):
    """LRN with a hand-written backward that saves the denominator d, so backward needs one
    window sum of a pointwise term instead of nested windows (what autograd of the plain ops
    gives, and what torch.compile would otherwise recompute per element)."""

    @staticmethod
    def forward(ctx, x: Tensor, size: int, alpha: float, beta: float, k: float, groups: int):
        v, cdim = _channels_last_view(x)
        xf = v.to(_compute_dtype(x))
        d = k + (alpha / size) * kernels.window_sum(xf * xf, size, groups, cdim)
        y = (xf * d.pow(-beta)).to(x.dtype)
        # d in the input's dtype: bf16 costs the gradient ~0.3% relative error, like bf16 itself
        ctx.save_for_backward(x, d.to(x.dtype))
        ctx.size, ctx.alpha, ctx.beta, ctx.groups = size, alpha, beta, groups
        return y.permute(0, 3, 1, 2) if cdim == -1 else y

    @staticmethod
    def backward(ctx, g: Tensor):
        x, d = ctx.saved_tensors
        size, alpha, beta, groups = ctx.size, ctx.alpha, ctx.beta, ctx.groups
        v, cdim = _channels_last_view(x)
        if cdim == -1:  # read g in x's layout: mixed layouts make every load uncoalesced
            g = g.contiguous(memory_format=torch.channels_last)
        gv = g.permute(0, 2, 3, 1) if cdim == -1 else g
        ct = _compute_dtype(x)
        xf, gf, df = v.to(ct), gv.to(ct), d.to(ct)
        dpow = df.pow(-beta)
        # dy_j/dx_i = [i == j] d_j^-b - (2ab/n) x_i x_j d_j^(-b-1) for i in window(j): the second
        # term sums g x d^(-b-1) over the j whose window holds i (the same window for odd sizes).
        t = kernels.window_sum(gf * xf * dpow / df, size, groups, cdim, reverse=True)
        gx = (gf * dpow - (2.0 * alpha * beta / size) * xf * t).to(x.dtype)
        return (gx.permute(0, 3, 1, 2) if cdim == -1 else gx), None, None, None, None, None


class LRN(nn.Module):
    """`nn.LocalResponseNorm(5, 1e-4, 0.75, 2)` per channel group, of relu(x) when `relu` (the
    2012 net's ReLU is fused in: one pass fewer each way). impl "auto" (default) runs the
    `train.kernels` op (a Triton kernel each way) on CUDA with Triton and _LRNFunction elsewhere;
    "kernel" always the op (its torch form off CUDA), "function" _LRNFunction, "reference" the
    plain differentiable ops."""

    impl = "auto"

    def __init__(
        self,
        size: int = 5,
        alpha: float = 1e-4,
        beta: float = 0.75,
        k: float = 2.0,
        groups: int = 1,
        relu: bool = False,
    ):
        super().__init__()
        self.size, self.alpha, self.beta, self.k, self.groups = size, alpha, beta, k, groups
        self.relu = relu

    def forward(self, x: Tensor) -> Tensor:
        args = (self.size, self.alpha, self.beta, self.k, self.groups)
        impl = self.impl
        if impl == "auto":
            impl = "kernel" if kernels.triton_ready(x) else "function"
        if impl == "kernel":
            return kernels.lrn(x, *args, self.relu)
        if self.relu:
            x = F.relu(x)
        if impl == "reference" or not (torch.is_grad_enabled() and x.requires_grad):
            return lrn_reference(x, *args)
        return _LRNFunction.apply(x, *args)

    def extra_repr(self) -> str:
        return (
            f"size={self.size}, alpha={self.alpha}, beta={self.beta}, k={self.k}, "
            f"groups={self.groups}, relu={self.relu}"
        )


class MaxPool(nn.MaxPool2d):
    """The 2012 net's overlapping 3x3 stride-2 max-pool, of relu(x) when `relu`. impl "auto"
    runs the `train.kernels` op (Triton, int8 window indices) on CUDA with Triton and
    F.max_pool2d elsewhere; "kernel" always the op, "native" always F.max_pool2d."""

    impl = "auto"
    kernel_size: int  # always ints here (nn.MaxPool2d allows pairs)
    stride: int

    def __init__(self, kernel_size: int = 3, stride: int = 2, relu: bool = False):
        super().__init__(kernel_size, stride)
        self.relu = relu

    def forward(self, x: Tensor) -> Tensor:
        impl = self.impl
        if impl == "auto":
            impl = "kernel" if kernels.triton_ready(x) else "native"
        if impl == "kernel":
            return kernels.max_pool(x, self.kernel_size, self.stride, self.relu)
        return F.max_pool2d(F.relu(x) if self.relu else x, self.kernel_size, self.stride)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, relu={self.relu}"


class StemConv(nn.Conv2d):
    """conv1 (11x11, stride 4). impl "s2d" runs it as space-to-depth: 4x4 pixel blocks become 48
    channels and the zero-padded 12x12 kernel a 3x3 one, the same arithmetic in a shape cuDNN
    runs fast (a 3-channel 11x11 stride-4 conv falls back to slow kernels on bf16)."""

    impl = "direct"

    def forward(self, x: Tensor) -> Tensor:
        if self.impl != "s2d":
            return super().forward(x)
        r = self.stride[0]
        kb = -(-self.kernel_size[0] // r)  # kernel side in blocks (3 for 11 / 4)
        h, w = x.shape[-2:]
        oh, ow = (h - self.kernel_size[0]) // r + 1, (w - self.kernel_size[1]) // r + 1
        ph, pw = (oh + kb - 1) * r - h, (ow + kb - 1) * r - w
        cl = x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
        x = F.pad(x, (0, max(pw, 0), 0, max(ph, 0)))[..., : (oh + kb - 1) * r, : (ow + kb - 1) * r]
        x = F.pixel_unshuffle(x, r)
        if cl:
            x = x.contiguous(memory_format=torch.channels_last)
        o, c, kh, kw = self.weight.shape
        wt = F.pad(self.weight, (0, kb * r - kw, 0, kb * r - kh))
        wt = wt.view(o, c, kb, r, kb, r).permute(0, 1, 3, 5, 2, 4).reshape(o, c * r * r, kb, kb)
        return F.conv2d(x, wt.to(memory_format=torch.channels_last) if cl else wt, self.bias)


# ---------------------------------------------------------------- grouped (one device) form
class GConv(nn.Conv2d):
    """Conv2d whose groups run as one cuDNN grouped conv ("groups"), as dense convs on channel
    slices ("split"), or as one dense conv with a block-diagonal weight ("blockdiag": twice the
    multiply-adds, but the dense kernels cuDNN tunes hardest; the off-diagonal blocks are zeros
    built each step, so they get no gradient and the layer stays the paper's)."""

    impl = "groups"

    def forward(self, x: Tensor) -> Tensor:
        if self.groups == 1 or self.impl == "groups":
            return super().forward(x)
        if self.impl == "blockdiag":
            g, (o, ci) = self.groups, self.weight.shape[:2]
            blocks = self.weight.unflatten(0, (g, o // g))  # g, o/g, ci, kh, kw
            eye = torch.eye(g, dtype=self.weight.dtype, device=self.weight.device)
            # w[a, p, b, q] = eye[a, b] * blocks[a, p, q]: output group a sees input group b == a
            w = eye[:, None, :, None, None, None] * blocks[:, :, None]
            w = w.reshape(o, g * ci, *self.weight.shape[2:])
            if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
                w = w.contiguous(memory_format=torch.channels_last)
            return F.conv2d(x, w, self.bias, self.stride, self.padding)
        xs = x.chunk(self.groups, 1)
        ws = self.weight.chunk(self.groups, 0)
        bs = self.bias.chunk(self.groups, 0) if self.bias is not None else [None] * self.groups
        outs = [
            F.conv2d(xi, wi, bi, self.stride, self.padding)
            for xi, wi, bi in zip(xs, ws, bs, strict=True)
        ]
        return torch.cat(outs, 1)


def set_group_impl(model: nn.Module, impl: str) -> None:
    for m in model.modules():
        if isinstance(m, GConv):
            m.impl = impl


def set_stem_impl(model: nn.Module, impl: str) -> None:
    for m in model.modules():
        if isinstance(m, StemConv):
            m.impl = impl


def set_lrn_impl(model: nn.Module, impl: str) -> None:
    for m in model.modules():
        if isinstance(m, LRN):
            m.impl = impl


def set_pool_impl(model: nn.Module, impl: str) -> None:
    for m in model.modules():
        if isinstance(m, MaxPool):
            m.impl = impl
