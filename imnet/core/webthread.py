"""Run an aiohttp Application on a background thread with its own event loop (servers, fixtures, tests)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from typing import Any

from aiohttp import web


class BindError(OSError, RuntimeError):
    """The server could not listen (port busy, address not local, no permission).

    An OSError so the CLI answers it in one line; a RuntimeError for callers that caught the
    older "did not start" error.
    """


class WebThread:
    """A started server: `host`, `port`, `url` (no trailing slash), `web_app`; `stop()` ends it."""

    def __init__(
        self,
        web_app: web.Application,
        host: str,
        port: int,
        loop: asyncio.AbstractEventLoop,
        thread: threading.Thread,
        runner: web.AppRunner,
    ) -> None:
        self.web_app, self.host, self.port = web_app, host, port
        self._loop, self._thread, self._runner = loop, thread, runner
        self._stopped = False

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def stop(self, timeout: float = 30.0) -> None:
        if self._stopped:
            return
        self._stopped = True
        try:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(timeout)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout)

    def __enter__(self) -> WebThread:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_web_thread(
    web_app: web.Application,
    host: str = "127.0.0.1",
    port: int | Sequence[int] = 0,
    *,
    name: str = "imnet-web",
    timeout: float = 60.0,
    **site_kw: Any,
) -> WebThread:
    """Serve `web_app` on host:port from a daemon thread; returns once the socket is bound.

    `port` may be a list tried in order (e.g. [remembered, 0]); 0 means any free port. A bind
    failure is raised here as BindError naming host:port, and the app is cleaned up.
    """
    ports = [port] if isinstance(port, int) else list(port) or [0]
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    box: dict[str, Any] = {}

    async def setup() -> None:
        runner = web.AppRunner(web_app, access_log=None, **_runner_kw(site_kw))
        await runner.setup()
        box["runner"] = runner
        last: OSError | None = None
        for p in ports:
            try:
                await web.TCPSite(runner, host, p, **site_kw).start()
                box["port"] = runner.addresses[0][1]
                return
            except OSError as e:
                last = e
        await runner.cleanup()
        assert last is not None
        where = f"{host}:{ports[-1]}" if len(ports) == 1 else f"{host} (ports {ports})"
        reason = last.strerror or str(last)
        raise BindError(last.errno or 0, f"cannot listen on {where}: {reason}")

    def run() -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(setup())
        except BaseException as e:  # handed to the starting thread below
            box["error"] = e
            ready.set()
            loop.close()
            return
        ready.set()
        loop.run_forever()
        loop.close()

    thread = threading.Thread(target=run, name=name, daemon=True)
    thread.start()
    if not ready.wait(timeout):
        raise BindError(0, f"server on {host} did not start within {timeout:.0f} s")
    err = box.get("error")
    if isinstance(err, OSError):
        if not isinstance(err, BindError):
            err = BindError(err.errno or 0, f"cannot listen on {host}: {err.strerror or err}")
        raise err
    if err is not None:
        raise err
    return WebThread(web_app, host, box["port"], loop, thread, box["runner"])


def _runner_kw(site_kw: dict[str, Any]) -> dict[str, Any]:
    # shutdown_timeout belongs to the runner, the rest (backlog, reuse_address) to the site.
    return (
        {"shutdown_timeout": site_kw.pop("shutdown_timeout")}
        if "shutdown_timeout" in site_kw
        else {}
    )
