"""The 2012 AlexNet (grouped and two-tower forms), its ablations, and torchvision's single tower."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from train.args import ABLATIONS, ARCHS
from train.layers import (
    LRN,
    GConv,
    MaxPool,
    StemConv,
    lrn_reference,
    set_group_impl,
    set_lrn_impl,
    set_pool_impl,
    set_stem_impl,
)

__all__ = [
    "ABLATIONS",
    "ARCHS",
    "LRN",
    "AlexNet2012",
    "AlexNetConfig",
    "AlexNetTV",
    "AlexNetTowers",
    "StemConv",
    "build_model",
    "copy_weights",
    "count_parameters",
    "lrn_reference",
    "set_lrn_impl",
    "set_pool_impl",
]


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
    # "paper": every weight N(0, init_std); "released": the 2012 code's 0.03 for conv3-5.
    init: str = "paper"
    # How the two-GPU split runs on one device: cuDNN grouped convs, or two dense convs ("split").
    group_impl: str = "groups"
    # conv1 as cuDNN's direct conv, or as space-to-depth ("s2d": same result, faster on GPUs)
    stem: str = "direct"
    devices: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.ablate not in ABLATIONS:
            raise ValueError(f"unknown ablation {self.ablate!r}; choose from {ABLATIONS}")
        if self.arch not in ARCHS:
            raise ValueError(f"unknown arch {self.arch!r}; choose from {ARCHS}")
        if self.init not in ("paper", "released"):
            raise ValueError("init must be 'paper' or 'released'")
        if self.stem not in ("direct", "s2d"):
            raise ValueError("stem must be 'direct' or 's2d'")
        if self.group_impl not in ("groups", "split", "blockdiag"):
            raise ValueError("group_impl must be 'groups', 'split' or 'blockdiag'")
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


def _layers_kept(cfg: AlexNetConfig) -> dict[str, bool]:
    drop = set() if cfg.ablate == "none" else set(cfg.ablate.removeprefix("no-").split("-"))
    return {name: name not in drop for name in ("conv3", "conv4", "fc6", "fc7")}


def _pool(relu: bool = False) -> MaxPool:
    return MaxPool(3, 2, relu=relu)


Layer = nn.Conv2d | nn.Linear  # the modules that hold the net's weights


def _bias(m: Layer) -> Tensor:
    """The layer's bias (every conv/linear in these nets has one)."""
    assert m.bias is not None, f"{type(m).__name__} without a bias"
    return m.bias


class AlexNet2012(nn.Module):
    """The 2012 net on one device: groups=2 in conv2/4/5 and per-half LRN reproduce the two GPUs."""

    def __init__(self, cfg: AlexNetConfig):
        super().__init__()
        self.cfg = cfg
        keep = _layers_kept(cfg)
        act = lambda: nn.ReLU(inplace=True)  # noqa: E731
        # the ReLUs before LRN and before the last pool run inside those layers (one pass fewer)
        relu_norm = lambda g: LRN(groups=g, relu=True) if cfg.lrn else act()  # noqa: E731
        f: list[nn.Module] = [nn.ZeroPad2d((0, cfg.pad, 0, cfg.pad)) if cfg.pad else nn.Identity()]
        f += [StemConv(3, 96, 11, stride=4), relu_norm(2), _pool()]
        f += [GConv(96, 256, 5, padding=2, groups=2), relu_norm(2), _pool()]
        c5_in = 256
        if keep["conv3"]:
            f += [nn.Conv2d(256, 384, 3, padding=1), act()]
            c5_in = 384
        if keep["conv4"]:
            f += [GConv(c5_in, 384, 3, padding=1, groups=2), act()]
            c5_in = 384
        f += [GConv(c5_in, 256, 3, padding=1, groups=2), _pool(relu=True)]
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
        set_stem_impl(self, cfg.stem)
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """The config's initialisation (paper: N(0, init_std); released: 0.03 in conv3-5)."""
        init_paper(self, self.cfg.init_std)
        if self.cfg.init == "released":
            for name in ("conv3", "conv4", "conv5"):
                m = grouped_roles(self).get(name)
                if m is not None:
                    nn.init.normal_(m.weight, 0.0, 0.03)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(torch.flatten(self.features(x), 1))


def init_paper(model: nn.Module, std: float) -> None:
    """Weights N(0, std); biases 1 in grouped convs (conv2/4/5) and hidden FC layers, else 0."""
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    for m in model.modules():
        if isinstance(m, nn.Conv2d | nn.Linear):
            nn.init.normal_(m.weight, 0.0, std)
            one = (isinstance(m, nn.Conv2d) and m.groups > 1) or (
                isinstance(m, nn.Linear) and m is not linears[-1]
            )
            nn.init.constant_(_bias(m), 1.0 if one else 0.0)


def grouped_roles(model: AlexNet2012) -> dict[str, Layer]:
    """The paper's layer names -> the grouped net's conv/linear modules."""
    keep = _layers_kept(model.cfg)
    convs: list[Layer] = [m for m in model.features if isinstance(m, nn.Conv2d)]
    fcs: list[Layer] = [m for m in model.classifier if isinstance(m, nn.Linear)]
    cnames = ["conv1", "conv2"] + [n for n in ("conv3", "conv4") if keep[n]] + ["conv5"]
    fnames = [n for n in ("fc6", "fc7") if keep[n]] + ["fc8"]
    return dict(zip(cnames + fnames, convs + fcs, strict=True))


# ---------------------------------------------------------------- two towers on two devices
class Tower(nn.Module):
    """One GPU's half of the 2012 net: half of every layer's units."""

    def __init__(self, cfg: AlexNetConfig):
        super().__init__()
        keep = _layers_kept(cfg)
        self.pad = nn.ZeroPad2d((0, cfg.pad, 0, cfg.pad)) if cfg.pad else nn.Identity()
        self.norm = LRN(groups=1, relu=True) if cfg.lrn else nn.ReLU()
        self.pool, self.relu_pool = _pool(), _pool(relu=True)
        self.conv1 = StemConv(3, 48, 11, stride=4)
        self.conv2 = nn.Conv2d(48, 128, 5, padding=2)
        c5_in = 128
        self.conv3 = nn.Conv2d(256, 192, 3, padding=1) if keep["conv3"] else None
        c5_in = 192 if keep["conv3"] else c5_in
        self.conv4 = nn.Conv2d(c5_in, 192, 3, padding=1) if keep["conv4"] else None
        c5_in = 192 if keep["conv4"] else c5_in
        self.conv5 = nn.Conv2d(c5_in, 128, 3, padding=1)
        half, flat = cfg.fc_dim // 2, 256 * cfg.feature_size**2
        self.fc6 = nn.Linear(flat, half) if keep["fc6"] else None
        self.fc7 = nn.Linear(2 * half if keep["fc6"] else flat, half) if keep["fc7"] else None
        self.drop = nn.Dropout(cfg.dropout)

    def stage1(self, x: Tensor) -> Tensor:
        x = self.pool(self.norm(self.conv1(self.pad(x))))
        return self.pool(self.norm(self.conv2(x)))

    def layer(self, name: str) -> Layer:
        """The conv/linear called `name` (one the config keeps)."""
        m = getattr(self, name)
        assert m is not None, f"{name} is ablated"
        return m


class AlexNetTowers(nn.Module):
    """The 2012 net as two towers on two devices; they exchange activations only into conv3 and
    into each FC layer, where the paper's GPUs communicated."""

    def __init__(self, cfg: AlexNetConfig, devices: tuple[str, str] | None = None):
        super().__init__()
        self.cfg = cfg
        self.keep = _layers_kept(cfg)
        self.towers = nn.ModuleList([Tower(cfg), Tower(cfg)])
        if self.keep["fc7"] or self.keep["fc6"]:
            fc8_in = cfg.fc_dim // 2 * 2
        else:
            fc8_in = 256 * cfg.feature_size**2
        self.fc8 = nn.Linear(fc8_in, cfg.num_classes)
        with torch.no_grad():  # same init as the grouped net, layer by layer
            towers_from_grouped(self, AlexNet2012(dataclasses.replace(cfg, arch="alexnet2012")))
        set_stem_impl(self, cfg.stem)
        self.place(tuple(devices or cfg.devices or ("cpu", "cpu")))

    def place(self, devices: tuple[str | torch.device, ...]) -> AlexNetTowers:
        self.devices = (torch.device(devices[0]), torch.device(devices[1]))
        self.towers[0].to(self.devices[0])
        self.towers[1].to(self.devices[1])
        self.fc8.to(self.devices[0])
        return self

    def _exchange(self, hs: list[Tensor]) -> list[Tensor]:
        """Each device gets both halves, own device's copy first in paper order (tower 0, 1)."""
        d0, d1 = self.devices
        return [
            torch.cat([hs[0], hs[1].to(d0, non_blocking=True)], 1),
            torch.cat([hs[0].to(d1, non_blocking=True), hs[1]], 1),
        ]

    def forward(self, x: Tensor) -> Tensor:
        t = cast("list[Tower]", self.towers)  # a ModuleList of two Towers, indexed like a list
        hs = [t[i].stage1(x.to(self.devices[i], non_blocking=True)) for i in range(2)]
        if self.keep["conv3"]:
            both = self._exchange(hs)
            hs = [F.relu(t[i].layer("conv3")(both[i])) for i in range(2)]
        if self.keep["conv4"]:
            hs = [F.relu(t[i].layer("conv4")(hs[i])) for i in range(2)]
        hs = [torch.flatten(t[i].relu_pool(t[i].conv5(hs[i])), 1) for i in range(2)]
        for name in ("fc6", "fc7"):
            if self.keep[name]:
                both = self._exchange(hs)
                hs = [t[i].drop(F.relu(getattr(t[i], name)(both[i]))) for i in range(2)]
        return self.fc8(torch.cat([hs[0], hs[1].to(self.devices[0], non_blocking=True)], 1))


def _tower_roles(model: AlexNetTowers, i: int) -> dict[str, Layer]:
    tw = model.towers[i]
    names = ("conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7")
    return {n: getattr(tw, n) for n in names if getattr(tw, n) is not None}


@torch.no_grad()
def towers_from_grouped(dst: AlexNetTowers, src: AlexNet2012) -> None:
    """Copy weights grouped -> towers: tower i gets half i of each layer's output units."""
    roles = grouped_roles(src)
    for i in range(2):
        for name, m in _tower_roles(dst, i).items():
            n = m.weight.shape[0]
            m.weight.copy_(roles[name].weight[i * n : (i + 1) * n])
            _bias(m).copy_(_bias(roles[name])[i * n : (i + 1) * n])
    dst.fc8.weight.copy_(roles["fc8"].weight)
    dst.fc8.bias.copy_(_bias(roles["fc8"]))


@torch.no_grad()
def grouped_from_towers(dst: AlexNet2012, src: AlexNetTowers) -> None:
    """Copy weights towers -> grouped (the inverse of towers_from_grouped)."""
    roles = grouped_roles(dst)
    for i in range(2):
        for name, m in _tower_roles(src, i).items():
            n = m.weight.shape[0]
            roles[name].weight[i * n : (i + 1) * n].copy_(m.weight)
            _bias(roles[name])[i * n : (i + 1) * n].copy_(_bias(m))
    roles["fc8"].weight.copy_(src.fc8.weight)
    _bias(roles["fc8"]).copy_(src.fc8.bias)


def copy_weights(src: nn.Module, dst: nn.Module) -> None:
    """Copy weights between any two forms of the same 2012 config (grouped <-> towers)."""
    if isinstance(src, AlexNet2012) and isinstance(dst, AlexNetTowers):
        towers_from_grouped(dst, src)
    elif isinstance(src, AlexNetTowers) and isinstance(dst, AlexNet2012):
        grouped_from_towers(dst, src)
    elif type(src) is type(dst):
        dst.load_state_dict(src.state_dict())
    else:
        raise TypeError(f"cannot copy weights from {type(src).__name__} to {type(dst).__name__}")


# ---------------------------------------------------------------- torchvision's single tower
class AlexNetTV(nn.Module):
    """torchvision's later single-tower AlexNet (64-192-384-256-256, no LRN): a comparison."""

    def __init__(self, cfg: AlexNetConfig):
        super().__init__()
        self.cfg = cfg
        act = lambda: nn.ReLU(inplace=True)  # noqa: E731
        self.features = nn.Sequential(
            nn.Conv2d(3, 64, 11, stride=4, padding=2),
            act(),
            _pool(),
            nn.Conv2d(64, 192, 5, padding=2),
            act(),
            _pool(),
            nn.Conv2d(192, 384, 3, padding=1),
            act(),
            nn.Conv2d(384, 256, 3, padding=1),
            act(),
            nn.Conv2d(256, 256, 3, padding=1),
            act(),
            _pool(),
        )
        self.avgpool = nn.AdaptiveAvgPool2d((6, 6))
        d = cfg.fc_dim
        self.classifier = nn.Sequential(
            nn.Dropout(cfg.dropout),
            nn.Linear(256 * 36, d),
            act(),
            nn.Dropout(cfg.dropout),
            nn.Linear(d, d),
            act(),
            nn.Linear(d, cfg.num_classes),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


def build_model(cfg: AlexNetConfig) -> nn.Module:
    """The network `cfg` names (ablations apply to the 2012 forms)."""
    if cfg.arch == "alexnet-tv":
        if cfg.ablate != "none":
            raise ValueError("ablations apply to the 2012 net, not torchvision's variant")
        return AlexNetTV(cfg)
    if cfg.arch == "alexnet-towers":
        return AlexNetTowers(cfg)
    return AlexNet2012(cfg)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
