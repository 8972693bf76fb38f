"""Loaders: DataLoader settings, evaluation sharding, and batches prepared on the device."""

from __future__ import annotations

import argparse
import queue
import threading

import torch

from train.data import collate_batch
from train.prep import DevicePrep, GpuJpegDecoder
from train.slots import BatchSlots, SlotRef


class ShardSampler(torch.utils.data.Sampler):
    """Evaluation split over processes without padding, so every image counts exactly once."""

    def __init__(self, n: int, rank: int, world: int):
        self.idx = list(range(rank, n, world))

    def __iter__(self):
        return ((i, 0) for i in self.idx)

    def __len__(self) -> int:
        return len(self.idx)


def make_loader(ds, sampler, args, device: torch.device, slots: bool = False):
    """The DataLoader for an ImageDataset; `slots`: decoded batches in reused shared-memory
    slots (train.slots), for the training loader, unless --no-batch-slots."""
    workers = args.workers
    if slots and workers > 0 and not getattr(args, "no_batch_slots", False):
        # prefetch_factor batches queued per worker, plus the ones the consumer still holds
        ds.use_slots(args.batch_size, workers, per_worker=6)
    return torch.utils.data.DataLoader(
        ds,
        batch_size=args.batch_size,
        sampler=sampler,
        num_workers=workers,
        pin_memory=device.type == "cuda",
        collate_fn=collate_batch,
        persistent_workers=workers > 0,
        prefetch_factor=4 if workers > 0 else None,
        drop_last=False,
        # Its own generator: creating an iterator must not advance the global RNG (dropout),
        # or a resumed run would diverge from an uninterrupted one.
        generator=torch.Generator().manual_seed(args.seed),
    )


def want_gpu_decode(args: argparse.Namespace, device: torch.device) -> bool:
    if args.decode == "cpu" or device.type != "cuda":
        if args.decode in ("gpu", "hybrid"):
            raise ValueError(f"--decode {args.decode} needs a CUDA --device")
        return False
    try:
        import torchvision.io  # noqa: F401
    except ImportError:
        if args.decode in ("gpu", "hybrid"):
            raise ValueError(f"--decode {args.decode} needs torchvision") from None
        return False
    return True


def gpu_share(args: argparse.Namespace, gpu_decode: bool) -> float:
    """The share of batches the loader hands over as JPEG bytes for nvJPEG (ImageDataset's
    `encoded`): all with --decode gpu, --gpu-share with hybrid and auto, none without GPU
    decoding."""
    if not gpu_decode:
        return 0.0
    if args.decode == "gpu":
        return 1.0
    if not 0.0 <= args.gpu_share <= 1.0:
        raise ValueError("--gpu-share must be between 0 and 1")
    return args.gpu_share


def device_batches(
    loader, prep: DevicePrep, decoder: GpuJpegDecoder | None, prefetch: bool = False
):
    """Yields (model input, target) on the device from either loader kind; with `prefetch` (CUDA)
    a thread decodes and prepares the next batches on a side stream during the model step."""

    slots: BatchSlots | None = getattr(loader.dataset, "slots", None)

    def convert(batch):
        ref = None
        if len(batch) == 5:  # JPEG bytes (all batches with --decode gpu, a share with hybrid)
            if decoder is None:
                raise ValueError("the loader yields JPEG bytes but no GPU decoder was given")
            data, lengths, target, alpha, params = batch
            images = decoder(data, lengths, params)
        else:
            images, target, alpha = batch
            if isinstance(images, SlotRef):
                assert slots is not None  # a SlotRef only comes from the dataset's slots
                ref, images = images, slots.view(images, prep.device)
        x = prep(images, alpha)
        if ref is not None:
            assert slots is not None
            slots.release(ref, prep.device)  # once prep's copy off the slot is done
        return x, target.to(prep.device, non_blocking=True)

    try:
        if prefetch and prep.device.type == "cuda":
            yield from DevicePrefetcher(loader, convert, prep.device)
        else:
            yield from (convert(b) for b in loader)
    finally:
        if slots is not None:
            slots.reap(wait=True)


class DevicePrefetcher:
    """Runs `convert` (decode, crop, normalise) for upcoming batches in a thread on a side CUDA
    stream, so data preparation overlaps the model step instead of alternating with it."""

    def __init__(self, loader, convert, device: torch.device, depth: int = 3):
        self.loader, self.convert, self.device, self.depth = loader, convert, device, depth

    def __iter__(self):
        q: queue.Queue = queue.Queue(maxsize=self.depth)
        stream = torch.cuda.Stream(self.device)
        stop = threading.Event()

        def work() -> None:
            try:
                with torch.cuda.device(self.device), torch.cuda.stream(stream):
                    for batch in self.loader:
                        if stop.is_set():
                            break
                        x, t = self.convert(batch)
                        ev = torch.cuda.Event()
                        ev.record(stream)
                        q.put((x, t, ev))
                q.put(None)
            except BaseException as e:  # handed to the consumer, raised there
                q.put(e)

        th = threading.Thread(target=work, name="imnet-prefetch", daemon=True)
        th.start()
        try:
            while True:
                item = q.get()
                if item is None:
                    break
                if isinstance(item, BaseException):
                    raise item
                x, t, ev = item
                cur = torch.cuda.current_stream(self.device)
                cur.wait_event(ev)
                # the tensors were made on the side stream: keep them alive for this one too
                x.record_stream(cur)
                t.record_stream(cur)
                yield x, t
        finally:
            stop.set()
            while th.is_alive():
                try:
                    q.get(timeout=0.05)
                except queue.Empty:
                    pass
            th.join()
