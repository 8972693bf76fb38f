"""Change points in a worker's accuracy: binary segmentation of a Bernoulli sequence (gold + agreement).

A worker who is good for a few hundred votes and then careless has one lifetime accuracy that
describes neither half; the robust consensus (robust.py) splits each worker's history at the
points where the rate of correct answers changes, and gives each segment its own coins.

Per worker, the signals in time order are soft "was right" scores in [0, 1]: a gold answer is 0/1,
a vote on an item scores its leave-one-out posterior of the class voted for. The single best cut
maximises the two-segment Bernoulli log-likelihood (Killick, Fearnhead & Eckley, JASA 107, 2012,
for the penalised-likelihood view; binary segmentation, Scott & Knott 1974, to find more than one):
a cut is kept when its log-likelihood gain exceeds `penalty` (a BIC-like ~log(n) + margin) and both
sides hold `min_segment` signals. A drop from 0.9 to 0.55 gains ~0.5 nats per careless vote, so the
default penalty (8 nats) is crossed after ~20-30 careless votes: drift is caught in tens of votes.
"""

from __future__ import annotations

import numpy as np


def _bern_ll(s: np.ndarray, n: np.ndarray) -> np.ndarray:
    """Maximised Bernoulli log-likelihood of n signals summing to s (fractional allowed)."""
    m = np.clip(s / np.maximum(n, 1e-12), 1e-6, 1 - 1e-6)
    return n * (m * np.log(m) + (1 - m) * np.log1p(-m))


def best_cut(score: np.ndarray, min_segment: int) -> tuple[int, float]:
    """(cut index t: signals [:t] | [t:], log-likelihood gain) of the best single cut; (0, 0) if none."""
    n = len(score)
    if n < 2 * min_segment:
        return 0, 0.0
    c = np.cumsum(score)
    t = np.arange(min_segment, n - min_segment + 1)
    left = _bern_ll(c[t - 1], t.astype(float))
    right = _bern_ll(c[-1] - c[t - 1], (n - t).astype(float))
    gain = left + right - _bern_ll(np.array(c[-1]), np.array(float(n)))
    k = int(np.argmax(gain))
    return int(t[k]), float(gain[k])


def segment(score: np.ndarray, min_segment: int, penalty: float, depth: int = 2) -> list[int]:
    """Cut indices into `score` (time-ordered) by binary segmentation, at most 2**depth - 1 cuts."""
    t, gain = best_cut(score, min_segment)
    if t == 0 or gain <= penalty:
        return []
    if depth <= 1:
        return [t]
    left = segment(score[:t], min_segment, penalty, depth - 1)
    right = segment(score[t:], min_segment, penalty, depth - 1)
    return [*left, t, *(t + r for r in right)]


def change_times(
    worker: np.ndarray,
    order: np.ndarray,
    score: np.ndarray,
    n_workers: int,
    min_segment: int = 12,
    penalty: float = 8.0,
) -> list[np.ndarray]:
    """Per worker, the times (values of `order`) at which a new segment starts (sorted; may be empty).

    `worker`, `order`, `score`: one row per signal (gold answer or vote). A segment starts at the
    first signal after a cut, so a signal at time >= the k-th change time belongs to segment >= k.
    """
    out: list[np.ndarray] = [np.zeros(0, dtype=np.int64) for _ in range(n_workers)]
    if not len(worker):
        return out
    idx = np.lexsort((order, worker))
    w_sorted = worker[idx]
    bounds = np.r_[0, np.flatnonzero(np.diff(w_sorted)) + 1, len(idx)]
    for a, b in zip(bounds[:-1], bounds[1:], strict=True):
        if b - a < 2 * min_segment:
            continue
        rows = idx[a:b]
        cuts = segment(score[rows], min_segment, penalty)
        if cuts:
            out[int(w_sorted[a])] = np.asarray(order[rows][cuts], dtype=np.int64)
    return out


def segment_of(worker: np.ndarray, order: np.ndarray, changes: list[np.ndarray]) -> np.ndarray:
    """Per row, the segment number of its worker at its time (0 before the first change)."""
    out = np.zeros(len(worker), dtype=np.int64)
    for w, times in enumerate(changes):
        if len(times):
            rows = worker == w
            out[rows] = np.searchsorted(times, order[rows], side="right")
    return out
