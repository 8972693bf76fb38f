"""Headless Chromium for tests: --dump-dom, --screenshot, and a tiny DevTools-protocol client."""

from __future__ import annotations

import asyncio
import json
import subprocess
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from _chromium import CHROMIUM, command, devtools_url, launch, stop

__all__ = ["CHROMIUM", "Browser", "dump_dom", "screenshot"]

EXTRA_FLAGS = ["--disable-dev-shm-usage"]


def _run(args: list[str], timeout: float = 90) -> str:
    with tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as profile:
        res = subprocess.run(
            command(profile, *EXTRA_FLAGS, *args),
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    if res.returncode != 0:
        raise RuntimeError(f"chromium failed ({res.returncode}): {res.stderr[-2000:]}")
    return res.stdout


def dump_dom(url: str) -> str:
    return _run(["--dump-dom", url])


def screenshot(url: str, path: Path, size: str = "1280,2000") -> Path:
    _run([f"--screenshot={path}", f"--window-size={size}", "--hide-scrollbars", url])
    return path


class Browser:
    """A Chromium process driven through the DevTools protocol over its websocket."""

    def __init__(self) -> None:
        self._profile = tempfile.TemporaryDirectory(ignore_cleanup_errors=True)
        self.proc = launch(self._profile.name, *EXTRA_FLAGS, "--remote-debugging-address=127.0.0.1")
        self.port = self._wait_port()
        self._id = 0
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._events: asyncio.Queue[dict[str, Any]] | None = None
        self._reader: asyncio.Task[None] | None = None

    def _wait_port(self) -> int:
        try:
            port = urlsplit(devtools_url(self.proc)).port
            if port is None:
                raise RuntimeError("chromium did not report its DevTools port")
        except BaseException:
            self.close()
            raise
        return port

    async def connect(self) -> None:
        self._events = asyncio.Queue()
        self.http = aiohttp.ClientSession()
        async with self.http.get(f"http://127.0.0.1:{self.port}/json/list") as r:
            targets = await r.json()
        page = next(t for t in targets if t["type"] == "page")
        self.ws = await self.http.ws_connect(page["webSocketDebuggerUrl"], max_msg_size=0)
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self._events is not None
        async for msg in self.ws:
            data = json.loads(msg.data)
            if "id" in data and data["id"] in self._pending:
                self._pending.pop(data["id"]).set_result(data)
            elif "method" in data:
                await self._events.put(data)

    async def send(self, method: str, **params: Any) -> dict[str, Any]:
        self._id += 1
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[self._id] = fut
        await self.ws.send_json({"id": self._id, "method": method, "params": params})
        res = await asyncio.wait_for(fut, 30)
        if "error" in res:
            raise RuntimeError(f"{method}: {res['error']}")
        return res.get("result", {})

    async def wait_event(self, method: str, timeout: float = 30) -> dict[str, Any]:
        assert self._events is not None
        events = self._events

        async def loop() -> dict[str, Any]:
            while True:
                ev = await events.get()
                if ev["method"] == method:
                    return ev

        return await asyncio.wait_for(loop(), timeout)

    async def evaluate(self, expression: str) -> Any:
        res = await self.send("Runtime.evaluate", expression=expression, returnByValue=True)
        return res["result"].get("value")

    async def aclose(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
        if getattr(self, "ws", None):
            await self.ws.close()
        if getattr(self, "http", None):
            await self.http.close()
        self.close()

    def close(self) -> None:
        stop(self.proc)
        self._profile.cleanup()
