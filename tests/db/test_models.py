"""The migrations build exactly the models' schema, on SQLite and PostgreSQL, and rows round-trip."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import select

from db.migrations import HEADS
from db.models import (
    Base,
    Candidate,
    Image,
    Label,
    Synset,
    phash_from_db,
    phash_to_db,
)
from db.session import make_engine, session_factory, upgrade


def test_migrations_match_models(db_url: str) -> None:
    upgrade(db_url)
    engine = make_engine(db_url)
    with engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True})
        diff = compare_metadata(ctx, Base.metadata)
    engine.dispose()
    assert diff == [], f"models and migrations differ: {diff}"


def test_server_migrations_match_server_models(db_url: str) -> None:
    """The server's own branch builds exactly mturk/server/models.py's tables."""
    from mturk.server.migrations import upgrade_server
    from mturk.server.models import ServerBase

    upgrade(db_url)
    engine = make_engine(db_url)
    upgrade_server(engine)
    mine = set(ServerBase.metadata.tables)
    with engine.connect() as conn:
        ctx = MigrationContext.configure(
            conn,
            opts={
                "compare_type": True,
                # The core tables are the other chain's, compared above.
                "include_name": lambda name, type_, _p: type_ != "table" or name in mine,
            },
        )
        diff = compare_metadata(ctx, ServerBase.metadata)
    engine.dispose()
    assert diff == [], f"server models and migrations differ: {diff}"


def test_upgrade_is_idempotent(db_url: str) -> None:
    upgrade(db_url)
    upgrade(db_url, "head")  # second call is a no-op, not an error
    engine = make_engine(db_url)
    with engine.connect() as conn:
        assert MigrationContext.configure(conn).get_current_heads() == tuple(HEADS)
    engine.dispose()


def test_heads_constant_names_the_newest_migration() -> None:
    """upgrade() skips alembic when the database is at migrations.HEADS: it must be the head."""
    from alembic.script import ScriptDirectory

    from db.migrations import HEADS
    from db.session import alembic_config

    script = ScriptDirectory.from_config(alembic_config("sqlite://"))
    assert set(script.get_heads()) == HEADS


def test_heads_fast_path_needs_a_matching_version_table(sqlite_url: str) -> None:
    """upgrade() skips alembic only when the version table names exactly HEADS."""
    from sqlalchemy import text

    import db.session as dbs

    upgrade(sqlite_url)
    engine = make_engine(sqlite_url)
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM alembic_version"))  # as if never stamped
    assert not dbs._at_heads(sqlite_url, engine)
    dbs._upgraded.discard((sqlite_url, dbs.CORE.version_table))
    with engine.begin() as conn:
        conn.execute(
            text("INSERT INTO alembic_version (version_num) VALUES (:v)"), {"v": next(iter(HEADS))}
        )
    assert dbs._at_heads(sqlite_url, engine)
    engine.dispose()


def test_rows_round_trip(db_url: str) -> None:
    upgrade(db_url)
    engine = make_engine(db_url)
    Session = session_factory(engine)
    big = (1 << 64) - 3  # an unsigned phash above the signed range
    with Session() as s:
        s.add(Synset(wnid="n02084071", lemmas=["dog", "domestic_dog"], gloss="a dog", depth=8))
        s.add(
            Image(
                sha256="a" * 64,
                blob_key="aa/aa/" + "a" * 64,
                width=5,
                height=6,
                format="JPEG",
                bytes=100,
                phash=phash_to_db(big),
            )
        )
        s.flush()
        c = Candidate(
            wnid="n02084071",
            url="http://127.0.0.1/x.jpg",
            image_sha256="a" * 64,
            status="fetched",
            meta={"k": [1, 2]},
        )
        s.add(c)
        s.flush()
        s.add(Label(candidate_id=c.id, wnid="n02084071", votes_yes=3, decision="accept"))
        s.commit()
    with Session() as s:
        syn = s.get(Synset, "n02084071")
        assert syn is not None and syn.lemmas == ["dog", "domestic_dog"]
        img = s.get(Image, "a" * 64)
        assert img is not None and phash_from_db(img.phash) == big
        cand = s.scalars(select(Candidate)).one()
        assert cand.meta == {"k": [1, 2]} and cand.attempts == 0
        assert s.get(Label, cand.id).decision == "accept"
    engine.dispose()


def test_candidate_url_unique_per_synset(db_url: str) -> None:
    import pytest
    from sqlalchemy.exc import IntegrityError

    upgrade(db_url)
    engine = make_engine(db_url)
    Session = session_factory(engine)
    with Session() as s:
        s.add(Synset(wnid="n1", lemmas=["a"]))
        s.add(Synset(wnid="n2", lemmas=["b"]))
        s.flush()
        s.add_all([Candidate(wnid="n1", url="u"), Candidate(wnid="n2", url="u")])
        s.commit()
        s.add(Candidate(wnid="n1", url="u"))
        with pytest.raises(IntegrityError):
            s.commit()
    engine.dispose()


def test_sqlite_pragmas(sqlite_url: str) -> None:
    engine = make_engine(sqlite_url)
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    engine.dispose()
