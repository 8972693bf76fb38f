"""Reused shared-memory batch slots: same batches as fresh buffers, never overwritten in use."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
import torch

from train.data import EpochSampler, ExportError, ImageDataset, collate_batch, load_samples
from train.loaders import device_batches, make_loader
from train.prep import DevicePrep
from train.slots import FREE, TAKEN, SlotRef
from train.synthetic import make_export

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_export(tmp_path_factory.mktemp("slots"), classes=3, train_per_class=9,
                       val_per_class=1, size=40)  # fmt: skip


def _loader(samples, slots: bool, workers: int = 2, batch: int = 4, per_worker: int = 3):
    ds = ImageDataset(samples, True, resize=40, crop=32, seed=5)
    if slots:
        ds.use_slots(batch, workers, per_worker)
    sampler = EpochSampler(len(ds), True, seed=5)
    loader = torch.utils.data.DataLoader(ds, batch_size=batch, sampler=sampler,
                                         num_workers=workers, collate_fn=collate_batch,
                                         persistent_workers=True, prefetch_factor=2)  # fmt: skip
    return ds, sampler, loader


def test_slot_batches_equal_fresh_batches_over_epochs(export: Path) -> None:
    """27 images in batches of 4 (the last one short), 3 epochs, so every slot is reused."""
    samples, _ = load_samples(export, "ilsvrc", "train")
    ds, sampler, loader = _loader(samples, True)
    _, plain_sampler, plain = _loader(samples, False)
    refs = 0
    for epoch in range(3):
        sampler.set_epoch(epoch)
        plain_sampler.set_epoch(epoch)
        for batch, want in zip(loader, plain, strict=True):
            assert isinstance(batch[0], SlotRef)
            refs += 1
            images = ds.slots.view(batch[0], CPU)
            assert torch.equal(images, want[0]) and torch.equal(batch[1], want[1])
            ds.slots.release(batch[0], CPU)
    assert refs == 3 * 7 > ds.slots.images.shape[0]  # more batches than slots: reused
    assert (ds.slots.state == FREE).all()


def test_held_slots_are_never_overwritten(export: Path) -> None:
    """A consumer that frees nothing: the workers fall back to fresh buffers once their slots
    are taken, and the batches held in slots stay intact to the end."""
    samples, _ = load_samples(export, "ilsvrc", "train")
    ds, sampler, loader = _loader(samples, True, per_worker=2)
    ds.slots.wait = 0.01
    _, _, plain = _loader(samples, False)
    got = list(loader)
    want = list(plain)
    in_slots = [b for b in got if isinstance(b[0], SlotRef)]
    assert len(in_slots) == 4 and len(got) == 7  # 2 workers x 2 slots, then fresh buffers
    for batch, ref in zip(got, want, strict=True):
        images = ds.slots.view(batch[0], CPU) if isinstance(batch[0], SlotRef) else batch[0]
        assert torch.equal(images, ref[0])
    assert (ds.slots.state == TAKEN).sum() == 4


def test_device_batches_resolve_and_free_slots(export: Path) -> None:
    """The engine's path: make_loader gives the training loader slots, device_batches turns
    SlotRefs into prepared batches and frees them, with the same result as without slots."""
    samples, _ = load_samples(export, "ilsvrc", "train")
    args = argparse.Namespace(workers=2, batch_size=4, seed=0, no_batch_slots=False)
    prep = DevicePrep(CPU)
    outs = []
    for slots in (True, False):
        ds = ImageDataset(samples, True, resize=40, crop=32, seed=5)
        loader = make_loader(ds, EpochSampler(len(ds), True, 5), args, CPU, slots=slots)
        assert (ds.slots is not None) == slots
        outs.append(list(device_batches(loader, prep, None)))
        if slots:
            assert (ds.slots.state == FREE).all()
    for (x, t), (y, u) in zip(*outs, strict=True):
        assert torch.equal(x, y) and torch.equal(t, u)
    args.no_batch_slots = True
    ds = ImageDataset(samples, True, resize=40, crop=32)
    make_loader(ds, EpochSampler(len(ds), True, 5), args, CPU, slots=True)
    assert ds.slots is None


def test_a_failed_batch_gives_its_slot_back(tmp_path: Path) -> None:
    export = make_export(tmp_path / "e", classes=2, train_per_class=4, val_per_class=1, size=40)
    samples, _ = load_samples(export, "ilsvrc", "train")
    Path(samples[5].path).write_bytes(b"<html>not a jpeg</html>")
    ds = ImageDataset(samples, True, resize=40, crop=32)
    ds.use_slots(4, 1, 2)
    loader = torch.utils.data.DataLoader(ds, batch_size=4, num_workers=1,
                                         collate_fn=collate_batch)  # fmt: skip
    it = iter(loader)
    first = next(it)
    assert isinstance(first[0], SlotRef)
    with pytest.raises(ExportError, match="cannot decode"):
        next(it)
    assert int(ds.slots.state[first[0].slot]) == TAKEN  # still held by this consumer
    assert (ds.slots.state == TAKEN).sum() == 1  # the failed batch's slot is free again


def test_slots_declined_when_shared_memory_is_short(
    export: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A /dev/shm too small for the slots (Docker's 64 MB): a warning and fresh buffers, not a
    worker killed by SIGBUS halfway through an epoch."""
    import train.data as data_mod

    samples, _ = load_samples(export, "ilsvrc", "train")
    monkeypatch.setattr(data_mod, "shm_free", lambda: 64 * 2**20)
    ds = ImageDataset(samples, True, resize=40, crop=32)
    assert ds.use_slots(4, 2) is not None  # 2 workers x 6 slots x 12 KB fit
    ds = ImageDataset(samples, True, resize=256, crop=224)
    with pytest.warns(UserWarning, match="too little for"):
        assert ds.use_slots(256, 14) is None
    assert ds.slots is None


@pytest.mark.slow
def test_slots_reach_spawned_workers(export: Path) -> None:
    """With the spawn start method the dataset is pickled to the workers: the slots travel as
    shared-memory handles, so the main process sees what the workers wrote."""
    samples, _ = load_samples(export, "ilsvrc", "train")
    ds = ImageDataset(samples, True, resize=40, crop=32, seed=5)
    ds.use_slots(4, 2, 3)
    loader = torch.utils.data.DataLoader(ds, batch_size=4, sampler=EpochSampler(len(ds), True, 5),
                                         num_workers=2, collate_fn=collate_batch,
                                         multiprocessing_context="spawn")  # fmt: skip
    _, _, plain = _loader(samples, False)
    for batch, want in zip(loader, plain, strict=True):
        assert isinstance(batch[0], SlotRef)
        assert torch.equal(ds.slots.view(batch[0], CPU), want[0])
        ds.slots.release(batch[0], CPU)
