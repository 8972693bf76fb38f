"""bench/train_gpu.py's model side: the torchvision-style peer, step throughput, parity checks."""

from __future__ import annotations

import statistics
import time

import torch
import torch.nn.functional as F
from torch import nn

from train.alexnet import LRN, AlexNet2012, AlexNetConfig
from train.layers import MaxPool

T0 = time.perf_counter()


def log(msg: str) -> None:
    print(f"[{time.perf_counter() - T0:6.1f}s] {msg}", flush=True)


class TorchvisionStyleAlexNet(nn.Module):
    """torchvision.models.alexnet's layers, written out here so the peer needs no torchvision."""

    def __init__(self, num_classes: int = 1000, fc: int = 4096):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 64, 11, 4, 2), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2),
            nn.Conv2d(64, 192, 5, padding=2), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2),
            nn.Conv2d(192, 384, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(384, 256, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(256, 256, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2),
        )  # fmt: skip
        self.avgpool = nn.AdaptiveAvgPool2d((6, 6))
        self.classifier = nn.Sequential(
            nn.Dropout(0.5), nn.Linear(9216, fc), nn.ReLU(inplace=True),
            nn.Dropout(0.5), nn.Linear(fc, fc), nn.ReLU(inplace=True),
            nn.Linear(fc, num_classes),
        )  # fmt: skip

    def forward(self, x):
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


class TorchLRN(nn.Module):
    """The plain baseline: nn.LocalResponseNorm applied per half (what the 9.7k figure used)."""

    def __init__(self, groups: int, relu: bool):
        super().__init__()
        self.groups, self.relu = groups, relu
        self.lrn = nn.LocalResponseNorm(5, 1e-4, 0.75, 2.0)

    def forward(self, x):
        x = F.relu(x) if self.relu else x
        return torch.cat([self.lrn(c) for c in x.chunk(self.groups, 1)], 1)


def with_torch_lrn(model: nn.Module) -> nn.Module:
    for name, m in list(model.features.named_children()):
        if isinstance(m, LRN):
            model.features._modules[name] = TorchLRN(m.groups, m.relu)
    return model


def make_optimizer(
    model: nn.Module, device: torch.device, lr: float = 0.01
) -> torch.optim.Optimizer:
    kw = {"lr": lr, "momentum": 0.9, "weight_decay": 5e-4}
    if device.type == "cuda":
        try:
            return torch.optim.SGD(model.parameters(), fused=True, **kw)
        except (TypeError, RuntimeError):
            pass  # this torch or device has no fused SGD: the plain one below
    return torch.optim.SGD(model.parameters(), **kw)


def model_step_throughput(build, args, device, compile_, label: str) -> dict:
    """Median images/s of fwd+bwd+SGD over timed windows, after warm-up (and compilation)."""
    torch.manual_seed(0)
    model = build().to(device).to(memory_format=torch.channels_last)
    opt = make_optimizer(model, device)
    # compile_: False, True, or a torch.compile mode ("reduce-overhead" = CUDA graphs)
    if isinstance(compile_, str):
        run = torch.compile(model, mode=compile_)
    else:
        run = torch.compile(model) if compile_ else model
    b, size = args.batch_size, args.crop
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    xs = [
        torch.randn(b, 3, size, size, device=device)
        .mul(60)
        .to(dtype)
        .contiguous(memory_format=torch.channels_last)
        for _ in range(2)
    ]
    ys = [torch.randint(0, args.classes, (b,), device=device) for _ in range(2)]

    def step(i: int) -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            out = run(xs[i % 2])
            loss = F.cross_entropy(out.float(), ys[i % 2])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    t = time.perf_counter()
    for i in range(args.warmup):
        step(i)
    sync(device)
    if args.profile:
        profile(step, device, label)
    log(
        f"{label}: warm-up {time.perf_counter() - t:.1f}s (includes compile)"
        if compile_
        else f"{label}: warm-up {time.perf_counter() - t:.1f}s"
    )
    rates = []
    for _ in range(args.windows):
        sync(device)
        t = time.perf_counter()
        for i in range(args.steps):
            step(i)
        sync(device)
        rates.append(b * args.steps / (time.perf_counter() - t))
    med = statistics.median(rates)
    log(f"{label}: {med:,.0f} img/s (windows {', '.join(f'{r:,.0f}' for r in rates)})")
    return {"images_per_s": med, "windows": rates, "model": model, "compiled": run}


def profile(step, device: torch.device, label: str) -> None:
    """Top kernels of a few steps (device time), to see where a variant spends it."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as prof

    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with prof(activities=acts) as p:
        for i in range(5):
            step(i)
        sync(device)
    key = "self_device_time_total" if device.type == "cuda" else "self_cpu_time_total"
    print(f"--- profile {label} (5 steps)")
    print(p.key_averages().table(sort_by=key, row_limit=25, max_name_column_width=70))


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def checks(device: torch.device, store: dict) -> None:
    """Correctness on this device: fast LRN (eager and compiled, bf16) vs nn.LocalResponseNorm,
    and the grouped net vs two towers (both on this device) with the same weights."""
    from train.alexnet import AlexNetTowers, copy_weights

    torch.manual_seed(0)
    x = (torch.randn(8, 96, 27, 27, device=device) * 20).contiguous(
        memory_format=torch.channels_last
    )
    ref = torch.cat([nn.LocalResponseNorm(5, 1e-4, 0.75, 2.0)(c) for c in x.relu().chunk(2, 1)], 1)
    lrn, lrn_fn = LRN(groups=2, relu=True), LRN(groups=2, relu=True)
    lrn_fn.impl = "function"
    for label, fn in (("kernel eager", lrn), ("kernel compiled", torch.compile(lrn)),
                      ("function compiled", torch.compile(lrn_fn))):  # fmt: skip
        try:
            xb = x.detach().to(torch.bfloat16).requires_grad_(True)
            y = fn(xb)
            y.float().square().sum().backward()
            xr = x.detach().clone().requires_grad_(True)
            yr = torch.cat(
                [nn.LocalResponseNorm(5, 1e-4, 0.75, 2.0)(c) for c in xr.relu().chunk(2, 1)], 1
            )
            yr.square().sum().backward()
            ey = ((y.float() - ref).norm() / ref.norm()).item()
            eg = ((xb.grad.float() - xr.grad).norm() / xr.grad.norm()).item()
            log(
                f"check LRN {label} bf16 vs nn.LocalResponseNorm fp32: rel err out {ey:.1e}, "
                f"grad {eg:.1e}, channels_last kept: {y.is_contiguous(memory_format=torch.channels_last)}"
            )
            store[f"lrn_{label}_rel_err"] = [ey, eg]
        except Exception as e:  # noqa: BLE001
            log(f"check LRN {label}: FAILED {type(e).__name__}: {e}")
    try:
        xp = (torch.randn(8, 96, 55, 55, device=device) * 4).to(torch.bfloat16)
        xp = xp.contiguous(memory_format=torch.channels_last)
        for relu in (False, True):
            pool = MaxPool(relu=relu)
            xa, xr = xp.clone().requires_grad_(True), xp.clone().requires_grad_(True)
            ya, yr = pool(xa), F.max_pool2d(xr.relu() if relu else xr, 3, 2)
            g = torch.randn_like(yr)
            (ya * g).sum().backward()
            (yr * g).sum().backward()
            same = torch.equal(ya, yr) and torch.equal(xa.grad, xr.grad)
            log(f"check max-pool kernel (relu={relu}) vs F.max_pool2d bf16: identical {same}")
            store[f"pool_relu{relu}_identical"] = same
    except Exception as e:  # noqa: BLE001
        log(f"check max-pool: FAILED {type(e).__name__}: {e}")
    try:
        cfg = AlexNetConfig(num_classes=10)
        g = AlexNet2012(cfg).to(device).eval()
        t = AlexNetTowers(cfg, devices=(str(device), str(device))).eval()
        copy_weights(g, t)
        xi = torch.randn(4, 3, 224, 224, device=device) * 50
        with torch.no_grad():
            a, b = g(xi), t(xi)
        err = ((a - b).norm() / a.norm()).item()
        log(f"check grouped vs two towers (fp32, {device}): rel err {err:.1e}")
        store["towers_rel_err"] = err
    except Exception as e:  # noqa: BLE001
        log(f"check towers: FAILED {type(e).__name__}: {e}")
