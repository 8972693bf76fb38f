"""The server's sandbox_* tables: not in the core schema, created where the server runs, and a
database made by the previous schema (sandbox tables from the core 0001) upgrades and serves."""

from __future__ import annotations

from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, inspect, text

from db.migrations import HEADS
from db.models import Base
from db.session import make_engine, upgrade
from imnet.core.app import App
from imnet.core.settings import Settings
from mturk.server import migrations as server_migrations
from mturk.server.models import ServerBase
from tests.db.legacy_schema import create_pre_split_sandbox
from tests.mturk.serving import client_for, serve

SERVER_TABLES = set(ServerBase.metadata.tables)


def _tables(engine: Engine) -> set[str]:
    return set(inspect(engine).get_table_names())


def _versions(engine: Engine, table: str) -> set[str]:
    with engine.connect() as conn:
        return set(conn.execute(text(f"SELECT version_num FROM {table}")).scalars())


def _diff(engine: Engine, metadata, tables: set[str]) -> list:  # type: ignore[no-untyped-def]
    """Differences between `metadata` and the database, over `tables` only."""

    def include(name, type_, _parent):  # type: ignore[no-untyped-def]
        return type_ != "table" or name in tables

    with engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True, "include_name": include})
        return compare_metadata(ctx, metadata)


def test_core_upgrade_makes_no_server_tables(db_url: str) -> None:
    upgrade(db_url)
    engine = make_engine(db_url)
    tables = _tables(engine)
    engine.dispose()
    assert not {t for t in tables if t.startswith("sandbox_")}, tables
    assert "synset_target" not in tables and "alembic_version_server" not in tables
    assert {"candidate", "hit", "assignment", "alembic_version"} <= tables


def test_server_start_creates_its_tables(db_url: str) -> None:
    from mturk.server.store import Store

    upgrade(db_url)
    engine = make_engine(db_url)
    store = Store(engine, "AK")
    assert SERVER_TABLES <= _tables(engine)
    assert _versions(engine, "alembic_version_server") == server_migrations.HEADS
    assert _versions(engine, "alembic_version") == HEADS  # the core chain is left as it was
    assert _diff(engine, ServerBase.metadata, SERVER_TABLES) == []
    ht = store.create_hit_type(
        {"Title": "t", "Description": "d", "Reward": "0.05", "AssignmentDurationInSeconds": 60}
    )["HITTypeId"]
    Store(engine, "AK")  # a restart finds its tables and rows
    assert store.create_hit({"HITTypeId": ht, "LifetimeInSeconds": 60, "Question": _question()})
    engine.dispose()


def test_server_heads_constant_names_the_newest_revision() -> None:
    from alembic.script import ScriptDirectory

    from db.session import Chain, alembic_config

    chain = Chain(
        server_migrations.SCRIPTS, server_migrations.HEADS, server_migrations.VERSION_TABLE
    )
    script = ScriptDirectory.from_config(alembic_config("sqlite://", chain))
    assert set(script.get_heads()) == server_migrations.HEADS


def _fill_old(engine: Engine) -> None:
    """A HIT with one approved and one accepted assignment, written as the old server did."""
    with engine.begin() as c:
        c.execute(
            text(
                "INSERT INTO sandbox_hit_type (hit_type_id, title, description, reward, "
                "assignment_duration, auto_approval_delay, created_at) "
                "VALUES ('OLDTYPE', 't', 'd', '0.05', 600, 600, 1)"
            )
        )
        c.execute(
            text(
                "INSERT INTO sandbox_hit (hit_id, hit_type_id, question, max_assignments, "
                "expiration, status, review_status, created_at) "
                "VALUES ('OLDHIT', 'OLDTYPE', '<q/>', 3, 4000000000, 'Assignable', "
                "'NotReviewed', 1)"
            )
        )
        for aid, st, sub in (("A1", "Approved", 2.0), ("A2", "Accepted", None)):
            c.execute(
                text(
                    "INSERT INTO sandbox_assignment (assignment_id, hit_id, worker_id, status, "
                    "accept_time, deadline, submit_time, answer) "
                    "VALUES (:a, 'OLDHIT', :a, :s, 1, 4000000000, :t, '<a/>')"
                ),
                {"a": aid, "s": st, "t": sub},
            )


def test_database_from_the_previous_schema_upgrades_and_serves(db_url: str, tmp_path: Path) -> None:
    upgrade(db_url, "0002")
    engine = make_engine(db_url)
    with engine.begin() as conn:
        create_pre_split_sandbox(conn)
    _fill_old(engine)
    app = App(Settings(data_dir=str(tmp_path / "data"), database_url=db_url))
    app.engine  # noqa: B018 - the core chain to its head, over the old sandbox tables
    handle = serve(app)
    try:
        mt = client_for(app)
        old = mt.get_hit(HITId="OLDHIT")["HIT"]
        assert old["NumberOfAssignmentsCompleted"] == 1
        assert old["NumberOfAssignmentsPending"] == 1
        assert old["NumberOfAssignmentsAvailable"] == 1
        asg = mt.list_assignments_for_hit(HITId="OLDHIT")["Assignments"]
        assert [a["AssignmentId"] for a in asg] == ["A1"]
        made = mt.create_hit_with_hit_type(
            HITTypeId="OLDTYPE", LifetimeInSeconds=600, Question=_question()
        )["HIT"]["HITId"]
        listed = {h["HITId"] for h in mt.list_hits(MaxResults=100)["HITs"]}
        assert listed == {"OLDHIT", made}
    finally:
        handle.stop()
        app.close()
    assert _versions(engine, "alembic_version") == HEADS
    assert _versions(engine, "alembic_version_server") == server_migrations.HEADS
    # The old tables are exactly today's server tables, and the core tables today's core.
    assert _diff(engine, ServerBase.metadata, SERVER_TABLES) == []
    core = _tables(engine) - SERVER_TABLES - {"alembic_version_server"}
    assert _diff(engine, Base.metadata, core) == []
    assert "synset_target" not in core
    engine.dispose()


def _question() -> str:
    from mturk.layout import html_question

    return html_question("<!DOCTYPE html><html><body><form><input name='a'></form></body></html>")


def _old_server(db_url: str, revision: str, types: dict[str, list | None]) -> Engine:
    """An engine at server `revision` holding HIT types (id -> requirements) made there."""
    import json

    from mturk.server.migrations import upgrade_server

    upgrade(db_url)
    engine = make_engine(db_url)
    upgrade_server(engine, revision)
    with engine.begin() as c:
        for htid, r in types.items():
            c.execute(
                text(
                    "INSERT INTO sandbox_hit_type (hit_type_id, title, description, reward, "
                    "assignment_duration, auto_approval_delay, qualification_requirements, "
                    "created_at) VALUES (:h, 't', 'd', '0.05', 600, 600, :q, 1)"
                ),
                {"h": htid, "q": None if r is None else json.dumps(r)},
            )
    return engine


def test_s0002_backfills_the_exclusions_of_existing_hit_types(db_url: str) -> None:
    """HIT types made before s0002 get one exclusion row per DoesNotExist requirement."""
    from mturk.server.migrations import upgrade_server

    reqs = [
        {"QualificationTypeId": "VOTERQUAL1", "Comparator": "DoesNotExist"},
        {"QualificationTypeId": "VOTERQUAL2", "Comparator": "DoesNotExist"},
        {"QualificationTypeId": "GOLDQUAL", "Comparator": "GreaterThan", "IntegerValues": [70]},
        {"QualificationTypeId": "000000000000000000L0", "Comparator": "DoesNotExist"},
    ]
    engine = _old_server(db_url, "s0001", {"REASK": reqs, "PLAIN": None})
    upgrade_server(engine)
    with engine.connect() as c:
        rows = c.execute(
            text("SELECT hit_type_id, qualification_type_id FROM sandbox_hit_type_exclusion")
        ).all()
    assert sorted(map(tuple, rows)) == [("REASK", "VOTERQUAL1"), ("REASK", "VOTERQUAL2")]
    assert _versions(engine, "alembic_version_server") == server_migrations.HEADS
    assert _diff(engine, ServerBase.metadata, SERVER_TABLES) == []
    engine.dispose()


def test_s0003_backfills_the_gates_of_existing_hit_types_and_hits(db_url: str) -> None:
    """HIT types made before s0003, and their HITs, get the gate of their Exists requirements."""
    from mturk.server.migrations import upgrade_server

    reqs = [
        {"QualificationTypeId": "WARMED", "Comparator": "Exists"},
        {"QualificationTypeId": "ALSO", "Comparator": "Exists"},
        {"QualificationTypeId": "VOTERQUAL1", "Comparator": "DoesNotExist"},
        {"QualificationTypeId": "000000000000000000L0", "Comparator": "Exists"},
    ]
    engine = _old_server(db_url, "s0002", {"GATED": reqs, "PLAIN": None})
    with engine.begin() as c:
        for htid in ("GATED", "PLAIN"):
            c.execute(
                text(
                    "INSERT INTO sandbox_hit (hit_id, hit_type_id, question, max_assignments, "
                    "expiration, status, review_status, created_at, n_done, reviewable_at, "
                    "is_open) VALUES (:i, :h, :q, 3, 9e9, 'Assignable', 'NotReviewed', 1, 0, "
                    "9e9, :t)"
                ),
                {"i": "HIT" + htid, "h": htid, "q": _question(), "t": True},
            )
    upgrade_server(engine)
    with engine.connect() as c:
        types = dict(c.execute(text("SELECT hit_type_id, gate FROM sandbox_hit_type")).all())
        hits = dict(c.execute(text("SELECT hit_id, gate FROM sandbox_hit")).all())
        gates = c.execute(text("SELECT gate FROM sandbox_gate")).scalars().all()
    assert types == {"GATED": "ALSO,WARMED", "PLAIN": None}
    assert hits == {"HITGATED": "ALSO,WARMED", "HITPLAIN": None}
    assert gates == ["ALSO,WARMED"]
    assert _versions(engine, "alembic_version_server") == server_migrations.HEADS
    assert _diff(engine, ServerBase.metadata, SERVER_TABLES) == []
    engine.dispose()
