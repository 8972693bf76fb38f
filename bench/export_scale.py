"""Export at scale: `imnet export` at growing sizes with 1 and 2 encoding processes.

Usage: python bench/export_scale.py [--sizes 1000,2000,4000] [--classes 100] [--resize 32]
       [--format ilsvrc|webdataset] [--shards] [--postgres] [--workdir DIR] [--baseline-repo DIR]

Per size, a fresh database gets N labelled images by DIRECT INSERTS (synsets, a class set, image
rows with a random phash and quality "ok", candidates, accepted labels; the curation and crowd
stages are not run) and N generated JPEG blobs (random colour fields, 64x48, so every image is
distinct and no two are near-duplicates). Then the real command runs as a subprocess:
`python -m imnet export --set bench --format F --out DIR --resize R --workers W` with W = 1 (one
process does everything) and W = 2 (two spawned encode workers; the parent plans, batches row
updates and writes the manifest), and with --shards also as two concurrent `--shard i/2
--workers 1` invocations. Printed per run: wall, CPU of the command and every process it reaped
(os.wait4), the parent's peak RSS (VmHWM) and the process tree's peak RSS (sampled), images/s;
then the 2-process/1-process speedup, the growth exponents between the two largest sizes
(goal: CPU <= 1.1) and the parent's RSS at the largest size over the smallest (goal <= 1.5).
Every run's manifest sha256 must be the same for one size (byte-identical exports). SQLite and
a file blob store by default; --postgres starts PostgreSQL and SeaweedFS S3 (tests/_servers.py).
--baseline-repo DIR also runs another checkout's export (e.g. `git archive HEAD` unpacked) with
1 and 2 workers (IMNET_CURATION_WORKERS) on the same database, as "old" rows.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from imnet.core.app import App

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
GOAL_EXP, GOAL_RSS = 1.1, 1.5


def jpeg(rng: np.random.Generator) -> bytes:
    from PIL import Image

    low = rng.integers(0, 256, size=(6, 8, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(low, "RGB").resize((64, 48), Image.Resampling.BICUBIC).save(buf, "JPEG")
    return buf.getvalue()


def fill(app: App, n: int, n_classes: int, seed: int = 0) -> None:
    """N accepted, curated images over n_classes classes, by direct inserts (see the docstring)."""
    import hashlib

    from sqlalchemy import insert

    from db.models import Candidate, ClassChoice, Image, Label, Synset, phash_to_db

    rng = np.random.default_rng(seed)
    wnids = [f"n9{k:07d}" for k in range(n_classes)]
    with app.Session.begin() as s:
        s.execute(
            insert(Synset),
            [{"wnid": w, "lemmas": [f"class_{k}"], "gloss": "bench"} for k, w in enumerate(wnids)],
        )
        s.execute(
            insert(ClassChoice),
            [{"set_name": "bench", "wnid": w, "class_index": k} for k, w in enumerate(wnids)],
        )
    put_pool = ThreadPoolExecutor(8)
    for start in range(0, n, 2000):
        count = min(2000, n - start)
        blobs = [jpeg(rng) for _ in range(count)]
        shas = [hashlib.sha256(b).hexdigest() for b in blobs]
        list(put_pool.map(lambda b: app.blobs.put(b, sync=False), blobs))
        phashes = rng.integers(0, 2**63, size=count, dtype=np.int64).tolist()
        with app.Session.begin() as s:
            s.execute(
                insert(Image),
                [
                    {
                        "sha256": sha,
                        "blob_key": f"{sha[:2]}/{sha[2:4]}/{sha}",
                        "width": 64,
                        "height": 48,
                        "format": "JPEG",
                        "bytes": len(b),
                        "phash": phash_to_db(int(ph) * 2 % 2**64),
                        "quality": "ok",
                    }
                    for sha, b, ph in zip(shas, blobs, phashes, strict=True)
                ],
            )
            ids = s.scalars(
                insert(Candidate).returning(Candidate.id),
                [
                    {
                        "wnid": wnids[(start + k) % n_classes],
                        "url": f"http://127.0.0.1/{start + k}.jpg",
                        "status": "fetched",
                        "image_sha256": sha,
                    }
                    for k, sha in enumerate(shas)
                ],
            ).all()
            s.execute(
                insert(Label),
                [
                    {
                        "candidate_id": cid,
                        "wnid": wnids[(start + k) % n_classes],
                        "votes_yes": 3,
                        "votes_no": 0,
                        "posterior": 0.99,
                        "decision": "accept",
                        "decided_by": "dynamic",
                    }
                    for k, cid in enumerate(ids)
                ],
            )
    app.blobs.sync()
    put_pool.shutdown()


def _hwm(pid: int) -> int:
    with contextlib.suppress(OSError):  # the process is gone: no reading
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


def _tree_rss(pid: int) -> int:
    kids: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                raw = Path(f"/proc/{name}/stat").read_text()
            except OSError:
                continue
            kids.setdefault(int(raw[raw.rindex(")") + 2 :].split()[1]), []).append(int(name))
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        todo.extend(kids.get(p, []))
        try:
            total += int(Path(f"/proc/{p}/statm").read_text().split()[1]) * os.sysconf(
                "SC_PAGE_SIZE"
            )
        except OSError:
            continue
    return total


def measure(argvs: list[list[str]], env: dict[str, str], cwd: str | None = None) -> dict[str, Any]:
    """Run the commands at once; wall, summed CPU (with reaped children), peak RSS."""
    t0 = time.monotonic()
    # Files, not pipes: a progress bar filling an unread pipe would block the command.
    logs = [(tempfile.TemporaryFile(), tempfile.TemporaryFile()) for _ in argvs]
    procs = [
        subprocess.Popen(a, env=env, cwd=cwd, stdout=o, stderr=e)
        for a, (o, e) in zip(argvs, logs, strict=True)
    ]
    done: dict[int, Any] = {}
    hwm = {p.pid: 0 for p in procs}
    tree = 0
    while len(done) < len(procs):
        for p in procs:
            if p.pid in done:
                continue
            pid, status, ru = os.wait4(p.pid, os.WNOHANG)
            if pid:
                done[p.pid] = (os.waitstatus_to_exitcode(status), ru)
            else:
                hwm[p.pid] = max(hwm[p.pid], _hwm(p.pid))
        tree = max(tree, sum(_tree_rss(p.pid) for p in procs if p.pid not in done))
        time.sleep(0.1)
    wall = time.monotonic() - t0
    reports = []
    for p, (o, e) in zip(procs, logs, strict=True):
        rc, ru = done[p.pid]
        o.seek(0)
        e.seek(0)
        out, err = o.read(), e.read()
        o.close()
        e.close()
        if rc != 0:
            raise SystemExit(f"export failed ({rc}): {err.decode()[-2000:]}")
        reports.append(json.loads(out))
        hwm[p.pid] = max(hwm[p.pid], ru.ru_maxrss * 1024 if len(procs) == 1 else 0)
    cpu = sum(done[p.pid][1].ru_utime + done[p.pid][1].ru_stime for p in procs)
    final = next(r for r in reports if r.get("status", "complete") == "complete")
    return {
        "wall_s": wall,
        "cpu_s": cpu,
        "parent_rss_mb": max(hwm.values()) / 2**20,
        "tree_rss_mb": tree / 2**20,
        "manifest": final["manifest_sha256"],
        "images": sum(final["counts"].values()),
    }


def exponent(a: float, b: float, na: int, nb: int) -> float:
    return math.log(max(b, 1e-9) / max(a, 1e-9)) / math.log(nb / na)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="1000,2000,4000", help="the full run: 2000,8000,32000")
    ap.add_argument("--classes", type=int, default=100)
    ap.add_argument("--resize", type=int, default=32)
    ap.add_argument("--format", default="ilsvrc", choices=("ilsvrc", "webdataset"))
    ap.add_argument("--shards", action="store_true", help="also 2 concurrent --shard invocations")
    ap.add_argument("--postgres", action="store_true", help="PostgreSQL + S3 instead of SQLite")
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--baseline-repo", default=None, help="another checkout to compare with")
    args = ap.parse_args()
    sizes = sorted(int(x) for x in args.sizes.split(","))
    work = Path(args.workdir or tempfile.mkdtemp(prefix="imnet-export-scale-"))
    servers: list[Any] = []
    if args.postgres:
        sys.path.append(str(ROOT / "tests"))
        from _servers import start_postgres, start_s3

        servers = [start_postgres(), start_s3()]
    from imnet.core.app import App
    from imnet.core.settings import Settings

    modes = {"1 process": [("1", None)], "2 processes": [("2", None)]}
    if args.shards:
        modes["2 shards"] = [("1", "0/2"), ("1", "1/2")]
    if args.baseline_repo:
        modes["old 1 process"] = [("1", "old")]
        modes["old 2 procs"] = [("2", "old")]
    rows: list[dict[str, Any]] = []
    backend = "postgresql+s3" if args.postgres else "sqlite+file"
    print(f"export scale: {args.format}, resize {args.resize}, {args.classes} classes, {backend}")
    print("  (images, synsets, class set, candidates and labels by direct inserts)")
    print(f"{'images':>7} {'mode':<12} {'wall s':>7} {'cpu s':>7} {'parent MB':>9} "
          f"{'tree MB':>8} {'img/s':>7}")  # fmt: skip
    try:
        for n in sizes:
            d = work / f"n{n}"
            shutil.rmtree(d, ignore_errors=True)
            d.mkdir(parents=True)
            env = dict(os.environ, IMNET_DATA_DIR=str(d / "data"))
            if args.postgres:
                pg, s3 = servers
                env["IMNET_DATABASE_URL"] = pg.create_database()
                env["IMNET_BLOB_URL"] = f"s3://{s3.create_bucket()}/blobs"
                env["IMNET_S3_ENDPOINT_URL"] = s3.endpoint
                env["IMNET_S3_ACCESS_KEY"], env["IMNET_S3_SECRET_KEY"] = (
                    s3.access_key,
                    s3.secret_key,
                )
            else:
                env["IMNET_DATABASE_URL"] = f"sqlite:///{d / 'imnet.sqlite3'}"
            settings = Settings(
                data_dir=env["IMNET_DATA_DIR"],
                database_url=env["IMNET_DATABASE_URL"],
                blob_url=env.get("IMNET_BLOB_URL", ""),
                s3_endpoint_url=env.get("IMNET_S3_ENDPOINT_URL", ""),
                s3_access_key=env.get("IMNET_S3_ACCESS_KEY", ""),
                s3_secret_key=env.get("IMNET_S3_SECRET_KEY", ""),
            )
            app = App(settings)
            fill(app, n, args.classes)
            app.close()
            manifests = set()
            for mode, parts in modes.items():
                out = d / mode.replace(" ", "_")
                argvs = []
                old = parts[0][1] == "old"
                env_run = env
                for workers, shard in parts:
                    argv = [sys.executable, "-m", "imnet", "export", "--set", "bench", "--format"]
                    argv += [args.format, "--out", str(out), "--resize", str(args.resize), "--json"]
                    if old:  # the old command has no --workers
                        argv += ["--name", f"old-{workers}"]
                        env_run = dict(env, IMNET_CURATION_WORKERS=workers)
                    else:
                        argv += ["--workers", workers] + (["--shard", shard] if shard else [])
                    argvs.append(argv)
                m = measure(argvs, env_run, cwd=args.baseline_repo if old else None)
                if not old:
                    manifests.add(m["manifest"])
                elif m["manifest"] not in manifests:
                    print("  (the old export's manifest differs from the new one's)")
                row = {"n": n, "mode": mode, **m}
                rows.append(row)
                print(f"{n:>7} {mode:<12} {m['wall_s']:>7.2f} {m['cpu_s']:>7.2f} "
                      f"{m['parent_rss_mb']:>9.1f} {m['tree_rss_mb']:>8.1f} "
                      f"{m['images'] / m['wall_s']:>7.0f}")  # fmt: skip
                shutil.rmtree(out, ignore_errors=True)
            if len(manifests) != 1:
                raise SystemExit(f"exports of {n} images differ between modes: {manifests}")
            shutil.rmtree(d / "data", ignore_errors=True)
    finally:
        for srv in servers:
            srv.stop()
    report(rows, sizes, list(modes))
    if not args.workdir:
        shutil.rmtree(work, ignore_errors=True)
    return 0


def report(rows: list[dict[str, Any]], sizes: list[int], modes: list[str]) -> None:
    by = {(r["n"], r["mode"]): r for r in rows}
    print("\nspeedup of 2 processes over 1 (wall; the 1-process run is the baseline):")
    for n in sizes:
        one = by[(n, "1 process")]
        extra = "".join(
            f", {m} {one['wall_s'] / by[(n, m)]['wall_s']:.2f}x" for m in modes if m != "1 process"
        )
        print(f"  {n:>7} images: {extra[2:]}")
    if len(sizes) < 2:
        return
    a, b = sizes[-2], sizes[-1]
    print(f"\ngrowth exponents between {a} and {b} images (goal CPU <= {GOAL_EXP}):")
    for m in modes:
        ra, rb = by[(a, m)], by[(b, m)]
        cpu = exponent(ra["cpu_s"], rb["cpu_s"], a, b)
        wall = exponent(ra["wall_s"], rb["wall_s"], a, b)
        ok = "ok" if cpu <= GOAL_EXP else "OVER"
        net = ""
        if len(sizes) >= 3:
            # The fixed cost (imports, WordNet for meta.mat: ~300 MB, seconds) hides the growth;
            # net of the smallest size's cost, only what grows with the images is compared.
            r0, n0 = by[(sizes[0], m)], sizes[0]
            cpu_net = exponent(ra["cpu_s"] - r0["cpu_s"], rb["cpu_s"] - r0["cpu_s"], a - n0, b - n0)
            net = f", cpu net of the {n0}-image run {cpu_net:.2f}"
        print(f"  {m:<12} cpu {cpu:.2f} ({ok}), wall {wall:.2f}{net}")
    print(f"\npeak RSS at {sizes[-1]} over {sizes[0]} images (goal <= {GOAL_RSS}x):")
    for m in modes:
        lo, hi = by[(sizes[0], m)], by[(sizes[-1], m)]
        ratio = hi["parent_rss_mb"] / lo["parent_rss_mb"]
        tree = hi["tree_rss_mb"] / max(lo["tree_rss_mb"], 1e-9)
        ok = "ok" if ratio <= GOAL_RSS else "OVER"
        print(f"  {m:<12} parent {ratio:.2f}x ({ok}), process tree {tree:.2f}x")


if __name__ == "__main__":
    sys.exit(main())
