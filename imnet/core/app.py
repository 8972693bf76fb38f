"""The per-command context: resolved settings plus lazily opened database and blob store."""

from __future__ import annotations

from functools import cached_property

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from imnet.core.blobstore import FileStore, S3Store, open_store
from imnet.core.settings import Settings


class App:
    """What a subcommand needs; nothing is opened until it is used, so `--help` stays fast."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    @cached_property
    def engine(self) -> Engine:
        from db.session import check_connection, make_engine, upgrade

        url = self.settings.resolved_database_url()
        engine = make_engine(url)
        check_connection(engine)
        # Every command that touches the database gets the current schema first.
        upgrade(url, engine=engine)
        return engine

    @cached_property
    def Session(self) -> sessionmaker[Session]:  # noqa: N802 - reads like a class at call sites
        from db.session import session_factory

        return session_factory(self.engine)

    @cached_property
    def blobs(self) -> FileStore | S3Store:
        store = open_store(self.settings.resolved_blob_url(), self.settings)
        store.check()  # an S3 endpoint that does not answer stops the command at once
        return store

    def close(self) -> None:
        if "engine" in self.__dict__:
            self.engine.dispose()
