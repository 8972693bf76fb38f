"""Queue-driven crawl: claim candidates, fetch and validate them, record results in batches."""

from __future__ import annotations

import asyncio
import json
import logging
import multiprocessing as mp
import queue as stdqueue
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from typing import Any

from imnet.app import App
from imnet.settings import Settings

log = logging.getLogger(__name__)
FLUSH_EVERY = 0.5  # seconds between batched result writes
FLUSH_ROWS = 128
FINAL = ("fetched", "failed", "rejected", "duplicate")


class CrawlWorker:
    """One process's crawl: one event loop, one aiohttp session, `crawl_concurrency` fetches."""

    def __init__(
        self,
        app: App,
        limit: int | None = None,
        report: Callable[[Counter[str]], None] | None = None,
    ) -> None:
        from db.queue import make_owner

        self.app = app
        self.s = app.settings
        self.limit = limit
        self.report = report
        self.owner = make_owner("crawl:")
        self.stats: Counter[str] = Counter()
        self.unreported: Counter[str] = Counter()
        self.wnid: dict[int, str] = {}  # claimed and not yet recorded: id -> wnid
        self.results: list[Any] = []
        self.claimed = 0

    # -- database work, run in the io thread pool -------------------------------------------
    def _claim(self, n: int) -> list[dict[str, Any]]:
        from db import queue
        from db.models import Candidate

        return queue.claim(
            self.app.engine,
            Candidate,
            self.owner,
            n,
            self.s.crawl_lease_seconds,
            columns=["wnid", "url"],
        )

    def _others_busy(self) -> float | None:
        """Seconds until the earliest foreign lease ends, when others still hold candidates."""
        from sqlalchemy import func, select

        from db.models import Candidate

        t = Candidate.__table__
        with self.app.engine.connect() as conn:
            until = conn.execute(
                select(func.min(t.c.lease_until)).where(
                    t.c.status == "fetching", t.c.lease_owner != self.owner
                )
            ).scalar()
        return None if until is None else max(0.0, until - time.time())

    def _renew(self, ids: list[int]) -> None:
        from db import queue
        from db.models import Candidate

        queue.renew(self.app.engine, Candidate, self.owner, ids, self.s.crawl_lease_seconds)

    def _record(self, results: list[Any]) -> Counter[str]:
        """Write image rows, then candidate outcomes (one batch) with same-wnid duplicates marked."""
        from sqlalchemy import select

        from db import queue
        from db.models import Candidate, Image
        from harvest._db import insert_ignore, write_lock
        from imnet.blobstore import key_for

        images = {
            r.info.sha256: {
                "sha256": r.info.sha256,
                "blob_key": key_for(r.info.sha256),
                "width": r.info.width,
                "height": r.info.height,
                "format": r.info.format,
                "bytes": r.info.nbytes,
                "created_at": time.time(),
            }
            for r in results
            if r.info is not None
        }
        if images:
            with self.app.engine.begin() as conn:
                insert_ignore(conn, Image.__table__, list(images.values()))
        t = Candidate.__table__
        counts: Counter[str] = Counter()
        now = time.time()
        # Read-then-write under a lock so two processes cannot both keep the same content.
        with write_lock(self.app.engine, "harvest-record"):
            first: dict[tuple[str, str], int] = {}
            shas = list(images)
            with self.app.engine.connect() as conn:
                for i in range(0, len(shas), 500):
                    q = select(t.c.id, t.c.wnid, t.c.image_sha256).where(
                        t.c.status == "fetched", t.c.image_sha256.in_(shas[i : i + 500])
                    )
                    for cid, wnid, sha in conn.execute(q):
                        key = (wnid, sha)
                        first[key] = min(cid, first.get(key, cid))
            rows = []
            for r in sorted(results, key=lambda r: r.id):
                row: dict[str, Any] = {
                    "id": r.id,
                    "status": r.status,
                    "error": r.error,
                    "http_status": r.http_status,
                    "fetched_at": now,
                }
                if r.info is not None:
                    row["image_sha256"] = r.info.sha256
                    key = (self.wnid.get(r.id, ""), r.info.sha256)
                    other = first.setdefault(key, r.id)
                    if other != r.id:
                        row["status"], row["error"] = "duplicate", f"same_content: {other}"
                rows.append(row)
                counts[row["status"]] += 1
                if row["error"]:
                    counts["reason:" + row["error"].split(":", 1)[0]] += 1
            queue.complete(self.app.engine, Candidate, self.owner, rows)
        return counts

    def _release(self, ids: list[int]) -> None:
        from db import queue
        from db.models import Candidate

        queue.release(self.app.engine, Candidate, self.owner, ids)

    # -- the loop --------------------------------------------------------------------------
    async def run(self) -> Counter[str]:
        from harvest.fetch import Fetcher

        s = self.s
        loop = asyncio.get_running_loop()
        io = ThreadPoolExecutor(max_workers=4, thread_name_prefix="crawl-io")
        decoder: Executor
        if s.crawl_decode_processes > 0:
            decoder = ProcessPoolExecutor(
                s.crawl_decode_processes, mp_context=mp.get_context("spawn")
            )
        else:
            # Pillow releases the GIL while decoding, so threads take decoding off the loop.
            decoder = ThreadPoolExecutor(max_workers=2, thread_name_prefix="crawl-decode")
        q: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue(maxsize=max(s.crawl_batch, 1))
        n_tasks = max(1, s.crawl_concurrency)
        flush_now = asyncio.Event()
        done = asyncio.Event()

        async def io_call(fn: Callable[..., Any], *a: Any) -> Any:
            return await loop.run_in_executor(io, fn, *a)

        async def feeder() -> None:
            try:
                while self.limit is None or self.claimed < self.limit:
                    want = (
                        s.crawl_batch
                        if self.limit is None
                        else min(s.crawl_batch, self.limit - self.claimed)
                    )
                    rows = await io_call(self._claim, want)
                    if not rows:
                        wait = await io_call(self._others_busy)
                        if wait is None:
                            break
                        # Another worker (maybe a dead one) holds leases: wait for them to end.
                        await asyncio.sleep(min(0.25, wait + 0.05))
                        continue
                    self.claimed += len(rows)
                    for r in rows:
                        self.wnid[r["id"]] = r["wnid"]
                    for r in rows:
                        await q.put(r)
            finally:
                for _ in range(n_tasks):
                    await q.put(None)

        async def fetcher_task(f: Fetcher) -> None:
            while (item := await q.get()) is not None:
                res = await f.fetch(item["id"], item["url"])
                if res.data is not None:
                    try:
                        # The store hashes the bytes anyway; its digest is the image's key.
                        res.info.sha256 = await io_call(self.app.blobs.put, res.data)
                    except Exception as e:  # a store failure is the candidate's failure
                        res.status, res.error, res.info = "failed", f"blob_error: {e}"[:300], None
                    res.data = None
                self.results.append(res)
                if len(self.results) >= FLUSH_ROWS:
                    flush_now.set()

        async def flusher() -> None:
            while True:
                try:
                    await asyncio.wait_for(flush_now.wait(), FLUSH_EVERY)
                except TimeoutError:
                    pass
                flush_now.clear()
                await flush()
                if done.is_set() and not self.results:
                    return

        async def flush() -> None:
            batch, self.results = self.results, []
            if not batch:
                return
            counts = await io_call(self._record, batch)
            for r in batch:
                self.wnid.pop(r.id, None)
            self.stats.update(counts)
            self.unreported.update(counts)
            nbytes = sum(r.info.nbytes for r in batch if r.info is not None)
            self.stats["bytes"] += nbytes
            self.unreported["bytes"] += nbytes
            if self.report is not None:
                self.report(self.unreported)
                self.unreported = Counter()

        async def renewer() -> None:
            while True:
                await asyncio.sleep(max(0.5, s.crawl_lease_seconds / 3))
                if self.wnid:
                    await io_call(self._renew, list(self.wnid))

        flush_task = asyncio.create_task(flusher())
        renew_task = asyncio.create_task(renewer())
        try:
            async with Fetcher(s, decoder, digest=False) as f:
                await asyncio.gather(feeder(), *(fetcher_task(f) for _ in range(n_tasks)))
            done.set()
            flush_now.set()
            await flush_task
        finally:
            renew_task.cancel()
            if not flush_task.done():
                flush_task.cancel()
            # Record what finished, give back what did not, so nothing waits for a lease to expire.
            if self.results:
                self.stats.update(self._record(self.results))
                for r in self.results:
                    self.wnid.pop(r.id, None)
                self.results = []
            if self.wnid:
                self._release(list(self.wnid))
            io.shutdown(wait=True)
            decoder.shutdown(wait=True, cancel_futures=True)
        return self.stats


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
    from sqlalchemy import func, or_, select

    from db.models import Candidate

    t = Candidate.__table__
    with app.engine.connect() as conn:
        return int(
            conn.execute(
                select(func.count()).where(
                    or_(
                        t.c.status == "pending",
                        (t.c.status == "fetching") & (t.c.lease_until < time.time()),
                    )
                )
            ).scalar()
            or 0
        )


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
            stats = _run_processes(app.settings, processes, limit, bar)
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
    ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
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
