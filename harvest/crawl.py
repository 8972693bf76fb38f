"""Queue-driven crawl: one or more worker processes, a progress bar, and the JSON summary."""

from __future__ import annotations

import asyncio
import json
import logging
import multiprocessing as mp
import queue as stdqueue
import time
from collections import Counter
from typing import Any

from harvest.worker import FINAL, CrawlWorker
from imnet.core.app import App
from imnet.core.settings import Settings

log = logging.getLogger(__name__)
__all__ = ["CrawlWorker", "crawl"]


def _summary(stats: Counter[str], elapsed: float, processes: int) -> dict[str, Any]:
    statuses = {k: v for k, v in stats.items() if k in FINAL}
    reasons = {k[7:]: v for k, v in stats.items() if k.startswith("reason:")}
    n = sum(statuses.values())
    return {
        "candidates": n,
        "status": dict(sorted(statuses.items())),
        "reasons": dict(sorted(reasons.items())),
        "images": stats.get("fetched", 0),
        "bytes": stats.get("bytes", 0),
        "elapsed_s": round(elapsed, 3),
        "candidates_per_s": round(n / elapsed, 2) if elapsed > 0 else 0.0,
        "images_per_s": round(stats.get("fetched", 0) / elapsed, 2) if elapsed > 0 else 0.0,
        "processes": processes,
        "worker_errors": stats.get("worker_errors", 0),
        # Candidates each worker process finished (one entry per process).
        "per_process": [v for k, v in sorted(stats.items()) if k.startswith("process:")] or [n],
    }


def _worker_main(settings: Settings, limit: int | None, msgs: Any) -> None:
    """Entry point of a crawl subprocess: runs one CrawlWorker, sends progress to the parent."""
    logging.basicConfig(level=logging.WARNING)
    app = App(settings)
    try:
        w = CrawlWorker(app, limit, report=lambda c: msgs.put(("progress", dict(c))))
        stats = asyncio.run(w.run())
        msgs.put(("done", dict(stats)))
    finally:
        app.close()


def _claimable(app: App) -> int:
    from db.models import Candidate
    from db.queue import count_claimable, retry_busy

    return retry_busy(lambda: count_claimable(app.engine, Candidate))


class _Bar:
    """tqdm bar with candidates/s, images/s and the commonest failure reasons."""

    def __init__(self, total: int, enabled: bool) -> None:
        self.t0 = time.time()
        self.stats: Counter[str] = Counter()
        self.bar = None
        if enabled:
            from tqdm import tqdm

            # No tqdm monitor thread: worker processes may be forked while the bar exists.
            tqdm.monitor_interval = 0
            self.bar = tqdm(total=total, unit="cand", desc="crawl", dynamic_ncols=True)

    def update(self, delta: dict[str, int]) -> None:
        self.stats.update(delta)
        if self.bar is None:
            return
        n = sum(v for k, v in delta.items() if k in FINAL)
        self.bar.update(n)
        el = max(time.time() - self.t0, 1e-6)
        reasons = Counter({k[7:]: v for k, v in self.stats.items() if k.startswith("reason:")})
        self.bar.set_postfix_str(
            f"img/s={self.stats['fetched'] / el:.0f} fail="
            + ",".join(f"{k}:{v}" for k, v in reasons.most_common(3))
        )

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def crawl(
    app: App,
    processes: int = 1,
    limit: int | None = None,
    stats_json: str | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Fetch pending candidates until none is left (or `limit` were claimed); returns the summary.

    With processes > 1, that many worker processes share the queue (each with its own loop and
    session); more `imnet harvest crawl` runs, on any machine using the same PostgreSQL database
    and blob store, share it the same way. Keys: candidates, status, reasons, images, bytes,
    elapsed_s, candidates_per_s, images_per_s, processes.
    """
    processes = max(1, processes)
    t0 = time.time()
    total = _claimable(app)
    bar = _Bar(min(total, limit) if limit is not None else total, progress)
    try:
        if processes == 1:
            stats = asyncio.run(CrawlWorker(app, limit, report=bar.update).run())
        else:
            app.engine.dispose()
            settings = app.settings
            if settings.crawl_decode_threads < 0:
                # Measured on 2 loaded cores: a loop per core decoding in its own thread beat
                # loops with decode threads (fewer GIL hand-offs, less system time).
                settings = settings.replace(crawl_decode_threads=0)
            stats = _run_processes(settings, processes, limit, bar)
    finally:
        bar.close()
    summary = _summary(stats, time.time() - t0, processes)
    if stats_json:
        with open(stats_json, "w") as f:
            json.dump(summary, f, indent=2, sort_keys=True)
    return summary


def _run_processes(settings: Settings, n: int, limit: int | None, bar: _Bar) -> Counter[str]:
    # fork starts workers at once with everything imported (spawn re-imports for ~1 s of CPU
    # each); the parent holds no open database connection and no extra thread when it forks.
    ctx: Any = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
    if ctx.get_start_method() == "fork":
        # Imported once here, inherited by every child (aiohttp builds its SSL contexts on import).
        import harvest.fetch  # noqa: F401
    msgs = ctx.Queue()
    shares = [None] * n if limit is None else [limit // n + (i < limit % n) for i in range(n)]
    procs = [
        ctx.Process(target=_worker_main, args=(settings, shares[i], msgs), daemon=False)
        for i in range(n)
    ]
    for p in procs:
        p.start()
    finals: list[dict[str, int]] = []
    try:
        while len(finals) < n:
            try:
                kind, payload = msgs.get(timeout=0.5)
            except stdqueue.Empty:
                if all(not p.is_alive() for p in procs):
                    # Drain what the workers sent just before exiting, then stop waiting.
                    try:
                        while True:
                            kind, payload = msgs.get(timeout=0.2)
                            _take(kind, payload, bar, finals)
                    except stdqueue.Empty:
                        break
                continue
            _take(kind, payload, bar, finals)
    finally:
        for p in procs:
            p.join()
    stats: Counter[str] = Counter()
    for i, f in enumerate(finals):
        stats.update(f)
        stats[f"process:{i}"] = sum(v for k, v in f.items() if k in FINAL)
    failed = [p.exitcode for p in procs if p.exitcode != 0]
    if failed:
        log.error(
            "%d crawl worker(s) exited abnormally (exit codes %s); rerun to resume",
            len(failed),
            failed,
        )
        stats["worker_errors"] = len(failed)
    return stats


def _take(kind: str, payload: dict[str, int], bar: _Bar, finals: list[dict[str, int]]) -> None:
    if kind == "progress":
        bar.update(payload)
    elif kind == "done":
        finals.append(payload)
