"""Benchmark: the whole pipeline through the real `imnet` commands at growing sizes, projected to ILSVRC.

    python bench/scale.py [--sizes 2000,8000,32000] [--postgres] [--json out.json]
    python bench/scale.py --ilsvrc [--per-class 40] [--postgres]   # all 1,000 ILSVRC-2012 classes

Each size is a fresh database and blob store (SQLite + files, or with --postgres a throwaway
PostgreSQL + SeaweedFS S3) fed from a loopback fixture web of generated JPEGs (bench/_scaleweb.py:
~9% broken, 5% exact and 5% near duplicates, 25% of the wrong thing). Candidates come in through
`imnet harvest import-urls` (one wnid<TAB>url line each) rather than search, so the crawl sees
exactly N URLs. Per stage it prints wall time, CPU time of the command's process tree (and of the
servers it talks to), peak RSS, the CPU growth exponent between consecutive sizes, and a
projection to ILSVRC-2012 size; then the goals and a 32-core estimate of a full ILSVRC build.
Timings are noisy on a shared machine: compare exponents and ratios, not single numbers.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import _scaleweb as web  # noqa: E402
from bench._scalestages import UNITS, env_for, run_pipeline  # noqa: E402

# ILSVRC-2012: ~5M candidates screened for 1,000 classes; 1,281,167 train + 50,000 val images.
TARGET = {"candidates": 5_000_000, "classes": 1000, "exported": 1_331_167, "assignments": 1_000_000}
ILSVRC_PIXELS = 400 * 350  # ILSVRC-2012's mean image is about 400x350
DECODE_STAGES = {"crawl", "curate", "export"}  # per-image work that grows with pixels
CROWD = {"publish", "simulate", "collect", "votes(direct)", "gold(direct)"}
# The simulated crowd works for a fixed time (its output does not grow with the size) and the
# direct inserts are the bench's own: no exponent, no projection, not in the goals.
UNSCALED = {"simulate", "gold(direct)", "votes(direct)"}
STREAMING = {"import-urls", "crawl", "curate", "consensus", "export"}
CORES, EFFICIENCY = 32, 0.7
GOAL_EXP, GOAL_RSS, GOAL_HOURS = 1.1, 1.5, 3.0


def _servers(postgres: bool) -> tuple[list[Any], dict[str, int], Any]:
    """Start PostgreSQL and S3 when asked; returns (handles, pids to charge, factory of run env)."""
    if not postgres:
        return [], {}, None
    sys.path.append(str(ROOT / "tests"))
    from _servers import start_postgres, start_s3

    pg = start_postgres()
    s3 = start_s3()
    pid = int((pg.root / "data" / "postmaster.pid").read_text().split()[0])
    return [pg, s3], {"postgres": pid, "s3": s3.proc.pid}, (pg, s3)


def one_run(args, n: int, wnids: list[str], backend: str, pgs3, servers, idx, out) -> dict:  # type: ignore[no-untyped-def]
    work = Path(args.workdir) / f"{backend}-{n}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    if pgs3 is None:
        db_url, blob_url = f"sqlite:///{work / 'imnet.sqlite3'}", f"file://{work / 'blobs'}"
    else:
        pg, s3 = pgs3
        db_url, blob_url = pg.create_database(), f"s3://{s3.create_bucket()}/imnet"
    env = env_for(dict(os.environ), work, db_url, blob_url)
    if pgs3 is not None:
        env.update(
            IMNET_S3_ENDPOINT_URL=pgs3[1].endpoint,
            IMNET_S3_ACCESS_KEY=pgs3[1].access_key,
            IMNET_S3_SECRET_KEY=pgs3[1].secret_key,
        )
    srv = subprocess.Popen(
        [sys.executable, "-m", "bench._scaleweb", "serve", "--pack", str(args.pack.dir)]
        + ["--n", str(n), "--hosts", str(args.hosts)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=open(work / "fixture-web.log", "wb"),
    )
    try:
        port = int(srv.stdout.readline() or 0)  # type: ignore[union-attr]
        if not port:
            raise SystemExit(f"fixture web did not start: {(work / 'fixture-web.log').read_text()}")
        urls = work / "urls.tsv"
        urls.write_text("\n".join(web.url_lines(n, args.per_class, wnids, port, args.hosts)) + "\n")
        cfg = {
            "workdir": work,
            "env": env,
            "servers": servers,
            "wnids": wnids,
            "truth": web.truth_for(idx, wnids, n, args.per_class, args.seed),
            "n": n,
            "urls": urls,
            "processes": args.processes,
            "sim_seconds": args.sim_seconds,
            "seed": args.seed,
            "resize": args.resize,
            "timeout": args.timeout,
            "ilsvrc": args.ilsvrc,
        }
        out(f"== {backend}, {n} candidates, {len(wnids)} classes ({db_url.split('@')[-1]})")
        t0 = time.monotonic()
        res = run_pipeline(cfg, out)
        res["wall_s"] = round(time.monotonic() - t0, 1)
        res["fixture"] = web.counts(idx, n)
        res["backend"] = backend
        return res
    finally:
        srv.terminate()
        srv.wait(10)
        if not args.keep:
            shutil.rmtree(work / "blobs", ignore_errors=True)
            shutil.rmtree(work / "export", ignore_errors=True)


def exponent(a: dict, b: dict) -> float | None:
    """log(cpu_b / cpu_a) / log(units_b / units_a) of a stage between two sizes."""
    ca, cb = a.get("cpu_total"), b.get("cpu_total")
    ua, ub = a.get("items") or 0, b.get("items") or 0
    if not (ca and cb and ua and ub) or ua == ub or a.get("error") or b.get("error"):
        return None
    return math.log(cb / ca) / math.log(ub / ua)


def project(prev: dict | None, last: dict, target: float, k: float | None) -> float:
    """CPU seconds at `target` units: the power law from the largest size where growth is
    super-linear; else the straight line through the two largest sizes (a fixed start-up cost
    plus a cost per unit; not below linear from the largest when there is only one size)."""
    c2, u2 = last["cpu_total"], last["items"]
    if k is not None and k > 1.0:
        return c2 * (target / u2) ** k
    if prev is None or k is None or not prev.get("items") or prev.get("error"):
        return c2 * target / u2
    slope = max(0.0, (c2 - prev["cpu_total"]) / (u2 - prev["items"]))
    return c2 + slope * (target - u2)


def analyse(runs: list[dict]) -> dict[str, Any]:
    """Per stage: exponents between consecutive sizes, RSS ratio, projection to ILSVRC size."""
    stages = list(runs[-1]["stages"])
    px = ILSVRC_PIXELS / (web.WIDTH * web.HEIGHT)
    out: dict[str, Any] = {}
    for name in stages:
        rows = [r["stages"].get(name, {}) for r in runs]
        for m in rows:
            m["cpu_total"] = (m.get("cpu_s") or 0) + sum((m.get("server_cpu_s") or {}).values())
        exps = [exponent(rows[i], rows[i + 1]) for i in range(len(rows) - 1)]
        if name in UNSCALED:
            exps = [None] * len(exps)
        last, unit = rows[-1], UNITS.get(name, "candidates")
        k = exps[-1] if exps else None
        proj = None
        if (
            last.get("items")
            and last.get("cpu_total")
            and not last.get("error")
            and name not in UNSCALED
        ):
            proj = project(rows[-2] if len(rows) > 1 else None, last, TARGET[unit], k)
            proj *= px if name in DECODE_STAGES else 1.0
        rss = [m.get("rss_peak_mb") for m in rows]
        out[name] = {
            "unit": unit,
            "exponents": [None if e is None else round(e, 3) for e in exps],
            "rss_ratio": round(rss[-1] / rss[0], 2) if rss[0] and rss[-1] else None,
            "projected_cpu_s": None if proj is None else round(proj),
            "errors": [m.get("error") for m in rows if m.get("error")],
        }
    return out


def report(runs: list[dict], ana: dict[str, Any], backend: str, out) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    sizes = [r["n"] for r in runs]
    out(f"\n{backend}: per stage, at {', '.join(f'{n:,}' for n in sizes)} candidates")
    out(
        "  wall s / cpu s (command tree + servers) / peak RSS MB per size; k = CPU growth exponent "
        "per unit between consecutive sizes; ILSVRC = projected CPU hours"
    )
    hdr = f"  {'stage':<14} {'unit':<11}" + "".join(f" {n:>22,}" for n in sizes)
    out(hdr + f"  {'k':>13} {'rss x':>6} {'ILSVRC h':>9}")
    for name, a in ana.items():
        cells = ""
        for r in runs:
            m = r["stages"].get(name, {})
            if not m:
                cells += f" {'-':>22}"
                continue
            rss = m.get("rss_peak_mb")
            cell = f"{m['wall_s']:.1f}/{m['cpu_total']:.1f}/{'-' if rss is None else f'{rss:.0f}'}"
            cells += f" {('!' if m.get('error') else '') + cell:>22}"
        ks = ",".join("-" if e is None else f"{e:.2f}" for e in a["exponents"])
        ph = "-" if a["projected_cpu_s"] is None else f"{a['projected_cpu_s'] / 3600:.2f}"
        tag = " (bounded time)" if name == "simulate" else ""
        out(
            f"  {name:<14} {a['unit']:<11}{cells}  {ks:>13} {a['rss_ratio'] or '-':>6} {ph:>9}{tag}"
        )
    for name, a in ana.items():
        for e in a["errors"]:
            out(f"  FAILED {name}: {e}")
    out("  items per size: " + "; ".join(_items(r) for r in runs))
    return goals(runs, ana, backend, out)


def _items(r: dict) -> str:
    c = r["counts"]
    return (
        f"{r['n']:,}: fetched {c['candidates'].get('fetched', 0):,}, hits {c['hits']:,}, "
        f"votes {c['votes']:,}, accepted {c['labels'].get('accept', 0):,}, "
        f"exported {c['exported']:,}"
    )


def goals(runs: list[dict], ana: dict[str, Any], backend: str, out) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    out(f"\n{backend}: goals")
    res: dict[str, Any] = {}
    bad = [n for n, a in ana.items() if a["exponents"] and (a["exponents"][-1] or 0) > GOAL_EXP]
    bad += [n for n, a in ana.items() if a["errors"]]
    res["exponent_ok"] = not bad and len(runs) > 1
    out(
        f"  every stage's CPU exponent <= {GOAL_EXP} between its two largest sizes: "
        f"{'yes' if res['exponent_ok'] else 'NO: ' + ', '.join(sorted(set(bad)) or ['one size'])}"
    )
    over = [n for n in STREAMING if (ana.get(n, {}).get("rss_ratio") or 0) > GOAL_RSS]
    res["rss_ok"] = not over
    out(
        f"  streaming stages ({', '.join(sorted(STREAMING))}) peak RSS at largest <= "
        f"{GOAL_RSS}x smallest: {'yes' if not over else 'NO: ' + ', '.join(sorted(over))}"
    )
    build = [n for n in ana if n not in CROWD]
    serial = {"import-urls", "consensus", "classes", "synsets", "queries"}
    par_cpu = sum(ana[n]["projected_cpu_s"] or 0 for n in build if n not in serial)
    ser_cpu = sum(ana[n]["projected_cpu_s"] or 0 for n in build if n in serial)
    hours = (par_cpu / (CORES * EFFICIENCY) + ser_cpu) / 3600
    res.update(build_stages=build, projected_build_hours=round(hours, 2))
    px = ILSVRC_PIXELS / (web.WIDTH * web.HEIGHT)
    out(
        f"  full ILSVRC-2012 build on one {CORES}-core machine ({', '.join(build)}): "
        f"{hours:.1f} h ({'meets' if hours < GOAL_HOURS else 'misses'} < {GOAL_HOURS:.0f} h)"
    )
    out(
        f"    assumptions: {TARGET['candidates']:,} candidates, {TARGET['classes']:,} classes, "
        f"{TARGET['exported']:,} exported images; each stage's CPU (command tree + PostgreSQL/S3 "
        "servers) grows from the largest size as a power law with its measured exponent where that is "
        "above 1, else along the line through the two largest sizes (start-up cost + cost per "
        "unit; linear from the one size of a single-size run); "
        f"{', '.join(sorted(DECODE_STAGES))} x{px:.2f} for ILSVRC's ~400x350 pixels vs the "
        f"fixture's {web.WIDTH}x{web.HEIGHT}; crawl, curate and export spread over {CORES} cores at "
        f"{EFFICIENCY:.0%} efficiency; {', '.join(sorted(serial & set(build)))} run in one "
        "process; network latency and the crowd are not modelled"
        + ("" if backend.startswith("postgres") else "; measured on SQLite, not PostgreSQL")
    )
    return res


def finish(runs: list[dict], backend: str, sizes: list[int], params: dict, path: str, out) -> None:  # type: ignore[no-untyped-def]
    """Print the tables and goals; write everything as JSON when asked."""
    ana = analyse(runs)
    res = report(runs, ana, backend, out)
    if path:
        doc = {
            "backend": backend,
            "sizes": sizes,
            "args": {k: str(v) for k, v in params.items()},
            "runs": runs,
            "stages": ana,
            "goals": res,
        }
        Path(path).write_text(json.dumps(doc, indent=1, default=str))
        out(f"results written to {path}")


def merge_report(files: list[str], path: str, out) -> int:  # type: ignore[no-untyped-def]
    """--report: the tables of per-size result.json files from earlier (possibly stopped) runs."""
    try:
        docs = [json.loads(Path(f).read_text()) for f in files]
        # A result.json per size, or whole --json outputs (their "runs").
        runs = sorted((r for d in docs for r in d.get("runs", [d])), key=lambda r: r["n"])
    except (OSError, ValueError, KeyError) as e:
        print(f"--report: {e}", file=sys.stderr)
        return 2
    backends = {r.get("backend", "?") for r in runs}
    if len(backends) != 1:
        print(f"--report: results from different backends {sorted(backends)}", file=sys.stderr)
        return 2
    finish(runs, backends.pop() + " (merged)", [r["n"] for r in runs], {"report": files}, path, out)
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="2000,8000,32000", help="candidates per run")
    ap.add_argument("--per-class", type=int, default=40, help="candidates per class (default 40)")
    ap.add_argument("--postgres", action="store_true", help="PostgreSQL + S3 instead of SQLite")
    ap.add_argument("--ilsvrc", action="store_true", help="the 1,000 ILSVRC-2012 classes, one size")
    ap.add_argument("--processes", type=int, default=2, help="crawl processes (default 2)")
    ap.add_argument("--sim-seconds", type=float, default=20, help="simulated crowd's time per run")
    ap.add_argument("--resize", type=int, default=128, help="export --resize (default 128)")
    ap.add_argument("--hosts", type=int, default=8, help="loopback hosts the URLs spread over")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--timeout", type=float, default=3600, help="seconds per command")
    ap.add_argument("--workdir", default=str(Path(tempfile.gettempdir()) / "imnet-scale"))
    ap.add_argument("--cache", default=str(Path(tempfile.gettempdir()) / "imnet-scale-cache"))
    ap.add_argument("--keep", action="store_true", help="keep blobs and exports")
    ap.add_argument("--json", default="", help="write the results here")
    ap.add_argument(
        "--report",
        nargs="+",
        metavar="RESULT",
        help="only print (and --json) the tables of these WORKDIR/<backend>-<n>/result.json files",
    )
    args = ap.parse_args()
    if args.report:
        return merge_report(args.report, args.json, print)
    from harvest.synsets import ilsvrc2012_wnids

    all_wnids = ilsvrc2012_wnids()
    try:
        sizes = [1000 * args.per_class] if args.ilsvrc else [int(s) for s in args.sizes.split(",")]
    except ValueError:
        print("--sizes: comma-separated integers", file=sys.stderr)
        return 2
    if args.per_class < 2 or any(n < args.per_class for n in sizes) or sizes != sorted(sizes):
        print("--sizes must grow and each hold at least --per-class (>= 2) URLs", file=sys.stderr)
        return 2
    if max(sizes) > 1000 * args.per_class:
        print(
            f"at most {1000 * args.per_class} candidates: 1,000 classes x --per-class",
            file=sys.stderr,
        )
        return 2

    def out(line: str) -> None:
        print(line, flush=True)

    args.pack = web.Pack(Path(args.cache), args.seed, args.per_class)
    idx = args.pack.ensure(max(sizes), out=out)
    backend = ("postgres+s3" if args.postgres else "sqlite+files") + (
        " ilsvrc" if args.ilsvrc else ""
    )
    out(
        f"{backend}: sizes {sizes}, {args.per_class} candidates per class, crawl --processes "
        f"{args.processes}; candidates fed by `imnet harvest import-urls` (not search); gold labels "
        "and the crowd's votes beyond a bounded simulated round are direct inserts (marked)"
    )
    handles, servers, pgs3 = _servers(args.postgres)
    runs = []
    try:
        for n in sizes:
            wnids = all_wnids[: -(-n // args.per_class)]
            runs.append(one_run(args, n, wnids, backend.split()[0], pgs3, servers, idx, out))
            # Each run's result survives a later size that is stopped: --report can merge them.
            res_path = Path(args.workdir) / f"{backend.split()[0]}-{n}" / "result.json"
            res_path.write_text(json.dumps(runs[-1], indent=1, default=str))
    finally:
        for h in handles[::-1]:
            h.stop()
    finish(runs, backend, sizes, vars(args), args.json, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
