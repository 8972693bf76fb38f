"""The server at scale: > 500 HITs listed by keyset pages, derived HIT columns kept in step."""

from __future__ import annotations

import random
from typing import Any

import pytest
from botocore.exceptions import ClientError
from sqlalchemy import select

from imnet.core.app import App
from mturk.client import paginate
from mturk.layout import html_question
from mturk.server.models import SandboxAssignment, SandboxHit
from tests.mturk.serving import client_for, serve

FORM = "<form><input name='a'></form>"


def _question() -> str:
    return html_question(f"<!DOCTYPE html><html><body>{FORM}</body></html>", 600)


def test_counts_over_many_hits_in_chunks(any_app: App) -> None:
    """Regression: the second 500-id chunk of Store._counts failed (a shadowed variable)."""
    from mturk.server.store import Store

    store = Store(any_app.engine, any_app.settings.mturk_access_key)
    ht = store.create_hit_type(
        {"Title": "t", "Description": "d", "Reward": "0.05", "AssignmentDurationInSeconds": 60}
    )["HITTypeId"]
    from mturk.server.work import WorkerOps

    ids = [
        store.create_hit({"HITTypeId": ht, "LifetimeInSeconds": 600, "Question": _question()})[
            "HIT"
        ]["HITId"]
        for _ in range(3)
    ]
    # Rows in the first chunk are what overwrote the SQL expression used by the next chunks.
    WorkerOps(store).accept(ids[0], "W1")
    WorkerOps(store).accept(ids[2], "W2")
    with store.Session() as s:
        got = store._counts(s, ids[:1] + [f"X{i}" for i in range(1100)] + ids[1:], 0.0)
    assert len(got) == 1103
    assert got[ids[0]] == got[ids[2]] == {"Pending": 1} and got[ids[1]] == {}


@pytest.mark.slow
def test_reviewable_pagination_over_1200_hits(any_app: App) -> None:
    """1,200 HITs made through boto3; every reviewable one is listed exactly once."""
    from concurrent.futures import ThreadPoolExecutor

    from mturk.server import SITE_KEY

    handle = serve(any_app)
    try:
        mt = client_for(any_app)
        ht = mt.create_hit_type(
            Title="scale",
            Description="d",
            Reward="0.05",
            AssignmentDurationInSeconds=60,
        )["HITTypeId"]
        q = _question()

        def make(i: int) -> str:
            hid = mt.create_hit_with_hit_type(HITTypeId=ht, LifetimeInSeconds=600, Question=q)[
                "HIT"
            ]["HITId"]
            if i % 2 == 0:  # half of them expire now: Reviewable with no assignments
                mt.update_expiration_for_hit(HITId=hid, ExpireAt=0)
            return hid

        with ThreadPoolExecutor(4) as pool:
            ids = list(pool.map(make, range(1200)))
        expired = {h for i, h in enumerate(ids) if i % 2 == 0}
        # Assignments on the oldest HITs: the old recount of every HIT broke on its second
        # chunk of 500 only when the first chunk had some. One is done (Reviewable), one pending.
        ops = handle.web_app[SITE_KEY].ops
        done = ops.accept(ids[1], "W1")["assignment_id"]
        ops.submit(done, "W1", [("a", "yes")])
        ops.accept(ids[3], "W2")

        listed = [h["HITId"] for h in paginate(mt.list_reviewable_hits, "HITs", page_size=100)]
        assert len(listed) == len(set(listed)) == 601
        assert set(listed) == expired | {ids[1]}
        page = mt.list_reviewable_hits(HITTypeId=ht, MaxResults=7)
        assert page["NumResults"] == 7 and all(h["HITStatus"] == "Reviewable" for h in page["HITs"])
        nxt = mt.list_reviewable_hits(HITTypeId=ht, MaxResults=7, NextToken=page["NextToken"])
        assert not {h["HITId"] for h in page["HITs"]} & {h["HITId"] for h in nxt["HITs"]}

        everything = [h["HITId"] for h in paginate(mt.list_hits, "HITs", page_size=100)]
        assert sorted(everything) == sorted(ids)
        assert all("Question" in h for h in mt.list_hits(MaxResults=3)["HITs"])

        for bad in ("not-a-token", "W10=", "!!!"):
            with pytest.raises(ClientError) as e:
                mt.list_reviewable_hits(NextToken=bad)
            assert e.value.response["Error"]["Code"] == "RequestError"
        with pytest.raises(ClientError):
            mt.list_reviewable_hits(Status="Assignable")
    finally:
        handle.stop()


class _Clock:
    def __init__(self) -> None:
        self.t = 1_000_000.0

    def time(self) -> float:
        return self.t


def _oracle(store: Any, now: float) -> dict[str, str]:
    """Every non-deleted HIT's status, recounted from its assignments the slow old way."""
    with store.Session() as s:
        hits = list(s.scalars(select(SandboxHit)))
        counts = store._counts(s, [h.hit_id for h in hits], now)
        return {
            h.hit_id: store._status(h, counts[h.hit_id], now)[0]
            for h in hits
            if h.status != "Disposed"
        }


def _derived_ok(store: Any) -> None:
    """The stored derived columns equal a recomputation from the assignments."""
    with store.Session() as s:
        for h in s.scalars(select(SandboxHit)):
            rows = s.execute(
                select(SandboxAssignment.status, SandboxAssignment.deadline).where(
                    SandboxAssignment.hit_id == h.hit_id
                )
            ).all()
            done = sum(1 for st, _ in rows if st in ("Submitted", "Approved", "Rejected"))
            dl = sorted((d for st, d in rows if st == "Accepted"), reverse=True)
            left = h.max_assignments - done
            assert h.n_done == done
            assert h.pending_until == (dl[0] if dl else None)
            assert h.full_until == (dl[left - 1] if 0 < left <= len(dl) else None)
            assert h.is_open == (h.status == "Assignable" and left > 0)


def _all(fn: Any, key: str, size: int, **kw: Any) -> list[str]:
    out: list[str] = []
    token = None
    while True:
        page = fn({**kw, "MaxResults": size, **({"NextToken": token} if token else {})})
        out += [h["HITId"] for h in page[key]]
        token = page.get("NextToken")
        if not token:
            return out


@pytest.mark.slow
def test_derived_columns_follow_random_operations(any_app: App, monkeypatch: Any) -> None:
    """A random sequence of every transition, with time moving: listings and the worker poll
    (index scans over the derived columns) always agree with a full recount."""
    import mturk.server.hits as hits_mod
    import mturk.server.store as store_mod
    import mturk.server.work as work_mod
    from mturk.server.common import MTurkError
    from mturk.server.store import Store
    from mturk.server.work import WorkerOps, WorkError

    clock = _Clock()
    for mod in (store_mod, hits_mod, work_mod):
        monkeypatch.setattr(mod, "time", clock)
    store = Store(any_app.engine, any_app.settings.mturk_access_key)
    ops = WorkerOps(store)
    rng = random.Random(15)
    ht = store.create_hit_type(
        {
            "Title": "t",
            "Description": "d",
            "Reward": "0.01",
            "AssignmentDurationInSeconds": 60,
            "AutoApprovalDelayInSeconds": 500,
        }
    )["HITTypeId"]
    hits: list[str] = []
    workers = [f"W{i}" for i in range(6)]
    assignments: list[tuple[str, str]] = []  # (assignment id, worker)
    seen = {"Reviewable": 0, "Assignable": 0, "Unassignable": 0, "Reviewing": 0}
    for step in range(260):
        op = rng.choice(
            ["create"] * 2
            + ["accept"] * 5
            + ["submit"] * 3
            + ["return", "approve", "reject", "extend", "expire", "more", "delete", "review"]
            + ["tick"] * 3
        )
        try:
            if op == "create" or not hits:
                hits.append(
                    store.create_hit(
                        {
                            "HITTypeId": ht,
                            "LifetimeInSeconds": rng.choice([30, 120, 600]),
                            "MaxAssignments": rng.randint(1, 3),
                            "Question": _question(),
                        }
                    )["HIT"]["HITId"]
                )
            elif op == "accept":
                w = rng.choice(workers)
                assignments.append((ops.accept(rng.choice(hits), w)["assignment_id"], w))
            elif op in ("submit", "return") and assignments:
                aid, w = rng.choice(assignments)
                if op == "submit":
                    ops.submit(aid, w, [("a", "x")])
                else:
                    ops.give_back(aid, w)
            elif op in ("approve", "reject") and assignments:
                aid, _w = rng.choice(assignments)
                store.review(
                    {"AssignmentId": aid, "RequesterFeedback": "no", "OverrideRejection": True},
                    approve=op == "approve",
                )
            elif op in ("extend", "expire"):
                at = clock.t + 300 if op == "extend" else 0
                store.update_expiration({"HITId": rng.choice(hits), "ExpireAt": at})
            elif op == "more":
                store.create_additional_assignments(
                    {"HITId": rng.choice(hits), "NumberOfAdditionalAssignments": 1}
                )
            elif op == "delete":
                store.delete_hit({"HITId": rng.choice(hits)})
            elif op == "review":
                store.update_review_status(
                    {"HITId": rng.choice(hits), "Revert": rng.random() < 0.5}
                )
            elif op == "tick":
                clock.t += rng.choice([5, 30, 61, 200])
            if op != "tick":
                clock.t += rng.random()
        except (MTurkError, WorkError):
            pass  # refused transitions are part of the walk
        _derived_ok(store)
        want = _oracle(store, clock.t)
        for st in want.values():
            seen[st] += 1
        got = _all(lambda p: store.list_hits(p, reviewable=True), "HITs", 3)
        assert sorted(got) == sorted(h for h, st in want.items() if st == "Reviewable"), step
        got = _all(lambda p: store.list_hits(p, reviewable=True), "HITs", 4, Status="Reviewing")
        assert sorted(got) == sorted(h for h, st in want.items() if st == "Reviewing"), step
        assert sorted(_all(store.list_hits, "HITs", 5)) == sorted(want), step
        w = rng.choice(workers)
        with store.Session() as s:
            mine = set(
                s.scalars(select(SandboxAssignment.hit_id).where(SandboxAssignment.worker_id == w))
            )
        polled = ops.available(w, limit=100)
        assert sorted(r["hit_id"] for r in polled) == sorted(
            h for h, st in want.items() if st == "Assignable" and h not in mine
        ), step
        assert all(r["available"] > 0 for r in polled)
    # The walk visited every state, or it proved little.
    assert all(n > 0 for n in seen.values()), seen


def test_poll_reads_past_hits_the_worker_does_not_qualify_for(any_app: App) -> None:
    """The poll reads on (keyset) past a run of HITs hidden by a qualification."""
    from mturk.server.store import Store
    from mturk.server.work import WorkerOps

    store = Store(any_app.engine, any_app.settings.mturk_access_key)
    qid = store.create_qualification_type(
        {"Name": "masters", "Description": "d", "QualificationTypeStatus": "Active"}
    )["QualificationType"]["QualificationTypeId"]
    base = {"Description": "d", "Reward": "0.05", "AssignmentDurationInSeconds": 60}
    open_t = store.create_hit_type({**base, "Title": "open"})["HITTypeId"]
    gated = store.create_hit_type(
        {
            **base,
            "Title": "gated",
            "QualificationRequirements": [{"QualificationTypeId": qid, "Comparator": "Exists"}],
        }
    )["HITTypeId"]

    def make(ht: str, lifetime: int) -> str:
        p = {"HITTypeId": ht, "LifetimeInSeconds": lifetime, "Question": _question()}
        return store.create_hit(p)["HIT"]["HITId"]

    hidden = [make(gated, 100 + i) for i in range(25)]  # they expire first: read first
    shown = [make(open_t, 1000 + i) for i in range(10)]
    ops = WorkerOps(store)
    assert [r["hit_id"] for r in ops.available("PLAIN", limit=5, offset=3)] == shown[3:8]
    store.associate_qualification({"QualificationTypeId": qid, "WorkerId": "PRO"})
    assert [r["hit_id"] for r in ops.available("PRO", limit=30)] == hidden + shown[:5]


def test_poll_finds_work_behind_hundreds_of_reasks_closed_to_the_worker(any_app: App) -> None:
    """A crowd's re-asks each have a HIT type closed to their voters (DoesNotExist). 300 of
    them closed to VOTER expire first; the one HIT open to VOTER comes after: the poll's scan
    (page plus 200 rows) would end before it unless the exclusion is filtered in SQL."""
    from mturk.server.models import SandboxHitTypeExclusion
    from mturk.server.store import Store
    from mturk.server.work import WorkerOps

    store = Store(any_app.engine, any_app.settings.mturk_access_key)

    def qual(name: str) -> str:
        p = {"Name": name, "Description": "d", "QualificationTypeStatus": "Active"}
        return store.create_qualification_type(p)["QualificationType"]["QualificationTypeId"]

    voter, other = qual("imnet-voter-1"), qual("imnet-voter-2")
    store.associate_qualification({"QualificationTypeId": voter, "WorkerId": "VOTER"})
    base = {"Description": "d", "Reward": "0.05", "AssignmentDurationInSeconds": 60}

    def reask(closed_to: list[str], lifetime: int, title: str) -> str:
        reqs = [{"QualificationTypeId": q, "Comparator": "DoesNotExist"} for q in closed_to]
        p = {**base, "Title": title, "QualificationRequirements": reqs}
        p |= {"LifetimeInSeconds": lifetime, "Question": _question()}
        return store.create_hit(p, "CreateHIT")["HIT"]["HITId"]

    closed = [reask([voter, other], 100 + i, f"re-ask {i}") for i in range(300)]
    open_one = reask([other], 5000, "re-ask open to VOTER")
    ops = WorkerOps(store)
    assert [r["hit_id"] for r in ops.available("VOTER", limit=20)] == [open_one]
    assert [r["hit_id"] for r in ops.available("NEWCOMER", limit=3)] == closed[:3]
    with store.Session() as s:  # one row per excluding qualification of each HIT type
        assert len(s.scalars(select(SandboxHitTypeExclusion)).all()) == 2 * 300 + 1


def test_migration_derives_columns_of_existing_hits(db_url: str) -> None:
    """HITs made before 0003 get their derived columns from their assignments."""
    from sqlalchemy import text

    from db.session import make_engine, upgrade
    from tests.db.legacy_schema import create_pre_split_sandbox

    upgrade(db_url, "0002")
    engine = make_engine(db_url)
    with engine.begin() as c:
        create_pre_split_sandbox(c)  # the core 0001 made them before issue 19
    t = 2_000_000_000.0  # far future: deadlines and expirations not passed
    with engine.begin() as c:
        c.execute(
            text(
                "INSERT INTO sandbox_hit_type (hit_type_id, title, description, reward, "
                "assignment_duration, auto_approval_delay, created_at) "
                "VALUES ('T', 't', 'd', '0.05', 60, 60, 0)"
            )
        )
        for hid, max_a, exp, st in (
            ("DONE", 2, t, "Assignable"),
            ("FULL", 2, t, "Assignable"),
            ("OLD", 3, 5.0, "Assignable"),
            ("GONE", 1, t, "Disposed"),
        ):
            c.execute(
                text(
                    "INSERT INTO sandbox_hit (hit_id, hit_type_id, question, max_assignments, "
                    "expiration, status, review_status, created_at) "
                    "VALUES (:h, 'T', 'q', :m, :e, :s, 'NotReviewed', 1)"
                ),
                {"h": hid, "m": max_a, "e": exp, "s": st},
            )
        for aid, hid, st, deadline, sub in (
            ("a1", "DONE", "Approved", 9.0, 7.0),
            ("a2", "DONE", "Submitted", 9.0, 8.0),
            ("a3", "FULL", "Submitted", 9.0, 8.0),
            ("a4", "FULL", "Accepted", t + 60, None),
            ("a5", "FULL", "Returned", t, None),
            ("a6", "OLD", "Accepted", 3.0, None),
        ):
            c.execute(
                text(
                    "INSERT INTO sandbox_assignment (assignment_id, hit_id, worker_id, status, "
                    "accept_time, deadline, submit_time) VALUES (:a, :h, :a, :s, 1, :d, :t)"
                ),
                {"a": aid, "h": hid, "s": st, "d": deadline, "t": sub},
            )
    upgrade(db_url)
    with engine.connect() as c:
        got = {
            r.hit_id: (r.n_done, r.pending_until, r.full_until, r.reviewable_at, bool(r.is_open))
            for r in c.execute(
                text(
                    "SELECT hit_id, n_done, pending_until, full_until, reviewable_at, is_open "
                    "FROM sandbox_hit"
                )
            )
        }
    engine.dispose()
    assert got == {
        "DONE": (2, None, None, 8.0, False),
        "FULL": (1, t + 60, t + 60, t + 60, True),
        "OLD": (0, 3.0, None, 5.0, True),
        "GONE": (0, None, None, t, False),
    }
