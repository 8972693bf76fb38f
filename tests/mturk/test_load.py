"""Load: 50 simulated workers through 500 HITs on one server; no answer lost or duplicated."""

from __future__ import annotations

import time

import pytest

from mturk.client import paginate
from mturk.layout import Tile, html_question, render_task_html
from mturk.simulate import run_workers
from tests.mturk.serving import client_for, serve

N_HITS = 500
N_WORKERS = 50


@pytest.mark.slow
def test_fifty_workers_five_hundred_hits(sqlite_app):  # type: ignore[no-untyped-def]
    app = sqlite_app
    handle = serve(app)
    try:
        mt = client_for(app)
        type_id = mt.create_hit_type(
            Title="load", Description="load test", Reward="0.01", AssignmentDurationInSeconds=600
        )["HITTypeId"]
        truth: dict[str, str | None] = {}
        # Full size in HITs and workers; small HITs (2 tiles) keep the run short.
        for i in range(N_HITS):
            tiles = [Tile(p, f"{i:060d}{p:04d}", f"/images/{i}-{p}") for p in range(2)]
            for t in tiles:
                truth[t.sha256] = "n0" if (i + t.position) % 2 else None
            doc = render_task_html("n0", ["load"], "load test", tiles)
            mt.create_hit_with_hit_type(
                HITTypeId=type_id,
                MaxAssignments=1,
                LifetimeInSeconds=3600,
                Question=html_question(doc),
                UniqueRequestToken=f"load-{i}",
            )
        t0 = time.time()
        sim = run_workers(handle.url, truth, n_workers=N_WORKERS, seed=7, max_seconds=300)
        elapsed = time.time() - t0
        print(
            f"\nload: {sim['submitted']} assignments by {N_WORKERS} workers in {elapsed:.1f} s = "
            f"{sim['submitted'] / elapsed:.1f} assignments/s (conflicts {sim['conflicts']})"
        )
        assert not sim["errors"] and not sim["timed_out"], sim["errors"][:3]
        assert sim["submitted"] == N_HITS and not sim["refused"]
        assert len(set(sim["assignment_ids"])) == N_HITS

        # The requester sees exactly those answers: every HIT once, none lost, none twice.
        seen: list[str] = []
        for h in paginate(mt.list_reviewable_hits, "HITs"):
            got = list(paginate(mt.list_assignments_for_hit, "Assignments", HITId=h["HITId"]))
            assert len(got) == 1 and got[0]["Answer"].count("<QuestionIdentifier>n_items<") == 1
            seen.append(got[0]["AssignmentId"])
        assert sorted(seen) == sorted(sim["assignment_ids"])
    finally:
        handle.stop()
