"""The demo's stages, each a thin call into a stage's Python API that returns its report section."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from imnet.core.app import App
from imnet.core.settings import Settings

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
    from db.status import harvest_counts
    from harvest.crawl import crawl

    this_run = crawl(ctx.app, processes=1, progress=False)
    totals = harvest_counts(ctx.app.engine)
    return {"this_run": this_run, "candidates": totals["candidates"], "reasons": totals["reasons"]}


def release_dead_leases(app: App) -> int:
    """Rows leased by a process of this host that was killed are claimable now, not after the lease:
    the rerun is the only worker on the demo's database, so waiting would only stall it."""
    from db.queue import expire_dead_local

    return expire_dead_local(app.engine)


# -- curation ----------------------------------------------------------------------------------
def stage_curate(ctx: Ctx) -> dict[str, Any]:
    from curation import run_curation

    return run_curation(ctx.app)


def stage_gold(ctx: Ctx) -> dict[str, Any]:
    """Seed a few hand labels per synset from the fixture's truth (the requester's gold items)."""
    from sqlalchemy import select

    from curation.consensus.loading import eligible_candidates
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
            have_pos = sum(1 for c in cids if c in manual and ctx.truth.get(shas[c] or "") == wnid)
            have_neg = sum(1 for c in cids if c in manual and ctx.truth.get(shas[c] or "") != wnid)
            pos = [c for c in cids if c not in manual and ctx.truth.get(shas[c] or "") == wnid]
            neg = [c for c in cids if c not in manual and ctx.truth.get(shas[c] or "") != wnid]
            for group, want in (
                (pos, GOLD_PER_SYNSET - have_pos),
                (neg, GOLD_PER_SYNSET - have_neg),
            ):
                for cid in group[: max(0, want)]:
                    accept = ctx.truth.get(shas[cid] or "") == wnid
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
