"""Database layer: models, sessions, migrations, work queue, transactions (tx), status counts."""

from db.session import make_engine, session_factory, upgrade

__all__ = ["make_engine", "session_factory", "upgrade"]
