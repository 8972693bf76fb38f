"""Run query rows against their sources page by page, saving the cursor after every page."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from sqlalchemy import ColumnElement, update

from harvest.retry import RetryPolicy, clip
from imnet.core.app import App

log = logging.getLogger(__name__)


# A source whose host failed this many queries in a row (DNS failure, connection refused) is
# taken as unreachable for the rest of the run: offline, 9,690 queries must not each wait.
UNREACHABLE_AFTER = 3


def run_search(
    app: App,
    max_pages: int = 1,
    limit_per_query: int = 100,
    sources: list[str] | None = None,
    wnids: list[str] | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Claim pending queries through the work queue and fetch up to `max_pages` pages of each.

    A query whose source has more pages and that has fewer than `limit_per_query` results goes
    back to `pending` with its cursor in `next_page`, so the next run continues where this stopped
    (also after a crash: a dead run's lease expires). A source that cannot be reached is given up
    after UNREACHABLE_AFTER queries in a row, with one log line; its other queries stay pending
    for a later run. Returns counts for the report.
    """
    return asyncio.run(_run_search(app, max_pages, limit_per_query, sources, wnids, progress))


async def _run_search(
    app: App,
    max_pages: int,
    limit_per_query: int,
    sources: list[str] | None,
    wnids: list[str] | None,
    progress: bool,
) -> dict[str, Any]:
    from db import queue
    from db.models import Query

    s = app.settings
    owner = queue.make_owner("search:")
    t = Query.__table__
    where: ColumnElement[bool] | None = None
    if sources:
        where = t.c.source.in_(sources)
    if wnids:
        cond = t.c.wnid.in_(wnids)
        where = cond if where is None else (where & cond)
    stats: Counter[str] = Counter()
    breaker = Breaker(UNREACHABLE_AFTER)
    policy = RetryPolicy(retries=s.search_retries, base=2.0, cap=30.0, max_wait=s.search_max_wait)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(unit="query", desc="search", dynamic_ncols=True, disable=None)
    claim = functools.partial(
        queue.claim,
        app.engine,
        Query,
        owner,
        lease_seconds=max(60.0, s.search_timeout * 4),
        claimed="searching",
        columns=["wnid", "text", "source", "next_page", "n_results"],
    )
    with contextlib.ExitStack() as stack:
        if bar is not None:
            from tqdm.contrib.logging import logging_redirect_tqdm

            # Log lines (an unreachable source) print above the bar, not glued into it.
            stack.enter_context(logging_redirect_tqdm())
        await _claim_loop(
            app, owner, claim, where, breaker, policy, stats, bar, max_pages, limit_per_query
        )
    if bar is not None:
        bar.close()
    stats.setdefault("candidates_added", 0)
    out: dict[str, Any] = dict(stats)
    if breaker.dead:
        out["sources_unreachable"] = sorted(breaker.dead)
    return out


async def _claim_loop(
    app: App,
    owner: str,
    claim: Callable[..., list[dict[str, Any]]],
    where: Any,
    breaker: Breaker,
    policy: RetryPolicy,
    stats: Counter[str],
    bar: Any,
    max_pages: int,
    limit_per_query: int,
) -> None:
    """Claim batches of queries (keyset walk on id, expired leases first) and run each."""
    from db import queue
    from db.models import Query
    from harvest.sources import get_source
    from harvest.sources.base import new_session

    s, t = app.settings, Query.__table__
    adapters: dict[str, Any] = {}
    # Pending queries are walked once per run by a keyset cursor on id, so a query released back
    # for more pages is not claimed again by this run (a NOT IN list of handled ids outgrew the
    # bound-parameter limit and made each claim walk past them). Expired leases of dead runs
    # are taken whatever their id (and kept out of the walk: few, so a short NOT IN list).
    after = 0
    retaken: list[int] = []
    async with new_session(s) as http:
        while True:
            live = where
            if breaker.dead:
                # Queries of an unreachable source are not claimed: they stay pending, untouched.
                alive = t.c.source.not_in(sorted(breaker.dead))
                live = alive if live is None else (live & alive)
            rows = claim(8, kinds=("expired",), where=live)
            retaken += [r["id"] for r in rows]
            if len(rows) < 8:
                cond = live
                if retaken:
                    seen = t.c.id.not_in(retaken)
                    cond = seen if cond is None else (cond & seen)
                fresh = claim(8 - len(rows), kinds=("pending",), where=cond, after_id=after)
                after = max([after, *(r["id"] for r in fresh)])
                rows += fresh
            if not rows:
                break
            for row in rows:
                if row["source"] in breaker.dead:
                    queue.release(app.engine, Query, owner, [row["id"]], claimed="searching")
                    stats["queries_skipped"] += 1
                    continue
                if row["source"] not in adapters:
                    adapters[row["source"]] = get_source(row["source"], s, http)
                outcome = await _run_query(
                    app,
                    owner,
                    adapters[row["source"]],
                    row,
                    max_pages,
                    limit_per_query,
                    stats,
                    policy,
                    breaker,
                )
                stats[f"queries_{outcome}"] += 1
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(candidates=stats["candidates_added"])


class Breaker:
    """Per-source circuit breaker: `threshold` unreachable failures in a row open it for the run."""

    def __init__(self, threshold: int) -> None:
        self.threshold = threshold
        self.fails: Counter[str] = Counter()
        self.dead: set[str] = set()

    def record(self, source: str, error: Exception | None) -> None:
        from harvest.sources import SourceError

        if not (isinstance(error, SourceError) and error.unreachable):
            self.fails[source] = 0
            return
        self.fails[source] += 1
        if self.fails[source] >= self.threshold and source not in self.dead:
            self.dead.add(source)
            log.warning(
                "%s unreachable (%s); its remaining queries stay pending for a later run",
                source,
                error,
            )


async def _run_query(
    app: App,
    owner: str,
    source: Any,
    row: dict[str, Any],
    max_pages: int,
    limit: int,
    stats: Counter[str],
    policy: RetryPolicy,
    breaker: Breaker,
) -> str:
    """Fetch pages of one claimed query; returns the final status written for it."""
    from db import queue
    from db.models import Query
    from db.tx import storable
    from harvest.sources import SourceError

    cursor, n = row["next_page"], row["n_results"] or 0
    pages = 0
    while pages < max_pages and n < limit:
        try:
            page = await _page_with_retries(policy, source, row["text"], cursor, limit - n)
        except SourceError as e:
            breaker.record(source.name, e)
            stats[f"error_{e.code}"] += 1
            if e.transient:
                # Keep the cursor; the next run tries this page again.
                _save(app, owner, row["id"], cursor, n, clip(str(e), 500))
                queue.release(app.engine, Query, owner, [row["id"]], claimed="searching")
                return "postponed"
            queue.complete(
                app.engine,
                Query,
                owner,
                [{"id": row["id"], "status": "failed", "error": clip(str(e), 500)}],
                claimed="searching",
            )
            return "failed"
        breaker.record(source.name, None)
        added = _add_candidates(app, row, page.hits[: limit - n])
        stats["candidates_added"] += added
        stats["pages"] += 1
        n += len(page.hits[: limit - n])
        cursor = storable(page.next_page)
        pages += 1
        if cursor is None:
            break
        # Persist progress after each page so a crash resumes mid-query.
        _save(app, owner, row["id"], cursor, n, None)
    final = "done" if cursor is None or n >= limit else "pending"
    if final == "pending":
        _save(app, owner, row["id"], cursor, n, None)
        queue.release(app.engine, Query, owner, [row["id"]], claimed="searching")
        return "more_pages"
    queue.complete(
        app.engine,
        Query,
        owner,
        [{"id": row["id"], "status": "done", "next_page": cursor, "n_results": n, "error": None}],
        claimed="searching",
    )
    return "done"


async def _page_with_retries(
    policy: RetryPolicy, source: Any, text: str, cursor: str | None, want: int
) -> Any:
    """One page, retried as harvest/retry.py's policy says (Retry-After honoured, bounded)."""
    from harvest.sources import SourceError

    attempt = 0
    while True:
        try:
            return await source.search(text, cursor, min(want, source.max_page_size))
        except SourceError as e:
            attempt += 1
            wait = policy.delay(attempt, e.code, e.retry_after)
            if wait is None:
                if e.retryable and e.retry_after is not None and e.retry_after > policy.max_wait:
                    # The source asks for a longer pause than we are willing to block for.
                    raise SourceError(
                        e.code,
                        f"{e.detail}; Retry-After {e.retry_after:.0f}s exceeds search_max_wait",
                        e.retry_after,
                    ) from None
                raise
            log.info("%s: %s; retrying in %.1fs", source.name, e, wait)
            await asyncio.sleep(wait)


def _save(app: App, owner: str, qid: int, cursor: str | None, n: int, error: str | None) -> None:
    """Store the cursor of a still-claimed query and extend its lease."""
    from db.models import Query

    t = Query.__table__
    lease = max(60.0, app.settings.search_timeout * 4)
    with app.engine.begin() as conn:
        conn.execute(
            update(t)
            .where(t.c.id == qid, t.c.lease_owner == owner)
            .values(
                next_page=cursor,
                n_results=n,
                error=error,
                lease_until=time.time() + lease,
                updated_at=time.time(),
            )
        )


def _add_candidates(app: App, row: dict[str, Any], hits: list[Any]) -> int:
    from db.models import Candidate
    from db.tx import insert_ignore, storable, storable_json

    # A source's JSON can hold NULs and lone surrogates, which PostgreSQL refuses: text loses
    # them; a URL with one is no URL the source meant, and is left out.
    rows = [
        {
            "wnid": row["wnid"],
            "url": h.url,
            "source": row["source"],
            "source_ref": storable(h.source_ref),
            "query_id": row["id"],
            "title": storable(h.title or None),
            "license": storable(h.license),
            "meta": storable_json(h.meta or None),
            "status": "pending",
            "attempts": 0,
        }
        for h in hits
        if storable(h.url) == h.url
    ]
    with app.engine.begin() as conn:
        return insert_ignore(conn, Candidate.__table__, rows)
