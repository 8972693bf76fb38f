"""The one row factory for tests: synsets, images, candidates, labels, HITs, assignments and votes."""

from __future__ import annotations

import hashlib
import io
import itertools
import random
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from PIL import Image as PILImage
from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from db.models import Assignment, Candidate, Hit, HitItem, Image, Label, Synset, Vote, Worker

if TYPE_CHECKING:
    from imnet.core.app import App

# One counter for every generated id (URLs, HIT and assignment ids), so rows never collide.
_serial = itertools.count(1)


def add_synset(
    session: Session,
    wnid: str,
    lemmas: str | list[str] | None = None,
    parent: str | None = None,
    gloss: str | None = None,
) -> None:
    """The synset row unless it exists; `lemmas` may be one lemma or a list (default: the wnid)."""
    if session.get(Synset, wnid) is not None:
        return
    names = [lemmas] if isinstance(lemmas, str) else lemmas or [wnid]
    session.add(
        Synset(wnid=wnid, lemmas=names, gloss=gloss or f"gloss of {wnid}", parent_wnid=parent)
    )
    session.flush()


def _image_row(
    session: Session,
    sha: str,
    size: tuple[int, int],
    fmt: str,
    nbytes: int,
    quality: str | None = None,
) -> None:
    session.add(
        Image(
            sha256=sha,
            blob_key=f"{sha[:2]}/{sha[2:4]}/{sha}",
            width=size[0],
            height=size[1],
            format=fmt,
            bytes=nbytes,
            quality=quality,
        )
    )
    session.flush()  # no ORM relationships: the image row must exist before its candidates


def add_image(session: Session, blobs: Any, data: bytes, quality: str | None = None) -> str:
    """Store the bytes and an image row (idempotent); returns the sha256."""
    sha = blobs.put(data)
    if session.get(Image, sha) is None:
        try:
            with PILImage.open(io.BytesIO(data)) as im:
                size, fmt = (im.width, im.height), im.format or "?"
        except OSError:
            size, fmt = (0, 0), "?"
        _image_row(session, sha, size, fmt, len(data), quality)
    return sha


def add_candidate(
    session: Session,
    blobs: Any,
    wnid: str,
    data: bytes,
    decision: str | None = "accept",
    posterior: float = 0.999,
    decided_by: str = "dynamic",
    status: str = "fetched",
) -> int:
    """A fetched candidate of wnid for these bytes, with a label when decision is given."""
    add_synset(session, wnid)
    sha = add_image(session, blobs, data)
    c = Candidate(
        wnid=wnid,
        url=f"http://127.0.0.1/{wnid}/{next(_serial)}.jpg",
        status=status,
        image_sha256=sha,
    )
    session.add(c)
    session.flush()
    if decision is not None:
        session.add(
            Label(
                candidate_id=c.id,
                wnid=wnid,
                votes_yes=3,
                votes_no=0,
                posterior=posterior,
                decision=decision,
                decided_by=decided_by,
                overridden=decided_by == "manual",
            )
        )
        session.flush()
    return c.id


def png(colour: tuple[int, int, int], size: tuple[int, int], tag: str) -> bytes:
    """A flat-colour PNG whose bytes end in `tag`, so equal colours still give distinct images."""
    buf = io.BytesIO()
    PILImage.new("RGB", size, colour).save(buf, format="PNG")
    return buf.getvalue() + tag.encode()


def add_candidates(
    session: Session,
    wnid: str,
    n: int,
    blobs: Any | None = None,
    colours: Sequence[tuple[int, int, int]] | None = None,
    quality: str | None = None,
) -> list[int]:
    """n fetched, unlabelled candidates with distinct images; with `blobs`, real PNGs of
    `colours` are stored, without, only the image rows exist (for tests that never read pixels)."""
    ids = []
    for k in range(n):
        serial = next(_serial)
        if blobs is not None:
            colour = colours[k % len(colours)] if colours else (200, 30, 30)
            sha = add_image(session, blobs, png(colour, (64, 48), f"#{wnid}:{serial}"), quality)
        else:
            sha = hashlib.sha256(f"{wnid}:{serial}".encode()).hexdigest()
            _image_row(session, sha, (64, 48), "PNG", 100, quality)
        c = Candidate(
            wnid=wnid,
            url=f"http://127.0.0.1/{wnid}/{serial}.png",
            status="fetched",
            image_sha256=sha,
            title=f"image {k}",
        )
        session.add(c)
        session.flush()
        ids.append(c.id)
    return ids


def add_votes(
    session: Session,
    wnid: str,
    answers: Sequence[tuple[int, str, bool]],
    status: str = "Approved",
    t0: float = 1000.0,
) -> None:
    """Each (candidate_id, worker_id, is_match) becomes a vote in its own one-item assignment."""
    hit_id = f"H{next(_serial)}"
    session.add(
        Hit(hit_id=hit_id, hit_type_id="T", wnid=wnid, status="Disposed", request_token=hit_id)
    )
    session.flush()
    for w in sorted({w for _, w, _ in answers}):
        if session.get(Worker, w) is None:
            session.add(Worker(worker_id=w))
    for k, (cid, worker, match) in enumerate(answers):
        aid = f"A{next(_serial)}"
        session.add(Assignment(assignment_id=aid, hit_id=hit_id, worker_id=worker, status=status))
        session.flush()
        session.add(
            Vote(
                assignment_id=aid,
                candidate_id=cid,
                worker_id=worker,
                wnid=wnid,
                is_match=match,
                created_at=t0 + k,
            )
        )
    session.flush()


def add_open_hit(session: Session, wnid: str, cids: Sequence[int], max_assignments: int) -> str:
    """An assignable HIT over these candidates (in order); returns its id."""
    hit_id = f"H{next(_serial)}"
    session.add(
        Hit(
            hit_id=hit_id,
            hit_type_id="T",
            wnid=wnid,
            status="Assignable",
            request_token=hit_id,
            max_assignments=max_assignments,
        )
    )
    session.flush()
    for pos, cid in enumerate(cids):
        session.add(HitItem(hit_id=hit_id, position=pos, candidate_id=cid))
    session.flush()
    return hit_id


def seed(
    app: App,
    wnid: str,
    n: int,
    *,
    gloss: str = "a test concept",
    frac_yes: float = 0.5,
    rng_seed: int = 0,
    lemmas: list[str] | None = None,
) -> dict[str, Any]:
    """A synset with n fetched candidates (tiny 8x8 PNGs in the blob store), committed; returns
    their ids and a random ground truth {sha256: wnid or None} with `frac_yes` matches."""
    rng = random.Random(f"{wnid}:{rng_seed}")
    truth: dict[str, str | None] = {}
    ids: list[int] = []
    with app.Session() as s:
        add_synset(s, wnid, lemmas or [f"thing_{wnid}"], gloss=gloss)
        for i in range(n):
            colour = (rng.randrange(256), rng.randrange(256), i % 256)
            sha = add_image(s, app.blobs, png(colour, (8, 8), f"{wnid}:{rng_seed}:{i}"))
            c = Candidate(
                wnid=wnid,
                url=f"http://127.0.0.1:9/{wnid}/{rng_seed}/{i}.png",
                status="fetched",
                image_sha256=sha,
                title=f"image {i}",
            )
            s.add(c)
            s.flush()
            ids.append(c.id)
            truth[sha] = wnid if rng.random() < frac_yes else None
        s.commit()
    return {"ids": ids, "truth": truth}


def add_gold(app: App, wnid: str, ids: list[int], truth: dict[str, str | None]) -> None:
    """Hand labels for some candidates (the demo seeds these from its fixture's ground truth)."""
    with app.Session() as s:
        for cid in ids:
            c = s.get(Candidate, cid)
            assert c is not None
            ok = truth[c.image_sha256] == wnid
            s.add(
                Label(
                    candidate_id=cid,
                    wnid=wnid,
                    decision="accept" if ok else "reject",
                    decided_by="manual",
                    overridden=True,
                    posterior=1.0 if ok else 0.0,
                )
            )
        s.commit()


def bulk_seed(app: App, wnid: str, n: int) -> tuple[list[int], dict[str, str | None]]:
    """n fetched candidates by bulk inserts, committed; image rows only, no blobs (for tests whose
    workers never load the images). Returns the ids and a ground truth {sha256: wnid or None}."""
    shas = [hashlib.sha256(f"{wnid}:{i}".encode()).hexdigest() for i in range(n)]
    with app.Session() as s:
        add_synset(s, wnid, [f"thing_{wnid}"], gloss="a test concept")
        s.execute(
            insert(Image),
            [
                {"sha256": h, "blob_key": h, "width": 8, "height": 8, "format": "PNG", "bytes": 1}
                for h in shas
            ],
        )
        s.execute(
            insert(Candidate),
            [
                {"wnid": wnid, "url": f"http://127.0.0.1:9/{wnid}/{i}.png", "status": "fetched"}
                | {"image_sha256": h, "title": f"image {i}"}
                for i, h in enumerate(shas)
            ],
        )
        s.commit()
        ids = list(s.scalars(select(Candidate.id).where(Candidate.wnid == wnid)))
    truth = {h: (wnid if int(h[:2], 16) % 2 else None) for h in shas}
    return ids, truth


def add_pending(app: App, rows: Sequence[tuple[str, str]]) -> None:
    """Pending (wnid, url) candidates from a URL list, committed: the crawler's input."""
    with app.Session() as s, s.begin():
        for wnid, url in rows:
            s.add(Candidate(wnid=wnid, url=url, source="urllist", status="pending"))


def sqlite_with_candidates(tmp_path: Any, n: int, wnid: str = "n02085620") -> str:
    """A file-store SQLite database under tmp_path with `n` smooth PNG candidates of `wnid`."""
    from imnet.core.app import App
    from imnet.core.settings import Settings
    from tests.curation.images import encode, smooth_image

    db = f"sqlite:///{tmp_path / 'imnet.sqlite3'}"
    app = App(Settings(data_dir=str(tmp_path / "data"), database_url=db))
    with app.Session.begin() as s:
        for k in range(n):
            add_candidate(s, app.blobs, wnid, encode(smooth_image(k), "PNG"))
    app.close()
    return db
