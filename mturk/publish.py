"""`imnet mturk publish`: turn the votes consensus still needs into HITs, safely and idempotently."""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any

from sqlalchemy import insert, select

from db.models import Candidate, Hit, HitItem, Synset
from mturk.client import (
    CONCURRENCY,
    call_all,
    endpoint_url,
    error_code,
    find_or_create_qualification,
    first_error,
    is_self_hosted,
    make_client,
    paginate,
    write_session,
)
from mturk.exclusion import exclusion_requirements
from mturk.fees import estimate_cost
from mturk.layout import Tile, html_question, render_task_html
from mturk.verify import (
    PlannedHit,
    assign_tokens,
    chunked,
    known_tokens,
    needs_from_consensus,
    open_items,
    plan_hits,
)

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from imnet.core.app import App
    from imnet.core.settings import Settings

log = logging.getLogger(__name__)

EXCLUSION_QUAL_NAME = "imnet: excluded for low accuracy on check images"
# HITs per round of concurrent CreateHIT calls and per local write: bounds memory (the questions
# of one batch) and what a crash can leave created on the server but unrecorded here.
PUBLISH_BATCH = 256
HIT_TITLE = "Tick every image that shows the named concept"
HIT_DESCRIPTION = (
    "You see a word with its dictionary definition and a grid of images. Tick each image that "
    "shows it. Some images have known answers and are used to check quality."
)


class PublishError(RuntimeError):
    """Publishing cannot go on; the message is one line for the user."""


def image_src(settings: Settings, sha256: str, url: str) -> str:
    if settings.mturk_image_base_url:
        return settings.mturk_image_base_url.rstrip("/") + "/" + sha256
    if is_self_hosted(settings):
        return endpoint_url(settings) + "/images/" + sha256
    return url


def exclusion_qualification(client: Any) -> str:
    """The qualification that marks excluded workers (created once; found again by name)."""
    return find_or_create_qualification(
        client,
        EXCLUSION_QUAL_NAME,
        "Workers whose answers on check images fell below the requester's bar.",
    )


def hit_type_params(
    settings: Settings,
    qual_id: str,
    routing_id: str | None = None,
    warmed_id: str | None = None,
    warmup: bool = False,
) -> dict[str, Any]:
    """The HIT type: excluded workers (`qual_id`) and, given `routing_id`, workers routing
    stopped giving work (mturk/routing.py) can neither find, preview nor accept its HITs; given
    `warmed_id` (mturk/warmup.py), only workers holding it can, or with `warmup` only those
    without it (the warm-up page)."""
    from mturk.routing import routing_requirement
    from mturk.warmup import WARMUP_TITLE, requirement

    extra = [routing_requirement(routing_id)] if routing_id else []
    if warmed_id:
        extra.append(requirement(warmed_id, held=not warmup))
    return {
        "Title": WARMUP_TITLE if warmup else HIT_TITLE,
        "Description": HIT_DESCRIPTION,
        "Keywords": "image, verification, labeling, imnet",
        "Reward": settings.mturk_reward,
        "AssignmentDurationInSeconds": settings.mturk_assignment_duration,
        "AutoApprovalDelayInSeconds": settings.mturk_auto_approval_delay,
        "QualificationRequirements": [
            {
                "QualificationTypeId": qual_id,
                "Comparator": "DoesNotExist",
                "ActionsGuarded": "DiscoverPreviewAndAccept",
            },
            *extra,
        ],
    }


class _TokenIndex:
    """Which HIT a UniqueRequestToken made. AWS's HitAlreadyExists message may not carry the id;
    the token is also the HIT's RequesterAnnotation, so the HIT list is read once per run (not
    once per conflict: a crash can leave a whole batch to be found)."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.by_token: dict[str, str] | None = None
        self.lock = threading.Lock()

    def find(self, token: str, message: str) -> str | None:
        m = re.search(r"HITId: ([A-Z0-9]{10,64})", message)
        if m:
            return m.group(1)
        with self.lock:
            if self.by_token is None:
                self.by_token = {
                    h["RequesterAnnotation"]: h["HITId"]
                    for h in paginate(self.client.list_hits, "HITs")
                    if h.get("RequesterAnnotation")
                }
            return self.by_token.get(token)


def _tile_info(session: Session, ids: set[int]) -> dict[int, tuple[str | None, str, str | None]]:
    info: dict[int, tuple[str | None, str, str | None]] = {}
    for part in chunked(ids):
        q = select(Candidate.id, Candidate.image_sha256, Candidate.url, Candidate.title)
        for cid, sha, url, title in session.execute(q.where(Candidate.id.in_(part))):
            info[cid] = (sha, url, title)
    return info


def _synsets(session: Session, wnids: set[str]) -> dict[str, tuple[list[str], str]]:
    out: dict[str, tuple[list[str], str]] = {}
    for part in chunked(wnids):
        for sy in session.scalars(select(Synset).where(Synset.wnid.in_(part))):
            out[sy.wnid] = (list(sy.lemmas or []), sy.gloss or "")
    return out


def create_planned(
    app: App,
    client: Any,
    plan: list[PlannedHit],
    type_id: str,
    *,
    concurrency: int = CONCURRENCY,
    batch_size: int = PUBLISH_BATCH,
    reask: tuple[dict[str, Any], dict[str, str]] | None = None,
) -> dict[str, int]:
    """Create each planned HIT once; a retried or repeated run finds the HIT it already made.

    Batches of HITs are created by concurrent requests, then recorded in one transaction; no
    transaction is open during the API calls (the server may share this database). `reask`
    is (the HIT type's parameters, worker -> voter qualification): a HIT whose items have
    voters is created with the type's requirements plus those that keep the voters out
    (CreateHIT registers that type, or finds it, as MTurk does)."""
    s = app.settings
    counts = {"created": 0, "existing": 0}
    with app.Session() as session:
        synsets = _synsets(session, {h.wnid for h in plan})
    tokens = _TokenIndex(client)

    def create(info: dict[int, Any], h: PlannedHit) -> tuple[str, float, bool, str]:
        lemmas, gloss = synsets.get(h.wnid, ([], ""))
        tiles = [
            Tile(p, info[c][0] or "", image_src(s, info[c][0] or "", info[c][1]), info[c][2] or "")
            for p, c, _g in h.items
        ]
        doc = render_task_html(h.wnid, lemmas, gloss, tiles)
        args = {
            "MaxAssignments": h.max_assignments,
            "LifetimeInSeconds": s.mturk_lifetime,
            "Question": html_question(doc),
            "RequesterAnnotation": h.token,
            "UniqueRequestToken": h.token,
        }
        try:
            keep_out = exclusion_requirements(reask[1], h.exclude) if reask else []
            if keep_out and reask is not None:
                params = reask[0]
                quals = [*params["QualificationRequirements"], *keep_out]
                resp = client.create_hit(**{**params, "QualificationRequirements": quals}, **args)
            else:
                resp = client.create_hit_with_hit_type(HITTypeId=type_id, **args)
            hit = resp["HIT"]
            return hit["HITId"], hit["Expiration"].timestamp(), True, hit["HITTypeId"]
        except client.exceptions.RequestError as e:
            if "HitAlreadyExists" not in error_code(e):
                raise
            found = tokens.find(h.token, str(e))
            if found is None:
                raise PublishError(f"HIT with token {h.token} exists but was not found") from e
            hit = client.get_hit(HITId=found)["HIT"]
            return found, hit["Expiration"].timestamp(), False, hit["HITTypeId"]

    for start in range(0, len(plan), batch_size):
        part = plan[start : start + batch_size]
        with app.Session() as session:
            known = known_tokens(session, [h.token for h in part])
            todo = [h for h in part if h.token not in known]
            info = _tile_info(session, {c for h in todo for _p, c, _g in h.items})
        counts["existing"] += len(part) - len(todo)
        results = call_all(partial(create, info), todo, concurrency)
        done = [(h, r) for h, r, err in results if r is not None]
        _record(app, done)
        for _h, (_hid, _exp, fresh, _t) in done:
            counts["created" if fresh else "existing"] += 1
        first_error(results)
    return counts


def _record(app: App, done: list[tuple[PlannedHit, tuple[str, float, bool, str]]]) -> None:
    """Local rows for created HITs, in one transaction (executemany)."""
    if not done:
        return
    s = app.settings
    now = time.time()
    with write_session(app) as session:
        # A HIT recorded meanwhile (a concurrent publish) is left as it is.
        have = known_tokens(session, [h.token for h, _r in done])
        hits, items = [], []
        for h, (hit_id, expires, _fresh, type_id) in done:
            if h.token in have:
                continue
            hits.append(
                {
                    "hit_id": hit_id,
                    "hit_type_id": type_id,
                    "wnid": h.wnid,
                    "status": "Assignable",
                    "request_token": h.token,
                    "max_assignments": h.max_assignments,
                    "reward": s.mturk_reward,
                    "endpoint": endpoint_url(s),
                    "created_at": now,
                    "expires_at": expires,
                }
            )
            items += [
                {"hit_id": hit_id, "position": p, "candidate_id": c, "gold_label": g}
                for p, c, g in h.items
            ]
        if hits:
            session.execute(insert(Hit), hits)
            session.execute(insert(HitItem), items)
        session.commit()


def publish(
    app: App,
    wnids: list[str] | None = None,
    yes: bool = True,
    *,
    client: Any = None,
    needs: dict[int, int] | None = None,
    confirm: Callable[[str], bool] | None = None,
    out: Callable[[str], None] = print,
    concurrency: int = CONCURRENCY,
) -> dict[str, Any]:
    """Publish HITs for every item that still needs votes; returns counts and the cost estimate.

    `yes=False` asks `confirm(prompt)` (default: the terminal) before spending anything;
    `concurrency` is the number of CreateHIT requests in flight.
    """
    if needs is None:
        needs = needs_from_consensus(app, wnids)
    with app.Session() as session:
        # An item with an open HIT waits for it: a second HIT for the same item could let one
        # worker vote on it twice (needs over 9 votes are asked for in rounds).
        busy = open_items(session)
        deferred = sorted(c for c in needs if c in busy)
        needs = {c: n for c, n in needs.items() if c not in busy}
        plan = plan_hits(session, needs, app.settings)
        assign_tokens(session, plan)
        known = known_tokens(session, [h.token for h in plan])
        fresh = [h for h in plan if h.token not in known]
    cost = estimate_cost([h.max_assignments for h in fresh], app.settings.mturk_reward)
    report: dict[str, Any] = {
        "items": len(needs),
        "deferred": len(deferred),
        "planned": len(plan),
        "cost": cost,
        "created": 0,
        "existing": len(plan) - len(fresh),
    }
    if not fresh:
        out(
            f"nothing to publish ({len(needs)} items without an open HIT need votes, "
            f"{len(deferred)} wait for their open HITs)"
        )
        return report
    client = client or make_client(app.settings, connections=2 * concurrency)
    balance = client.get_account_balance().get("AvailableBalance", "?")
    out(
        f"{cost['hits']} HITs, {cost['assignments']} assignments at ${cost['reward_per_assignment']}: "
        f"rewards ${cost['rewards']} + MTurk fees ${cost['fees']} = ${cost['total']} "
        f"(balance ${balance}, endpoint {endpoint_url(app.settings)})"
    )
    if not yes:
        ask = confirm or _ask_terminal
        if not ask(f"Spend up to ${cost['total']}? [y/N] "):
            out("nothing published")
            report["aborted"] = True
            return report
    from mturk.exclusion import sync_voter_quals
    from mturk.routing import routing_qualification, sync_routing

    qual = exclusion_qualification(client)
    routing = routing_qualification(client)
    report["routing"] = sync_routing(app, client, routing, concurrency)
    warmups = [h for h in fresh if h.warmup]
    regular = [h for h in fresh if not h.warmup]
    warmed = None
    if warmups or any(h.warmed_only for h in regular):
        from mturk.warmup import sync_warmed, warmup_qualification

        warmed = warmup_qualification(client)
        report["warmed_up"] = len(sync_warmed(app, client, warmed, concurrency))
    only = warmed if any(h.warmed_only for h in regular) else None
    params = hit_type_params(app.settings, qual, routing, only)
    type_id = client.create_hit_type(**params)["HITTypeId"]
    reask = None
    voters = {w for h in regular for w in h.exclude}
    if voters:
        quals, report["voter_quals_created"] = sync_voter_quals(client, voters, concurrency)
        reask = (params, quals)
    report["reasks"] = sum(1 for h in regular if h.exclude)
    got = create_planned(app, client, regular, type_id, concurrency=concurrency, reask=reask)
    if warmups:
        wparams = hit_type_params(app.settings, qual, None, warmed, warmup=True)
        wtype = client.create_hit_type(**wparams)["HITTypeId"]
        more = create_planned(app, client, warmups, wtype, concurrency=concurrency)
        got = {k: got[k] + more[k] for k in got}
        report["warmups"] = len(warmups)
    report["created"] = got["created"]
    report["existing"] += got["existing"]
    report["hit_type_id"] = type_id
    out(f"published {got['created']} HITs ({report['existing']} already existed)")
    return report


def _ask_terminal(prompt: str) -> bool:
    import sys

    if not sys.stdin.isatty():
        raise PublishError("not a terminal: rerun with --yes to confirm the cost")
    return input(prompt).strip().lower() in {"y", "yes"}
