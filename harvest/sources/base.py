"""The small interface every search source implements, its registry, and shared aiohttp handling."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from harvest.retry import clip, parse_retry_after, retryable, unreachable
from imnet.core.settings import Settings


@dataclass
class Hit:
    """One image a source found: where to fetch it and what the source says about it."""

    url: str
    title: str | None = None
    license: str | None = None
    source_ref: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class Page:
    """One page of results and the opaque cursor of the next page (None: no more pages)."""

    hits: list[Hit]
    next_page: str | None


class SourceError(RuntimeError):
    """A search request failed; `code` is the short reason recorded on the query row."""

    def __init__(self, code: str, detail: str = "", retry_after: float | None = None) -> None:
        super().__init__(f"{code}: {detail}" if detail else code)
        self.code = code
        self.detail = detail
        self.retry_after = retry_after

    @property
    def retryable(self) -> bool:
        """Worth retrying within this run, after a short wait (harvest/retry.py decides)."""
        return retryable(self.code)

    @property
    def unreachable(self) -> bool:
        """The source's host cannot be reached at all (DNS failure, connection refused)."""
        return unreachable(self.code)

    @property
    def transient(self) -> bool:
        """The query is kept for a later run rather than marked failed."""
        return self.retryable or self.unreachable


def new_session(settings: Settings) -> aiohttp.ClientSession:
    """The HTTP session search sources share: timeouts and User-Agent from settings."""
    t = settings.search_timeout
    return aiohttp.ClientSession(
        timeout=aiohttp.ClientTimeout(total=t, sock_connect=min(t, 10.0)),
        headers={"User-Agent": settings.user_agent},
    )


class Source:
    """A search source: `await search(text, cursor, page_size)` returns one Page.

    `http` is the aiohttp session to use (run_search shares one); without one, each request
    opens and closes its own, which is fine for a few calls.
    """

    name = ""
    max_page_size = 100

    def __init__(self, settings: Settings, http: aiohttp.ClientSession | None = None) -> None:
        self.settings = settings
        self.http = http

    async def search(self, text: str, cursor: str | None, page_size: int) -> Page:
        raise NotImplementedError

    async def get_json(
        self, url: str, params: dict[str, Any], headers: dict[str, str] | None = None
    ) -> Any:
        """GET and parse JSON; every failure becomes a SourceError with a reason code."""
        if self.http is None:
            async with new_session(self.settings) as http:
                return await self._get_json(http, url, params, headers)
        return await self._get_json(self.http, url, params, headers)

    async def _get_json(
        self,
        http: aiohttp.ClientSession,
        url: str,
        params: dict[str, Any],
        headers: dict[str, str] | None,
    ) -> Any:
        query = {k: str(v) for k, v in params.items()}
        try:
            async with http.get(url, params=query, headers=headers or {}) as r:
                body = await r.read()
                status, retry_after = r.status, parse_retry_after(r.headers.get("Retry-After"))
        except aiohttp.ClientConnectorDNSError as e:
            raise SourceError("dns_error", f"{self.name}: {clip(str(e))}") from None
        except aiohttp.ClientConnectorError as e:
            raise SourceError("connect_error", f"{self.name}: {clip(str(e))}") from None
        except TimeoutError:
            raise SourceError("timeout", f"{self.name}: no answer in time") from None
        except (aiohttp.ServerDisconnectedError, aiohttp.ClientPayloadError) as e:
            raise SourceError("disconnected", f"{self.name}: {clip(str(e))}") from None
        except (aiohttp.ClientError, OSError, ValueError) as e:
            raise SourceError("connect_error", f"{self.name}: {clip(str(e))}") from None
        text = body.decode("utf-8", errors="replace")
        if status == 429:
            raise SourceError("rate_limited", f"HTTP 429 from {self.name}", retry_after)
        if status != 200:
            raise SourceError(f"http_{status}", clip(text), retry_after)
        try:
            return json.loads(text)
        except ValueError as e:
            raise SourceError("bad_json", f"{e}; body starts {text[:80]!r}") from None


def expect(cond: bool, detail: str) -> None:
    """Raise bad_response unless the parsed JSON has the shape this source documents."""
    if not cond:
        raise SourceError("bad_response", detail)


_REGISTRY: dict[str, Callable[..., Source]] = {}


def register_source(name: str) -> Callable[[type[Source]], type[Source]]:
    def deco(cls: type[Source]) -> type[Source]:
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return deco


def source_names() -> list[str]:
    _load_builtin()
    return sorted(_REGISTRY)


def get_source(name: str, settings: Settings, http: aiohttp.ClientSession | None = None) -> Source:
    """The source called `name`, configured from settings; ValueError for an unknown name."""
    _load_builtin()
    try:
        cls = _REGISTRY[name]
    except KeyError:
        raise ValueError(
            f"unknown source {name!r}; known: {', '.join(sorted(_REGISTRY))}"
        ) from None
    return cls(settings, http)


def _load_builtin() -> None:
    # Importing the modules runs their @register_source decorators.
    from harvest.sources import flickr, openverse, urllist, wikimedia  # noqa: F401
