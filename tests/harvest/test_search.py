"""run_search over query rows: cursors saved per page, resume, 429 waits, bad JSON recorded."""

from __future__ import annotations

from aiohttp import web
from sqlalchemy import select

from db.models import Candidate, Query
from harvest.search import run_search
from harvest.synsets import add_synsets
from imnet.core.app import App
from tests.harvest.loopweb import LoopWeb, json_body, sequence
from tests.harvest.test_sources import wikimedia_api

W = "n01440764"


def _queries(app: App, *rows: tuple[str, str]) -> None:
    with app.Session() as s, s.begin():
        for text, source in rows:
            s.add(Query(wnid=W, text=text, source=source, lang="en", status="pending"))


def _q(app: App) -> dict[str, Query]:
    with app.Session() as s:
        return {q.text: q for q in s.scalars(select(Query))}


def test_paging_resumes_from_saved_cursor(app: App) -> None:
    add_synsets(app, wnids=[W])
    _queries(app, ("tench", "wikimedia"), ("nothing", "wikimedia"), ("broken", "wikimedia"))
    with LoopWeb({"/w/api.php": wikimedia_api}) as w:
        app.settings = app.settings.replace(source_wikimedia_url=w.url("/w/api.php"))
        first = run_search(app, max_pages=1, limit_per_query=100)
        q = _q(app)
        assert q["tench"].status == "pending" and q["tench"].n_results == 2
        assert q["tench"].next_page and q["tench"].lease_owner is None
        assert q["nothing"].status == "done" and q["nothing"].n_results == 0
        assert q["broken"].status == "failed" and q["broken"].error.startswith("bad_json")
        second = run_search(app, max_pages=5, limit_per_query=100)
        third = run_search(app, max_pages=5, limit_per_query=100)
        calls = list(w.log)
    assert first["candidates_added"] == 2 and second["candidates_added"] == 1
    assert third == {"candidates_added": 0}
    q = _q(app)
    assert q["tench"].status == "done" and q["tench"].n_results == 3
    # The second run asked for page 2 only: the cursor came from the database.
    assert sum("gsrsearch=tench" in c for c in calls) == 2
    with app.Session() as s:
        cands = list(s.scalars(select(Candidate).order_by(Candidate.id)))
    assert [c.url.rsplit("/", 1)[1] for c in cands] == ["Tench_1.jpg", "Tench_2.jpg", "Tench_3.jpg"]
    assert {c.query_id for c in cands} == {q["tench"].id} and cands[0].source == "wikimedia"


def test_limit_per_query_stops_early(app: App) -> None:
    add_synsets(app, wnids=[W])
    _queries(app, ("tench", "wikimedia"))
    with LoopWeb({"/w/api.php": wikimedia_api}) as w:
        app.settings = app.settings.replace(source_wikimedia_url=w.url("/w/api.php"))
        run_search(app, max_pages=10, limit_per_query=1)
    q = _q(app)["tench"]
    assert q.status == "done" and q.n_results == 1


def test_429_retry_after_honoured_and_bounded(sqlite_url: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from imnet.core.settings import Settings

    ok = {
        "result_count": 1,
        "page_count": 1,
        "page_size": 20,
        "page": 1,
        "results": [{"id": "x1", "url": "https://example.org/a.jpg", "title": "a"}],
    }
    throttled = json_body({"detail": "throttled"}, 429, {"Retry-After": "1"})
    long_wait = json_body({"detail": "throttled"}, 429, {"Retry-After": "3600"})

    async def route(request: web.Request) -> web.StreamResponse:
        return await (h_short if request.query["q"] == "short" else h_long)(request)

    h_short = sequence(throttled, json_body(ok))
    h_long = sequence(long_wait)
    app = App(Settings(data_dir=str(tmp_path), database_url=sqlite_url, search_max_wait=5))
    add_synsets(app, wnids=[W])
    _queries(app, ("short", "openverse"), ("long", "openverse"))
    with LoopWeb({"/v1/images/": route}) as w:
        app.settings = app.settings.replace(source_openverse_url=w.url("/v1/images/"))
        stats = run_search(app, max_pages=1)
        n_long = sum("q=long" in c for c in w.log)
    q = _q(app)
    assert q["short"].status == "done" and q["short"].n_results == 1
    # Asked to wait an hour, beyond search_max_wait: the query is kept for a later run, not lost.
    assert q["long"].status == "pending" and "rate_limited" in q["long"].error and n_long == 1
    assert stats["queries_postponed"] == 1 and stats["error_rate_limited"] == 1
    app.close()


def test_nul_and_surrogates_from_a_source_are_stored_without_them(app: App) -> None:
    # A search API's JSON can carry "\u0000" and lone surrogates, which PostgreSQL refuses: the
    # run must not crash on them, text keeps the rest, and a URL holding one is left out.
    page = {
        "result_count": 3,
        "page_count": 2,
        "page_size": 20,
        "page": 1,
        "results": [
            {
                "id": "x\u00001",
                "url": "https://example.org/a.jpg",
                "title": "tench\u0000 \ud800fin",
            },
            {"id": "x2", "url": "https://example.org/b\u0000.jpg", "title": "bad url"},
            {"id": "x3", "url": "https://example.org/c.jpg", "title": "ok", "creator": "c\u0000"},
        ],
    }

    async def route(request: web.Request) -> web.StreamResponse:
        if request.query["q"] == "apierror":
            return await json_body({"detail": "no\u0000 such \udfffquery"}, 400)(request)
        return web.json_response(page)

    add_synsets(app, wnids=[W])
    _queries(app, ("tench", "openverse"), ("apierror", "openverse"))
    with LoopWeb({"/v1/images/": route}) as w:
        app.settings = app.settings.replace(source_openverse_url=w.url("/v1/images/"))
        run_search(app, max_pages=1)
    q = _q(app)
    assert q["tench"].n_results == 3 and q["tench"].status == "pending"
    assert q["apierror"].status == "failed" and "\x00" not in q["apierror"].error
    with app.Session() as s:
        got = {c.url: c for c in s.scalars(select(Candidate))}
    assert set(got) == {"https://example.org/a.jpg", "https://example.org/c.jpg"}
    a = got["https://example.org/a.jpg"]
    assert a.title == "tench ?fin"
    assert a.source_ref == "x1" and "\x00" not in str(got["https://example.org/c.jpg"].meta)
