"""Publish and collect past the database's bound-parameter limit, batched, and after crashes."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, func, select
from sqlalchemy.exc import OperationalError

from db.models import Assignment, Candidate, Hit, HitItem, Vote
from imnet.core.app import App
from imnet.core.settings import Settings
from mturk.client import paginate
from mturk.collect import collect
from mturk.publish import publish
from mturk.simulate import run_workers
from tests.dbrows import bulk_seed
from tests.mturk.serving import client_for, serve

# The compile-time default of SQLite before 3.32 (Debian builds allow 250,000): a limit that a
# test reaches with a thousand items rather than a quarter of a million.
SQLITE_OLD_LIMIT = 999


def _limit_sqlite_variables(app: App, n: int) -> None:
    @event.listens_for(app.engine, "connect")
    def _lower(dbapi_conn: Any, _rec: Any) -> None:
        dbapi_conn.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, n)

    app.engine.dispose()  # connections opened before the listener keep the build's limit


@pytest.mark.slow
def test_publish_and_collect_past_the_sqlite_parameter_limit(tmp_path: Path) -> None:
    app = App(Settings(data_dir=str(tmp_path / "data"), mturk_images_per_hit=24))
    try:
        n = 3 * SQLITE_OLD_LIMIT
        ids, truth = bulk_seed(app, "n00000001", n)
        _limit_sqlite_variables(app, SQLITE_OLD_LIMIT)
        # The limit holds: one IN list over every item, as publish used to build, is refused.
        with app.Session() as s, pytest.raises(OperationalError, match="too many SQL variables"):
            s.execute(select(Candidate.id).where(Candidate.id.in_(ids))).all()
        handle = serve(app)
        try:
            mt = client_for(app)
            needs = {c: 1 for c in ids}
            rep = publish(app, needs=needs, client=mt, out=lambda s: None, concurrency=4)
            n_hits = -(-n // 24)  # no gold labels to mix in: 24 items per HIT
            assert rep["created"] == rep["planned"] == n_hits and rep["items"] == n
            with app.Session() as s:
                assert s.scalar(select(func.count()).select_from(Hit)) == n_hits
                assert s.scalar(select(func.count(func.distinct(HitItem.candidate_id)))) == n
            server = list(paginate(mt.list_hits, "HITs", page_size=50))
            assert len(server) == n_hits  # across pages (botocore's paginator), none twice

            sim = run_workers(handle.url, truth, n_workers=4, mix="good=1", seed=3)
            assert sim["submitted"] == n_hits and not sim["errors"], sim
            got = collect(app, client=mt, more=False, out=lambda s: None, concurrency=4)
            assert got["assignments_new"] == n_hits and got["hits"] == n_hits
            assert got["approved"] == n_hits  # no gold to fail: every answer is approved
            with app.Session() as s:
                assert s.scalar(select(func.count()).select_from(Vote)) == n
                assert (
                    s.scalar(
                        select(func.count()).select_from(Hit).where(Hit.collected_at.is_not(None))
                    )
                    == n_hits
                )
            again = collect(app, client=mt, more=False, out=lambda s: None)
            assert again["assignments_new"] == 0 and again["approved"] == 0
        finally:
            handle.stop()
    finally:
        app.close()


def test_publish_plans_past_the_postgresql_parameter_limit(tmp_path: Path, pg_url: str) -> None:
    """70,000 items: more than the 65,535 parameters one PostgreSQL statement may bind."""
    app = App(Settings(data_dir=str(tmp_path / "data"), database_url=pg_url))
    try:
        n = 70_000
        ids, _truth = bulk_seed(app, "n00000002", n)
        handle = serve(app)
        try:
            rep = publish(
                app,
                needs={c: 2 for c in ids},
                client=client_for(app),
                yes=False,
                confirm=lambda _p: False,  # plan and price everything, create nothing
                out=lambda s: None,
            )
        finally:
            handle.stop()
        assert rep["aborted"] and rep["items"] == n and rep["planned"] == -(-n // 24)
        assert rep["cost"]["assignments"] == 2 * rep["planned"]
    finally:
        app.close()


def _fail_after(client: Any, operation: str, n: int, *, after_call: bool) -> None:
    """Make the real boto3 client fail from the (n+1)-th `operation` call on: before the request
    is sent, or after the server did the work (the answer is lost, as in a crash)."""
    calls = {"n": 0}

    def hook(**_kw: Any) -> None:
        calls["n"] += 1
        if calls["n"] > n:
            raise ConnectionError(f"injected failure in {operation}")

    stage = "after-call" if after_call else "before-call"
    client.meta.events.register(f"{stage}.mturk.{operation}", hook)


def test_interrupted_publish_and_collect_finish_on_rerun(tmp_path: Path, db_url: str) -> None:
    app = App(
        Settings(
            data_dir=str(tmp_path / "data"),
            database_url=db_url,
            mturk_images_per_hit=6,
            mturk_gold_per_hit=0,
        )
    )
    try:
        ids, truth = bulk_seed(app, "n00000003", 60)  # 10 HITs
        needs = {c: 2 for c in ids}
        handle = serve(app)
        try:
            # Lost answers: the server created HITs whose ids never reached the database.
            broken = client_for(app)
            _fail_after(broken, "CreateHITWithHITType", 4, after_call=True)
            with pytest.raises(ConnectionError):
                publish(app, needs=needs, client=broken, out=lambda s: None, concurrency=3)
            with app.Session() as s:
                recorded = s.scalar(select(func.count()).select_from(Hit))
            assert recorded == 4  # what succeeded before the failure is kept
            mt = client_for(app)
            rep = publish(app, needs=needs, client=mt, out=lambda s: None, concurrency=3)
            # The 4 recorded HITs' items wait for them; the other 6 HITs exist on the server.
            assert rep["deferred"] == 24 and rep["created"] == 0 and rep["existing"] == 6
            server = list(paginate(mt.list_hits, "HITs"))
            assert len(server) == 10  # the rerun found the HITs by token, made none twice
            with app.Session() as s:
                local = set(s.scalars(select(Hit.hit_id)))
            assert local == {h["HITId"] for h in server}

            sim = run_workers(handle.url, truth, n_workers=3, mix="good=1", seed=5)
            assert sim["submitted"] == 20 and not sim["errors"], sim
            # Reviews fail part-way: stored answers stay, the rerun reviews the rest only.
            broken = client_for(app)
            _fail_after(broken, "ApproveAssignment", 7, after_call=False)
            with pytest.raises(ConnectionError):
                collect(app, client=broken, more=False, out=lambda s: None, concurrency=2)
            with app.Session() as s:
                assert s.scalar(select(func.count()).select_from(Assignment)) == 20
                reviewed = s.scalar(
                    select(func.count())
                    .select_from(Assignment)
                    .where(Assignment.reviewed_at.is_not(None))
                )
            assert reviewed == 7
            rep = collect(app, client=mt, more=False, out=lambda s: None, concurrency=2)
            assert rep["assignments_new"] == 0 and rep["approved"] == 13
            with app.Session() as s:
                assert s.scalar(select(func.count()).select_from(Vote)) == 2 * 60
                assert not s.scalar(
                    select(func.count())
                    .select_from(Assignment)
                    .where(Assignment.reviewed_at.is_(None))
                )
            statuses = {
                a["AssignmentStatus"]
                for h in server
                for a in paginate(mt.list_assignments_for_hit, "Assignments", HITId=h["HITId"])
            }
            assert statuses == {"Approved"}
        finally:
            handle.stop()
    finally:
        app.close()
