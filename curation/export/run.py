"""`imnet export`: accepted labels -> one class per image -> splits -> stored plan -> parallel,
sharded, resumable encode -> one streaming finish that names files and writes the manifest."""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from curation.export.outdir import ExportError, _check_out_dir, _reset, _swap_in

if TYPE_CHECKING:
    from sqlalchemy import CursorResult

    from imnet.core.app import App

__all__ = ["ExportError", "parse_shard", "run_export"]
log = logging.getLogger(__name__)
INLINE_BELOW = 48

# How the work is shared. The plan (one export_item row per image, in output order) is stored
# once; `--shard i/N` encodes the items with position % N == i, in N invocations on any machines
# that share the database, the blob store and the output folder's parent. Each encode worker
# reads, encodes, writes and hashes its files itself; the parent only batches row updates. The
# invocation that finds nothing left to encode writes the layout and manifest (a plain run
# without --shard finishes whatever is left, and repairs a finish that died). Staged JPEGs are
# kept until the export is complete, so a killed run, rerun with the same arguments, encodes
# only what is missing. File names, numbering and every byte depend only on the plan and the
# encode results, never on the number of processes, shards or their timing.


def parse_shard(text: str) -> tuple[int, int]:
    """`i/N` (0 <= i < N) -> (i, N)."""
    try:
        i, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise ExportError(f"--shard must look like i/N (e.g. 0/4), got {text!r}") from None
    if not 0 <= i < n:
        raise ExportError(f"--shard i/N needs 0 <= i < N, got {text!r}")
    return i, n


def _encode(
    app: App,
    export_id: int,
    staging: Path,
    resize: int,
    quality: int,
    workers: int,
    shard: tuple[int, int] | None,
) -> int:
    """Encode this invocation's items that have no staged file yet; returns how many."""
    from sqlalchemy import bindparam, func, select, update
    from tqdm import tqdm

    from curation.export.encode import spawn_pool, stage_all
    from curation.export.finish import item_pages, staged_path
    from db.models import ExportItem

    mine = None if shard is None else (ExportItem.position % shard[1]) == shard[0]
    with app.Session() as s:
        q = select(func.count()).where(ExportItem.export_id == export_id)
        q = q.where(ExportItem.status != "done") if mine is None else q.where(mine)
        total = int(s.scalar(q) or 0)

    def tasks() -> Any:
        cols = [ExportItem.image_sha256, ExportItem.status]
        for pos, sha, status in item_pages(app, export_id, cols, mine):
            path = staged_path(staging, sha)
            if status == "done" and path.exists():
                continue  # finished by an earlier or another run
            yield pos, sha, str(path), resize, quality

    table = ExportItem.__table__
    record = (
        update(table)
        .where(table.c.export_id == export_id, table.c.position == bindparam("pos"))
        .values(
            status=bindparam("st"),
            file_sha256=bindparam("fsha"),
            file_bytes=bindparam("fbytes"),
            width=bindparam("w"),
            height=bindparam("h"),
            error=bindparam("err"),
        )
    )
    done = 0
    rows: list[dict[str, Any]] = []

    def flush() -> None:
        if rows:
            with app.Session.begin() as s:
                s.execute(record, rows)  # one executemany per batch
            rows.clear()

    app.blobs  # noqa: B018 - an S3 endpoint that does not answer stops here, before any worker
    # Below a few dozen images, starting processes costs more than it saves.
    pool = spawn_pool(app.settings, workers) if workers > 1 and total >= INLINE_BELOW else None
    bar = tqdm(total=total, desc="export encode", unit="img", disable=True if total < 100 else None)
    last = time.monotonic()
    try:
        for results in stage_all(app.settings, tasks(), workers, pool):
            for pos, fsha, fbytes, w, h, err in results:
                st = "failed" if fsha is None else "done"
                rows.append(
                    {
                        "pos": pos,
                        "st": st,
                        "fsha": fsha,
                        "fbytes": fbytes,
                        "w": w,
                        "h": h,
                        "err": err,
                    }
                )
            done += len(results)
            bar.update(len(results))
            # Batched, and at least every few seconds: a killed run loses little finished work.
            if len(rows) >= 1000 or time.monotonic() - last > 5:
                flush()
                last = time.monotonic()
        flush()
    except BaseException:
        try:
            flush()  # record what was finished before the error or Ctrl-C, then re-raise it
        except Exception:
            log.exception("could not record finished export files")
        raise
    finally:
        bar.close()
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
    return done


def _claim_finish(app: App, export_id: int, takeover: bool) -> bool:
    """Mark the export as being finished by this process: exactly one shard wins."""
    from sqlalchemy import update

    from db.models import Export

    allowed = ("encoding", "finalizing") if takeover else ("encoding",)
    with app.Session.begin() as s:
        res = s.execute(
            update(Export)
            .where(Export.id == export_id, Export.status.in_(allowed))
            .values(status="finalizing")
        )
        return bool(cast("CursorResult[Any]", res).rowcount)


def _pending(app: App, export_id: int) -> int:
    from sqlalchemy import func, select

    from db.models import ExportItem

    with app.Session() as s:
        q = select(func.count()).where(
            ExportItem.export_id == export_id, ExportItem.status == "pending"
        )
        return int(s.scalar(q) or 0)


def run_export(
    app: App,
    set_name: str,
    fmt: str,
    out_dir: str | Path,
    resize: int = 0,
    quality: int = 90,
    seed: int = 0,
    name: str | None = None,
    workers: int | None = None,
    shard: str | tuple[int, int] | None = None,
    val_layout: str = "folders",
    with_test_labels: bool = False,
    licenses: str | None = None,
    drop_short_classes: bool = False,
) -> dict[str, Any]:
    """Export the accepted images of a class set; returns paths, counts and the manifest sha256
    (or, for a shard that leaves the finish to another, `status` "waiting" and what is left).

    val_layout: folders (val/<wnid>/, what torchvision, timm and Hugging Face read) or flat
    (ILSVRC's own val/). with_test_labels: a private export (test classes kept); by default the
    test images ship without labels, as ILSVRC's did. licenses: `cc0,cc-by,cc-by-sa` exports only
    images under those licence families (or exact SPDX ids). A class short of its val or test quota
    stops the export, naming it, unless drop_short_classes leaves it out."""
    import os

    from sqlalchemy.exc import IntegrityError

    from curation.export.base import FORMATS, VAL_LAYOUTS
    from curation.export.licences import parse_allowed
    from curation.export.plan import compute_plan, find_plan, fingerprint, store_plan
    from curation.splits import SplitParams

    if fmt not in FORMATS:
        raise ExportError(f"unknown format {fmt!r}; choose from {', '.join(FORMATS)}")
    if not 1 <= quality <= 100:
        raise ExportError(f"--quality must be 1..100, got {quality}")
    if resize < 0:
        raise ExportError(f"--resize must be >= 0, got {resize}")
    if workers is not None and workers < 1:
        raise ExportError(f"--workers must be >= 1, got {workers}")
    if val_layout not in VAL_LAYOUTS:
        raise ExportError(
            f"--val-layout must be one of {', '.join(VAL_LAYOUTS)}, got {val_layout!r}"
        )
    try:
        allowed = parse_allowed(licenses)
    except ValueError as e:
        raise ExportError(str(e)) from None
    part = parse_shard(shard) if isinstance(shard, str) else shard
    n_workers = workers or app.settings.curation_workers or os.cpu_count() or 1
    out = Path(out_dir).resolve()
    _check_out_dir(out)
    started = time.monotonic()
    split_params = SplitParams.from_settings(app.settings, seed=seed)
    export_name = name or f"{set_name}-{fmt}-{out.name}"
    params = {
        "set": set_name,
        "format": fmt,
        "path": str(out),
        "resize": resize,
        "quality": quality,
        "seed": seed,
        "split": split_params.__dict__,
        "val_layout": val_layout,
        "with_test_labels": with_test_labels,
        "licenses": sorted(allowed) if allowed is not None else None,
        "drop_short_classes": drop_short_classes,
    }
    key = fingerprint(params)
    staging = out.parent / f".{out.name}.partial"
    plan = find_plan(app, export_name, key)
    if plan is None and part is not None and _complete(app, export_name, key):
        return {"name": export_name, "status": "complete", "path": str(out)}
    if plan is None:
        planned = compute_plan(app, set_name, split_params, allowed)
        if planned is None:
            raise ExportError(f"no class set named {set_name!r}; run `imnet classes choose` first")
        short = {
            w: why
            for w, why in planned.dropped_classes.items()
            if why.startswith(("too_few_val", "too_few_test"))
        }
        if short and not drop_short_classes:
            named = ", ".join(f"{w} ({why})" for w, why in list(short.items())[:10])
            more = f" and {len(short) - 10} more" if len(short) > 10 else ""
            raise ExportError(
                f"{len(short)} classes have fewer images than their val/test quota "
                f"(val_per_class={split_params.val_per_class}, "
                f"test_per_class={split_params.test_per_class}): {named}{more}; "
                "pass --drop-short-classes to leave them out; nothing was written"
            )
        if not planned.wnids:
            raise ExportError(
                f"set {set_name!r} has no class with enough accepted images "
                f"(train_min_per_class={split_params.train_min_per_class}); nothing was written"
            )
        record = {
            **params,
            "plan": key,
            "wnids": planned.wnids,
            "planned_dropped_images": dict(planned.dropped),
            "dropped_classes": planned.dropped_classes,
        }
        try:
            plan = store_plan(
                app, export_name, fmt, str(out), record, planned, lambda: _reset(staging)
            )
        except IntegrityError:
            plan = find_plan(app, export_name, key)  # another shard stored the same plan first
            if plan is None:
                raise ExportError(
                    f"export {export_name!r} is being planned by another run with other "
                    "arguments; wait for it or choose another --name"
                ) from None
        del planned
    staging.mkdir(parents=True, exist_ok=True)
    if plan.status == "encoding" or part is None:
        encoded = _encode(app, plan.export_id, staging, resize, quality, n_workers, part)
    else:
        encoded = 0
    left = _pending(app, plan.export_id)
    waiting = {"name": export_name, "status": "waiting", "path": str(out), "encoded": encoded}
    if left:
        if part is None:
            raise ExportError(f"{left} items of {export_name!r} are still pending; run again")
        return {**waiting, "pending": left}
    if not _claim_finish(app, plan.export_id, takeover=part is None):
        return {**waiting, "pending": 0, "finishing": "another run"}
    return _finish(app, plan, export_name, fmt, out, staging, n_workers, encoded, started)


def _complete(app: App, name: str, key: str) -> bool:
    from sqlalchemy import select

    from db.models import Export

    with app.Session() as s:
        row = s.execute(
            select(Export.status, Export.params_json).where(Export.name == name)
        ).first()
    return row is not None and row.status == "complete" and row.params_json.get("plan") == key


def _finish(
    app: App,
    plan: Any,
    export_name: str,
    fmt: str,
    out: Path,
    staging: Path,
    workers: int,
    encoded: int,
    started: float,
) -> dict[str, Any]:
    from collections import Counter

    from sqlalchemy import delete, update

    from curation.classes import describe
    from curation.export.base import ClassInfo
    from curation.export.datasheet import write_datasheet
    from curation.export.finish import finish
    from db.models import Export, ExportItem

    wnids = plan.params["wnids"]
    names = describe(app, wnids)
    classes = [ClassInfo(i, w, names[w][0], names[w][1]) for i, w in enumerate(wnids)]

    def sheet(root: Path, counts: dict[str, int], manifest: str, licences: dict[str, int]) -> Any:
        return write_datasheet(
            app, export_name, plan.params, classes, root, counts, manifest, licences
        )

    options = {
        "val_layout": plan.params.get("val_layout", "folders"),
        "with_test_labels": plan.params.get("with_test_labels", False),
        "datasheet": sheet,
    }
    res = finish(app, plan.export_id, fmt, staging, classes, workers, options)
    shutil.rmtree(staging / ".objects", ignore_errors=True)
    _swap_in(staging, out)
    dropped = Counter(plan.params.get("planned_dropped_images", {}))
    dropped.update(res["failed"])
    params = {**plan.params, "counts": res["counts"], "classes": len(classes)}
    with app.Session.begin() as s:
        # Images that could not be encoded are not part of the export.
        s.execute(
            delete(ExportItem).where(
                ExportItem.export_id == plan.export_id, ExportItem.status != "done"
            )
        )
        s.execute(
            update(Export)
            .where(Export.id == plan.export_id)
            .values(status="complete", manifest_sha256=res["manifest_sha256"], params_json=params)
        )
    return {
        "name": export_name,
        "export_id": plan.export_id,
        "status": "complete",
        "format": fmt,
        "path": str(out),
        "manifest": str(out / "manifest.jsonl"),
        "sha256sums": str(out / "SHA256SUMS"),
        "manifest_sha256": res["manifest_sha256"],
        "counts": res["counts"],
        "classes": len(classes),
        "licenses": res["licenses"],
        "attribution": str(out / "ATTRIBUTION.txt"),
        "datasheet": str(out / "DATASHEET.md"),
        "dropped_images": dict(sorted(dropped.items())),
        "dropped_classes": plan.params.get("dropped_classes", {}),
        "files": res["files"],
        "encoded": encoded,
        "resumed": plan.resumed,
        "seconds": round(time.monotonic() - started, 3),
    }
