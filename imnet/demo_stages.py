"""The demo's stages, each a thin call into a stage's Python API that returns its report section."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from imnet.app import App
from imnet.settings import Settings

SOURCES = ["openverse"]
GOLD_PER_SYNSET = 2  # manual labels seeded per synset and polarity, from the fixture's truth


@dataclass
class Ctx:
    """What every stage needs: the app on the demo's settings, the fixture web, where to write."""

    app: App
    settings: Settings
    workdir: Path
    truth: dict[str, str | None]
    synsets: list[str]
    roots: list[str]
    scale: int
    epochs: int
    seed: int
    state: dict[str, Any]
    mturk_url: str = ""
    out: Callable[[str], None] = print


# -- harvest -----------------------------------------------------------------------------------
def stage_synsets(ctx: Ctx) -> dict[str, Any]:
    from harvest.queries import expand_queries
    from harvest.synsets import ensure_synsets

    # Only missing rows are added: refreshing existing ones could change a synset's recorded
    # parent (nltk orders two hypernyms differently from run to run) and so its queries.
    bad = ensure_synsets(ctx.app, ctx.synsets)
    if bad:
        raise RuntimeError(f"not WordNet 3.0 noun synsets: {bad}")
    n = len(ctx.synsets)
    new_queries = expand_queries(ctx.app, sources=SOURCES, wnids=ctx.synsets)
    from sqlalchemy import func, select

    from db.models import Query

    with ctx.app.Session() as s:
        total = s.scalar(select(func.count()).select_from(Query)) or 0
    return {"synsets": n, "roots": ctx.roots, "queries_new": new_queries, "queries": total}


def stage_search(ctx: Ctx) -> dict[str, Any]:
    from harvest.search import run_search

    # Openverse pages 20 results at a time for anonymous clients; take every page there is.
    return run_search(ctx.app, max_pages=50, limit_per_query=1000, sources=SOURCES)


def stage_crawl(ctx: Ctx) -> dict[str, Any]:
    from harvest.cli import status_counts
    from harvest.crawl import crawl

    this_run = crawl(ctx.app, processes=1, progress=False)
    totals = status_counts(ctx.app)
    return {"this_run": this_run, "candidates": totals["candidates"], "reasons": totals["reasons"]}


def release_dead_leases(app: App) -> int:
    """Make rows leased by a dead process on this host claimable now, not when the lease expires.

    A demo killed mid-stage leaves its claimed rows leased (up to crawl_lease_seconds); the rerun
    is the only worker on its database, so waiting would only stall it. The lease owner id is
    `prefix + host:pid:uuid` (db.queue.make_owner).
    """
    from sqlalchemy import select, update

    from db.models import Base, LeaseMixin

    host = socket.gethostname()
    released = 0
    for mapper in Base.registry.mappers:
        cls = mapper.class_
        if not issubclass(cls, LeaseMixin):
            continue
        t = cls.__table__
        now = time.time()
        with app.engine.begin() as conn:
            owners = {
                o
                for (o,) in conn.execute(
                    select(t.c.lease_owner)
                    .where(t.c.lease_owner.is_not(None), t.c.lease_until > now)
                    .distinct()
                )
            }
            for owner in owners:
                try:
                    head, pid_s, _tag = owner.rsplit(":", 2)
                    pid = int(pid_s)
                except ValueError:
                    continue
                if not head.endswith(host) or _alive(pid):
                    continue
                released += conn.execute(
                    update(t).where(t.c.lease_owner == owner).values(lease_until=now - 1)
                ).rowcount
    return released


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# -- curation ----------------------------------------------------------------------------------
def stage_curate(ctx: Ctx) -> dict[str, Any]:
    from curation import run_curation

    return run_curation(ctx.app)


def stage_gold(ctx: Ctx) -> dict[str, Any]:
    """Seed a few hand labels per synset from the fixture's truth (the requester's gold items)."""
    from sqlalchemy import select

    from curation.consensus.plan import eligible_candidates
    from db.models import Candidate, Label

    added = 0
    with ctx.app.Session() as s:
        elig = eligible_candidates(s, ctx.synsets)
        ids = [c for cids in elig.values() for c in cids]
        shas = {
            cid: sha
            for cid, sha in s.execute(
                select(Candidate.id, Candidate.image_sha256).where(Candidate.id.in_(ids))
            )
        }
        manual = {lab.candidate_id for lab in s.scalars(select(Label).where(Label.overridden))}
        for wnid, cids in sorted(elig.items()):
            have_pos = sum(1 for c in cids if c in manual and ctx.truth.get(shas[c]) == wnid)
            have_neg = sum(1 for c in cids if c in manual and ctx.truth.get(shas[c]) != wnid)
            pos = [c for c in cids if c not in manual and ctx.truth.get(shas[c]) == wnid]
            neg = [c for c in cids if c not in manual and ctx.truth.get(shas[c]) != wnid]
            for group, want in (
                (pos, GOLD_PER_SYNSET - have_pos),
                (neg, GOLD_PER_SYNSET - have_neg),
            ):
                for cid in group[: max(0, want)]:
                    accept = ctx.truth.get(shas[cid]) == wnid
                    lab = s.get(Label, cid) or Label(candidate_id=cid, wnid=wnid)
                    lab.decision = "accept" if accept else "reject"
                    lab.posterior = 1.0 if accept else 0.0
                    lab.decided_by = "manual"
                    lab.overridden = True
                    s.add(lab)
                    added += 1
        s.commit()
        total = len(list(s.scalars(select(Label.candidate_id).where(Label.overridden))))
    return {"gold_added": added, "gold_total": total}
