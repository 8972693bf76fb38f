"""WebDataset tar shards `<split>-NNNNNN.tar` with `.jpg`, `.cls`, `.json` per sample, and the
`_info.json` timm's WebDataset reader needs (splits, shard names, samples per shard)."""

from __future__ import annotations

import io
import json
import tarfile
from collections import deque
from concurrent.futures import Future
from pathlib import Path
from typing import IO, Any, cast

from curation.export.base import (
    ClassInfo,
    HashingFile,
    Sample,
    sample_meta,
    synset_mapping,
    write_file,
)

# Reproducible tars: fixed member order (jpg, cls, json per sample, samples in write order), mtime 0,
# uid/gid 0 with empty names, mode 0644, ustar headers (no PAX timestamps), no compression.

Member = tuple[str, "bytes | str", int]  # member name, bytes or a staged file's path, size


def _info(name: str, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mtime = 0
    info.mode = 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def write_shard(path: str, members: list[Member]) -> tuple[str, int]:
    """Write one tar shard, hashing it as it is written; (sha256, bytes). Runs in a worker
    process when the writer has a pool: only member names and staged paths travel."""
    out = HashingFile(Path(path))
    # HashingFile is the write side of a file object (write, tell, flush): all a stream needs.
    fileobj = cast(IO[bytes], out)
    with tarfile.open(fileobj=fileobj, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data, size in members:
            if isinstance(data, bytes):
                tar.addfile(_info(name, size), io.BytesIO(data))
            else:
                with open(data, "rb") as f:
                    tar.addfile(_info(name, size), f)
    return out.close()


def _tar_size(size: int) -> int:
    return 512 + (size + 511) // 512 * 512


class _Shard:
    def __init__(self, split: str, number: int) -> None:
        self.rel = f"{split}-{number:06d}.tar"
        self.split = split
        self.members: list[Member] = []
        self.count = 0
        self.size = 0

    def add(self, parts: list[Member]) -> None:
        self.members.extend(parts)
        self.size += sum(_tar_size(size) for _, _, size in parts)
        self.count += 1


class ShardWriter:
    """One open shard per split; a shard closes at maxcount samples or maxsize bytes.

    A closed shard is written by `pool` (an executor) when given, else here. Manifest entries
    come back in the same order either way: a sample's entry waits behind the entry of any
    shard closed before it, and at most `inflight` shards are written at once (memory stays
    bounded by maxcount, whatever the number of images)."""

    def __init__(
        self,
        root: Path,
        classes: list[ClassInfo],
        maxcount: int,
        maxsize: int,
        pool: Any = None,
        inflight: int = 4,
    ) -> None:
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)
        self.classes = classes
        self.maxcount = max(1, maxcount)
        self.maxsize = max(1, maxsize)
        self.pool = pool
        self.inflight = max(1, inflight)
        self.open: dict[str, _Shard] = {}
        self.numbers: dict[str, int] = {}
        self.queue: deque[dict[str, Any] | tuple[_Shard, Future[tuple[str, int]]]] = deque()
        self.running = 0
        self.shards: dict[str, list[tuple[str, int]]] = {}  # split -> (shard, samples), ~1/1000

    def _finish(self, shard: _Shard) -> None:
        path = str(self.root / shard.rel)
        if self.pool is None:
            fut: Future[tuple[str, int]] = Future()
            fut.set_result(write_shard(path, shard.members))
        else:
            fut = self.pool.submit(write_shard, path, shard.members)
            self.running += 1
        shard.members = []
        self.queue.append((shard, fut))

    def _drain(self, wait: bool) -> list[dict[str, Any]]:
        done: list[dict[str, Any]] = []
        while self.queue:
            head = self.queue[0]
            if isinstance(head, tuple):
                shard, fut = head
                if not fut.done() and not (wait or self.running > self.inflight):
                    break
                digest, size = fut.result()
                if self.pool is not None:
                    self.running -= 1
                self.shards.setdefault(shard.split, []).append((shard.rel, shard.count))
                head = {
                    "path": shard.rel,
                    "sha256": digest,
                    "bytes": size,
                    "split": shard.split,
                    "samples": shard.count,
                }
            done.append(head)
            self.queue.popleft()
        return done

    def write(self, sample: Sample) -> list[dict[str, Any]]:
        jpg: bytes | str = sample.jpeg if sample.source is None else str(sample.source)
        info = sample_meta(sample)
        meta = json.dumps(info, sort_keys=True, separators=(",", ":")).encode()
        parts: list[Member] = [(f"{sample.name}.jpg", jpg, sample.jpeg_bytes())]
        if sample.labelled:  # a public export's test samples carry no class
            cls = str(sample.class_index).encode()
            parts.append((f"{sample.name}.cls", cls, len(cls)))
        parts.append((f"{sample.name}.json", meta, len(meta)))
        incoming = sum(_tar_size(size) for _, _, size in parts)
        shard = self.open.get(sample.split)
        if shard is not None and (
            shard.count >= self.maxcount or (shard.count and shard.size + incoming > self.maxsize)
        ):
            self._finish(shard)
            shard = None
        if shard is None:
            n = self.numbers.get(sample.split, 0)
            self.numbers[sample.split] = n + 1
            shard = self.open[sample.split] = _Shard(sample.split, n)
        shard.add(parts)
        # A manifest line per sample too (member = the .jpg inside the shard), so every image's
        # bytes can be checked without trusting the tar.
        self.queue.append({"path": shard.rel, "member": f"{sample.name}.jpg", **info})
        return self._drain(wait=False)

    def close(self) -> list[dict[str, Any]]:
        for s in sorted(self.open):
            self._finish(self.open[s])
        self.open.clear()
        done = self._drain(wait=True)
        done.append(write_file(self.root, "LOC_synset_mapping.txt", synset_mapping(self.classes)))
        done.append(write_file(self.root, "_info.json", self.info_json()))
        return done

    def info_json(self) -> bytes:
        """timm's `_info.json` (reader_wds.py): per split its name, sample count, shard names and
        samples per shard; `validation` too, the split name timm's training script asks for."""
        splits: dict[str, Any] = {}
        for split in ("train", "val", "test"):
            if split not in self.shards:
                continue
            names = [rel for rel, _ in self.shards[split]]
            counts = [n for _, n in self.shards[split]]
            entry = {"num_samples": sum(counts), "filenames": names, "shard_lengths": counts}
            splits[split] = {"name": split, **entry}
            if split == "val":
                splits["validation"] = {"name": "validation", **entry}
        info = {"name": "imnet", "num_classes": len(self.classes), "splits": splits}
        return (json.dumps(info, indent=1, sort_keys=True) + "\n").encode()
