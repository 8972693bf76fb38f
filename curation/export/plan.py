"""The export plan: each accepted image's owner class and split, stored as export_item rows in
output order, so that encoding can be shared by processes and machines and resumed."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    from imnet.core.app import App

BATCH = 5000


@dataclass(frozen=True)
class Plan:
    export_id: int
    status: str  # encoding | finalizing | complete
    params: dict[str, Any]  # the export's params_json
    resumed: bool  # an earlier run stored it


def fingerprint(params: dict[str, Any]) -> str:
    """What makes two runs the same export: a stored plan is resumed only on an exact match."""
    return hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()


def find_plan(app: App, name: str, plan_key: str) -> Plan | None:
    """The unfinished export of this name with this fingerprint, if one is stored."""
    from sqlalchemy import select

    from db.models import Export

    with app.Session() as s:
        row = s.execute(
            select(Export.id, Export.status, Export.params_json).where(Export.name == name)
        ).first()
    if row is None or row.status == "complete" or (row.params_json or {}).get("plan") != plan_key:
        return None
    return Plan(int(row.id), row.status, dict(row.params_json), True)


def _gather(
    app: App, set_name: str, allowed: frozenset[str] | None, dropped: Counter[str]
) -> tuple[list[str], dict[str, tuple[str, str, int | None, int]]]:
    """The class set's wnids and, per image, (owner class (dedup rule 3), url, phash, candidate
    id). With `allowed` licences, only candidates under one of them can claim an image."""
    from sqlalchemy import or_, select

    from curation.classes import class_set
    from curation.dedup import Claim, claim_rank
    from curation.export.licences import allowed_by, normalise
    from db.models import Candidate, ClassChoice, Image, Label

    best: dict[str, tuple[tuple[Any, ...], str, str, int | None, int]] = {}
    refused: set[str] = set()
    with app.Session() as s:
        wnids = [w for w, _ in class_set(s, set_name)]
        rows = s.execute(
            select(
                Image.sha256,  # = Candidate.image_sha256 by the join; never null
                Label.wnid,
                Label.decided_by,
                Label.overridden,
                Label.posterior,
                Label.votes_yes,
                Candidate.id,
                Candidate.url,
                Image.phash,
                Candidate.license,
            )
            .join(Candidate, Candidate.id == Label.candidate_id)
            .join(Image, Image.sha256 == Candidate.image_sha256)
            .join(
                ClassChoice, (ClassChoice.wnid == Label.wnid) & (ClassChoice.set_name == set_name)
            )
            .where(
                Label.decision == "accept",
                or_(Image.quality.is_(None), Image.quality != "rejected"),
                Image.near_dup_of.is_(None),
            )
            .execution_options(yield_per=BATCH)
        )
        # Streamed: only the best claim per image is kept, never the whole row set.
        for sha, wnid, by, overridden, post, yes, cid, url, phash, lic in rows:
            if allowed is not None and not allowed_by(normalise(lic), allowed):
                refused.add(sha)
                continue
            claim = Claim(wnid, by == "manual" or bool(overridden), post, yes or 0)
            key = (*claim_rank(claim), cid)  # the same image twice in one class: lowest cid
            if sha not in best or key < best[sha][0]:
                best[sha] = (key, wnid, url or "", phash, cid)
    dropped["license"] += len(refused - set(best))
    return wnids, {sha: (w, url, ph, cid) for sha, (_, w, url, ph, cid) in best.items()}


@dataclass
class Planned:
    """A computed (not yet stored) plan."""

    wnids: list[str]  # kept classes, in class-index order
    rows: list[tuple[str, str, str, str, int]]  # (split, sha256, wnid, url, candidate id)
    dropped: Counter[str]  # reason -> images
    dropped_classes: dict[str, str]


def compute_plan(
    app: App, set_name: str, split_params: Any, allowed: frozenset[str] | None = None
) -> Planned | None:
    """Owner classes, phashes where missing, splits; None when the class set does not exist."""
    from curation.filters import hash_images
    from curation.splits import Item, assign_splits
    from db.models import phash_from_db

    dropped: Counter[str] = Counter()
    set_wnids, images = _gather(app, set_name, allowed, dropped)
    if not set_wnids:
        return None
    if not dropped["license"]:
        del dropped["license"]
    unhashed = sorted(sha for sha, v in images.items() if v[2] is None)
    if unhashed:
        # Splits need every image's phash (near-duplicate leakage check); hash the missing ones.
        for sha, (ph, reason) in hash_images(app, unhashed).items():
            if ph is None:
                dropped[(reason or "unhashed").split(":", 1)[0]] += 1
                images.pop(sha)
            else:
                w, url, _, cid = images[sha]
                images[sha] = (w, url, ph, cid)
    # Every image left has its phash now (the unhashed ones were hashed or dropped above).
    items = [
        Item(sha, w, phash_from_db(cast(int, ph))) for sha, (w, _, ph, _) in sorted(images.items())
    ]
    split = assign_splits(items, split_params)
    del items
    dropped.update(r.split(":", 1)[0] for r in split.dropped.values())
    rows = [
        (part, it.sha256, it.wnid, images[it.sha256][1], images[it.sha256][3])
        for part, members in split.by_split().items()
        for it in members
    ]
    kept = sorted({w for _, _, w, _, _ in rows})
    dropped_classes = dict(split.dropped_classes)
    present = {w for w, _, _, _ in images.values()}
    for w in sorted(set(set_wnids) - present):
        dropped_classes[w] = "no_accepted_images"
    return Planned(kept, rows, dropped, dict(sorted(dropped_classes.items())))


def store_plan(
    app: App,
    name: str,
    fmt: str,
    path: str,
    params: dict[str, Any],
    planned: Planned,
    reset_staging: Callable[[], None],
) -> Plan:
    """Replace any export of this name by the plan, in one transaction (a killed run leaves the
    old state). A run that finds the same plan stored meanwhile shares it; two runs inserting at
    once: the second fails on the unique name, and the caller resumes the plan the first stored.
    The staging folder is emptied before commit, and only for a new plan."""
    from sqlalchemy import delete, insert, select

    from db.models import Export, ExportItem

    index = {w: i for i, w in enumerate(planned.wnids)}
    from db.tx import write_connection

    with write_connection(app.engine) as conn:  # no lock upgrade to fail half-way
        with conn.begin():
            row = conn.execute(
                select(Export.id, Export.status, Export.params_json).where(Export.name == name)
            ).first()
            if (
                row is not None
                and row.status != "complete"
                and row.params_json.get("plan") == params["plan"]
            ):
                # Another run stored this very plan since we looked: share it, never replace it.
                return Plan(int(row.id), row.status, dict(row.params_json), True)
            old = None if row is None else row.id
            if old is not None:
                conn.execute(delete(ExportItem).where(ExportItem.export_id == old))
                conn.execute(delete(Export).where(Export.id == old))
            export_id = conn.scalar(
                insert(Export)
                .values(name=name, format=fmt, path=path, params_json=params, status="encoding")
                .returning(Export.id)
            )
            table = ExportItem.__table__
            for start in range(0, len(planned.rows), BATCH):
                conn.execute(
                    insert(table),
                    [
                        {
                            "export_id": export_id,
                            "image_sha256": sha,
                            "wnid": wnid,
                            "split": part,
                            "class_index": index[wnid],
                            "path": "",
                            "position": start + k,
                            "status": "pending",
                            "url": url,
                            "candidate_id": cid,
                        }
                        for k, (part, sha, wnid, url, cid) in enumerate(
                            planned.rows[start : start + BATCH]
                        )
                    ],
                )
            reset_staging()
    return Plan(int(cast(int, export_id)), "encoding", params, False)
