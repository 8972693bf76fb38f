"""Load on the self-hosted MTurk server: N simulated workers through M HITs; prints assignments/s.

The server runs as its own process (`imnet mturk serve`, as deployed); the bots run here. There is
no peer to compare against (AWS MTurk cannot be reached from here), so this prints throughput and
checks that every submitted answer is listed once through boto3.

    python bench/mturk_load.py [--hits 500] [--workers 50] [--tiles 2] [--assignments 1]
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hits", type=int, default=500)
    ap.add_argument("--workers", type=int, default=50)
    ap.add_argument("--tiles", type=int, default=2, help="images per HIT")
    ap.add_argument("--assignments", type=int, default=1, help="MaxAssignments per HIT (<= 9)")
    ap.add_argument("--database-url", default="", help="default: a fresh SQLite file")
    args = ap.parse_args()

    from imnet.core.settings import Settings
    from mturk.client import make_client, paginate
    from mturk.layout import Tile, html_question, render_task_html
    from mturk.simulate import run_workers

    work = Path(tempfile.mkdtemp(prefix="imnet-mturk-bench-"))
    port = _free_port()
    env = dict(os.environ, IMNET_DATA_DIR=str(work / "data"))
    if args.database_url:
        env["IMNET_DATABASE_URL"] = args.database_url
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
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if server.poll() is not None:
                    raise SystemExit(  # noqa: B904 - the server's own error is the message
                        f"server exited: {server.stderr.read() if server.stderr else ''}"
                    )
                time.sleep(0.2)
        mt = make_client(Settings(mturk_endpoint_url=url))
        type_id = mt.create_hit_type(
            Title="bench", Description="load", Reward="0.01", AssignmentDurationInSeconds=600
        )["HITTypeId"]
        truth: dict[str, str | None] = {}
        t0 = time.time()
        for i in range(args.hits):
            tiles = [Tile(p, f"{i:056d}{p:08d}", f"/images/{i}-{p}") for p in range(args.tiles)]
            for t in tiles:
                truth[t.sha256] = "n0" if (i + t.position) % 2 else None
            mt.create_hit_with_hit_type(
                HITTypeId=type_id,
                MaxAssignments=args.assignments,
                LifetimeInSeconds=3600,
                Question=html_question(render_task_html("n0", ["bench"], "load", tiles)),
                UniqueRequestToken=f"bench-{i}",
            )
        create_s = time.time() - t0
        sim = run_workers(url, truth, n_workers=args.workers, seed=1, max_seconds=900)
        listed = [
            a["AssignmentId"]
            for h in paginate(mt.list_hits, "HITs")
            for a in paginate(mt.list_assignments_for_hit, "Assignments", HITId=h["HITId"])
        ]
        want = args.hits * args.assignments
        ok = sorted(listed) == sorted(sim["assignment_ids"]) and len(listed) == want
        print(
            f"created {args.hits} HITs in {create_s:.1f} s ({args.hits / create_s:.0f} CreateHIT/s)"
        )
        print(
            f"{sim['submitted']} assignments by {args.workers} workers in {sim['seconds']:.1f} s: "
            f"{sim['assignments_per_s']} assignments/s; accept conflicts {sim['conflicts']}, "
            f"refused {sim['refused']}, errors {len(sim['errors'])}"
        )
        print(f"listed through boto3: {len(listed)} of {want}, each once: {ok}")
        print(f"load average: {os.getloadavg()}")
        return 0 if ok else 1
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=10)


if __name__ == "__main__":
    sys.exit(main())
