"""Each search adapter against a loopback server replaying its API's documented wire format."""

from __future__ import annotations

import asyncio
import json

import pytest
from aiohttp import web

from harvest.sources import Page, Source, SourceError, get_source, source_names
from imnet.core.settings import Settings
from tests.harvest.loopweb import LoopWeb, json_body, sequence


def wm_page(titles: list[str], offset: int | None) -> dict:
    """A formatversion=2 `generator=search&prop=imageinfo` answer, as Commons sends it."""
    pages = [
        {
            "pageid": 1000 + i,
            "ns": 6,
            "title": f"File:{t}",
            "index": i + 1,
            "imagerepository": "local",
            "imageinfo": [
                {
                    "size": 123456,
                    "width": 1024,
                    "height": 768,
                    "url": f"https://upload.wikimedia.org/wikipedia/commons/a/ab/{t}",
                    "descriptionurl": f"https://commons.wikimedia.org/wiki/File:{t}",
                    "descriptionshorturl": f"https://commons.wikimedia.org/w/index.php?curid={1000 + i}",
                    "mime": "image/svg+xml" if t.endswith(".svg") else "image/jpeg",
                    "extmetadata": {
                        "LicenseShortName": {
                            "value": "CC BY-SA 4.0",
                            "source": "commons-desc-page",
                        },
                        "Artist": {
                            "value": "<a href='//x'>Someone</a>",
                            "source": "commons-desc-page",
                        },
                    },
                }
            ],
        }
        for i, t in enumerate(titles)
    ]
    out: dict = {"batchcomplete": True, "query": {"pages": list(reversed(pages))}}
    if offset is not None:
        out["continue"] = {"gsroffset": offset, "continue": "gsroffset||"}
    return out


async def wikimedia_api(request: web.Request) -> web.StreamResponse:
    q = request.query
    assert q["action"] == "query" and q["generator"] == "search" and q["gsrnamespace"] == "6"
    if q["gsrsearch"] == "nothing":
        return web.json_response({"batchcomplete": True})
    if q["gsrsearch"] == "broken":
        return web.Response(
            text='{"batchcomplete": true, "query": {"pa', content_type="application/json"
        )
    if q["gsrsearch"] == "apierror":
        return web.json_response(
            {"error": {"code": "srsearch-error", "info": "bad query"}, "servedby": "mw-api-ext"}
        )
    if "gsroffset" not in q:
        return web.json_response(wm_page(["Tench_1.jpg", "Tench_2.jpg", "Drawing.svg"], 3))
    assert q["gsroffset"] == "3" and q["continue"] == "gsroffset||"
    return web.json_response(wm_page(["Tench_3.jpg"], None))


def ov_result(i: int) -> dict:
    return {
        "id": f"4bc4a0e4-{i:04d}",
        "title": f"tench {i}",
        "indexed_on": "2023-01-01T00:00:00Z",
        "foreign_landing_url": f"https://www.flickr.com/photos/x/{i}/",
        "url": f"https://live.staticflickr.com/65535/{i}_abc_b.jpg",
        "creator": "someone",
        "creator_url": None,
        "license": "by",
        "license_version": "2.0",
        "license_url": "https://creativecommons.org/licenses/by/2.0/",
        "provider": "flickr",
        "source": "flickr",
        "category": "photograph",
        "filesize": None,
        "filetype": "jpg",
        "tags": [],
        "attribution": "...",
        "fields_matched": ["title"],
        "mature": False,
        "height": 768,
        "width": 1024,
        "thumbnail": "...",
        "detail_url": "...",
        "related_url": "...",
    }


async def openverse_api(request: web.Request) -> web.StreamResponse:
    q = request.query
    if q["q"] == "nothing":
        return web.json_response(
            {
                "result_count": 0,
                "page_count": 0,
                "page_size": 20,
                "page": 1,
                "results": [],
                "warnings": [],
            }
        )
    if q["q"] == "broken":
        return web.Response(text="<html>502 Bad Gateway</html>", content_type="application/json")
    page = int(q.get("page", "1"))
    assert int(q["page_size"]) <= 20
    return web.json_response(
        {
            "result_count": 3,
            "page_count": 2,
            "page_size": 2,
            "page": page,
            "results": [ov_result(i) for i in ([1, 2] if page == 1 else [3])],
            "warnings": [],
        }
    )


async def flickr_api(request: web.Request) -> web.StreamResponse:
    q = request.query
    assert q["method"] == "flickr.photos.search" and q["nojsoncallback"] == "1"
    if q["api_key"] != "k3y":
        return web.json_response(
            {"stat": "fail", "code": 100, "message": "Invalid API Key (Key has invalid format)"}
        )
    if q["text"] == "nothing":
        return web.json_response(
            {
                "photos": {"page": 1, "pages": 0, "perpage": 100, "total": 0, "photo": []},
                "stat": "ok",
            }
        )
    page = int(q["page"])
    photos = [
        {
            "id": str(50000 + page),
            "owner": "12345@N00",
            "secret": "abcdef",
            "server": "65535",
            "farm": 66,
            "title": f"tench {page}",
            "ispublic": 1,
            "isfriend": 0,
            "isfamily": 0,
            "license": "4",
            "ownername": "A Fisher",
        }
    ]
    if page == 1:
        photos[0].update(
            {
                "url_z": "https://live.staticflickr.com/65535/50001_abcdef_z.jpg",
                "height_z": 480,
                "width_z": 640,
            }
        )
    return web.json_response(
        {
            "photos": {"page": page, "pages": 2, "perpage": 1, "total": 2, "photo": photos},
            "stat": "ok",
        }
    )


@pytest.fixture(scope="module")
def api():  # type: ignore[no-untyped-def]
    routes = {
        "/w/api.php": wikimedia_api,
        "/v1/images/": openverse_api,
        "/services/rest/": flickr_api,
    }
    with LoopWeb(routes) as w:
        yield w


def search(src: Source, text: str, cursor: str | None, size: int) -> Page:
    """Sources are async (one aiohttp session per run); the tests call them one at a time."""
    return asyncio.run(src.search(text, cursor, size))


def _settings(api: LoopWeb, **kw) -> Settings:  # type: ignore[no-untyped-def]
    return Settings(
        source_wikimedia_url=api.url("/w/api.php"),
        source_openverse_url=api.url("/v1/images/"),
        source_flickr_url=api.url("/services/rest/"),
        flickr_api_key="k3y",
        search_timeout=5.0,
        **kw,
    )


def test_registry_names() -> None:
    assert source_names() == ["flickr", "openverse", "urllist", "wikimedia"]
    with pytest.raises(ValueError, match="unknown source"):
        get_source("bing", Settings())


def test_wikimedia_paging_empty_and_errors(api: LoopWeb) -> None:
    src = get_source("wikimedia", _settings(api))
    p1 = search(src, "tench", None, 50)
    assert [h.url.rsplit("/", 1)[1] for h in p1.hits] == ["Tench_1.jpg", "Tench_2.jpg"]  # no svg
    assert p1.hits[0].license == "CC BY-SA 4.0"
    assert p1.hits[0].source_ref == "https://commons.wikimedia.org/wiki/File:Tench_1.jpg"
    assert json.loads(p1.next_page) == {"gsroffset": 3, "continue": "gsroffset||"}
    p2 = search(src, "tench", p1.next_page, 50)
    assert [h.title for h in p2.hits] == ["File:Tench_3.jpg"] and p2.next_page is None
    empty = search(src, "nothing", None, 50)
    assert empty.hits == [] and empty.next_page is None
    with pytest.raises(SourceError) as e:
        search(src, "broken", None, 50)
    assert e.value.code == "bad_json"
    with pytest.raises(SourceError) as e:
        search(src, "apierror", None, 50)
    assert e.value.code == "api_error" and "srsearch-error" in str(e.value)


def test_openverse_paging_empty_and_errors(api: LoopWeb) -> None:
    src = get_source("openverse", _settings(api))
    p1 = search(src, "tench", None, 100)
    assert [h.meta["id"] for h in p1.hits] == ["4bc4a0e4-0001", "4bc4a0e4-0002"]
    assert p1.hits[0].license == "cc-by 2.0" and p1.next_page == "2"
    p2 = search(src, "tench", p1.next_page, 100)
    assert len(p2.hits) == 1 and p2.next_page is None
    assert search(src, "nothing", None, 20).hits == []
    with pytest.raises(SourceError) as e:
        search(src, "broken", None, 20)
    assert e.value.code == "bad_json"


def test_flickr_paging_key_and_errors(api: LoopWeb) -> None:
    src = get_source("flickr", _settings(api))
    p1 = search(src, "tench", None, 1)
    assert p1.hits[0].url == "https://live.staticflickr.com/65535/50001_abcdef_z.jpg"
    assert p1.hits[0].license == "cc-by 2.0" and p1.next_page == "2"
    p2 = search(src, "tench", p1.next_page, 1)
    # Without url_* extras the URL is built from server/id/secret, as Flickr documents.
    assert p2.hits[0].url == "https://live.staticflickr.com/65535/50002_abcdef_z.jpg"
    assert p2.next_page is None
    assert search(src, "nothing", None, 10).hits == []
    bad = get_source("flickr", _settings(api).replace(flickr_api_key="wrong"))
    with pytest.raises(SourceError) as e:
        search(bad, "tench", None, 10)
    assert e.value.code == "api_error" and "Invalid API Key" in str(e.value)
    nokey = get_source("flickr", Settings(flickr_api_key=""))
    with pytest.raises(SourceError) as e:
        search(nokey, "tench", None, 10)
    assert e.value.code == "no_api_key"


def test_rate_limit_retry_after_is_parsed() -> None:
    from harvest.sources.base import parse_retry_after

    assert parse_retry_after("3") == 3.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0
    assert parse_retry_after("soon") is None and parse_retry_after(None) is None


def test_429_then_success(api: LoopWeb) -> None:
    hits = {"n": 0}
    ok = {
        "result_count": 1,
        "page_count": 1,
        "page_size": 20,
        "page": 1,
        "results": [ov_result(9)],
        "warnings": [],
    }
    with LoopWeb(
        {
            "/v1/images/": sequence(
                json_body({"detail": "Request was throttled."}, 429, {"Retry-After": "1"}),
                json_body(ok),
            )
        }
    ) as w:
        src = get_source("openverse", Settings(source_openverse_url=w.url("/v1/images/")))
        with pytest.raises(SourceError) as e:
            search(src, "tench", None, 20)
        assert e.value.code == "rate_limited" and e.value.retry_after == 1.0 and e.value.transient
        hits["n"] = len(search(src, "tench", None, 20).hits)
    assert hits["n"] == 1
