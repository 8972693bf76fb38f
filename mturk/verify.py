"""The verification loop: which items need votes now, and which HITs to make for them.

Consensus (`curation.consensus`) decides labels from votes; this module adds what only the crowd
side knows: votes already asked for in open HITs (`pending_asks`, subtracted by `needs_votes`),
the HITs that ask for the rest (`plan_hits`, gold mixed in, deterministic tokens), and the items
that wait for an open HIT (`open_items`). `publish`, `more` and `imnet mturk needs` call it.
"""

from __future__ import annotations

import functools
import hashlib
import random
import time
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from sqlalchemy import bindparam, func, or_, select
from sqlalchemy.orm import Session

from curation.consensus.decide import decide
from curation.consensus.loading import iter_synset_votes
from db.models import Assignment, Candidate, GoldItem, Hit, HitItem, Label
from mturk.fees import MAX_ASSIGNMENTS_PER_HIT

if TYPE_CHECKING:
    from imnet.core.app import App
    from imnet.core.settings import Settings

# Hit statuses (MTurk's) under which more assignments can still arrive.
OPEN_HIT_STATUSES = ("Assignable", "Unassignable")
# Bound parameters per IN list: under the smallest limit any SQLite build may have (999 before
# 3.32), far under PostgreSQL's 65,535; a statement per chunk costs little beside its rows.
IN_CHUNK = 900


def chunked(values: Iterable[Any], n: int = IN_CHUNK) -> Iterator[list[Any]]:
    """Consecutive lists of at most n values (sorted first when given a set, for stable plans)."""
    seq = sorted(values) if isinstance(values, set | frozenset) else list(values)
    for i in range(0, len(seq), n):
        yield seq[i : i + n]


@functools.cache
def _pending_statement() -> Any:
    # Built once: it runs per synset. Per open HIT its missing assignments: a correlated count
    # by hit_id (indexed), not a count over the whole assignment table.
    got = (
        select(func.count())
        .select_from(Assignment)
        .where(Assignment.hit_id == Hit.hit_id)
        .correlate(Hit)
        .scalar_subquery()
    )
    return (
        select(HitItem.candidate_id, Hit.max_assignments, got)
        .join(Hit, Hit.hit_id == HitItem.hit_id)
        .where(
            Hit.wnid == bindparam("wnid"),
            HitItem.gold_label.is_(None),
            Hit.status.in_(OPEN_HIT_STATUSES),
            or_(Hit.expires_at.is_(None), Hit.expires_at > bindparam("now")),
        )
    )


def pending_asks(session: Session, wnid: str) -> dict[int, int]:
    """Votes already asked for in synset `wnid`: open, unexpired HITs' missing assignments, per
    non-gold item (items without an open HIT are absent)."""
    out: dict[int, int] = defaultdict(int)
    rows = session.connection().execute(_pending_statement(), {"wnid": wnid, "now": time.time()})
    for cid, max_a, n in rows:
        out[cid] += max(0, int(max_a or 0) - int(n or 0))
    return dict(out)


def needs_votes(
    session: Session, wnids: list[str] | None = None, settings: Settings | None = None
) -> dict[int, int]:
    """candidate_id -> how many MORE votes it needs now (absent = none): what the consensus
    policy (`settings.consensus_algorithm`) wants, minus votes already asked for in open HITs.
    Synsets are read one at a time; the result holds one entry per item that needs votes.
    What it learns about the crowd (routing verdicts, insufficient items) is stored, as
    `run_consensus` stores it, so publish routes by the same verdicts it plans with."""
    from curation.consensus.crowd import CrowdTally

    if settings is None:
        from imnet.core.settings import Settings

        settings = Settings()
    out: dict[int, int] = {}
    tally = CrowdTally(min_gold_seen=settings.mturk_min_gold_seen, complete=wnids is None)
    for data in iter_synset_votes(session, wnids, settings):
        res = decide(data, settings.consensus_algorithm, settings)
        tally.add(data, res, settings.consensus_algorithm)
        asked = pending_asks(session, data.wnid)
        more = res.needs - np.array([asked.get(c, 0) for c in res.candidate_ids], dtype=np.int64)
        for i in np.flatnonzero(more > 0).tolist():
            out[res.candidate_ids[i]] = int(more[i])
    # End the read transaction first (SQLite: a write after reads fails if another wrote).
    session.commit()
    tally.write(session)
    session.commit()
    return out


def needs_from_consensus(app: App, wnids: list[str] | None = None) -> dict[int, int]:
    """`needs_votes` for `app`, in a session of its own."""
    with app.Session() as session:
        return needs_votes(session, wnids, app.settings)


def open_items(session: Session) -> set[int]:
    """Non-gold items of this requester's HITs that can still get assignments."""
    return set(
        session.scalars(
            select(HitItem.candidate_id)
            .join(Hit, Hit.hit_id == HitItem.hit_id)
            .where(
                HitItem.gold_label.is_(None),
                Hit.status.in_(OPEN_HIT_STATUSES),
                or_(Hit.expires_at.is_(None), Hit.expires_at > time.time()),
            )
        )
    )


@dataclass
class PlannedHit:
    wnid: str
    max_assignments: int
    # (position, candidate_id, gold_label or None)
    items: list[tuple[int, int, bool | None]] = field(default_factory=list)
    token: str = ""
    # Workers who already voted on its items (a re-ask): they may not take it (mturk/exclusion).
    exclude: list[str] = field(default_factory=list)
    # mturk/warmup.py: a warm-up page (gold only), or a HIT only warmed-up workers may take.
    warmup: bool = False
    warmed_only: bool = False


def gold_pool(session: Session, wnids: list[str]) -> dict[str, list[tuple[int, bool]]]:
    """wnid -> [(candidate_id, answer)]: hand labels first, then the gold `imnet mturk gold`
    promoted. Confident consensus labels are gold only once promoted (capped): taken as gold
    on their own, a cartel's agreed answers would become the check it is measured by."""
    manual: dict[str, list[tuple[int, bool]]] = defaultdict(list)
    promoted: dict[str, list[tuple[int, bool]]] = defaultdict(list)
    for part in chunked(wnids):
        _gold_rows(session, part, manual, promoted)
    out: dict[str, list[tuple[int, bool]]] = {}
    for w in wnids:
        hand = manual.get(w, [])
        seen = {c for c, _a in hand}
        out[w] = hand + [g for g in promoted.get(w, []) if g[0] not in seen]
    return out


def _gold_rows(
    session: Session,
    wnids: list[str],
    manual: dict[str, list[tuple[int, bool]]],
    promoted: dict[str, list[tuple[int, bool]]],
) -> None:
    usable = (Candidate.status == "fetched", Candidate.image_sha256.is_not(None))
    q = (
        select(Label.candidate_id, Label.wnid, Label.decision)
        .join(Candidate, Candidate.id == Label.candidate_id)
        .where(
            Label.wnid.in_(wnids),
            *usable,
            or_(Label.overridden.is_(True), Label.decided_by == "manual"),
        )
        .order_by(Label.candidate_id)
    )
    for cid, wnid, decision in session.execute(q):
        if decision in ("accept", "reject"):
            manual[wnid].append((cid, decision == "accept"))
    g = (
        select(GoldItem.candidate_id, GoldItem.wnid, GoldItem.answer)
        .join(Candidate, Candidate.id == GoldItem.candidate_id)
        .where(GoldItem.wnid.in_(wnids), *usable)
        .order_by(GoldItem.candidate_id)
    )
    for cid, wnid, answer in session.execute(g):
        promoted[wnid].append((cid, bool(answer)))


def _pick_gold(
    yes: list[tuple[int, bool]], no: list[tuple[int, bool]], k: int, rng: random.Random
) -> list[tuple[int, bool]]:
    # Balance yes and no answers, so that ticking everything (or nothing) fails a check. O(k),
    # not O(pool): a synset's pool can hold every item a former round decided.
    n_yes = min(len(yes), max(k - len(no), (k + 1) // 2))
    n_no = min(len(no), k - n_yes)
    return rng.sample(yes, n_yes) + rng.sample(no, n_no)


def plan_hits(session: Session, needs: dict[int, int], settings: Settings) -> list[PlannedHit]:
    """Group items per synset and per votes-needed level (1..9) into HITs with gold mixed in.

    Items nobody voted on yet fill HITs in id order. Re-asks (items with votes) are packed so
    that each HIT's voters, who may not take it (`PlannedHit.exclude`), leave at least as many
    active workers as the HIT asks for: one item a worker answered must not lock them, or the
    whole crowd, out of the others. Where a synset has gold enough for a warm-up page
    (mturk/warmup.py), the HITs are for warmed-up workers only, with their lighter gold, and
    the warm-up HIT that keeps one open (WARMUP_HITS) comes last."""
    from mturk.exclusion import crowd, to_exclude, voters

    if not needs:
        return []
    by_wnid: dict[str, list[int]] = defaultdict(list)
    for part in chunked(needs.keys()):
        for cid, wnid in session.execute(
            select(Candidate.id, Candidate.wnid).where(Candidate.id.in_(part))
        ):
            by_wnid[wnid].append(cid)
    from mturk.warmup import gold_per_hit, plan_warmups, warmup_on

    per_hit = max(1, settings.mturk_images_per_hit)
    pools = gold_pool(session, sorted(by_wnid))
    warm = warmup_on(settings, pools)
    n_gold = max(0, min(gold_per_hit(settings, bool(warm)), per_hit - 1))
    # Warmed-up workers are checked on every `mturk_warmed_gold_every`-th HIT only (counted over
    # the plan, so a rerun plans the same HITs); the others carry one real item fewer.
    every = max(1, settings.mturk_warmed_gold_every) if warm else 1
    made = 0
    voted = voters(session, needs.keys())
    active, activity = crowd(session) if voted else (set(), {})
    plan: list[PlannedHit] = []
    for wnid in sorted(by_wnid):
        levels: dict[int, list[int]] = defaultdict(list)
        for cid in sorted(by_wnid[wnid]):
            levels[min(needs[cid], MAX_ASSIGNMENTS_PER_HIT)].append(cid)
        asked = set(by_wnid[wnid])
        pool = [g for g in pools.get(wnid, []) if g[0] not in asked]
        yes = [g for g in pool if g[1]]
        no = [g for g in pool if not g[1]]
        for level in sorted(levels, reverse=True):
            cids = levels[level]
            gold_here = n_gold if len(pool) >= n_gold else len(pool)
            step = per_hit - gold_here
            fresh = [c for c in cids if c not in voted]
            chunks = [fresh[i : i + step] for i in range(0, len(fresh), step)]
            chunks += _pack_reasks([c for c in cids if c in voted], voted, active, step, level)
            for chunk in chunks:
                seed = hashlib.sha256(f"{wnid}|{level}|{chunk}".encode()).digest()
                rng = random.Random(seed)
                gold = _pick_gold(yes, no, gold_here if made % every == 0 else 0, rng)
                made += 1
                tiles: list[tuple[int, bool | None]] = [(c, None) for c in chunk]
                tiles += [(c, ans) for c, ans in gold]
                rng.shuffle(tiles)
                who: set[str] = set()
                for c in chunk:
                    who |= voted.get(c, set())
                plan.append(
                    PlannedHit(
                        wnid=wnid,
                        max_assignments=level,
                        items=[(pos, c, g) for pos, (c, g) in enumerate(tiles)],
                        exclude=to_exclude(who, activity),
                        warmed_only=bool(warm),
                    )
                )
    return plan + plan_warmups(session, warm, pools, settings)


def _pack_reasks(
    cids: list[int], voted: dict[int, set[str]], active: set[str], step: int, level: int
) -> list[list[int]]:
    """Greedy: items with the same voters side by side; an item joins the current HIT while
    the active workers who voted on none of its items still number `level`, or as many as
    could take its items one by one, whichever is fewer (no split helps beyond that)."""
    out: list[list[int]] = []
    chunk: list[int] = []
    free: set[str] = set()
    want = 0
    for c in sorted(cids, key=lambda c: (sorted(voted[c]), c)):
        alone = active - voted[c]
        left = free - voted[c]
        if chunk and len(chunk) < step and len(left) >= min(want, len(alone)):
            chunk.append(c)
            free, want = left, min(want, len(alone))
            continue
        if chunk:
            out.append(chunk)
        chunk, free, want = [c], alone, min(level, len(alone))
    if chunk:
        out.append(chunk)
    return out


def assign_tokens(session: Session, plan: list[PlannedHit]) -> None:
    """Deterministic UniqueRequestToken per HIT content and round."""
    plan = [h for h in plan if not h.warmup]  # mturk/warmup.py names its own
    firsts = [next(c for _p, c, g in h.items if g is None) for h in plan]
    # Rounds = finished earlier HITs of this item: while a HIT is open the same content gives
    # the same token (so a rerun never duplicates it); once it is done, a new round may ask.
    rounds: dict[int, int] = {}
    for part in chunked(set(firsts)):
        rounds.update(
            session.execute(
                select(HitItem.candidate_id, func.count())
                .join(Hit, Hit.hit_id == HitItem.hit_id)
                .where(
                    HitItem.candidate_id.in_(part),
                    HitItem.gold_label.is_(None),
                    Hit.status.not_in(OPEN_HIT_STATUSES),
                )
                .group_by(HitItem.candidate_id)
            ).all()
        )
    for i, h in enumerate(plan):
        content = "|".join(f"{p}:{c}:{g}" for p, c, g in h.items)
        raw = f"imnet-hit|{h.wnid}|{h.max_assignments}|{rounds.get(firsts[i], 0)}|{content}"
        h.token = "imnet-" + hashlib.sha256(raw.encode()).hexdigest()[:58]


def known_tokens(session: Session, tokens: Iterable[str]) -> set[str]:
    """The request tokens among `tokens` that already have a local HIT row."""
    out: set[str] = set()
    for part in chunked(tokens):
        out.update(session.scalars(select(Hit.request_token).where(Hit.request_token.in_(part))))
    return out
