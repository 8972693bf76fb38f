"""Cost per request of the self-hosted MTurk server against the number of HITs it holds.

For each size the sandbox tables are filled BY DIRECT ROW INSERTS (creating 100k HITs through
the API would take too long): a realistic mix of MaxAssignments-3 HITs, most finished (half of
those deleted after collection), some expired unfinished, some open, some with pending accepted
work; derived columns are set by the server's own rule (mturk.server.common.derive_hit). Then the
server runs on loopback and each operation is timed through real HTTP: boto3 for the requester
API, the worker site's JSON endpoint for the poll (of a warmed-up worker, and of a new worker
whose only HITs are the 3 warm-up pages, expiring after every other open HIT: mturk/warmup.py). Prints the median ms per size, the ratio
largest/smallest (goal <= 1.5x) and the growth exponent (slope of log time on log size; 0 =
flat, 1 = linear, what a scan of every HIT per request would show).

    python bench/server_scale.py                                 # 1k,10k on SQLite+PostgreSQL
    python bench/server_scale.py --sizes 1000,10000,100000       # the full run
    python bench/server_scale.py --no-postgres                   # SQLite only
"""

from __future__ import annotations

import argparse
import math
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from imnet.core.app import App

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# mturk/warmup.py's layout: the regular HIT type requires this qualification; the warm-up pages'
# type requires its absence.
WARMED, WARMUP_TYPE = "3BENCHWARMED", "3BENCHWARMUPTYPE"
OPS = [
    "worker poll (GET /worker/hits)",
    "new worker's poll (warm-up pages)",
    "ListReviewableHITs page 1",
    "ListReviewableHITs deep page",
    "ListHITs page 1",
    "ListHITs deep page",
    "ListAssignmentsForHIT",
    "GetHIT",
]


def fill(app: App, n: int, question_kb: int, seed: int = 0) -> dict[str, Any]:
    """n HITs (+ their assignments) by direct inserts; returns ids to query and the mix."""
    from sqlalchemy import insert

    from mturk.layout import html_question
    from mturk.server.common import derive_hit, new_id
    from mturk.server.migrations import upgrade_server
    from mturk.server.models import (
        SandboxAssignment,
        SandboxGate,
        SandboxHit,
        SandboxHitType,
        SandboxHitTypeExclusion,
        SandboxQualificationType,
        SandboxWorkerQualification,
    )

    upgrade_server(app.engine)  # the server's tables, as its first start would make them

    rng = random.Random(seed)
    now = time.time()
    doc = "<!DOCTYPE html><html><body><form><input name='a'></form>"
    question = html_question(doc + "x" * max(0, question_kb * 1024 - 200) + "</body></html>")
    workers = [f"W{i:04d}" for i in range(500)]
    mix = {"finished": 0, "disposed": 0, "expired": 0, "open": 0, "pending": 0}
    pick: dict[str, list[str]] = {"finished": [], "any": []}

    # As publish does with a warm-up (mturk/warmup.py): the HITs need the warmed-up
    # qualification (POLLER holds it), the warm-up pages need its absence (NEWBIE's poll).
    def req(comparator: str) -> list[dict[str, str]]:
        return [{"QualificationTypeId": WARMED, "Comparator": comparator}]

    def hit_type(htid: str, reqs: list[dict[str, str]]) -> dict[str, Any]:
        return {
            "hit_type_id": htid,
            "title": "Does the picture show it?",
            "description": "bench",
            "reward": "0.05",
            "assignment_duration": 600,
            "auto_approval_delay": 2592000,
            "qualification_requirements": reqs,
            "gate": WARMED if reqs[0]["Comparator"] == "Exists" else None,
        }

    with app.Session() as s:
        s.execute(
            insert(SandboxQualificationType), [{"qualification_type_id": WARMED, "name": "w"}]
        )
        s.execute(
            insert(SandboxHitType),
            [hit_type("3BENCHTYPE", req("Exists")), hit_type(WARMUP_TYPE, req("DoesNotExist"))],
        )
        s.execute(insert(SandboxGate), [{"gate": WARMED}])
        s.execute(
            insert(SandboxHitTypeExclusion),
            [{"hit_type_id": WARMUP_TYPE, "qualification_type_id": WARMED}],
        )
        s.execute(
            insert(SandboxWorkerQualification),
            [{"qualification_type_id": WARMED, "worker_id": "POLLER"}],
        )
        hits: list[dict[str, Any]] = []
        asgs: list[dict[str, Any]] = []

        def flush() -> None:
            if hits:
                s.execute(insert(SandboxHit), hits)
            if asgs:
                s.execute(insert(SandboxAssignment), asgs)
            hits.clear()
            asgs.clear()

        for i in range(n):
            created = now - 86400 * 7 + i * (86400 * 6 / n)
            r = rng.random()
            kind = (
                "finished"
                if r < 0.85
                else "expired"
                if r < 0.90
                else "open"
                if r < 0.97
                else "pending"
            )
            status = "Assignable"
            if kind == "finished" and rng.random() < 0.5:
                status, kind = "Disposed", "disposed"
            mix[kind] += 1
            expiration = now - 3600 if kind in ("expired", "finished", "disposed") else now + 86400
            who = rng.sample(workers, 3)
            n_sub = {"finished": 3, "disposed": 3, "expired": 1, "open": rng.randint(0, 1)}.get(
                kind, 1
            )
            n_acc = rng.randint(1, 2) if kind == "pending" else 0
            hid = new_id()
            for k in range(n_sub + n_acc):
                acc = k >= n_sub
                asgs.append(
                    {
                        "assignment_id": new_id(),
                        "hit_id": hid,
                        "worker_id": who[k],
                        "status": "Accepted" if acc else rng.choice(["Approved", "Submitted"]),
                        "accept_time": created + 10,
                        "deadline": (now + 300) if acc else created + 610,
                        "submit_time": None if acc else created + 100 + k,
                        "auto_approval_time": None if acc else created + 2592000,
                        "answer": None if acc else "<QuestionFormAnswers/>",
                    }
                )
            derived = derive_hit(
                status,
                3,
                expiration,
                n_sub,
                [now + 300] * n_acc,
                created + 200 if n_sub >= 3 else None,
                now,
            )
            hits.append(
                {
                    "hit_id": hid,
                    "hit_type_id": "3BENCHTYPE",
                    "gate": WARMED,
                    "question": question,
                    "max_assignments": 3,
                    "expiration": expiration,
                    "status": status,
                    "review_status": "NotReviewed",
                    "created_at": created,
                    **derived,
                }
            )
            if kind == "finished" and len(pick["finished"]) < 200 and rng.random() < 0.05:
                pick["finished"].append(hid)
            if len(pick["any"]) < 200 and rng.random() < 0.01 + 200 / n:
                pick["any"].append(hid)
            if len(hits) >= 2000:
                flush()
        # The warm-up pages expire after every open HIT: a new worker's scan meets them last.
        for _ in range(3):
            hits.append(
                {
                    "hit_id": new_id(),
                    "hit_type_id": WARMUP_TYPE,
                    "question": question,
                    "max_assignments": 9,
                    "expiration": now + 2 * 86400,
                    "status": "Assignable",
                    "review_status": "NotReviewed",
                    "created_at": now,
                    **derive_hit("Assignable", 9, now + 2 * 86400, 0, [], None, now),
                }
            )
        flush()
        s.commit()
    # Fresh statistics, as autovacuum (PostgreSQL) would gather after such a load: without them
    # the planner guesses the row counts of a just-filled table and may pick a scan.
    with app.engine.begin() as conn:
        conn.exec_driver_sql("ANALYZE")
    return {"mix": mix, **pick}


def measure(calls: dict[int, dict[str, Any]], reps: int) -> dict[int, dict[str, float]]:
    """Median ms per op and size; the sizes take turns call by call, so that the load of a
    shared machine falls on every size alike rather than on whichever ran during a burst."""
    out: dict[int, dict[str, float]] = {n: {} for n in calls}
    for op in OPS:
        times: dict[int, list[float]] = {n: [] for n in calls}
        for rep in range(reps + 3):
            for n, fns in calls.items():
                t0 = time.perf_counter()
                fns[op]()
                if rep >= 3:  # the first calls warm the caches and connections
                    times[n].append((time.perf_counter() - t0) * 1000)
        for n in calls:
            out[n][op] = statistics.median(times[n])
    return out


def serve(app: App, picked: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    """Start the server on `app`; returns its handle and one callable per timed operation."""
    import requests
    from sqlalchemy import func, select

    from mturk.client import make_client
    from mturk.server import SITE_KEY, start_in_thread
    from mturk.server.models import SandboxHit
    from mturk.server.paging import keyset_token

    handle = start_in_thread(app, mount_review=False)
    settings = app.settings.replace(mturk_endpoint_url=handle.url)
    mt = make_client(settings)
    site = handle.web_app[SITE_KEY]
    web = requests.Session()
    web.cookies.set("imnet_worker", site.cookie_for("POLLER"))
    newbie = requests.Session()
    newbie.cookies.set("imnet_worker", site.cookie_for("NEWBIE"))
    # Deep-page tokens: the key of the HIT half-way through each listing.
    H = SandboxHit
    with app.Session() as s:
        now = time.time()
        nrev = s.scalar(
            select(func.count()).where(H.status == "Assignable", H.reviewable_at <= now)
        )
        mid_r = s.execute(
            select(H.reviewable_at, H.hit_id)
            .where(H.status == "Assignable", H.reviewable_at <= now)
            .order_by(H.reviewable_at, H.hit_id)
            .offset(max(0, (nrev or 0) // 2))
            .limit(1)
        ).one()
        nlist = s.scalar(select(func.count()).where(H.status == "Assignable"))
        mid_l = s.execute(
            select(H.created_at, H.hit_id)
            .where(H.status == "Assignable")
            .order_by(H.created_at, H.hit_id)
            .offset(max(0, (nlist or 0) // 2))
            .limit(1)
        ).one()
    tok_r, tok_l = keyset_token(*mid_r), keyset_token(*mid_l)
    rng = random.Random(1)

    def poll() -> None:
        r = web.get(f"{handle.url}/worker/hits", params={"format": "json"}, timeout=60)
        assert r.status_code == 200 and len(r.json()["hits"]) == 20, r.text[:200]

    def poll_new() -> None:
        r = newbie.get(f"{handle.url}/worker/hits", params={"format": "json"}, timeout=60)
        assert r.status_code == 200 and len(r.json()["hits"]) == 3, r.text[:200]

    def page(fn: Any, **kw: Any) -> Any:
        def call() -> None:
            got = fn(MaxResults=100, **kw)
            assert got["NumResults"] == 100, got["NumResults"]

        return call

    return handle, {
        OPS[0]: poll,
        OPS[1]: poll_new,
        OPS[2]: page(mt.list_reviewable_hits),
        OPS[3]: page(mt.list_reviewable_hits, NextToken=tok_r),
        OPS[4]: page(mt.list_hits),
        OPS[5]: page(mt.list_hits, NextToken=tok_l),
        OPS[6]: lambda: mt.list_assignments_for_hit(HITId=rng.choice(picked["finished"])),
        OPS[7]: lambda: mt.get_hit(HITId=rng.choice(picked["any"])),
    }


def _slope(sizes: list[int], ms: list[float]) -> float:
    xs = [math.log(n) for n in sizes]
    ys = [math.log(max(m, 1e-6)) for m in ms]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    den = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / den if den else 0.0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1000,10000", help="HITs held, comma-separated")
    ap.add_argument("--reps", type=int, default=25, help="timed calls per operation")
    ap.add_argument("--question-kb", type=int, default=10, help="size of each HIT's question")
    ap.add_argument("--postgres", action="store_true", help="PostgreSQL only")
    ap.add_argument("--no-postgres", action="store_true", help="SQLite only")
    args = ap.parse_args()
    try:
        sizes = sorted({int(x) for x in args.sizes.split(",") if x.strip()})
        if not sizes or min(sizes) < 1000 or args.reps < 1:
            raise ValueError
    except ValueError:
        print("error: --sizes takes sizes >= 1000 like 1000,10000; --reps >= 1", file=sys.stderr)
        return 2
    backends = ["postgresql"] if args.postgres else ["sqlite"]
    if not args.postgres and not args.no_postgres:
        backends.append("postgresql")
    from imnet.core.app import App
    from imnet.core.settings import Settings

    pg = None
    if "postgresql" in backends:
        sys.path.append(str(ROOT / "tests"))
        from _servers import start_postgres

        pg = start_postgres()
    work = Path(tempfile.mkdtemp(prefix="imnet-server-scale-"))
    print(
        "HIT tables are filled by DIRECT ROW INSERTS, not through the API, then ANALYZEd; "
        "ops are timed over "
        f"real HTTP (boto3, worker site); {args.reps} calls each, sizes in turn, median ms; "
        f"question {args.question_kb} KB; MaxResults=100 pages, 20-row worker page."
    )
    results: dict[str, dict[int, dict[str, float]]] = {}
    try:
        for backend in backends:
            apps: dict[int, Any] = {}
            handles: list[Any] = []
            try:
                calls: dict[int, dict[str, Any]] = {}
                for n in sizes:
                    url = (
                        f"sqlite:///{work}/s{n}.sqlite3"
                        if backend == "sqlite"
                        else pg.create_database(f"s{n}")  # type: ignore[union-attr]
                    )
                    app = apps[n] = App(
                        Settings(data_dir=str(work / f"{backend}{n}"), database_url=url)
                    )
                    app.engine  # noqa: B018 - the schema, before the direct inserts
                    t0 = time.perf_counter()
                    picked = fill(app, n, args.question_kb)
                    mix = ", ".join(f"{k} {v:,}" for k, v in picked["mix"].items())
                    print(
                        f"{backend} {n:>8,} HITs inserted directly in "
                        f"{time.perf_counter() - t0:.0f}s ({mix})",
                        flush=True,
                    )
                    handle, calls[n] = serve(app, picked)
                    handles.append(handle)
                results[backend] = measure(calls, args.reps)
            finally:
                for h in handles:
                    h.stop()
                for app in apps.values():
                    app.close()
    finally:
        if pg is not None:
            pg.stop()
    lo, hi = sizes[0], sizes[-1]
    for backend, by_size in results.items():
        head = "".join(f"{n:>10,}" for n in sizes)
        print(f"\n{backend}: median ms per request at HITs held\n{'operation':<32}{head}", end="")
        print(f"{f'{hi // 1000}k/{lo // 1000}k':>10}{'exponent':>10}")
        for op in OPS:
            ms = [by_size[n][op] for n in sizes]
            cells = "".join(f"{m:10.2f}" for m in ms)
            print(f"{op:<32}{cells}{ms[-1] / ms[0]:9.2f}x{_slope(sizes, ms):10.2f}")
    print("\ngoal: ratio <= 1.5x (exponent ~0); a scan of every HIT per request shows ~1.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
