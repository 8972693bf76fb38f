"""Fixtures for the mturk tests: apps on SQLite and PostgreSQL with small HITs.

Rows come from tests/dbrows.py (`seed`, `add_gold`), the server from tests/mturk/serving.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from imnet.core.app import App
from imnet.core.settings import Settings


@pytest.fixture
def sqlite_app(tmp_path: Path) -> Iterator[App]:
    st = Settings(data_dir=str(tmp_path / "data"), mturk_images_per_hit=6, mturk_gold_per_hit=2)
    a = App(st)
    yield a
    a.close()


@pytest.fixture
def any_app(tmp_path: Path, db_url: str) -> Iterator[App]:
    """Runs on SQLite and on PostgreSQL."""
    st = Settings(
        data_dir=str(tmp_path / "data"),
        database_url=db_url,
        mturk_images_per_hit=6,
        mturk_gold_per_hit=2,
    )
    a = App(st)
    yield a
    a.close()
