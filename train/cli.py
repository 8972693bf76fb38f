"""`imnet train`, `imnet evaluate` and `imnet analyze invariance` (read an export, never the DB)."""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from imnet.core.app import App


def register(sub: argparse._SubParsersAction) -> None:
    from train.args import FORMATS, get_args_parser, int_in

    # A base parser each: sharing one let evaluate's redefinition of --resume strip the option
    # string off the shared action, so `imnet train --help` listed `resume` as a positional.
    tr = sub.add_parser(
        "train",
        parents=[get_args_parser(add_help=False)],
        help="train the 2012 AlexNet on an export",
        description="Train the 2012 two-GPU AlexNet (grouped form on one device, or two towers "
        "with --devices cuda:0,cuda:1) on an imnet export (ilsvrc or webdataset), torchvision's "
        "prepared ImageNet root or Kaggle's CLS-LOC copy, found from the files. Flags follow "
        "torchvision's references/classification. For data parallelism run "
        "`torchrun --nproc-per-node N -m train.engine ...` with the same flags. "
        "Default run directory: <data_dir>/runs/train-<time>.",
    )
    tr.set_defaults(func=_train)
    ev = sub.add_parser(
        "evaluate",
        parents=[get_args_parser(add_help=False)],
        conflict_handler="resolve",
        help="top-1/top-5 error of a checkpoint on the val split",
        description="Evaluate a checkpoint (--resume PATH) on the val split: centre "
        "crop, and with --ten-crop also 10 crops (corners + centre and flips, softmax averaged).",
    )
    ev.add_argument("--resume", required=True, help="checkpoint.pth or model_<epoch>.pth")
    ev.add_argument("--json", action="store_true", help="print the metrics as JSON")
    ev.set_defaults(func=_evaluate)

    an = sub.add_parser(
        "analyze", help="analyses of a trained model", description="Analyses of a trained model."
    )
    asub = an.add_subparsers(dest="analyze_command", metavar="ANALYSIS", required=True)
    inv = asub.add_parser(
        "invariance",
        help="output and feature changes under translation, scale, rotation",
        description="For val images of an export, measure how the top-1 error, the probability "
        "of the true class and the normalised distances of conv5 and fc7 features change under "
        "vertical translation, scaling and rotation; writes invariance.csv and invariance.png.",
    )
    inv.add_argument("--data-path", required=True, help="export or ImageNet directory")
    inv.add_argument("--format", default="auto", choices=FORMATS)
    inv.add_argument("--resume", required=True, help="checkpoint to analyse")
    inv.add_argument("--out", required=True, help="directory for invariance.csv/.png")
    inv.add_argument(
        "--max-images", type=int_in(1, 10_000_000), default=200, help="val images to use"
    )
    inv.add_argument("--device", default="cpu")
    inv.set_defaults(func=_invariance)


def _run(args: argparse.Namespace) -> dict:
    from imnet.core.console import UserError
    from train.args import check_args
    from train.data import ExportError
    from train.engine import run

    problem = check_args(args)
    if problem:
        raise UserError(problem)
    try:
        return run(args)
    except (ExportError, FileNotFoundError, ValueError) as e:
        raise UserError(str(e)) from None


def _train(args: argparse.Namespace, app: App) -> int:
    if not args.output_dir:
        stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
        args.output_dir = str(Path(app.settings.data_dir) / "runs" / f"train-{stamp}")
    res = _run(args)
    if os.environ.get("RANK", "0") != "0":
        return 0  # under torchrun only rank 0 reports
    print(f"run directory: {res['run_dir']}")
    print(f"checkpoint: {res['checkpoint']}")
    if "top1_err" in res:
        print(
            f"val top-1 error {res['top1_err']:.4f}, top-5 error {res['top5_err']:.4f} "
            f"after {res['epochs']} epochs"
        )
    return 0


def _evaluate(args: argparse.Namespace, app: App) -> int:
    args.test_only = True
    args.output_dir = ""
    res = _run(args)
    keys = [k for k in res if k.startswith("val")]
    if args.json:
        print(json.dumps({k: res[k] for k in keys}, indent=2, sort_keys=True))
    else:
        for k in keys:
            print(f"{k}: {res[k]:.4f}" if isinstance(res[k], float) else f"{k}: {res[k]}")
    return 0


def _invariance(args: argparse.Namespace, app: App) -> int:
    from imnet.core.console import UserError
    from train.args import device_problem
    from train.data import ExportError
    from train.invariance import analyze

    if problem := device_problem(args.device):
        raise UserError(problem)
    try:
        res = analyze(
            args.data_path, args.resume, args.out, args.format, args.max_images, device=args.device
        )
    except (ExportError, FileNotFoundError, ValueError) as e:
        raise UserError(str(e)) from None
    for r in res["rows"]:
        print(
            f"{r['transform']:<12} {r['amount']:>6g}  top1_err {r['top1_err']:.3f}  "
            f"p_true {r['p_true_class']:.3f}  d_conv5 {r['dist_conv5']:.3f}  "
            f"d_fc7 {r['dist_fc7']:.3f}"
        )
    print(f"wrote {res['csv']} and {res['png']}")
    return 0
