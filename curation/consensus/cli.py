"""`imnet consensus run|table`: turn votes into labels, and show the dynamic confidence table."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from imnet.core.argtypes import int_in

if TYPE_CHECKING:
    from imnet.core.app import App

ALGORITHM_CHOICES = ("robust", "dynamic", "worker-aware", "majority", "dawid-skene")


def register(sub: Any) -> None:
    p = sub.add_parser(
        "consensus",
        help="turn workers' votes into labels (ImageNet's dynamic consensus and others)",
        description="Turn the votes collected from workers into accept/reject/undecided labels, "
        "and report which candidates still want votes (`imnet mturk needs` lists what publish "
        "will ask for).",
    )
    csub = p.add_subparsers(dest="consensus_command", metavar="ACTION", required=True)

    run = csub.add_parser(
        "run",
        help="update labels from the votes and report what still wants votes",
        description="Read every counted vote (not from rejected assignments or blocked workers), "
        "decide each eligible candidate with the chosen algorithm, and write `label` rows. Hand "
        "overrides made on the review page are kept. The count of candidates that need more "
        "votes includes those already asked for in open HITs (`imnet mturk needs` subtracts "
        "them).",
    )
    run.add_argument(
        "--algorithm",
        choices=ALGORITHM_CHOICES,
        default=None,
        help="decision rule (default: setting consensus_algorithm, normally robust)",
    )
    run.add_argument("--wnid", action="append", help="only this synset (repeatable)")
    run.add_argument("--json", action="store_true", help="print the full report as JSON")
    run.add_argument(
        "--processes",
        type=int_in(1, 1024),
        default=1,
        help="decide synsets in this many processes, each with its own connection (default 1)",
    )
    run.add_argument(
        "--shard",
        default=None,
        metavar="I/N",
        help="only hash partition I of N of the synsets (0 <= I < N): N invocations, on any "
        "machines sharing the database, together decide every synset once",
    )
    run.set_defaults(func=cmd_run)

    table = csub.add_parser(
        "table",
        help="print a synset's confidence table P(good | #yes, #no) (the paper's Fig. 7)",
        description="Fit the dynamic consensus for one synset and print its confidence table: "
        "the probability that an image shows the synset given its yes and no votes so far.",
    )
    table.add_argument("--wnid", required=True, help="the synset")
    table.add_argument(
        "--max", type=int_in(1, 100), default=5, help="largest #yes and #no shown (default 5)"
    )
    table.set_defaults(func=cmd_table)


def cmd_run(args: argparse.Namespace, app: App) -> int:
    from curation.consensus.decide import run_consensus
    from curation.consensus.parallel import parse_shard, run_parallel
    from imnet.core.console import UserError, print_json

    algorithm = args.algorithm or app.settings.consensus_algorithm
    if algorithm not in ALGORITHM_CHOICES:
        raise UserError(
            f"setting consensus_algorithm={algorithm!r} is not one of {ALGORITHM_CHOICES}"
        )
    if args.processes < 1:
        raise UserError(f"--processes must be at least 1, got {args.processes}")
    try:
        shard = parse_shard(args.shard) if args.shard else None
    except ValueError as e:
        raise UserError(str(e)) from None
    if args.processes > 1:
        app.engine  # noqa: B018 - upgrade the schema once here, not in every child at once
        report = run_parallel(app.settings, algorithm, args.wnid, args.processes, shard or (0, 1))
    else:
        with app.Session() as session:
            report = run_consensus(
                session, algorithm, wnids=args.wnid, settings=app.settings, shard=shard
            )
    if args.json:
        print_json(report)
        return 0
    t = report["totals"]
    short = t.get("insufficient_crowd", 0)
    print(
        f"{algorithm}: {t['accept']} accepted, {t['reject']} rejected, {t['undecided']} undecided "
        f"({t['manual']} by hand); {t['needs_votes']} need more votes; {t['votes']} votes read"
        + (
            f"; {short} insufficient_crowd"
            + (
                f" (the goal needs about {t['crowd_needed']} annotators of the measured skill)"
                if t.get("crowd_needed")
                else ""
            )
            if short
            else ""
        )
    )
    for wnid, r in sorted(report["per_wnid"].items()):
        print(
            f"  {wnid}: {r['items']} items, {r['accept']} accept, {r['reject']} reject, "
            f"{r['undecided']} undecided, {r['needs_votes']} need votes"
            + (
                f", {r['insufficient_crowd']} insufficient_crowd"
                if r.get("insufficient_crowd")
                else ""
            )
            + (f" ({r['fallback']})" if r.get("fallback") else "")
        )
    return 0


def cmd_table(args: argparse.Namespace, app: App) -> int:
    from curation.consensus.decide import dynamic_model
    from curation.consensus.loading import load_votes
    from imnet.core.console import UserError

    s = app.settings
    with app.Session() as session:
        data = load_votes(session, [args.wnid], s)
    if not data:
        raise UserError(f"synset {args.wnid} has no eligible candidates")
    d = data[0]
    m = dynamic_model(s).fit(d.votes, calibration=d.calibration, known=d.known)
    k = max(1, args.max)
    print(
        f"{args.wnid}: {m.n_calibration_} calibration items; prior {m.prior_:.3f}, "
        f"P(yes|good) {m.sens_:.3f}, P(yes|bad) {m.fpr_:.3f}"
    )
    print("#yes\\#no " + " ".join(f"{n:>6d}" for n in range(k + 1)))
    for y in range(k + 1):
        print(f"{y:>8d} " + " ".join(f"{m.table_[y, n]:6.3f}" for n in range(k + 1)))
    return 0
