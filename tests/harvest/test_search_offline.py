"""Unreachable sources give up fast: a refused port and an unresolvable host, 1,000 queries each."""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterator

import pytest
from sqlalchemy import func, insert, select

from db.models import Query
from harvest.retry import RetryPolicy, clip, retryable, unreachable
from harvest.search import UNREACHABLE_AFTER, run_search
from harvest.synsets import add_synsets
from imnet.core.app import App
from tests.harvest.loopweb import LoopWeb
from tests.harvest.test_sources import wikimedia_api

W = "n01440764"
N = 1000


@pytest.fixture
def refused_port() -> Iterator[int]:
    """A loopback port bound but not listening: every connect is refused at once."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    yield s.getsockname()[1]
    s.close()


@pytest.mark.parametrize("kind", ["refused", "unresolvable"])
def test_unreachable_source_gives_up_once_and_keeps_its_queries(
    app: App,
    refused_port: int,
    kind: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # .invalid never resolves (RFC 6761); the test network guard lets the lookup fail for real.
    host = f"127.0.0.1:{refused_port}" if kind == "refused" else "imnet-test.invalid"
    tries = {"connect": 0, "resolve": 0}
    connect, getaddrinfo = socket.socket.connect, socket.getaddrinfo

    def counting_connect(self: socket.socket, address: object) -> None:
        if isinstance(address, tuple) and address[1] == refused_port:
            tries["connect"] += 1
        return connect(self, address)

    def counting_getaddrinfo(name: object, *a: object, **kw: object) -> object:
        if name == "imnet-test.invalid":
            tries["resolve"] += 1
        return getaddrinfo(name, *a, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(socket.socket, "connect", counting_connect)
    monkeypatch.setattr(socket, "getaddrinfo", counting_getaddrinfo)
    add_synsets(app, wnids=[W])
    rows = [
        {"wnid": W, "text": f"q{i}", "source": "openverse", "lang": "en", "status": "pending"}
        for i in range(N)
    ]
    # A reachable source's queries come after the dead one's: they still run.
    rows += [{"wnid": W, "text": "tench", "source": "wikimedia", "lang": "en", "status": "pending"}]
    with app.engine.begin() as conn:
        conn.execute(insert(Query), rows)
    with LoopWeb({"/w/api.php": wikimedia_api}) as w, caplog.at_level(logging.INFO):
        app.settings = app.settings.replace(
            source_openverse_url=f"http://{host}/v1/images/",
            source_wikimedia_url=w.url("/w/api.php"),
            search_retries=3,
        )
        stats = run_search(app, max_pages=1)
    tried = tries["connect"] if kind == "refused" else tries["resolve"]
    # Not retried within a query, and given up after UNREACHABLE_AFTER queries in a row.
    assert UNREACHABLE_AFTER <= tried <= 2 * UNREACHABLE_AFTER, tries
    assert stats["sources_unreachable"] == ["openverse"]
    assert stats["queries_postponed"] == UNREACHABLE_AFTER
    assert stats["queries_more_pages"] == 1 and stats["candidates_added"] == 2  # wikimedia
    warn = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warn) == 1 and warn[0].startswith("openverse unreachable"), warn
    assert not [r for r in caplog.records if "retrying" in r.getMessage()]
    with app.engine.connect() as conn:
        by = dict(
            conn.execute(
                select(Query.status, func.count())
                .where(Query.source == "openverse")
                .group_by(Query.status)
            ).all()
        )
        errors = conn.scalar(
            select(func.count()).where(Query.source == "openverse", Query.error.is_not(None))
        )
        leased = conn.scalar(select(func.count()).where(Query.lease_owner.is_not(None)))
    # Every query is left pending for a rerun; only those tried carry the error.
    assert by == {"pending": N} and errors == UNREACHABLE_AFTER and leased == 0
    code = "connect_error" if kind == "refused" else "dns_error"
    assert stats[f"error_{code}"] == UNREACHABLE_AFTER


def test_one_retry_policy() -> None:
    p = RetryPolicy(retries=2, base=1.0, cap=4.0, max_wait=10.0)
    waits = [p.delay(a, "http_503") for a in (1, 2)]
    assert 0.5 <= waits[0] <= 1.0 and 1.0 <= waits[1] <= 2.0  # type: ignore[operator]
    assert p.delay(3, "http_503") is None  # bounded
    assert p.delay(1, "rate_limited", retry_after=7.0) == 7.0  # Retry-After honoured
    assert p.delay(1, "rate_limited", retry_after=60.0) is None  # longer than max_wait
    assert p.delay(1, "http_404") is None and p.delay(1, "dns_error") is None
    assert retryable("timeout") and retryable("http_500") and not retryable("connect_error")
    assert unreachable("connect_error") and unreachable("dns_error") and not unreachable("timeout")


def test_clip_never_cuts_mid_word() -> None:
    text = "Cannot connect to host api.openverse.org:443 ssl:default [Name or service not known]"
    out = clip(text, 60)
    assert len(out) <= 60 and out.endswith(" ...")
    assert text.startswith(out[: -len(" ...")]) and text[len(out) - 4] == " "
    assert clip("x" * 300, 20) == "x" * 17 + "..."
