"""The small interface every search source implements, its registry, and shared HTTP handling."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

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
    def transient(self) -> bool:
        return (
            self.code == "rate_limited"
            or self.code.startswith("http_5")
            or self.code in {"timeout", "connect_error"}
        )


class Source:
    """A search source: `search(text, cursor, page_size)` returns one Page; cursors are strings."""

    name = ""
    max_page_size = 100

    def __init__(self, settings: Settings, http: Any = None) -> None:
        import requests

        self.settings = settings
        self.http = http or requests.Session()
        self.http.headers.setdefault("User-Agent", settings.user_agent)
        self.http.headers["User-Agent"] = settings.user_agent

    def search(self, text: str, cursor: str | None, page_size: int) -> Page:
        raise NotImplementedError

    def get_json(
        self, url: str, params: dict[str, Any], headers: dict[str, str] | None = None
    ) -> Any:
        """GET and parse JSON; every failure becomes a SourceError with a reason code."""
        import requests

        t = self.settings.search_timeout
        try:
            r = self.http.get(
                url,
                params=params,
                headers=headers or {},
                timeout=(min(t, 10.0), t),
                allow_redirects=True,
            )
        except requests.Timeout as e:
            raise SourceError("timeout", str(e)[:200]) from None
        except requests.RequestException as e:
            raise SourceError("connect_error", str(e)[:200]) from None
        if r.status_code == 429:
            raise SourceError(
                "rate_limited",
                f"HTTP 429 from {self.name}",
                retry_after=parse_retry_after(r.headers.get("Retry-After")),
            )
        if r.status_code != 200:
            raise SourceError(
                f"http_{r.status_code}",
                r.text[:200].replace("\n", " "),
                retry_after=parse_retry_after(r.headers.get("Retry-After")),
            )
        try:
            return r.json()
        except (ValueError, json.JSONDecodeError) as e:
            raise SourceError("bad_json", f"{e}; body starts {r.text[:80]!r}") from None


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date); None when absent/bad."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    import email.utils
    import time

    try:
        dt = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, dt.timestamp() - time.time())


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


def get_source(name: str, settings: Settings, http: Any = None) -> Source:
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
