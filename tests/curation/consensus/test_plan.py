"""needs_votes and run_consensus against a real database (SQLite and PostgreSQL)."""

from __future__ import annotations

import numpy as np
import pytest
from sqlalchemy import select

from curation.consensus.decide import run_consensus
from db.models import Image, Label, Worker
from mturk.verify import needs_votes
from tests import dbrows


@pytest.fixture
def small(app):  # type: ignore[no-untyped-def]
    """One synset, 12 eligible candidates, dynamic consensus with a calibration subset of 4."""
    app.settings.consensus_algorithm = "dynamic"
    app.settings.consensus_initial_subset = 4
    with app.Session() as s:
        dbrows.add_synset(s, "n00000001", "cat")
        ids = dbrows.add_candidates(s, "n00000001", 12)
        s.commit()
    return app, ids


def _vote_truthfully(app, ids, truth, k_of, start=0):  # type: ignore[no-untyped-def]
    """Give each candidate k_of(cid) votes from good workers who agree with `truth`."""
    rows = []
    for cid in ids:
        for k in range(k_of(cid)):
            rows.append((cid, f"w{start + k:02d}", bool(truth[cid])))
    with app.Session() as s:
        dbrows.add_votes(s, "n00000001", rows, t0=1000.0 + start)
        s.commit()


def test_calibration_first_then_the_rest(small) -> None:  # type: ignore[no-untyped-def]
    app, ids = small
    with app.Session() as s:
        needs = needs_votes(s, settings=app.settings)
    # Only the calibration subset (4 of 12) is asked for, 10 votes each.
    assert len(needs) == 4 and set(needs.values()) == {10}
    calib = sorted(needs)
    truth = {cid: i % 2 for i, cid in enumerate(ids)}
    _vote_truthfully(app, calib, truth, lambda c: 10)
    with app.Session() as s:
        needs = needs_votes(s, settings=app.settings)
    rest = sorted(set(ids) - set(calib))
    assert sorted(needs) == rest
    assert all(1 <= k <= 3 for k in needs.values())
    # Same answer when asked twice, and when limited to this synset.
    with app.Session() as s:
        assert needs_votes(s, ["n00000001"], app.settings) == needs
        assert needs_votes(s, ["n09999999"], app.settings) == {}


def test_open_hits_and_ineligible_items(small) -> None:  # type: ignore[no-untyped-def]
    app, ids = small
    with app.Session() as s:
        first = needs_votes(s, settings=app.settings)
        calib = sorted(first)
        dbrows.add_open_hit(s, "n00000001", calib[:2], max_assignments=3)
        # A candidate whose image failed the quality filter is never asked for.
        img = s.scalars(select(Image).order_by(Image.sha256)).first()
        img.quality = "rejected"
        s.commit()
        after = needs_votes(s, settings=app.settings)
    for cid in calib[:2]:
        if cid in after:
            assert after[cid] == first[cid] - 3
    assert len(after) >= 3


def test_run_consensus_writes_labels_and_keeps_overrides(small) -> None:  # type: ignore[no-untyped-def]
    app, ids = small
    truth = {cid: int(i < 4) for i, cid in enumerate(ids)}
    _vote_truthfully(app, ids, truth, lambda c: 10)
    with app.Session() as s:
        report = run_consensus(s, "dynamic", settings=app.settings)
    assert report["totals"]["accept"] == 4 and report["totals"]["reject"] == 8
    per = report["per_wnid"]["n00000001"]
    assert per["items"] == 12 and per["votes"] == 120 and per["needs_votes"] == 0
    with app.Session() as s:
        labels = {lab.candidate_id: lab for lab in s.scalars(select(Label))}
        assert {c: lab.decision == "accept" for c, lab in labels.items()} == {
            c: bool(t) for c, t in truth.items()
        }
        lab = labels[ids[0]]
        assert (lab.votes_yes, lab.votes_no, lab.decided_by) == (10, 0, "dynamic")
        assert lab.posterior > 0.997
        # A hand override stands through later runs of any algorithm.
        lab.decision, lab.decided_by, lab.overridden = "reject", "manual", True
        s.commit()
    for algorithm in ("worker-aware", "majority", "dawid-skene", "dynamic"):
        with app.Session() as s:
            rep = run_consensus(s, algorithm, settings=app.settings)
            assert rep["totals"]["manual"] == 1
            lab = s.get(Label, ids[0])
            assert (lab.decision, lab.decided_by, lab.overridden) == ("reject", "manual", True)
            others = s.scalars(select(Label).where(Label.candidate_id != ids[0])).all()
            assert {x.decided_by for x in others} == {algorithm}
            # The hand label contradicts all ten workers, so models that learn from it (worker
            # skills, the calibration table) may grow less sure; none may flip an item.
            for x in others:
                assert x.decision != ("reject" if truth[x.candidate_id] else "accept")
                assert (x.posterior > 0.5) == bool(truth[x.candidate_id])
    with app.Session() as s, pytest.raises(ValueError, match="unknown consensus algorithm"):
        run_consensus(s, "coin-flip", settings=app.settings)


def test_rejected_blocked_and_repeated_votes_do_not_count(small) -> None:  # type: ignore[no-untyped-def]
    app, ids = small
    cid = ids[0]
    with app.Session() as s:
        dbrows.add_votes(s, "n00000001", [(cid, "bad", True)] * 1, status="Rejected")
        dbrows.add_votes(s, "n00000001", [(cid, "blocked", True)])
        s.get(Worker, "blocked").blocked = True
        dbrows.add_votes(s, "n00000001", [(cid, "fine", False)])
        # The same worker again on the same image (another HIT): only the first vote counts.
        dbrows.add_votes(s, "n00000001", [(cid, "fine", True)], t0=2000.0)
        s.commit()
        run_consensus(s, "majority", settings=app.settings)
        lab = s.get(Label, cid)
        assert (lab.votes_yes, lab.votes_no) == (0, 1)


def test_worker_aware_uses_gold(small) -> None:  # type: ignore[no-untyped-def]
    app, ids = small
    cid = ids[5]
    with app.Session() as s:
        dbrows.add_votes(
            s,
            "n00000001",
            [(cid, "expert", True), (cid, "sloppy1", False), (cid, "sloppy2", False)],
        )
        for wid, seen, correct in (("expert", 50, 50), ("sloppy1", 50, 26), ("sloppy2", 50, 24)):
            w = s.get(Worker, wid)
            w.gold_seen, w.gold_correct = seen, correct
        s.commit()
        run_consensus(s, "worker-aware", settings=app.settings)
        wa = s.get(Label, cid).posterior
        run_consensus(s, "majority", settings=app.settings)
        mv = s.get(Label, cid).posterior
    # Majority sides with the two sloppy workers; the gold-seeded model with the expert.
    assert mv == pytest.approx(1 / 3) and wa > 0.5
    assert np.isfinite(wa)


def test_blocked_workers_votes_count_only_for_worker_aware(small) -> None:  # type: ignore[no-untyped-def]
    # The worker-aware model weighs each vote by its worker's gold-seeded coins, so a blocked
    # worker's votes (already paid for) still inform it; worker-agnostic models drop the votes of
    # a blocked worker near chance on gold (under consensus_min_voter_gold 0.6) but keep those of
    # one blocked by the stricter bar (0.7 < mturk_min_worker_gold 0.75).
    app, ids = small
    cid = ids[2]
    with app.Session() as s:
        dbrows.add_votes(
            s, "n00000001", [(cid, "kept", True), (cid, "mediocre", True), (cid, "spammer", False)]
        )
        for wid, correct in (("mediocre", 7), ("spammer", 5)):
            w = s.get(Worker, wid)
            w.gold_seen, w.gold_correct, w.blocked = 10, correct, True
        s.commit()
        run_consensus(s, "majority", settings=app.settings)
        assert (s.get(Label, cid).votes_yes, s.get(Label, cid).votes_no) == (2, 0)
        rep = run_consensus(s, "worker-aware", settings=app.settings)
        assert (s.get(Label, cid).votes_yes, s.get(Label, cid).votes_no) == (2, 1)
        assert rep["totals"]["votes"] == 3


def test_worker_aware_needs_follow_the_cost_rule(small) -> None:  # type: ignore[no-untyped-def]
    # Cost rule (the default): no votes yet -> at most first_votes (2) each; five agreeing good
    # workers settle an item; the threshold rule (both costs 0) still works.
    app, ids = small
    app.settings.consensus_algorithm = "worker-aware"
    with app.Session() as s:
        needs = needs_votes(s, settings=app.settings)
    assert sorted(needs) == sorted(ids) and set(needs.values()) == {2}
    truth = {cid: i % 2 for i, cid in enumerate(ids)}
    for k in range(5):
        _vote_truthfully(app, ids[:6], truth, lambda c: 1, start=k)
    with app.Session() as s:
        for wid in (f"w{k:02d}" for k in range(5)):
            w = s.get(Worker, wid)
            w.gold_seen, w.gold_correct = 40, 38
        s.commit()
        needs = needs_votes(s, settings=app.settings)
        assert not set(needs) & set(ids[:6]) and set(needs) == set(ids[6:])
        rep = run_consensus(s, "worker-aware", settings=app.settings)
        for cid in ids[:6]:
            assert s.get(Label, cid).decision == ("accept" if truth[cid] else "reject")
        assert rep["totals"]["undecided"] == 0 and rep["totals"]["needs_votes"] == 6
        app.settings.consensus_fp_cost = app.settings.consensus_fn_cost = 0.0
        run_consensus(s, "worker-aware", settings=app.settings)
        for cid in ids[:6]:
            assert s.get(Label, cid).decision == ("accept" if truth[cid] else "reject")
