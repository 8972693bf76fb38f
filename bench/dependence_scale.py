"""Benchmark: what the test of every pair (dependence_pairs.py) adds to the dependence pass, and its growth.

The worst case for it is a small crowd of excellent workers: every pair agrees over 85% of the
time, so every pair passes the floor and costs an outside fit (at most MAX_MEASURED of them), where
a large crowd's pairs rarely co-vote enough to be measured at all. Crowds of 5, 8 and 20 workers
at 0.98, 5 votes per item, 25% positives, 100k and 500k votes (the pooled pass reads at most
consensus_dependence_votes = 500k); the peer is the same call with `pairs=False` (the split
clusters alone), in the same run. Prints seconds, the ratio to the peer, and the growth exponent
log(t2/t1) / log(n2/n1) of the pairs pass.

Second table: one RobustConsensus fit of a synset's votes (10k and 50k: ImageNet's largest
synsets hold a few thousand candidates at ~5 votes each) with the suspected pairs weighed
(dependence_soft.py, consensus_dependence_prior 0.05) against the same fit with them off (0):
with excellent workers every pair is suspected at the 85% floor and up to MAX_MEASURED of them
cost an outside fit each.

Third table: the pass with and without testing failed clusters again (dependence.py `retry`,
at most MAX_MEASURED outside fits) in a large careful crowd (half 0.92, half 0.75, 5 votes per
item), whose many small clusters all fail: the retry's worst case.

    python bench/dependence_scale.py
    python bench/dependence_scale.py --votes 20000,100000 --workers 5
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from curation.consensus.base import Votes  # noqa: E402
from curation.consensus.dependence import dependent_groups  # noqa: E402
from curation.consensus.robust import RobustConsensus  # noqa: E402


def crowd(
    n_workers: int, n_votes: int, seed: int = 0, mixed: bool = False
) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    n = n_votes // 5
    truth = (rng.random(n) < 0.25).astype(np.int64)
    keys = rng.random((n, n_workers))
    worker = np.argsort(keys, axis=1)[:, :5].ravel()
    item = np.repeat(np.arange(n), 5)
    acc = np.where(np.arange(n_workers) < n_workers // 2, 0.92, 0.75)[worker] if mixed else 0.98
    label = np.where(rng.random(len(item)) < acc, truth[item], 1 - truth[item])
    return item, worker, label, np.arange(len(item))


def timed(
    args: tuple[np.ndarray, ...], n_workers: int, pairs: bool, retry: bool = True
) -> tuple[float, int]:
    item, worker, label, order = args
    t = time.perf_counter()
    found = dependent_groups(
        item, worker, label, int(item.max()) + 1, n_workers,
        min_evidence=3.0, measure=True, order=order, pairs=pairs, retry=retry,
    )  # fmt: skip
    return time.perf_counter() - t, len(found)


def fit_time(args: tuple[np.ndarray, ...], n_workers: int, prior: float) -> tuple[float, int]:
    item, worker, label, order = args
    votes = Votes(item, worker, label, int(item.max()) + 1, n_workers, order=order)
    t = time.perf_counter()
    m = RobustConsensus(dependence_prior=prior).fit(votes)
    return time.perf_counter() - t, len(m.soft_pairs_[0])


Run = Callable[[tuple[np.ndarray, ...], int, bool], tuple[float, int]]


def table(title: str, crowds: str, sizes: list[int], run: Run, mixed: bool = False) -> None:
    """One row per crowd size and vote count: the peer (run(..., False)), ours (run(..., True)),
    their ratio, what ours found, and ours' growth exponent over the vote counts."""
    print(f"\n{'workers':>7s} {'votes':>8s} {title} {'ratio':>6s} found")
    for nw in (int(w) for w in crowds.split(",")):
        prev: tuple[int, float] | None = None
        for n in sizes:
            data = crowd(nw, n, mixed=mixed)
            base, _ = run(data, nw, False)
            full, found = run(data, nw, True)
            grow = ""
            if prev is not None:
                grow = f"  growth {math.log(full / prev[1]) / math.log(n / prev[0]):.2f}"
            print(f"{nw:7d} {n:8d} {base:8.2f} {full:8.2f} {full / base:6.2f} {found:5d}{grow}")
            prev = (n, full)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--votes", default="100000,500000", help="comma-separated vote counts")
    ap.add_argument("--workers", default="5,8,20", help="comma-separated crowd sizes")
    ap.add_argument("--fit-votes", default="10000,50000", help="vote counts of the fit table")
    ap.add_argument("--retry-workers", default="1000", help="crowd sizes of the retry table")
    a = ap.parse_args()
    sizes = [int(v) for v in a.votes.split(",")]
    fit_sizes = [int(v) for v in a.fit_votes.split(",")]
    table(" split s  pairs s", a.workers, sizes, lambda d, nw, on: timed(d, nw, pairs=on))
    soft: Run = lambda d, nw, on: fit_time(d, nw, 0.05 if on else 0.0)  # noqa: E731
    table("   off s   soft s", a.workers, fit_sizes, soft)
    again: Run = lambda d, nw, on: timed(d, nw, pairs=True, retry=on)  # noqa: E731
    table("  once s  retry s", a.retry_workers, sizes, again, mixed=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
