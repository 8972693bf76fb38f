"""Decoding and batching images (layouts: train.layouts): uint8 crops from loader workers."""

from __future__ import annotations

import contextlib
import functools
import io
import math
import warnings
from collections.abc import Iterator
from typing import cast

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset, DistributedSampler, Sampler

# re-exported: callers read these from train.data since before layouts.py split off
from train.layouts import ExportError, Sample, load_samples, read_classes  # noqa: F401
from train.slots import BatchSlots, shm_free

# PCA lighting (Krizhevsky et al. 2012), for RGB in [0, 1]; rows of EIGVEC are R, G, B.
EIGVAL = (0.2175, 0.0188, 0.0045)
EIGVEC = ((-0.5675, 0.7192, 0.4009), (-0.5808, -0.0045, -0.8140), (-0.5836, -0.6948, 0.4203))
MEAN_RGB = (0.485, 0.456, 0.406)  # the ImageNet mean image reduced to one value per channel
STD_RGB = (0.229, 0.224, 0.225)


@functools.cache
def _simplejpeg():
    """simplejpeg (libjpeg-turbo straight into a numpy array, GIL released) when installed."""
    try:
        import simplejpeg
    except ImportError:
        return None
    return simplejpeg


def _decode_rgb(data: bytes, resize: int, where: str) -> np.ndarray:
    """RGB uint8 HWC array, decoded at the smallest DCT scale whose sides stay at least `resize`
    (JPEG draft mode: simplejpeg scales in 1/8 steps, Pillow by 1/2, 1/4, 1/8, so big originals
    differ slightly between the two). simplejpeg first; Pillow for what it declines (CMYK, PNG)."""
    sj = _simplejpeg()
    if sj and data[:2] == b"\xff\xd8":
        # On ValueError Pillow decides: it reads more variants, and words the error if it can't.
        with contextlib.suppress(ValueError):
            return sj.decode_jpeg(data, "RGB", min_height=resize, min_width=resize)
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as im:
            im.draft("RGB", (resize, resize))
            return np.array(im if im.mode == "RGB" else im.convert("RGB"))
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        raise ExportError(f"{where}: cannot decode ({type(e).__name__}: {e})") from None


def decode_into(
    data: bytes,
    out: Tensor,
    resize: int,
    oy: int = -1,
    ox: int = 0,
    flip: bool = False,
    where: str = "image",
) -> None:
    """Writes into `out` (uint8 HWC, square) the crop at (oy, ox) of the image's centre
    `resize` square (shorter side scaled to `resize`), mirrored if `flip`; oy < 0 means the
    whole square. Crop and flip are one strided copy into the batch buffer."""
    arr = _decode_rgb(data, resize, where)
    h, w = arr.shape[:2]
    nw, nh = _scaled(w, h, resize)
    if (nw, nh) != (w, h):
        from PIL import Image

        arr = np.array(
            Image.fromarray(arr).resize((nw, nh), Image.Resampling.BILINEAR, reducing_gap=None)
        )
    top, left = (nh - resize) // 2, (nw - resize) // 2
    if oy >= 0:
        top, left = top + oy, left + ox
    side = out.shape[0]
    src = torch.from_numpy(arr)[top : top + side, left : left + side]
    out.copy_(src.flip(1) if flip else src)


def _scaled(w: int, h: int, resize: int) -> tuple[int, int]:
    s = resize / min(w, h)
    return max(resize, round(w * s)), max(resize, round(h * s))


def decode_square(data: bytes, resize: int) -> np.ndarray:
    """JPEG bytes -> shorter side `resize`, centre square crop, uint8 HWC (the paper's 256x256)."""
    out = torch.empty((resize, resize, 3), dtype=torch.uint8)
    decode_into(data, out, resize)
    return out.numpy()


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
    instead, for decoding on the GPU; a float in (0, 1) does so for that share of the batches
    (chosen by the batch's first key, so the same every run) and decodes the rest here."""

    def __init__(
        self,
        samples: list[Sample],
        train: bool,
        resize: int = 256,
        crop: int = 224,
        seed: int = 0,
        full: bool = False,
        encoded: bool | float = False,
    ):
        self.samples, self.train, self.resize, self.crop = samples, train, resize, crop
        self.seed, self.full, self.encoded = seed, full, float(encoded)
        self.slots: BatchSlots | None = None

    def use_slots(self, batch_size: int, workers: int, per_worker: int = 6) -> BatchSlots | None:
        """Decoded batches go into reused shared-memory slots (train.slots) instead of a fresh
        buffer each; the loader then yields a SlotRef in place of the images, which
        loaders.device_batches resolves. Call before the loader starts its workers. Declined,
        with a warning, when /dev/shm could not hold the slots twice over (a write past its end
        kills the worker with SIGBUS instead of an error)."""
        side = self.resize if self.full else self.crop
        need = workers * per_worker * batch_size * side * side * 3
        free = shm_free()
        if free is not None and free < 2 * need:
            warnings.warn(
                f"/dev/shm has {free / 2**30:.1f} GiB free, too little for {need / 2**30:.1f} GiB "
                "of batch slots: a fresh buffer per batch instead (docker: raise --shm-size)",
                stacklevel=2,
            )
            return None
        self.slots = BatchSlots(batch_size, side, workers, per_worker)
        return self.slots

    def __len__(self) -> int:
        return len(self.samples)

    def _params(self, key: int | tuple[int, int]) -> tuple[int, int, int, bool, Tensor]:
        index, epoch = key if isinstance(key, tuple) else (key, 0)
        span = self.resize - self.crop
        if self.train:
            oy, ox, flip, alpha = augment_params(self.seed, epoch, index, span)
        else:
            oy = ox = span // 2
            flip, alpha = False, torch.zeros(3)
        if self.full:  # ten-crop evaluation crops on the device
            oy = ox = -1
        return index, oy, ox, flip, alpha

    def _fetch_encoded(self, keys: list) -> bool:
        if self.encoded <= 0.0 or self.encoded >= 1.0:
            return self.encoded >= 1.0
        index, epoch = keys[0] if isinstance(keys[0], tuple) else (keys[0], 0)
        h = (int(index) * 0x9E3779B1 + int(epoch) * 0x85EBCA77 + self.seed) & 0xFFFFFFFF
        return h / 2**32 < self.encoded

    def __getitem__(self, key: int | tuple[int, int]):
        return self.__getitems__([key])[0]

    def __getitems__(self, keys: list) -> Batch:
        """The DataLoader's batched fetch: every image is decoded straight into one uint8 batch
        tensor (in shared memory inside a worker), so collation copies nothing."""
        items: list = []
        if self._fetch_encoded(keys):
            for key in keys:
                index, oy, ox, flip, alpha = self._params(key)
                s = self.samples[index]
                params = torch.tensor([oy, ox, int(flip)], dtype=torch.int32)
                data = torch.frombuffer(bytearray(s.read()), dtype=torch.uint8)
                items.append((data, s.label, alpha, params))
            return Batch(items, collate_encoded(items))
        side = self.resize if self.full else self.crop
        slot = self.slots.acquire(len(keys)) if self.slots is not None else None
        images, ref = slot or (_batch_buffer((len(keys), side, side, 3)), None)
        labels = torch.empty(len(keys), dtype=torch.int64)
        alphas = torch.empty(len(keys), 3)
        try:
            for j, key in enumerate(keys):
                index, oy, ox, flip, alpha = self._params(key)
                s = self.samples[index]
                decode_into(s.read(), images[j], self.resize, oy, ox, flip, where=s.where())
                labels[j], alphas[j] = s.label, alpha
                items.append((images[j], s.label, alpha))
        except BaseException:
            if ref is not None:
                assert self.slots is not None  # a SlotRef only comes from self.slots
                self.slots.abandon(ref)
            raise
        return Batch(items, (ref or images, labels, alphas))


class Batch(list):
    """Per-sample items (so any collate_fn works) that also carry the batch already stacked,
    which `collate_batch` returns as is."""

    def __init__(self, items: list, stacked: tuple):
        super().__init__(items)
        self.stacked = stacked


def _batch_buffer(shape: tuple[int, ...]) -> Tensor:
    """uint8 tensor; inside a loader worker it lives in shared memory, as default_collate's
    output would, so handing it to the main process copies nothing."""
    if torch.utils.data.get_worker_info() is None:
        return torch.empty(shape, dtype=torch.uint8)
    storage = torch.UntypedStorage._new_shared(math.prod(shape))
    return torch.empty(0, dtype=torch.uint8).set_(storage).view(shape)


def collate_batch(batch: list) -> tuple:
    """collate_fn for ImageDataset loaders: the stacked batch from __getitems__, else stacks."""
    if isinstance(batch, Batch):
        return batch.stacked
    if len(batch[0]) == 4:
        return collate_encoded(batch)
    return torch.utils.data.default_collate(batch)


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
        # DistributedSampler only takes len() of its dataset: a range stands in for it
        self.inner: DistributedSampler[int] = DistributedSampler(
            cast("Dataset[int]", range(n)),
            num_replicas=world,
            rank=rank,
            shuffle=shuffle,
            seed=seed,
            drop_last=drop_last,
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
