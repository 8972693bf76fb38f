"""The `imnet` command: global flags, settings, and the subcommands each package mounts."""

from __future__ import annotations

import argparse
import contextlib
import importlib
import logging
import os
import sys
from collections.abc import Sequence
from typing import NoReturn

from imnet import __version__
from imnet.core.console import UserError, os_error_line
from imnet.core.settings import SettingsError, load_settings

# Each module has `register(subparsers)`, adding parsers whose `func(args, app) -> int` runs them.
COMMAND_MODULES = (
    "imnet.commands",
    "harvest.cli",
    "curation.cli",
    "curation.consensus.cli",
    "mturk.cli",
    "train.cli",
    "imnet.demo.cli",
)

# Global flags that map straight onto settings keys.
GLOBAL_FLAGS = {"data_dir": "data-dir", "database_url": "database-url", "blob_url": "blob-url"}


class ImnetParser(argparse.ArgumentParser):
    """A usage error is one line on stderr and exit 2 (argparse prints the whole usage first).
    Subparsers inherit the class, so every `imnet` command behaves the same."""

    def error(self, message: str) -> NoReturn:
        line = " ".join(f"{self.prog}: error: {message} (see `{self.prog} --help`)".split())
        self.exit(2, line + "\n")


def build_parser() -> argparse.ArgumentParser:
    p = ImnetParser(
        prog="imnet",
        description="Build an ImageNet-style dataset from WordNet and the web, label it with "
        "crowd workers, export it, and train the 2012 AlexNet on it.",
    )
    p.add_argument("--version", action="version", version=f"imnet {__version__}")
    p.add_argument("--config", help="settings file (default ./imnet.toml, or $IMNET_CONFIG)")
    for key, flag in GLOBAL_FLAGS.items():
        p.add_argument(f"--{flag}", dest=key, default=None, help=f"overrides setting {key}")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            mod = importlib.import_module(name)
        except ModuleNotFoundError as e:
            if e.name == name:
                continue
            raise
        mod.register(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    try:
        rc = _main(argv)
        # Flushed here, not at exit: a reader that left early (`imnet synsets list | head`)
        # is then a BrokenPipeError below instead of "Exception ignored" after the exit.
        sys.stdout.flush()
        return rc
    except BrokenPipeError:
        _silence_stdout()
        print("imnet: error: output closed before the command finished", file=sys.stderr)
        return 2


def _arg_names(parser: argparse.ArgumentParser, args: argparse.Namespace) -> dict[str, str]:
    """dest -> the name usage gives it (its first flag, or a positional's metavar), along the
    subcommands `args` chose."""
    names: dict[str, str] = {}
    todo = [parser]
    while todo:
        p = todo.pop()
        for a in p._actions:
            if isinstance(a, argparse._SubParsersAction):
                chosen = a.choices.get(getattr(args, a.dest, None) or "")
                todo += [chosen] if chosen is not None else []
            elif a.option_strings:
                names[a.dest] = "/".join(a.option_strings)
            else:
                names[a.dest] = a.metavar if isinstance(a.metavar, str) else a.dest
    return names


def _check_text(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Refuse argument values that are not text: argv bytes that are not UTF-8 arrive as lone
    surrogates, which no database, JSON file or HTTP request can carry."""
    for dest, value in vars(args).items():
        for v in value if isinstance(value, list) else [value]:
            if isinstance(v, str):
                try:
                    v.encode("utf-8")
                except UnicodeEncodeError:
                    name = _arg_names(parser, args).get(dest, dest)
                    parser.error(f"argument {name}: {v[:60]!a} is not valid UTF-8 text")


def _main(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # --help and --version print then exit 0
        if e.code == 0:
            sys.stdout.flush()
        raise
    _check_text(parser, args)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0 if args.command is None else 2
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("alembic").setLevel(logging.WARNING)
    from db.session import DatabaseError
    from imnet.core.app import App
    from imnet.core.blobstore import BlobError

    app = None
    try:
        overrides = {k: getattr(args, k) for k in GLOBAL_FLAGS}
        overrides.update(getattr(args, "settings_overrides", lambda a: {})(args))
        settings = load_settings(args.config, overrides=overrides)
        app = App(settings)
        return int(args.func(args, app) or 0)
    except (SettingsError, DatabaseError, BlobError, UserError) as e:
        print(f"imnet: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("imnet: interrupted; finished work is kept, rerun to resume", file=sys.stderr)
        return 130
    except BrokenPipeError:
        raise  # main's: the reader left early, not a path or port problem
    except OSError as e:
        # Unwritable or non-directory paths, busy ports, full disks: the environment, not a bug.
        print(f"imnet: error: {os_error_line(e)}", file=sys.stderr)
        return 2
    finally:
        if app is not None:
            app.close()


def _silence_stdout() -> None:
    # stdout is gone: point it at /dev/null before the interpreter's final flush raises again.
    # Best effort: if even /dev/null cannot take stdout, the one-line error still goes out.
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
