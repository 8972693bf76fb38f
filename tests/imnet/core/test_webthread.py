"""The one background-thread aiohttp server: binds before returning, busy ports as OSError."""

from __future__ import annotations

import socket
import urllib.request

import pytest
from aiohttp import web

from imnet.core.webthread import BindError, start_web_thread


def _app() -> web.Application:
    async def hello(_: web.Request) -> web.Response:
        return web.Response(text="hello")

    app = web.Application()
    app.router.add_get("/", hello)
    return app


def _get(url: str) -> str:
    direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with direct.open(url, timeout=10) as r:
        return r.read().decode()


def test_serves_once_returned_and_stops() -> None:
    with start_web_thread(_app()) as server:
        assert server.port > 0 and _get(server.url + "/") == "hello"
    with pytest.raises(OSError):  # stopped means the port no longer answers
        _get(server.url + "/")


def test_busy_port_is_an_oserror_naming_it_and_a_list_falls_back() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(BindError) as exc:
            start_web_thread(_app(), "127.0.0.1", port)
        assert isinstance(exc.value, OSError) and f"127.0.0.1:{port}" in str(exc.value)
        with start_web_thread(_app(), "127.0.0.1", [port, 0]) as server:
            assert server.port != port and _get(server.url + "/") == "hello"
