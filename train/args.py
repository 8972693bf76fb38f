"""Command-line flags of `imnet train` / `python -m train.engine` (no torch import: fast --help)."""

from __future__ import annotations

import argparse
import os
import sys

from imnet.core.argtypes import float_in, int_in

ABLATIONS = ("none", "no-fc7", "no-fc6-fc7", "no-conv3-conv4", "no-conv3-conv4-fc6-fc7")
ARCHS = ("alexnet2012", "alexnet-towers", "alexnet-tv")
FORMATS = ("auto", "ilsvrc", "webdataset")  # train.layouts.FORMATS, kept here: no torch import


def default_workers() -> int:
    """Loader workers by default: the cores this process may run on (its affinity, which a
    container or taskset narrows), at most 8, the reference recipe's value."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    return max(1, min(8, cpus))


def one_line_errors(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Usage errors as one line on stderr and exit 2 (argparse prints the whole usage first)."""

    def error(message: str):
        print(f"{parser.prog}: error: {message}", file=sys.stderr)
        sys.exit(2)

    setattr(parser, "error", error)  # noqa: B010 - replaces a method on this instance only
    return parser


# Sane ranges: image sides the net can take (at least 64 for its conv/pool stack; 224/227 and
# 256 in the paper), a seed numpy's SeedSequence accepts.
POSITIVE = int_in(1)
NONNEGATIVE = int_in(0)
SIDE = int_in(64, 4096)
UNIT = float_in(0.0, 1.0)


def check_args(args: argparse.Namespace) -> str:
    """The cross-flag problem argparse cannot see on its own ('' when none)."""
    crop, resize = getattr(args, "crop_size", None), getattr(args, "resize_size", None)
    if crop is not None and resize is not None and crop > resize:
        return f"--crop-size {crop} is larger than --resize-size {resize}"
    devices = [d for d in str(getattr(args, "devices", "") or "").split(",") if d]
    for d in [getattr(args, "device", "auto"), *devices]:
        if d != "auto" and (problem := device_problem(d)):
            return problem
    return ""


def device_problem(text: str) -> str:
    """Why `text` is no torch device ('' when it is one); torch raises a RuntimeError."""
    import torch

    try:
        torch.device(text)
    except (RuntimeError, ValueError):
        return f"{text[:60]!a} is not a torch device (cpu, cuda, cuda:N, mps)"
    return ""


def get_args_parser(add_help: bool = True) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description="Train the 2012 AlexNet on an imnet export or an ImageNet copy",
        add_help=add_help,
    )
    p.add_argument(
        "--data-path",
        required=True,
        help="an imnet export (ilsvrc or webdataset), torchvision's prepared ImageNet root "
        "(train/<wnid>/, val/<wnid>/) or Kaggle's (ILSVRC/Data/CLS-LOC/ + LOC_*.csv/txt)",
    )
    p.add_argument(
        "--format",
        default="auto",
        choices=FORMATS,
        help="auto: found from the files; ilsvrc: any folder layout; webdataset: tar shards",
    )
    p.add_argument(
        "--arch",
        default="alexnet2012",
        choices=ARCHS,
        help="alexnet2012 (grouped), alexnet-towers (two devices), alexnet-tv",
    )
    p.add_argument(
        "--ablate", default="none", choices=ABLATIONS, help="remove layers (seed ablations)"
    )
    p.add_argument("--no-lrn", action="store_true", help="drop local response normalisation")
    p.add_argument("--dropout", type=float_in(0.0, 1.0, hi_open=True), default=0.5)
    p.add_argument(
        "--fc-dim",
        type=int_in(1, 1 << 16),
        default=4096,
        help="hidden FC width (4096 in the paper)",
    )
    p.add_argument(
        "--group-impl",
        default="auto",
        choices=["auto", "groups", "split", "blockdiag"],
        help="two-GPU groups on one device (same result): cuDNN grouped convs, dense convs on "
        "slices, or one dense conv with a block-diagonal weight; auto: blockdiag on CUDA (41k vs "
        "37k images/s compiled on an H200, bench/train_gpu.py), else groups",
    )
    p.add_argument(
        "--lrn-impl",
        default="auto",
        choices=["auto", "kernel", "function", "reference"],
        help="ReLU+LRN form (same result): auto = the Triton kernel op on CUDA, else 'function' "
        "(hand-written backward); 'kernel' = the op everywhere; 'reference' = plain autograd",
    )
    p.add_argument(
        "--pool-impl",
        default="auto",
        choices=["auto", "kernel", "native"],
        help="max-pool form (same result): auto = the Triton kernel op on CUDA, else F.max_pool2d",
    )
    p.add_argument(
        "--stem",
        default="auto",
        choices=["auto", "direct", "s2d"],
        help="conv1 as a direct conv or space-to-depth (same result); auto: s2d on CUDA",
    )
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N; auto: cuda when available")
    p.add_argument("--devices", default="", help="two-tower placement, e.g. cuda:0,cuda:1")
    p.add_argument(
        "-b",
        "--batch-size",
        type=int_in(1, 1 << 20),
        default=128,
        help="images per process per step",
    )
    p.add_argument("--epochs", type=int_in(1, 100_000), default=90)
    p.add_argument(
        "-j",
        "--workers",
        type=int_in(0, 1024),
        default=default_workers(),
        help="data loader processes (default: the CPUs this process may use, at most 8)",
    )
    p.add_argument("--lr", type=float_in(0.0, 1e3, lo_open=True), default=0.01)
    p.add_argument("--momentum", type=float_in(0.0, 1.0, hi_open=True), default=0.9)
    p.add_argument(
        "--wd",
        "--weight-decay",
        dest="weight_decay",
        type=float_in(0.0, 1.0),
        default=5e-4,
        help="weight decay (on weights, not biases, as the 2012 code)",
    )
    p.add_argument(
        "--lr-schedule",
        default="plateau",
        choices=["plateau", "step"],
        help="plateau: /10 when val error stops improving; step: /10 every N epochs",
    )
    p.add_argument(
        "--lr-patience", type=NONNEGATIVE, default=3, help="plateau epochs before a drop"
    )
    p.add_argument("--lr-step-size", type=POSITIVE, default=30)
    p.add_argument("--lr-gamma", type=float_in(0.0, 1.0, lo_open=True), default=0.1)
    p.add_argument("--crop-size", type=SIDE, default=224, help="224 (padded to 227) or 227")
    p.add_argument("--resize-size", type=SIDE, default=256, help="shorter side, then centre square")
    p.add_argument(
        "--normalize",
        default="paper",
        choices=["paper", "std"],
        help="paper: pixels minus mean; std: also divide by ImageNet's std",
    )
    p.add_argument("--no-lighting", action="store_true", help="skip PCA colour lighting")
    p.add_argument(
        "--init-std",
        type=float_in(0.0, 10.0, lo_open=True),
        default=0.01,
        help="std of N(0, std) weights",
    )
    p.add_argument(
        "--init",
        default="paper",
        choices=["paper", "released"],
        help="released: the 2012 code's N(0, 0.03) for conv3-5",
    )
    p.add_argument(
        "--decode",
        default="auto",
        choices=["auto", "cpu", "gpu", "hybrid"],
        help="gpu: nvJPEG via torchvision on CUDA for every batch; hybrid: the loader workers "
        "decode a share of the batches on the CPU and nvJPEG the rest; auto: hybrid on CUDA "
        "when torchvision is installed, else cpu",
    )
    p.add_argument(
        "--gpu-share",
        type=UNIT,
        # the best of 1, 0.5 and 0.35 end to end on an H200 with 16 CPUs (bench/train_gpu.py)
        default=0.35,
        help="--decode hybrid: the share of batches nvJPEG decodes (the rest: CPU workers)",
    )
    p.add_argument(
        "--no-prefetch", action="store_true", help="CUDA: prepare batches in the main thread"
    )
    p.add_argument(
        "--no-batch-slots",
        action="store_true",
        help="a fresh shared-memory buffer per training batch instead of reused, page-locked "
        "slots (6 batches per worker in /dev/shm)",
    )
    p.add_argument("--amp", action="store_true", help="bf16 autocast")
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--compile", action="store_true", help="torch.compile the model")
    p.add_argument(
        "--compile-mode",
        default="default",
        choices=["default", "reduce-overhead", "max-autotune-no-cudagraphs"],
        help="torch.compile mode; reduce-overhead adds CUDA graphs (the fastest model step "
        "measured by bench/train_gpu.py, +15%% on an H200)",
    )
    p.add_argument("--ten-crop", action="store_true", help="also evaluate on 10 crops")
    p.add_argument("--seed", type=int_in(0, 2**63 - 1), default=0)
    p.add_argument("--resume", default="", help="checkpoint to continue from (or to evaluate)")
    p.add_argument("--test-only", action="store_true", help="only evaluate --resume")
    p.add_argument("--output-dir", default="", help="run directory (nothing saved when empty)")
    p.add_argument("--print-freq", type=NONNEGATIVE, default=0, help="unused; tqdm shows progress")
    p.add_argument("--no-progress", action="store_true", help="no tqdm bars")
    return one_line_errors(p) if add_help else p
