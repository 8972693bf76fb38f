"""The export's last step, run once all items are encoded: name the files, write the layout, the
manifest and SHA256SUMS, streaming in output order from keyset pages of export_item."""

from __future__ import annotations

import heapq
import json
import os
import shutil
import tempfile
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from imnet.core.app import App

PAGE = 2000
SORT_RUN = 50_000  # SHA256SUMS lines sorted in memory at a time


def staged_path(staging: Path, sha: str) -> Path:
    """Where an encode worker puts an image's exported JPEG until the files get their names."""
    return staging / ".objects" / sha[:2] / f"{sha}.jpg"


def item_pages(
    app: App, export_id: int, columns: list[Any], where: Any = None, candidate: bool = False
) -> Iterator[Any]:
    """The export's items in output order, a keyset page (one short transaction) at a time;
    `candidate` joins each item's owning candidate (a primary-key lookup per row)."""
    from sqlalchemy import select

    from db.models import Candidate, ExportItem

    last = -1
    while True:
        q = select(ExportItem.position, *columns)
        if candidate:
            q = q.outerjoin(Candidate, Candidate.id == ExportItem.candidate_id)
        q = q.where(ExportItem.export_id == export_id, ExportItem.position > last)
        if where is not None:
            q = q.where(where)
        with app.Session() as s:
            rows = s.execute(q.order_by(ExportItem.position).limit(PAGE)).all()
        if not rows:
            return
        yield from rows
        last = rows[-1][0]


def _count_done(app: App, export_id: int) -> int:
    from sqlalchemy import func, select

    from db.models import ExportItem

    with app.Session() as s:
        q = select(func.count()).where(
            ExportItem.export_id == export_id, ExportItem.status == "done"
        )
        return int(s.scalar(q) or 0)


class SortedSums:
    """SHA256SUMS lines sorted by path with bounded memory: sorted runs spilled to temporary
    files, merged at the end."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.buf: list[str] = []
        self.runs: list[Path] = []

    def add(self, path: str, sha: str) -> None:
        self.buf.append(f"{path}\t{sha}\n")  # a tab sorts below any path character
        if len(self.buf) >= SORT_RUN:
            self._spill()

    def _spill(self) -> None:
        fd, name = tempfile.mkstemp(dir=self.tmp, prefix="sums-", suffix=".run")
        with os.fdopen(fd, "w") as f:
            f.writelines(sorted(self.buf))
        self.runs.append(Path(name))
        self.buf = []

    def write(self, dest: Path) -> None:
        files = [open(p) for p in self.runs]  # noqa: SIM115 (closed below)
        try:
            with open(dest, "w") as out:
                for line in heapq.merge(sorted(self.buf), *files):
                    path, sha = line[:-1].split("\t")
                    out.write(f"{sha}  {path}\n")
        finally:
            for f in files:
                f.close()
            for p in self.runs:
                p.unlink()


def clear_layout(staging: Path) -> None:
    """Everything but the staged JPEGs goes: an interrupted finish starts over cleanly."""
    for p in staging.iterdir():
        if p.name == ".objects":
            continue
        if p.is_dir():
            shutil.rmtree(p)
        else:
            p.unlink()


def _info(url: str | None, lic: str | None, source: str | None, ref: str | None, meta: Any,
          title: str | None) -> dict[str, Any]:  # fmt: skip
    from curation.export.licences import author, normalise, page_url

    return {
        "url": url or "",
        "page_url": page_url(ref),
        "license": normalise(lic),
        "author": author(meta if isinstance(meta, dict) else None),
        "source": source,
        "title": title,
    }


def finish(
    app: App,
    export_id: int,
    fmt: str,
    staging: Path,
    classes: list[Any],
    workers: int,
    options: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Write the layout from the staged JPEGs; returns counts, encode failures and the manifest
    sha256. Files get dense numbers in output order, skipping images that failed to encode.
    options: val_layout (folders | flat), with_test_labels, and the datasheet's `datasheet`
    callback (staging, counts, manifest sha256, licence counts) -> manifest entry."""
    from sqlalchemy import bindparam, update

    from curation.export.base import HashingFile, Sample, open_writer
    from curation.export.encode import spawn_pool
    from curation.export.licences import attribution_line
    from db.models import Candidate, ExportItem

    opts = options or {}
    test_labels = bool(opts.get("with_test_labels", False))
    licences: Counter[str] = Counter()

    clear_layout(staging)
    sums = SortedSums(staging)
    manifest = HashingFile(staging / "manifest.jsonl")
    # One line per image, streamed in output order like the manifest: every author credited.
    attribution = HashingFile(staging / "ATTRIBUTION.txt")
    attribution.write(
        b"# Every image of this export, its author, licence and where it was found.\n"
        b'# path<TAB>"title" by author, licence (SPDX id), page (via source API)\n'
    )
    numbers: Counter[str] = Counter()
    counts: Counter[str] = Counter()
    failed: Counter[str] = Counter()
    files = 0
    paths: list[dict[str, Any]] = []
    table = ExportItem.__table__
    set_path = (
        update(table)
        .where(table.c.export_id == export_id, table.c.image_sha256 == bindparam("sha"))
        .values(path=bindparam("rel"))
    )

    def flush_paths() -> None:
        if paths:
            with app.Session.begin() as s:
                s.execute(set_path, paths)  # one executemany per page, not a statement per row
            paths.clear()

    def emit(entries: list[dict[str, Any]]) -> None:
        nonlocal files
        for e in entries:
            for key in ("split", "wnid", "class_index"):  # one schema for every line
                e.setdefault(key, None)
            manifest.write((json.dumps(e, sort_keys=True, separators=(",", ":")) + "\n").encode())
            if "member" in e:
                rel = f"{e['path']}#{e['member']}"
                paths.append({"sha": e["source_sha256"], "rel": rel})
                attribution.write(attribution_line(rel, e).encode())
            else:
                sums.add(e["path"], e["sha256"])
                files += 1
                if e.get("source_sha256"):
                    paths.append({"sha": e["source_sha256"], "rel": e["path"]})
                    attribution.write(attribution_line(e["path"], e).encode())

    cols = [
        ExportItem.image_sha256,
        ExportItem.wnid,
        ExportItem.split,
        ExportItem.class_index,
        ExportItem.url,
        ExportItem.status,
        ExportItem.file_sha256,
        ExportItem.file_bytes,
        ExportItem.width,
        ExportItem.height,
        ExportItem.error,
        Candidate.license,
        Candidate.source,
        Candidate.source_ref,
        Candidate.meta,
        Candidate.title,
    ]
    # Tar shards are written (and hashed) by worker processes; ILSVRC files are hard links.
    several = _count_done(app, export_id) > app.settings.export_shard_maxcount
    pool = (
        spawn_pool(app.settings, workers)
        if fmt == "webdataset" and workers > 1 and several
        else None
    )
    try:
        layout = opts.get("val_layout", "folders")
        writer = open_writer(fmt, staging, classes, app.settings, pool=pool, val_layout=layout)
        for row in item_pages(app, export_id, cols, candidate=True):
            _, sha, wnid, part, idx, url, status, digest, size, w, h, err = row[:12]
            if status != "done":
                failed[(err or "encode failed").split(":", 1)[0]] += 1
                continue
            counter = wnid if part == "train" else part
            numbers[counter] += 1
            n = numbers[counter]
            stem = f"{wnid}_{n}" if part == "train" else f"ILSVRC2012_{part}_{n:08d}"
            counts[part] += 1
            info = _info(url, *row[12:])
            licences[info["license"] or "unknown"] += 1
            sample = Sample(
                part, stem, wnid, idx, sha, url or "", b"", w, h,
                source=staged_path(staging, sha), digest=digest, size=size, info=info,
                labelled=part != "test" or test_labels,
            )  # fmt: skip
            emit(writer.write(sample))
            if len(paths) >= PAGE:
                flush_paths()
        emit(writer.close())
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
    flush_paths()
    manifest_sha, _ = manifest.close()
    sums.add("manifest.jsonl", manifest_sha)
    sums.add("ATTRIBUTION.txt", attribution.close()[0])
    files += 1
    split_counts = {p: counts[p] for p in ("train", "val", "test")}
    if opts.get("datasheet") is not None:
        sheet = opts["datasheet"](staging, split_counts, manifest_sha, dict(licences))
        sums.add(sheet["path"], sheet["sha256"])
        files += 1
    sums.write(staging / "SHA256SUMS")
    return {
        "manifest_sha256": manifest_sha,
        "counts": split_counts,
        "licenses": dict(sorted(licences.items())),
        "failed": dict(failed),
        "files": files + 2,  # the manifest and SHA256SUMS
    }
