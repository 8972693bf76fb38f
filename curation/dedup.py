"""Exact dedup (sha256) across candidates and synsets, and near-duplicate clustering (phash)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from imnet.core.app import App

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


_WRITE_CHUNK = 5000  # rows per executemany and per transaction: short write locks


def exact_dedup(app: App) -> dict[str, Any]:
    """Apply rule 2 and count contents shared by several synsets (rule 3 is applied at export).

    One bound UPDATE per duplicate group, run as executemany in chunks; several processes may run
    it at once (serialised by a lock, the second finds nothing left to mark).
    """
    from sqlalchemy import and_, bindparam, func, select, update

    from db.models import Candidate
    from db.tx import write_lock

    t = Candidate.__table__
    stmt = (
        update(t)
        .where(
            and_(
                t.c.wnid == bindparam("_wnid"),
                t.c.image_sha256 == bindparam("_sha"),
                t.c.status == "fetched",
                t.c.id != bindparam("_keep"),
            )
        )
        .values(status="duplicate", error=bindparam("_error"))
    )
    marked = 0
    with write_lock(app.engine, "curate-dedup"):
        with app.engine.connect() as conn:
            groups = conn.execute(
                select(t.c.wnid, t.c.image_sha256, func.min(t.c.id))
                .where(t.c.status == "fetched", t.c.image_sha256.is_not(None))
                .group_by(t.c.wnid, t.c.image_sha256)
                .having(func.count() > 1)
            ).all()
        params = [
            {"_wnid": w, "_sha": sha, "_keep": keep, "_error": f"same_content: {keep}"}
            for w, sha, keep in groups
        ]
        for i in range(0, len(params), _WRITE_CHUNK):
            with app.engine.begin() as conn:
                marked += conn.execute(stmt, params[i : i + _WRITE_CHUNK]).rowcount or 0
    per_sha = (
        select(t.c.image_sha256)
        .where(t.c.status == "fetched", t.c.image_sha256.is_not(None))
        .group_by(t.c.image_sha256)
        .having(func.count(func.distinct(t.c.wnid)) > 1)
        .subquery()
    )
    with app.engine.connect() as conn:
        shared = conn.execute(select(func.count()).select_from(per_sha)).scalar() or 0
    return {"duplicates_marked": marked, "contents_in_several_synsets": int(shared)}


def _load_hashed(app: App, batch: int = 50_000) -> tuple[np.ndarray, ...]:
    """(sha256 'S64', phash uint64, pixels int64, labelled bool, near_dup_of 'S64', b'' = NULL)
    of every hashed, not rejected image, in sha256 order, read in keyset pages."""
    from sqlalchemy import exists, or_, select

    from db.models import Candidate, Image, Label

    labelled = exists(
        select(Candidate.id)
        .join(Label, Label.candidate_id == Candidate.id)
        .where(Candidate.image_sha256 == Image.sha256)
    )
    cols = (Image.sha256, Image.phash, Image.width, Image.height, labelled, Image.near_dup_of)
    eligible = (Image.phash.is_not(None), or_(Image.quality.is_(None), Image.quality != "rejected"))
    parts: list[tuple[np.ndarray, ...]] = []
    after = ""
    with app.engine.connect() as conn:
        while True:
            rows = conn.execute(
                select(*cols)
                .where(*eligible, Image.sha256 > after)
                .order_by(Image.sha256)
                .limit(batch)
            ).all()
            if not rows:
                break
            after = rows[-1][0]
            sha, ph, w, h, lab, near = zip(*rows, strict=True)
            parts.append(
                (
                    np.array(sha, dtype="S64"),
                    np.array(ph, dtype=np.int64).view(np.uint64),
                    np.array(w, dtype=np.int64) * np.array(h, dtype=np.int64),
                    np.array(lab, dtype=bool),
                    np.array([v or "" for v in near], dtype="S64"),
                )
            )
    if not parts:
        return (
            np.empty(0, "S64"),
            np.empty(0, np.uint64),
            np.empty(0, np.int64),
            np.empty(0, bool),
            np.empty(0, "S64"),
        )
    return tuple(np.concatenate(col) for col in zip(*parts, strict=True))


def mark_near_duplicates(app: App, radius: int | None = None, flip: bool = False) -> dict[str, Any]:
    """Cluster all hashed, not rejected images (rule 4) and store near_dup_of; returns counts.

    Arrays, not Python objects, per image; only the rows whose near_dup_of changes are written,
    as executemany in chunks. Runs serialised across processes (they would compute the same).
    """
    from sqlalchemy import bindparam, update

    from curation.neardup import clusters, self_pairs
    from db.models import Image
    from db.tx import write_lock

    radius = app.settings.phash_radius if radius is None else radius
    with write_lock(app.engine, "curate-neardup"):
        shas, hashes, pixels, labelled, current = _load_hashed(app)
        n = len(shas)
        pairs = self_pairs(hashes, radius, flip=flip)
        labels = clusters(n, pairs) if n else np.empty(0, np.int64)
        # Representative per cluster: labelled first, then most pixels, then smallest sha256
        # (lexsort: the last key is the primary one).
        order = np.lexsort((shas, -pixels, ~labelled, labels))
        first = np.ones(n, dtype=bool)
        first[1:] = labels[order[1:]] != labels[order[:-1]]
        rep_of = np.empty(int(labels.max()) + 1 if n else 0, dtype=np.int64)
        rep_of[labels[order[first]]] = order[first]
        rep = rep_of[labels]
        member = rep != np.arange(n)
        target = np.where(member, shas[rep], np.array(b"", dtype="S64"))
        changed = np.nonzero(target != current)[0]
        t = Image.__table__
        stmt = update(t).where(t.c.sha256 == bindparam("_sha")).values(near_dup_of=bindparam("_t"))
        for i in range(0, len(changed), _WRITE_CHUNK):
            params = [
                {"_sha": shas[k].decode(), "_t": target[k].decode() or None}
                for k in changed[i : i + _WRITE_CHUNK]
            ]
            with app.engine.begin() as conn:
                conn.execute(stmt, params)
    sizes = np.bincount(labels) if n else np.empty(0, np.int64)
    return {
        "hashed_images": n,
        "pairs": len(pairs),
        "clusters": int((sizes > 1).sum()),
        "near_duplicates": int(member.sum()) if n else 0,
        "changed": len(changed),
        "radius": radius,
        "flip": flip,
    }
