"""Publish -> simulated work -> collect -> more votes where consensus is undecided, until decided."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from curation.consensus.decide import run_consensus
from db.models import Candidate, Hit, Label
from imnet.cli import main
from mturk.collect import collect
from mturk.publish import publish
from mturk.simulate import run_workers
from mturk.verify import needs_votes, open_items
from tests.dbrows import add_gold, seed
from tests.mturk.serving import serve


@pytest.mark.slow
def test_rounds_until_consensus_decides(sqlite_app, capsys):  # type: ignore[no-untyped-def]
    app = sqlite_app
    algorithm = app.settings.consensus_algorithm  # the default
    # Small vote caps keep the number of rounds (and the test) short; the loop is the same.
    # Worker-aware's own cap matters here: its default of 30 let a chain of one-vote
    # extensions (a HIT near MTurk's 9 assignments grows by one) run past the round bound.
    app.settings = app.settings.replace(
        consensus_initial_subset=3,
        consensus_initial_votes=5,
        consensus_max_votes=6,
        consensus_wa_max_votes=6,
        consensus_robust_max_votes=6,
        mturk_images_per_hit=8,
        # The 30 simulated workers are the lab's crowd, declared: counted from the workers seen
        # so far (the few who got round 1's HITs), a 3-1 split found nobody left to ask and was
        # flagged insufficient_crowd in about 1 run in 4.
        consensus_crowd_size=30,
    )
    data = seed(app, "n00000004", 12, frac_yes=0.5)
    gold = seed(app, "n00000004", 4, rng_seed=1)
    add_gold(app, "n00000004", gold["ids"], gold["truth"])
    truth = {**data["truth"], **gold["truth"]}
    handle = serve(app)
    try:
        first = publish(app, yes=True, out=lambda s: None)
        assert first["created"] >= 1
        # A HIT never asks for more than 9 assignments (MTurk's fee doubles at 10).
        with app.Session() as s:
            assert s.scalar(select(func.max(Hit.max_assignments))) <= 9
        rounds = 0
        # Rounds are bounded: every item stops at its algorithm's cap (6 votes here).
        for rounds in range(1, 21):
            sim = run_workers(
                handle.url,
                truth,
                n_workers=30,
                mix="good=0.8,mediocre=0.2",
                seed=rounds,
                max_seconds=120,
            )
            assert not sim["errors"], sim["errors"]
            rep = collect(app, more=True, out=lambda s: None)
            with app.Session() as s:
                # Whatever consensus still needs has been asked for (extended or new HITs),
                # or waits for an open HIT of the same item.
                assert set(needs_votes(s, None, app.settings)) <= open_items(s)
            if not rep["more"]["extended_hits"] and not rep["more"]["published"]["created"]:
                break
        assert rounds < 20
        with app.Session() as s:
            report = run_consensus(s, algorithm, None, app.settings)
            labels = {
                c.image_sha256: lab.decision
                for lab, c in s.execute(
                    select(Label, Candidate)
                    .join(Candidate, Candidate.id == Label.candidate_id)
                    .where(Label.candidate_id.in_(data["ids"]))
                )
            }
            # The loop's contract: it stops only when no item needs another vote.
            assert not needs_votes(s, None, app.settings)
        right = sum(
            1
            for sha, d in labels.items()
            if d in ("accept", "reject") and (d == "accept") == (truth[sha] == "n00000004")
        )
        decided = sum(1 for d in labels.values() if d in ("accept", "reject"))
        assert report["totals"]["undecided"] <= 2
        assert decided >= 10 and right >= decided - 1

        # The CLI reads the same state.
        url = app.settings.resolved_database_url()
        code = main(
            [
                "--data-dir",
                app.settings.data_dir,
                "--database-url",
                url,
                "mturk",
                "--endpoint-url",
                handle.url,
                "status",
                "--json",
            ]
        )
        out = capsys.readouterr().out
        assert code == 0 and '"balance": "' in out and '"Reviewable"' in out
    finally:
        handle.stop()


def test_cli_publish_asks_before_spending(sqlite_app, capsys, monkeypatch):  # type: ignore[no-untyped-def]
    app = sqlite_app
    seed(app, "n00000005", 3)
    handle = serve(app)
    url = app.settings.resolved_database_url()
    base = [
        "--data-dir",
        app.settings.data_dir,
        "--database-url",
        url,
        "mturk",
        "--endpoint-url",
        handle.url,
    ]
    try:
        monkeypatch.setattr("sys.stdin.isatty", lambda: False)
        assert main([*base, "publish"]) == 2
        err = capsys.readouterr()
        assert "MTurk fees" in err.out and "--yes" in err.err
        with app.Session() as s:
            assert s.scalar(select(func.count()).select_from(Hit)) == 0
        assert main([*base, "publish", "--yes"]) == 0
        assert '"created": 1' in capsys.readouterr().out
        assert main([*base, "publish", "--yes"]) == 0  # nothing twice
        assert "nothing to publish" in capsys.readouterr().out
        assert main([*base, "collect", "--no-more"]) == 0
    finally:
        handle.stop()


def test_request_more_extends_finished_hits(sqlite_app):  # type: ignore[no-untyped-def]
    """Undecided items of a finished HIT get more assignments on that HIT, once per token."""
    from mturk.client import make_client
    from mturk.collect import request_more

    app = sqlite_app
    data = seed(app, "n00000006", 4)
    handle = serve(app)
    try:
        mt = make_client(app.settings)
        publish(app, yes=True, needs={c: 2 for c in data["ids"]}, client=mt, out=lambda s: None)
        run_workers(handle.url, data["truth"], n_workers=2, mix="good=1", max_seconds=60)
        collect(app, client=mt, more=False, out=lambda s: None)
        with app.Session() as s:
            hit = s.scalars(select(Hit)).one()
            assert hit.status == "Reviewable" and hit.max_assignments == 2
        more = request_more(app, client=mt, needs={c: 1 for c in data["ids"]}, out=lambda s: None)
        assert more["extended_hits"] == 1 and more["published"]["created"] == 0
        server = mt.get_hit(HITId=hit.hit_id)["HIT"]
        assert server["MaxAssignments"] == 3 and server["HITStatus"] == "Assignable"
        with app.Session() as s:
            row = s.get(Hit, hit.hit_id)
            assert row.status == "Assignable" and row.max_assignments == 3
        # The open HIT now carries the items: asking again changes nothing.
        again = request_more(app, client=mt, needs={c: 1 for c in data["ids"]}, out=lambda s: None)
        assert again["extended_hits"] == 0 and again["published"]["created"] == 0
        assert mt.get_hit(HITId=hit.hit_id)["HIT"]["MaxAssignments"] == 3
        # The two workers who did it cannot take it again; a third one does the new slot.
        sim = run_workers(handle.url, data["truth"], n_workers=3, mix="good=1", max_seconds=60)
        assert sim["submitted"] == 1 and sim["per_worker"]["SIMGOOD0002"]["submitted"] == 1
        assert collect(app, client=mt, more=False, out=lambda s: None)["assignments_new"] == 1
    finally:
        handle.stop()
