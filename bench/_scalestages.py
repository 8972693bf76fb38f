"""One pipeline run of bench/scale.py: every stage through the real `imnet` commands, measured.

Two steps are direct row inserts, because no command feeds them at size: the requester's gold
(2 hand labels per class and polarity, as `imnet demo` seeds them) and the crowd's votes beyond
what the simulated workers cast in their bounded time (`votes(direct)`: 5 votes per eligible
candidate from 5 workers right 92% of the time, so consensus, class choice and export run on a
fully voted dataset). Both are marked `direct` in the table.
"""

from __future__ import annotations

import json
import os
import random
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench._scalemeasure import run, timed

IMNET = [sys.executable, "-m", "imnet"]
FILL_WORKERS = 5
FILL_ACCURACY = 0.92
GOLD_PER_CLASS = 2
CHUNK = 5000

# Stage -> the unit its work grows with; the projection scales each stage by its own unit.
UNITS = {
    "synsets": "classes",
    "queries": "classes",
    "import-urls": "candidates",
    "crawl": "candidates",
    "curate": "candidates",
    "gold(direct)": "classes",
    "publish": "candidates",
    "simulate": "assignments",
    "collect": "candidates",
    "votes(direct)": "candidates",
    "consensus": "candidates",
    "classes": "classes",
    "export": "exported",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _app(env: dict[str, str]):  # type: ignore[no-untyped-def]
    from imnet.core.app import App
    from imnet.core.settings import load_settings

    return App(load_settings(env=env))


def seed_gold(env: dict[str, str], truth: dict[str, str | None]) -> int:
    """Hand labels (overridden) for the first GOLD_PER_CLASS right and wrong images per class."""
    from sqlalchemy import insert, select

    from curation.consensus.loading import eligible_candidates
    from db.models import Candidate, Label

    app = _app(env)
    try:
        with app.Session() as s:
            shas = {c: h for c, h in s.execute(select(Candidate.id, Candidate.image_sha256))}
            rows = []
            for wnid, cids in eligible_candidates(s, None).items():
                pos = [c for c in cids if truth.get(shas[c] or "") == wnid][:GOLD_PER_CLASS]
                neg = [c for c in cids if truth.get(shas[c] or "") != wnid][:GOLD_PER_CLASS]
                for c in pos + neg:
                    ok = c in pos
                    rows.append(
                        {
                            "candidate_id": c,
                            "wnid": wnid,
                            "decision": "accept" if ok else "reject",
                            "posterior": 1.0 if ok else 0.0,
                            "decided_by": "manual",
                            "overridden": True,
                            "updated_at": time.time(),
                        }
                    )
            for i in range(0, len(rows), CHUNK):
                s.execute(insert(Label), rows[i : i + CHUNK])
            s.commit()
            return len(rows)
    finally:
        app.close()


def fill_votes(env: dict[str, str], truth: dict[str, str | None], seed: int) -> int:
    """FILL_WORKERS votes on every eligible candidate, one synthetic HIT per class."""
    from sqlalchemy import insert, select

    from curation.consensus.loading import eligible_candidates
    from db.models import Assignment, Candidate, Hit, Vote, Worker

    rng = random.Random(seed)
    app = _app(env)
    now = time.time()
    workers = [f"SCALEFILL{k}" for k in range(FILL_WORKERS)]
    try:
        with app.Session() as s:
            shas = {c: h for c, h in s.execute(select(Candidate.id, Candidate.image_sha256))}
            elig = eligible_candidates(s, None)
            s.execute(
                insert(Worker),
                [{"worker_id": w, "gold_seen": 50, "gold_correct": 46} for w in workers],
            )
            hits, asg, votes = [], [], []
            for wnid, cids in elig.items():
                hid = f"scalefill-{wnid}"
                hits.append(
                    {
                        "hit_id": hid,
                        "hit_type_id": "scalefill",
                        "wnid": wnid,
                        "status": "Disposed",
                        "request_token": hid,
                        "max_assignments": FILL_WORKERS,
                        "reward": "0.00",
                    }
                )
                for w in workers:
                    aid = f"{hid}-{w}"
                    asg.append(
                        {
                            "assignment_id": aid,
                            "hit_id": hid,
                            "worker_id": w,
                            "status": "Approved",
                            "submitted_at": now,
                        }
                    )
                    for c in cids:
                        true = truth.get(shas[c] or "") == wnid
                        right = rng.random() < FILL_ACCURACY
                        votes.append(
                            {
                                "assignment_id": aid,
                                "candidate_id": c,
                                "worker_id": w,
                                "wnid": wnid,
                                "is_match": true if right else not true,
                                "created_at": now,
                            }
                        )
            for model, rows in ((Hit, hits), (Assignment, asg), (Vote, votes)):
                for i in range(0, len(rows), CHUNK):
                    s.execute(insert(model), rows[i : i + CHUNK])
            s.commit()
            return len(votes)
    finally:
        app.close()


def db_counts(env: dict[str, str]) -> dict[str, Any]:
    from sqlalchemy import func, select

    from db.models import Assignment, Candidate, ExportItem, Hit, Image, Label, Vote

    app = _app(env)
    try:
        with app.Session() as s:
            by = {
                k: v
                for k, v in s.execute(
                    select(Candidate.status, func.count()).group_by(Candidate.status)
                )
            }
            labels = {
                k: v
                for k, v in s.execute(select(Label.decision, func.count()).group_by(Label.decision))
            }

            def n(model: Any) -> int:
                return s.scalar(select(func.count()).select_from(model)) or 0

            return {
                "candidates": by,
                "images": n(Image),
                "hits": n(Hit),
                "assignments": n(Assignment),
                "votes": n(Vote),
                "labels": labels,
                "exported": n(ExportItem),
            }
    finally:
        app.close()


def _start_mturk(env: dict[str, str], port: int, log: Path) -> subprocess.Popen:
    proc = subprocess.Popen(
        [*IMNET, "mturk", "serve", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=open(log, "wb"),
        stderr=subprocess.STDOUT,
    )
    deadline = time.time() + 60
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"imnet mturk serve exited: {log.read_text()[-500:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return proc
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError("imnet mturk serve did not listen within 60 s")


def run_pipeline(cfg: dict[str, Any], out=print) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    """Run every stage for one backend and size; a failed stage is recorded and the rest go on."""
    work: Path = cfg["workdir"]
    env: dict[str, str] = cfg["env"]
    servers: dict[str, int] = dict(cfg.get("servers", {}))
    wnids: list[str] = cfg["wnids"]
    truth: dict[str, str | None] = cfg["truth"]["images"]
    (work / "logs").mkdir(parents=True, exist_ok=True)
    (work / "truth.json").write_text(json.dumps(cfg["truth"]))
    stages: dict[str, dict[str, Any]] = {}
    mturk_port = free_port()
    env = {**env, "IMNET_MTURK_ENDPOINT_URL": f"http://127.0.0.1:{mturk_port}"}

    def cmd(name: str, *args: str, items: int) -> dict[str, Any]:
        m = run([*IMNET, *args], env, work / "logs" / f"{name}.log", servers, cfg.get("timeout"))
        m["items"] = items
        if m["rc"] != 0:
            lines = [ln for ln in m["output_tail"].splitlines() if ln.strip()]
            m["error"] = lines[-1] if lines else f"exit code {m['rc']}"
        m.pop("output", None)
        stages[name] = m
        out(_line(name, m))
        return m

    def direct(name: str, fn, items: int) -> None:  # type: ignore[no-untyped-def]
        try:
            value, m = timed(fn, servers)
        except Exception as e:  # recorded like a failed command
            value, m = 0, {"rc": 1, "wall_s": 0, "cpu_s": 0, "rss_peak_mb": None}
            m["error"] = f"{type(e).__name__}: {str(e).splitlines()[0][:300]}"
        m.update(items=items, direct=True, rows=value)
        stages[name] = m
        out(_line(name, m))

    n, classes = cfg["n"], len(wnids)
    if cfg.get("ilsvrc"):
        cmd("synsets", "synsets", "add", "--ilsvrc2012", items=classes)
    else:
        cmd("synsets", "synsets", "add", *wnids, items=classes)
    cmd("queries", "harvest", "queries", "--sources", "openverse", items=classes)
    cmd("import-urls", "harvest", "import-urls", str(cfg["urls"]), items=n)
    cmd(
        "crawl",
        *("harvest", "crawl", "--processes", str(cfg["processes"]), "--no-progress"),
        *("--stats-json", str(work / "crawl.json")),
        items=n,
    )
    cmd("curate", "curate", "all", "--json", items=n)
    direct("gold(direct)", lambda: seed_gold(env, truth), classes)
    mturk = _start_mturk(env, mturk_port, work / "logs" / "mturk-serve.log")
    servers["mturk"] = mturk.pid
    try:
        cmd("publish", "mturk", "publish", "--yes", items=n)
        sim = cmd(
            "simulate",
            *("mturk", "simulate", "--truth", str(work / "truth.json"), "--workers", "20"),
            *("--max-seconds", str(cfg["sim_seconds"]), "--seed", str(cfg["seed"])),
            *("--url", f"http://127.0.0.1:{mturk_port}"),
            items=0,
        )
        cmd("collect", "mturk", "collect", "--no-more", items=n)
    finally:
        mturk.terminate()
        try:
            mturk.wait(20)
        except subprocess.TimeoutExpired:
            mturk.kill()
            mturk.wait()
        servers.pop("mturk", None)
    sim["items"] = db_counts(env)["assignments"]
    direct("votes(direct)", lambda: fill_votes(env, truth, cfg["seed"]), n)
    cmd("consensus", "consensus", "run", "--json", items=n)
    if cfg.get("ilsvrc"):
        cmd("classes", "classes", "import-ilsvrc2012", "--set", "scale", items=classes)
    else:
        min_images = int(env["IMNET_VAL_PER_CLASS"]) + int(env["IMNET_TEST_PER_CLASS"]) + 2
        cmd(
            "classes",
            *("classes", "choose", "--set", "scale", "--n", str(classes)),
            *("--min-images", str(min_images)),
            items=classes,
        )
    exp = cmd(
        "export",
        *("export", "--set", "scale", "--format", "ilsvrc", "--out", str(work / "export")),
        *("--resize", str(cfg["resize"]), "--json"),
        items=0,
    )
    counts = db_counts(env)
    exp["items"] = counts["exported"]
    return {"n": n, "classes": classes, "stages": stages, "counts": counts}


def _line(name: str, m: dict[str, Any]) -> str:
    srv = sum((m.get("server_cpu_s") or {}).values())
    rss = m.get("rss_peak_mb")
    tail = f"  ERROR {m['error']}" if m.get("error") else ""
    return (
        f"  {name:<14} wall {m['wall_s']:8.2f}s  cpu {m['cpu_s']:8.2f}s  servers {srv:7.2f}s  "
        f"rss {'-' if rss is None else f'{rss:.0f} MB':>8}{tail}"
    )


def env_for(base: dict[str, str], work: Path, db_url: str, blob_url: str) -> dict[str, str]:
    """The imnet settings of one run: its own database and blob store, loopback allowed."""
    env = {k: v for k, v in base.items() if not k.startswith("IMNET_")}
    env.update(
        IMNET_DATA_DIR=str(work),
        IMNET_DATABASE_URL=db_url,
        IMNET_BLOB_URL=blob_url,
        IMNET_ALLOW_PRIVATE_HOSTS="true",
        # ILSVRC-like proportions for ~40 candidates per class (ILSVRC: 100 calibration items,
        # 50 val and 100 test images of ~5,000 candidates per class).
        IMNET_CONSENSUS_INITIAL_SUBSET="4",
        IMNET_VAL_PER_CLASS="3",
        IMNET_TEST_PER_CLASS="2",
        IMNET_MTURK_ASSIGNMENT_DURATION="120",
        PYTHONPATH=os.pathsep.join([str(Path(__file__).resolve().parent.parent)]),
    )
    return env
