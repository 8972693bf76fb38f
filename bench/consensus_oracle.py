"""The vote floor under bench/consensus.py's simulation: Bayes-optimal policies that know the truth's parameters.

For each policy below, the fewest expected votes per item at which precision >= 0.997 and
recall >= 0.98 (pooled over the four synsets, as bench/consensus.py scores them) are reachable.
Each is solved exactly, not simulated: per item an optimal stopping problem (accept, reject, or
ask one more vote from the next worker in line) with the Lagrangian costs of
curation/consensus/stopping.py, solved by backward induction over the vote counts per worker
type up to a cap, its expected votes / true and false accepts / false rejects read off by a
forward pass; an outer search over the two multipliers (the same for every synset) finds the
cheapest point meeting both goals. Votes per item count real votes only; `--gold` multiplies them
by 1 + mturk_gold_per_hit / (mturk_images_per_hit - mturk_gold_per_hit), the HIT layout's gold.

What the oracles know (more than any pipeline can):
  * every worker's true accuracy; the random and always-yes workers are never asked (free
    perfect blocking);
  * "item": whether each image is ambiguous; "share": only each synset's ambiguous share and the
    ambiguity strength (the best a model fitted to the votes could ever know);
  * pool "mixed": good (0.9) and mediocre (0.7) workers both answer, in their shares of the
    honest pool; "good": mediocre workers are blocked too (free), only 0.9 workers answer.

    python bench/consensus_oracle.py            # all four, ~1 minute
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from consensus import GOLD_RATE, MIX, POSITIVE_SHARE, SYNSETS  # noqa: E402

TARGET_P, TARGET_R = 0.997, 0.98
SHRINK = 0.5  # the simulation pulls ambiguous accuracy halfway to a coin flip


def _compositions(t: int, d: int) -> Iterator[tuple[int, ...]]:
    if d == 1:
        yield (t,)
        return
    for i in range(t + 1):
        for rest in _compositions(t - i, d - 1):
            yield (i, *rest)


class OptimalStopping:
    """Exact DP for one synset: state = (yes, no) counts per worker type, total <= cap."""

    def __init__(self, types: list[tuple[float, float]], share: float, cap: int) -> None:
        self.types, self.cap = types, cap
        dims = 2 * len(types)
        self.strides = (cap + 1) ** np.arange(dims)
        self.layers = [np.array(list(_compositions(t, dims))) for t in range(cap + 1)]
        self.index = [c @ self.strides for c in self.layers]
        self.size = (cap + 1) ** dims
        self.p: list[np.ndarray] = []
        self.pred: list[list[np.ndarray]] = []
        cells = [(c, d) for c in (0, 1) for d in (0, 1)]
        for counts in self.layers:
            logs = []
            for c, d in cells:
                weight = (1 - share) if d == 0 else share
                lj = np.full(len(counts), -np.inf if weight == 0 else np.log(weight))
                lj += np.log(POSITIVE_SHARE if c else 1 - POSITIVE_SHARE)
                for k, (_, acc) in enumerate(types):
                    py = self._p_yes(acc, c, d)
                    lj = lj + counts[:, 2 * k] * np.log(py) + counts[:, 2 * k + 1] * np.log1p(-py)
                logs.append(lj)
            lg = np.stack(logs)
            w = np.exp(lg - lg.max(axis=0))
            w /= w.sum(axis=0)
            self.p.append(w[2] + w[3])
            self.pred.append(
                [
                    sum(w[i] * self._p_yes(acc, c, d) for i, (c, d) in enumerate(cells))
                    for _, acc in types
                ]
            )

    @staticmethod
    def _p_yes(acc: float, c: int, d: int) -> float:
        a = acc if d == 0 else 0.5 + SHRINK * (acc - 0.5)
        return a if c else 1 - a

    def solve(self, fp: float, fn: float) -> tuple[float, float, float, float]:
        """(votes, true accepts, false accepts, false rejects), expected per item."""
        value = np.zeros(self.size)
        go: list[np.ndarray] = [np.zeros(0, bool)] * (self.cap + 1)
        for t in range(self.cap, -1, -1):
            p = self.p[t]
            stop = np.minimum(fp * (TARGET_P - p), fn * p)
            if t == self.cap:
                go[t] = np.zeros(len(p), bool)
                value[self.index[t]] = stop
                continue
            cont = np.ones(len(p))
            for k, (q, _) in enumerate(self.types):
                py = self.pred[t][k]
                up = value[self.index[t] + self.strides[2 * k]]
                down = value[self.index[t] + self.strides[2 * k + 1]]
                cont += q * (py * up + (1 - py) * down)
            go[t] = cont < stop
            value[self.index[t]] = np.minimum(stop, cont)
        mass = np.zeros(self.size)
        mass[0] = 1.0
        votes = tp = fa = fr = 0.0
        for t in range(self.cap + 1):
            p, m = self.p[t], mass[self.index[t]]
            accept = fp * (TARGET_P - p) <= fn * p
            moving = np.where(go[t], m, 0.0)
            stopped = m - moving
            tp += float((stopped * p * accept).sum())
            fa += float((stopped * (1 - p) * accept).sum())
            fr += float((stopped * p * ~accept).sum())
            votes += float(moving.sum())
            for k, (q, _) in enumerate(self.types):
                if t == self.cap:
                    break
                py = self.pred[t][k]
                np.add.at(mass, self.index[t] + self.strides[2 * k], moving * q * py)
                np.add.at(mass, self.index[t] + self.strides[2 * k + 1], moving * q * (1 - py))
        return votes, tp, fa, fr


def honest_pool(pool: str) -> list[tuple[float, float]]:
    """[(share of asks, accuracy)] of the workers an oracle lets answer."""
    honest = [(share, acc) for _, share, acc in MIX if acc is not None]
    if pool == "good":
        honest = honest[:1]
    total = sum(s for s, _ in honest)
    return [(s / total, acc) for s, acc in honest]


def floor(mode: str, pool: str, cap: int) -> dict:
    """The cheapest (fp, fn) point meeting both goals, with its pooled and per-synset figures."""
    types = honest_pool(pool)
    shares = [a for _, a in SYNSETS]
    if mode == "share":
        models = [OptimalStopping(types, a, cap) for a in shares]

        def run(fp: float, fn: float) -> list[tuple[float, ...]]:
            return [m.solve(fp, fn) for m in models]
    else:
        clear, amb = OptimalStopping(types, 0.0, cap), OptimalStopping(types, 1.0, cap)

        def run(fp: float, fn: float) -> list[tuple[float, ...]]:
            c, a = clear.solve(fp, fn), amb.solve(fp, fn)
            return [tuple((1 - s) * x + s * y for x, y in zip(c, a, strict=True)) for s in shares]

    def pooled(res: list[tuple[float, ...]]) -> tuple[float, float, float]:
        v = sum(r[0] for r in res) / len(res)
        tp, fa, fr = (sum(r[i] for r in res) for i in (1, 2, 3))
        return v, tp / (tp + fa), tp / (tp + fr)

    best = None
    for fp in np.geomspace(200, 50000, 25):
        lo, hi = 0.0, np.log(1e6)  # fn on a log scale: the least that meets the recall goal
        for _ in range(30):
            mid = (lo + hi) / 2
            lo, hi = (lo, mid) if pooled(run(fp, np.exp(mid)))[2] >= TARGET_R else (mid, hi)
        res = run(fp, np.exp(hi))
        v, prec, rec = pooled(res)
        if prec >= TARGET_P and (best is None or v < best["votes"]):
            best = {"votes": v, "precision": prec, "recall": rec, "fp": fp, "fn": np.exp(hi)}
            best["per_synset"] = {
                name: (r[1] / (r[1] + r[2]), r[1] / (r[1] + r[3]), r[0])
                for (name, _), r in zip(SYNSETS, res, strict=True)
            }
    assert best is not None
    return best


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--cap", type=int, default=30, help="votes per item at most (default 30)")
    ap.add_argument("--gold", action="store_true", help="count the HIT layout's gold questions")
    args = ap.parse_args()
    scale = 1 + GOLD_RATE if args.gold else 1.0
    print(
        f"least votes/item for precision >= {TARGET_P} and recall >= {TARGET_R}; "
        f"{'with' if args.gold else 'without'} gold (x{scale:.4f}); cap {args.cap}"
    )
    head = (
        f"{'oracle':30s} {'votes/item':>10s} {'precision':>9s} {'recall':>7s} {'fp':>7s} {'fn':>7s}"
    )
    print(head + "   | per synset precision/recall/votes")
    for mode in ("item", "share"):
        for pool in ("mixed", "good"):
            b = floor(mode, pool, args.cap)
            cells = "  ".join(
                f"{n}: {p:.4f}/{r:.3f}/{v * scale:.2f}" for n, (p, r, v) in b["per_synset"].items()
            )
            name = f"knows {mode}, {pool} workers"
            print(
                f"{name:30s} {b['votes'] * scale:10.2f} {b['precision']:9.4f} {b['recall']:7.4f} "
                f"{b['fp']:7.0f} {b['fn']:7.0f}   | {cells}"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
