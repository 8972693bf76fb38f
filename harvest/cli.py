"""`imnet synsets ...` and `imnet harvest ...`: WordNet synsets, queries, search, crawl, status."""

from __future__ import annotations

import argparse
import sys

from imnet.core.app import App
from imnet.core.argtypes import int_in


def register(sub: argparse._SubParsersAction) -> None:
    syn = sub.add_parser(
        "synsets",
        help="add or list WordNet synsets to harvest",
        description="Add WordNet 3.0 noun synsets (by wnid, subtree or the "
        "ILSVRC-2012 list) to the database, or list them.",
    )
    ssub = syn.add_subparsers(dest="synsets_command", metavar="ACTION", required=True)
    add = ssub.add_parser(
        "add",
        help="add synsets by wnid, subtree or ILSVRC-2012 list",
        description="Add synsets with their lemmas, gloss, parent and depth. "
        "Examples: `imnet synsets add n01440764`, `imnet synsets add --root "
        "n02084071 --leaves-only --max 50`, `imnet synsets add --ilsvrc2012`.",
    )
    add.add_argument("wnids", nargs="*", metavar="WNID", help="wnids such as n01440764")
    add.add_argument("--root", metavar="WNID", help="add the whole subtree under this synset")
    add.add_argument("--leaves-only", action="store_true", help="with --root: leaves only")
    add.add_argument(
        "--max", type=int_in(1), dest="max_n", metavar="N", help="add at most N synsets"
    )
    add.add_argument(
        "--ilsvrc2012",
        action="store_true",
        help="add the 1,000 ILSVRC-2012 classes (list shipped with imnet)",
    )
    add.set_defaults(func=_synsets_add)
    ls = ssub.add_parser(
        "list",
        help="list the synsets in the database",
        description="List synsets: wnid, depth, leaf flag and lemmas.",
    )
    ls.add_argument("--json", action="store_true", help="machine-readable output")
    ls.set_defaults(func=_synsets_list)

    h = sub.add_parser(
        "harvest",
        help="queries, search sources and the image crawler",
        description="Harvest candidate images: expand queries, run them against "
        "search sources, import URL lists, crawl and validate the images.",
    )
    hsub = h.add_subparsers(dest="harvest_command", metavar="ACTION", required=True)
    q = hsub.add_parser(
        "queries",
        help="expand synsets into search queries",
        description="Create one query per synonym and synonym + parent lemma for "
        "each synset and source (existing queries keep their paging cursor).",
    )
    q.add_argument(
        "--sources",
        default="openverse,wikimedia",
        help="comma-separated sources (openverse,wikimedia,flickr); default %(default)s",
    )
    q.add_argument(
        "--langs",
        default=None,
        help="extra languages, e.g. es,it (default: setting query_languages; needs "
        "nltk's OMW corpus or setting query_translation_file)",
    )
    q.add_argument(
        "--wnid",
        action="append",
        dest="wnids",
        metavar="WNID",
        help="only these synsets (repeatable)",
    )
    q.set_defaults(func=_queries)
    se = hsub.add_parser(
        "search",
        help="run pending queries against their sources",
        description="Run pending queries page by page; the paging cursor is "
        "saved after every page so a later run continues where this one stopped.",
    )
    se.add_argument(
        "--max-pages",
        type=int_in(1),
        default=1,
        metavar="N",
        help="pages per query in this run (default %(default)s)",
    )
    se.add_argument(
        "--limit-per-query",
        type=int_in(1),
        default=100,
        metavar="N",
        help="stop a query after N results in total (default %(default)s)",
    )
    se.add_argument(
        "--source",
        action="append",
        dest="sources",
        metavar="NAME",
        help="only queries of this source (repeatable)",
    )
    se.set_defaults(func=_search)
    im = hsub.add_parser(
        "import-urls",
        help="add candidates from a wnid<TAB>url file",
        description="Read a file of `wnid<TAB>url` lines (the urllist source) and "
        "add one pending candidate per line; bad lines are reported.",
    )
    im.add_argument("file", metavar="FILE")
    im.set_defaults(func=_import_urls)
    cr = hsub.add_parser(
        "crawl",
        help="fetch and validate pending candidates",
        description="Fetch pending candidates through the work queue, validate "
        "each image (magic bytes, full decode, size and bomb limits), store it by "
        "sha256 and record every outcome. Killed runs resume; several runs share "
        "the queue.",
    )
    cr.add_argument(
        "--processes",
        type=int_in(1, 1024),
        default=1,
        metavar="N",
        help="worker processes, one event loop each (default %(default)s)",
    )
    cr.add_argument(
        "--limit",
        type=int_in(1),
        default=None,
        metavar="N",
        help="claim at most N candidates in this run",
    )
    cr.add_argument("--stats-json", metavar="FILE", help="write the summary as JSON here")
    cr.add_argument("--no-progress", action="store_true", help="no progress bar")
    cr.set_defaults(func=_crawl)
    st = hsub.add_parser(
        "status",
        help="counts of queries and candidates",
        description="Show queries by source and status, candidates by status and "
        "the commonest failure reasons.",
    )
    st.add_argument("--json", action="store_true", help="machine-readable output")
    st.set_defaults(func=_status)
    rt = hsub.add_parser(
        "retry",
        help="put failed or rejected candidates back in the queue",
        description="Set failed and rejected candidates back to pending (lease, error and "
        "HTTP status cleared) so the next `imnet harvest crawl` fetches them again. "
        "Example, after setting allow_private_hosts: "
        "`imnet harvest retry --reason private_address`.",
    )
    rt.add_argument(
        "--reason",
        metavar="CODE",
        help="only candidates with this reason code (see `imnet harvest status`), "
        "e.g. private_address, timeout, http_503",
    )
    rt.set_defaults(func=_retry)


def _user_error(e: Exception) -> Exception:
    from imnet.core.console import UserError

    return UserError(str(e))


def _synsets_add(args: argparse.Namespace, app: App) -> int:
    from harvest.synsets import SynsetError, add_synsets

    if not (args.wnids or args.root or args.ilsvrc2012):
        raise _user_error(ValueError("give WNIDs, --root WNID or --ilsvrc2012"))
    if args.leaves_only and not args.root:
        raise _user_error(ValueError("--leaves-only needs --root"))
    try:
        n = add_synsets(
            app,
            wnids=args.wnids,
            root=args.root,
            leaves_only=args.leaves_only,
            max_n=args.max_n,
            ilsvrc2012=args.ilsvrc2012,
        )
    except SynsetError as e:
        raise _user_error(e) from None
    print(f"{n} synsets added or refreshed")
    return 0


def _synsets_list(args: argparse.Namespace, app: App) -> int:
    from harvest.synsets import list_synsets
    from imnet.core.console import print_json

    rows = list_synsets(app)
    if args.json:
        print_json(rows)
        return 0
    for r in rows:
        print(
            f"{r['wnid']}  depth={r['depth']:<2} {'leaf' if r['leaf'] else 'node'}  "
            + ", ".join(r["lemmas"])
        )
    print(f"{len(rows)} synsets")
    return 0


def _queries(args: argparse.Namespace, app: App) -> int:
    from harvest.queries import expand_queries

    sources = [x.strip() for x in args.sources.split(",") if x.strip()]
    langs = None if args.langs is None else [x.strip() for x in args.langs.split(",") if x.strip()]
    try:
        n = expand_queries(app, sources=sources, langs=langs, wnids=args.wnids)
    except ValueError as e:
        raise _user_error(e) from None
    print(f"{n} new queries")
    return 0


def _search(args: argparse.Namespace, app: App) -> int:
    from harvest.search import run_search
    from imnet.core.console import print_json

    if args.max_pages < 1 or args.limit_per_query < 1:
        raise _user_error(ValueError("--max-pages and --limit-per-query must be at least 1"))
    print_json(
        run_search(
            app,
            max_pages=args.max_pages,
            limit_per_query=args.limit_per_query,
            sources=args.sources,
            progress=True,
        )
    )
    return 0


def _import_urls(args: argparse.Namespace, app: App) -> int:
    from harvest.sources.urllist import import_urls
    from imnet.core.console import UserError, os_error_line, print_json

    try:
        report = import_urls(app, args.file)
    except ValueError as e:
        raise _user_error(e) from None
    except OSError as e:
        raise UserError(os_error_line(e)) from None
    print_json(report)
    if report["bad_lines"]:
        print(f"imnet: {report['bad_lines']} bad lines skipped (see the report)", file=sys.stderr)
    return 0 if report["bad_lines"] == 0 else 1


def _crawl(args: argparse.Namespace, app: App) -> int:
    from harvest.crawl import crawl
    from imnet.core.console import print_json

    if args.processes < 1:
        raise _user_error(ValueError("--processes must be at least 1"))
    if args.stats_json:
        # An unwritable --stats-json fails now (an OSError line), not after the whole crawl.
        with open(args.stats_json, "a"):
            pass
    summary = crawl(
        app,
        processes=args.processes,
        limit=args.limit,
        stats_json=args.stats_json,
        # A bar redrawn with \r is noise in a log file or pipe.
        progress=not args.no_progress and sys.stderr.isatty(),
    )
    print_json(summary)
    _hint_private(summary.get("reasons", {}), stderr=True)
    return 0 if not summary.get("worker_errors") else 1


def _retry(args: argparse.Namespace, app: App) -> int:
    from harvest.requeue import requeue

    try:
        n = requeue(app, reason=args.reason)
    except ValueError as e:
        raise _user_error(e) from None
    which = f" with reason {args.reason}" if args.reason else ""
    print(f"{n} failed or rejected candidates{which} back in the queue (pending)")
    return 0


def _hint_private(reasons: dict[str, int], stderr: bool = False) -> None:
    import sys

    from harvest.requeue import private_address_hint

    if reasons.get("private_address"):
        print(private_address_hint(reasons["private_address"]), file=sys.stderr if stderr else None)


def _status(args: argparse.Namespace, app: App) -> int:
    from db.status import harvest_counts
    from imnet.core.console import print_json

    data = harvest_counts(app.engine)
    if args.json:
        print_json(data)
        return 0
    print("queries:")
    for src, sts in sorted(data["queries"].items()):
        print(f"  {src:10s} " + "  ".join(f"{k}={v}" for k, v in sorted(sts.items())))
    print("candidates: " + "  ".join(f"{k}={v}" for k, v in sorted(data["candidates"].items())))
    if data["reasons"]:
        top = sorted(data["reasons"].items(), key=lambda kv: -kv[1])[:10]
        print("reasons:    " + "  ".join(f"{k}={v}" for k, v in top))
        _hint_private(data["reasons"])
    return 0
