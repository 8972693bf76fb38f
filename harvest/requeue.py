"""`imnet harvest retry`: put failed or rejected candidates back in the crawl queue, in batches."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from sqlalchemy import ColumnElement, select, update

if TYPE_CHECKING:
    from imnet.core.app import App

REQUEUABLE = ("failed", "rejected")
CODE_RE = re.compile(r"^[a-z0-9_]{1,64}$")


def requeue(app: App, reason: str | None = None, batch: int = 5000) -> int:
    """Set failed/rejected candidates (only those whose reason code is `reason`, if given)
    back to pending with lease, error and HTTP status cleared; returns how many.

    Walks the ids by keyset, `batch` rows per transaction, so millions of rows never sit in one
    UPDATE or one lock; the status filter is repeated in the UPDATE, so a row a crawler changed
    in between is left alone.
    """
    from db.models import Candidate

    if reason is not None and not CODE_RE.match(reason):
        raise ValueError(f"--reason {reason[:40]!r} is not a reason code such as private_address")
    if batch < 1:
        raise ValueError("batch must be at least 1")
    c = Candidate
    cond: ColumnElement[bool] = c.status.in_(REQUEUABLE)
    if reason is not None:
        # Stored reasons are `code` or `code: detail` (harvest/fetch.py).
        cond &= (c.error == reason) | c.error.startswith(f"{reason}:", autoescape=True)
    after, total = 0, 0
    while True:
        with app.engine.begin() as conn:
            ids = list(
                conn.scalars(select(c.id).where(cond, c.id > after).order_by(c.id).limit(batch))
            )
            if not ids:
                return total
            res = conn.execute(
                update(c)
                .where(c.id.in_(ids), cond)
                .values(
                    status="pending",
                    lease_owner=None,
                    lease_until=None,
                    error=None,
                    http_status=None,
                    fetched_at=None,
                    attempts=0,
                )
            )
            total += res.rowcount or 0
        after = ids[-1]


def private_address_hint(n: int) -> str:
    """The line that follows `private_address` rejects: which setting allows them, then what."""
    return (
        f"hint: {n} candidate(s) rejected as private_address (private, loopback or link-local "
        "host); to crawl a local server set allow_private_hosts = true in imnet.toml (or "
        "IMNET_ALLOW_PRIVATE_HOSTS=1), then run `imnet harvest retry --reason private_address`"
    )
