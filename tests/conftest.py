"""Shared fixtures: real PostgreSQL and S3 servers on loopback, per-test databases, headless
Chromium, a network guard; and the markers that let `-m "not (postgres or s3 or browser or slow)"`
select the fast set (see `pytest_collection_modifyitems`)."""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from imnet.core.settings import Settings
from tests import _chromium, _servers

_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex


def _check_address(address: object) -> None:
    if isinstance(address, tuple) and address:
        host = address[0]
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            raise ConnectionRefusedError(f"test network guard: unresolved host {host!r}") from None
        if not ip.is_loopback:
            raise ConnectionRefusedError(f"test network guard: {host} is not loopback")


def _guarded_connect(self: socket.socket, address: object) -> None:
    _check_address(address)
    return _real_connect(self, address)


def _guarded_connect_ex(self: socket.socket, address: object) -> int:
    _check_address(address)
    return _real_connect_ex(self, address)


@pytest.fixture(autouse=True, scope="session")
def loopback_only() -> Iterator[None]:
    """Tests may only reach 127.0.0.0/8 and ::1: nothing silently touches the internet."""
    socket.socket.connect = _guarded_connect  # type: ignore[method-assign]
    socket.socket.connect_ex = _guarded_connect_ex  # type: ignore[method-assign]
    yield
    socket.socket.connect = _real_connect  # type: ignore[method-assign]
    socket.socket.connect_ex = _real_connect_ex  # type: ignore[method-assign]


@pytest.fixture(scope="session")
def postgres() -> Iterator[_servers.Postgres]:
    pg = _servers.start_postgres()
    yield pg
    pg.stop()


@pytest.fixture(scope="session")
def s3_server() -> Iterator[_servers.S3Server]:
    srv = _servers.start_s3()
    yield srv
    srv.stop()


@pytest.fixture
def pg_url(postgres: _servers.Postgres) -> str:
    """A fresh, empty PostgreSQL database for one test."""
    return postgres.create_database()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'imnet.sqlite3'}"


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Runs the test twice: on an SQLite file and on a real PostgreSQL server."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'imnet.sqlite3'}"
    return request.getfixturevalue("postgres").create_database()


@pytest.fixture
def settings(tmp_path: Path, db_url: str) -> Settings:
    """Settings for a throwaway data dir on both database backends; loopback crawling allowed."""
    return Settings(data_dir=str(tmp_path / "data"), database_url=db_url, allow_private_hosts=True)


@pytest.fixture
def app(settings: Settings):  # type: ignore[no-untyped-def]
    from imnet.core.app import App

    a = App(settings)
    yield a
    a.close()


@pytest.fixture
def chromium() -> ModuleType:
    """tests/_chromium.py (`Browser`, `dump_dom`, `screenshot`); skips where Debian chromium is
    not installed. Asking for it marks the test `browser`."""
    if not _chromium.installed():
        pytest.skip("Debian chromium is not installed here (apt-get install chromium)")
    return _chromium


# A test that asks for one of these fixtures (directly or through another fixture) gets the mark.
_MARK_BY_FIXTURE = {
    "postgres": "postgres",
    "pg_url": "postgres",
    "s3_server": "s3",
    "chromium": "browser",
}
_MARK_BY_PARAM = {"postgresql": "postgres", "s3": "s3"}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark tests by the real servers they start, so the fast set is a marker expression away."""
    for item in items:
        names = set(getattr(item, "fixturenames", ()))
        marks = {mark for fixture, mark in _MARK_BY_FIXTURE.items() if fixture in names}
        # Parametrized fixtures that fetch a server only for one param (db_url's "postgresql",
        # the blob store's "s3") name it by that param.
        callspec = getattr(item, "callspec", None)
        for value in callspec.params.values() if callspec is not None else ():
            if isinstance(value, str) and value in _MARK_BY_PARAM:
                marks.add(_MARK_BY_PARAM[value])
        for mark in sorted(marks):
            item.add_marker(mark)
