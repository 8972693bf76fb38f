"""Training runs on a small generated export: learning, exact resume, torchrun (gloo), the CLI."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from train.engine import main
from train.synthetic import make_export

ROOT = Path(__file__).resolve().parents[2]
# 64-px crops of 72-px images and 256-wide FC layers: the 2012 net's layers, small enough for CPU.
SMALL = ["--crop-size", "64", "--resize-size", "72", "--fc-dim", "256", "--device", "cpu",
         "--no-progress", "--init", "released", "-b", "16"]  # fmt: skip


@pytest.fixture(scope="module")
def export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """4 classes of distinct colour and stripe angle: learnable in a few epochs."""
    return make_export(tmp_path_factory.mktemp("export"), classes=4, train_per_class=24,
                       val_per_class=6, size=72)  # fmt: skip


@pytest.mark.slow
def test_tiny_training_run_learns(export: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    res = main(["--data-path", str(export), "--epochs", "8", "-j", "0", "--output-dir", str(out),
                "--ten-crop", *SMALL])  # fmt: skip
    assert res["epochs"] == 8 and res["num_classes"] == 4
    assert res["top1_err"] <= 0.35, res  # chance is 0.75
    assert res["val10_top1_err"] <= 0.35, res
    assert res["val_n"] == 24
    rows = list(csv.DictReader((out / "summary.csv").open()))
    assert [int(r["epoch"]) for r in rows] == list(range(8))
    assert float(rows[-1]["train_loss"]) < float(rows[0]["train_loss"])
    config = json.loads((out / "config.json").read_text())
    assert config["model"]["num_classes"] == 4 and config["args"]["lr"] == 0.01
    assert {p.name for p in out.iterdir()} >= {"checkpoint.pth", "model_0.pth", "model_7.pth"}
    ck = torch.load(out / "checkpoint.pth", weights_only=False)
    assert {"model", "optimizer", "lr_scheduler", "epoch", "args", "rng", "sampler"} <= set(ck)
    # evaluation only, from the checkpoint, agrees with the last epoch's validation
    ev = main(["--data-path", str(export), "--resume", str(out / "checkpoint.pth"),
               "--test-only", "-j", "0", "--device", "cpu", "--no-progress"])  # fmt: skip
    assert ev["val_top1_err"] == pytest.approx(res["val_top1_err"])


@pytest.mark.slow
def test_compiled_run_trains_and_evaluates_like_eager(export: Path) -> None:
    """--compile (here with --compile-mode reduce-overhead, CUDA graphs on a GPU, plain Inductor
    on CPU): the compiled train step and the compiled eval model, ten-crop included, give the
    eager run's numbers up to float rounding."""
    # no dropout: Inductor draws its masks from its own generator, so they differ from eager
    common = ["--data-path", str(export), "--epochs", "1", "-j", "0", "--ten-crop", "--dropout",
              "0", *SMALL]  # fmt: skip
    eager = main(common)
    compiled = main([*common, "--compile", "--compile-mode", "reduce-overhead"])
    assert compiled["train_loss"] == pytest.approx(eager["train_loss"], rel=1e-3)
    for key in ("val_loss", "val10_loss"):  # weights that drifted apart by rounding for 6 steps
        assert compiled[key] == pytest.approx(eager[key], rel=1e-2), key
    assert compiled["val10_n"] == eager["val10_n"] == 24


@pytest.mark.slow
def test_resume_reaches_the_same_weights(export: Path, tmp_path: Path) -> None:
    """Uninterrupted 3 epochs == 2 epochs, stop, --resume to 3 (bitwise), with loader workers."""
    common = ["--data-path", str(export), "-j", "2", *SMALL]
    main([*common, "--epochs", "3", "--output-dir", str(tmp_path / "a")])
    main([*common, "--epochs", "2", "--output-dir", str(tmp_path / "b")])
    res = main([*common, "--epochs", "3", "--output-dir", str(tmp_path / "b"),
                "--resume", str(tmp_path / "b" / "checkpoint.pth")])  # fmt: skip
    assert res["epochs"] == 3
    a = torch.load(tmp_path / "a" / "checkpoint.pth", weights_only=False)
    b = torch.load(tmp_path / "b" / "checkpoint.pth", weights_only=False)
    assert a["epoch"] == b["epoch"] == 2
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    mom_a = [s["momentum_buffer"] for s in a["optimizer"]["state"].values()]
    mom_b = [s["momentum_buffer"] for s in b["optimizer"]["state"].values()]
    assert all(torch.equal(x, y) for x, y in zip(mom_a, mom_b, strict=True))
    rows = list(csv.DictReader((tmp_path / "b" / "summary.csv").open()))
    assert [int(r["epoch"]) for r in rows] == [0, 1, 2]


@pytest.mark.slow
@pytest.mark.parametrize("towers", [False, True])
def test_torchrun_two_processes_gloo(export: Path, tmp_path: Path, towers: bool) -> None:
    """Data parallel on CPU; with `--devices` each process trains the two-tower split."""
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           "-m", "train.engine", "--data-path", str(export), "--epochs", "2", "-j", "1",
           "--output-dir", str(out), *SMALL[:-2], "-b", "8"]  # fmt: skip
    if towers:
        cmd += ["--devices", "cpu,cpu"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    config = json.loads((out / "config.json").read_text())
    assert config["world_size"] == 2
    rows = list(csv.DictReader((out / "summary.csv").open()))
    assert len(rows) == 2
    ck = torch.load(out / "checkpoint.pth", weights_only=False)
    assert len(ck["rng"]) == 2  # each rank's RNG state, for an exact resume
    assert ck["world_size"] == 2 and "'val_n': 24" in proc.stdout  # every val image once
    assert config["model"]["arch"] == ("alexnet-towers" if towers else "alexnet2012")
    assert config["decoder"] == "simplejpeg"  # CPU run, simplejpeg installed
    if towers:  # each tower's own layers, as the paper's two GPUs held them
        assert any(k.startswith("towers.1.") for k in ck["model"]), list(ck["model"])[:5]


@pytest.mark.slow
def test_webdataset_training(tmp_path: Path) -> None:
    wds = make_export(tmp_path / "wds", classes=4, train_per_class=8, val_per_class=2, size=72,
                      fmt="webdataset")  # fmt: skip
    res = main(["--data-path", str(wds), "--format", "webdataset", "--epochs", "1", "-j", "0",
                *SMALL])  # fmt: skip
    assert res["epochs"] == 1 and res["val_n"] == 8 and res["num_classes"] == 4


@pytest.mark.slow
def test_cli_train_evaluate_and_invariance(export: Path, tmp_path: Path) -> None:
    from imnet.cli import main as imnet

    run = tmp_path / "cli-run"
    g = ["--data-dir", str(tmp_path / "data")]
    assert imnet([*g, "train", "--data-path", str(export), "--epochs", "2", "-j", "0",
                  "--output-dir", str(run), *SMALL]) == 0  # fmt: skip
    assert (run / "checkpoint.pth").exists()
    assert imnet([*g, "evaluate", "--data-path", str(export), "--resume",
                  str(run / "checkpoint.pth"), "--ten-crop", "-j", "0", "--no-progress"]) == 0  # fmt: skip
    out = tmp_path / "inv"
    assert imnet([*g, "analyze", "invariance", "--data-path", str(export), "--resume",
                  str(run / "checkpoint.pth"), "--out", str(out), "--max-images", "8"]) == 0  # fmt: skip
    rows = list(csv.DictReader((out / "invariance.csv").open()))
    kinds = {r["transform"] for r in rows}
    assert kinds == {"translation", "scale", "rotation"}
    base = [r for r in rows if r["transform"] == "rotation" and float(r["amount"]) == 0]
    assert float(base[0]["dist_fc7"]) == pytest.approx(0.0, abs=1e-5)  # identity: no change
    assert (out / "invariance.png").read_bytes()[:4] == b"\x89PNG"
    # a bad export path is a one-line user error (exit 2), not a traceback
    assert imnet([*g, "train", "--data-path", str(tmp_path / "nope"), "--epochs", "1"]) == 2


@pytest.mark.slow
def test_bench_smoke_runs_on_cpu() -> None:
    proc = subprocess.run([sys.executable, "bench/train_gpu.py", "--smoke"], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    out = proc.stdout
    assert "imnet 2012 AlexNet (kernels), eager" in out
    assert "end-to-end, CPU decode in workers" in out
    assert "loader only, CPU decode in workers" in out
    assert "failed" not in out.split("GPU: ")[-1]


@pytest.mark.slow
def test_loader_bench_smoke_runs() -> None:
    proc = subprocess.run([sys.executable, "bench/train_loader.py", "--smoke"], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "ratio imnet (best) / reference:" in proc.stdout
    assert "ratio reused slots / fresh buffers:" in proc.stdout
    assert "decoder: simplejpeg" in proc.stdout  # a dependency: the fast path must be the one run


@pytest.mark.slow
def test_two_tower_training_and_evaluation(export: Path, tmp_path: Path) -> None:
    """`--devices A,B` trains the two-tower form (both on the CPU here) and evaluates it."""
    out = tmp_path / "towers"
    res = main(["--data-path", str(export), "--epochs", "1", "-j", "0", "--devices", "cpu,cpu",
                "--output-dir", str(out), *SMALL])  # fmt: skip
    assert res["model_config"]["arch"] == "alexnet-towers"
    ck = torch.load(out / "checkpoint.pth", weights_only=False)
    assert any(k.startswith("towers.1.conv3") for k in ck["model"])
    ev = main(["--data-path", str(export), "--resume", str(out / "checkpoint.pth"), "--test-only",
               "--devices", "cpu,cpu", "-j", "0", "--no-progress"])  # fmt: skip
    assert ev["val_top1_err"] == pytest.approx(res["val_top1_err"])
