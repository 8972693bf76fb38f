"""Builds synsets, images, candidates, HITs, assignments and votes directly in the database."""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Sequence

from sqlalchemy.orm import Session

from db.models import Assignment, Candidate, Hit, HitItem, Image, Synset, Vote, Worker

_counter = itertools.count()


def add_synset(session: Session, wnid: str, lemma: str = "thing") -> None:
    session.add(Synset(wnid=wnid, lemmas=[lemma], gloss=f"a {lemma}"))
    session.flush()


def add_candidates(
    session: Session,
    wnid: str,
    n: int,
    blobs: object | None = None,
    colours: Sequence[tuple[int, int, int]] | None = None,
    quality: str | None = None,
) -> list[int]:
    """n fetched candidates with distinct images; with `blobs`, real PNGs of `colours` are stored."""
    ids = []
    for k in range(n):
        serial = next(_counter)
        if blobs is not None:
            import io

            from PIL import Image as PILImage

            colour = colours[k % len(colours)] if colours else (200, 30, 30)
            buf = io.BytesIO()
            PILImage.new("RGB", (64, 48), colour).save(buf, format="PNG")
            data = buf.getvalue() + f"#{wnid}:{serial}".encode()  # distinct content per image
            sha = blobs.put(data)  # type: ignore[attr-defined]
            size = len(data)
        else:
            sha = hashlib.sha256(f"{wnid}:{serial}".encode()).hexdigest()
            size = 100
        session.add(
            Image(
                sha256=sha,
                blob_key=f"{sha[:2]}/{sha[2:4]}/{sha}",
                width=64,
                height=48,
                format="PNG",
                bytes=size,
                quality=quality,
            )
        )
        session.flush()  # no ORM relationships: the image row must exist before the candidate
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
    hit_id = f"H{next(_counter)}"
    session.add(
        Hit(hit_id=hit_id, hit_type_id="T", wnid=wnid, status="Disposed", request_token=hit_id)
    )
    session.flush()
    workers = {w for _, w, _ in answers}
    for w in sorted(workers):
        if session.get(Worker, w) is None:
            session.add(Worker(worker_id=w))
    for k, (cid, worker, match) in enumerate(answers):
        aid = f"A{next(_counter)}"
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
    hit_id = f"H{next(_counter)}"
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
