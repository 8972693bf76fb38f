"""Batch buffers in shared memory that loader workers fill again and again (page-locked on CUDA)."""

from __future__ import annotations

import math
import os
import threading
import time
import weakref
from dataclasses import dataclass

import torch
from torch import Tensor

FREE, TAKEN = 0, 1


@dataclass(frozen=True)
class SlotRef:
    """What a worker hands over instead of a decoded batch: the slot that holds it, and how many
    images (the last batch of an epoch can be short)."""

    slot: int
    n: int


def shm_free(path: str = "/dev/shm") -> int | None:
    """Bytes free where shared memory lives, None when that cannot be told."""
    try:
        st = os.statvfs(path)
    except OSError:
        return None
    return st.f_bavail * st.f_frsize


class BatchSlots:
    """`per_worker` uint8 NHWC batch buffers for each loader worker, in one shared-memory block
    made before the workers start and reused from batch to batch.

    A fresh shared buffer per batch (what torch's DataLoader does) costs a worker ~20% of its time
    in page faults (the kernel zeroes 38.5 MB for each batch of 256 224-px crops) and the main
    process more again to map it and copy it into pinned memory. A slot is written in place; on
    CUDA the block is page-locked once (cudaHostRegister, after the workers exist), so the copy to
    the GPU reads it directly and the pin-memory copy goes away. The consumer frees a slot once
    the batch has been copied off (on CUDA when an event says the copy is done); a worker that
    finds none of its slots free within `wait` seconds decodes into a fresh buffer instead, so a
    consumer that never frees slots slows the loader but cannot stall it."""

    def __init__(
        self,
        batch_size: int,
        side: int,
        workers: int,
        per_worker: int = 6,
        wait: float = 0.05,
    ):
        self.shape = (batch_size, side, side, 3)
        self.workers, self.per_worker, self.wait = workers, per_worker, wait
        n = workers * per_worker
        storage = torch.UntypedStorage._new_shared(n * math.prod(self.shape))
        self.images = torch.empty(0, dtype=torch.uint8).set_(storage).view(n, *self.shape)
        self.state = torch.zeros(n, dtype=torch.int32).share_memory_()
        self._pending: list[tuple[torch.cuda.Event, int]] = []  # main process only
        self._next, self._patient = 0, True  # worker process only: round-robin, waiting
        self._pin_tried = False
        self.pinned = False

    def __getstate__(self) -> dict:  # spawned workers: the shared tensors travel by handle
        return {**self.__dict__, "_pending": [], "_pin_tried": True, "pinned": False}

    # ------------------------------------------------------------------ worker side
    def acquire(self, n: int) -> tuple[Tensor, SlotRef] | None:
        """In a loader worker: a free slot of its own for `n` images, or None (not a worker, too
        many images, or none free in time)."""
        info = torch.utils.data.get_worker_info()
        if info is None or info.id >= self.workers or n > self.shape[0]:
            return None
        state = self.state.numpy()
        base = info.id * self.per_worker
        # after one fruitless wait, no more waiting until a slot turns up free: slots a consumer
        # never freed (batches dropped mid-epoch) cost one wait, not one per batch
        deadline = time.monotonic() + (self.wait if self._patient else 0.0)
        while True:
            for j in range(self.per_worker):
                k = (self._next + j) % self.per_worker
                if state[base + k] == FREE:
                    state[base + k] = TAKEN
                    self._next, self._patient = (k + 1) % self.per_worker, True
                    return self.images[base + k, :n], SlotRef(base + k, n)
            if time.monotonic() >= deadline:
                self._patient = False
                return None
            time.sleep(0.0005)

    def abandon(self, ref: SlotRef) -> None:
        """In a worker whose batch failed: the slot goes back unused."""
        self.state[ref.slot] = FREE

    # ------------------------------------------------------------------ consumer side
    def view(self, ref: SlotRef, device: torch.device) -> Tensor:
        """The batch a SlotRef names. On CUDA the first call page-locks the block: by then the
        workers have forked, so the mapping they inherited is untouched by the registration."""
        if device.type == "cuda" and not self._pin_tried:
            self._pin_tried = True
            # A failed runtime call leaves a per-thread "last error" that torch's next kernel
            # launch check in the same thread would raise: register from a thread of its own.
            th = threading.Thread(target=self._pin, args=(device,), name="imnet-pin-slots")
            th.start()
            th.join()
        return self.images[ref.slot, : ref.n]

    def release(self, ref: SlotRef, device: torch.device) -> None:
        """Called once the batch's copy to `device` is queued on the current stream: the slot is
        free when that copy has finished (at once off CUDA, where the copy was synchronous)."""
        if device.type != "cuda":
            self.state[ref.slot] = FREE
            return
        event = torch.cuda.Event()
        event.record(torch.cuda.current_stream(device))
        self._pending.append((event, ref.slot))
        self.reap()

    def reap(self, wait: bool = False) -> None:
        """Frees the slots whose copies have finished; all of them with `wait`."""
        keep = []
        for event, slot in self._pending:
            if wait:
                event.synchronize()
            if wait or event.query():
                self.state[slot] = FREE
            else:
                keep.append((event, slot))
        self._pending = keep

    def _pin(self, device: torch.device) -> None:
        ptr, size = self.images.data_ptr(), self.images.nbytes
        try:
            torch.cuda.set_device(device)  # this thread's runtime calls: our GPU's context
            # 1 = cudaHostRegisterPortable, as torch's own _pin_memory_utils registers shared memory
            err = int(torch.cuda.cudart().cudaHostRegister(ptr, size, 1))
        except (RuntimeError, AttributeError):
            return  # copies from pageable memory: slower, still correct
        self.pinned = err == 0
        if self.pinned:
            weakref.finalize(self.images, torch.cuda.cudart().cudaHostUnregister, ptr)
