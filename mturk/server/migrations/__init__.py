"""Alembic branch "server": the self-hosted MTurk server's sandbox_* tables, applied where it runs.

Its own lineage with its own version table (alembic_version_server), so the core schema neither
creates these tables nor needs these scripts; `upgrade_server` runs when the server's Store
starts. HEADS, as db.migrations.HEADS, lets an up-to-date database skip alembic's import.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sqlalchemy import Engine

# A new revision must update this; tests/db/test_server_schema.py fails until it does.
HEADS = frozenset({"s0003"})
VERSION_TABLE = "alembic_version_server"
SCRIPTS = Path(__file__).parent


def upgrade_server(engine: Engine, revision: str = "head") -> None:
    """Bring the server's tables to `revision` (creating them on first start)."""
    from db.session import Chain, upgrade

    chain = Chain(SCRIPTS, HEADS, VERSION_TABLE)
    upgrade(engine.url.render_as_string(hide_password=False), revision, engine=engine, chain=chain)
