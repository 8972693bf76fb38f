"""Invariance study (Zeiler-Fergus style, as in the seed slides): how a trained net's top-1
output and feature distances change under translation, scaling and rotation of test images."""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from train import checkpoint as ckpt
from train.alexnet import build_model
from train.data import ImageDataset, collate_batch, load_samples
from train.prep import DevicePrep

TRANSFORMS: dict[str, list[float]] = {
    "translation": [0, 5, 10, 20, 30, 40, 60],  # vertical shift in pixels of the 256 image
    "scale": [1.0, 0.8, 0.9, 1.1, 1.2, 1.4, 1.6],
    "rotation": [0, 15, 30, 45, 90, 135, 180],  # degrees
}


def transform(x: Tensor, kind: str, amount: float) -> Tensor:
    """Applies one transform to a float NCHW batch (zero fill outside the image)."""
    n = x.shape[0]
    theta = torch.zeros(n, 2, 3, dtype=x.dtype, device=x.device)
    if kind == "translation":
        theta[:, 0, 0] = theta[:, 1, 1] = 1.0
        theta[:, 1, 2] = -2.0 * amount / x.shape[-2]
    elif kind == "scale":
        theta[:, 0, 0] = theta[:, 1, 1] = 1.0 / amount
    elif kind == "rotation":
        a = math.radians(amount)
        theta[:, 0, 0], theta[:, 0, 1] = math.cos(a), -math.sin(a)
        theta[:, 1, 0], theta[:, 1, 1] = math.sin(a), math.cos(a)
    else:
        raise ValueError(f"unknown transform {kind!r}")
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def _features(model: nn.Module, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """(conv5 pooled features, penultimate FC features, logits) of the grouped or tv net."""
    classifier = cast(nn.Sequential, model.classifier)  # both nets: features, classifier
    feats = cast(nn.Sequential, model.features)(x)
    if hasattr(model, "avgpool"):  # tv only
        feats = cast(nn.Module, model.avgpool)(feats)
    h = torch.flatten(feats, 1)
    penult = h
    for m in classifier:
        if isinstance(m, nn.Linear) and m is classifier[-1]:
            penult = h
        h = m(h)
    return torch.flatten(feats, 1), penult, h


@torch.no_grad()
def analyze(
    data_path: str,
    resume: str,
    out_dir: str,
    fmt: str = "auto",
    max_images: int = 200,
    batch_size: int = 50,
    device: str = "cpu",
) -> dict:
    """Writes invariance.csv and invariance.png under out_dir; returns their paths and rows."""
    state = ckpt.load(resume)
    cfg = ckpt.config_from_checkpoint(state, resume)
    model: nn.Module
    if cfg.arch == "alexnet-towers":
        cfg.arch, cfg.devices = "alexnet2012", ()
        from train.alexnet import AlexNet2012, AlexNetTowers, grouped_from_towers

        towers = AlexNetTowers(cfg.__class__(**{**cfg.to_dict(), "arch": "alexnet-towers"}))
        ckpt.load_model(towers, state, resume)
        model = AlexNet2012(cfg)
        grouped_from_towers(model, towers)
    else:
        model = build_model(cfg)
        ckpt.load_model(model, state, resume)
    dev = torch.device(device)
    model.to(dev).eval()
    args = state.get("args", {})
    resize, crop = int(args.get("resize_size", 256)), cfg.input_size
    samples, _ = load_samples(data_path, fmt, "val")
    samples = samples[:max_images]
    ds = ImageDataset(samples, train=False, resize=resize, crop=crop, full=True)
    loader = torch.utils.data.DataLoader(ds, batch_size=batch_size, collate_fn=collate_batch)
    prep = DevicePrep(dev, normalize=args.get("normalize", "paper"))
    acc: dict[tuple[str, float], list[float]] = {}
    for images, target, _ in loader:
        x = prep(images)  # full resize x resize squares; transform, then centre crop
        target = target.to(dev)
        o = (resize - crop) // 2
        base = _features(model, x[..., o : o + crop, o : o + crop])
        for kind, amounts in TRANSFORMS.items():
            for amount in amounts:
                a = amount * resize / 256 if kind == "translation" else amount
                xt = transform(x, kind, a)[..., o : o + crop, o : o + crop]
                f5, f7, logits = _features(model, xt)
                probs = logits.softmax(1)
                row = acc.setdefault((kind, amount), [0.0] * 5)
                row[0] += float((logits.argmax(1) == target).sum())
                row[1] += float(probs.gather(1, target[:, None]).sum())
                row[2] += float(_ndist(f5, base[0]).sum())
                row[3] += float(_ndist(f7, base[1]).sum())
                row[4] += target.shape[0]
    rows = []
    for (kind, amount), (c1, pt, d5, d7, n) in acc.items():
        rows.append(
            {
                "transform": kind,
                "amount": amount,
                "top1_err": 1 - c1 / n,
                "p_true_class": pt / n,
                "dist_conv5": d5 / n,
                "dist_fc7": d7 / n,
                "images": int(n),
            }
        )
    rows.sort(key=lambda r: (r["transform"], r["amount"]))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    csv_path = out / "invariance.csv"
    with csv_path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    png_path = out / "invariance.png"
    plot(rows, png_path)
    return {"csv": str(csv_path), "png": str(png_path), "rows": rows}


def _ndist(a: Tensor, b: Tensor) -> Tensor:
    """Euclidean distance normalised by the original's norm (the slides' y axis)."""
    return (a - b).norm(dim=1) / b.norm(dim=1).clamp_min(1e-8)


def plot(rows: list[dict], path: Path) -> None:
    """Three panels (translation, scale, rotation) x three metrics, drawn with Pillow."""
    from PIL import Image, ImageDraw

    metrics = [
        ("p_true_class", (200, 40, 40)),
        ("dist_conv5", (40, 120, 200)),
        ("dist_fc7", (40, 160, 60)),
    ]
    pw, ph, m = 300, 220, 40
    img = Image.new("RGB", (3 * pw, ph + 30), "white")
    d = ImageDraw.Draw(img)
    for k, kind in enumerate(TRANSFORMS):
        pts = sorted((r for r in rows if r["transform"] == kind), key=lambda r: r["amount"])
        x0 = k * pw
        d.text((x0 + m, 5), kind, fill="black")
        d.rectangle((x0 + m, m, x0 + pw - 10, ph - 10), outline="black")
        xs = [r["amount"] for r in pts]
        lo, hi = min(xs), max(xs)
        for name, colour in metrics:
            vals = [r[name] for r in pts]
            top = max(1.0, max(vals))
            line = [
                (
                    x0 + m + (pw - 10 - m) * (a - lo) / max(hi - lo, 1e-9),
                    ph - 10 - (ph - 10 - m) * v / top,
                )
                for a, v in zip(xs, vals, strict=True)
            ]
            d.line(line, fill=colour, width=2)
        d.text((x0 + m, ph - 5), f"{lo:g} .. {hi:g}", fill="black")
    for i, (name, colour) in enumerate(metrics):
        d.text((10 + 200 * i, ph + 15), name, fill=colour)
    img.save(path)
