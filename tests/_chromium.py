"""Headless Chromium for tests: one-shot --dump-dom / --screenshot, and the one DevTools client.

Tests reach it through the `chromium` fixture (tests/conftest.py), which skips where Debian
chromium is not installed and marks the test `browser`.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

CHROMIUM = "/usr/bin/chromium"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",  # containers give /dev/shm 64 MB; Chromium's tabs crash in it
]

_DEVTOOLS = re.compile(r"DevTools listening on (ws://\S+)")


def installed() -> bool:
    return os.access(CHROMIUM, os.X_OK)


def command(profile: str, *args: str) -> list[str]:
    """The Chromium command line with the shared flags and a throwaway profile directory."""
    return [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *args]


def launch(profile: str, *args: str) -> subprocess.Popen[str]:
    """Start Chromium on about:blank with DevTools on a free port (see `devtools_url`)."""
    return subprocess.Popen(
        command(profile, "--remote-debugging-port=0", *args, "about:blank"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def devtools_url(proc: subprocess.Popen[str], max_lines: int = 200) -> str:
    """The browser's DevTools websocket URL, read from Chromium's first lines of stderr."""
    assert proc.stderr is not None
    for _ in range(max_lines):  # bounded: Chromium prints the line within its first output
        line = proc.stderr.readline()
        if not line:  # end of output: Chromium is exiting
            break
        m = _DEVTOOLS.search(line)
        if m:
            return m.group(1)
    raise RuntimeError("chromium did not report its DevTools endpoint")


def stop(proc: subprocess.Popen[str]) -> None:
    """Terminate Chromium (kill it if it does not exit in 10 s) and close its stderr pipe."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
    if proc.stderr:
        proc.stderr.close()


def _run(args: list[str], timeout: float = 90) -> str:
    with tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as profile:
        res = subprocess.run(
            command(profile, *args), capture_output=True, text=True, timeout=timeout
        )
    if res.returncode != 0:
        raise RuntimeError(f"chromium failed ({res.returncode}): {res.stderr[-2000:]}")
    return res.stdout


def dump_dom(url: str) -> str:
    """The page's DOM after load, as Chromium serialises it."""
    return _run(["--dump-dom", url])


def screenshot(url: str, path: Path, size: str = "1280,2000") -> Path:
    _run([f"--screenshot={path}", f"--window-size={size}", "--hide-scrollbars", url])
    return path


class Browser:
    """One Chromium process and one page over the DevTools protocol; `frame_eval` reaches into
    the page's (possibly out-of-process) iframe. Use as `async with Browser() as b:`."""

    def __init__(self) -> None:
        self.profile = tempfile.mkdtemp(prefix="imnet-chromium-")
        self.proc: subprocess.Popen[str] | None = None
        self.http: aiohttp.ClientSession | None = None
        self.ws: Any = None
        self._id = 0
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.frame_sessions: dict[str, str] = {}  # iframe targetId -> sessionId
        self.page_session = ""
        self._reader: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Browser:
        try:
            await self.start()
        except BaseException:
            await self.close()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def start(self) -> None:
        self.proc = launch(self.profile, "--remote-allow-origins=*")
        ws_url = await asyncio.to_thread(devtools_url, self.proc)
        self.http = aiohttp.ClientSession()
        self.ws = await self.http.ws_connect(ws_url, max_msg_size=0)
        self._reader = asyncio.create_task(self._read())
        target = await self.send("Target.createTarget", {"url": "about:blank"})
        att = await self.send(
            "Target.attachToTarget", {"targetId": target["targetId"], "flatten": True}
        )
        self.page_session = att["sessionId"]
        await self.send("Page.enable", session=self.page_session)
        await self.send("Runtime.enable", session=self.page_session)
        # Sandboxed iframes may run out of process: attach to them as they appear.
        await self.send(
            "Target.setAutoAttach",
            {"autoAttach": True, "waitForDebuggerOnStart": False, "flatten": True},
            session=self.page_session,
        )

    async def _read(self) -> None:
        async for msg in self.ws:
            data = json.loads(msg.data)
            method = data.get("method", "")
            if "id" in data and data["id"] in self._pending:
                fut = self._pending.pop(data["id"])
                if not fut.done():
                    fut.set_result(data)
            elif method == "Target.attachedToTarget":
                info = data["params"]["targetInfo"]
                if info.get("type") == "iframe":
                    self.frame_sessions[info["targetId"]] = data["params"]["sessionId"]
            elif method == "Target.detachedFromTarget":
                self.frame_sessions.pop(data["params"].get("targetId"), None)
            elif method.startswith("Page.") and data.get("sessionId") == self.page_session:
                self._events.put_nowait(data)  # only the page's own: loads, navigations

    async def send(self, method: str, params: dict | None = None, session: str = "") -> dict:
        self._id += 1
        msg: dict[str, Any] = {"id": self._id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[self._id] = fut
        await self.ws.send_str(json.dumps(msg))
        data = await asyncio.wait_for(fut, 30)
        if "error" in data:
            raise RuntimeError(f"{method}: {data['error']}")
        return data.get("result", {})

    async def eval(self, expr: str, session: str | None = None, context: int | None = None) -> Any:
        params: dict[str, Any] = {"expression": expr, "returnByValue": True, "awaitPromise": True}
        if context is not None:
            params["contextId"] = context
        r = await self.send("Runtime.evaluate", params, session=session or self.page_session)
        if "exceptionDetails" in r:
            raise RuntimeError(f"JS error in {expr!r}: {r['exceptionDetails']}")
        return r["result"].get("value")

    async def wait_event(self, method: str, timeout: float = 30.0) -> dict[str, Any]:
        """The page's next `method` event (e.g. Page.loadEventFired after a click submits a form)."""

        async def next_match() -> dict[str, Any]:
            while True:
                ev = await self._events.get()
                if ev["method"] == method:
                    return ev

        return await asyncio.wait_for(next_match(), timeout)

    async def goto(self, url: str) -> None:
        """Navigate the page and return once it has loaded; earlier page events are dropped."""
        while not self._events.empty():
            self._events.get_nowait()
        await self.send("Page.navigate", {"url": url}, session=self.page_session)
        await self.wait_event("Page.loadEventFired")
        await self.wait_for("document.readyState === 'complete' && location.href !== 'about:blank'")

    async def wait_for(self, expr: str, timeout: float = 30.0, frame: bool = False) -> Any:
        """Poll a JS condition (in the page or the task frame) until truthy; bounded in time."""
        deadline = time.time() + timeout
        last: Any = None
        while time.time() < deadline:
            try:
                last = await (self.frame_eval(expr) if frame else self.eval(expr))
            except RuntimeError as e:  # the frame may be between documents
                last = e
            if last and not isinstance(last, Exception):
                return last
            await asyncio.sleep(0.1)
        raise TimeoutError(f"condition {expr!r} not met in {timeout}s (last: {last!r})")

    async def frame_eval(self, expr: str) -> Any:
        """Evaluate in the page's iframe, whether Chromium runs it in or out of process."""
        for sid in list(self.frame_sessions.values()):
            try:
                await self.send("Runtime.enable", session=sid)
                return await self.eval(expr, session=sid)
            except RuntimeError:
                continue
        tree = await self.send("Page.getFrameTree", session=self.page_session)
        children = tree["frameTree"].get("childFrames") or []
        if not children:
            raise RuntimeError("no iframe yet")
        frame_id = children[0]["frame"]["id"]
        world = await self.send(
            "Page.createIsolatedWorld",
            {"frameId": frame_id, "worldName": "imnet-test"},
            session=self.page_session,
        )
        return await self.eval(expr, context=world["executionContextId"])

    async def close(self) -> None:
        try:
            if self.ws is not None:
                await self.ws.close()
            if self._reader is not None:
                self._reader.cancel()
            if self.http is not None:
                await self.http.close()
        finally:
            if self.proc is not None:
                stop(self.proc)
            shutil.rmtree(self.profile, ignore_errors=True)
