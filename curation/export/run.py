"""`imnet export`: accepted labels -> one class per image -> splits -> parallel encode -> files."""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import time
from collections import Counter
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


class ExportError(ValueError):
    """The export cannot run; the message is one line for the user. Nothing was changed."""


def _gather(app: Any, set_name: str) -> tuple[list[tuple[str, int]], dict[str, Any]]:
    """The class set and, per image, its owner class (dedup rule 3), url and phash."""
    from sqlalchemy import or_, select

    from curation.classes import class_set
    from curation.dedup import Claim, claim_rank
    from db.models import Candidate, ClassChoice, Image, Label

    with app.Session() as s:
        classes = class_set(s, set_name)
        rows = s.execute(
            select(
                Candidate.image_sha256,
                Label.wnid,
                Label.decided_by,
                Label.overridden,
                Label.posterior,
                Label.votes_yes,
                Candidate.id,
                Candidate.url,
                Image.phash,
            )
            .join(Candidate, Candidate.id == Label.candidate_id)
            .join(Image, Image.sha256 == Candidate.image_sha256)
            .join(
                ClassChoice, (ClassChoice.wnid == Label.wnid) & (ClassChoice.set_name == set_name)
            )
            .where(
                Label.decision == "accept",
                or_(Image.quality.is_(None), Image.quality != "rejected"),
                Image.near_dup_of.is_(None),
            )
        ).all()
    best: dict[str, tuple[tuple[Any, ...], dict[str, Any]]] = {}
    for sha, wnid, by, overridden, post, yes, cid, url, phash in rows:
        claim = Claim(wnid, by == "manual" or bool(overridden), post, yes or 0)
        key = (*claim_rank(claim), cid)  # the same image twice in one class: lowest candidate id
        if sha not in best or key < best[sha][0]:
            best[sha] = (key, {"wnid": wnid, "url": url, "phash": phash})
    return classes, {sha: info for sha, (_, info) in best.items()}


def _check_out_dir(out_dir: Path) -> None:
    """Refuse to replace anything but an earlier export (checked before any work is done)."""
    if out_dir.exists():
        if not out_dir.is_dir():
            raise ExportError(f"{out_dir} exists and is not a directory")
        if any(out_dir.iterdir()) and not (out_dir / "manifest.jsonl").exists():
            raise ExportError(
                f"{out_dir} is not empty and holds no imnet export; choose another --out"
            )


def _prepare_dir(out_dir: Path) -> Path:
    """A fresh staging directory beside out_dir; it replaces out_dir only once complete."""
    _check_out_dir(out_dir)
    staging = out_dir.parent / f".{out_dir.name}.partial"
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    return staging


def _swap_in(staging: Path, out_dir: Path) -> None:
    """Replace out_dir by the finished staging directory; the old export goes only after."""
    old = out_dir.parent / f".{out_dir.name}.old"
    if old.exists():
        shutil.rmtree(old)
    if out_dir.exists():
        out_dir.rename(old)
    staging.rename(out_dir)
    if old.exists():
        shutil.rmtree(old)


def _write_export(
    app: Any,
    fmt: str,
    staging: Path,
    classes: list[Any],
    plan: list[tuple[str, Any]],
    images: dict[str, Any],
    resize: int,
    quality: int,
    dropped: dict[str, str],
) -> tuple[list[dict[str, Any]], str, int]:
    """Encode in parallel (results come back in plan order, so files are written in a fixed
    order), write every file, the manifest and SHA256SUMS; returns (export items, manifest
    sha256, file count)."""
    from tqdm import tqdm

    from curation.export import encode as enc
    from curation.export.base import Sample, open_writer
    from curation.workers import Mapper

    index = {c.wnid: c.index for c in classes}
    writer = open_writer(fmt, staging, classes, app.settings)
    tasks = [(it.sha256, resize, quality) for _, it in plan]
    entries: list[dict[str, Any]] = []
    export_items: list[dict[str, Any]] = []
    numbers: Counter[str] = Counter()
    bar = tqdm(total=len(tasks), desc=f"export {fmt}", unit="img", disable=len(tasks) < 100)
    with Mapper(app.settings, enc.init_worker, len(tasks)) as mapper:
        for (part, it), (sha, jpeg, w, h, err) in zip(
            plan, mapper.map(enc.work, tasks, chunksize=4), strict=True
        ):
            bar.update(1)
            if jpeg is None:
                dropped[sha] = err or "encode failed"
                continue
            counter = it.wnid if part == "train" else part
            numbers[counter] += 1
            n = numbers[counter]
            stem = f"{it.wnid}_{n}" if part == "train" else f"ILSVRC2012_{part}_{n:08d}"
            sample = Sample(
                part, stem, it.wnid, index[it.wnid], sha, images[sha]["url"] or "", jpeg, w, h
            )
            new = writer.write(sample)
            entries.extend(new)
            path = next(
                (
                    e["path"] + ("#" + e["member"] if "member" in e else "")
                    for e in new
                    if e.get("image_sha256") == sha
                ),
                "",
            )
            export_items.append(
                {
                    "image_sha256": sha,
                    "wnid": it.wnid,
                    "split": part,
                    "class_index": index[it.wnid],
                    "path": path,
                }
            )
    bar.close()
    entries.extend(writer.close())
    for e in entries:  # one schema for every line: metadata files carry nulls
        for key in ("split", "wnid", "class_index"):
            e.setdefault(key, None)
    manifest = "".join(json.dumps(e, sort_keys=True, separators=(",", ":")) + "\n" for e in entries)
    manifest_bytes = manifest.encode()
    (staging / "manifest.jsonl").write_bytes(manifest_bytes)
    manifest_sha = hashlib.sha256(manifest_bytes).hexdigest()
    files = {e["path"]: e["sha256"] for e in entries if "member" not in e}
    files["manifest.jsonl"] = manifest_sha
    (staging / "SHA256SUMS").write_text("".join(f"{files[p]}  {p}\n" for p in sorted(files)))
    return export_items, manifest_sha, len(files) + 1


def run_export(
    app: Any,
    set_name: str,
    fmt: str,
    out_dir: str | Path,
    resize: int = 0,
    quality: int = 90,
    seed: int = 0,
    name: str | None = None,
) -> dict[str, Any]:
    """Export the accepted images of a class set; returns paths, counts and the manifest sha256."""
    from curation.classes import describe
    from curation.export.base import FORMATS, ClassInfo
    from curation.filters import hash_images
    from curation.splits import Item, SplitParams, assign_splits
    from db.models import phash_from_db

    if fmt not in FORMATS:
        raise ExportError(f"unknown format {fmt!r}; choose from {', '.join(FORMATS)}")
    if not 1 <= quality <= 100:
        raise ExportError(f"--quality must be 1..100, got {quality}")
    if resize < 0:
        raise ExportError(f"--resize must be >= 0, got {resize}")
    out = Path(out_dir).resolve()
    _check_out_dir(out)
    started = time.monotonic()
    class_rows, images = _gather(app, set_name)
    if not class_rows:
        raise ExportError(f"no class set named {set_name!r}; run `imnet classes choose` first")
    dropped: dict[str, str] = {}
    unhashed = sorted(sha for sha, v in images.items() if v["phash"] is None)
    if unhashed:
        # Splits need every image's phash (near-duplicate leakage check); hash the missing ones.
        for sha, (ph, reason) in hash_images(app, unhashed).items():
            if ph is None:
                dropped[sha] = reason or "unhashed"
                images.pop(sha)
            else:
                images[sha]["phash"] = ph
    params = SplitParams.from_settings(app.settings, seed=seed)
    items = [Item(sha, v["wnid"], phash_from_db(v["phash"])) for sha, v in sorted(images.items())]
    split = assign_splits(items, params)
    dropped.update(split.dropped)
    kept_wnids = sorted({it.wnid for part in split.by_split().values() for it in part})
    no_images = sorted({w for w, _ in class_rows} - {it.wnid for it in items})
    dropped_classes = dict(split.dropped_classes)
    for w in no_images:
        dropped_classes[w] = "no_accepted_images"
    if not kept_wnids:
        raise ExportError(
            f"set {set_name!r} has no class with enough accepted images "
            f"(train_min_per_class={params.train_min_per_class}); nothing was written"
        )
    names = describe(app, kept_wnids)
    classes = [ClassInfo(i, w, names[w][0], names[w][1]) for i, w in enumerate(kept_wnids)]

    plan: list[tuple[str, Any]] = []
    for part in ("train", "val", "test"):
        plan.extend((part, it) for it in split.by_split()[part])
    staging = _prepare_dir(out)
    try:
        export_items, manifest_sha, n_files = _write_export(
            app, fmt, staging, classes, plan, images, resize, quality, dropped
        )
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)  # a failed export leaves nothing behind
        raise
    _swap_in(staging, out)

    counts = {p: sum(1 for e in export_items if e["split"] == p) for p in ("train", "val", "test")}
    reasons = Counter(r.split(":", 1)[0] for r in dropped.values())
    export_name = name or f"{set_name}-{fmt}-{out.name}"
    record_params = {
        "set": set_name,
        "format": fmt,
        "resize": resize,
        "quality": quality,
        "seed": seed,
        "split": params.__dict__,
        "counts": counts,
        "classes": len(classes),
    }
    export_id = _record(app, export_name, fmt, str(out), record_params, manifest_sha, export_items)
    elapsed = time.monotonic() - started
    return {
        "name": export_name,
        "export_id": export_id,
        "format": fmt,
        "path": str(out),
        "manifest": str(out / "manifest.jsonl"),
        "sha256sums": str(out / "SHA256SUMS"),
        "manifest_sha256": manifest_sha,
        "counts": counts,
        "classes": len(classes),
        "dropped_images": dict(sorted(reasons.items())),
        "dropped_classes": dict(sorted(dropped_classes.items())),
        "files": n_files,
        "seconds": round(elapsed, 3),
    }


def _record(
    app: Any,
    name: str,
    fmt: str,
    path: str,
    params: dict[str, Any],
    manifest_sha: str,
    items: list[dict[str, Any]],
) -> int:
    """Store the export and its items; an export of the same name is replaced."""
    from sqlalchemy import delete, insert, select

    from db.models import Export, ExportItem

    with app.Session.begin() as s:
        old = s.scalar(select(Export.id).where(Export.name == name))
        if old is not None:
            s.execute(delete(ExportItem).where(ExportItem.export_id == old))
            s.execute(delete(Export).where(Export.id == old))
            s.flush()
        exp = Export(
            name=name, format=fmt, path=path, params_json=params, manifest_sha256=manifest_sha
        )
        s.add(exp)
        s.flush()
        rows = [dict(r, export_id=exp.id) for r in items]
        for start in range(0, len(rows), 5000):
            s.execute(insert(ExportItem), rows[start : start + 5000])
        return int(exp.id)
