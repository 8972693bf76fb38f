"""Run directory files: checkpoints with RNG states, the resolved config, summary.csv."""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import random
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from train.alexnet import AlexNetConfig

SUMMARY_FIELDS = (
    "epoch",
    "lr",
    "train_loss",
    "train_top1_err",
    "train_top5_err",
    "val_loss",
    "val_top1_err",
    "val_top5_err",
    "val10_top1_err",
    "val10_top5_err",
    "images_per_s",
    "epoch_s",
)


def rng_state() -> dict:
    state = {
        "torch": torch.get_rng_state(),
        "numpy": np.random.get_state(),
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def gather_rng(world: int) -> list[dict]:
    """Every process's RNG states (dropout differs per rank), so a resumed DDP run is exact."""
    mine = rng_state()
    if world == 1 or not dist.is_initialized():
        return [mine]
    out: list = [None] * world
    dist.all_gather_object(out, mine)
    return out


def restore_rng(checkpoint: dict, rank: int) -> None:
    states = checkpoint.get("rng") or []
    if not states:
        return
    s = states[rank] if rank < len(states) else states[0]
    torch.set_rng_state(s["torch"])
    np.random.set_state(s["numpy"])
    random.setstate(s["python"])
    if "cuda" in s and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(s["cuda"])


def save(out_dir: Path, state: dict, epoch: int) -> str:
    """Writes model_<epoch>.pth and checkpoint.pth atomically; returns checkpoint.pth's path."""
    for name in (f"model_{epoch}.pth", "checkpoint.pth"):
        tmp = out_dir / (name + ".tmp")
        torch.save(state, tmp)
        os.replace(tmp, out_dir / name)
    return str(out_dir / "checkpoint.pth")


class CheckpointError(ValueError):
    """--resume names no readable imnet checkpoint; the message says why."""


def load(path: str | Path) -> dict:
    """The checkpoint at `path` (a run directory means its checkpoint.pth)."""
    import pickle
    import zipfile

    p = Path(path)
    if p.is_dir():
        p = p / "checkpoint.pth"
    if not p.is_file():
        what = "does not exist" if not p.exists() else "is not a file"
        raise CheckpointError(f"checkpoint {p} {what}")
    try:
        state = torch.load(p, map_location="cpu", weights_only=False)
    except (
        RuntimeError,
        pickle.UnpicklingError,
        EOFError,
        ValueError,
        zipfile.BadZipFile,
        AttributeError,
        ImportError,
        IndexError,
        KeyError,
        TypeError,
    ) as e:
        # Any non-checkpoint (a text file, a truncated or foreign pickle) fails somewhere inside
        # torch.load; the reason is kept short, the path is what the user needs.
        reason = str(e).splitlines()[0][:120] if str(e) else type(e).__name__
        raise CheckpointError(f"{p} is not a readable checkpoint ({reason})") from None
    if not isinstance(state, dict) or not {"model", "model_config", "num_classes", "args"} <= set(
        state
    ):
        raise CheckpointError(f"{p} is not an imnet checkpoint (no 'model' entry)")
    return state


def check_resume(state: dict, args: argparse.Namespace, data_classes: int) -> None:
    """A checkpoint that cannot go on with these data or flags is refused up front, in words."""
    where = args.resume
    if args.test_only:
        if data_classes > state["num_classes"]:
            raise CheckpointError(
                f"{where} knows {state['num_classes']} classes, the data has {data_classes}"
            )
        return
    if state["num_classes"] != data_classes:
        raise CheckpointError(
            f"{where} was trained on {state['num_classes']} classes, the data has {data_classes}"
        )
    done = int(state.get("epoch", -1)) + 1
    if done >= args.epochs:
        raise CheckpointError(
            f"{where} already ran {done} epochs: pass --epochs above {done} to train on"
        )


def config_from_checkpoint(state: dict, where: str = "the checkpoint") -> AlexNetConfig:
    try:
        c = dict(state["model_config"])
        c["devices"] = tuple(c.get("devices") or ())
        return AlexNetConfig(**c)
    except (TypeError, ValueError, KeyError) as e:
        raise CheckpointError(f"{where}: model_config is unusable ({e})") from None


def load_model(model: torch.nn.Module, state: dict, where: str) -> None:
    """The checkpoint's weights into `model`; a mismatch is the file's fault, said in one line."""
    try:
        model.load_state_dict(state["model"])
    except (RuntimeError, TypeError, KeyError, AttributeError) as e:
        reason = str(e).splitlines()[0][:160]
        raise CheckpointError(f"{where} does not fit this model ({reason})") from None


def write_config(
    out_dir: Path,
    args: argparse.Namespace,
    cfg: AlexNetConfig,
    world: int,
    num_classes: int,
    n_train: int,
    n_val: int,
    decoder: str = "",
) -> None:
    data = {
        "decoder": decoder,  # which JPEG decoder fed the run: a throughput figure depends on it
        "args": vars(args),
        "model": cfg.to_dict(),
        "world_size": world,
        "num_classes": num_classes,
        "train_images": n_train,
        "val_images": n_val,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "cuda_device": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
    }
    (out_dir / "config.json").write_text(json.dumps(data, indent=2, sort_keys=True, default=str))


def append_summary(out_dir: Path, epoch: int, stats: dict) -> None:
    """One row per epoch; a resumed run drops rows from epochs it is about to redo."""
    path = out_dir / "summary.csv"
    rows: list[dict] = []
    if path.exists():
        with path.open(newline="") as f:
            rows = [r for r in csv.DictReader(f) if int(r["epoch"]) < epoch]
    row: dict[str, int | str] = {"epoch": epoch}
    row.update({k: (f"{stats[k]:.6g}" if k in stats else "") for k in SUMMARY_FIELDS[1:]})
    rows.append(row)
    tmp = path.with_suffix(".tmp")
    with tmp.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=SUMMARY_FIELDS)
        w.writeheader()
        w.writerows(rows)
    os.replace(tmp, path)
