"""The body of every Alembic env.py here: migrations ship inside the package; batch mode on SQLite.

Two chains use it, each with its own version table: the core schema (db/migrations, table
alembic_version) and the self-hosted MTurk server's tables (mturk/server/migrations, table
alembic_version_server). db.session.upgrade names the chain's version table in the config.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import MetaData

from db.session import make_engine


def run_env(context: Any, target_metadata: MetaData) -> None:
    """Run the migrations alembic asked for, online on the given connection or offline as SQL."""
    config = context.config
    version_table = config.get_main_option("version_table") or "alembic_version"

    def _run(connection: Any) -> None:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            version_table=version_table,
            render_as_batch=connection.dialect.name == "sqlite",
            compare_type=True,
        )
        with context.begin_transaction():
            context.run_migrations()

    if context.is_offline_mode():
        context.configure(
            url=config.get_main_option("sqlalchemy.url"),
            target_metadata=target_metadata,
            version_table=version_table,
            literal_binds=True,
        )
        with context.begin_transaction():
            context.run_migrations()
        return
    conn = config.attributes.get("connection")
    if conn is not None:
        _run(conn)
        return
    engine = make_engine(config.get_main_option("sqlalchemy.url"))
    with engine.begin() as connection:
        _run(connection)
    engine.dispose()
