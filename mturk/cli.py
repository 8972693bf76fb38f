"""`imnet mturk ...` (needs, publish, collect, status, serve, simulate) and `imnet review`."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from imnet.core.app import App


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if getattr(args, "live", False):
        out["mturk_live"] = True
    if getattr(args, "endpoint_url", None):
        out["mturk_endpoint_url"] = args.endpoint_url
    return out


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "mturk",
        help="human verification HITs through the MTurk API (self-hosted server or AWS)",
        description="Publish verification HITs, collect and review the answers, run the "
        "self-hosted MTurk-compatible server, or simulated workers. The endpoint is the setting "
        "mturk_endpoint_url (empty: the AWS sandbox; production only with --live).",
    )
    p.add_argument("--endpoint-url", help="requester API URL (overrides mturk_endpoint_url)")
    p.add_argument(
        "--live",
        action="store_true",
        help="use the AWS production endpoint when no endpoint URL is set (spends money)",
    )
    p.set_defaults(settings_overrides=_overrides)
    m = p.add_subparsers(dest="mturk_command", metavar="ACTION", required=True)

    needs = m.add_parser(
        "needs",
        help="list how many more votes each synset's candidates need now",
        description="What `imnet mturk publish` will ask for: per synset, the candidates that "
        "need more votes now and how many votes in all (votes already asked for in open HITs "
        "are subtracted).",
    )
    needs.add_argument("--wnid", action="append", help="only this synset (repeatable)")
    needs.add_argument("--json", action="store_true", help="print candidate_id -> votes as JSON")
    needs.set_defaults(func=_needs)

    pub = m.add_parser(
        "publish",
        help="create HITs for items that still need votes",
        description="Ask consensus which items need more votes, group them into "
        "HITs with hidden check images, print the cost with MTurk's fees, then "
        "create the HITs (each with a deterministic UniqueRequestToken, so a "
        "rerun never creates one twice).",
    )
    pub.add_argument(
        "--wnid",
        action="append",
        dest="wnids",
        metavar="WNID",
        help="only these synsets (repeatable)",
    )
    pub.add_argument("--yes", action="store_true", help="do not ask before spending")
    _concurrency_flag(pub)
    pub.set_defaults(func=_publish)

    col = m.add_parser(
        "collect",
        help="fetch, store and review submitted assignments",
        description="Fetch submitted assignments (paginated), store the votes, "
        "approve or reject by the policy in mturk/collect.py, exclude low-accuracy "
        "workers, then ask for more votes where consensus is still undecided. "
        "Safe to rerun.",
    )
    col.add_argument("--no-more", action="store_true", help="do not request further votes")
    col.add_argument(
        "--yes",
        action="store_true",
        help="request further votes without asking (else only the estimate is shown)",
    )
    _concurrency_flag(col)
    col.set_defaults(func=_collect)

    st = m.add_parser(
        "status",
        help="local HIT, assignment and worker counts (and the balance)",
        description="Counts from the database, plus the account balance when the endpoint answers.",
    )
    st.add_argument("--json", action="store_true", help="machine-readable output")
    st.set_defaults(func=_status)

    sv = m.add_parser(
        "serve",
        help="run the self-hosted MTurk-compatible server",
        description="Serve the MTurk requester API (JSON 1.1, SigV4 keys from "
        "settings) at / and the worker site at /worker, with state in the database. "
        "Point mturk_endpoint_url at it.",
    )
    sv.add_argument("--host", help="listen address (default: setting mturk_host)")
    sv.add_argument("--port", type=int, help="port (default: setting mturk_port)")
    sv.set_defaults(func=_serve)

    sim = m.add_parser(
        "simulate",
        help="simulated workers do HITs on the worker site",
        description="Bots sign in to the self-hosted worker site and do HITs, "
        'answering from a ground-truth file {"images": {sha256: wnid|null}}.',
    )
    sim.add_argument("--truth", required=True, help="ground-truth JSON file")
    sim.add_argument("--workers", type=int, default=20, help="number of bots (default 20)")
    sim.add_argument(
        "--mix",
        default=None,
        help="kind shares, default good=0.7,mediocre=0.2,random=0.06,yes=0.04",
    )
    sim.add_argument("--seed", type=int, default=0)
    sim.add_argument("--max-seconds", type=float, default=600.0, help="stop after this long")
    sim.add_argument(
        "--url",
        help="worker site base URL (default: the endpoint URL, else http://mturk_host:mturk_port)",
    )
    sim.set_defaults(func=_simulate)

    rv = sub.add_parser(
        "review",
        help="serve the requester's review page (accepted/rejected images, workers, overrides)",
        description="Serve the review page alone: per synset the accepted, rejected and "
        "undecided images with their votes and posterior, the worker table, and forms to "
        "override a label by hand. `imnet mturk serve` also mounts it under /review.",
    )
    rv.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    rv.add_argument("--port", type=int, default=8644, help="port (default 8644)")
    rv.set_defaults(func=_review)


def _concurrency_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--concurrency",
        type=int,
        default=8,
        metavar="N",
        help="API requests in flight at once (default 8; 1 = one after another)",
    )


def _concurrency(args: argparse.Namespace) -> int:
    from imnet.core.console import UserError

    if args.concurrency < 1:
        raise UserError("--concurrency must be at least 1")
    return int(args.concurrency)


def _publish(args: argparse.Namespace, app: App) -> int:
    from imnet.core.console import UserError, print_json
    from mturk.publish import PublishError, publish

    n = _concurrency(args)
    try:
        report = publish(app, args.wnids, yes=args.yes, concurrency=n)
    except (PublishError, ValueError) as e:
        raise UserError(str(e)) from None
    except Exception as e:
        _api_error(e)
        raise
    print_json(report)
    return 0


def _collect(args: argparse.Namespace, app: App) -> int:
    from imnet.core.console import print_json
    from mturk.collect import collect

    n = _concurrency(args)
    try:
        report = collect(app, more=not args.no_more, yes=args.yes, concurrency=n)
    except Exception as e:
        _api_error(e)
        raise
    print_json(report)
    return 0


def _api_error(e: Exception) -> None:
    """Turn connection and API errors into a one-line UserError."""
    from botocore.exceptions import BotoCoreError, ClientError

    from imnet.core.console import UserError
    from mturk.publish import PublishError

    if isinstance(e, ClientError | BotoCoreError | PublishError):
        raise UserError(f"MTurk endpoint: {e}") from None


def _status(args: argparse.Namespace, app: App) -> int:
    from sqlalchemy import func, select

    from db.models import Assignment, Hit, Vote, Worker
    from imnet.core.console import print_json
    from mturk.client import endpoint_url, make_client

    with app.Session() as s:
        data: dict[str, Any] = {
            "endpoint": endpoint_url(app.settings),
            "hits": dict(s.execute(select(Hit.status, func.count()).group_by(Hit.status)).all()),
            "assignments": dict(
                s.execute(select(Assignment.status, func.count()).group_by(Assignment.status)).all()
            ),
            "votes": s.scalar(select(func.count()).select_from(Vote)) or 0,
            "workers": s.scalar(select(func.count()).select_from(Worker)) or 0,
            "workers_blocked": s.scalar(
                select(func.count()).select_from(Worker).where(Worker.blocked.is_(True))
            )
            or 0,
        }
    try:
        data["balance"] = make_client(app.settings).get_account_balance()["AvailableBalance"]
    except Exception as e:  # status still reports local counts when the endpoint is down
        data["balance"] = f"unavailable ({type(e).__name__})"
    if args.json:
        print_json(data)
        return 0
    for k, v in data.items():
        print(f"{k}: {v}")
    return 0


def _serve(args: argparse.Namespace, app: App) -> int:
    from mturk.server import serve_forever

    host = args.host or app.settings.mturk_host
    port = args.port if args.port is not None else app.settings.mturk_port
    serve_forever(app, host, port)  # prints the URLs once bound; a busy port is one OSError
    return 0


def _simulate(args: argparse.Namespace, app: App) -> int:
    from imnet.core.console import UserError, print_json
    from mturk.simulate import run_workers

    s = app.settings
    url = args.url or s.mturk_endpoint_url or f"http://{s.mturk_host}:{s.mturk_port}"
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


def _needs(args: argparse.Namespace, app: App) -> int:
    from sqlalchemy import select

    from db.models import Candidate
    from imnet.core.console import print_json
    from mturk.verify import chunked, needs_votes

    with app.Session() as session:
        needs = needs_votes(session, wnids=args.wnid, settings=app.settings)
        if args.json:
            print_json({str(k): v for k, v in sorted(needs.items())})
            return 0
        per: dict[str, list[int]] = {}
        for part in chunked(needs):
            for cid, wnid in session.execute(
                select(Candidate.id, Candidate.wnid).where(Candidate.id.in_(part))
            ):
                per.setdefault(wnid, []).append(needs[cid])
    if not per:
        print("no candidate needs votes now")
    for wnid, ks in sorted(per.items()):
        print(f"{wnid}: {len(ks)} candidates need {sum(ks)} votes")
    return 0


def _review(args: argparse.Namespace, app: App) -> int:
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
    return 0
