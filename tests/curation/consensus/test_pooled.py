"""Dependence across synsets (curation/consensus/pooled.py): a copying pair seen only in all synsets together."""

from __future__ import annotations

import dataclasses

import numpy as np
from sqlalchemy import select

from curation.consensus.decide import run_consensus
from curation.consensus.pooled import crowd_votes, recent_synsets
from db.models import Worker
from tests import dbrows

HONEST, COPIERS = ["h0", "h1", "h2"], ["c0", "c1"]


def _synset(s, wnid: str, n: int, rng: np.random.Generator, t0: float) -> None:
    """n items at 5% positives; votes in random worker order, stopping after two "no" (or
    when the votes so far agree), at most four: the adaptive loop at rare positives, where a
    pair co-votes on a few dozen items per synset. The copiers share a sheet right on 75%."""
    dbrows.add_synset(s, wnid)
    ids = dbrows.add_candidates(s, wnid, n)
    truth = rng.random(n) < 0.05
    sheet = np.where(rng.random(n) < 0.75, truth, ~truth)
    rows = []
    for i, cid in enumerate(ids):
        said: list[bool] = []
        for w in rng.permutation(HONEST + COPIERS):
            ans = bool(sheet[i]) if w in COPIERS else bool(truth[i] ^ (rng.random() >= 0.92))
            rows.append((cid, str(w), ans))
            said.append(ans)
            if len(said) >= 4 or (len(said) >= 2 and len(set(said)) == 1):
                break
    dbrows.add_votes(s, wnid, rows, t0=t0)


def _crowd(app) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(11)
    with app.Session() as s:
        for k in range(4):
            _synset(s, f"n0000091{k}", 150, rng, t0=1000.0 + 10_000 * k)
        s.commit()


def _groups(app) -> dict[str, str | None]:  # type: ignore[no-untyped-def]
    with app.Session() as s:
        return dict(s.execute(select(Worker.worker_id, Worker.dependence_group)).all())


def test_a_pair_too_thin_in_each_synset_is_found_across_them(app) -> None:
    _crowd(app)
    alone = dataclasses.replace(app.settings, consensus_dependence_votes=0)
    with app.Session() as s:
        run_consensus(s, "robust", settings=alone)
    # Per synset the pair co-votes on ~35 items: too few to tell copying from excellence.
    assert set(_groups(app).values()) == {None}
    with app.Session() as s:
        run_consensus(s, "robust", settings=app.settings)
    groups = _groups(app)
    assert groups["c0"] is not None and groups["c0"] == groups["c1"]
    assert all(groups[w] is None for w in HONEST)


def test_recent_synsets_takes_whole_synsets_newest_first(app) -> None:
    with app.Session() as s:
        for k, (n, t0) in enumerate([(10, 5000.0), (20, 1000.0), (5, 9000.0)]):
            wnid = f"n0000092{k}"
            dbrows.add_synset(s, wnid)
            ids = dbrows.add_candidates(s, wnid, n)
            dbrows.add_votes(s, wnid, [(c, "w", True) for c in ids], t0=t0)
        s.commit()
        assert recent_synsets(s, 15) == ["n00000922", "n00000920"]
        assert recent_synsets(s, 14) == ["n00000922"]
        assert recent_synsets(s, 1) == ["n00000922"]  # at least one, whatever its size
        assert recent_synsets(s, 100) == ["n00000922", "n00000920", "n00000921"]
        item, worker, label, order, keys = crowd_votes(s, ["n00000922", "n00000921"])
        assert len(item) == 25 and set(keys) == {"w"} and label.all()
        assert len(np.unique(item)) == 25 and (np.diff(order[:5]) > 0).all()


def test_a_huge_crowd_keeps_its_most_active_workers(app, monkeypatch) -> None:
    from curation.consensus import pooled

    _crowd(app)
    with app.Session() as s:
        ids = dbrows.add_candidates(s, "n00000910", 3)
        dbrows.add_votes(s, "n00000910", [(c, f"once{k}", True) for k, c in enumerate(ids)])
        s.commit()
        monkeypatch.setattr(pooled, "MAX_WORKERS", 5)
        (group,) = pooled.pooled_groups(s, app.settings)
    assert group == set(COPIERS)
