"""WebDataset tar shards `<split>-NNNNNN.tar` with `.jpg`, `.cls`, `.json` per sample."""

from __future__ import annotations

import hashlib
import io
import tarfile
from pathlib import Path
from typing import Any

from curation.export.base import ClassInfo, Sample, sample_json, synset_mapping, write_file

# Reproducible tars: fixed member order (jpg, cls, json per sample, samples in write order), mtime 0,
# uid/gid 0 with empty names, mode 0644, ustar headers (no PAX timestamps), no compression.


def _member(name: str, data: bytes) -> tuple[tarfile.TarInfo, io.BytesIO]:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = 0
    info.mode = 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info, io.BytesIO(data)


class _Shard:
    def __init__(self, root: Path, split: str, number: int) -> None:
        self.rel = f"{split}-{number:06d}.tar"
        self.path = root / self.rel
        self.split = split
        self.tar = tarfile.open(self.path, "w", format=tarfile.USTAR_FORMAT)
        self.count = 0
        self.size = 0

    def add(self, key: str, parts: list[tuple[str, bytes]]) -> None:
        for ext, data in parts:
            self.tar.addfile(*_member(f"{key}.{ext}", data))
            self.size += 512 + (len(data) + 511) // 512 * 512
        self.count += 1

    def finish(self) -> dict[str, Any]:
        self.tar.close()
        digest = hashlib.sha256()
        with open(self.path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        return {
            "path": self.rel,
            "sha256": digest.hexdigest(),
            "bytes": self.path.stat().st_size,
            "split": self.split,
            "samples": self.count,
        }


class ShardWriter:
    """One open shard per split; a shard closes at maxcount samples or maxsize bytes."""

    def __init__(self, root: Path, classes: list[ClassInfo], maxcount: int, maxsize: int) -> None:
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)
        self.classes = classes
        self.maxcount = max(1, maxcount)
        self.maxsize = max(1, maxsize)
        self.open: dict[str, _Shard] = {}
        self.numbers: dict[str, int] = {}

    def write(self, sample: Sample) -> list[dict[str, Any]]:
        done: list[dict[str, Any]] = []
        parts = [
            ("jpg", sample.jpeg),
            ("cls", str(sample.class_index).encode()),
            ("json", sample_json(sample)),
        ]
        incoming = sum(512 + (len(d) + 511) // 512 * 512 for _, d in parts)
        shard = self.open.get(sample.split)
        if shard is not None and (
            shard.count >= self.maxcount or (shard.count and shard.size + incoming > self.maxsize)
        ):
            done.append(shard.finish())
            shard = None
        if shard is None:
            n = self.numbers.get(sample.split, 0)
            self.numbers[sample.split] = n + 1
            shard = self.open[sample.split] = _Shard(self.root, sample.split, n)
        shard.add(sample.name, parts)
        # A manifest line per sample too (member = the .jpg inside the shard), so every image's
        # bytes can be checked without trusting the tar.
        done.append(
            {
                "path": shard.rel,
                "member": f"{sample.name}.jpg",
                "sha256": hashlib.sha256(sample.jpeg).hexdigest(),
                "bytes": len(sample.jpeg),
                "split": sample.split,
                "wnid": sample.wnid,
                "class_index": sample.class_index,
                "image_sha256": sample.image_sha256,
            }
        )
        return done

    def close(self) -> list[dict[str, Any]]:
        done = [self.open[s].finish() for s in sorted(self.open)]
        self.open.clear()
        done.append(write_file(self.root, "LOC_synset_mapping.txt", synset_mapping(self.classes)))
        return done
