"""Top-level commands that belong to no stage: `imnet config show`, `imnet setup`, `imnet db`."""

from __future__ import annotations

import argparse

from imnet.core.app import App


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("config", help="show the resolved settings", description="Settings.")
    csub = p.add_subparsers(dest="config_command", metavar="ACTION", required=True)
    show = csub.add_parser(
        "show",
        help="print resolved settings (secrets masked)",
        description="Print the resolved settings: defaults < imnet.toml < IMNET_* env < flags.",
    )
    show.add_argument("--json", action="store_true", help="machine-readable output")
    show.set_defaults(func=_config_show)

    s = sub.add_parser(
        "setup",
        help="make WordNet 3.0 available to nltk",
        description="Make WordNet 3.0 available to nltk: use an installed corpus, else download "
        "it where the internet is reachable, else copy Debian's wordnet-base files.",
    )
    s.add_argument("--no-download", action="store_true", help="never try nltk.download")
    s.set_defaults(func=_setup)

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


def _config_show(args: argparse.Namespace, app: App) -> int:
    from imnet.core.console import print_json

    data = app.settings.masked()
    if args.json:
        print_json(data)
        return 0
    src = app.settings._sources
    for k, v in data.items():
        print(f"{k} = {v!r}" + (f"    # from {src[k]}" if k in src else ""))
    return 0


def _setup(args: argparse.Namespace, app: App) -> int:
    from imnet.core.wordnet import WordNetUnavailable, build_cache, cache_path, ensure_wordnet

    try:
        print(ensure_wordnet(allow_download=not args.no_download))
        # later commands read this compact noun cache instead of mapping WordNet with nltk
        print(f"WordNet nouns: {len(build_cache())} cached in {cache_path()}")
    except WordNetUnavailable as e:
        from imnet.core.console import UserError

        raise UserError(str(e)) from None
    return 0


def _upgrade(args: argparse.Namespace, app: App) -> int:
    from alembic.util import CommandError

    from db.session import check_connection, make_engine, upgrade
    from imnet.core.console import UserError

    if not args.revision.strip():  # alembic asserts on an empty identifier
        raise UserError("db upgrade: the revision is empty (head, or a revision id)")
    url = app.settings.resolved_database_url()
    engine = make_engine(url)
    check_connection(engine)
    try:
        upgrade(url, args.revision, engine=engine)
    except CommandError as e:  # an unknown or ambiguous revision
        raise UserError(f"db upgrade: {' '.join(str(e).split())[:300]}") from None
    finally:
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
