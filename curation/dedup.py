"""Exact dedup (sha256) across candidates and synsets, and near-duplicate clustering (phash)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

# The rules (also in the report's README section of the issue note):
# 1. One `image` row per content (sha256): the blob store and harvest already guarantee it.
# 2. Within one synset, two fetched candidates with the same content: the one with the lowest id
#    stays `fetched`, the others become `duplicate` with error `same_content: <kept id>` (harvest
#    does this while crawling; `curate dedup` repairs what concurrent crawlers let through).
# 3. The same content fetched under several synsets stays a candidate of each, so each synset's
#    workers judge it. In an export an image belongs to at most one class: the class whose accepted
#    label is the most confident (a manual decision counts as certain, then higher posterior, then
#    more yes votes), ties broken by the smaller wnid. See `owner_of`.
# 4. Near-duplicates (phash within `phash_radius`) form clusters (connected components); the
#    representative is the image that already has a label, else the one with most pixels, else the
#    smallest sha256; every other member gets `near_dup_of = <representative sha256>` and so leaves
#    human verification and exports. Clusters are recomputed from scratch on each run.


@dataclass(frozen=True)
class Claim:
    """One accepted label of an image for a class."""

    wnid: str
    manual: bool
    posterior: float | None
    votes_yes: int


def claim_rank(c: Claim) -> tuple[Any, ...]:
    """Sort key: the best claim first."""
    post = c.posterior if c.posterior is not None else 0.0
    return (not c.manual, -post, -c.votes_yes, c.wnid)


def owner_of(claims: Iterable[Claim]) -> str:
    """The wnid an image is exported under, among its accepted labels (rule 3)."""
    return min(claims, key=claim_rank).wnid


def exact_dedup(app: Any) -> dict[str, Any]:
    """Apply rule 2 and count contents shared by several synsets (rule 3 is applied at export)."""
    from sqlalchemy import func, select, update

    from db.models import Candidate

    marked = 0
    with app.Session.begin() as s:
        groups = s.execute(
            select(Candidate.wnid, Candidate.image_sha256, func.min(Candidate.id))
            .where(Candidate.status == "fetched", Candidate.image_sha256.is_not(None))
            .group_by(Candidate.wnid, Candidate.image_sha256)
            .having(func.count() > 1)
        ).all()
        for wnid, sha, keep in groups:
            res = s.execute(
                update(Candidate)
                .where(
                    Candidate.wnid == wnid,
                    Candidate.image_sha256 == sha,
                    Candidate.status == "fetched",
                    Candidate.id != keep,
                )
                .values(status="duplicate", error=f"same_content: {keep}")
            )
            marked += res.rowcount or 0
        per_sha = (
            select(Candidate.image_sha256)
            .where(Candidate.status == "fetched", Candidate.image_sha256.is_not(None))
            .group_by(Candidate.image_sha256)
            .having(func.count(func.distinct(Candidate.wnid)) > 1)
            .subquery()
        )
        shared = s.scalar(select(func.count()).select_from(per_sha)) or 0
    return {"duplicates_marked": marked, "contents_in_several_synsets": int(shared)}


def mark_near_duplicates(app: Any, radius: int | None = None, flip: bool = False) -> dict[str, Any]:
    """Cluster all hashed, not rejected images (rule 4) and store near_dup_of; returns counts."""
    from sqlalchemy import or_, select, update

    from curation.neardup import clusters, self_pairs
    from db.models import Candidate, Image, Label, phash_from_db

    radius = app.settings.phash_radius if radius is None else radius
    with app.Session() as s:
        rows = s.execute(
            select(Image.sha256, Image.phash, Image.width, Image.height, Image.near_dup_of)
            .where(
                Image.phash.is_not(None),
                or_(Image.quality.is_(None), Image.quality != "rejected"),
            )
            .order_by(Image.sha256)
        ).all()
        labelled = set(
            s.scalars(
                select(Candidate.image_sha256)
                .join(Label, Label.candidate_id == Candidate.id)
                .where(Candidate.image_sha256.is_not(None))
                .distinct()
            )
        )
    n = len(rows)
    shas = [r[0] for r in rows]
    hashes = np.fromiter((phash_from_db(r[1]) for r in rows), dtype=np.uint64, count=n)
    pairs = self_pairs(hashes, radius, flip=flip)
    labels = clusters(n, pairs) if n else np.empty(0, np.int64)
    # Representative per cluster: labelled first, then most pixels, then smallest sha256.
    best: dict[int, int] = {}
    for k in range(n):
        c = int(labels[k])
        key = (shas[k] not in labelled, -(rows[k][2] * rows[k][3]), shas[k])
        j = best.get(c)
        if j is None or key < (shas[j] not in labelled, -(rows[j][2] * rows[j][3]), shas[j]):
            best[c] = k
    changes = []
    members = 0
    for k in range(n):
        rep = best[int(labels[k])]
        target = None if rep == k else shas[rep]
        if target is not None:
            members += 1
        if rows[k][4] != target:
            changes.append((shas[k], target))
    with app.Session.begin() as s:
        for sha, target in changes:
            s.execute(update(Image).where(Image.sha256 == sha).values(near_dup_of=target))
    n_clusters = len({int(c) for c in labels[np.bincount(labels)[labels] > 1]}) if n else 0
    return {
        "hashed_images": n,
        "pairs": len(pairs),
        "clusters": n_clusters,
        "near_duplicates": members,
        "changed": len(changes),
        "radius": radius,
        "flip": flip,
    }
