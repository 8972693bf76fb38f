"""Warm-up (mturk/warmup.py): new workers answer a page of check images first; regular HITs carry one."""

from __future__ import annotations

from typing import Any

import requests
from sqlalchemy import select

from db.models import Assignment, Hit, HitItem, Worker
from mturk.collect import _review, collect
from mturk.fees import MAX_ASSIGNMENTS_PER_HIT
from mturk.publish import publish
from mturk.verify import plan_hits
from mturk.warmup import WARMUP_HITS, WARMUP_TOKEN
from tests.dbrows import add_gold, seed
from tests.mturk.serving import client_for, serve

WNID = "n00000001"


def _seeded(app: Any, n_items: int, n_gold: int) -> list[int]:
    data = seed(app, WNID, n_items)
    gold = seed(app, WNID, n_gold, rng_seed=1, frac_yes=0.5)
    add_gold(app, WNID, gold["ids"], gold["truth"])
    return list(data["ids"])


def test_plan_has_warmups_and_light_gold_only_with_gold_for_a_page(sqlite_app) -> None:  # type: ignore[no-untyped-def]
    app = sqlite_app
    ids = _seeded(app, 30, 6)
    needs = dict.fromkeys(ids, 3)
    warm = app.settings.replace(
        mturk_warmup_gold=4, mturk_warmed_gold_per_hit=1, mturk_warmed_gold_every=1
    )
    with app.Session() as s:
        plan = plan_hits(s, needs, warm)
    pages = [h for h in plan if h.warmup]
    regular = [h for h in plan if not h.warmup]
    assert len(pages) == WARMUP_HITS
    for h in pages:
        answers = [g for _p, _c, g in h.items]
        assert len(answers) == 4 and None not in answers  # check images only
        assert set(answers) == {True, False}  # ticking everything (or nothing) fails it
        assert h.token.startswith(WARMUP_TOKEN)
    assert regular and all(h.warmed_only for h in regular)
    assert all(sum(g is not None for _p, _c, g in h.items) == 1 for h in regular)
    # mturk_warmed_gold_every=2: one regular HIT in two carries the check image, and a rerun
    # plans the same HITs.
    every2 = warm.replace(mturk_warmed_gold_every=2)
    with app.Session() as s:
        plan2 = [h for h in plan_hits(s, needs, every2) if not h.warmup]
        again = [h for h in plan_hits(s, needs, every2) if not h.warmup]
    checks = [sum(g is not None for _p, _c, g in h.items) for h in plan2]
    assert len(plan2) == 6 and checks == [1, 0, 1, 0, 1, 0]
    assert [h.items for h in plan2] == [h.items for h in again]
    assert sorted(c for h in plan2 for _p, c, g in h.items if g is None) == sorted(ids)
    # Not enough gold for a page (6 < 8), or warm-up off: every HIT carries mturk_gold_per_hit.
    for s_ in (warm.replace(mturk_warmup_gold=8), warm.replace(mturk_warmup_gold=0)):
        with app.Session() as s:
            plan = plan_hits(s, needs, s_)
        assert plan and not any(h.warmup or h.warmed_only for h in plan)
        assert all(sum(g is not None for _p, _c, g in h.items) == 2 for h in plan)


def test_one_check_image_does_not_reject_an_assignment(sqlite_app) -> None:  # type: ignore[no-untyped-def]
    s = sqlite_app.settings
    answer = (
        "<QuestionFormAnswers xmlns='http://mechanicalturk.amazonaws.com/"
        "AWSMechanicalTurkDataSchemas/2005-10-01/QuestionFormAnswers.xsd'>"
        "<Answer><QuestionIdentifier>item_0</QuestionIdentifier><FreeText>yes</FreeText></Answer>"
        "<Answer><QuestionIdentifier>item_1</QuestionIdentifier><FreeText>yes</FreeText></Answer>"
        "<Answer><QuestionIdentifier>n_items</QuestionIdentifier><FreeText>3</FreeText></Answer>"
        "</QuestionFormAnswers>"
    )
    one = _review({"Answer": answer}, {0: False}, [0, 1, 2], s)
    two = _review({"Answer": answer}, {0: False, 1: False}, [0, 1, 2], s)
    assert one["status"] == "Approved" and (one["seen"], one["correct"]) == (1, 0)
    assert two["status"] == "Rejected"


def _http(base: str, worker: str) -> requests.Session:
    http = requests.Session()
    http.trust_env = False
    http.post(f"{base}/worker/signin", data={"worker_id": worker}).raise_for_status()
    return http


def _listed(http: requests.Session, base: str) -> list[str]:
    r = http.get(f"{base}/worker/hits", params={"format": "json", "limit": 20})
    r.raise_for_status()
    return [h["hit_id"] for h in r.json()["hits"]]


def _answer(http: requests.Session, base: str, hit_id: str, items: list[Any], right: bool) -> None:
    r = http.post(f"{base}/worker/hits/{hit_id}/accept", allow_redirects=False)
    assert r.status_code == 303, r.text
    aid = r.headers["Location"].rsplit("/", 1)[1]
    f = {"assignmentId": aid, "n_items": str(len(items))}
    for i in items:
        if (i.gold_label is True) == right:
            f[f"item_{i.position}"] = "yes"
    got = http.post(f"{base}/mturk/externalSubmit", data=f, headers={"Accept": "application/json"})
    assert got.status_code == 200, got.text


def test_new_workers_find_the_warmup_page_among_many_hits_and_earn_the_rest(sqlite_app) -> None:  # type: ignore[no-untyped-def]
    """Over 220 regular HITs (the poll's scan budget past a page) expire before the warm-up
    pages: a new worker still sees only warm-up pages; after collect, a careful one sees the
    regular HITs (and no warm-up), a careless one is shut out before one real vote."""
    app = sqlite_app
    app.settings = app.settings.replace(
        mturk_images_per_hit=2,
        mturk_warmup_gold=4,
        mturk_warmed_gold_per_hit=1,
        mturk_min_gold_seen=4,
    )
    ids = _seeded(app, 230, 8)
    handle = serve(app)
    try:
        mt = client_for(app)
        rep = publish(app, yes=True, needs=dict.fromkeys(ids, 1), client=mt, out=lambda s: None)
        assert rep["warmups"] == WARMUP_HITS and rep["created"] == 230 + WARMUP_HITS
        with app.Session() as s:
            warm_ids = set(
                s.scalars(select(Hit.hit_id).where(Hit.request_token.like(WARMUP_TOKEN + "%")))
            )
            pages = {
                h: list(s.scalars(select(HitItem).where(HitItem.hit_id == h))) for h in warm_ids
            }
        careful, careless = _http(handle.url, "CAREFUL1"), _http(handle.url, "CARELESS1")
        for http in (careful, careless):
            assert set(_listed(http, handle.url)) == warm_ids
        first = sorted(warm_ids)[0]
        _answer(careful, handle.url, first, pages[first], right=True)
        _answer(careless, handle.url, first, pages[first], right=False)
        rep = collect(app, client=mt, more=False, out=lambda s: None)
        assert rep["warmed_up"] == ["CAREFUL1"] and rep["excluded_workers"] == ["CARELESS1"]
        now = _listed(careful, handle.url)
        assert len(now) == 20 and not set(now) & warm_ids
        assert _listed(careless, handle.url) == []
        with app.Session() as s:
            assert s.get(Worker, "CARELESS1").blocked
            assert sorted(s.scalars(select(Assignment.status))) == ["Approved", "Rejected"]
        # More work later: the open warm-up page still has room, none is added...
        extra = seed(app, WNID, 2, rng_seed=2)["ids"]
        again = publish(app, yes=True, needs={extra[0]: 1}, client=mt, out=lambda s: None)
        assert again["created"] == 1 and "warmups" not in again
        # ...until it is full: then the next publish opens another one.
        for k in range(MAX_ASSIGNMENTS_PER_HIT - 2):
            _answer(_http(handle.url, f"NEW{k}"), handle.url, first, pages[first], right=True)
        collect(app, client=mt, more=False, out=lambda s: None)
        last = publish(app, yes=True, needs={extra[1]: 1}, client=mt, out=lambda s: None)
        assert last["created"] == 2 and last["warmups"] == 1
        fresh = _listed(_http(handle.url, "LATECOMER"), handle.url)
        assert len(fresh) == 1 and fresh[0] not in warm_ids
    finally:
        handle.stop()
