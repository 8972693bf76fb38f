"""Benchmark: planning a round of re-asks (every item already voted on) against planning fresh items.

    python bench/reask_plan.py                      # 10k and 100k items on SQLite (~1 min)
    python bench/reask_plan.py --sizes 10000,300000

Per size, on a fresh SQLite database filled by direct inserts (not measured): synsets of 200
items, a crowd of 20 workers, and for the re-ask case 3 votes per item. `plan_hits` is then timed
for every item needing 2 more votes:
  fresh    no item has votes: HITs in id order (the peer: what planning cost before re-asks
           named their voters, and what round 1 costs now)
  reask    every item has 3 votes: voters read per item (index-only), items packed so that each
           HIT leaves enough workers who answered none of its images (mturk/verify.py)
Printed: seconds, HITs planned, the ratio reask / fresh, and the growth exponent between sizes,
log(t2/t1) / log(n2/n1) (goal: <= 1.1).
"""

from __future__ import annotations

import argparse
import math
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

PER_SYNSET = 200
WORKERS = [f"W{k:02d}" for k in range(20)]


def _fill(data_dir: str, n: int, votes: bool):  # type: ignore[no-untyped-def]
    from sqlalchemy import insert

    from db.models import Assignment, Candidate, Hit, Synset, Vote, Worker
    from imnet.core.app import App
    from imnet.core.settings import Settings

    app = App(Settings(data_dir=data_dir))
    rng = random.Random(n)
    n_syn = max(1, n // PER_SYNSET)
    with app.Session() as s:
        s.execute(insert(Synset), [{"wnid": f"n{i:08d}", "lemmas": ["x"]} for i in range(n_syn)])
        cands = [
            {"id": k + 1, "wnid": f"n{k // PER_SYNSET:08d}", "url": f"http://x/{k}"}
            for k in range(n_syn * PER_SYNSET)
        ]
        s.execute(insert(Candidate), [{**c, "status": "fetched"} for c in cands])
        s.execute(insert(Worker), [{"worker_id": w} for w in WORKERS])
        if votes:
            s.execute(
                insert(Hit),
                [
                    {
                        "hit_id": "H",
                        "hit_type_id": "T",
                        "wnid": "n00000000",
                        "status": "Disposed",
                        "request_token": "H",
                    }
                ],
            )
            ass, vs = [], []
            for c in cands:
                for w in rng.sample(WORKERS, 3):
                    aid = f"A{len(ass)}"
                    ass.append({"assignment_id": aid, "hit_id": "H", "worker_id": w})
                    vs.append(
                        {
                            "assignment_id": aid,
                            "candidate_id": c["id"],
                            "worker_id": w,
                            "wnid": c["wnid"],
                            "is_match": rng.random() < 0.3,
                            "created_at": 0.0,
                        }
                    )
            s.execute(insert(Assignment), [{**a, "status": "Approved"} for a in ass])
            s.execute(insert(Vote), vs)
        s.commit()
    return app, [c["id"] for c in cands]


def measure(n: int, votes: bool) -> tuple[float, int]:
    from mturk.verify import plan_hits

    with tempfile.TemporaryDirectory() as d:
        app, ids = _fill(d, n, votes)
        try:
            with app.Session() as s:
                t0 = time.perf_counter()
                plan = plan_hits(s, dict.fromkeys(ids, 2), app.settings)
                return time.perf_counter() - t0, len(plan)
        finally:
            app.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="10000,100000", help="items, comma-separated")
    args = ap.parse_args()
    try:
        sizes = [int(x) for x in args.sizes.split(",")]
        if not sizes or min(sizes) < PER_SYNSET:
            raise ValueError
    except ValueError:
        print(f"bench: --sizes wants integers >= {PER_SYNSET}, comma-separated", file=sys.stderr)
        return 2
    rows = []
    for n in sizes:
        fresh_s, fresh_h = measure(n, votes=False)
        reask_s, reask_h = measure(n, votes=True)
        rows.append((n, reask_s))
        print(
            f"{n:>8,} items: fresh {fresh_s:6.2f}s ({fresh_h:,} HITs)  reask {reask_s:6.2f}s "
            f"({reask_h:,} HITs)  ratio {reask_s / max(fresh_s, 1e-9):.2f}"
        )
    for (n1, t1), (n2, t2) in zip(rows, rows[1:], strict=False):
        print(
            f"reask growth {n1:,} -> {n2:,}: exponent {math.log(t2 / t1) / math.log(n2 / n1):.2f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
