"""The self-hosted MTurk-compatible server: requester API at POST /, worker site under /worker."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

log = logging.getLogger(__name__)
STORE_KEY: web.AppKey[Any] = web.AppKey("mturk_store", object)
SITE_KEY: web.AppKey[Any] = web.AppKey("mturk_site", object)


def server_keys(settings: Any) -> dict[str, str]:
    """Access key -> secret the server accepts: the configured pair plus mturk_server_keys."""
    keys = {settings.mturk_access_key: settings.mturk_secret_key}
    for pair in filter(None, (x.strip() for x in settings.mturk_server_keys.split(","))):
        k, sep, v = pair.partition(":")
        if sep and k and v:
            keys[k] = v
    return keys


def _server_engine(url: str):  # type: ignore[no-untyped-def]
    """Own engine: on SQLite every transaction starts with BEGIN IMMEDIATE, so the server's
    read-then-write transactions never fail on a stale WAL snapshot when another process writes."""
    from sqlalchemy import event

    from db.session import make_engine

    engine = make_engine(url)
    if engine.dialect.name == "sqlite":

        @event.listens_for(engine, "checkout")
        def _immediate(dbapi_conn, record, proxy):  # type: ignore[no-untyped-def]
            record.info["sqlite_begin"] = "BEGIN IMMEDIATE"

    return engine


def make_server_app(app: Any, *, mount_review: bool = True) -> web.Application:
    """The aiohttp application for `app`'s database (schema upgraded first)."""
    from mturk.server.api import make_api_handler
    from mturk.server.site import WorkerSite
    from mturk.server.store import Store
    from mturk.server.work import WorkerOps

    settings = app.settings
    app.engine  # noqa: B018 - upgrades the schema before the server touches it
    engine = _server_engine(settings.resolved_database_url())
    # SQLite serialises writers anyway; one DB thread keeps it free of lock contention.
    n_threads = 1 if engine.dialect.name == "sqlite" else 8
    executor = ThreadPoolExecutor(max_workers=n_threads, thread_name_prefix="mturk-db")
    store = Store(engine, settings.mturk_access_key)
    secret = hashlib.sha256(("worker-site:" + settings.mturk_secret_key).encode()).digest()
    try:
        blobs = app.blobs
    except Exception as e:  # the API works without images; say why they are missing
        log.warning("blob store unavailable, /images disabled: %s", e)
        blobs = None
    site = WorkerSite(WorkerOps(store), secret, executor, blobs)
    web_app = web.Application(client_max_size=2_000_000)
    web_app.router.add_post("/", make_api_handler(store, server_keys(settings), executor))
    site.routes(web_app)
    web_app[STORE_KEY] = store
    web_app[SITE_KEY] = site

    async def _close(_app: web.Application) -> None:
        executor.shutdown(wait=True)
        engine.dispose()

    web_app.on_cleanup.append(_close)
    if mount_review:
        _mount_review(web_app, app)
    return web_app


def _mount_review(web_app: web.Application, app: Any) -> None:
    """Mount the consensus stage's review page under /review when that module is there."""
    try:
        from curation.consensus.review import make_review_app  # type: ignore[import-not-found]
    except ImportError as e:
        log.info("review page not mounted (%s)", e)
        return
    try:
        sub = make_review_app(app)
        if isinstance(sub, web.Application):
            web_app.add_subapp("/review", sub)
    except Exception as e:  # the review page is optional for the MTurk server
        log.warning("review page not mounted: %s", e)


@dataclass
class ServerHandle:
    """A server running on its own thread and event loop; `url` ends without a slash."""

    url: str
    host: str
    port: int
    _loop: asyncio.AbstractEventLoop
    _thread: threading.Thread
    _runner: web.AppRunner
    web_app: web.Application
    _stopped: bool = field(default=False)

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        fut = asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop)
        fut.result(timeout=30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=30)

    def __enter__(self) -> ServerHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_in_thread(app: Any, host: str = "127.0.0.1", port: int = 0, **kw: Any) -> ServerHandle:
    """Start the server in a background thread; returns when it listens (port 0 = any free)."""
    web_app = make_server_app(app, **kw)
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    box: dict[str, Any] = {}

    def run() -> None:
        asyncio.set_event_loop(loop)
        try:
            runner = web.AppRunner(web_app, access_log=None)
            loop.run_until_complete(runner.setup())
            site = web.TCPSite(runner, host, port, backlog=1024)
            loop.run_until_complete(site.start())
            box["runner"] = runner
            box["port"] = runner.addresses[0][1]
        except BaseException as e:  # reported to the caller below
            box["error"] = e
            ready.set()
            return
        ready.set()
        loop.run_forever()
        loop.close()

    thread = threading.Thread(target=run, name="mturk-server", daemon=True)
    thread.start()
    if not ready.wait(timeout=60) or "error" in box:
        raise RuntimeError(f"mturk server did not start: {box.get('error', 'timeout')}")
    port = box["port"]
    return ServerHandle(
        url=f"http://{host}:{port}",
        host=host,
        port=port,
        _loop=loop,
        _thread=thread,
        _runner=box["runner"],
        web_app=web_app,
    )


def serve_forever(app: Any, host: str, port: int) -> None:
    """`imnet mturk serve`: run until interrupted."""
    web.run_app(make_server_app(app), host=host, port=port, access_log=None, print=print)
