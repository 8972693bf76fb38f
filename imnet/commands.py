"""Top-level commands that belong to no stage: `imnet config show` and `imnet setup`."""

from __future__ import annotations

import argparse

from imnet.app import App


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


def _config_show(args: argparse.Namespace, app: App) -> int:
    from imnet.cli import print_json

    data = app.settings.masked()
    if args.json:
        print_json(data)
        return 0
    src = app.settings._sources
    for k, v in data.items():
        print(f"{k} = {v!r}" + (f"    # from {src[k]}" if k in src else ""))
    return 0


def _setup(args: argparse.Namespace, app: App) -> int:
    from imnet.wordnet import WordNetUnavailable, ensure_wordnet

    try:
        print(ensure_wordnet(allow_download=not args.no_download))
    except WordNetUnavailable as e:
        from imnet.cli import UserError

        raise UserError(str(e)) from None
    return 0
