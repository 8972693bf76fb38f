"""Benchmark: `run_consensus` over 100k .. 10M votes on 1,000 synsets (wall, CPU, peak RSS, growth).

Votes are filled by DIRECT INSERTS (no MTurk round trip; `bench/mturk_load.py` measures that
path): 1,000 synsets, 5 votes per candidate (so 1M votes = 200k candidates), HITs of 20
candidates each answered by 5 distinct workers out of 500 (gold-scored, a few blocked), 25% true
positives, workers 90% right (10% spammers at chance).

Each measurement runs in a fresh subprocess (`--child`), which reports its own wall time, CPU time
(getrusage user+sys; the PostgreSQL server's CPU is not in it) and peak RSS (VmHWM). Rows:

* `run`: `run_consensus` (the default robust algorithm; --algorithm worker-aware for the old), per synset: read, decide,
  upsert labels; memory bounded by the largest synset.
* `load`: the per-synset loader alone (`iter_synset_votes`), the peer of
* `load-old`: the whole-dataset loader before issue 15 (`old_load_votes`, kept verbatim in
  tests/curation/consensus/wholeload.py; every vote a Python tuple), measured at the sizes up to `--old-max` as the baseline.
* `pass` (robust): the crowd-wide dependence pass alone (curation/consensus/pooled.py, part of
  `run`): the newest synsets' votes up to consensus_dependence_votes (500k), so it stops growing
  past that size; its "votes" column is that cap.

Growth exponents between consecutive sizes: log(t2/t1) / log(n2/n1) (goal CPU <= 1.1), and peak
RSS at the largest size over the smallest (goal <= 1.5).

    python bench/consensus_scale.py                         # quick look: SQLite, 20k and 100k votes
    python bench/consensus_scale.py --full --postgres       # 100k and 1M, SQLite and PostgreSQL
    python bench/consensus_scale.py --full --big --postgres # adds 10M votes (fill alone ~1 h)
    python bench/consensus_scale.py --sizes 20000,100000 --processes 2
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SYNSETS, VOTES_PER_ITEM, HIT_ITEMS, WORKERS = 1000, 5, 20, 500
GOAL_EXP, GOAL_RSS = 1.1, 1.5


def fill(url: str, n_votes: int, seed: int = 0) -> dict[str, int]:
    """Direct inserts of synsets, images, candidates, HITs, assignments, votes, workers."""
    from sqlalchemy import insert

    from db.models import Assignment, Candidate, Hit, HitItem, Image, Synset, Vote, Worker
    from db.session import make_engine, upgrade

    upgrade(url)
    eng = make_engine(url)
    rng = np.random.default_rng(seed)
    n_items = n_votes // VOTES_PER_ITEM
    per_synset = max(1, n_items // SYNSETS)
    acc = np.where(rng.random(WORKERS) < 0.1, 0.5, 0.9)
    wids = [f"W{k:05d}" for k in range(WORKERS)]
    counts = {"votes": 0, "items": 0}

    def put(conn: Any, model: Any, rows: list[dict]) -> None:
        for k in range(0, len(rows), 5000):
            conn.execute(insert(model), rows[k : k + 5000])

    with eng.begin() as conn:
        put(
            conn,
            Synset,
            [{"wnid": _wnid(s), "lemmas": ["x"], "gloss": "x"} for s in range(SYNSETS)],
        )
        seen = rng.integers(10, 60, WORKERS)
        put(
            conn,
            Worker,
            [
                {
                    "worker_id": w,
                    "gold_seen": int(seen[k]),
                    "gold_correct": int(round(seen[k] * acc[k])),
                    "blocked": bool(acc[k] < 0.6 and k % 2 == 0),
                }
                for k, w in enumerate(wids)
            ],
        )
    cid, t = 0, 1.0e9
    for s in range(SYNSETS):
        wnid = _wnid(s)
        images, cands, hits, items, asg, votes = [], [], [], [], [], []
        truth = rng.random(per_synset) < 0.25
        for h0 in range(0, per_synset, HIT_ITEMS):
            hit = f"H{s}-{h0}"
            hits.append(
                {
                    "hit_id": hit,
                    "hit_type_id": "T",
                    "wnid": wnid,
                    "status": "Disposed",
                    "request_token": hit,
                    "max_assignments": VOTES_PER_ITEM,
                }
            )
            ids = range(cid + h0, cid + min(h0 + HIT_ITEMS, per_synset))
            for pos, c in enumerate(ids):
                sha = f"{c:064x}"
                images.append(
                    {
                        "sha256": sha,
                        "blob_key": sha,
                        "width": 64,
                        "height": 48,
                        "format": "PNG",
                        "bytes": 100,
                    }
                )
                cands.append(
                    {
                        "id": c + 1,
                        "wnid": wnid,
                        "url": f"http://x/{c}",
                        "status": "fetched",
                        "image_sha256": sha,
                    }
                )
                items.append({"hit_id": hit, "position": pos, "candidate_id": c + 1})
            for w in rng.choice(WORKERS, VOTES_PER_ITEM, replace=False).tolist():
                aid = f"A{s}-{h0}-{w}"
                asg.append(
                    {
                        "assignment_id": aid,
                        "hit_id": hit,
                        "worker_id": wids[w],
                        "status": "Approved",
                    }
                )
                right = rng.random(len(ids)) < acc[w]
                for c, ok in zip(ids, right.tolist(), strict=True):
                    t += 1.0
                    votes.append(
                        {
                            "assignment_id": aid,
                            "candidate_id": c + 1,
                            "worker_id": wids[w],
                            "wnid": wnid,
                            "created_at": t,
                            "is_match": bool(truth[c - cid]) == ok,
                        }
                    )
        with eng.begin() as conn:
            for model, rows in (
                (Image, images),
                (Candidate, cands),
                (Hit, hits),
                (HitItem, items),
                (Assignment, asg),
                (Vote, votes),
            ):
                put(conn, model, rows)
        cid += per_synset
        counts["votes"] += len(votes)
        counts["items"] += len(cands)
    if url.startswith("postgresql"):
        with eng.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("VACUUM ANALYZE")
    eng.dispose()
    return counts


def _wnid(s: int) -> str:
    return f"n{s:08d}"


def _vm(key: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def child(mode: str, url: str, algorithm: str, processes: int) -> None:
    """One measurement in this fresh process; prints one JSON line."""
    from curation.consensus.decide import run_consensus
    from curation.consensus.loading import iter_synset_votes
    from curation.consensus.parallel import run_parallel
    from db.session import make_engine, session_factory
    from imnet.core.settings import Settings

    settings = Settings(database_url=url)
    eng = make_engine(url)
    base = _vm("VmRSS")
    t0, r0 = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF)
    out: dict[str, Any] = {}
    with session_factory(eng)() as s:
        if mode == "run" and processes > 1:
            rep = run_parallel(settings, algorithm, None, processes)
            out = {"votes": rep["totals"]["votes"], "accept": rep["totals"]["accept"]}
        elif mode == "run":
            rep = run_consensus(s, algorithm, settings=settings)
            out = {"votes": rep["totals"]["votes"], "accept": rep["totals"]["accept"]}
        elif mode == "load":
            out = {"votes": sum(len(d.votes) for d in iter_synset_votes(s, None, settings))}
        elif mode == "pass":
            # The robust run's crowd-wide dependence pass alone (curation/consensus/pooled.py):
            # "run" includes it; the peer is "load", reading every synset's votes once.
            from curation.consensus.pooled import pooled_groups

            groups = pooled_groups(s, settings)
            out = {"votes": settings.consensus_dependence_votes, "accept": len(groups)}
        else:
            # The pre-issue-15 loader, kept verbatim as the tests' reference.
            sys.path.insert(0, str(ROOT / "tests" / "curation" / "consensus"))
            from wholeload import old_load_votes

            out = {"votes": sum(len(d.votes) for d in old_load_votes(s, None, settings))}
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    ch = resource.getrusage(resource.RUSAGE_CHILDREN)  # the --processes workers, if any
    cpu = r1.ru_utime + r1.ru_stime - r0.ru_utime - r0.ru_stime + ch.ru_utime + ch.ru_stime
    out.update(
        wall=time.perf_counter() - t0,
        cpu=cpu,
        rss_mb=max(_vm("VmHWM"), ch.ru_maxrss / 1024),
        base_mb=base,
    )
    print(json.dumps(out))


def measure(mode: str, url: str, algorithm: str, processes: int) -> dict[str, Any]:
    cmd = [
        sys.executable,
        __file__,
        "--child",
        mode,
        "--url",
        url,
        "--algorithm",
        algorithm,
        "--processes",
        str(processes),
    ]
    res = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if res.returncode != 0:
        raise SystemExit(f"child {mode} failed: {res.stderr.strip().splitlines()[-1:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def exponent(a: float, b: float, na: int, nb: int) -> float:
    return math.log(max(b, 1e-9) / max(a, 1e-9)) / math.log(nb / na)


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--sizes", default="20000,100000", help="votes per run (default 20k,100k)")
    ap.add_argument("--full", action="store_true", help="sizes 100k,1M (the reported figures)")
    ap.add_argument("--big", action="store_true", help="add 10M votes")
    ap.add_argument("--postgres", action="store_true", help="also on PostgreSQL (throwaway server)")
    ap.add_argument("--no-sqlite", action="store_true", help="PostgreSQL only")
    ap.add_argument("--old-max", type=int, default=1_000_000, help="largest size for load-old")
    ap.add_argument(
        "--algorithm",
        default="robust",
        help="consensus algorithm (default robust, the pipeline default)",
    )
    ap.add_argument("--processes", type=int, default=1, help="run_consensus processes")
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--json", help="also write the rows to this file")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--url", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child, args.url, args.algorithm, args.processes)
        return 0
    sizes = [100_000, 1_000_000] if args.full else [int(x) for x in args.sizes.split(",")]
    sizes += [10_000_000] if args.big else []
    work = Path(args.workdir or tempfile.mkdtemp(prefix="imnet-consensus-scale-"))
    backends = ([] if args.no_sqlite else ["sqlite"]) + (["postgresql"] if args.postgres else [])
    pg = None
    if "postgresql" in backends:
        sys.path.append(str(ROOT / "tests"))
        from _servers import start_postgres

        pg = start_postgres()
    rows: list[dict[str, Any]] = []
    try:
        for backend in backends:
            for n in sizes:
                if backend == "sqlite":
                    url = f"sqlite:///{work}/v{n}.sqlite3"
                else:
                    assert pg is not None
                    url = pg.create_database(f"v{n}")
                t0 = time.perf_counter()
                got = fill(url, n)
                print(
                    f"{backend} {n:>10,} votes: filled {got['items']:,} items, "
                    f"{got['votes']:,} votes by direct inserts in {time.perf_counter() - t0:.0f}s",
                    flush=True,
                )
                modes = ["run", "load"] + (["load-old"] if n <= args.old_max else [])
                modes += ["pass"] if args.algorithm == "robust" else []
                for mode in modes:
                    r = measure(mode, url, args.algorithm, args.processes if mode == "run" else 1)
                    r.update(backend=backend, size=got["votes"], mode=mode, items=got["items"])
                    rows.append(r)
                    print(
                        f"  {mode:<8} wall {r['wall']:7.1f}s  cpu {r['cpu']:7.1f}s  "
                        f"peak RSS {r['rss_mb']:7.0f} MB (after imports {r['base_mb']:.0f})  "
                        f"votes read {r['votes']:,}",
                        flush=True,
                    )
    finally:
        if pg is not None:
            pg.stop()
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)
    report(rows)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0


def report(rows: list[dict[str, Any]]) -> None:
    print(
        f"\ngrowth between sizes (exponent; goal CPU <= {GOAL_EXP}) and peak RSS ratio "
        f"largest/smallest (goal <= {GOAL_RSS}):"
    )
    keys = sorted({(r["backend"], r["mode"]) for r in rows})
    for backend, mode in keys:
        rs = sorted(
            (r for r in rows if (r["backend"], r["mode"]) == (backend, mode)),
            key=lambda r: r["size"],
        )
        if len(rs) < 2:
            continue
        parts = [
            f"{a['size']:,}->{b['size']:,}: wall {exponent(a['wall'], b['wall'], a['size'], b['size']):.2f}"
            f" cpu {exponent(a['cpu'], b['cpu'], a['size'], b['size']):.2f}"
            for a, b in zip(rs, rs[1:], strict=False)
        ]
        ratio = rs[-1]["rss_mb"] / rs[0]["rss_mb"]
        print(f"  {backend:<10} {mode:<8} " + "; ".join(parts) + f"; RSS x{ratio:.2f}")
    for backend in sorted({r["backend"] for r in rows}):
        for n in sorted({r["size"] for r in rows if r["backend"] == backend}):
            by = {r["mode"]: r for r in rows if (r["backend"], r["size"]) == (backend, n)}
            if "load" in by and "load-old" in by:
                new, old = by["load"], by["load-old"]
                print(
                    f"  {backend:<10} {n:>10,} votes: per-synset loader vs whole-dataset: "
                    f"wall x{new['wall'] / old['wall']:.2f}, peak RSS {new['rss_mb']:.0f} vs "
                    f"{old['rss_mb']:.0f} MB (x{new['rss_mb'] / old['rss_mb']:.2f})"
                )


if __name__ == "__main__":
    raise SystemExit(main())
