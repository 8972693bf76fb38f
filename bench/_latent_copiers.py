"""bench/consensus.py --latent-groups (a what-if): a copying group as a latent class, found by EM before its pairs can be tested.

The tests in dependence.py confirm a group on co-votes it did not form on, and a 20-member cartel
in a 50-worker crowd co-votes pair by pair on too few items for that until the third round of its
first synset (bench/consensus.py, colluders n=50): by then it has cast ~40% of the votes as
independent evidence. Here each item has a truth and a sheet answer (right with probability
`sigma`), each worker either votes the truth with their own accuracy or copies the sheet (but for
`copy_error`), and a worker's membership is read from how well their votes are predicted by the
other voters' item posterior (leave one out, so a worker's own vote never makes the sheet they
match). The whole group's identical votes add up, where a pair's few co-votes do not.

The model is symmetric in one way the data must break: twenty copiers who agree perfectly can be
read as excellent honest workers and the careful workers as copiers of a sheet that is the truth.
So EM runs twice, from no member and from the first run's memberships flipped, and the fit with
the higher objective stands (the flipped reading needs careful workers who disagree 15% of the
time to copy within `copy_error`).
"""

from __future__ import annotations

import numpy as np

from curation.consensus.dependence import _binomial, _counts, _pairs

_T = np.array([0, 0, 1, 1])  # item states (truth, sheet)
_S = np.array([0, 1, 0, 1])


def _em(
    item: np.ndarray,
    worker: np.ndarray,
    label: np.ndarray,
    n_items: int,
    n_workers: int,
    m: np.ndarray,
    prior: float,
    copy_error: float,
    max_sheet: float,
    iters: int,
) -> tuple[np.ndarray, float]:
    """(membership probability per worker, objective) from memberships `m`."""
    v = label.astype(np.int64)
    p_copy = np.where(v[:, None] == _S[None, :], 1 - copy_error, copy_error)
    acc = np.full(n_workers, 0.85)
    pi, sigma = 0.3, 0.75
    voted = np.bincount(item, minlength=n_items) > 0
    logit_prior = np.log(prior / (1 - prior))
    phi = np.zeros((n_items, 4))  # (iters >= 1 sets it)
    for _ in range(iters):
        a = acc[worker][:, None]
        p_hon = np.where(v[:, None] == _T[None, :], a, 1 - a)
        mw = m[worker][:, None]
        c = np.log(mw * p_copy + (1 - mw) * p_hon)
        phi = np.stack([np.bincount(item, c[:, k], n_items) for k in range(4)], axis=1)
        phi += np.log(np.where(_T == 1, pi, 1 - pi)) + np.log(np.where(_S == _T, sigma, 1 - sigma))
        q = np.exp(phi - phi.max(axis=1, keepdims=True))
        q /= q.sum(axis=1, keepdims=True)
        # Leave one out: each vote predicted from the item's other votes.
        loo = phi[item] - c
        ql = np.exp(loo - loo.max(axis=1, keepdims=True))
        ql /= ql.sum(axis=1, keepdims=True)
        llr = np.log((ql * p_copy).sum(axis=1)) - np.log((ql * p_hon).sum(axis=1))
        m = 1 / (1 + np.exp(-np.clip(logit_prior + np.bincount(worker, llr, n_workers), -50, 50)))
        t1 = q[:, 2] + q[:, 3]
        pi = float(np.clip(t1[voted].mean(), 0.01, 0.99))
        sigma = float(np.clip((q[:, 0] + q[:, 3])[voted].mean(), 0.5, max_sheet))
        right = np.where(v == 1, t1[item], 1 - t1[item])
        honest = 1 - m[worker]
        # Beta(8.5, 1.5): a careful worker until the votes say otherwise.
        num = np.bincount(worker, honest * right, n_workers) + 8.5
        acc = np.clip(num / (np.bincount(worker, honest, n_workers) + 10), 0.5, 0.99)
    top = phi.max(axis=1)
    evidence = float((np.log(np.exp(phi - top[:, None]).sum(axis=1)) + top)[voted].sum())
    mm = np.clip(m, 1e-9, 1 - 1e-9)
    entropy = -(mm * np.log(mm) + (1 - mm) * np.log(1 - mm))
    member_prior = mm * np.log(prior) + (1 - mm) * np.log(1 - prior)
    return m, evidence + float((member_prior + entropy).sum())


def latent_group(
    item: np.ndarray,
    worker: np.ndarray,
    label: np.ndarray,
    n_items: int,
    n_workers: int,
    prior: float = 0.05,
    copy_error: float = 0.03,
    max_sheet: float = 0.9,
    iters: int = 40,
    exclude: np.ndarray | None = None,
    known: list[np.ndarray] | None = None,
    honest_agreement: float = 0.85,
    alpha: float = 1e-4,
    guard: bool = True,
) -> np.ndarray:
    """Worker codes more likely copying one sheet than not (at `prior`, the share of copiers
    expected); empty unless two or more. `exclude`: workers left out (constant answerers, whose
    agreement says nothing). `known`: groups the tests confirmed, each a start of its own (a
    confirmed group fixes which side copies). `max_sheet` caps the sheet's accuracy: a sheet
    as good as a careful worker copies no harm in. `honest_agreement` and `alpha` as in
    dependence.dependent_groups; `guard` False skips the check of the class's own co-votes
    (for diagnosis)."""
    keep = np.ones(len(item), bool) if exclude is None else ~exclude[worker]
    item, worker, label = item[keep], worker[keep], label[keep]
    if prior <= 0 or not len(item):
        return np.zeros(0, np.int64)
    args = (item, worker, label, n_items, n_workers)
    active = np.bincount(worker, minlength=n_workers) > 0
    m0 = np.full(n_workers, prior)
    m1, obj1 = _em(*args, m0, prior, copy_error, max_sheet, iters)
    flipped = np.where(active & (m1 <= 0.5), 1 - prior, prior)
    m2, obj2 = _em(*args, flipped, prior, copy_error, max_sheet, iters)
    m = m1 if obj1 >= obj2 else m2
    best = max(obj1, obj2)
    for g in known or []:
        # A group the tests confirmed fixes which side copies: start from it too.
        seeded = np.full(n_workers, prior)
        seeded[g] = 1 - prior
        m3, obj3 = _em(*args, seeded, prior, copy_error, max_sheet, iters)
        if obj3 > best:
            m, best = m3, obj3
    out = np.flatnonzero(active & (m > 0.5))
    # Copying shows in the group's own co-votes: kept are members who disagree with the rest no
    # more than copiers do (dependence.py's `plain`). A noisy crowd's latent class (careful
    # workers at 0.75 read as copiers of a sheet the model made up) disagrees ~35% of the time.
    if guard and len(out) >= 2:
        mine = np.isin(worker, out)
        pa, pd = _counts(*_pairs(item[mine], worker[mine], label[mine], n_items, n_workers))
        n_dis = pd[np.ix_(out, out)].sum(axis=1)
        n_co = pa[np.ix_(out, out)].sum(axis=1) + n_dis
        out = out[(n_co >= 3) & (n_dis <= 2 * copy_error * n_co + 0.5)]
        # And enough of them to tell copying from careful workers agreeing by chance: their
        # disagreements below the tests' binomial level at the 85% floor, Bonferroni over every
        # pair of active workers as in dependence_pairs.py (at 3 nats of evidence instead, two
        # careful workers with 19 agreements in a row made a class in a 20-worker crowd, and a
        # 0.75 pair was routed away on 3 co-votes).
        n_active = int(active.sum())
        level = alpha / max(n_active * (n_active - 1) / 2, 1)
        if not _binomial(out, pa, pd, honest_agreement, level):
            out = out[:0]
    return out if len(out) >= 2 else np.zeros(0, np.int64)
