"""The writer interface (`write(sample)` / `close()`), chosen by name, and shared file helpers."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol


@dataclass(frozen=True)
class ClassInfo:
    index: int  # 0-based class index (position in wnid order)
    wnid: str
    words: list[str]
    gloss: str


@dataclass(frozen=True)
class Sample:
    """One exported image; `name` is the file stem / shard key, e.g. ILSVRC2012_val_00000001.

    The JPEG is either in memory (`jpeg`) or a file an encode worker already wrote and hashed
    (`source`, `digest`, `size`): then writers link or copy it and never hash it again."""

    split: str
    name: str
    wnid: str
    class_index: int
    image_sha256: str  # the original's sha256 (the blob)
    url: str
    jpeg: bytes
    width: int
    height: int
    source: Path | None = None
    digest: str | None = None
    size: int | None = None

    def jpeg_sha256(self) -> str:
        return self.digest if self.digest is not None else hashlib.sha256(self.jpeg).hexdigest()

    def jpeg_bytes(self) -> int:
        return self.size if self.size is not None else len(self.jpeg)


class Writer(Protocol):
    """Writes one export layout under `root`; every call of `write` and `close` returns the manifest
    entries (dicts with at least path, sha256, bytes) of the files it finished."""

    def write(self, sample: Sample) -> list[dict[str, Any]]: ...

    def close(self) -> list[dict[str, Any]]: ...


def file_entry(root: Path, rel: str, data: bytes, **extra: Any) -> dict[str, Any]:
    entry = {"path": rel, "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
    entry.update(extra)
    return entry


def write_file(root: Path, rel: str, data: bytes, **extra: Any) -> dict[str, Any]:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return file_entry(root, rel, data, **extra)


class HashingFile:
    """A file written sequentially whose sha256 and size are known when it is closed, so nothing
    has to be read back."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.f = open(path, "wb")  # noqa: SIM115 (closed by close())
        self.digest = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.f.write(data)
        self.digest.update(data)
        self.size += len(data)
        return len(data)

    def tell(self) -> int:
        return self.size

    def close(self) -> tuple[str, int]:
        self.f.close()
        return self.digest.hexdigest(), self.size


def place_file(source: Path, dest: Path) -> None:
    """Put a staged file at dest: a hard link (no bytes copied; the staged copy stays, so an
    interrupted finish can simply run again), or a copy where links are not supported."""
    dest.unlink(missing_ok=True)
    try:
        os.link(source, dest)
    except OSError:
        shutil.copyfile(source, dest)


def sample_json(sample: Sample) -> bytes:
    """The per-sample metadata, serialised deterministically."""
    return json.dumps(
        {
            "class_index": sample.class_index,
            "height": sample.height,
            "sha256": sample.image_sha256,
            "split": sample.split,
            "url": sample.url,
            "width": sample.width,
            "wnid": sample.wnid,
        },
        sort_keys=True,
        separators=(",", ":"),
    ).encode()


def synset_mapping(classes: list[ClassInfo]) -> bytes:
    """LOC_synset_mapping.txt: `<wnid> <lemmas, comma separated>` in class-index order."""
    return "".join(f"{c.wnid} {', '.join(c.words)}\n" for c in classes).encode()


def open_writer(
    fmt: str, root: Path, classes: list[ClassInfo], settings: Any, pool: Any = None
) -> Writer:
    """The writer registered under `fmt`; `pool` (an executor) lets it hand whole files (tar
    shards) to worker processes."""
    if fmt == "ilsvrc":
        from curation.export.ilsvrc import IlsvrcWriter

        return IlsvrcWriter(root, classes)
    if fmt == "webdataset":
        from curation.export.webdataset import ShardWriter

        return ShardWriter(
            root,
            classes,
            maxcount=settings.export_shard_maxcount,
            maxsize=settings.export_shard_maxsize,
            pool=pool,
        )
    raise ValueError(f"unknown export format {fmt!r}; choose from {', '.join(FORMATS)}")


FORMATS = ("ilsvrc", "webdataset")
