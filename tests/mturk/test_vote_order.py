"""Votes submitted at the same instant are read in an order that the random assignment ids do not set."""

from __future__ import annotations

from curation.consensus.loading import load_synset
from db.models import Assignment, Hit, Vote, Worker
from tests import dbrows

WORKERS = ["W1", "W2", "W3"]


def _add_same_time_votes(s, wnid: str, cid: int, ids: list[str]) -> None:  # type: ignore[no-untyped-def]
    """One vote per worker on `cid`, all at one submit time; worker k's assignment is ids[k]."""
    hit_id = f"H-{wnid}"
    s.add(Hit(hit_id=hit_id, hit_type_id="T", wnid=wnid, status="Disposed", request_token=hit_id))
    s.flush()
    for w, aid in zip(WORKERS, ids, strict=True):
        if s.get(Worker, w) is None:
            s.add(Worker(worker_id=w))
        s.add(Assignment(assignment_id=aid, hit_id=hit_id, worker_id=w, status="Approved"))
        s.flush()
        s.add(
            Vote(
                assignment_id=aid,
                candidate_id=cid,
                worker_id=w,
                wnid=wnid,
                is_match=w != "W2",
                created_at=1234.5,
            )
        )
    s.flush()


def test_ties_on_submit_time_do_not_follow_assignment_ids(app) -> None:  # type: ignore[no-untyped-def]
    # Two synsets, the same crowd answering alike at the same instant; only the (random, as the
    # server names them) assignment ids sort the other way round. A clock too coarse to tell the
    # submits apart must not let those ids order the votes consensus reads.
    with app.Session() as s:
        for wnid, ids in (("n00000031", ["Az", "Am", "Aa"]), ("n00000032", ["Ba", "Bm", "Bz"])):
            dbrows.add_synset(s, wnid, wnid)
            (cid,) = dbrows.add_candidates(s, wnid, 1)
            _add_same_time_votes(s, wnid, cid, ids)
        s.commit()
        seqs = []
        for wnid in ("n00000031", "n00000032"):
            data = load_synset(s, wnid, app.settings)
            assert data is not None
            v = data.votes
            seqs.append(
                [(v.worker_keys[w], int(lab)) for w, lab in zip(v.worker, v.label, strict=True)]
            )
    assert seqs[0] == seqs[1] == [("W1", 1), ("W2", 0), ("W3", 1)]
