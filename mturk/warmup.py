"""Warm-up: a new worker's first HIT is a short page of check images; measured workers' HITs carry one.

Gold (check images with known answers) does two jobs: it measures a new worker (the gold bar,
`mturk_min_worker_gold` after `mturk_min_gold_seen` answers, shuts out spammers) and it keeps
checking a measured one. With the same `mturk_gold_per_hit` tiles in every HIT the first job
sets the rate for the second: 2 in 24 is 2/22 of a check per vote for as long as anyone works.
With a warm-up (`mturk_warmup_gold` > 0, and a synset with that much gold):

* a worker without the `imnet-warmed-up` qualification sees only warm-up HITs: one page of
  `mturk_warmup_gold` check images (yes and no answers balanced), no real items;
* `imnet mturk collect` grants the qualification once a worker has that many gold answers and
  is not shut out (`sync_warmed`); a spammer fails the gold bar on the warm-up, before casting
  one real vote (in a crowd under `mturk_gold_bar_crowd`, only one the test can tell: 3 of 8
  right; an always-yes worker's 4 of 8 is left to routing, which stops it on its votes);
* regular HITs require the qualification and carry `mturk_warmed_gold_per_hit` check images
  (1 in 24: 1/23 per vote); `mturk_warmed_gold_every` N puts them on every Nth HIT only. With
  2 (1/46 per vote) bench/consensus.py's default-mix row took 4.85 votes/item instead of
  4.89, but on its dev seeds a crowd of careful workers at 50% positives accepted 7 ambiguous
  negatives at P(yes) >= 0.997 (1 with every HIT checked; why, not established), so 1 stays
  the default. Collect judges an assignment on its own
  gold only when it holds at least two (one check image cannot tell a careful worker's slip
  from carelessness; the worker-level bar and the consensus's drift detection still apply).

One warm-up HIT is open at a time (`WARMUP_HITS`; it takes MAX_ASSIGNMENTS_PER_HIT new
workers), on the first synset of the publish with enough gold; once it is full, the next publish
opens another. One at a time because a worker may take every open page before collect grants
the qualification: with one, in the publish / collect loop each worker answers one page, as
bench/consensus.py charges. Warm-up HITs are told apart by their request token's prefix.
"""

from __future__ import annotations

import hashlib
import random
import time
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, or_, select

from db.models import Hit, Worker
from mturk.client import CONCURRENCY, call_all, find_or_create_qualification, first_error, paginate
from mturk.fees import MAX_ASSIGNMENTS_PER_HIT

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from imnet.core.app import App
    from imnet.core.settings import Settings
    from mturk.verify import PlannedHit

WARMUP_QUAL_NAME = "imnet-warmed-up"
WARMUP_TOKEN = "imnet-warmup-"
WARMUP_HITS = 1
WARMUP_TITLE = "Warm-up: tick every image that shows the named concept"


def warmup_on(settings: Settings, pools: dict[str, list[tuple[int, bool]]]) -> list[str]:
    """The synsets (sorted) with gold enough for a warm-up page; empty when warm-up is off."""
    need = settings.mturk_warmup_gold
    if need <= 0:
        return []
    return sorted(w for w, pool in pools.items() if len(pool) >= need)


def gold_per_hit(settings: Settings, warm: bool) -> int:
    return settings.mturk_warmed_gold_per_hit if warm else settings.mturk_gold_per_hit


def warmup_qualification(client: Any) -> str:
    return find_or_create_qualification(
        client,
        WARMUP_QUAL_NAME,
        "Workers who have answered this requester's warm-up page of check images.",
    )


def requirement(qual_id: str, held: bool) -> dict[str, str]:
    """Regular HITs: the qualification must exist; warm-up HITs: it must not."""
    return {
        "QualificationTypeId": qual_id,
        "Comparator": "Exists" if held else "DoesNotExist",
        "ActionsGuarded": "DiscoverPreviewAndAccept",
    }


def _warmup_counts(session: Session, wnids: list[str]) -> tuple[dict[str, int], int]:
    """(wnid -> warm-up HITs recorded so far for these synsets, warm-up HITs open now)."""
    from mturk.verify import OPEN_HIT_STATUSES

    warm = Hit.request_token.like(WARMUP_TOKEN + "%")
    made = dict(
        session.execute(
            select(Hit.wnid, func.count()).where(Hit.wnid.in_(wnids), warm).group_by(Hit.wnid)
        ).all()
    )
    open_now = session.scalar(
        select(func.count())
        .select_from(Hit)
        .where(
            Hit.status.in_(OPEN_HIT_STATUSES),
            warm,
            or_(Hit.expires_at.is_(None), Hit.expires_at > time.time()),
        )
    )
    return made, open_now or 0


def plan_warmups(
    session: Session, wnids: list[str], pools: dict[str, list[tuple[int, bool]]], s: Settings
) -> list[PlannedHit]:
    """Warm-up HITs that bring the open ones up to WARMUP_HITS, round-robin over `wnids`.

    Tokens are a hash of the synset and its count of warm-up HITs so far: a rerun before the
    first publish recorded them makes the same ones (the server answers HitAlreadyExists)."""
    from mturk.verify import PlannedHit, _pick_gold

    if not wnids:
        return []
    made, open_now = _warmup_counts(session, wnids)
    want = WARMUP_HITS - open_now
    out: list[PlannedHit] = []
    for i in range(max(0, want)):
        wnid = wnids[i % len(wnids)]
        nth = made.get(wnid, 0)
        made[wnid] = nth + 1
        digest = hashlib.sha256(f"warmup|{wnid}|{nth}".encode()).hexdigest()
        rng = random.Random(digest)
        pool = pools[wnid]
        gold = _pick_gold(
            [g for g in pool if g[1]], [g for g in pool if not g[1]], s.mturk_warmup_gold, rng
        )
        rng.shuffle(gold)
        out.append(
            PlannedHit(
                wnid=wnid,
                max_assignments=MAX_ASSIGNMENTS_PER_HIT,
                items=[(pos, c, ans) for pos, (c, ans) in enumerate(gold)],
                token=(WARMUP_TOKEN + digest)[:64],
                warmup=True,
            )
        )
    return out


def warmed_workers(app: App) -> set[str]:
    """Workers with a warm-up's worth of gold answers who are not shut out."""
    need = app.settings.mturk_warmup_gold
    with app.Session() as session:
        return set(
            session.scalars(
                select(Worker.worker_id).where(
                    Worker.blocked.is_(False), Worker.gold_seen >= max(1, need)
                )
            )
        )


def sync_warmed(
    app: App, client: Any, qual_id: str | None = None, concurrency: int = CONCURRENCY
) -> list[str]:
    """Grant the warm-up qualification to every measured worker who lacks it (never revoked:
    a worker under the gold bar is shut out by the exclusion qualification instead)."""
    if app.settings.mturk_warmup_gold <= 0:
        return []
    want = warmed_workers(app)
    if not want:
        return []
    qual_id = qual_id or warmup_qualification(client)
    have = {
        q["WorkerId"]
        for q in paginate(
            client.list_workers_with_qualification_type,
            "Qualifications",
            QualificationTypeId=qual_id,
            Status="Granted",
        )
    }
    grant = sorted(want - have)

    def do_grant(wid: str) -> None:
        client.associate_qualification_with_worker(
            QualificationTypeId=qual_id, WorkerId=wid, IntegerValue=1, SendNotification=False
        )

    results = call_all(do_grant, grant, concurrency)
    first_error(results)
    return grant
