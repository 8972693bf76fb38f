"""The curate stage and the URL import at growing sizes: wall, CPU, peak RSS, growth exponents.

Usage: python bench/curate_scale.py [--sizes 1000,2000,4000] [--url-lines 100000,1000000]
       [--postgres] [--workdir DIR] [--only curate|urls]

Curate: at each size, N image rows whose blobs are real generated JPEGs (smooth random colour
fields, 200-500 px) with ImageNet-crawl-like shares: 75% distinct pictures, 10% near-duplicates
(resized, re-encoded at q40 or cropped 2% copies of a picture of the same block), 5% exact
duplicates (a second candidate of the same synset for the same bytes), 4% broken (truncated JPEG
or not an image) and 6% low quality (tiny, blank, panorama). Synset, image, candidate and label
rows are DIRECT INSERTS (the crawl that would write them is measured by bench/scale.py); the blobs
go through the blob store. Then the real command `imnet curate --json` (dedup, phash, filters,
near-duplicates; its default worker pool) runs on SQLite, or on PostgreSQL + S3 (SeaweedFS)
with --postgres; then `imnet curate neardup` alone (re-clustering every hash, nothing to change).
Baseline in the same run: a plain single-process loop that reads every blob and computes its
phash (curation.phash.phash_bytes); the ratio says what the stage costs beyond decoding.

URL import: `imnet harvest import-urls FILE` on FILE of L `wnid<TAB>url` lines, against the
import as it was before streaming (git 9dc62d3, whole file in memory, one transaction), run the
same way when git can show it. Goals: curate CPU exponent <= 1.1 between the two largest sizes;
the import's peak RSS at the largest size <= 1.5x the smallest's.

CPU is user+sys of the command's whole process tree (os.wait4); peak RSS the largest sum over
the live tree, sampled every 0.2 s (bench/_scalemeasure.py). Database and S3 servers' CPU is
printed apart. Noisy on a shared machine: compare ratios within one run.
"""

from __future__ import annotations

import argparse
import contextlib
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

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

from _scalemeasure import run as measure  # noqa: E402

OLD_IMPORT = "9dc62d3"  # the last commit with the whole-file URL import
URL_WNIDS = ("n02084071", "n02123045", "n02085620", "n01503061", "n04285008")
GOAL_EXP, GOAL_RSS = 1.1, 1.5


from _curate_fixture import SYNSETS, content, populate  # noqa: E402,F401


def baseline(rows: list[dict[str, Any]], blobs: Any) -> dict[str, float]:
    """A plain loop in this one process: read each image's blob and compute its phash."""
    from curation.phash import phash_bytes

    t0, c0 = time.monotonic(), os.times()
    for row in rows:
        # The broken ones fail to decode, as in the stage; that work is part of the baseline.
        with contextlib.suppress(Exception):
            phash_bytes(blobs.get(row["sha256"]))
    c1 = os.times()
    return {"wall_s": time.monotonic() - t0, "cpu_s": c1.user - c0.user + c1.system - c0.system}


# -- running the commands ---------------------------------------------------------------------
def env_for(work: Path, db_url: str, blob_url: str, s3: Any) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("IMNET_")}
    env.update(IMNET_DATA_DIR=str(work), IMNET_DATABASE_URL=db_url, IMNET_BLOB_URL=blob_url)
    if s3 is not None:
        env.update(
            IMNET_S3_ENDPOINT_URL=s3.endpoint,
            IMNET_S3_ACCESS_KEY=s3.access_key,
            IMNET_S3_SECRET_KEY=s3.secret_key,
        )
    return env


def imnet(args: list[str], env: dict[str, str], log: Path, servers: dict[str, int]) -> dict:
    res = measure([sys.executable, "-m", "imnet", *args], env, log, servers)
    if res["rc"] != 0:
        raise SystemExit(f"imnet {' '.join(args)} failed ({res['rc']}):\n{res['output_tail']}")
    return res


def _json_tail(text: str) -> dict[str, Any]:
    """The JSON report a command printed (after any progress lines)."""
    start = text.index("{\n") if "{\n" in text else text.index("{")
    return json.loads(text[start:])


def exponent(a: tuple[int, float], b: tuple[int, float]) -> float:
    (n1, c1), (n2, c2) = a, b
    if c1 <= 0 or c2 <= 0 or n1 == n2:
        return float("nan")
    return math.log(c2 / c1) / math.log(n2 / n1)


def bench_curate(args: argparse.Namespace, store: Any, out: Path) -> list[dict[str, Any]]:
    from imnet.core.blobstore import open_store
    from imnet.core.settings import Settings

    pg, s3 = store
    results = []
    for n in args.sizes:
        work = out / f"curate-{n}"
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        if pg is None:
            db_url, blob_url = f"sqlite:///{work / 'imnet.sqlite3'}", f"file://{out / 'blobs'}"
            settings = Settings(data_dir=str(work), blob_url=blob_url)
        else:
            db_url, blob_url = pg.create_database(), f"s3://{args.bucket}/blobs"
            settings = Settings(
                data_dir=str(work),
                blob_url=blob_url,
                s3_endpoint_url=s3.endpoint,
                s3_access_key=s3.access_key,
                s3_secret_key=s3.secret_key,
            )
        blobs = open_store(blob_url, settings)
        t0 = time.monotonic()
        made = populate(n, db_url, blobs)
        setup = time.monotonic() - t0
        base = baseline(made.pop("shas"), blobs)
        env = env_for(work, db_url, blob_url, s3)
        full = imnet(["curate", "--json"], env, work / "curate.log", args.servers)
        rep = _json_tail(full["output"])
        again = imnet(["curate", "neardup", "--json"], env, work / "neardup.log", args.servers)
        scan = rep["scan"]
        row = {
            "n": n,
            **made,
            "setup_s": round(setup, 1),
            "curate": full,
            "neardup": again,
            "baseline": base,
            "scanned": scan["scanned"],
            "rejected": scan["rejected"],
            "by_reason": rep["rejected_by_reason"],
            "near_duplicates": rep["neardup"].get("near_duplicates"),
            "dups_marked": rep["dedup"]["duplicates_marked"],
        }
        results.append(row)
        print(
            f"  {n:>7} candidates ({made['images']} images, rows+blobs set up in {setup:.0f} s): "
            f"curate wall {full['wall_s']:.1f} s, cpu {full['cpu_s']:.1f} s, "
            f"rss {full['rss_peak_mb']:.0f} MB{_srv(full)} | neardup alone "
            f"{again['wall_s']:.1f} s cpu {again['cpu_s']:.1f} s | baseline loop cpu "
            f"{base['cpu_s']:.1f} s (curate/baseline cpu {full['cpu_s'] / base['cpu_s']:.2f}x)",
            flush=True,
        )
        print(
            f"           scanned {scan['scanned']}, rejected {scan['rejected']} "
            f"{rep['rejected_by_reason']}, {rep['dedup']['duplicates_marked']} exact duplicates "
            f"marked, {rep['neardup'].get('near_duplicates')} near-duplicates",
            flush=True,
        )
    return results


def _srv(res: dict[str, Any]) -> str:
    srv = res.get("server_cpu_s") or {}
    return "".join(f", {k} cpu {v:.1f} s" for k, v in srv.items())


def write_urls(path: Path, lines: int) -> None:
    with open(path, "w") as f:
        for i in range(lines):
            w = URL_WNIDS[i % len(URL_WNIDS)]
            f.write(f"{w}\thttp://img{i % 97}.example.org/photos/{i:09d}/{w}-{i}.jpg\n")


OLD_RUNNER = """
import sys, importlib.util
sys.path.insert(0, sys.argv[1])
import imnet.core.app, imnet.core.settings, imnet.core.blobstore, imnet.core.console
# The old module's imports, under the names they had at that commit.
for old, new in (("imnet.app", imnet.core.app), ("imnet.settings", imnet.core.settings),
                 ("imnet.blobstore", imnet.core.blobstore), ("imnet.cli", imnet.core.console)):
    sys.modules[old] = new
dspec = importlib.util.spec_from_file_location("harvest._db", sys.argv[4])
dmod = importlib.util.module_from_spec(dspec); sys.modules["harvest._db"] = dmod
dspec.loader.exec_module(dmod)
spec = importlib.util.spec_from_file_location("urllist_old", sys.argv[2])
mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)
from imnet.core.app import App
from imnet.core.settings import load_settings
app = App(load_settings())
rep = mod.import_urls(app, sys.argv[3])
print({k: v for k, v in rep.items() if k != "bad_examples"})
app.close()
"""


def old_import_source(out: Path) -> Path | None:
    """The old import and the old harvest/_db.py it used (written beside it as _db_old.py)."""
    for name, rel in (
        ("urllist_old.py", "harvest/sources/urllist.py"),
        ("_db_old.py", "harvest/_db.py"),
    ):
        try:
            src = subprocess.run(
                ["git", "show", f"{OLD_IMPORT}:{rel}"],
                cwd=ROOT,
                capture_output=True,
                check=True,
                text=True,
            ).stdout
        except (OSError, subprocess.CalledProcessError):
            return None
        (out / name).write_text(src)
    return out / "urllist_old.py"


def bench_urls(args: argparse.Namespace, store: Any, out: Path) -> list[dict[str, Any]]:
    pg, _s3 = store
    old_src = old_import_source(out)
    results = []
    for lines in args.url_lines:
        work = out / f"urls-{lines}"
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        path = work / "urls.tsv"
        write_urls(path, lines)
        row: dict[str, Any] = {"lines": lines}
        for which in ("streaming", "before") if old_src else ("streaming",):
            db_url = f"sqlite:///{work / which}.sqlite3" if pg is None else pg.create_database()
            env = env_for(work, db_url, f"file://{work / 'blobs'}", None)
            if which == "streaming":
                res = imnet(["harvest", "import-urls", str(path)], env, work / "new.log", {})
                rep = _json_tail(res["output"])
                assert rep["added"] == lines, rep
            else:
                res = measure(
                    [
                        sys.executable,
                        "-c",
                        OLD_RUNNER,
                        str(ROOT),
                        str(old_src),
                        str(path),
                        str(old_src.parent / "_db_old.py"),
                    ],
                    env,
                    work / "old.log",
                    args.servers,
                )
                if res["rc"] != 0:
                    print(f"  (the old import failed: {res['output_tail'][-300:]})")
                    continue
            row[which] = res
            print(
                f"  {lines:>9} lines, {which:9}: wall {res['wall_s']:.1f} s, cpu "
                f"{res['cpu_s']:.1f} s, rss {res['rss_peak_mb']:.0f} MB{_srv(res)}",
                flush=True,
            )
        results.append(row)
    return results


def summary(curate: list[dict[str, Any]], urls: list[dict[str, Any]]) -> None:
    print("\n== summary")
    if len(curate) >= 2:
        a, b = curate[-2], curate[-1]
        k = exponent((a["n"], a["curate"]["cpu_s"]), (b["n"], b["curate"]["cpu_s"]))
        kw = exponent((a["n"], a["curate"]["wall_s"]), (b["n"], b["curate"]["wall_s"]))
        kb = exponent((a["n"], a["baseline"]["cpu_s"]), (b["n"], b["baseline"]["cpu_s"]))
        kn = exponent((a["n"], a["neardup"]["cpu_s"]), (b["n"], b["neardup"]["cpu_s"]))
        print(
            f"curate {a['n']} -> {b['n']}: CPU exponent {k:.2f} (goal <= {GOAL_EXP}: "
            f"{'met' if k <= GOAL_EXP else 'NOT met'}), wall exponent {kw:.2f}; baseline loop "
            f"{kb:.2f}; neardup alone {kn:.2f}"
        )
        per = b["curate"]["cpu_s"] / b["n"] * 1000
        print(f"  {per:.2f} ms CPU per candidate at {b['n']} (command tree, all steps)")
    for which in ("streaming", "before"):
        got = [u for u in urls if which in u]
        if len(got) >= 2:
            a, b = got[0], got[-1]
            r = b[which]["rss_peak_mb"] / a[which]["rss_peak_mb"]
            k = exponent((a["lines"], a[which]["cpu_s"]), (b["lines"], b[which]["cpu_s"]))
            goal = f" (goal <= {GOAL_RSS}x: {'met' if r <= GOAL_RSS else 'NOT met'})"
            print(
                f"import-urls {which} {a['lines']} -> {b['lines']} lines: peak RSS "
                f"{a[which]['rss_peak_mb']:.0f} -> {b[which]['rss_peak_mb']:.0f} MB = {r:.2f}x"
                f"{goal if which == 'streaming' else ''}, CPU exponent {k:.2f}"
            )


def _ints(text: str) -> list[int]:
    return sorted(int(x.replace("_", "")) for x in text.split(",") if x.strip())


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--sizes", type=_ints, default=[1000, 2000, 4000], help="candidates")
    ap.add_argument("--url-lines", type=_ints, default=[100_000, 1_000_000])
    ap.add_argument("--postgres", action="store_true", help="PostgreSQL + S3 (SeaweedFS)")
    ap.add_argument("--only", choices=("curate", "urls"))
    ap.add_argument("--workdir", default=None, help="kept afterwards when given")
    ap.add_argument("--json", dest="json_out", default=None, help="write all figures here")
    args = ap.parse_args()
    out = Path(args.workdir or tempfile.mkdtemp(prefix="imnet-curate-scale-"))
    out.mkdir(parents=True, exist_ok=True)
    handles: list[Any] = []
    store: tuple[Any, Any] = (None, None)
    args.servers = {}
    try:
        if args.postgres:
            sys.path.append(str(ROOT / "tests"))
            from _servers import start_postgres, start_s3

            pg = start_postgres()
            handles.append(pg)
            s3 = start_s3()
            handles.append(s3)
            store = (pg, s3)
            args.bucket = s3.create_bucket()
            pid = int((pg.root / "data" / "postmaster.pid").read_text().split()[0])
            args.servers = {"postgres": pid, "s3": s3.proc.pid}
        backend = "PostgreSQL + S3" if args.postgres else "SQLite + file blobs"
        print(f"backend: {backend}; {os.cpu_count()} CPUs; work dir {out}")
        curate: list[dict[str, Any]] = []
        urls: list[dict[str, Any]] = []
        if args.only in (None, "curate"):
            print(
                "== imnet curate (synset/image/candidate/label rows by DIRECT INSERTS; blobs "
                "through the blob store; then the real command)"
            )
            curate = bench_curate(args, store, out)
        if args.only in (None, "urls"):
            print("== imnet harvest import-urls (streaming) vs the import before it (9dc62d3)")
            urls = bench_urls(args, store, out)
        summary(curate, urls)
        if args.json_out:
            Path(args.json_out).write_text(
                json.dumps({"curate": curate, "urls": urls}, indent=1, default=str)
            )
    finally:
        for h in handles:
            h.stop()
        if args.workdir is None:
            shutil.rmtree(out, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
