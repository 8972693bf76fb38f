"""The weighted two-coin / two-difficulty EM the robust consensus fits (one call per refit).

The model of worker_aware.py (two-coin Dawid-Skene with a share eta of ambiguous images on which
coins shrink toward a coin flip by lam), with two changes the robust consensus needs: votes carry
a weight (a colluding group's k votes on an item weigh 1/k each, dependence.py) and "workers" are
virtual: one per stretch of a real worker's history between change points (drift.py), each with
its own Beta prior from the gold answered in that stretch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from curation.consensus.base import LAMBDA_GRID, YES, Votes, responsibilities


@dataclass
class GoldAnswers:
    """Gold answers as rows: worker code, correct (0/1) and time (same clock as `Votes.order`)."""

    worker: np.ndarray
    correct: np.ndarray
    order: np.ndarray

    @classmethod
    def from_counts(cls, seen: np.ndarray, correct: np.ndarray) -> GoldAnswers:
        """Lifetime counts only (the `worker` table): all answers dated before any vote."""
        seen = np.asarray(seen, dtype=np.int64)
        correct = np.minimum(np.asarray(correct, dtype=np.int64), seen)
        w = np.repeat(np.arange(len(seen)), seen)
        ok = np.concatenate(
            [
                np.zeros(0),
                *(np.r_[np.ones(c), np.zeros(s - c)] for s, c in zip(seen, correct, strict=True)),
            ]
        )
        return cls(w, ok.astype(np.int64), np.full(len(w), np.iinfo(np.int64).min // 2))


@dataclass
class Fit:
    sens: np.ndarray
    spec: np.ndarray
    prior: float
    hard_share: float
    hard_shrink: float
    comp: np.ndarray  # (n_items, 2, 2) log P(votes, class, difficulty)
    resp: np.ndarray  # (n_items, 2, 2) P(class, difficulty | votes)


def tie_groups(offset: np.ndarray, groups: list[np.ndarray]) -> np.ndarray:
    """Virtual-worker map that puts every stretch of each dependent group's members on one
    coin (the first member's current stretch). A group votes as one source, so it has one
    skill, fitted on all its votes (k votes on an item weigh 1/k each) and one capped gold
    prior: member by member, ~10 gold answers a shared sheet passes outweighed the ~10
    weighted votes each member cast, and a sheet right on 75% of the images was fitted
    0.92-0.97 accurate (bench/consensus.py, colluders n=50)."""
    nv = int(offset[-1])
    remap = np.arange(nv)
    for g in groups:
        target = int(offset[int(g[0]) + 1]) - 1
        for m in g:
            remap[int(offset[int(m)]) : int(offset[int(m) + 1])] = target
    return remap


def coins(sens: np.ndarray, spec: np.ndarray, lam: float) -> list[tuple[np.ndarray, np.ndarray]]:
    """[(P(yes | good), P(yes | bad)) for easy, hard]."""
    hs, hp = 0.5 + lam * (sens - 0.5), 0.5 + lam * (spec - 0.5)
    return [(sens, 1 - spec), (hs, 1 - hp)]


def components(
    item: np.ndarray,
    vw: np.ndarray,
    yes: np.ndarray,
    weight: np.ndarray,
    n_items: int,
    sens: np.ndarray,
    spec: np.ndarray,
    pi: float,
    eta: float,
    lam: float,
) -> np.ndarray:
    out = np.empty((n_items, 2, 2))
    share = (1 - eta, eta)
    for d, (p_good, p_bad) in enumerate(coins(sens, spec, lam)):
        for c, p in ((1, p_good), (0, p_bad)):
            pv = p[vw]
            ll = weight * np.where(yes, np.log(pv), np.log1p(-pv))
            out[:, c, d] = np.bincount(item, ll, n_items)
            out[:, c, d] += np.log(pi if c else 1 - pi) + np.log(max(share[d], 1e-300))
    return out


def fit_em(
    item: np.ndarray,
    vw: np.ndarray,
    yes: np.ndarray,
    weight: np.ndarray,
    n_items: int,
    n_virtual: int,
    a0: np.ndarray,
    b0: np.ndarray,
    known: np.ndarray,
    prior: float,
    difficulty: bool = True,
    n_iter: int = 60,
    tol: float = 1e-4,
    max_shrink: float = 1.0,
    min_shrink: float = 0.0,
    shrink_prior: float = 0.0,
) -> Fit:
    """MAP EM; a0/b0 per virtual worker are Beta pseudo-counts on both coins; `shrink_prior`
    is the strength (pseudo-votes) of a Beta prior centred on 0.5 on the hard images' shrink."""
    voted = np.bincount(item, minlength=n_items) > 0
    sens = a0 / (a0 + b0)
    spec = sens.copy()
    pi, eta, lam = prior, (0.1 if difficulty else 0.0), 0.5
    for _ in range(n_iter):
        comp = components(item, vw, yes, weight, n_items, sens, spec, pi, eta, lam)
        resp = responsibilities(comp, known)
        r1 = resp[:, 1, 0][item] * weight
        r0 = resp[:, 0, 0][item] * weight
        new_sens = (np.bincount(vw, r1 * yes, n_virtual) + a0) / (
            np.bincount(vw, r1, n_virtual) + a0 + b0
        )
        new_spec = (np.bincount(vw, r0 * ~yes, n_virtual) + a0) / (
            np.bincount(vw, r0, n_virtual) + a0 + b0
        )
        new_sens = np.clip(new_sens, 1e-4, 1 - 1e-4)
        new_spec = np.clip(new_spec, 1e-4, 1 - 1e-4)
        change = max(np.abs(new_sens - sens).max(initial=0), np.abs(new_spec - spec).max(initial=0))
        sens, spec = new_sens, new_spec
        p1 = resp[:, 1, :].sum(axis=1)
        new_pi = float(np.clip((p1[voted].sum() + 2 * prior) / (voted.sum() + 2), 1e-4, 1 - 1e-4))
        change = max(change, abs(new_pi - pi))
        pi = new_pi
        if difficulty:
            hard = resp[:, :, 1].sum(axis=1)
            # Beta(1, 9): a synset is mostly clear unless its votes say otherwise.
            new_eta = float(np.clip((hard[voted].sum() + 1) / (voted.sum() + 10), 1e-4, 0.9))
            new_lam = _fit_lambda(
                item,
                vw,
                yes,
                weight,
                resp,
                sens,
                spec,
                n_virtual,
                max_shrink,
                min_shrink,
                shrink_prior,
            )
            change = max(change, abs(new_eta - eta), abs(new_lam - lam))
            eta, lam = new_eta, new_lam
        if change < tol:
            break
    comp = components(item, vw, yes, weight, n_items, sens, spec, pi, eta, lam)
    return Fit(sens, spec, pi, eta, lam, comp, responsibilities(comp, known))


def _fit_lambda(
    item: np.ndarray,
    vw: np.ndarray,
    yes: np.ndarray,
    weight: np.ndarray,
    resp: np.ndarray,
    sens: np.ndarray,
    spec: np.ndarray,
    n_virtual: int,
    max_shrink: float = 1.0,
    min_shrink: float = 0.0,
    shrink_prior: float = 0.0,
) -> float:
    r1 = resp[:, 1, 1][item] * weight
    r0 = resp[:, 0, 1][item] * weight
    gy = np.bincount(vw, r1 * yes, n_virtual)
    gn = np.bincount(vw, r1 * ~yes, n_virtual)
    by = np.bincount(vw, r0 * yes, n_virtual)
    bn = np.bincount(vw, r0 * ~yes, n_virtual)
    # The floor: a fit that calls hard images pure coin flips (lam 0) can never decide one,
    # and on a few hundred items it lands there from a handful of contested votes.
    grid = LAMBDA_GRID[(LAMBDA_GRID <= max_shrink + 1e-9) & (LAMBDA_GRID >= min_shrink - 1e-9)]
    hs = 0.5 + grid[:, None] * (sens[None, :] - 0.5)
    hp = 0.5 + grid[:, None] * (spec[None, :] - 0.5)
    q = (gy * np.log(hs) + gn * np.log1p(-hs) + by * np.log1p(-hp) + bn * np.log(hp)).sum(axis=1)
    if shrink_prior > 0:
        # MAP, not ML: the few contested votes on a few hundred items otherwise drive the
        # shrink to 0 ("hard images are coin flips"), after which no run can decide one.
        with np.errstate(divide="ignore"):
            q = q + shrink_prior * 0.5 * (np.log(grid) + np.log1p(-grid))
    return float(grid[int(np.argmax(q))])


def shared_skill(votes: Votes, base: float, strength: float, prior: float) -> float:
    """The crowd's balanced accuracy as one coin shared by everyone, from the items with 2+
    votes (their agreement identifies it before any one worker's record does); `base` with
    fewer than 20 such items."""
    multi = np.bincount(votes.item, minlength=votes.n_items)[votes.item] >= 2
    if np.unique(votes.item[multi]).size < 20:
        return base
    k = int(multi.sum())
    tied = fit_em(
        votes.item[multi],
        np.zeros(k, np.int64),
        votes.label[multi] == YES,
        np.ones(k),
        votes.n_items,
        1,
        np.array([strength * base]),
        np.array([strength * (1 - base)]),
        np.full(votes.n_items, -1),
        prior,
        False,
    )
    return float((tied.sens[0] + tied.spec[0]) / 2)
