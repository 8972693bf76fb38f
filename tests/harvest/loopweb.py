"""A loopback aiohttp web for harvest tests: routes from a dict, a request log, image makers."""

from __future__ import annotations

import asyncio
import io
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from imnet.core.webthread import WebThread, start_web_thread

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def jpeg(w: int = 320, h: int = 240, seed: int = 0, quality: int = 85) -> bytes:
    """A real photo-like JPEG: a crop of scikit-image's astronaut, varied by seed."""
    from PIL import Image
    from skimage import data

    base = Image.fromarray(data.astronaut())
    x, y = (seed * 37) % 150, (seed * 53) % 150
    im = base.crop((x, y, x + 362, y + 362)).resize((w, h))
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def unique(jpeg_bytes: bytes, i: int) -> bytes:
    """The same JPEG with a comment segment naming `i`: distinct sha256, same decode cost."""
    text = f"imnet test image {i}".encode()
    seg = b"\xff\xfe" + (len(text) + 2).to_bytes(2, "big") + text
    return jpeg_bytes[:2] + seg + jpeg_bytes[2:]


def encode(fmt: str, w: int, h: int, mode: str = "RGB") -> bytes:
    from PIL import Image

    im = Image.new(mode, (w, h), "red" if mode == "RGB" else 1)
    buf = io.BytesIO()
    im.save(buf, fmt)
    return buf.getvalue()


def bomb_png() -> bytes:
    """A 20000x20000 PNG of one colour: ~50 KB on the wire, 400 megapixels decoded."""
    return encode("PNG", 20000, 20000, mode="1")


class LoopWeb:
    """An aiohttp server on 127.0.0.1 in a background thread; `routes[path] = handler`."""

    def __init__(self, routes: dict[str, Handler] | None = None, latency: float = 0.0) -> None:
        self.routes: dict[str, Handler] = dict(routes or {})
        self.latency = latency
        self.log: list[str] = []
        self.hits: Counter[str] = Counter()
        self.port = 0
        self._server: WebThread | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, path: str) -> str:
        return self.base + path

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        path = request.path_qs if request.path_qs in self.routes else request.path
        self.log.append(request.path_qs)
        self.hits[path] += 1
        if self.latency:
            await asyncio.sleep(self.latency)
        h = self.routes.get(path)
        if h is None:
            return web.Response(status=404, text="not found")
        return await h(request)

    def __enter__(self) -> LoopWeb:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        self._server = start_web_thread(app, "127.0.0.1", 0, name="loopweb")
        self.port = self._server.port
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._server is not None:
            self._server.stop(timeout=10)


def body(
    data: bytes,
    content_type: str = "image/jpeg",
    status: int = 200,
    headers: dict[str, str] | None = None,
) -> Handler:
    async def h(_: web.Request) -> web.StreamResponse:
        return web.Response(body=data, status=status, content_type=content_type, headers=headers)

    return h


def json_body(obj: Any, status: int = 200, headers: dict[str, str] | None = None) -> Handler:
    async def h(_: web.Request) -> web.StreamResponse:
        return web.json_response(obj, status=status, headers=headers)

    return h


def sequence(*handlers: Handler) -> Handler:
    """Answer the n-th request with the n-th handler (the last one repeats)."""
    calls = [0]

    async def h(request: web.Request) -> web.StreamResponse:
        i = min(calls[0], len(handlers) - 1)
        calls[0] += 1
        return await handlers[i](request)

    return h
