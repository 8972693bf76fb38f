"""CPU data loading for training: imnet's loader vs the torchvision reference's per-sample preset.

    python bench/train_loader.py                 # 4,096 generated 256-px JPEGs, all cores
    python bench/train_loader.py --smoke         # tiny (the tests run this)

Both read the same generated `ilsvrc` export through torch's DataLoader with the same workers and
batch size, and each epoch alternates between them. The peer is what torchvision's
`references/classification` does per image (Pillow decode, RandomResizedCrop to 224, random
flip, to float, normalise) written out with Pillow and torch, since torchvision is not a
dependency here. imnet does the paper's augmentation (a 224 crop of the 256 square and a flip)
into one uint8 batch and leaves the float work to the device. Also printed: the decode-only
floor (one core, no loader), images/s per worker, and imnet with a fresh shared buffer per batch
(torch's DataLoader default) against reused slots (train.slots)."""

from __future__ import annotations

import argparse
import io
import math
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from train.data import (  # noqa: E402
    EpochSampler,
    ImageDataset,
    _decode_rgb,
    _simplejpeg,
    collate_batch,
    load_samples,
)
from train.slots import SlotRef  # noqa: E402
from train.synthetic import make_export  # noqa: E402

MEAN = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)


class ReferencePreset(torch.utils.data.Dataset):
    """torchvision references/classification ClassificationPresetTrain (RandomResizedCrop 224,
    bilinear with antialias, horizontal flip p=0.5, PILToTensor, to float, Normalize)."""

    def __init__(self, paths: list[str], labels: list[int], crop: int = 224):
        self.paths, self.labels, self.crop = paths, labels, crop

    def __len__(self) -> int:
        return len(self.paths)

    def _box(self, w: int, h: int) -> tuple[int, int, int, int]:
        area = w * h  # torchvision's RandomResizedCrop.get_params, scale (0.08, 1), 3/4..4/3
        for _ in range(10):
            target = area * random.uniform(0.08, 1.0)
            ratio = math.exp(random.uniform(math.log(3 / 4), math.log(4 / 3)))
            cw, ch = round(math.sqrt(target * ratio)), round(math.sqrt(target / ratio))
            if 0 < cw <= w and 0 < ch <= h:
                x, y = random.randint(0, w - cw), random.randint(0, h - ch)
                return x, y, x + cw, y + ch
        s = min(w, h)
        return (w - s) // 2, (h - s) // 2, (w + s) // 2, (h + s) // 2

    def __getitem__(self, i: int):
        from PIL import Image

        with open(self.paths[i], "rb") as f:
            im = Image.open(io.BytesIO(f.read())).convert("RGB")
        im = im.resize((self.crop, self.crop), Image.BILINEAR, box=self._box(*im.size))
        if random.random() < 0.5:
            im = im.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        x = torch.from_numpy(np.array(im)).permute(2, 0, 1).float().div_(255)
        return (x - MEAN) / STD, self.labels[i]


def decode_floor(paths: list[str], seconds: float) -> float:
    """Images/s of decode alone (file read + JPEG decode) on one core."""
    n, t = 0, time.perf_counter()
    while time.perf_counter() - t < seconds:
        with open(paths[n % len(paths)], "rb") as f:
            _decode_rgb(f.read(), 256, "bench")
        n += 1
    return n / (time.perf_counter() - t)


def epoch_rate(loader, sampler=None, epoch: int = 0) -> float:
    """Images/s through `loader`; slot batches are resolved and their slots freed, as
    train.loaders.device_batches does once a batch is on the device."""
    if sampler is not None:
        sampler.set_epoch(epoch)
    slots = getattr(loader.dataset, "slots", None)
    cpu = torch.device("cpu")
    n, t = 0, time.perf_counter()
    for batch in loader:
        if isinstance(batch[0], SlotRef):
            n += slots.view(batch[0], cpu).shape[0]
            slots.release(batch[0], cpu)
        else:
            n += batch[0].shape[0]
    return n / (time.perf_counter() - t)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--images", type=int, default=4096)
    p.add_argument("--epochs", type=int, default=3, help="timed epochs per loader")
    p.add_argument("-j", "--workers", type=int, default=os.cpu_count() or 1)
    p.add_argument("-b", "--batch-size", type=int, default=256)
    p.add_argument("--smoke", action="store_true")
    args = p.parse_args(argv)
    if args.smoke:
        args.images, args.epochs, args.workers, args.batch_size = 32, 1, 1, 8
    sj = _simplejpeg()
    print(
        f"{args.images} images, {args.workers} workers, batch {args.batch_size}, "
        f"decoder: {'simplejpeg ' + sj.__version__ if sj else 'Pillow'}, torch {torch.__version__}"
    )
    with tempfile.TemporaryDirectory(prefix="imnet-loader-") as tmp:
        t = time.perf_counter()
        per = max(1, args.images // 8)
        root = make_export(Path(tmp), 8, per, 1, size=256, processes=args.workers)
        samples, _ = load_samples(root, "ilsvrc", "train")
        print(f"generated {len(samples)} JPEGs in {time.perf_counter() - t:.1f}s")
        paths = [s.path for s in samples]
        floor = decode_floor(paths, 0.5 if args.smoke else 3.0)
        print(f"decode floor (one core, no loader): {floor:,.0f} images/s")

        kw = dict(
            batch_size=args.batch_size,
            num_workers=args.workers,
            persistent_workers=args.workers > 0,
            prefetch_factor=4 if args.workers > 0 else None,
            drop_last=True,
        )
        loaders, samplers = {}, {}
        for name, slots in (("imnet, reused slots", True), ("imnet, fresh buffers", False)):
            ds = ImageDataset(samples, True, 256, 224, seed=0)
            if slots and args.workers > 0:
                ds.use_slots(args.batch_size, args.workers)
            samplers[name] = EpochSampler(len(ds), True, 0)
            loaders[name] = torch.utils.data.DataLoader(
                ds, sampler=samplers[name], collate_fn=collate_batch, **kw
            )
        ref_ds = ReferencePreset(paths, [s.label for s in samples])
        loaders["torchvision reference preset"] = torch.utils.data.DataLoader(
            ref_ds, shuffle=True, **kw
        )
        rates: dict[str, list[float]] = {k: [] for k in loaders}
        for e in range(args.epochs + 1):  # epoch 0 starts the worker pools, fills the page cache
            for name, loader in loaders.items():
                r = epoch_rate(loader, samplers.get(name), e)
                if e:
                    rates[name].append(r)
            if e:
                print(f"epoch {e}: " + "  ".join(f"{k} {v[-1]:,.0f}" for k, v in rates.items()))
        del loaders
    med = {k: statistics.median(v) for k, v in rates.items()}
    w = max(1, args.workers)
    print()
    print(f"{'loader':<34} images/s  per worker")
    for name, rate in med.items():
        print(f"{name:<34} {rate:>8,.0f}  {rate / w:>10,.0f}")
    print(f"{'decode floor, one core':<34} {floor:>8,.0f}")
    best = max(med["imnet, reused slots"], med["imnet, fresh buffers"])
    print(f"ratio imnet (best) / reference: {best / med['torchvision reference preset']:.2f}")
    slots_gain = med["imnet, reused slots"] / med["imnet, fresh buffers"]
    print(f"ratio reused slots / fresh buffers: {slots_gain:.2f}")
    print(f"imnet per worker / decode floor: {best / w / floor:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
