"""A small Chrome DevTools Protocol driver for headless Chromium over aiohttp's websocket client."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import tempfile
import time
from typing import Any

import aiohttp
from _chromium import CHROMIUM, devtools_url, launch, stop

__all__ = ["CHROMIUM", "Browser"]


class Browser:
    """One Chromium process and one page; `frame_eval` reaches into the task iframe."""

    def __init__(self) -> None:
        self.profile = tempfile.mkdtemp(prefix="imnet-chromium-")
        self.proc: subprocess.Popen | None = None
        self.http: aiohttp.ClientSession | None = None
        self.ws: Any = None
        self._id = 0
        self._pending: dict[int, asyncio.Future] = {}
        self.frame_sessions: dict[str, str] = {}  # iframe targetId -> sessionId
        self.page_session = ""
        self._reader: asyncio.Task | None = None

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
            if "id" in data and data["id"] in self._pending:
                fut = self._pending.pop(data["id"])
                if not fut.done():
                    fut.set_result(data)
            elif data.get("method") == "Target.attachedToTarget":
                info = data["params"]["targetInfo"]
                if info.get("type") == "iframe":
                    self.frame_sessions[info["targetId"]] = data["params"]["sessionId"]
            elif data.get("method") == "Target.detachedFromTarget":
                tid = data["params"].get("targetId")
                self.frame_sessions.pop(tid, None)

    async def send(self, method: str, params: dict | None = None, session: str = "") -> dict:
        self._id += 1
        msg: dict[str, Any] = {"id": self._id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        fut: asyncio.Future = asyncio.get_running_loop().create_future()
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

    async def goto(self, url: str) -> None:
        await self.send("Page.navigate", {"url": url}, session=self.page_session)
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
        """Evaluate in the task iframe, whether Chromium runs it in or out of process."""
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
