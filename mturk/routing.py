"""Routing: stop giving HITs to workers whose votes carry almost no information, via a qualification.

Consensus (`curation.consensus.crowd`) stores a verdict per worker in `worker.routing`, recomputed
from every synset's `worker_verdict` rows:
`uninformative` (the robust model measured their current votes near chance: always-yes,
always-no, careless, with enough gold seen) or `redundant` (a member of a dependent group other
than its most skilled one: the group's first vote already says what theirs would). As on real
MTurk, routing is a qualification: a routed-away worker holds `ROUTING_QUAL_NAME` (value 1
uninformative, 2 redundant) and every HIT type requires that it does NOT exist, so new workers
are never shut out and a worker the model trusts again is handed work again (the qualification
is revoked). `sync_routing` makes the endpoint's grants match the table; publish and collect
call it. The self-hosted server enforces QualificationRequirements on listing and accept.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select

from db.models import ConsensusSynset, GoldItem, Label, Worker
from mturk.client import (
    CONCURRENCY,
    call_all,
    find_or_create_qualification,
    first_error,
    paginate,
)

if TYPE_CHECKING:
    from imnet.core.app import App

ROUTING_QUAL_NAME = "imnet-routed-away"
ROUTING_VALUES = {"uninformative": 1, "redundant": 2}


def routing_qualification(client: Any) -> str:
    return find_or_create_qualification(
        client,
        ROUTING_QUAL_NAME,
        "Workers this requester's consensus currently gives no work: their answers add almost "
        "no information (near chance, or the same as another worker's).",
    )


def routing_requirement(qual_id: str) -> dict[str, str]:
    """The HIT type requirement: only workers not routed away see, preview and accept."""
    return {
        "QualificationTypeId": qual_id,
        "Comparator": "DoesNotExist",
        "ActionsGuarded": "DiscoverPreviewAndAccept",
    }


def wanted_routing(app: App) -> dict[str, int]:
    """worker -> qualification value for every worker consensus routed away."""
    with app.Session() as session:
        rows = session.execute(
            select(Worker.worker_id, Worker.routing).where(Worker.routing.is_not(None))
        ).all()
    return {w: ROUTING_VALUES.get(r or "", 1) for w, r in rows}


def sync_routing(
    app: App, client: Any, qual_id: str | None = None, concurrency: int = CONCURRENCY
) -> dict[str, list[str]]:
    """Grant the routing qualification to routed-away workers and revoke it from the others;
    returns {"routed_away": [...], "restored": [...]} (the changes made)."""
    qual_id = qual_id or routing_qualification(client)
    want = wanted_routing(app)
    have = {
        q["WorkerId"]: int(q.get("IntegerValue", 1))
        for q in paginate(
            client.list_workers_with_qualification_type,
            "Qualifications",
            QualificationTypeId=qual_id,
            Status="Granted",
        )
    }
    grant = sorted(w for w, v in want.items() if have.get(w) != v)
    revoke = sorted(w for w in have if w not in want)

    def do_grant(wid: str) -> None:
        client.associate_qualification_with_worker(
            QualificationTypeId=qual_id,
            WorkerId=wid,
            IntegerValue=want[wid],
            SendNotification=False,
        )

    def do_revoke(wid: str) -> None:
        client.disassociate_qualification_from_worker(
            QualificationTypeId=qual_id, WorkerId=wid, Reason="consensus trusts your answers again"
        )

    results = call_all(do_grant, grant, concurrency) + call_all(do_revoke, revoke, concurrency)
    first_error(results)
    return {"routed_away": grant, "restored": revoke}


def crowd_status(session: Any) -> dict[str, Any]:
    """What consensus last said about the crowd: items it cannot decide, the annotators (of
    the measured skill) the set goal needs, routed-away workers, dependent groups, gold."""
    insufficient = (
        session.scalar(
            select(func.count())
            .select_from(Label)
            .where(Label.decision == "insufficient_crowd", Label.overridden.is_(False))
        )
        or 0
    )
    need = session.scalar(select(func.max(ConsensusSynset.crowd_needed)))
    eligible = session.scalar(select(func.max(ConsensusSynset.eligible_workers)))
    notes = sorted(
        {n for n in session.scalars(select(ConsensusSynset.note).distinct()) if n is not None}
    )
    routing = dict(
        session.execute(
            select(Worker.routing, func.count())
            .where(Worker.routing.is_not(None))
            .group_by(Worker.routing)
        ).all()
    )
    groups = session.scalar(select(func.count(func.distinct(Worker.dependence_group)))) or 0
    out: dict[str, Any] = {
        "insufficient_crowd": int(insufficient),
        "crowd_needed": need,
        "more_annotators_needed": (
            max(0, int(need) - int(eligible or 0)) if need and insufficient else 0
        ),
        "routed_away": routing,
        "dependent_groups": int(groups),
        "gold_promoted": session.scalar(select(func.count()).select_from(GoldItem)) or 0,
    }
    if notes:
        out["consensus_notes"] = notes
    return out
