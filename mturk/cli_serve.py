"""`imnet mturk serve`, `imnet mturk simulate` and `imnet review`: the commands that run web servers."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from imnet.core.app import App


def run_serve(args: argparse.Namespace, app: App) -> int:
    import re

    from mturk.local_endpoint import forget, record
    from mturk.server import serve_forever

    host = args.host or app.settings.mturk_host
    port = args.port if args.port is not None else app.settings.mturk_port

    def announce(line: str) -> None:
        print(line, flush=True)
        # publish, collect and simulate on this data dir follow the recorded endpoint
        if m := re.search(r"requester API: (\S+)", line):
            record(app.settings.data_dir, m.group(1))

    try:
        serve_forever(app, host, port, out=announce)  # a busy port is one OSError
    finally:
        forget(app.settings.data_dir)
    return 0


def run_simulate(args: argparse.Namespace, app: App) -> int:
    from imnet.core.console import UserError, print_json
    from mturk.simulate import run_workers

    s = app.settings
    from mturk.local_endpoint import running

    url = (
        args.url
        or s.mturk_endpoint_url
        or running(s.data_dir)
        or f"http://{s.mturk_host}:{s.mturk_port}"
    )
    if args.workers < 1:
        raise UserError("--workers must be at least 1")
    try:
        report = run_workers(
            url,
            args.truth,
            n_workers=args.workers,
            mix=args.mix,
            seed=args.seed,
            max_seconds=args.max_seconds,
        )
    except (OSError, ValueError) as e:
        raise UserError(f"simulate: {e}") from None
    report.pop("per_worker", None)
    report.pop("assignment_ids", None)
    print_json(report)
    return 0


def run_review(args: argparse.Namespace, app: App) -> int:
    from aiohttp import web

    from mturk.server.review import mount_review

    root = web.Application()
    mount_review(root, app)

    async def to_review(request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound("/review/")

    root.router.add_get("/", to_review)
    url = f"http://{args.host}:{args.port}/review/"
    # aiohttp calls `print` once the socket is listening: the line means "ready".
    web.run_app(
        root,
        host=args.host,
        port=args.port,
        print=lambda _msg: print(f"review page on {url} (Ctrl-C stops)", flush=True),
    )
    # run_app returns only once Ctrl-C (or SIGTERM) stopped it: exit 130 as `mturk serve` does.
    raise KeyboardInterrupt
