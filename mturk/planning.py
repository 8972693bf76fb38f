"""Which HITs to make: items per synset and votes-needed level, gold mixed in, tokens, cost."""

from __future__ import annotations

import hashlib
import random
import time
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from sqlalchemy import func, or_, select

from db.models import Candidate, Hit, HitItem, Label

# MTurk charges 40% instead of 20% from 10 assignments on, so a HIT never asks for more than 9.
MAX_ASSIGNMENTS_PER_HIT = 9
# Bound parameters per IN list: under the smallest limit any SQLite build may have (999 before
# 3.32), far under PostgreSQL's 65,535; a statement per chunk costs little beside its rows.
IN_CHUNK = 900


def chunked(values: Iterable[Any], n: int = IN_CHUNK) -> Iterator[list[Any]]:
    """Consecutive lists of at most n values (sorted first when given a set, for stable plans)."""
    seq = sorted(values) if isinstance(values, set | frozenset) else list(values)
    for i in range(0, len(seq), n):
        yield seq[i : i + n]


@dataclass
class PlannedHit:
    wnid: str
    max_assignments: int
    # (position, candidate_id, gold_label or None)
    items: list[tuple[int, int, bool | None]] = field(default_factory=list)
    token: str = ""


def fee_rate(max_assignments: int) -> Decimal:
    return Decimal("0.40") if max_assignments >= 10 else Decimal("0.20")


def estimate_cost(plan: list[PlannedHit], reward: str) -> dict[str, Any]:
    """Rewards plus MTurk's commission: 20% (40% for HITs with 10 or more assignments), at least
    $0.01 per assignment."""
    r = Decimal(reward)
    rewards = sum((r * h.max_assignments for h in plan), Decimal(0))
    fees = sum(
        (max(Decimal("0.01"), r * fee_rate(h.max_assignments)) * h.max_assignments for h in plan),
        Decimal(0),
    )
    return {
        "hits": len(plan),
        "assignments": sum(h.max_assignments for h in plan),
        "reward_per_assignment": str(r),
        "rewards": str(rewards.quantize(Decimal("0.01"))),
        "fees": str(fees.quantize(Decimal("0.01"))),
        "total": str((rewards + fees).quantize(Decimal("0.01"))),
    }


def gold_pool(session: Any, wnids: list[str]) -> dict[str, list[tuple[int, bool]]]:
    """wnid -> [(candidate_id, answer)]: hand labels first, then near-certain consensus labels."""
    manual: dict[str, list[tuple[int, bool]]] = defaultdict(list)
    confident: dict[str, list[tuple[int, bool]]] = defaultdict(list)
    for part in chunked(wnids):
        _gold_rows(session, part, manual, confident)
    return {w: manual.get(w, []) + confident.get(w, []) for w in wnids}


def _gold_rows(
    session: Any,
    wnids: list[str],
    manual: dict[str, list[tuple[int, bool]]],
    confident: dict[str, list[tuple[int, bool]]],
) -> None:
    q = (
        select(
            Label.candidate_id,
            Label.wnid,
            Label.decision,
            Label.posterior,
            Label.overridden,
            Label.decided_by,
        )
        .join(Candidate, Candidate.id == Label.candidate_id)
        .where(
            Label.wnid.in_(wnids),
            Candidate.status == "fetched",
            Candidate.image_sha256.is_not(None),
            or_(
                Label.overridden.is_(True),
                Label.decided_by == "manual",
                Label.posterior >= 0.999,
                Label.posterior <= 0.001,
            ),
        )
        .order_by(Label.candidate_id)
    )
    for cid, wnid, decision, posterior, overridden, by in session.execute(q):
        if overridden or by == "manual":
            if decision in ("accept", "reject"):
                manual[wnid].append((cid, decision == "accept"))
        elif posterior is not None:
            confident[wnid].append((cid, posterior >= 0.999))


def _pick_gold(
    yes: list[tuple[int, bool]], no: list[tuple[int, bool]], k: int, rng: random.Random
) -> list[tuple[int, bool]]:
    # Balance yes and no answers, so that ticking everything (or nothing) fails a check. O(k),
    # not O(pool): a synset's pool can hold every item a former round decided.
    n_yes = min(len(yes), max(k - len(no), (k + 1) // 2))
    n_no = min(len(no), k - n_yes)
    return rng.sample(yes, n_yes) + rng.sample(no, n_no)


def plan_hits(session: Any, needs: dict[int, int], settings: Any) -> list[PlannedHit]:
    """Group items per synset and per votes-needed level (1..9) into HITs with gold mixed in."""
    if not needs:
        return []
    by_wnid: dict[str, list[int]] = defaultdict(list)
    for part in chunked(needs.keys()):
        for cid, wnid in session.execute(
            select(Candidate.id, Candidate.wnid).where(Candidate.id.in_(part))
        ):
            by_wnid[wnid].append(cid)
    per_hit = max(1, settings.mturk_images_per_hit)
    n_gold = max(0, min(settings.mturk_gold_per_hit, per_hit - 1))
    pools = gold_pool(session, sorted(by_wnid))
    plan: list[PlannedHit] = []
    for wnid in sorted(by_wnid):
        levels: dict[int, list[int]] = defaultdict(list)
        for cid in sorted(by_wnid[wnid]):
            levels[min(needs[cid], MAX_ASSIGNMENTS_PER_HIT)].append(cid)
        voted = set(by_wnid[wnid])
        pool = [g for g in pools.get(wnid, []) if g[0] not in voted]
        yes = [g for g in pool if g[1]]
        no = [g for g in pool if not g[1]]
        for level in sorted(levels, reverse=True):
            cids = levels[level]
            gold_here = n_gold if len(pool) >= n_gold else len(pool)
            step = per_hit - gold_here
            for i in range(0, len(cids), step):
                chunk = cids[i : i + step]
                seed = hashlib.sha256(f"{wnid}|{level}|{chunk}".encode()).digest()
                rng = random.Random(seed)
                gold = _pick_gold(yes, no, gold_here, rng)
                tiles: list[tuple[int, bool | None]] = [(c, None) for c in chunk]
                tiles += [(c, ans) for c, ans in gold]
                rng.shuffle(tiles)
                plan.append(
                    PlannedHit(
                        wnid=wnid,
                        max_assignments=level,
                        items=[(pos, c, g) for pos, (c, g) in enumerate(tiles)],
                    )
                )
    return plan


def assign_tokens(session: Any, plan: list[PlannedHit]) -> None:
    """Deterministic UniqueRequestToken per HIT content and round."""
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
                    Hit.status.not_in(("Assignable", "Unassignable")),
                )
                .group_by(HitItem.candidate_id)
            ).all()
        )
    for i, h in enumerate(plan):
        content = "|".join(f"{p}:{c}:{g}" for p, c, g in h.items)
        raw = f"imnet-hit|{h.wnid}|{h.max_assignments}|{rounds.get(firsts[i], 0)}|{content}"
        h.token = "imnet-" + hashlib.sha256(raw.encode()).hexdigest()[:58]


def known_tokens(session: Any, tokens: Iterable[str]) -> set[str]:
    """The request tokens among `tokens` that already have a local HIT row."""
    out: set[str] = set()
    for part in chunked(tokens):
        out.update(session.scalars(select(Hit.request_token).where(Hit.request_token.in_(part))))
    return out


def open_items(session: Any) -> set[int]:
    """Non-gold items of this requester's HITs that can still get assignments."""
    return set(
        session.scalars(
            select(HitItem.candidate_id)
            .join(Hit, Hit.hit_id == HitItem.hit_id)
            .where(
                HitItem.gold_label.is_(None),
                Hit.status.in_(("Assignable", "Unassignable")),
                or_(Hit.expires_at.is_(None), Hit.expires_at > time.time()),
            )
        )
    )
