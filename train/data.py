"""Reading ilsvrc/webdataset exports: uint8 crops from loader workers, augmentation on the device."""

from __future__ import annotations

import io
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset, DistributedSampler, Sampler

# PCA lighting (Krizhevsky et al. 2012), for RGB in [0, 1]; rows of EIGVEC are R, G, B.
EIGVAL = (0.2175, 0.0188, 0.0045)
EIGVEC = ((-0.5675, 0.7192, 0.4009), (-0.5808, -0.0045, -0.8140), (-0.5836, -0.6948, 0.4203))
MEAN_RGB = (0.485, 0.456, 0.406)  # the ImageNet mean image reduced to one value per channel
STD_RGB = (0.229, 0.224, 0.225)


class ExportError(ValueError):
    """The export at --data-path is missing files or malformed; the message says which."""


@dataclass
class Sample:
    """Where one image lives: a file path, or (tar path, byte offset, size)."""

    label: int
    path: str
    offset: int = -1
    size: int = -1

    def read(self) -> bytes:
        with open(self.path, "rb") as f:
            if self.offset < 0:
                return f.read()
            f.seek(self.offset)
            return f.read(self.size)


def read_classes(root: Path) -> list[str]:
    """wnids in class-index order from LOC_synset_mapping.txt."""
    mapping = root / "LOC_synset_mapping.txt"
    if not mapping.exists():
        raise ExportError(f"{mapping} is missing: not an ilsvrc export")
    wnids = [ln.split()[0] for ln in mapping.read_text().splitlines() if ln.strip()]
    if not wnids:
        raise ExportError(f"{mapping} lists no classes")
    return wnids


def ilsvrc_samples(root: Path, split: str) -> tuple[list[Sample], list[str]]:
    """Samples of one split of an `ilsvrc` export; val labels come from the devkit ground truth."""
    wnids = read_classes(root)
    index = {w: i for i, w in enumerate(wnids)}
    samples: list[Sample] = []
    if split == "train":
        for w in wnids:
            d = root / "train" / w
            if d.is_dir():
                samples += [Sample(index[w], str(p)) for p in sorted(d.glob("*.JPEG"))]
    elif split == "val":
        files = sorted((root / "val").glob("ILSVRC2012_val_*.JPEG"))
        gt = root / "data" / "ILSVRC2012_validation_ground_truth.txt"
        if gt.exists():
            ids = [int(s) for s in gt.read_text().split()]
            labels = {f"ILSVRC2012_val_{i + 1:08d}": c - 1 for i, c in enumerate(ids)}
        else:
            sol = root / "LOC_val_solution.csv"
            if not sol.exists():
                raise ExportError(
                    f"{root}: no devkit ground truth nor LOC_val_solution.csv for val"
                )
            labels = {}
            for ln in sol.read_text().splitlines()[1:]:
                image_id, pred = ln.split(",", 1)
                labels[image_id] = index[pred.split()[0]]
        for p in files:
            if p.stem not in labels:
                raise ExportError(f"{p.name} has no ground-truth label")
            samples.append(Sample(labels[p.stem], str(p)))
    else:
        raise ExportError(f"unknown split {split!r}")
    if not samples:
        raise ExportError(f"{root}: the {split} split has no images")
    bad = [s.label for s in samples if not 0 <= s.label < len(wnids)]
    if bad:
        raise ExportError(f"{root}: {split} label {bad[0]} outside 0..{len(wnids) - 1}")
    return samples, wnids


def webdataset_samples(root: Path, split: str) -> tuple[list[Sample], int]:
    """Index `<split>-*.tar` shards by byte offset, so they read as a map-style dataset."""
    shards = sorted(root.glob(f"{split}-*.tar"))
    if not shards:
        raise ExportError(f"{root}: no {split}-*.tar shards")
    samples: list[Sample] = []
    for shard in shards:
        found: dict[str, dict[str, tuple[int, int]]] = {}
        labels: dict[str, int] = {}
        with tarfile.open(shard) as tf:
            for m in tf:
                if not m.isfile() or "." not in m.name:
                    continue
                key, ext = m.name.split(".", 1)
                found.setdefault(key, {})[ext.lower()] = (m.offset_data, m.size)
                if ext == "cls":
                    labels[key] = int(tf.extractfile(m).read().decode().strip())
        for key in sorted(found):
            img = found[key].get("jpg") or found[key].get("jpeg")
            if img is None or key not in labels:
                raise ExportError(f"{shard.name}: sample {key} lacks .jpg or .cls")
            samples.append(Sample(labels[key], str(shard), img[0], img[1]))
    num_classes = max(s.label for s in samples) + 1
    mapping = root / "LOC_synset_mapping.txt"
    if mapping.exists():
        num_classes = max(num_classes, len(read_classes(root)))
    return samples, num_classes


def load_samples(root: str | Path, fmt: str, split: str) -> tuple[list[Sample], int]:
    """(samples, number of classes) for a split of an export in `fmt` (ilsvrc|webdataset)."""
    root = Path(root)
    if not root.is_dir():
        raise ExportError(f"--data-path {root} is not a directory")
    if fmt == "ilsvrc":
        samples, wnids = ilsvrc_samples(root, split)
        return samples, len(wnids)
    if fmt == "webdataset":
        return webdataset_samples(root, split)
    raise ExportError(f"unknown format {fmt!r} (ilsvrc or webdataset)")


def decode_square(data: bytes, resize: int) -> np.ndarray:
    """JPEG bytes -> shorter side `resize`, centre square crop, uint8 HWC (the paper's 256x256)."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as im:
        # draft lets libjpeg decode at 1/2, 1/4 or 1/8 scale: far less work for big originals.
        im.draft("RGB", (resize, resize))
        im = im.convert("RGB")
        w, h = im.size
        s = resize / min(w, h)
        nw, nh = max(resize, round(w * s)), max(resize, round(h * s))
        if (nw, nh) != (w, h):
            im = im.resize((nw, nh), Image.BILINEAR, reducing_gap=None)
        left, top = (nw - resize) // 2, (nh - resize) // 2
        im = im.crop((left, top, left + resize, top + resize))
        return np.array(im, dtype=np.uint8)  # writable: torch.from_numpy warns on read-only


def augment_params(seed: int, epoch: int, index: int, span: int) -> tuple[int, int, bool, Tensor]:
    """Crop offsets, flip and PCA-lighting alphas of one sample, fixed by (seed, epoch, index) so
    that resumed and multi-worker runs see the same augmentation."""
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, epoch, index])))
    oy, ox = (int(v) for v in rng.integers(0, span + 1, size=2))
    flip = bool(rng.integers(0, 2))
    alpha = torch.from_numpy(rng.normal(0.0, 0.1, size=3).astype(np.float32))
    return oy, ox, flip, alpha


class ImageDataset(Dataset):
    """Items are (uint8 HWC crop, label, lighting alpha); indexed by (index, epoch) pairs from
    EpochSampler when `train` is true. `encoded` yields raw JPEG bytes plus crop parameters
    instead, for decoding on the GPU."""

    def __init__(
        self,
        samples: list[Sample],
        train: bool,
        resize: int = 256,
        crop: int = 224,
        seed: int = 0,
        full: bool = False,
        encoded: bool = False,
    ):
        self.samples, self.train, self.resize, self.crop = samples, train, resize, crop
        self.seed, self.full, self.encoded = seed, full, encoded

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, key: int | tuple[int, int]):
        index, epoch = key if isinstance(key, tuple) else (key, 0)
        s = self.samples[index]
        span = self.resize - self.crop
        if self.train:
            oy, ox, flip, alpha = augment_params(self.seed, epoch, index, span)
        else:
            oy = ox = span // 2
            flip, alpha = False, torch.zeros(3)
        if self.full:  # ten-crop evaluation crops on the device
            oy = ox = -1
        data = s.read()
        if self.encoded:
            params = torch.tensor([oy, ox, int(flip)], dtype=torch.int32)
            return torch.frombuffer(bytearray(data), dtype=torch.uint8), s.label, alpha, params
        img = decode_square(data, self.resize)
        if oy >= 0:
            img = img[oy : oy + self.crop, ox : ox + self.crop]
            if flip:
                img = img[:, ::-1]
        return torch.from_numpy(np.ascontiguousarray(img)), s.label, alpha


def collate_encoded(batch: list) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Packs a batch's JPEG bytes into one tensor plus lengths: one shared-memory transfer per
    batch instead of one per image."""
    datas, labels, alphas, params = zip(*batch, strict=True)
    lengths = torch.tensor([len(d) for d in datas], dtype=torch.int64)
    return torch.cat(datas), lengths, torch.tensor(labels), torch.stack(alphas), torch.stack(params)


class EpochSampler(Sampler):
    """DistributedSampler (shuffled by seed + epoch) that yields (index, epoch) pairs, so workers
    derive each sample's augmentation from the pair; works without a process group."""

    def __init__(
        self,
        n: int,
        shuffle: bool,
        seed: int,
        rank: int = 0,
        world: int = 1,
        drop_last: bool = False,
    ):
        self.inner = DistributedSampler(
            range(n), num_replicas=world, rank=rank, shuffle=shuffle, seed=seed, drop_last=drop_last
        )
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self.inner.set_epoch(epoch)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        return ((i, self.epoch) for i in self.inner)

    def __len__(self) -> int:
        return len(self.inner)

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "seed": self.inner.seed}


# ---------------------------------------------------------------- on the device
class DevicePrep:
    """uint8 NHWC batch -> float NCHW (channels_last): flips are done, adds PCA lighting and
    subtracts the mean. `normalize`: 'paper' (pixels 0..255 minus mean) or 'std' (ImageNet std)."""

    def __init__(
        self,
        device: torch.device,
        dtype: torch.dtype = torch.float32,
        normalize: str = "paper",
        channels_last: bool = False,
        lighting: bool = True,
    ):
        scale = 255.0 if normalize == "paper" else 1.0
        self.device, self.dtype, self.cl, self.lighting = device, dtype, channels_last, lighting
        self.eig = torch.tensor(EIGVEC, device=device) * torch.tensor(EIGVAL, device=device)
        self.mean = torch.tensor(MEAN_RGB, device=device) * 255.0
        std = torch.tensor(STD_RGB if normalize == "std" else (1 / scale,) * 3, device=device)
        self.inv = 1.0 / (std * 255.0)  # maps 0..255 pixel offsets to model units
        if normalize not in ("paper", "std"):
            raise ValueError("normalize must be 'paper' or 'std'")

    def __call__(self, images: Tensor, alpha: Tensor | None = None) -> Tensor:
        x = images.to(self.device, non_blocking=True)
        shift = self.mean.expand(x.shape[0], 3)
        if self.lighting and alpha is not None:
            # added rgb = eigvec @ (alpha * eigval), in 0..1 units, hence * 255
            shift = shift - 255.0 * (alpha.to(self.device, non_blocking=True) @ self.eig.T)
        x = (x.float() - shift[:, None, None, :]) * self.inv
        x = x.permute(0, 3, 1, 2)  # NHWC memory viewed as NCHW is channels_last already
        x = x.to(self.dtype)
        return x if self.cl else x.contiguous()


def ten_crop(x: Tensor, crop: int) -> Tensor:
    """(N, C, S, S) -> (N*10, C, crop, crop): 4 corners + centre, and their flips (per image)."""
    s = x.shape[-1]
    c, e = (s - crop) // 2, s - crop
    crops = [
        x[..., a : a + crop, b : b + crop] for a, b in ((0, 0), (0, e), (e, 0), (e, e), (c, c))
    ]
    crops += [t.flip(-1) for t in crops]
    return torch.stack(crops, 1).flatten(0, 1)


class GpuJpegDecoder:
    """Batched nvJPEG decode via torchvision.io.decode_jpeg(device='cuda'); crops and flips on
    the GPU. Images that fail there are decoded by Pillow, so nothing is lost."""

    def __init__(self, device: torch.device, resize: int = 256, crop: int = 224):
        from torchvision.io import ImageReadMode, decode_jpeg

        self.decode, self.mode = decode_jpeg, ImageReadMode.RGB
        self.device, self.resize, self.crop = device, resize, crop

    def _squares(self, imgs: list[Tensor]) -> Tensor:
        """Shorter side to `resize` and centre square, batched per distinct image shape."""
        r = self.resize
        out: list[Tensor | None] = [None] * len(imgs)
        shapes: dict[tuple[int, ...], list[int]] = {}
        for i, img in enumerate(imgs):
            shapes.setdefault(tuple(img.shape), []).append(i)
        for (_, h, w), idx in shapes.items():
            batch = torch.stack([imgs[i] for i in idx])
            if (h, w) != (r, r):
                s = r / min(h, w)
                size = (max(r, round(h * s)), max(r, round(w * s)))
                batch = torch.nn.functional.interpolate(
                    batch.float(), size=size, mode="bilinear", antialias=True, align_corners=False
                )
                batch = batch.round_().clamp_(0, 255).to(torch.uint8)
                t, left = (size[0] - r) // 2, (size[1] - r) // 2
                batch = batch[:, :, t : t + r, left : left + r]
            for j, i in enumerate(idx):
                out[i] = batch[j]
        return torch.stack(out)

    def __call__(self, data: Tensor, lengths: Tensor, params: Tensor) -> Tensor:
        """Returns uint8 NHWC crops (or full squares when params say -1), like the CPU path."""
        chunks = list(torch.split(data, lengths.tolist()))
        # torchvision's CUDA decoder allocates its outputs on the current stream but writes them
        # from a private stream that does not wait for ours (pytorch/vision PR 9606), so a block
        # that queued kernels still read can be overwritten: drain this stream first. With the
        # prefetch thread this is a side stream and the model step keeps running meanwhile.
        torch.cuda.current_stream(self.device).synchronize()
        try:
            imgs = self.decode(chunks, mode=self.mode, device=self.device)
        except RuntimeError:
            imgs = []
            for c in chunks:
                try:
                    imgs.append(self.decode(c, mode=self.mode, device=self.device))
                except RuntimeError:
                    arr = decode_square(bytes(c.numpy()), self.resize)
                    imgs.append(torch.from_numpy(arr).permute(2, 0, 1).to(self.device))
        x = self._squares(imgs)  # N, 3, S, S
        p = params.to(self.device)
        if int(params[0, 0]) < 0:
            return x.permute(0, 2, 3, 1)
        # one gather for every image's crop offset and flip
        ar = torch.arange(self.crop, device=self.device)
        rows = p[:, 0:1] + ar
        cols = p[:, 1:2] + torch.where(p[:, 2:3] > 0, self.crop - 1 - ar, ar)
        n = torch.arange(x.shape[0], device=self.device)[:, None, None]
        x = x.permute(0, 2, 3, 1)  # N, S, S, 3
        return x[n, rows[:, :, None], cols[:, None, :]]  # N, crop, crop, 3
