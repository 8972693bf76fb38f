"""The self-hosted MTurk-compatible server: requester API at POST /, worker site under /worker."""

from __future__ import annotations

import hashlib
import logging
import signal
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from aiohttp import web

from imnet.core.webthread import WebThread, start_web_thread

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from imnet.core.app import App
    from imnet.core.settings import Settings

log = logging.getLogger(__name__)
STORE_KEY: web.AppKey[Any] = web.AppKey("mturk_store", object)
SITE_KEY: web.AppKey[Any] = web.AppKey("mturk_site", object)


def server_keys(settings: Settings) -> dict[str, str]:
    """Access key -> secret the server accepts: the configured pair plus mturk_server_keys."""
    keys = {settings.mturk_access_key: settings.mturk_secret_key}
    for pair in filter(None, (x.strip() for x in settings.mturk_server_keys.split(","))):
        k, sep, v = pair.partition(":")
        if sep and k and v:
            keys[k] = v
    return keys


def _server_engine(url: str) -> Engine:
    """Own engine: on SQLite every transaction starts with BEGIN IMMEDIATE, so the server's
    read-then-write transactions never fail on a stale WAL snapshot when another process writes."""
    from db.session import make_engine
    from db.tx import writes_immediately

    return writes_immediately(make_engine(url))


def make_server_app(app: App, *, mount_review: bool = True) -> web.Application:
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
        from mturk.server.review import mount_review as mount

        mount(web_app, app)
    return web_app


ServerHandle = WebThread  # the name callers and tests know


def start_in_thread(app: App, host: str = "127.0.0.1", port: int = 0, **kw: Any) -> WebThread:
    """Start the server in a background thread; returns when it listens (port 0 = any free).

    A busy port raises BindError (an OSError) before anything is printed or announced."""
    return start_web_thread(
        make_server_app(app, **kw), host, port, name="mturk-server", backlog=1024
    )


def urls(handle: WebThread) -> dict[str, str]:
    """What `serve` announces: the requester API, the worker site and, when mounted, the review page."""
    found = {"requester API": handle.url + "/", "worker site": handle.url + "/worker/"}
    if any(
        getattr(r, "canonical", "").startswith("/review") for r in handle.web_app.router.resources()
    ):
        found["review"] = handle.url + "/review/"
    return found


def _say(line: str) -> None:
    print(line, flush=True)  # `imnet mturk serve &` into a pipe must show the URLs at once


def serve_forever(app: App, host: str, port: int, out: Callable[[str], None] = _say) -> None:
    """`imnet mturk serve`: bind first (a busy port is one OSError), then print the URLs and run
    until SIGINT/SIGTERM."""
    handle = start_in_thread(app, host, port)
    done = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda *_: done.set())
    try:
        out("  ".join(f"{k}: {v}" for k, v in urls(handle).items()))
        # Serve until SIGTERM or Ctrl-C: a timed wait keeps the main thread interruptible.
        while not done.wait(3600):
            pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        handle.stop()
