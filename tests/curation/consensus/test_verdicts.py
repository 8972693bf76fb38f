"""Per-synset worker verdicts (curation/consensus/crowd.py): runs over some synsets refresh their own."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from sqlalchemy import select, update

from curation.consensus.decide import run_consensus
from curation.consensus.parallel import run_parallel
from db.models import Assignment, Candidate, Hit, Image, Worker, WorkerVerdict
from mturk.server.review import _worker_rows, _worker_table
from tests import dbrows

GOOD = [f"good{k}" for k in range(5)]
A, B = "n00000071", "n00000072"


def _synset(s, wnid: str, spam: bool, copiers: bool, seed: int, n: int = 60) -> None:  # type: ignore[no-untyped-def]
    """n items, a third positive: five careful workers (one slip in 20) vote on every item,
    plus `SPAM` (always yes) and/or a pair who copy one sheet right on 75% of items."""
    dbrows.add_synset(s, wnid)
    ids = dbrows.add_candidates(s, wnid, n)
    rng = np.random.default_rng(seed)
    rows = []
    for i, c in enumerate(ids):
        truth = i % 3 == 0
        rows += [(c, w, truth != (i % 20 == k)) for k, w in enumerate(GOOD)]
        if spam:
            rows.append((c, "SPAM", True))
        if copiers:
            sheet = truth if rng.random() < 0.75 else not truth
            rows += [(c, "copy0", sheet), (c, "copy1", sheet)]
    dbrows.add_votes(s, wnid, rows)
    for w in [*GOOD, "SPAM", "copy0", "copy1"]:
        row = s.get(Worker, w)
        if row is not None:
            # Gold is measured for everyone (routing needs it); the spammer passes half.
            row.gold_seen, row.gold_correct = 10, 5 if w == "SPAM" else 9


def _workers(app) -> dict[str, tuple[str | None, str | None]]:  # type: ignore[no-untyped-def]
    with app.Session() as s:
        q = select(Worker.worker_id, Worker.routing, Worker.dependence_group)
        return {k: (r, g) for k, r, g in s.execute(q)}


def _discard(app, worker: str, wnid: str | None = None) -> None:  # type: ignore[no-untyped-def]
    """The requester rejects `worker`'s work (in `wnid`, or all of it): consensus no longer
    counts those votes."""
    q = select(Assignment.assignment_id).join(Hit, Hit.hit_id == Assignment.hit_id)
    q = q.where(Assignment.worker_id == worker)
    if wnid is not None:
        q = q.where(Hit.wnid == wnid)
    with app.Session() as s:
        ids = list(s.execute(q).scalars())
        s.execute(
            update(Assignment).where(Assignment.assignment_id.in_(ids)).values(status="Rejected")
        )
        s.commit()


def _run(app, wnids: list[str], **kw) -> None:  # type: ignore[no-untyped-def]
    settings = dataclasses.replace(app.settings, **kw)
    with app.Session() as s:
        run_consensus(s, "robust", wnids=wnids, settings=settings)


def _spam_in_a(app, also_b: bool) -> None:  # type: ignore[no-untyped-def]
    with app.Session() as s:
        _synset(s, A, spam=True, copiers=False, seed=1)
        _synset(s, B, spam=also_b, copiers=False, seed=2)
        s.commit()


def test_a_partial_run_lifts_a_verdict_its_synset_no_longer_gives(app) -> None:
    _spam_in_a(app, also_b=False)
    _run(app, [A])
    assert _workers(app)["SPAM"][0] == "uninformative"
    # Another shard decides B, where the spammer never voted: A's verdict stands.
    _run(app, [B])
    assert _workers(app)["SPAM"][0] == "uninformative"
    # A's fit no longer sees the spammer: the shard that decides A again lifts the verdict
    # (a partial run used to only add verdicts, so it stood until a complete run).
    _discard(app, "SPAM")
    _run(app, [A])
    assert _workers(app)["SPAM"][0] is None
    assert all(_workers(app)[w] == (None, None) for w in GOOD)


def test_a_verdict_stands_while_any_synset_gives_it(app) -> None:
    _spam_in_a(app, also_b=True)
    _run(app, [A])
    _run(app, [B])
    with app.Session() as s:
        rows = s.execute(select(WorkerVerdict.wnid).where(WorkerVerdict.worker_id == "SPAM"))
        assert sorted(rows.scalars()) == [A, B]
        # The review page's worker table says which synsets' fits give the verdict.
        page = _worker_table(_worker_rows(s))
    spam = next(r for r in page.split("<tr") if ">SPAM<" in r)
    assert f"uninformative <span title='{A}, {B}'>(2 synsets)</span>" in spam
    # Only A's votes of the spammer are discarded and only A is decided again: B still flags
    # them (a run that wrote "no verdict" for every worker it saw would undo B's).
    _discard(app, "SPAM", A)
    _run(app, [A])
    assert _workers(app)["SPAM"][0] == "uninformative"
    _discard(app, "SPAM", B)
    _run(app, [B])
    assert _workers(app)["SPAM"][0] is None


def test_a_partial_run_drops_a_group_its_synset_no_longer_shows(app) -> None:
    with app.Session() as s:
        _synset(s, A, spam=False, copiers=True, seed=3, n=200)
        _synset(s, B, spam=False, copiers=False, seed=4)
        s.commit()
    # The crowd-wide pass is off: only the per-synset test can find (and drop) the pair.
    _run(app, [A], consensus_dependence_votes=0)
    found = _workers(app)
    assert found["copy0"][1] is not None and found["copy0"][1] == found["copy1"][1]
    assert {found["copy0"][0], found["copy1"][0]} == {None, "redundant"}
    _run(app, [B], consensus_dependence_votes=0)
    assert _workers(app)["copy1"][1] is not None
    # One of the pair's work is rejected: A's fit sees one copier, not a group. Before, a
    # partial run gave every fit the stored groups and stored them again, so the pair (and
    # the "redundant" verdict that keeps one of them from work) stayed for good.
    _discard(app, "copy1")
    _run(app, [A], consensus_dependence_votes=0)
    after = _workers(app)
    assert after["copy0"] == (None, None) and after["copy1"] == (None, None)


@pytest.mark.slow
def test_every_synset_over_processes_drops_verdicts_no_synset_gives(app) -> None:
    _spam_in_a(app, also_b=False)
    with app.Session() as s:
        # A verdict from a synset that has no votes any more (or one kept by migration 0009).
        s.add(WorkerVerdict(wnid="~", worker_id="good0", uninformative=True))
        s.get(Worker, "good0").routing = "uninformative"
        s.commit()
    # Two processes, each deciding some synsets: together they decide every one, as one
    # process would, so no verdict outlives the synsets' fits.
    run_parallel(app.settings, "robust", None, processes=2)
    got = _workers(app)
    assert got["good0"] == (None, None)
    assert got["SPAM"][0] == "uninformative"
    with app.Session() as s:
        assert set(s.scalars(select(WorkerVerdict.wnid))) == {A}


def test_a_synset_left_without_candidates_keeps_no_verdicts(app) -> None:
    _spam_in_a(app, also_b=False)
    _run(app, [A])
    assert _workers(app)["SPAM"][0] == "uninformative"
    # The quality filter, rerun, rejects every image of A: nothing there to decide, and no
    # fit there routes anyone away any more.
    with app.Session() as s:
        shas = select(Candidate.image_sha256).where(Candidate.wnid == A)
        s.execute(update(Image).where(Image.sha256.in_(shas)).values(quality="rejected"))
        s.commit()
    _run(app, [A])
    assert _workers(app)["SPAM"] == (None, None)
