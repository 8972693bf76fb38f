"""`imnet db ...`: schema upgrades and a look at what the database holds."""

from __future__ import annotations

import argparse

from imnet.app import App


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("db", help="database schema and status", description="Database commands.")
    dsub = p.add_subparsers(dest="db_command", metavar="ACTION", required=True)
    up = dsub.add_parser(
        "upgrade",
        help="apply Alembic migrations",
        description="Apply the migrations shipped in db/migrations (other commands do this "
        "automatically).",
    )
    up.add_argument("revision", nargs="?", default="head")
    up.set_defaults(func=_upgrade)
    st = dsub.add_parser("status", help="row counts per table", description="Row counts.")
    st.set_defaults(func=_status)


def _upgrade(args: argparse.Namespace, app: App) -> int:
    from db.session import check_connection, make_engine, upgrade

    url = app.settings.resolved_database_url()
    engine = make_engine(url)
    check_connection(engine)
    upgrade(url, args.revision, engine=engine)
    engine.dispose()
    print(f"database at {args.revision}")
    return 0


def _status(args: argparse.Namespace, app: App) -> int:
    from sqlalchemy import func, select

    from db.models import Base

    with app.Session() as s:
        for name, table in sorted(Base.metadata.tables.items()):
            n = s.execute(select(func.count()).select_from(table)).scalar_one()
            print(f"{name:20s} {n}")
    return 0
