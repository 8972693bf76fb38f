"""`imnet mturk ...` (needs, publish, collect, status, serve, simulate) and `imnet review`."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

from imnet.core.argtypes import float_in, int_in
from mturk.cli_serve import run_review, run_serve, run_simulate

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

    gold = m.add_parser(
        "gold",
        help="promote review-page overrides and confident labels to gold check items (capped)",
        description="Turn hand overrides, then consensus labels with P >= "
        "mturk_gold_min_confidence (or <= 1 - it), into gold items that new HITs mix in. A label "
        "any of whose voters is in a dependent group or routed away is refused (a cartel cannot "
        "make its own gold); per synset gold never exceeds min(--per-synset, --max-share x "
        "items). Gold whose label changed is dropped. Safe to rerun: nothing new, nothing done.",
    )
    gold.add_argument("--wnid", action="append", help="only this synset (repeatable)")
    gold.add_argument(
        "--per-synset",
        type=int_in(0, 1 << 20),
        default=None,
        metavar="N",
        help="at most N gold items per synset (default: setting mturk_gold_per_synset, 20)",
    )
    gold.add_argument(
        "--max-share",
        type=float_in(0.0, 1.0),
        default=None,
        metavar="F",
        help="gold never more than this share of a synset's items (default: setting "
        "mturk_gold_max_share, 0.1)",
    )
    gold.add_argument("--dry-run", action="store_true", help="report, change nothing")
    gold.add_argument("--json", action="store_true", help="print the full report as JSON")
    gold.set_defaults(func=_gold)

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
    sv.add_argument("--port", type=int_in(0, 65535), help="port (default: setting mturk_port)")
    sv.set_defaults(func=run_serve)

    sim = m.add_parser(
        "simulate",
        help="simulated workers do HITs on the worker site",
        description="Bots sign in to the self-hosted worker site and do HITs, "
        'answering from a ground-truth file {"images": {sha256: wnid|null}}.',
    )
    sim.add_argument("--truth", required=True, help="ground-truth JSON file")
    sim.add_argument(
        "--workers", type=int_in(1, 10_000), default=20, help="number of bots (default 20)"
    )
    sim.add_argument(
        "--mix",
        default=None,
        help="kind shares, default good=0.7,mediocre=0.2,random=0.06,yes=0.04",
    )
    sim.add_argument("--seed", type=int_in(0, 2**32 - 1), default=0)
    sim.add_argument(
        "--max-seconds",
        type=float_in(0, 1e7, lo_open=True),
        default=600.0,
        help="stop after this long",
    )
    sim.add_argument(
        "--url",
        help="worker site base URL (default: the endpoint URL, else http://mturk_host:mturk_port)",
    )
    sim.set_defaults(func=run_simulate)

    rv = sub.add_parser(
        "review",
        help="serve the requester's review page (accepted/rejected images, workers, overrides)",
        description="Serve the review page alone: per synset the accepted, rejected and "
        "undecided images with their votes and posterior, the worker table, and forms to "
        "override a label by hand. `imnet mturk serve` also mounts it under /review.",
    )
    rv.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    rv.add_argument("--port", type=int_in(0, 65535), default=8644, help="port (default 8644)")
    rv.set_defaults(func=run_review)


def _concurrency_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--concurrency",
        type=int_in(1, 1024),
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
    if (report.get("more") or {}).get("published", {}).get("aborted"):
        # Without --yes collect only estimates what further votes would cost.
        print(
            "further votes not requested: rerun `imnet mturk collect --yes` to ask for them",
            file=sys.stderr,
        )
    return 0


def _api_error(e: Exception) -> None:
    """Turn connection and API errors into a one-line UserError."""
    from botocore.exceptions import BotoCoreError, ClientError

    from imnet.core.console import UserError
    from mturk.publish import PublishError

    if isinstance(e, ClientError | BotoCoreError | PublishError):
        from botocore.exceptions import EndpointConnectionError

        hint = ""
        if isinstance(e, EndpointConnectionError) and "amazonaws.com" in str(e):
            hint = (
                " (no `imnet mturk serve` runs on this data dir; start one, or set "
                "IMNET_MTURK_ENDPOINT_URL to your server, or give AWS keys)"
            )
        raise UserError(f"MTurk endpoint: {e}{hint}") from None


def _gold(args: argparse.Namespace, app: App) -> int:
    from imnet.core.console import UserError, print_json
    from mturk.gold import promote_gold

    over: dict[str, Any] = {}
    if args.per_synset is not None:
        if args.per_synset < 0:
            raise UserError(f"--per-synset must be at least 0, got {args.per_synset}")
        over["mturk_gold_per_synset"] = args.per_synset
    if args.max_share is not None:
        if not 0.0 <= args.max_share <= 1.0:
            raise UserError(f"--max-share must be between 0 and 1, got {args.max_share}")
        over["mturk_gold_max_share"] = args.max_share
    settings = app.settings.replace(**over) if over else app.settings
    with app.Session() as session:
        report = promote_gold(session, settings, args.wnid, dry_run=args.dry_run)
    if args.json:
        print_json(report)
        return 0
    t = report["totals"]
    verb = "would add" if args.dry_run else "added"
    print(
        f"gold: {verb} {t['added']} ({t['from_overrides']} from overrides, {t['from_labels']} "
        f"from confident labels); refused {t['refused_dependent']} labels with dependent or "
        f"routed-away voters; dropped {t['dropped']} stale; {t['gold']} promoted gold in all"
    )
    for wnid, r in sorted(report["per_wnid"].items()):
        print(
            f"  {wnid}: +{r['added']} (cap {r['cap']} of {r['items']} items), "
            f"{r['refused_dependent']} refused, {r['dropped']} dropped, {r['gold']} gold"
        )
    return 0


def _status(args: argparse.Namespace, app: App) -> int:
    from sqlalchemy import func, select

    from db.models import Assignment, Hit, Vote, Worker
    from imnet.core.console import print_json
    from mturk.client import endpoint_url, make_client
    from mturk.routing import crowd_status

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
        data.update(crowd_status(s))
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
