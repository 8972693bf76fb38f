"""The whole-dataset vote loader from before issue 15: the reference the per-synset loader reproduces."""

from __future__ import annotations

import time


def old_load_votes(session, wnids, settings):
    """The whole-dataset loader before issue 15 (every vote a Python tuple), verbatim but for
    the imports: the reference the per-synset loader must reproduce."""
    from collections import defaultdict

    import numpy as np
    from sqlalchemy import or_, select

    from curation.consensus.base import ACCEPT, REJECT, Votes
    from curation.consensus.dynamic import choose_calibration
    from curation.consensus.loading import DISCARDED_ASSIGNMENTS, SynsetVotes
    from db.models import Assignment, Candidate, Image, Label, Vote, Worker

    s = settings
    q = (
        select(Candidate.id, Candidate.wnid)
        .join(Image, Image.sha256 == Candidate.image_sha256)
        .where(
            Candidate.status == "fetched",
            or_(Image.quality.is_(None), Image.quality != "rejected"),
            Image.near_dup_of.is_(None),
        )
        .order_by(Candidate.wnid, Candidate.id)
    )
    if wnids is not None:
        q = q.where(Candidate.wnid.in_(list(wnids)))
    items = defaultdict(list)
    for cid, wnid in session.execute(q):
        items[wnid].append(cid)
    if not items:
        return []
    wanted = list(items)
    vq = (
        select(Vote.candidate_id, Vote.worker_id, Vote.is_match, Vote.created_at, Vote.wnid)
        .join(Assignment, Assignment.assignment_id == Vote.assignment_id)
        .where(Assignment.status.not_in(DISCARDED_ASSIGNMENTS))
        .order_by(Vote.created_at, Vote.assignment_id, Vote.candidate_id)
    )
    if wnids is not None:
        vq = vq.where(Vote.wnid.in_(wanted))
    votes_by_wnid = defaultdict(list)
    seen_pairs = set()
    for cid, worker_id, is_match, _created, wnid in session.execute(vq):
        if (cid, worker_id) in seen_pairs:
            continue
        seen_pairs.add((cid, worker_id))
        votes_by_wnid[wnid].append((cid, worker_id, int(bool(is_match))))
    mq = select(Label.candidate_id, Label.decision).where(Label.overridden.is_(True))
    if wnids is not None:
        mq = mq.where(Label.wnid.in_(wanted))
    manual = dict(session.execute(mq).all())
    gold = {}
    blocked = set()
    for wid, seen, correct, is_blocked in session.execute(
        select(Worker.worker_id, Worker.gold_seen, Worker.gold_correct, Worker.blocked)
    ):
        gold[wid] = (seen, correct)
        if is_blocked and (not seen or (correct or 0) / seen < s.consensus_min_voter_gold):
            blocked.add(wid)
    out = []
    for wnid in sorted(items):
        cids = items[wnid]
        cset = set(cids)
        rows = [r for r in votes_by_wnid.get(wnid, []) if r[0] in cset]
        workers = sorted({r[1] for r in rows})
        votes = Votes.from_tuples(rows, items=cids, workers=workers)
        calib = choose_calibration(cids, s.consensus_initial_subset, f"imnet-calibration:{wnid}")
        known = np.array(
            [1 if manual.get(c) == ACCEPT else 0 if manual.get(c) == REJECT else -1 for c in cids],
            dtype=np.int64,
        )
        out.append(
            SynsetVotes(
                wnid=wnid,
                candidate_ids=cids,
                votes=votes,
                calibration=np.array([c in calib for c in cids], dtype=bool),
                known=known,
                gold_seen=np.array([gold.get(w, (0, 0))[0] for w in workers], dtype=float),
                gold_correct=np.array([gold.get(w, (0, 0))[1] for w in workers], dtype=float),
                blocked=np.array([w in blocked for w in workers], dtype=bool),
            )
        )
    return out


def old_pending(session, wnids):
    """candidate_id -> votes asked for in open HITs, as the old loader computed them (for the
    selected synsets), the reference for `mturk.verify.pending_asks`."""
    from collections import defaultdict

    from sqlalchemy import func, or_, select

    from db.models import Assignment, Hit, HitItem
    from mturk.verify import OPEN_HIT_STATUSES

    wanted = list(wnids) if wnids is not None else None
    now = time.time()
    got = select(Assignment.hit_id, func.count().label("n")).group_by(Assignment.hit_id).subquery()
    pq = (
        select(HitItem.candidate_id, Hit.max_assignments, func.coalesce(got.c.n, 0))
        .join(Hit, Hit.hit_id == HitItem.hit_id)
        .outerjoin(got, got.c.hit_id == Hit.hit_id)
        .where(
            HitItem.gold_label.is_(None),
            Hit.status.in_(OPEN_HIT_STATUSES),
            or_(Hit.expires_at.is_(None), Hit.expires_at > now),
        )
    )
    if wanted is not None:
        pq = pq.where(Hit.wnid.in_(wanted))
    pending = defaultdict(int)
    for cid, max_a, n in session.execute(pq):
        pending[cid] += max(0, int(max_a or 0) - int(n or 0))
    return dict(pending)
