"""The demo's last stages: class selection, both exports (checked file by file), train, evaluate."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import IO, Any, cast

from imnet.demo.stages import Ctx

SET_NAME = "demo"


def clear_dir(path: Path, workdir: Path) -> None:
    """Remove a partial output folder, refusing anything outside the demo's workdir."""
    path, workdir = path.resolve(), workdir.resolve()
    if workdir not in path.parents:
        raise RuntimeError(f"refusing to delete {path}: not under {workdir}")
    shutil.rmtree(path, ignore_errors=True)


def stage_classes(ctx: Ctx) -> dict[str, Any]:
    from curation.classes import choose_classes

    # Every class must keep a few images in each split after val/test are taken out.
    s = ctx.settings
    min_images = s.val_per_class + s.test_per_class + 2
    rep = choose_classes(
        ctx.app, SET_NAME, n=len(ctx.synsets), roots=ctx.roots, min_images=min_images
    )
    reasons: dict[str, int] = {}
    for why in rep["rejected"].values():
        code = why.split(":", 1)[0]
        reasons[code] = reasons.get(code, 0) + 1
    return {
        "set": SET_NAME,
        "chosen_count": len(rep["chosen"]),
        "chosen": rep["chosen"],
        "counts": rep["counts"],
        "rejected": rep["rejected"],
        "rejected_reasons": reasons,
        "min_images": min_images,
    }


def _inputs_fingerprint(ctx: Ctx) -> str:
    """Hash of what the export reads: the class set and every accepted label under it."""
    import hashlib

    from sqlalchemy import select

    from db.models import ClassChoice, Label

    h = hashlib.sha256()
    with ctx.app.Session() as s:
        for row in s.execute(
            select(ClassChoice.wnid, ClassChoice.class_index)
            .where(ClassChoice.set_name == SET_NAME)
            .order_by(ClassChoice.class_index)
        ):
            h.update(f"c {row[0]} {row[1]}\n".encode())
        for lrow in s.execute(
            select(Label.candidate_id, Label.wnid)
            .where(Label.decision == "accept")
            .order_by(Label.candidate_id)
        ):
            h.update(f"l {lrow[0]} {lrow[1]}\n".encode())
    st = ctx.settings
    h.update(
        f"p {st.export_resize} {st.export_quality} {ctx.seed} {st.val_per_class} "
        f"{st.test_per_class} {st.train_max_per_class} {st.train_min_per_class} "
        f"{st.phash_radius}".encode()
    )
    return h.hexdigest()


def verify_manifest(root: Path) -> dict[str, Any]:
    """Re-read every file (and tar member) the manifest lists and check its sha256 and size."""
    import hashlib
    import json
    import tarfile

    entries = [json.loads(line) for line in (root / "manifest.jsonl").read_text().splitlines()]
    bad: list[str] = []
    tars: dict[str, dict[str, bytes]] = {}
    for e in entries:
        if "member" in e:
            if e["path"] not in tars:
                with tarfile.open(root / e["path"]) as tf:
                    tars[e["path"]] = {
                        # A regular member always has a file object.
                        m.name: cast(IO[bytes], tf.extractfile(m)).read()
                        for m in tf.getmembers()
                        if m.isfile()
                    }
            data = tars[e["path"]].get(e["member"])
        else:
            p = root / e["path"]
            data = p.read_bytes() if p.is_file() else None
        if data is None or hashlib.sha256(data).hexdigest() != e["sha256"]:
            bad.append(e["path"] + ("#" + e["member"] if "member" in e else ""))
    return {"entries": len(entries), "mismatched": bad[:10], "ok": not bad}


def stage_export(ctx: Ctx) -> dict[str, Any]:
    from curation.export import run_export

    fp = _inputs_fingerprint(ctx)
    done = ctx.state.get("export")
    out: dict[str, Any] = {}
    for fmt in ("ilsvrc", "webdataset"):
        path = ctx.workdir / "exports" / fmt
        prev = (done or {}).get(fmt)
        if prev and (done or {}).get("fingerprint") == fp and (path / "manifest.jsonl").exists():
            check = verify_manifest(path)
            if check["ok"]:
                out[fmt] = {**prev, "manifest_verified": check, "skipped": True}
                continue
        rep = run_export(
            ctx.app,
            SET_NAME,
            fmt,
            path,
            resize=ctx.settings.export_resize,
            quality=ctx.settings.export_quality,
            seed=ctx.seed,
            name=f"demo-{fmt}",
        )
        rep["manifest_verified"] = verify_manifest(path)
        if fmt == "webdataset":
            rep["shards"] = sorted(p.name for p in path.glob("*.tar"))
        rep["splits"] = rep.get("counts")
        out[fmt] = rep
    if not all(out[f]["manifest_verified"]["ok"] for f in out):
        raise RuntimeError(f"export manifest does not verify: {out}")
    ctx.state["export"] = {
        "fingerprint": fp,
        **{
            f: {k: v for k, v in r.items() if k not in ("manifest_verified", "skipped")}
            for f, r in out.items()
        },
    }
    return out


# The 2012 network's layers (grouped convs, LRN, dropout) on 64-px crops with 256-wide FC layers:
# small enough for a CPU. The released 2012 code's init and a constant learning rate for the first
# 20 epochs let it leave chance within a few hundred steps on the fixture's ~130 training images.
TRAIN_FLAGS = (
    "--crop-size 64 --resize-size 72 --fc-dim 256 -b 16 -j 0 --device cpu --no-progress "
    "--init released --lr 0.005 --lr-schedule step --lr-step-size 20"
).split()


def stage_train(ctx: Ctx) -> dict[str, Any]:
    from train.engine import main as train_main

    data = ctx.workdir / "exports" / "ilsvrc"
    run_dir = ctx.workdir / "runs" / "alexnet"
    fp = ctx.state.get("export", {}).get("fingerprint")
    prev = ctx.state.get("train")
    ckpt = run_dir / "checkpoint.pth"
    if (
        prev
        and prev.get("fingerprint") == fp
        and prev.get("epochs") == ctx.epochs
        and ckpt.exists()
    ):
        return {**prev, "skipped": "checkpoint for this export and epoch count exists"}
    flags = [
        "--data-path",
        str(data),
        "--epochs",
        str(ctx.epochs),
        "--output-dir",
        str(run_dir),
        "--seed",
        str(ctx.seed),
        *TRAIN_FLAGS,
    ]
    if (
        prev
        and prev.get("fingerprint") == fp
        and ckpt.exists()
        and prev.get("epochs", 0) < ctx.epochs
    ):
        flags += ["--resume", str(ckpt)]  # more epochs asked for than the last run trained
    elif run_dir.exists():
        clear_dir(run_dir, ctx.workdir)  # a run killed mid-epoch, or trained on an older export
    res = train_main(flags)
    keep = (
        "run_dir",
        "checkpoint",
        "epochs",
        "num_classes",
        "train_loss",
        "top1_err",
        "top5_err",
        "images_per_s",
        "epoch_s",
        "val_n",
    )
    out = {k: res[k] for k in keep if k in res}
    out["train_images"] = sum(1 for _ in (data / "train").rglob("*.JPEG"))
    out["fingerprint"] = fp
    ctx.state["train"] = out
    return out


def stage_evaluate(ctx: Ctx) -> dict[str, Any]:
    from train.engine import main as train_main

    t = ctx.state.get("train") or {}
    ckpt = t.get("checkpoint")
    if not ckpt or not Path(ckpt).exists():
        raise RuntimeError("no checkpoint to evaluate")
    flags = [
        "--data-path",
        str(ctx.workdir / "exports" / "ilsvrc"),
        "--resume",
        ckpt,
        "--test-only",
        "--ten-crop",
        *TRAIN_FLAGS,
    ]
    res = train_main(flags)
    n = t.get("num_classes") or res.get("num_classes") or 1
    return {
        "checkpoint": ckpt,
        "split": "val",
        "images": res.get("val_n"),
        "top1_err": res.get("val_top1_err"),
        "top5_err": res.get("val_top5_err"),
        "ten_crop_top1_err": res.get("val10_top1_err"),
        "ten_crop_top5_err": res.get("val10_top5_err"),
        "chance_top1_err": round(1 - 1 / n, 4),
        "chance_top5_err": round(max(0.0, 1 - 5 / n), 4),
        "metrics": {k: v for k, v in res.items() if k.startswith("val")},
    }
