"""Read-only counts for status commands and reports (harvest progress: queries, candidates, reasons)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, func, select

from db.models import Candidate, Query


def harvest_counts(engine: Engine) -> dict[str, Any]:
    """Queries by source and status, candidates by status, and final reasons by their code.

    A reason's code is the text before its first ":" ("http_404", "decode: ..." -> "decode").
    """
    out: dict[str, Any] = {"queries": {}, "candidates": {}, "reasons": {}}
    with engine.connect() as conn:
        for src, st, n in conn.execute(
            select(Query.source, Query.status, func.count()).group_by(Query.source, Query.status)
        ):
            out["queries"].setdefault(src, {})[st] = n
        for st, n in conn.execute(
            select(Candidate.status, func.count()).group_by(Candidate.status)
        ):
            out["candidates"][st] = n
        # Grouped in SQL: one row per distinct message, not one per failed candidate.
        for err, n in conn.execute(
            select(Candidate.error, func.count())
            .where(Candidate.error.is_not(None))
            .group_by(Candidate.error)
        ):
            code = str(err).split(":", 1)[0]
            out["reasons"][code] = out["reasons"].get(code, 0) + n
    return out
