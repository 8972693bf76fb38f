"""Database layer: models, engines and sessions, migrations, and the leasing work queue."""

from db.session import make_engine, session_factory, upgrade

__all__ = ["make_engine", "session_factory", "upgrade"]
