"""Training and evaluation loop shaped like torchvision's references/classification (train.py).

Single process:  python -m train.engine --data-path EXPORT --output-dir RUN
Data parallel:   torchrun --nproc-per-node N -m train.engine --data-path EXPORT ...
(gloo on CPU, NCCL on CUDA); `imnet train` takes the same flags."""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from pathlib import Path
from typing import Any, cast

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.optim.lr_scheduler import ReduceLROnPlateau, StepLR

from train import checkpoint as ckpt
from train.alexnet import AlexNetConfig, build_model, set_lrn_impl, set_pool_impl
from train.args import get_args_parser
from train.data import EpochSampler, ImageDataset, _simplejpeg, load_samples
from train.loaders import ShardSampler, device_batches, gpu_share, make_loader, want_gpu_decode
from train.prep import DevicePrep, GpuJpegDecoder, ten_crop


def setup_distributed() -> tuple[int, int, int]:
    """(rank, world size, local rank) from torchrun's environment; 1 process without it."""
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        return 0, 1, 0
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local = int(os.environ.get("LOCAL_RANK", 0))
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend)
    return rank, world, local


def model_config(
    args: argparse.Namespace, num_classes: int, devices: tuple[str, ...]
) -> AlexNetConfig:
    return AlexNetConfig(
        num_classes=num_classes,
        input_size=args.crop_size,
        arch=args.arch,
        ablate=args.ablate,
        lrn=not args.no_lrn,
        dropout=args.dropout,
        fc_dim=args.fc_dim,
        init_std=args.init_std,
        init=args.init,
        group_impl=args.group_impl,
        stem=args.stem,
        devices=devices,
    )


def _tower_devices(args: argparse.Namespace, local_rank: int) -> tuple[str, ...]:
    if not args.devices:
        return ()
    devs = [d.strip() for d in args.devices.split(",")]
    if len(devs) != 2:
        raise ValueError("--devices takes two devices, e.g. cuda:0,cuda:1")
    out = []
    for d in devs:  # each torchrun process takes the next pair of GPUs
        t = torch.device(d)
        out.append(f"cuda:{(t.index or 0) + 2 * local_rank}" if t.type == "cuda" else d)
    return tuple(out)


def _all_sum(values: list[float], device: torch.device) -> list[float]:
    if not (dist.is_available() and dist.is_initialized()):
        return values
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


def _progress(loader, total: int, desc: str, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="img", unit_scale=True, disable=not enabled,
                dynamic_ncols=True, leave=False)  # fmt: skip


def train_one_epoch(
    model: nn.Module,
    criterion: nn.Module,
    optimizer: torch.optim.Optimizer,
    loader,
    prep: DevicePrep,
    device: torch.device,
    epoch: int,
    args: argparse.Namespace,
    decoder: GpuJpegDecoder | None = None,
    show: bool = True,
    max_steps: int | None = None,
) -> dict:
    """One pass over `loader`. Metrics accumulate on the device and are read every
    `SYNC_EVERY` steps only, so the host keeps queueing work ahead of the GPU."""
    model.train()
    world = dist.get_world_size() if dist.is_initialized() else 1
    sums = torch.zeros(3, dtype=torch.float64, device=device)  # loss*b, top1, top5 correct
    n: float = 0  # images; _all_sum hands it back as a float
    total = len(loader.sampler) * world
    bar = _progress(loader, total, f"epoch {epoch}", show and not args.no_progress)
    start = time.perf_counter()
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.amp)
    prefetch = not getattr(args, "no_prefetch", False)
    for step, (x, target) in enumerate(device_batches(loader, prep, decoder, prefetch)):
        with autocast:
            out = model(x)
            loss = criterion(out.float(), target)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        b = target.shape[0]
        with torch.no_grad():
            sums += torch.stack([loss.detach().double() * b, *_correct(out.detach(), target)])
        n += b
        bar.update(b * world)
        if step % SYNC_EVERY == 0:
            if not math.isfinite(loss.item()):
                raise FloatingPointError(f"loss is {loss.item()} at epoch {epoch}; lower --lr")
            bar.set_postfix(
                loss=f"{loss.item():.3f}",
                img_s=f"{n * world / (time.perf_counter() - start):.0f}",
            )
        if max_steps is not None and step + 1 >= max_steps:
            break
    loss_sum, c1, c5 = sums.tolist()
    elapsed = time.perf_counter() - start
    bar.close()
    if not math.isfinite(loss_sum):
        raise FloatingPointError(f"loss is {loss_sum} at epoch {epoch}; lower --lr")
    loss_sum, c1, c5, n = _all_sum([loss_sum, c1, c5, n], device)
    return {
        "train_loss": loss_sum / max(n, 1),
        "train_top1_err": 1 - c1 / max(n, 1),
        "train_top5_err": 1 - c5 / max(n, 1),
        "images_per_s": n / elapsed,
        "epoch_s": elapsed,
    }


SYNC_EVERY = 50


def _correct(logits: Tensor, target: Tensor) -> list[Tensor]:
    k = min(5, logits.shape[1])
    hit = logits.topk(k, 1).indices.eq(target[:, None])
    return [hit[:, :1].sum().double(), hit.any(1).sum().double()]


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader,
    prep: DevicePrep,
    device: torch.device,
    args: argparse.Namespace,
    ten: bool = False,
    decoder: GpuJpegDecoder | None = None,
    show: bool = True,
) -> dict:
    """Top-1/top-5 error on the centre crop, or with `ten` on 10 crops (softmax averaged)."""
    model.eval()
    criterion = nn.CrossEntropyLoss(reduction="sum")
    sums = torch.zeros(3, dtype=torch.float64, device=device)  # loss, top-1, top-5 correct
    n: float = 0  # images; _all_sum hands it back as a float
    title = "eval 10-crop" if ten else "eval"
    bar = _progress(loader, len(loader.dataset), title, show and not args.no_progress)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.amp)
    prefetch = not getattr(args, "no_prefetch", False)
    for x, target in device_batches(loader, prep, decoder, prefetch):
        with autocast:
            if ten:
                probs = model(ten_crop(x, args.crop_size)).float().softmax(1)
                probs = probs.view(target.shape[0], 10, -1).mean(1)
                out = probs.log()
            else:
                out = model(x).float()
        sums += torch.stack([criterion(out, target).double(), *_correct(out, target)])
        n += target.shape[0]
        bar.update(target.shape[0] * (dist.get_world_size() if dist.is_initialized() else 1))
    bar.close()
    loss_sum, c1, c5, n = _all_sum([*sums.tolist(), n], device)
    pre = "val10_" if ten else "val_"
    return {
        pre + "loss": loss_sum / max(n, 1),
        pre + "top1_err": 1 - c1 / max(n, 1),
        pre + "top5_err": 1 - c5 / max(n, 1),
        pre + "n": int(n),
    }


def main(args_list: list[str] | None = None) -> dict:
    """Run training (or `--test-only` evaluation); returns the final metrics, the run directory and
    the last checkpoint path."""
    args = get_args_parser().parse_args(args_list)
    return run(args)


def run(args: argparse.Namespace) -> dict:
    rank, world, local = setup_distributed()
    is_main = rank == 0
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(args.device)
    if args.stem == "auto":
        args.stem = "s2d" if device.type == "cuda" else "direct"
    if args.group_impl == "auto":
        args.group_impl = "blockdiag" if device.type == "cuda" else "groups"
    if device.type == "cuda":
        device = torch.device("cuda", local if device.index is None else device.index + local)
        torch.cuda.set_device(device)
        torch.backends.cudnn.benchmark = True
    towers = _tower_devices(args, local)
    if towers:
        args.arch = "alexnet-towers"
        device = torch.device(towers[0])
    torch.manual_seed(args.seed)

    train_samples, num_classes = (
        ([], 0) if args.test_only else load_samples(args.data_path, args.format, "train")
    )
    val_samples, n_val_classes = load_samples(args.data_path, args.format, "val")
    num_classes = max(num_classes, n_val_classes)
    resume = ckpt.load(args.resume) if args.resume else None
    if resume is not None:
        ckpt.check_resume(resume, args, num_classes)
    cfg = model_config(args, num_classes, towers)
    if resume is not None and args.test_only:
        # evaluation rebuilds the trained net and its input geometry from the checkpoint
        num_classes = resume["num_classes"]
        cfg = ckpt.config_from_checkpoint(resume, args.resume)
        cfg.devices = towers
        cfg.arch = "alexnet-towers" if towers else cfg.arch
        if cfg.arch == "alexnet-towers" and not towers:
            raise ValueError("this checkpoint holds two towers: pass --devices DEV0,DEV1")
        for key in ("crop_size", "resize_size", "normalize"):
            setattr(args, key, resume["args"].get(key, getattr(args, key)))
    model = build_model(cfg)
    set_lrn_impl(model, args.lrn_impl)
    set_pool_impl(model, args.pool_impl)
    if not towers:
        model.to(device)
    if args.channels_last:
        cast(Any, model).to(memory_format=torch.channels_last)  # absent from Module.to hints
    decay = [p for p in model.parameters() if p.dim() > 1]
    no_decay = [p for p in model.parameters() if p.dim() <= 1]
    optimizer = torch.optim.SGD(
        [
            {"params": decay, "weight_decay": args.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ],
        lr=args.lr,
        momentum=args.momentum,
        # one fused kernel for the whole update on a single GPU
        fused=device.type == "cuda" and not towers,
    )
    scheduler: ReduceLROnPlateau | StepLR = (
        ReduceLROnPlateau(optimizer, mode="min", factor=args.lr_gamma, patience=args.lr_patience)
        if args.lr_schedule == "plateau"
        else StepLR(optimizer, args.lr_step_size, args.lr_gamma)
    )
    start_epoch = 0
    if resume is not None:
        ckpt.load_model(model, resume, args.resume)
        if not args.test_only:
            optimizer.load_state_dict(resume["optimizer"])
            scheduler.load_state_dict(resume["lr_scheduler"])
            start_epoch = resume["epoch"] + 1
    run_model: nn.Module = model
    if world > 1 and not args.test_only:
        ids = [device.index] if device.type == "cuda" and not towers else None
        run_model = nn.parallel.DistributedDataParallel(model, device_ids=ids)
    eval_model: nn.Module = model
    if args.compile:  # a compiled module is an OptimizedModule (nn.Module)
        run_model = cast(nn.Module, torch.compile(run_model, mode=args.compile_mode))
        eval_model = cast(nn.Module, torch.compile(model, mode=args.compile_mode))

    gpu_decode = want_gpu_decode(args, device)
    share = gpu_share(args, gpu_decode)
    decoder = GpuJpegDecoder(device, args.resize_size, args.crop_size) if gpu_decode else None
    dtype = torch.bfloat16 if args.amp and device.type == "cuda" else torch.float32
    prep = DevicePrep(device, dtype, args.normalize, args.channels_last, not args.no_lighting)
    val_ds = ImageDataset(
        val_samples, False, args.resize_size, args.crop_size, args.seed, encoded=share
    )
    val_loader = make_loader(val_ds, ShardSampler(len(val_ds), rank, world), args, device)
    ten_loader = None
    if args.ten_crop:
        ten_ds = ImageDataset(
            val_samples, False, args.resize_size, args.crop_size, full=True, encoded=share
        )
        ten_loader = make_loader(ten_ds, ShardSampler(len(ten_ds), rank, world), args, device)

    out_dir = Path(args.output_dir) if args.output_dir else None
    if out_dir is not None and is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
        cpu_jpeg = "simplejpeg" if _simplejpeg() else "pillow"
        jpeg = {0.0: cpu_jpeg, 1.0: "nvjpeg"}.get(share, f"nvjpeg {share:g} + {cpu_jpeg}")
        ckpt.write_config(
            out_dir, args, cfg, world, num_classes, len(train_samples), len(val_samples), jpeg
        )

    def run_eval() -> dict:
        m = evaluate(eval_model, val_loader, prep, device, args, decoder=decoder, show=is_main)
        if ten_loader is not None:
            ten = evaluate(eval_model, ten_loader, prep, device, args, True, decoder, is_main)
            m.update(ten)
        return m

    result: dict = {
        "run_dir": str(out_dir) if out_dir else "",
        "checkpoint": "",
        "epochs": 0,
        "num_classes": num_classes,
        "model_config": cfg.to_dict(),
    }
    if args.test_only:
        result.update(run_eval())
        _finish(world)
        return _final(result)

    train_ds = ImageDataset(
        train_samples, True, args.resize_size, args.crop_size, args.seed, encoded=share
    )
    sampler = EpochSampler(len(train_ds), True, args.seed, rank, world)
    train_loader = make_loader(train_ds, sampler, args, device, slots=True)
    criterion = nn.CrossEntropyLoss()
    if resume is not None:
        ckpt.restore_rng(resume, rank)
    for epoch in range(start_epoch, args.epochs):
        sampler.set_epoch(epoch)
        stats = train_one_epoch(
            run_model,
            criterion,
            optimizer,
            train_loader,
            prep,
            device,
            epoch,
            args,
            decoder,
            show=is_main,
        )
        stats.update(run_eval())
        stats["lr"] = optimizer.param_groups[0]["lr"]
        if isinstance(scheduler, ReduceLROnPlateau):  # args.lr_schedule == "plateau"
            scheduler.step(stats["val_top1_err"])
        else:
            scheduler.step()
        rng = ckpt.gather_rng(world)
        if is_main:
            print(
                f"epoch {epoch}: "
                + ", ".join(f"{k}={v:.4g}" for k, v in stats.items() if isinstance(v, float)),
                file=sys.stderr,
            )
        if out_dir is not None and is_main:
            state = {
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "lr_scheduler": scheduler.state_dict(),
                "epoch": epoch,
                "args": vars(args),
                "model_config": cfg.to_dict(),
                "num_classes": num_classes,
                "rng": rng,
                "sampler": sampler.state_dict(),
                "world_size": world,
            }
            result["checkpoint"] = ckpt.save(out_dir, state, epoch)
            ckpt.append_summary(out_dir, epoch, stats)
        result.update(stats)
        result["epochs"] = epoch + 1
    _finish(world)
    return _final(result)


def _final(result: dict) -> dict:
    if "val_top1_err" in result:
        result["top1_err"], result["top5_err"] = result["val_top1_err"], result["val_top5_err"]
    return result


def _finish(world: int) -> None:
    if world > 1 and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


if __name__ == "__main__":
    res = main(sys.argv[1:])
    print({k: v for k, v in res.items() if k != "model_config"})
