"""Benchmark: the crowd stage's requester side (publish, crowd, collect) at 2k .. 200k items.

    python bench/crowd_scale.py                       # 2k and 20k items on SQLite (~2 min)
    python bench/crowd_scale.py --postgres            # the same on PostgreSQL too
    python bench/crowd_scale.py --full --postgres     # adds 200k items (long)

Per backend and size, on a fresh database:
  fill     DIRECT INSERTS (not measured as a stage): synsets of 200 fetched candidates each, plus
           10 hand-labelled gold candidates per synset; no crawl, no blobs (nobody loads images).
  publish  `imnet mturk publish --yes` (consensus's needs_votes, planning, CreateHIT); round 1
  crowd    simulated workers do every assignment through the worker site of the server process
           (accept + submit over HTTP, the HITs taken by id rather than found by polling: the
           polls are the server's cost, measured apart)
  collect  `imnet mturk collect --no-more` (list, store votes, approve/reject, exclude)
  reruns   publish again before the crowd, collect again after collect: nothing new may come of
           either (idempotency)
The server runs as its own process (`imnet mturk serve`). Printed per stage: wall time, CPU time
of the command's process (the server's CPU apart), items/s, and the growth exponent between
consecutive sizes, log(t2/t1) / log(n2/n1) (goal: <= 1.1). The baseline is the same commands
with `--concurrency 1` at the smallest size; the ratio is baseline wall / concurrent wall.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PER_SYNSET = 200
GOLD_PER_SYNSET = 10
N_WORKERS = 10  # distinct workers: a HIT may ask for up to 9
STAGES = ("publish", "publish_rerun", "crowd", "collect", "collect_rerun")


def _truth(cid: int) -> bool:
    return cid % 3 != 0


def fill(url: str, n: int) -> None:
    """Synsets, images and fetched candidates by direct inserts, with gold hand labels."""
    from sqlalchemy import insert

    from db.models import Candidate, Image, Label, Synset
    from db.session import make_engine, upgrade

    upgrade(url)
    eng = make_engine(url)
    n_syn = max(1, math.ceil(n / PER_SYNSET))
    with eng.begin() as conn:
        conn.execute(
            insert(Synset),
            [
                {"wnid": f"n9{s:07d}", "lemmas": [f"thing {s}"], "gloss": f"test concept {s}"}
                for s in range(n_syn)
            ],
        )
        for s in range(n_syn):
            k = min(PER_SYNSET, n - s * PER_SYNSET) + GOLD_PER_SYNSET
            shas = [hashlib.sha256(f"{s}:{i}".encode()).hexdigest() for i in range(k)]
            conn.execute(
                insert(Image),
                [
                    {"sha256": h, "blob_key": h, "width": 8, "height": 8}
                    | {"format": "PNG", "bytes": 1}
                    for h in shas
                ],
            )
            wnid = f"n9{s:07d}"
            ids = conn.execute(
                insert(Candidate).returning(Candidate.id),
                [
                    {"wnid": wnid, "url": f"http://127.0.0.1:9/{s}/{i}.png", "status": "fetched"}
                    | {"image_sha256": h, "title": f"image {i}"}
                    for i, h in enumerate(shas)
                ],
            ).scalars()
            gold = sorted(ids)[-GOLD_PER_SYNSET:]
            conn.execute(
                insert(Label),
                [
                    {"candidate_id": c, "wnid": wnid, "decided_by": "manual", "overridden": True}
                    | {"decision": "accept" if _truth(c) else "reject"}
                    | {"posterior": 1.0 if _truth(c) else 0.0}
                    for c in gold
                ],
            )
    eng.dispose()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _proc_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def command(env: dict[str, str], *args: str) -> tuple[float, float, dict[str, Any]]:
    """Run `imnet <args>`: (wall s, CPU s of that process, its JSON report)."""
    import resource

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    p = subprocess.run(
        [sys.executable, "-m", "imnet", *args], env=env, cwd=ROOT, capture_output=True, text=True
    )
    wall = time.perf_counter() - t0
    # The server is not a child that has exited: only this command's CPU is in the difference.
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if p.returncode != 0:
        raise RuntimeError(f"imnet {' '.join(args)} failed ({p.returncode}): {p.stderr[-2000:]}")
    out = p.stdout
    start = 0 if out.startswith("{") else out.find("\n{") + 1  # the report follows the messages
    return wall, cpu, json.loads(out[start:])


def crowd(url: str, base: str) -> tuple[float, float, int]:
    """Every open assignment done over HTTP by N_WORKERS workers: (wall, CPU here, submitted)."""
    import requests
    from sqlalchemy import select

    from db.models import Hit, HitItem
    from db.session import make_engine

    eng = make_engine(url)
    hits: dict[str, tuple[int, list[tuple[int, bool]]]] = {}
    with eng.connect() as conn:
        q = (
            select(Hit.hit_id, Hit.max_assignments, HitItem.position, HitItem.candidate_id)
            .join(HitItem, HitItem.hit_id == Hit.hit_id)
            .where(Hit.status == "Assignable")
        )
        for hid, max_a, pos, cid in conn.execute(q):
            hits.setdefault(hid, (max_a, []))[1].append((pos, _truth(cid)))
    eng.dispose()
    jobs: list[list[tuple[str, list[tuple[int, bool]]]]] = [[] for _ in range(N_WORKERS)]
    for i, (hid, (max_a, tiles)) in enumerate(sorted(hits.items())):
        for j in range(max_a):
            jobs[(i + j) % N_WORKERS].append((hid, tiles))
    done = [0] * N_WORKERS
    errors: list[str] = []

    def work(w: int) -> None:
        http = requests.Session()
        http.trust_env = False
        wid = f"BENCH{w:03d}"
        http.post(f"{base}/worker/signin", data={"worker_id": wid}, timeout=60).raise_for_status()
        for k, (hid, tiles) in enumerate(jobs[w]):
            r = http.post(f"{base}/worker/hits/{hid}/accept", allow_redirects=False, timeout=60)
            if r.status_code != 303:
                errors.append(f"accept {hid}: {r.status_code}")
                continue
            aid = r.headers["Location"].rsplit("/", 1)[1]
            fields = {"assignmentId": aid, "n_items": str(len(tiles))}
            # Right 9 times in 10 (worker 0 ticks everything: the one to be excluded).
            for pos, yes in tiles:
                if (yes != ((k * 7 + pos) % 10 == 0)) if w else True:
                    fields[f"item_{pos}"] = "yes"
            r = http.post(
                f"{base}/mturk/externalSubmit",
                data=fields,
                headers={"Accept": "application/json"},
                timeout=60,
            )
            if r.status_code == 200:
                done[w] += 1
            else:
                errors.append(f"submit {hid}: {r.status_code} {r.text[:200]}")

    t0, c0 = time.perf_counter(), time.process_time()
    threads = [threading.Thread(target=work, args=(w,)) for w in range(N_WORKERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise RuntimeError(f"crowd: {len(errors)} errors, first: {errors[:3]}")
    return time.perf_counter() - t0, time.process_time() - c0, sum(done)


def run_size(url: str, n: int, work: Path, concurrency: int) -> dict[str, Any]:
    """fill, server, publish, crowd, collect, reruns: per stage (wall, cpu, server cpu)."""
    t0 = time.perf_counter()
    fill(url, n)
    fill_s = time.perf_counter() - t0
    port = _free_port()
    env = dict(
        os.environ,
        IMNET_DATA_DIR=str(work),
        IMNET_DATABASE_URL=url,
        IMNET_MTURK_ENDPOINT_URL=f"http://127.0.0.1:{port}",
    )
    env.pop("IMNET_CONFIG", None)
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "imnet",
            "mturk",
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    row: dict[str, Any] = {"items": n, "fill_s": fill_s, "stages": {}}
    try:
        deadline = time.time() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.time() > deadline or server.poll() is not None:
                    raise RuntimeError("mturk server did not start") from None
                time.sleep(0.2)
        c = str(concurrency)

        def stage(name: str, fn: Any) -> Any:
            s0 = _proc_cpu(server.pid)
            wall, cpu, out = fn()
            row["stages"][name] = {
                "wall": wall,
                "cpu": cpu,
                "server_cpu": _proc_cpu(server.pid) - s0,
            }
            return out

        publish = ("mturk", "publish", "--yes", "--concurrency", c)
        collect = ("mturk", "collect", "--no-more", "--concurrency", c)
        row["hits"] = stage("publish", lambda: command(env, *publish))["created"]
        again = stage("publish_rerun", lambda: command(env, *publish))
        row["submitted"] = stage("crowd", lambda: crowd(url, env["IMNET_MTURK_ENDPOINT_URL"]))
        col = stage("collect", lambda: command(env, *collect))
        row["collected"] = col["assignments_new"]
        row["excluded"] = len(col["excluded_workers"])
        col2 = stage("collect_rerun", lambda: command(env, *collect))
        # Every item has an open HIT after the first publish, so a rerun creates nothing.
        ok = (
            again["created"] == 0
            and row["collected"] == row["submitted"]
            and col2["assignments_new"] == 0
            and col2["approved"] == col2["rejected"] == 0
        )
        row["idempotent"] = ok
    finally:
        server.terminate()
        server.wait(timeout=30)
    return row


def exponent(a: float, b: float, na: int, nb: int) -> float:
    return math.log(max(b, 1e-9) / max(a, 1e-9)) / math.log(nb / na)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="2000,20000", help="items per run (comma separated)")
    ap.add_argument("--full", action="store_true", help="add 200,000 items")
    ap.add_argument("--postgres", action="store_true", help="also on PostgreSQL (throwaway server)")
    ap.add_argument("--no-sqlite", action="store_true")
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--no-baseline", action="store_true", help="skip the --concurrency 1 run")
    ap.add_argument("--json", help="also write the rows to this file")
    ap.add_argument("--keep", action="store_true", help="keep the databases (default: removed)")
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    sizes = [int(x) for x in args.sizes.split(",")] + ([200_000] if args.full else [])
    backends = ([] if args.no_sqlite else ["sqlite"]) + (["postgresql"] if args.postgres else [])
    tmp = Path(tempfile.mkdtemp(prefix="imnet-crowd-scale-"))
    pg = None
    if "postgresql" in backends:
        sys.path.append(str(ROOT / "tests"))
        from _servers import start_postgres

        pg = start_postgres()
    rows: list[dict[str, Any]] = []
    print("fill: direct inserts (synsets of 200 candidates + 10 gold); stages through the commands")
    try:
        for backend in backends:
            runs = [(n, args.concurrency) for n in sizes]
            if not args.no_baseline:
                runs.insert(0, (sizes[0], 1))
            for n, conc in runs:
                tag = f"{backend}-{n}-c{conc}"
                work = tmp / tag
                if backend == "sqlite":
                    url = f"sqlite:///{work}/imnet.sqlite3"
                else:
                    assert pg is not None
                    url = pg.create_database(tag.replace("-", "_"))
                row = run_size(url, n, work, conc) | {"backend": backend, "concurrency": conc}
                rows.append(row)
                print(
                    f"{backend:10s} {n:>7d} items conc {conc}: {row['hits']} HITs, "
                    f"{row['submitted']} assignments, fill {row['fill_s']:.1f} s, "
                    f"idempotent {row['idempotent']}"
                )
                for st in STAGES:
                    v = row["stages"][st]
                    print(
                        f"    {st:14s} wall {v['wall']:8.2f} s  cpu {v['cpu']:8.2f} s  "
                        f"server cpu {v['server_cpu']:7.2f} s  {n / max(v['wall'], 1e-9):9.0f} items/s"
                    )
                sys.stdout.flush()
    finally:
        if pg is not None:
            pg.stop()
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    _summary(rows, args.concurrency)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0 if all(r["idempotent"] for r in rows) else 1


def _summary(rows: list[dict[str, Any]], conc: int) -> None:
    print(f"\ngrowth exponent between consecutive sizes (goal <= 1.1), concurrency {conc}:")
    for backend in sorted({r["backend"] for r in rows}):
        mine = [r for r in rows if r["backend"] == backend and r["concurrency"] == conc]
        for a, b in zip(mine, mine[1:], strict=False):
            parts = []
            for st in ("publish", "crowd", "collect"):
                va, vb = a["stages"][st], b["stages"][st]
                ew = exponent(va["wall"], vb["wall"], a["items"], b["items"])
                ec = exponent(va["cpu"], vb["cpu"], a["items"], b["items"])
                parts.append(f"{st} wall {ew:.2f} cpu {ec:.2f}")
            print(f"  {backend:10s} {a['items']:>7d} -> {b['items']:>7d}: " + "; ".join(parts))
        base = [r for r in rows if r["backend"] == backend and r["concurrency"] == 1]
        if base and mine and base[0]["items"] == mine[0]["items"]:
            for st in ("publish", "collect"):
                ratio = base[0]["stages"][st]["wall"] / max(mine[0]["stages"][st]["wall"], 1e-9)
                print(
                    f"  {backend:10s} baseline --concurrency 1 at {mine[0]['items']} items: {st} "
                    f"{base[0]['stages'][st]['wall']:.2f} s vs {mine[0]['stages'][st]['wall']:.2f} s "
                    f"= {ratio:.2f}x"
                )


if __name__ == "__main__":
    sys.exit(main())
