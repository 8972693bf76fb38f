"""The crawler against a loopback web of good images and hostile responses, on both databases."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from aiohttp import web
from sqlalchemy import select

from db.models import Candidate, Image
from harvest.crawl import crawl
from harvest.synsets import add_synsets
from imnet.core.app import App
from tests.dbrows import add_pending
from tests.harvest.loopweb import LoopWeb, body, bomb_png, encode, jpeg, sequence

W1, W2 = "n01440764", "n01443537"


async def _endless(request: web.Request) -> web.StreamResponse:
    resp = web.StreamResponse(headers={"Content-Type": "image/jpeg"})
    await resp.prepare(request)
    chunk = b"\xff\xd8\xff\xe0" + b"\0" * 65532
    try:
        for _ in range(2000):  # bounded: 128 MB at most, the client gives up long before
            await resp.write(chunk)
    except ConnectionError:
        pass  # the crawler hung up at its byte cap, as it should
    return resp


async def _slow(request: web.Request) -> web.StreamResponse:
    await asyncio.sleep(5)
    return web.Response(body=b"late")


def _redirect(to: str):  # type: ignore[no-untyped-def]
    async def h(_: web.Request) -> web.StreamResponse:
        raise web.HTTPFound(to)

    return h


def hostile_routes(good: bytes) -> dict:
    trunc = jpeg(400, 300, seed=3)
    return {
        "/robots.txt": body(b"User-agent: *\nDisallow: /private/\n", "text/plain"),
        "/good.jpg": body(good),
        "/copy.jpg": body(good),
        "/good.png": body(encode("PNG", 120, 90), "image/png"),
        "/good.webp": body(encode("WEBP", 120, 90), "image/webp"),
        "/missing.jpg": body(b"no", "text/plain", status=404),
        "/flaky.jpg": sequence(body(b"oops", "text/plain", status=500), body(jpeg(200, 150, 7))),
        "/slow.jpg": _slow,
        "/truncated.jpg": body(trunc[: len(trunc) // 2]),
        "/html.jpg": body(b"<!doctype html><html><body>hi</body></html>" * 10),
        "/tiny.gif": body(encode("GIF", 1, 1), "image/gif"),
        "/bomb.png": body(bomb_png(), "image/png"),
        "/endless.jpg": _endless,
        "/loop-a": _redirect("/loop-b"),
        "/loop-b": _redirect("/loop-a"),
        "/to-private": _redirect("http://10.11.12.13/secret.jpg"),
        "/to-good": _redirect("/elsewhere/other.png"),
        "/elsewhere/other.png": body(encode("PNG", 100, 100), "image/png"),
        "/private/x.jpg": body(jpeg(200, 150, 9)),
        "/noai.jpg": body(jpeg(200, 150, 11), headers={"X-Robots-Tag": "noai, noimageai"}),
    }


EXPECTED = {
    "/good.jpg": ("fetched", None),
    "/good.png": ("fetched", None),
    "/good.webp": ("fetched", None),
    "/copy.jpg": ("duplicate", "same_content"),
    "/missing.jpg": ("failed", "http_404"),
    "/flaky.jpg": ("fetched", None),
    "/slow.jpg": ("failed", "timeout"),
    "/truncated.jpg": ("rejected", "decode_error"),
    "/html.jpg": ("rejected", "not_image"),
    "/tiny.gif": ("rejected", "too_small"),
    "/bomb.png": ("rejected", "bomb"),
    "/endless.jpg": ("rejected", "too_large"),
    "/loop-a": ("failed", "redirect_loop"),
    "/to-private": ("rejected", "private_address"),
    "/to-good": ("fetched", None),
    "/private/x.jpg": ("rejected", "robots"),
    "/noai.jpg": ("rejected", "noai"),
}


@pytest.mark.slow
def test_hostile_web_every_candidate_final(app: App, tmp_path: Path) -> None:
    # Loopback is the only network here, so allow exactly it and refuse all other private ranges.
    app.settings = app.settings.replace(
        allow_private_hosts=False,
        crawl_allowed_networks="127.0.0.1/32",
        crawl_read_timeout=0.5,
        crawl_retries=1,
        crawl_max_bytes=2_000_000,
        crawl_concurrency=8,
    )
    add_synsets(app, wnids=[W1, W2])
    good = jpeg(320, 240, seed=1)
    with LoopWeb(hostile_routes(good)) as webx:
        rows = [(W1, webx.url(p)) for p in EXPECTED]
        rows.append((W2, webx.url("/copy.jpg")))  # same content, other wnid: stays fetched
        rows.append((W1, f"http://127.0.0.2:{webx.port}/good.jpg"))  # loopback, not allowed
        add_pending(app, rows)
        summary = crawl(app, processes=1, stats_json=str(tmp_path / "s.json"), progress=False)
        robots_fetches = webx.hits["/robots.txt"]
    with app.Session() as s:
        cands = {(c.wnid, c.url): c for c in s.scalars(select(Candidate))}
        images = {i.sha256: i for i in s.scalars(select(Image))}
    for path, (status, code) in EXPECTED.items():
        c = cands[(W1, webx.url(path))]
        assert c.status == status, (path, c.status, c.error)
        if code is None:
            assert c.error is None, (path, c.error)
        else:
            assert c.error and c.error.split(":")[0] == code, (path, c.error)
    good_c = cands[(W1, webx.url("/good.jpg"))]
    assert cands[(W1, webx.url("/copy.jpg"))].error == f"same_content: {good_c.id}"
    assert cands[(W2, webx.url("/copy.jpg"))].status == "fetched"
    bad_lo = cands[(W1, f"http://127.0.0.2:{webx.port}/good.jpg")]
    assert (bad_lo.status, bad_lo.error.split(":")[0]) == ("rejected", "private_address")
    img = images[good_c.image_sha256]
    assert (img.width, img.height, img.format, img.bytes) == (320, 240, "jpeg", len(good))
    assert app.blobs.get(img.sha256) == good  # the original bytes, keyed by sha256
    assert cands[(W1, webx.url("/good.webp"))].image_sha256 in images
    assert robots_fetches == 1  # cached per host
    assert summary["candidates"] == len(rows)
    assert summary["status"]["fetched"] == 6
    assert summary["reasons"]["timeout"] == 1
    assert json.loads((tmp_path / "s.json").read_text()) == summary


def test_crawl_twice_fetches_nothing_new(app: App) -> None:
    add_synsets(app, wnids=[W1])
    with LoopWeb({f"/{i}.jpg": body(jpeg(160, 120, seed=i)) for i in range(6)}) as webx:
        add_pending(app, [(W1, webx.url(f"/{i}.jpg")) for i in range(6)])
        first = crawl(app, progress=False, limit=4)
        second = crawl(app, progress=False)
        third = crawl(app, progress=False)
        hits = dict(webx.hits)
    assert (first["candidates"], second["candidates"], third["candidates"]) == (4, 2, 0)
    assert all(hits[f"/{i}.jpg"] == 1 for i in range(6))


def test_failed_recording_stops_the_crawl_and_frees_its_leases(app: App, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """When results cannot be written, the crawl fails at once instead of holding its leases."""
    import pytest

    from harvest.worker import CrawlWorker

    add_synsets(app, wnids=[W1])
    calls = []

    def broken(self, results):  # type: ignore[no-untyped-def]
        calls.append(len(results))
        raise RuntimeError("database went away")

    monkeypatch.setattr(CrawlWorker, "_record", broken)
    img = body(jpeg(160, 120, seed=1))
    with LoopWeb({f"/{i}.jpg": img for i in range(1000)}) as webx:
        add_pending(app, [(W1, webx.url(f"/{i}.jpg")) for i in range(1000)])
        with pytest.raises(RuntimeError, match="database went away"):
            crawl(app, progress=False)
        fetched = sum(webx.hits.values())
    assert calls  # the flusher did try to record
    assert fetched < 1000  # stopped at the first failed batch, not after fetching everything
    with app.Session() as s:
        rows = s.execute(select(Candidate.status, Candidate.lease_owner)).all()
    # Nothing stays leased to a crawler that is gone: all claimable again, nothing recorded.
    assert {r.status for r in rows} == {"pending"}
    assert all(r.lease_owner is None for r in rows)


def _final_counts(url: str) -> dict[str, int]:
    from sqlalchemy import func

    from db.session import make_engine

    eng = make_engine(url)
    try:
        with eng.connect() as conn:
            return dict(
                conn.execute(
                    select(Candidate.status, func.count()).group_by(Candidate.status)
                ).all()
            )
    finally:
        eng.dispose()


@pytest.mark.slow
def test_sigkill_mid_crawl_then_resume(tmp_path: Path, sqlite_url: str) -> None:
    import os
    import signal
    import subprocess
    import sys
    import time

    from imnet.core.settings import Settings
    from tests.harvest.loopweb import unique

    data_dir = tmp_path / "data"
    app = App(Settings(data_dir=str(data_dir), database_url=sqlite_url, allow_private_hosts=True))
    add_synsets(app, wnids=[W1])
    base = jpeg(300, 200, seed=2)
    n = 240
    routes = {f"/img/{i}.jpg": body(unique(base, i)) for i in range(n)}
    routes["/bad.jpg"] = body(b"<html>nope</html>" * 4)
    env = dict(
        os.environ,
        IMNET_ALLOW_PRIVATE_HOSTS="1",
        IMNET_CRAWL_CONCURRENCY="8",
        IMNET_CRAWL_LEASE_SECONDS="2",
        IMNET_CRAWL_BATCH="16",
    )
    cmd = [
        sys.executable,
        "-m",
        "imnet",
        "--data-dir",
        str(data_dir),
        "--database-url",
        sqlite_url,
        "harvest",
        "crawl",
        "--no-progress",
    ]
    with LoopWeb(routes, latency=0.05) as webx:
        add_pending(
            app, [(W1, webx.url(f"/img/{i}.jpg")) for i in range(n)] + [(W1, webx.url("/bad.jpg"))]
        )
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.time() + 90
        # Wait (bounded) until part of the work is recorded, then kill without warning.
        while time.time() < deadline and proc.poll() is None:
            c = _final_counts(sqlite_url)
            if sum(v for k, v in c.items() if k not in {"pending", "fetching"}) >= 40:
                break
            time.sleep(0.1)
        assert proc.poll() is None, "crawl finished before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        with app.Session() as s:
            done_before = {
                c.url
                for c in s.scalars(
                    select(Candidate).where(
                        Candidate.status.in_(["fetched", "failed", "rejected", "duplicate"])
                    )
                )
            }
            left = s.query(Candidate).filter(Candidate.status.in_(["pending", "fetching"])).count()
        assert 40 <= len(done_before) and left > 0
        hits_before = dict(webx.hits)
        out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180)
        assert out.returncode == 0, out.stderr[-2000:]
        hits_after = dict(webx.hits)
    with app.Session() as s:
        cands = list(s.scalars(select(Candidate)))
        images = {i.sha256 for i in s.scalars(select(Image))}
    assert {c.status for c in cands} <= {"fetched", "rejected"}
    assert sum(c.status == "fetched" for c in cands) == n
    bad = next(c for c in cands if c.url.endswith("/bad.jpg"))
    assert bad.error.startswith("not_image")
    for url in done_before:  # finished work is never fetched again
        path = url.split(str(webx.port), 1)[1]
        assert hits_after[path] == hits_before[path], url
    assert set(app.blobs.iter()) == images  # no blob without its row, no row without its blob
    assert all(c.image_sha256 in images for c in cands if c.status == "fetched")
    app.close()


def test_two_processes_share_one_postgres_queue(pg_url: str, tmp_path: Path) -> None:
    from imnet.core.settings import Settings
    from tests.harvest.loopweb import unique

    settings = Settings(
        data_dir=str(tmp_path / "data"),
        database_url=pg_url,
        allow_private_hosts=True,
        crawl_concurrency=8,
        crawl_batch=8,
    )
    app = App(settings)
    add_synsets(app, wnids=[W1, W2])
    base = jpeg(256, 192, seed=4)
    n = 120
    with LoopWeb({f"/p/{i}.jpg": body(unique(base, i)) for i in range(n)}, latency=0.05) as webx:
        add_pending(app, [(W1 if i % 2 else W2, webx.url(f"/p/{i}.jpg")) for i in range(n)])
        summary = crawl(app, processes=2, progress=False)
        hits = dict(webx.hits)
    assert summary["status"] == {"fetched": n}
    assert len(summary["per_process"]) == 2 and min(summary["per_process"]) > 0
    assert all(hits[f"/p/{i}.jpg"] == 1 for i in range(n))  # nothing fetched twice
    with app.Session() as s:
        assert {c.attempts for c in s.scalars(select(Candidate))} == {1}
    app.close()


@pytest.mark.slow
def test_decode_in_a_process_pool(app: App) -> None:
    """crawl_decode_processes > 0 decodes in separate processes; outcomes are the same."""
    app.settings = app.settings.replace(crawl_decode_processes=1)
    add_synsets(app, wnids=[W1])
    routes = {
        "/a.jpg": body(jpeg(200, 150, seed=1)),
        "/b.png": body(encode("PNG", 90, 90)),
        "/bomb.png": body(bomb_png(), "image/png"),
        "/t.jpg": body(jpeg(200, 150, seed=2)[:900]),
    }
    with LoopWeb(routes) as webx:
        add_pending(app, [(W1, webx.url(p)) for p in routes])
        summary = crawl(app, progress=False)
    assert summary["status"] == {"fetched": 2, "rejected": 2}
    assert summary["reasons"] == {"bomb": 1, "decode_error": 1}


def test_crawl_into_s3_blob_store(s3_server, sqlite_url: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """The same crawl with blobs in a real S3 server (SeaweedFS) through boto3."""
    from imnet.core.settings import Settings

    bucket = s3_server.create_bucket()
    app = App(
        Settings(
            data_dir=str(tmp_path),
            database_url=sqlite_url,
            allow_private_hosts=True,
            blob_url=f"s3://{bucket}/blobs",
            s3_endpoint_url=s3_server.endpoint,
            s3_access_key=s3_server.access_key,
            s3_secret_key=s3_server.secret_key,
        )
    )
    add_synsets(app, wnids=[W1])
    imgs = {f"/{i}.jpg": jpeg(200, 150, seed=20 + i) for i in range(3)}
    with LoopWeb({p: body(d) for p, d in imgs.items()}) as webx:
        add_pending(app, [(W1, webx.url(p)) for p in imgs])
        summary = crawl(app, progress=False)
    assert summary["status"] == {"fetched": 3}
    with app.Session() as s:
        shas = {i.sha256 for i in s.scalars(select(Image))}
    assert set(app.blobs.iter()) == shas and len(shas) == 3
    assert sorted(app.blobs.get(h) for h in shas) == sorted(imgs.values())
    app.close()


def test_cancelled_crawl_stops_its_tasks_and_leaves_no_stray_error(
    app: App, caplog: pytest.LogCaptureFixture
) -> None:
    """Ctrl-C mid-crawl (the loop cancels the crawl, then whatever is left, as asyncio.run
    does): every task ends, and asyncio logs nothing at exit. Before, the feeder's sentinels
    waited forever on a full queue whose fetchers were cancelled (the demo hung on Ctrl-C), and
    the fetchers' gather died unread ("exception was never retrieved", a traceback on stderr)."""
    import gc
    import logging

    from harvest.worker import CrawlWorker

    add_synsets(app, wnids=[W1])
    app.settings.crawl_batch, app.settings.crawl_concurrency = 4, 2

    async def main() -> list[asyncio.Task]:
        task = asyncio.create_task(CrawlWorker(app).run())
        await asyncio.sleep(1.0)  # two fetchers on 5-second responses, the queue full
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        rest = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for t in rest:
            t.cancel()
        _, pending = await asyncio.wait(rest, timeout=10) if rest else (set(), set())
        return list(pending)

    caplog.set_level(logging.ERROR, logger="asyncio")
    with LoopWeb({f"/{i}.jpg": _slow for i in range(40)}) as webx:
        add_pending(app, [(W1, webx.url(f"/{i}.jpg")) for i in range(40)])
        pending = asyncio.run(main())
    gc.collect()
    assert not pending, pending
    assert not [r for r in caplog.records if r.name == "asyncio"], caplog.text
