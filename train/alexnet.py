"""The 2012 AlexNet (grouped and two-tower forms), its ablations, and torchvision's single tower."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

ABLATIONS = ("none", "no-fc7", "no-fc6-fc7", "no-conv3-conv4", "no-conv3-conv4-fc6-fc7")
ARCHS = ("alexnet2012", "alexnet-towers", "alexnet-tv")


@dataclass
class AlexNetConfig:
    """Everything that shapes the network; `--arch`, `--ablate` etc. resolve into one of these."""

    num_classes: int = 1000
    # 224 is padded to 227 (right/bottom by 3: the 2012 code rounded the module count up); 227 as is.
    input_size: int = 224
    arch: str = "alexnet2012"
    ablate: str = "none"
    lrn: bool = True
    dropout: float = 0.5
    # Width of the hidden FC layers (4096 in the paper); smaller only for quick tests.
    fc_dim: int = 4096
    init_std: float = 0.01
    # How the two-GPU split runs on one device: cuDNN grouped convs, or two dense convs ("split").
    group_impl: str = "groups"
    devices: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.ablate not in ABLATIONS:
            raise ValueError(f"unknown ablation {self.ablate!r}; choose from {ABLATIONS}")
        if self.arch not in ARCHS:
            raise ValueError(f"unknown arch {self.arch!r}; choose from {ARCHS}")
        if self.group_impl not in ("groups", "split"):
            raise ValueError("group_impl must be 'groups' or 'split'")
        if self.input_size < 63:
            raise ValueError("input_size must be at least 63 (the conv/pool stack needs it)")

    @property
    def pad(self) -> int:
        return 0 if (self.input_size - 11) % 4 == 0 else 3

    @property
    def feature_size(self) -> int:
        """Spatial side of conv5's pooled output (6 for 224/227)."""
        s = (self.input_size + self.pad - 11) // 4 + 1
        for _ in range(3):  # after conv1, conv2 and conv5; convs 2-5 keep the size
            s = (s - 3) // 2 + 1
        return s

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


# ---------------------------------------------------------------- local response normalisation
def _window_sum(sq: Tensor, size: int, groups: int, channel_dim: int) -> Tensor:
    """Sum of `size` neighbouring channels of `sq`, zero-padded at each group's edges."""
    half = size // 2
    shape = list(sq.shape)
    c = shape[channel_dim]
    grouped = sq.unflatten(channel_dim, (groups, c // groups))
    cdim = channel_dim + 1 if channel_dim >= 0 else channel_dim
    pads = [0, 0] * (grouped.dim() - 1 - (cdim % grouped.dim()))
    padded = F.pad(grouped, pads + [half, size - 1 - half])
    n = grouped.shape[cdim]
    out = padded.narrow(cdim, 0, n)
    for i in range(1, size):
        out = out + padded.narrow(cdim, i, n)
    return out.flatten(cdim - 1 if cdim > 0 else cdim - 1, cdim)


def _channels_last_view(x: Tensor) -> tuple[Tensor, int]:
    """A view whose channel axis is contiguous when x is channels_last, so LRN reads it in place."""
    if x.dim() == 4 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last):
        return x.permute(0, 2, 3, 1), -1
    return x, 1


def lrn_reference(x: Tensor, size: int, alpha: float, beta: float, k: float, groups: int) -> Tensor:
    """LRN written with plain differentiable ops: torch.compile fuses it into one kernel."""
    v, cdim = _channels_last_view(x)
    xf = v.float()
    div = (k + (alpha / size) * _window_sum(xf * xf, size, groups, cdim)).pow(-beta)
    y = (xf * div).to(x.dtype)
    return y.permute(0, 3, 1, 2) if cdim == -1 else y


class _LRNFunction(torch.autograd.Function):
    """Eager LRN: computes in fp32, saves only the input, recomputes the window sum in backward."""

    @staticmethod
    def forward(ctx, x: Tensor, size: int, alpha: float, beta: float, k: float, groups: int):
        ctx.save_for_backward(x)
        ctx.params = (size, alpha, beta, k, groups)
        return lrn_reference(x, size, alpha, beta, k, groups)

    @staticmethod
    def backward(ctx, g: Tensor):
        (x,) = ctx.saved_tensors
        size, alpha, beta, k, groups = ctx.params
        v, cdim = _channels_last_view(x)
        gv = g.permute(0, 2, 3, 1) if cdim == -1 else g
        xf = v.float()
        d = k + (alpha / size) * _window_sum(xf * xf, size, groups, cdim)
        dpow = d.pow(-beta)
        # d y_j / d x_i = delta_ij d_j^-b - (2ab/n) x_i x_j d_j^(-b-1) for i in window(j);
        # the window is symmetric, so the second term is a window sum of g*x*d^(-b-1).
        t = _window_sum(gv.float() * xf * dpow / d, size, groups, cdim)
        gx = gv.float() * dpow - (2.0 * alpha * beta / size) * xf * t
        gx = gx.to(x.dtype)
        return (gx.permute(0, 3, 1, 2) if cdim == -1 else gx), None, None, None, None, None


class LRN(nn.Module):
    """`nn.LocalResponseNorm(5, 1e-4, 0.75, 2)` per channel group, fast on bf16 and channels_last."""

    def __init__(self, size: int = 5, alpha: float = 1e-4, beta: float = 0.75, k: float = 2.0, groups: int = 1):
        super().__init__()
        self.size, self.alpha, self.beta, self.k, self.groups = size, alpha, beta, k, groups

    def forward(self, x: Tensor) -> Tensor:
        if torch.compiler.is_compiling() or not torch.is_grad_enabled():
            return lrn_reference(x, self.size, self.alpha, self.beta, self.k, self.groups)
        return _LRNFunction.apply(x, self.size, self.alpha, self.beta, self.k, self.groups)

    def extra_repr(self) -> str:
        return f"size={self.size}, alpha={self.alpha}, beta={self.beta}, k={self.k}, groups={self.groups}"


# ---------------------------------------------------------------- grouped (one device) form
class GConv(nn.Conv2d):
    """Conv2d whose groups either run as one cuDNN grouped conv or as dense convs on slices."""

    impl = "groups"

    def forward(self, x: Tensor) -> Tensor:
        if self.groups == 1 or self.impl == "groups":
            return super().forward(x)
        xs = x.chunk(self.groups, 1)
        ws = self.weight.chunk(self.groups, 0)
        bs = self.bias.chunk(self.groups, 0) if self.bias is not None else [None] * self.groups
        outs = [
            F.conv2d(xi, wi, bi, self.stride, self.padding)
            for xi, wi, bi in zip(xs, ws, bs, strict=True)
        ]
        return torch.cat(outs, 1)


def _has(cfg: AlexNetConfig, layer: str) -> bool:
    return layer not in cfg.ablate.split("-no-")[0].removeprefix("no-").split("-") or (
        cfg.ablate == "none"
    )


def _layers_kept(cfg: AlexNetConfig) -> dict[str, bool]:
    drop = set() if cfg.ablate == "none" else set(cfg.ablate.removeprefix("no-").split("-"))
    return {name: name not in drop for name in ("conv3", "conv4", "fc6", "fc7")}


def _pool() -> nn.MaxPool2d:
    return nn.MaxPool2d(3, 2)


class AlexNet2012(nn.Module):
    """The 2012 net on one device: groups=2 in conv2/4/5 and per-half LRN reproduce the two GPUs."""

    def __init__(self, cfg: AlexNetConfig):
        super().__init__()
        self.cfg = cfg
        keep = _layers_kept(cfg)
        act = lambda: nn.ReLU(inplace=True)  # noqa: E731
        norm = lambda g: LRN(groups=g) if cfg.lrn else nn.Identity()  # noqa: E731
        f: list[nn.Module] = [nn.ZeroPad2d((0, cfg.pad, 0, cfg.pad)) if cfg.pad else nn.Identity()]
        f += [nn.Conv2d(3, 96, 11, stride=4), act(), norm(2), _pool()]
        f += [GConv(96, 256, 5, padding=2, groups=2), act(), norm(2), _pool()]
        c5_in = 256
        if keep["conv3"]:
            f += [nn.Conv2d(256, 384, 3, padding=1), act()]
            c5_in = 384
        if keep["conv4"]:
            f += [GConv(c5_in, 384, 3, padding=1, groups=2), act()]
            c5_in = 384
        f += [GConv(c5_in, 256, 3, padding=1, groups=2), act(), _pool()]
        self.features = nn.Sequential(*f)
        d = cfg.fc_dim
        flat = 256 * cfg.feature_size**2
        c: list[nn.Module] = []
        if keep["fc6"]:
            c += [nn.Linear(flat, d), act(), nn.Dropout(cfg.dropout)]
            flat = d
        if keep["fc7"]:
            c += [nn.Linear(flat, d), act(), nn.Dropout(cfg.dropout)]
            flat = d
        c += [nn.Linear(flat, cfg.num_classes)]
        self.classifier = nn.Sequential(*c)
        set_group_impl(self, cfg.group_impl)
        init_paper(self, cfg.init_std)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(torch.flatten(self.features(x), 1))

    def feature_layers(self) -> nn.Sequential:
        return self.features


def set_group_impl(model: nn.Module, impl: str) -> None:
    for m in model.modules():
        if isinstance(m, GConv):
            m.impl = impl


def init_paper(model: nn.Module, std: float) -> None:
    """Weights N(0, std); biases 1 in grouped convs (conv2/4/5) and hidden FC layers, else 0."""
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    for m in model.modules():
        if isinstance(m, nn.Conv2d | nn.Linear):
            nn.init.normal_(m.weight, 0.0, std)
            one = (isinstance(m, nn.Conv2d) and m.groups > 1) or (
                isinstance(m, nn.Linear) and m is not linears[-1]
            )
            nn.init.constant_(m.bias, 1.0 if one else 0.0)
