"""Migration 0009 keeps the routing verdicts a database already holds (as pseudo-synset "~" rows)."""

from __future__ import annotations

from sqlalchemy import select, text

from curation.consensus.crowd import _recompute, stored_groups
from db.models import Worker, WorkerVerdict
from db.session import make_engine, session_factory, upgrade


def test_existing_verdicts_survive_the_upgrade_and_the_next_recompute(db_url: str) -> None:
    upgrade(db_url, "0008")
    engine = make_engine(db_url)
    with engine.begin() as conn:
        for wid, routing, group in [
            ("spam", "uninformative", None),
            ("c0", None, "c0"),  # the group's member who kept getting work
            ("c1", "redundant", "c0"),
            ("h0", None, None),
        ]:
            conn.execute(
                text(
                    "INSERT INTO worker (worker_id, gold_seen, gold_correct, approved, rejected,"
                    " blocked, routing, dependence_group)"
                    " VALUES (:w, 0, 0, 0, 0, false, :r, :g)"
                ),
                {"w": wid, "r": routing, "g": group},
            )
    engine.dispose()
    upgrade(db_url)
    engine = make_engine(db_url)
    Session = session_factory(engine)
    with Session() as s:
        rows = s.execute(
            select(WorkerVerdict.wnid, WorkerVerdict.worker_id, WorkerVerdict.uninformative)
        ).all()
        assert sorted(rows) == [("~", "c0", False), ("~", "c1", False), ("~", "spam", True)]
        # A partial run starts from the old group and recomputes every worker from the rows.
        assert stored_groups(s) == {"~": [{"c0", "c1"}]}
        _recompute(s.connection())
        s.commit()
        got = {w.worker_id: (w.routing, w.dependence_group) for w in s.scalars(select(Worker))}
    engine.dispose()
    assert got == {
        "spam": ("uninformative", None),
        "c0": (None, "c0"),
        "c1": ("redundant", "c0"),
        "h0": (None, None),
    }
