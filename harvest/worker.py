"""One crawl worker: claim candidates, fetch and validate them, record results in batches."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import multiprocessing as mp
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from typing import Any

from imnet.core.app import App

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

        rows = queue.claim(
            self.app.engine,
            Candidate,
            self.owner,
            n,
            self.s.crawl_lease_seconds,
            columns=["wnid", "url"],
        )
        # Noted here in the io thread, not by the awaiting feeder: a feeder cancelled while the
        # claim commits would otherwise leave these rows leased to nobody until the lease ends.
        for r in rows:
            self.wnid[r["id"]] = r["wnid"]
        return rows

    def _others_busy(self) -> float | None:
        """Seconds until the earliest foreign lease ends, when others still hold candidates."""
        from sqlalchemy import func, select

        from db.models import Candidate
        from db.queue import retry_busy

        t = Candidate.__table__

        def read() -> float | None:
            with self.app.engine.connect() as conn:
                return conn.execute(
                    select(func.min(t.c.lease_until)).where(
                        t.c.status == "fetching", t.c.lease_owner != self.owner
                    )
                ).scalar()

        until = retry_busy(read)
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
        from db.tx import insert_ignore, storable, write_lock
        from imnet.core.blobstore import key_for

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
        # Blobs first (crawl puts skip the per-file fsync): no row may point to a lost blob.
        self.app.blobs.sync()
        if images:
            # A busy SQLite database is waited out (bounded), not a reason to stop the worker;
            # the insert ignores rows already there, so a retry is harmless.
            def put_images() -> None:
                with self.app.engine.begin() as conn:
                    insert_ignore(conn, Image.__table__, list(images.values()))

            queue.retry_busy(put_images)
        t = Candidate.__table__
        counts: Counter[str] = Counter()
        now = time.time()
        # Read-then-write under a lock so two processes cannot both keep the same content.
        with write_lock(self.app.engine, "harvest-record"):
            first: dict[tuple[str, str], int] = {}
            shas = list(images)
            with self.app.engine.connect() as conn:
                for i in range(0, len(shas), 500):
                    # Status is checked here, not in SQL: with `status = 'fetched'` in the WHERE,
                    # PostgreSQL with statistics from before the crawl (no row fetched yet) walks
                    # the (status, id) index over every fetched row, for every batch: quadratic.
                    q = select(t.c.id, t.c.wnid, t.c.image_sha256, t.c.status).where(
                        t.c.image_sha256.in_(shas[i : i + 500])
                    )
                    for cid, wnid, sha, status in conn.execute(q):
                        if status != "fetched":
                            continue
                        key = (wnid, sha)
                        first[key] = min(cid, first.get(key, cid))
            rows = []
            for r in sorted(results, key=lambda r: r.id):
                row: dict[str, Any] = {
                    "id": r.id,
                    "status": r.status,
                    "error": storable(r.error),  # a server's reason phrase, a Location
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
        decoder: Executor | None
        if s.crawl_decode_processes > 0:
            decoder = ProcessPoolExecutor(
                s.crawl_decode_processes, mp_context=mp.get_context("spawn")
            )
        elif s.crawl_decode_threads != 0:
            # Pillow releases the GIL while decoding, so threads take decoding off the loop;
            # they also write the blobs (fsync, S3 PUT), which wait rather than compute.
            decoder = ThreadPoolExecutor(
                max_workers=s.crawl_decode_threads if s.crawl_decode_threads > 0 else 2,
                thread_name_prefix="crawl-decode",
            )
        else:
            # Decode in the loop's thread: one process per core keeps every core busy without
            # threads contending for the GIL; blob writes still go to the io threads.
            decoder = None
        # A short queue: rows claimed but not started are rows another process cannot take.
        q: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue(maxsize=max(1, s.crawl_batch))
        n_tasks = max(1, s.crawl_concurrency)
        flush_now = asyncio.Event()
        done = asyncio.Event()

        async def io_call(fn: Callable[..., Any], *a: Any) -> Any:
            return await loop.run_in_executor(io, fn, *a)

        async def feeder() -> None:
            cancelled = False
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
                        await q.put(r)
            except asyncio.CancelledError:
                cancelled = True
                raise
            finally:
                # Ends the fetchers once the queue drains. Not when cancelled (Ctrl-C): the
                # fetchers are cancelled too, and a put on a full queue would wait forever.
                for _ in range(0 if cancelled else n_tasks):
                    await q.put(None)

        async def fetcher_task(f: Fetcher) -> None:
            while (item := await q.get()) is not None:
                # The fetcher stores each valid image's bytes before it returns. Await first:
                # `self.results` is swapped for a new list by each flush meanwhile.
                res = await f.fetch(item["id"], item["url"])
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
            blobs = self.app.blobs
            # Blobs are made durable once per batch (in _record, before their rows are written).
            store = functools.partial(blobs.put, sync=False)
            inline = blobs.local and decoder is None
            async with Fetcher(s, decoder, store, io, store_inline=inline) as f:
                work: asyncio.Future[Any] = asyncio.ensure_future(
                    asyncio.gather(feeder(), *(fetcher_task(f) for _ in range(n_tasks)))
                )
                try:
                    # The flusher only ends early by failing (e.g. the database went away): then
                    # stop fetching, or the leases it never completes keep every other worker
                    # waiting.
                    await asyncio.wait({work, flush_task}, return_when=asyncio.FIRST_COMPLETED)
                    if flush_task.done() and not work.done():
                        flush_task.result()  # raises the flusher's error
                    work.result()
                finally:
                    # Cancelled (Ctrl-C) or failed: stop the fetchers before their session
                    # closes, and take their outcome, or asyncio logs a traceback at exit
                    # ("exception was never retrieved", "Session is closed").
                    if not work.done():
                        work.cancel()
                        with contextlib.suppress(Exception, asyncio.CancelledError):
                            await work
                    elif not work.cancelled():
                        work.exception()
            done.set()
            flush_now.set()
            await flush_task
        finally:
            renew_task.cancel()
            if not flush_task.done():
                flush_task.cancel()
            # Record what finished, give back what did not, so nothing waits for a lease to expire.
            if self.results:
                try:
                    self.stats.update(self._record(self.results))
                    for r in self.results:
                        self.wnid.pop(r.id, None)
                except Exception as e:  # the error that stopped the crawl, most likely
                    log.error("could not record %d finished candidates: %s", len(self.results), e)
                self.results = []
            io.shutdown(wait=True)  # a claim still running there adds to self.wnid first
            if self.wnid:
                self._release(list(self.wnid))
            if decoder is not None:
                decoder.shutdown(wait=True, cancel_futures=True)
        return self.stats
