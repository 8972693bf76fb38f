"""Issue 16's crowd plumbing: insufficient_crowd, routing, capped gold, dynamic's small-crowd fallback."""

from __future__ import annotations

import asyncio
import json
import logging
import random

import requests
from sqlalchemy import select

from curation.consensus.decide import run_consensus
from db.models import ConsensusSynset, GoldItem, Label, Worker
from imnet.cli import main
from mturk.publish import publish
from mturk.routing import ROUTING_QUAL_NAME
from mturk.verify import gold_pool, needs_votes
from tests import dbrows
from tests.mturk.serving import client_for, serve

WNID = "n00000061"
N_WORKERS = 4


def _argv(app) -> list[str]:
    s = app.settings
    return ["--data-dir", s.data_dir, "--database-url", s.resolved_database_url()]


def _small_crowd(app) -> list[int]:
    """80 items (30% positives), every one voted on by all four 0.85-accurate workers (each
    with a gold record): a lab's whole crowd has voted. Returns the candidate ids."""
    rng = random.Random(5)
    truth = [rng.random() < 0.3 for _ in range(80)]
    with app.Session() as s:
        dbrows.add_synset(s, WNID, "heron")
        ids = dbrows.add_candidates(s, WNID, 80)
        rows = [
            (c, f"w{w}", truth[i] if rng.random() < 0.85 else not truth[i])
            for i, c in enumerate(ids)
            for w in range(N_WORKERS)
        ]
        dbrows.add_votes(s, WNID, rows)
        for w in range(N_WORKERS):
            row = s.get(Worker, f"w{w}")
            row.gold_seen, row.gold_correct = 10, 8
        s.commit()
    return ids


def test_insufficient_crowd_is_stored_and_reported(any_app, capsys) -> None:
    app = any_app
    app.settings = app.settings.replace(consensus_algorithm="robust")
    ids = _small_crowd(app)
    # The crowd is the four who all voted already: nobody is left to ask.
    with app.Session() as s:
        rep = run_consensus(s, "robust", settings=app.settings)
        n = rep["totals"]["insufficient_crowd"]
        assert n > 0 and rep["totals"]["needs_votes"] == 0
        assert rep["totals"]["crowd_needed"] > N_WORKERS
        assert not needs_votes(s, settings=app.settings)
        stuck = {
            r.candidate_id: r
            for r in s.scalars(select(Label).where(Label.decision == "insufficient_crowd"))
        }
        assert len(stuck) == n and set(stuck) <= set(ids)
        # Stored with the precision accepting it would have.
        assert all(r.posterior is not None and 0 < r.posterior < 0.999 for r in stuck.values())
        row = s.get(ConsensusSynset, WNID)
        assert row.insufficient == n and row.eligible_workers == N_WORKERS
    assert (
        main([*_argv(app), "mturk", "--endpoint-url", "http://127.0.0.1:9", "status", "--json"])
        == 0
    )
    status = json.loads(capsys.readouterr().out)
    assert status["insufficient_crowd"] == n
    assert status["more_annotators_needed"] == rep["totals"]["crowd_needed"] - N_WORKERS > 0
    # The review page says it too.
    from aiohttp.test_utils import TestClient, TestServer

    from mturk.server.review import make_review_app

    async def page() -> str:
        async with TestClient(TestServer(make_review_app(app))) as client:
            r = await client.get("/")
            return await r.text()

    html = asyncio.run(page())
    assert f"<span id='insufficient-count'>{n}</span>" in html
    assert f"<span id='crowd-needed'>{rep['totals']['crowd_needed']}</span>" in html
    # A crowd larger than the one that voted: the same items want more votes instead.
    app.settings = app.settings.replace(consensus_crowd_size=14)
    with app.Session() as s:
        wide = run_consensus(s, "robust", settings=app.settings)
        assert wide["totals"]["insufficient_crowd"] == 0
        assert set(stuck) <= set(needs_votes(s, settings=app.settings))
        assert not s.scalars(select(Label).where(Label.decision == "insufficient_crowd")).first()


def test_every_algorithm_stops_asking_an_exhausted_crowd(any_app) -> None:
    """worker-aware (the default) and dawid-skene know nothing of crowd size; decide() caps their
    asks at the eligible crowd, so an item the whole crowd voted on is flagged, never waits."""
    app = any_app
    ids = _small_crowd(app)
    for algorithm in ("worker-aware", "dawid-skene"):
        with app.Session() as s:
            rep = run_consensus(s, algorithm, settings=app.settings)
            assert rep["totals"]["needs_votes"] == 0, algorithm
            settings = app.settings.replace(consensus_algorithm=algorithm)
            assert not needs_votes(s, settings=settings), algorithm
            flagged = set(
                s.scalars(select(Label.candidate_id).where(Label.decision == "insufficient_crowd"))
            )
            assert flagged <= set(ids)
    # dawid-skene wants 5 votes, the crowd gave 4: every item is flagged, none waits.
    assert len(flagged) == len(ids)
    # With room in the crowd, the same items ask for votes again.
    wide = app.settings.replace(consensus_crowd_size=14, consensus_algorithm="dawid-skene")
    with app.Session() as s:
        run_consensus(s, "dawid-skene", settings=wide)
        assert set(needs_votes(s, settings=wide)) == set(ids)


def test_routing_stops_work_for_an_always_yes_worker(any_app) -> None:
    app = any_app
    wnid = "n00000062"
    with app.Session() as s:
        dbrows.add_synset(s, wnid, "egret")
        ids = dbrows.add_candidates(s, wnid, 60)
        rows = []
        for i, c in enumerate(ids):
            truth = i % 3 == 0
            # Five careful workers (one slip each in 20) and one who ticks everything.
            rows += [(c, f"good{w}", truth != (i % 20 == w)) for w in range(5)]
            rows.append((c, "SPAM", True))
        dbrows.add_votes(s, wnid, rows)
        for w in [f"good{k}" for k in range(5)] + ["SPAM"]:
            row = s.get(Worker, w)
            # Gold is known for everyone; the always-yes worker passes half of it.
            row.gold_seen, row.gold_correct = 10, 5 if w == "SPAM" else 9
        more = dbrows.add_candidates(s, wnid, 4)
        s.commit()
    with app.Session() as s:
        run_consensus(s, "robust", settings=app.settings)
        routing = dict(s.execute(select(Worker.worker_id, Worker.routing)).all())
    assert routing["SPAM"] == "uninformative"
    assert all(routing[f"good{k}"] is None for k in range(5))
    handle = serve(app)
    try:
        mt = client_for(app)
        rep = publish(app, yes=True, needs={c: 3 for c in more}, client=mt, out=lambda m: None)
        assert rep["routing"]["routed_away"] == ["SPAM"]
        qual = next(
            q["QualificationTypeId"]
            for q in mt.list_qualification_types(
                Query=ROUTING_QUAL_NAME, MustBeRequestable=False, MustBeOwnedByCaller=True
            )["QualificationTypes"]
        )
        held = mt.list_workers_with_qualification_type(QualificationTypeId=qual)
        assert [q["WorkerId"] for q in held["Qualifications"]] == ["SPAM"]
        hit_id = mt.list_hits()["HITs"][0]["HITId"]

        def accept(worker: str) -> int:
            http = requests.Session()
            http.trust_env = False
            http.post(f"{handle.url}/worker/signin", data={"worker_id": worker}).raise_for_status()
            listed = http.get(f"{handle.url}/worker/hits").text
            r = http.post(f"{handle.url}/worker/hits/{hit_id}/accept", allow_redirects=False)
            return r.status_code if (hit_id in listed) == (r.status_code == 303) else -1

        assert accept("SPAM") == 403
        assert accept("good0") == 303
        assert accept("NEWCOMER") == 303  # routing never shuts out workers it has not measured
        # The model trusts the worker again (here: by hand): the next sync lifts the routing.
        with app.Session() as s:
            s.get(Worker, "SPAM").routing = None
            s.commit()
        from mturk.routing import sync_routing

        assert sync_routing(app, mt) == {"routed_away": [], "restored": ["SPAM"]}
        assert accept("SPAM") == 303
    finally:
        handle.stop()


def test_gold_promotes_overrides_with_a_cap_and_refuses_a_cartel(any_app, capsys) -> None:
    app = any_app
    wnid = "n00000063"
    with app.Session() as s:
        dbrows.add_synset(s, wnid, "bittern")
        ids = dbrows.add_candidates(s, wnid, 100)
        overrides, cartel, honest = ids[:8], ids[10:30], ids[30:36]
        for k, c in enumerate(overrides):
            s.add(
                Label(
                    candidate_id=c,
                    wnid=wnid,
                    decision="accept" if k % 2 else "reject",
                    decided_by="manual",
                    overridden=True,
                    posterior=float(k % 2),
                )
            )
        for c in cartel + honest:
            s.add(
                Label(
                    candidate_id=c,
                    wnid=wnid,
                    decision="accept",
                    decided_by="robust",
                    posterior=0.99995,
                    votes_yes=3,
                )
            )
        rows = [(c, f"cartel{k}", True) for c in cartel for k in range(3)]
        rows += [(c, f"honest{k}", True) for c in honest for k in range(3)]
        dbrows.add_votes(s, wnid, rows)
        for k in range(3):
            # As consensus stores a dependent group: one key for all members.
            s.get(Worker, f"cartel{k}").dependence_group = "cartel0"
        s.commit()
    # Confident labels alone are no gold any more: only hand labels until promoted.
    with app.Session() as s:
        assert {c for c, _a in gold_pool(s, [wnid])[wnid]} == set(overrides)
    argv = [*_argv(app), "mturk", "gold", "--per-synset", "12", "--max-share", "0.5"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "added 12 (8 from overrides, 4 from confident labels)" in out
    assert "refused 20" in out
    with app.Session() as s:
        gold = dict(s.execute(select(GoldItem.candidate_id, GoldItem.source)).all())
        assert {c for c, src in gold.items() if src == "override"} == set(overrides)
        promoted = {c for c, src in gold.items() if src == "consensus"}
        assert len(promoted) == 4 and promoted <= set(honest) and not promoted & set(cartel)
        assert {c for c, _a in gold_pool(s, [wnid])[wnid]} == set(gold)
    # Idempotent: nothing new, nothing done.
    assert main([*argv, "--json"]) == 0
    again = json.loads(capsys.readouterr().out)["totals"]
    assert again["added"] == 0 and again["dropped"] == 0 and again["gold"] == 12
    # Never more than the share of the synset's items: 5% of 100 = 5 < 12 already there.
    assert main([*argv[:-2], "--max-share", "0.05", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["totals"]["added"] == 0
    # A cleared override stops being gold.
    with app.Session() as s:
        lab = s.get(Label, overrides[0])
        lab.overridden, lab.decision, lab.decided_by = False, "undecided", None
        s.commit()
    assert main([*argv, "--json"]) == 0
    t = json.loads(capsys.readouterr().out)["totals"]
    assert t["dropped"] == 1 and t["added"] == 1 and t["from_labels"] == 1


def test_dynamic_falls_back_on_a_five_worker_crowd(any_app, caplog) -> None:
    app = any_app
    app.settings = app.settings.replace(consensus_algorithm="dynamic")
    wnid = "n00000064"
    with app.Session() as s:
        dbrows.add_synset(s, wnid, "crane")
        ids = dbrows.add_candidates(s, wnid, 30)
        rows = [(c, f"w{w}", i % 3 == 0) for i, c in enumerate(ids) for w in range(5)]
        dbrows.add_votes(s, wnid, rows)
        s.commit()
    with caplog.at_level(logging.WARNING, logger="curation.consensus.decide"):
        with app.Session() as s:
            rep = run_consensus(s, "dynamic", settings=app.settings)
            wanted = needs_votes(s, settings=app.settings)
            note = s.get(ConsensusSynset, wnid).note
    # Every item has the five votes the crowd can give and is decided: none waits for the
    # 10 calibration votes ImageNet's rule wants.
    assert rep["totals"]["accept"] == 10 and rep["totals"]["reject"] == 20
    assert not wanted
    assert "crowd of 5 < 10 calibration votes" in rep["per_wnid"][wnid]["fallback"]
    assert note and "worker-aware" in note
    assert sum("cannot calibrate with 5 workers" in r.getMessage() for r in caplog.records) == 1
    # With a crowd big enough to calibrate, dynamic is ImageNet's rule again.
    app.settings = app.settings.replace(consensus_crowd_size=20)
    with app.Session() as s:
        rep = run_consensus(s, "dynamic", settings=app.settings)
    assert "fallback" not in rep["per_wnid"][wnid]
    assert rep["totals"]["needs_votes"] > 0


def test_the_gold_bar_spares_a_careful_workers_bad_start_in_a_small_crowd(sqlite_app) -> None:  # type: ignore[no-untyped-def]
    # mturk.grading.exclude_workers through the server: in a crowd of 8, a careful worker who
    # missed 2 of the first 6 checks (P 0.11 at accuracy 0.9) keeps working; a worker with 1
    # of 6 is shut out. With the settings' crowd for the point estimate lowered to 8, the same
    # 4-of-6 record is under the bar again (4/6 < 0.75), as in a big crowd.
    from mturk.grading import exclude_workers

    app = sqlite_app
    records = {"unlucky": (6, 4), "careless": (6, 1), "new": (2, 0)}
    records |= {f"careful{k}": (6, 6) for k in range(5)}
    with app.Session() as s:
        for wid, (seen, correct) in records.items():
            s.add(Worker(worker_id=wid, gold_seen=seen, gold_correct=correct))
        s.commit()
    handle = serve(app)
    try:
        mt = client_for(app)
        assert exclude_workers(app, mt) == ["careless"]
        app.settings = app.settings.replace(mturk_gold_bar_crowd=len(records))
        assert exclude_workers(app, mt) == []  # the point estimate would leave 6 of 8
        app.settings = app.settings.replace(mturk_gold_bar_crowd=len(records) - 2)
        assert exclude_workers(app, mt) == ["unlucky"]  # 6 are left: the point estimate
        with app.Session() as s:
            blocked = set(s.scalars(select(Worker.worker_id).where(Worker.blocked.is_(True))))
        assert blocked == {"careless", "unlucky"}
    finally:
        handle.stop()
