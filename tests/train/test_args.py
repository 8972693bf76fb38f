"""`imnet train` flags: the loader's default worker count follows the CPUs actually available."""

from __future__ import annotations

import os

import pytest

from train import args as train_args


def test_default_workers_follow_the_affinity_not_a_fixed_eight(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1})
    assert train_args.default_workers() == 2
    assert train_args.get_args_parser().parse_args(["--data-path", "x"]).workers == 2
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(64)))
    assert train_args.default_workers() == 8
    assert train_args.get_args_parser().parse_args(["--data-path", "x", "-j", "3"]).workers == 3
