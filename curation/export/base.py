"""The writer interface (`write(sample)` / `close()`), chosen by name, and shared file helpers."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from imnet.core.settings import Settings


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
    # Licence and attribution (licences.py): url, page_url, license, author, source, title.
    info: dict[str, Any] | None = None
    labelled: bool = True  # False: a test image of a public export (no class anywhere)

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


ATTRIBUTION_KEYS = ("url", "page_url", "license", "author", "source", "title")


def sample_meta(sample: Sample) -> dict[str, Any]:
    """What the manifest line and the shard's .json say about an image: one meaning per name
    (`sha256` = the exported bytes, `source_sha256` = the original), the class only when the
    image is labelled, and its licence and attribution."""
    info = sample.info or {}
    meta: dict[str, Any] = {
        "split": sample.split,
        "wnid": sample.wnid if sample.labelled else None,
        "class_index": sample.class_index if sample.labelled else None,
        "sha256": sample.jpeg_sha256(),
        "bytes": sample.jpeg_bytes(),
        "source_sha256": sample.image_sha256,
        "width": sample.width,
        "height": sample.height,
    }
    for key in ATTRIBUTION_KEYS:
        meta[key] = info.get(key, sample.url if key == "url" else None)
    return meta


def sample_json(sample: Sample) -> bytes:
    """The per-sample metadata, serialised deterministically."""
    return json.dumps(sample_meta(sample), sort_keys=True, separators=(",", ":")).encode()


def synset_mapping(classes: list[ClassInfo]) -> bytes:
    """LOC_synset_mapping.txt: `<wnid> <lemmas, comma separated>` in class-index order."""
    return "".join(f"{c.wnid} {', '.join(c.words)}\n" for c in classes).encode()


def open_writer(
    fmt: str,
    root: Path,
    classes: list[ClassInfo],
    settings: Settings,
    pool: Any = None,
    val_layout: str = "folders",
) -> Writer:
    """The writer registered under `fmt`; `pool` (an executor) lets it hand whole files (tar
    shards) to worker processes."""
    if fmt == "ilsvrc":
        from curation.export.ilsvrc import IlsvrcWriter

        return IlsvrcWriter(root, classes, val_layout=val_layout)
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
VAL_LAYOUTS = ("folders", "flat")
