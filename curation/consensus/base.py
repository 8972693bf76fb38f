"""The votes table every consensus algorithm reads, and the shared fit/fit_predict interface."""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

# Binary verification: class 1 = "the image shows the synset", class 0 = "it does not".
NO, YES = 0, 1

# Decisions as stored in `label.decision`.
ACCEPT, REJECT, UNDECIDED = "accept", "reject", "undecided"
# An item the eligible crowd cannot decide (robust consensus; its posterior is the precision
# accepting it would have). The same value as curation.consensus.robust.INSUFFICIENT.
INSUFFICIENT = "insufficient_crowd"


@dataclass
class Votes:
    """A long-format votes table held as parallel numpy arrays (crowd-kit's task/worker/label).

    `item[k]`, `worker[k]`, `label[k]` describe vote k; items and workers are dense codes
    `0..n_items-1` / `0..n_workers-1`, and `item_keys` / `worker_keys` map codes back to the
    caller's ids. `order[k]` is the vote's position in time (smaller = earlier): sequential
    methods read an item's votes in that order; when absent, row order is the time order.
    """

    item: np.ndarray
    worker: np.ndarray
    label: np.ndarray
    n_items: int
    n_workers: int
    n_classes: int = 2
    item_keys: list[Hashable] = field(default_factory=list)
    worker_keys: list[Hashable] = field(default_factory=list)
    # Empty (the default) means row order is the time order; always an array after __post_init__.
    order: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))

    def __post_init__(self) -> None:
        self.item = np.asarray(self.item, dtype=np.int64)
        self.worker = np.asarray(self.worker, dtype=np.int64)
        self.label = np.asarray(self.label, dtype=np.int64)
        if not (len(self.item) == len(self.worker) == len(self.label)):
            raise ValueError("votes: item, worker and label arrays differ in length")
        if len(self.item):
            if self.item.min() < 0 or self.item.max() >= self.n_items:
                raise ValueError("votes: item code out of range")
            if self.worker.min() < 0 or self.worker.max() >= self.n_workers:
                raise ValueError("votes: worker code out of range")
            if self.label.min() < 0 or self.label.max() >= self.n_classes:
                raise ValueError(f"votes: label outside 0..{self.n_classes - 1}")
        if not self.item_keys:
            self.item_keys = list(range(self.n_items))
        if not self.worker_keys:
            self.worker_keys = list(range(self.n_workers))
        self.order = np.asarray(self.order, dtype=np.int64)
        if len(self.order) == 0:
            self.order = np.arange(len(self.item), dtype=np.int64)

    def __len__(self) -> int:
        return len(self.item)

    @classmethod
    def from_tuples(
        cls,
        rows: Iterable[tuple[Hashable, Hashable, int]],
        n_classes: int = 2,
        items: Sequence[Hashable] | None = None,
        workers: Sequence[Hashable] | None = None,
    ) -> Votes:
        """Build from `(item, worker, label)` tuples in time order; booleans count as 0/1.

        `items` / `workers` fix the code order (and add items that have no votes yet); otherwise
        codes follow sorted keys, so the result never depends on row order.
        """
        rows = list(rows)
        item_keys = list(items) if items is not None else sorted({r[0] for r in rows}, key=_key)
        worker_keys = (
            list(workers) if workers is not None else sorted({r[1] for r in rows}, key=_key)
        )
        imap = {k: i for i, k in enumerate(item_keys)}
        wmap = {k: i for i, k in enumerate(worker_keys)}
        try:
            it = [imap[r[0]] for r in rows]
            wk = [wmap[r[1]] for r in rows]
        except KeyError as e:
            raise ValueError(f"votes: unknown item or worker {e.args[0]!r}") from None
        lab = [int(r[2]) for r in rows]
        return cls(
            item=np.array(it, dtype=np.int64),
            worker=np.array(wk, dtype=np.int64),
            label=np.array(lab, dtype=np.int64),
            n_items=len(item_keys),
            n_workers=len(worker_keys),
            n_classes=n_classes,
            item_keys=item_keys,
            worker_keys=worker_keys,
        )

    def counts(self) -> np.ndarray:
        """(n_items, n_classes) matrix of vote counts per item and class."""
        out = np.zeros((self.n_items, self.n_classes), dtype=np.int64)
        np.add.at(out, (self.item, self.label), 1)
        return out

    def subset(self, mask: np.ndarray) -> Votes:
        """The same items and workers (same codes) with only the votes where `mask` is true."""
        return Votes(
            item=self.item[mask],
            worker=self.worker[mask],
            label=self.label[mask],
            n_items=self.n_items,
            n_workers=self.n_workers,
            n_classes=self.n_classes,
            item_keys=self.item_keys,
            worker_keys=self.worker_keys,
            order=self.order[mask],
        )

    def first_k(self, k: int) -> Votes:
        """Each item's first k votes in time order (for fixed-budget baselines)."""
        return self.subset(prefix_rank(self) < k)


def _key(k: Hashable) -> tuple[int, str]:
    # Sort ints numerically and everything else as text, never mixing the two types.
    return (0, f"{k:020d}") if isinstance(k, int) and k >= 0 else (1, str(k))


def prefix_rank(votes: Votes) -> np.ndarray:
    """For each vote, how many earlier votes its item already had (0 for the first)."""
    n = len(votes)
    rank = np.zeros(n, dtype=np.int64)
    if n == 0:
        return rank
    idx = np.lexsort((votes.order, votes.item))
    items = votes.item[idx]
    starts = np.r_[0, np.flatnonzero(np.diff(items)) + 1]
    run_start = np.repeat(starts, np.diff(np.r_[starts, n]))
    rank[idx] = np.arange(n) - run_start
    return rank


def agreement_skills(votes: Votes, labels: np.ndarray) -> np.ndarray:
    """Per worker: fraction of their votes that agree with `labels` (NaN for workers without votes)."""
    agree = np.zeros(votes.n_workers)
    total = np.zeros(votes.n_workers)
    np.add.at(total, votes.worker, 1.0)
    np.add.at(agree, votes.worker, (votes.label == labels[votes.item]).astype(float))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, agree / np.maximum(total, 1), np.nan)


class Aggregator:
    """crowd-kit's interface: `fit(votes)` sets `labels_`, `probas_`, `skills_`; returns self."""

    labels_: np.ndarray
    probas_: np.ndarray
    skills_: np.ndarray

    def fit(self, votes: Votes) -> Aggregator:  # pragma: no cover - interface
        raise NotImplementedError

    def fit_predict(self, votes: Votes) -> np.ndarray:
        return self.fit(votes).labels_


def threshold_decisions(
    p_yes: np.ndarray,
    threshold: float,
    has_votes: np.ndarray,
    reject_below: float | None = None,
    known: np.ndarray | None = None,
) -> np.ndarray:
    """accept when P(yes) >= threshold, reject when <= `reject_below` (default 1 - threshold),
    else undecided; items with a hand label in `known` (-1 / 0 / 1 per item) take that label."""
    bound = 1.0 - threshold if reject_below is None else reject_below
    out = np.full(len(p_yes), UNDECIDED, dtype=object)
    out[(p_yes >= threshold) & has_votes] = ACCEPT
    out[(p_yes <= bound) & has_votes] = REJECT
    if known is not None:
        out[known == 1] = ACCEPT
        out[known == 0] = REJECT
    return out


class StoppingAggregator(Aggregator):
    """What the dynamic and worker-aware consensus share: yes/no votes, hand labels (`known`),
    and a stop rule (accept at P >= threshold, reject at P <= reject_below)."""

    name = "stopping"  # for error messages
    threshold: float
    reject_below: float
    p_yes_: np.ndarray
    decisions_: np.ndarray

    def _set_bounds(self, threshold: float, reject_below: float | None) -> None:
        self.threshold = threshold
        # Stop negatives at P <= reject_below (default 1 - threshold, the symmetric rule).
        self.reject_below = 1.0 - threshold if reject_below is None else reject_below

    def _known(self, votes: Votes, known: np.ndarray | None) -> np.ndarray:
        """Check the votes are yes/no; `known` as an array (-1 = no hand label, else 0 / 1)."""
        if votes.n_classes != 2:
            raise ValueError(f"{self.name} consensus is for yes/no verification votes")
        return np.full(votes.n_items, -1) if known is None else np.asarray(known)

    def _decide(self, p: np.ndarray, voted: np.ndarray, known: np.ndarray) -> np.ndarray:
        """Set `p_yes_`, `probas_`, `labels_` and `decisions_` from P(yes) per item."""
        self.p_yes_ = p
        self.probas_ = np.column_stack([1 - p, p])
        self.labels_ = (p >= 0.5).astype(np.int64)
        self.decisions_ = threshold_decisions(p, self.threshold, voted, self.reject_below, known)
        return self.decisions_


# The shrink grid of the two-level difficulty model: on ambiguous items each coin is pulled
# toward a coin flip, 0.5 + lam * (coin - 0.5), with lam fitted on this grid.
LAMBDA_GRID = np.linspace(0.0, 0.95, 20)


def mask_known(comp: np.ndarray, known: np.ndarray) -> np.ndarray:
    """A copy of log P(item, class c, difficulty d) (n_items, 2, 2) in which hand-labelled
    items keep only their class."""
    comp = comp.copy()
    comp[known == 1, 0, :] = -np.inf
    comp[known == 0, 1, :] = -np.inf
    return comp


def responsibilities(comp: np.ndarray, known: np.ndarray) -> np.ndarray:
    """P(class, difficulty | item's votes) from the (n_items, 2, 2) log joint `comp`."""
    comp = mask_known(comp, known)
    m = comp.max(axis=(1, 2), keepdims=True)
    e = np.exp(comp - m)
    return e / e.sum(axis=(1, 2), keepdims=True)


def class_posterior(comp: np.ndarray) -> np.ndarray:
    """P(good) from a log joint (..., 2 classes, 2 difficulties), summed over difficulty."""
    m = comp.max(axis=(-2, -1), keepdims=True)
    e = np.exp(comp - m)
    return e[..., 1, :].sum(axis=-1) / e.sum(axis=(-2, -1))


def logit(p: np.ndarray | float) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=float), 1e-12, 1 - 1e-12)
    return np.log(p) - np.log1p(-p)


def sigmoid(x: np.ndarray | float) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.asarray(x, dtype=float)))
