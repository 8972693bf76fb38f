"""`imnet train` / `evaluate` / `analyze` from the command line: hostile flags and files give one
line and exit 2; a real 1-step run on torchvision's layout, evaluated on Kaggle's."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from imnet.cli import main
from tests.train.test_layouts import WNIDS, kaggle_tree, torchvision_tree

SMALL = ["--crop-size", "64", "--resize-size", "72", "--fc-dim", "64", "--device", "cpu",
         "--no-progress", "-b", "16"]  # fmt: skip
ANALYZE = ["analyze", "invariance", "--data-path", "d", "--resume", "c", "--out", "o"]
# (flag, a refused value) for every numeric flag
BAD = [("--epochs", "-3"), ("--epochs", "0"), ("-b", "0"), ("--batch-size", "x"),
       ("-j", "-1"), ("--workers", "100000"), ("--lr", "-0.1"), ("--lr", "nan"),
       ("--momentum", "1.5"), ("--wd", "inf"), ("--lr-patience", "-1"), ("--lr-step-size", "0"),
       ("--lr-gamma", "0"), ("--crop-size", "7"), ("--resize-size", "99999"),
       ("--dropout", "1"), ("--fc-dim", "0"), ("--init-std", "-1"), ("--gpu-share", "2"),
       ("--seed", "-1"), ("--print-freq", "-5")]  # fmt: skip


def _one_line_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as e:
        main(argv)
    err = capsys.readouterr().err
    assert e.value.code == 2 and len(err.strip().splitlines()) == 1, err
    return err


@pytest.mark.parametrize("command", ["train", "evaluate"])
@pytest.mark.parametrize(("flag", "value"), BAD)
def test_numeric_flags_are_refused_in_one_line(
    command: str, flag: str, value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [command, "--data-path", "d", "--resume", "c", flag, value]
    err = _one_line_exit_2(argv, capsys)
    assert err.startswith(f"imnet {command}: error: argument ") and flag in err, err


@pytest.mark.parametrize("value", ["0", "-4", "many"])
def test_analyze_max_images_is_refused_in_one_line(
    value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert "--max-images" in _one_line_exit_2([*ANALYZE, "--max-images", value], capsys)


def test_train_help_lists_resume_as_an_option(capsys: pytest.CaptureFixture[str]) -> None:
    for command in ("train", "evaluate", "train"):  # evaluate's --resume must not leak back
        with pytest.raises(SystemExit):
            main([command, "--help"])
        out = capsys.readouterr().out
        assert "--resume RESUME" in out and "positional arguments" not in out, out


def test_crop_larger_than_resize_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--data-dir", str(tmp_path), "train", "--data-path", str(tmp_path)]
    assert main([*argv, "--crop-size", "300"]) == 2
    assert "--crop-size 300 is larger than --resize-size 256" in capsys.readouterr().err


def test_evaluate_refuses_what_is_not_a_checkpoint(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "tv"
    torchvision_tree(data, missing_in_val="")
    urls = tmp_path / "urls.tsv"
    urls.write_text("url\twnid\nhttp://example.com/a.jpg\tn01440764\n")
    whole = tmp_path / "whole.pth"
    cfg = {"fc_dim": 64, "num_classes": 4, "input_size": 64}
    state = {"model": {"w": torch.zeros(1000)}, "model_config": cfg, "num_classes": 4, "args": {}}
    torch.save(state, whole)
    foreign = tmp_path / "foreign.pth"
    torch.save({**state, "model_config": {"colour": "red"}}, foreign)
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    other = tmp_path / "other.pth"
    torch.save([1, 2, 3], other)
    empty_dir = tmp_path / "run"
    empty_dir.mkdir()
    g = ["--data-dir", str(tmp_path / "d"), "evaluate", "--data-path", str(data), *SMALL]
    for bad, says in ((urls, "not a readable checkpoint"), (tmp_path / "none.pth", "not exist"),
                      (empty_dir, "does not exist"), (truncated, "not a readable checkpoint"),
                      (other, "not an imnet checkpoint"), (whole, "does not fit this model"),
                      (foreign, "model_config is unusable")):  # fmt: skip
        assert main([*g, "--resume", str(bad)]) == 2
        err = capsys.readouterr().err
        assert len(err.splitlines()) == 1 and says in err and bad.name in err, err


def _imnet(*argv: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONWARNINGS": "default"}
    cmd = [sys.executable, "-m", "imnet", *argv]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600, check=False)


@pytest.mark.slow
def test_one_step_on_torchvision_root_then_evaluate_on_kaggle(tmp_path: Path) -> None:
    """The CLI end to end on CPU with the default loader workers: no torch warning about their
    number, a checkpoint path printed, evaluation on another layout with the same classes, and a
    finished checkpoint refused for more training at the same --epochs."""
    tv, kaggle = tmp_path / "tv", tmp_path / "kaggle"
    torchvision_tree(tv, missing_in_val=WNIDS[0])
    kaggle_tree(kaggle, sorted(WNIDS), missing_in_val=WNIDS[1])
    g = ["--data-dir", str(tmp_path / "d")]
    out = tmp_path / "run"
    res = _imnet(*g, "train", "--data-path", str(tv), "--epochs", "1", "--output-dir", str(out),
                 *SMALL)  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert "worker" not in res.stderr.lower(), res.stderr
    ckpt = out / "checkpoint.pth"
    assert f"checkpoint: {ckpt}" in res.stdout and ckpt.is_file()
    assert "after 1 epochs" in res.stdout
    ev = _imnet(*g, "evaluate", "--data-path", str(kaggle), "--resume", str(ckpt), *SMALL)
    assert ev.returncode == 0, ev.stderr
    assert "val_n: 6" in ev.stdout and "val_top1_err" in ev.stdout
    again = _imnet(*g, "train", "--data-path", str(tv), "--epochs", "1", "--resume", str(ckpt),
                   "--output-dir", str(out), *SMALL)  # fmt: skip
    assert again.returncode == 2 and "already ran 1 epochs" in again.stderr
    assert len(again.stderr.strip().splitlines()) == 1, again.stderr
