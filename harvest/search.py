"""Run query rows against their sources page by page, saving the cursor after every page."""

from __future__ import annotations

import functools
import logging
import time
from collections import Counter
from typing import Any

from sqlalchemy import update

from imnet.core.app import App

log = logging.getLogger(__name__)


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
    (also after a crash: a dead run's lease expires). Returns counts for the report.
    """
    from db import queue
    from db.models import Query
    from harvest.sources import SourceError, get_source

    s = app.settings
    owner = queue.make_owner("search:")
    t = Query.__table__
    where = None
    if sources:
        where = t.c.source.in_(sources)
    if wnids:
        cond = t.c.wnid.in_(wnids)
        where = cond if where is None else (where & cond)
    stats: Counter[str] = Counter()
    adapters: dict[str, Any] = {}
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(unit="query", desc="search", dynamic_ncols=True)
    # Pending queries are walked once per run by a keyset cursor on id, so a query released back
    # for more pages is not claimed again by this run (a NOT IN list of handled ids outgrew the
    # bound-parameter limit and made each claim walk past them). Expired leases of dead runs
    # are taken whatever their id (and kept out of the walk: few, so a short NOT IN list).
    after = 0
    retaken: list[int] = []
    claim = functools.partial(
        queue.claim,
        app.engine,
        Query,
        owner,
        lease_seconds=max(60.0, s.search_timeout * 4),
        claimed="searching",
        columns=["wnid", "text", "source", "next_page", "n_results"],
    )
    while True:
        rows = claim(8, kinds=("expired",), where=where)
        retaken += [r["id"] for r in rows]
        if len(rows) < 8:
            cond = where
            if retaken:
                seen = t.c.id.not_in(retaken)
                cond = seen if cond is None else (cond & seen)
            fresh = claim(8 - len(rows), kinds=("pending",), where=cond, after_id=after)
            after = max([after, *(r["id"] for r in fresh)])
            rows += fresh
        if not rows:
            break
        for row in rows:
            if row["source"] not in adapters:
                adapters[row["source"]] = get_source(row["source"], s)
            outcome = _run_query(
                app,
                owner,
                adapters[row["source"]],
                row,
                max_pages,
                limit_per_query,
                stats,
                SourceError,
            )
            stats[f"queries_{outcome}"] += 1
            if bar is not None:
                bar.update(1)
                bar.set_postfix(candidates=stats["candidates_added"])
    if bar is not None:
        bar.close()
    stats.setdefault("candidates_added", 0)
    return dict(stats)


def _run_query(
    app: App,
    owner: str,
    source: Any,
    row: dict[str, Any],
    max_pages: int,
    limit: int,
    stats: Counter[str],
    source_error: type,
) -> str:
    """Fetch pages of one claimed query; returns the final status written for it."""
    from db import queue
    from db.models import Query

    cursor, n = row["next_page"], row["n_results"] or 0
    pages = 0
    while pages < max_pages and n < limit:
        try:
            page = _page_with_retries(app, source, row["text"], cursor, limit - n)
        except source_error as e:
            stats[f"error_{e.code}"] += 1
            if e.transient:
                # Keep the cursor; the next run tries this page again.
                _save(app, owner, row["id"], cursor, n, str(e)[:500])
                queue.release(app.engine, Query, owner, [row["id"]], claimed="searching")
                return "postponed"
            queue.complete(
                app.engine,
                Query,
                owner,
                [{"id": row["id"], "status": "failed", "error": str(e)[:500]}],
                claimed="searching",
            )
            return "failed"
        added = _add_candidates(app, row, page.hits[: limit - n])
        stats["candidates_added"] += added
        stats["pages"] += 1
        n += len(page.hits[: limit - n])
        cursor = page.next_page
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


def _page_with_retries(app: App, source: Any, text: str, cursor: str | None, want: int) -> Any:
    """One page; 429 waits its Retry-After (capped) and 5xx/timeouts back off, a bounded number of times."""
    from harvest.sources import SourceError

    s = app.settings
    attempt = 0
    while True:
        try:
            return source.search(text, cursor, min(want, source.max_page_size))
        except SourceError as e:
            attempt += 1
            if not e.transient or attempt > s.search_retries:
                raise
            wait = e.retry_after if e.retry_after is not None else min(2.0**attempt, 30.0)
            if wait > s.search_max_wait:
                # The source asks for a longer pause than we are willing to block for.
                raise SourceError(
                    e.code,
                    f"{e.detail}; Retry-After {wait:.0f}s exceeds search_max_wait",
                    e.retry_after,
                ) from None
            log.info("%s: %s; retrying in %.1fs", source.name, e, wait)
            time.sleep(wait)


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
    from harvest._db import insert_ignore

    rows = [
        {
            "wnid": row["wnid"],
            "url": h.url,
            "source": row["source"],
            "source_ref": h.source_ref,
            "query_id": row["id"],
            "title": (h.title or None),
            "license": h.license,
            "meta": h.meta or None,
            "status": "pending",
            "attempts": 0,
        }
        for h in hits
    ]
    with app.engine.begin() as conn:
        return insert_ignore(conn, Candidate.__table__, rows)
