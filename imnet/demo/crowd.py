"""The demo's crowd: mturk.simulate's bots taking turns, so one seed gives the same votes anywhere.

`mturk simulate` runs its bots in threads: which bot wins which HIT then follows the scheduler
(and HIT ids are random), so the same seed gave recall 0.988, 0.828 and 0.982 in three workdirs.
Here the bots act one at a time in a fixed order; each picks among the HITs it may do by a hash of
(seed, worker, the HIT's request token), a digest of its content that publish derives the same way
everywhere, and answers each image from a generator seeded by (seed, worker, image sha256). Same
database content and seed -> the same assignments and votes, whatever the ports, paths or timing
(on this machine: CI once drew another crowd for one seed, cause not found; tests/demo/).
Nothing here reads the clock to decide: the loops are bounded by counts (pages, turns), not by a
deadline that a slow machine would reach with fewer votes cast than a quiet one.
"""

from __future__ import annotations

import hashlib
import json
import random
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from mturk.simulate import (
    BotStats,
    Http,
    allot,
    answer,
    crowd_report,
    open_task,
    parse_mix,
)

if TYPE_CHECKING:
    from imnet.core.app import App

PAGE = 100  # the worker site's largest page
MAX_PAGES = 1000  # listing bound: 100,000 open HITs, far over any round of the demo


def _tokens(app: App, hit_ids: list[str]) -> dict[str, str]:
    from sqlalchemy import select

    from db.models import Hit

    with app.Session() as s:
        return dict(
            s.execute(select(Hit.hit_id, Hit.request_token).where(Hit.hit_id.in_(hit_ids))).all()
        )


def _open_slots(app: App) -> int:
    """Assignments the open HITs can still take at most: each turn that does a HIT takes one."""
    from sqlalchemy import func, select

    from db.models import Hit
    from mturk.verify import OPEN_HIT_STATUSES

    with app.Session() as s:
        q = select(func.coalesce(func.sum(Hit.max_assignments), 0))
        return int(s.scalar(q.where(Hit.status.in_(OPEN_HIT_STATUSES))) or 0)


def _open_hits(http: Http, base: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for _ in range(MAX_PAGES):  # pages of PAGE until a short one
        q = urlencode({"format": "json", "limit": PAGE, "offset": len(out)})
        _, _, text = http.get(f"{base}/worker/hits?{q}")
        page = json.loads(text)["hits"]
        out += page
        if len(page) < PAGE:
            break
    return out


def _rank(seed: int, worker: str, key: str) -> bytes:
    return hashlib.sha256(f"{seed}|{worker}|{key}".encode()).digest()


def run_crowd(
    app: App,
    base_url: str,
    truth: dict[str, str | None],
    n_workers: int,
    seed: int,
) -> dict[str, Any]:
    """Let n_workers bots take turns until none finds a HIT it may do; run_workers' summary keys.

    Bounded by turns, not time: a turn either takes one of the open HITs' slots or retires its
    bot, so more turns than slots + bots means a server that never says "no more" (reported)."""
    kinds = allot(n_workers, parse_mix(None))
    bots = [BotStats(worker_id=f"SIM{k.upper()}{i:04d}", kind=k) for i, k in enumerate(kinds)]
    base = base_url.rstrip("/")
    start = time.time()
    turns = _open_slots(app) + len(bots)
    errors: list[str] = []
    clients: dict[str, Http] = {}
    for b in bots:
        http = clients[b.worker_id] = Http()
        status, _, text = http.post(f"{base}/worker/signin", data={"worker_id": b.worker_id})
        if status >= 400:
            errors.append(f"OSError: sign-in refused ({status}): {text[:200]}")
    active = [b for b in bots if not errors]
    while active and turns > 0:
        for b in list(active):
            if turns <= 0:
                break
            turns -= 1
            try:
                if not _one_hit(app, clients[b.worker_id], base, b, truth, seed):
                    active.remove(b)
            except (OSError, ValueError, KeyError) as e:  # one bot's failure is reported
                errors.append(f"{type(e).__name__}: {e}")
                active.remove(b)
    if active:
        errors.append(
            f"RuntimeError: {len(active)} bots still found HITs after every turn was used"
        )
    report = crowd_report(bots, kinds, errors, time.time() - start)
    report["timed_out"] = bool(active)  # turns ran out with bots still finding HITs
    return report


def _one_hit(
    app: App,
    http: Http,
    base: str,
    b: BotStats,
    truth: dict[str, str | None],
    seed: int,
) -> bool:
    """Do one HIT as bot b; False when it finds none it may do."""
    hits = _open_hits(http, base)
    if not hits:
        return False
    tokens = _tokens(app, [h["hit_id"] for h in hits])
    hit = min(hits, key=lambda h: _rank(seed, b.worker_id, tokens.get(h["hit_id"], h["hit_id"])))
    want_json = {"Accept": "application/json"}
    status, headers, _ = http.post(
        f"{base}/worker/hits/{hit['hit_id']}/accept", data=b"", headers=want_json
    )
    if status != 303:  # alone on the site, a refused accept would be refused again: stop
        b.conflicts += 1
        return False
    task = open_task(http, base, headers["Location"], b)
    if task is None:
        return False
    form, fields, q = task
    for sha, name in form.tiles:
        rng = random.Random(f"{seed}|{b.worker_id}|{sha}")
        if answer(b.kind, truth.get(sha) == form.wnid and form.wnid != "", rng):
            fields[name] = "yes"
    status, _, _ = http.post(
        q["turkSubmitTo"][0].rstrip("/") + "/mturk/externalSubmit", data=fields, headers=want_json
    )
    if status == 200:
        b.submitted += 1
        b.assignment_ids.append(fields["assignmentId"])
    else:
        b.refused[f"submit_{status}"] += 1
    return True
