"""The whole HIT lifecycle with the real boto3 client against the self-hosted server on loopback."""

from __future__ import annotations

import time

import pytest
import requests
from botocore.exceptions import ClientError
from sqlalchemy import func, select

from db.models import Assignment, Hit, HitItem, Vote, Worker
from mturk.client import error_code, paginate
from mturk.collect import collect
from mturk.publish import publish
from mturk.simulate import run_workers
from tests.dbrows import add_gold, seed
from tests.mturk.serving import client_for, serve


def _work(base: str, worker: str, hit_id: str, fields_for) -> requests.Response:  # type: ignore[no-untyped-def]
    """A worker signs in, accepts `hit_id` and submits fields_for(assignment_id) by cookie."""
    http = requests.Session()
    http.trust_env = False
    http.post(f"{base}/worker/signin", data={"worker_id": worker}).raise_for_status()
    r = http.post(f"{base}/worker/hits/{hit_id}/accept", allow_redirects=False)
    assert r.status_code == 303, r.text
    aid = r.headers["Location"].rsplit("/", 1)[1]
    return http.post(
        f"{base}/mturk/externalSubmit", data=fields_for(aid), headers={"Accept": "application/json"}
    )


def test_full_lifecycle(any_app):  # type: ignore[no-untyped-def]
    app = any_app
    data = seed(app, "n00000001", 10, gloss="a domestic animal")
    gold = seed(app, "n00000001", 4, rng_seed=1, frac_yes=0.5)
    add_gold(app, "n00000001", gold["ids"], gold["truth"])
    truth = {**data["truth"], **gold["truth"]}
    handle = serve(app)
    try:
        mt = client_for(app)
        needs = {cid: 3 for cid in data["ids"]}
        rep = publish(app, yes=True, needs=needs, client=mt, out=lambda s: None)
        # 6 tiles per HIT with 2 gold: 10 items -> 4 + 4 + 2.
        assert rep["created"] == 3 and rep["cost"]["assignments"] == 9
        assert rep["cost"]["total"] == "1.08"  # 9 x $0.10 + 20% fee
        again = publish(app, yes=True, needs=needs, client=mt, out=lambda s: None)
        # Items with an open HIT wait for it: a rerun asks for nothing.
        assert again["created"] == 0 and again["deferred"] == 10

        # A crash between CreateHIT and the local record of the last HIT: the rerun makes the
        # same plan for the unrecorded items, so the same token, and finds that HIT.
        with app.Session() as s:
            lost = s.scalars(select(Hit).order_by(Hit.created_at.desc())).first()
            lost_id, lost_token = lost.hit_id, lost.request_token
            for it in s.scalars(select(HitItem).where(HitItem.hit_id == lost_id)):
                s.delete(it)
            s.flush()
            s.delete(lost)
            s.commit()
        rerun = publish(app, yes=True, needs=needs, client=mt, out=lambda s: None)
        assert rerun["created"] == 0
        with app.Session() as s:
            assert s.scalar(select(Hit.hit_id).where(Hit.request_token == lost_token)) == lost_id
        server_hits = list(paginate(mt.list_hits, "HITs", page_size=2))
        assert len(server_hits) == 3  # pagination across pages, no HIT created twice
        first = mt.list_hits(MaxResults=2)
        assert first["NumResults"] == 2 and first["NextToken"]

        # Retrying a creating call with the same token: HitAlreadyExists, as MTurk answers.
        with pytest.raises(mt.exceptions.RequestError) as ei:
            mt.create_hit_with_hit_type(
                HITTypeId=server_hits[0]["HITTypeId"],
                MaxAssignments=1,
                LifetimeInSeconds=60,
                Question=server_hits[0]["Question"],
                UniqueRequestToken=lost_token,
            )
        assert error_code(ei.value) == "AWS.MechanicalTurk.HitAlreadyExists"

        # Simulated workers do all 9 assignments through the worker site.
        sim = run_workers(handle.url, truth, n_workers=4, mix="good=1", seed=1, max_seconds=120)
        assert sim["submitted"] == 9 and not sim["errors"], sim

        # A careless worker fails every check image of an extra HIT -> rejected.
        extra = seed(app, "n00000001", 4, rng_seed=2)
        publish(app, yes=True, needs={c: 1 for c in extra["ids"]}, client=mt, out=lambda s: None)
        with app.Session() as s:
            extra_hit = s.scalar(
                select(HitItem.hit_id).where(HitItem.candidate_id == extra["ids"][0])
            )
            items = list(s.scalars(select(HitItem).where(HitItem.hit_id == extra_hit)))

        def wrong(aid: str) -> dict[str, str]:
            f = {"assignmentId": aid, "n_items": str(len(items))}
            for i in items:
                if i.gold_label is False:
                    f[f"item_{i.position}"] = "yes"
            return f

        assert _work(handle.url, "CARELESS1", extra_hit, wrong).status_code == 200

        # 0 of 2 checks is no proof in a crowd of 5 (P 0.06 at the 0.75 bar, under_gold_bar):
        # judged as in a crowd big enough for the bar's point estimate.
        app.settings = app.settings.replace(mturk_min_gold_seen=2, mturk_gold_bar_crowd=0)
        rep = collect(app, client=mt, more=False, out=lambda s: None)
        assert rep["assignments_new"] == 10
        assert rep["rejected"] >= 1 and rep["approved"] + rep["rejected"] == 10
        assert "CARELESS1" in rep["excluded_workers"]
        with app.Session() as s:
            n_votes = s.scalar(select(func.count()).select_from(Vote))
            assert n_votes == 3 * 10 + 4  # gold items never become votes
            assert s.get(Worker, "CARELESS1").blocked
            careless = s.scalars(
                select(Assignment).where(Assignment.worker_id == "CARELESS1")
            ).one()
            assert careless.status == "Rejected" and careless.gold_correct == 0
        # Idempotent: a second collect records nothing twice.
        rep2 = collect(app, client=mt, more=False, out=lambda s: None)
        assert rep2["assignments_new"] == 0 and rep2["approved"] == rep2["rejected"] == 0
        with app.Session() as s:
            assert s.scalar(select(func.count()).select_from(Vote)) == n_votes
        got = mt.get_assignment(AssignmentId=careless.assignment_id)["Assignment"]
        assert got["AssignmentStatus"] == "Rejected" and "check images" in got["RequesterFeedback"]

        # The exclusion qualification keeps the careless worker away from new HITs.
        quals = mt.list_qualification_types(MustBeRequestable=False, Query="imnet")
        qid = quals["QualificationTypes"][0]["QualificationTypeId"]
        holders = mt.list_workers_with_qualification_type(QualificationTypeId=qid)
        assert [q["WorkerId"] for q in holders["Qualifications"]] == ["CARELESS1"]
        more = seed(app, "n00000001", 2, rng_seed=3)
        publish(app, yes=True, needs={c: 2 for c in more["ids"]}, client=mt, out=lambda s: None)
        http = requests.Session()
        http.trust_env = False
        http.post(f"{handle.url}/worker/signin", data={"worker_id": "CARELESS1"})
        assert http.get(f"{handle.url}/worker/hits?format=json").json()["hits"] == []
        with app.Session() as s:
            open_hit = s.scalar(
                select(HitItem.hit_id).where(HitItem.candidate_id == more["ids"][0])
            )
        r = http.post(f"{handle.url}/worker/hits/{open_hit}/accept", allow_redirects=False)
        assert r.status_code == 403

        # Bonus with a token: paid once, a retry is refused, the balance pays reward + fee.
        before = mt.get_account_balance()["AvailableBalance"]
        good = next(a for a in mt.list_assignments_for_hit(HITId=lost_id)["Assignments"])
        mt.send_bonus(
            WorkerId=good["WorkerId"],
            BonusAmount="0.50",
            AssignmentId=good["AssignmentId"],
            Reason="careful work",
            UniqueRequestToken="bonus-1",
        )
        with pytest.raises(mt.exceptions.RequestError):
            mt.send_bonus(
                WorkerId=good["WorkerId"],
                BonusAmount="0.50",
                AssignmentId=good["AssignmentId"],
                Reason="careful work",
                UniqueRequestToken="bonus-1",
            )
        assert len(mt.list_bonus_payments(AssignmentId=good["AssignmentId"])["BonusPayments"]) == 1
        after = mt.get_account_balance()["AvailableBalance"]
        assert float(before) - float(after) == pytest.approx(0.60)

        # Additional assignments with a token; a repeat is refused; 10+ is refused (fee rule).
        mt.create_additional_assignments_for_hit(
            HITId=open_hit, NumberOfAdditionalAssignments=1, UniqueRequestToken="more-1"
        )
        with pytest.raises(mt.exceptions.RequestError):
            mt.create_additional_assignments_for_hit(
                HITId=open_hit, NumberOfAdditionalAssignments=1, UniqueRequestToken="more-1"
            )
        with pytest.raises(mt.exceptions.RequestError):
            mt.create_additional_assignments_for_hit(
                HITId=open_hit, NumberOfAdditionalAssignments=7
            )
        assert mt.get_hit(HITId=open_hit)["HIT"]["MaxAssignments"] == 3

        # Expire: nobody can accept any more.
        mt.update_expiration_for_hit(HITId=open_hit, ExpireAt=time.time() - 10)
        assert mt.get_hit(HITId=open_hit)["HIT"]["HITStatus"] == "Reviewable"
        http2 = requests.Session()
        http2.trust_env = False
        http2.post(f"{handle.url}/worker/signin", data={"worker_id": "LATE1"})
        assert (
            http2.post(
                f"{handle.url}/worker/hits/{open_hit}/accept", allow_redirects=False
            ).status_code
            == 410
        )

        # Delete: refused while an assignment awaits review, allowed once all are reviewed.
        sub = _work(handle.url, "W-DEL", extra_hit_2 := _open_hit(app, mt), _all_no)
        assert sub.status_code == 200
        with pytest.raises(mt.exceptions.RequestError) as ei:
            mt.delete_hit(HITId=extra_hit_2)
        assert "InvalidHITState" in error_code(ei.value)
        mt.delete_hit(HITId=lost_id)
        assert mt.get_hit(HITId=lost_id)["HIT"]["HITStatus"] == "Disposed"

        # Worker blocks and notifications.
        mt.create_worker_block(WorkerId="LATE1", Reason="spam")
        assert http2.get(f"{handle.url}/worker/hits?format=json").json()["hits"] == []
        res = mt.notify_workers(
            Subject="hi", MessageText="thanks", WorkerIds=[good["WorkerId"], "NOBODY"]
        )
        assert [f["WorkerId"] for f in res["NotifyWorkersFailureStatuses"]] == ["NOBODY"]

        # Error classes: MTurk's own exception classes, and unknown or wrong keys refused.
        with pytest.raises(mt.exceptions.RequestError) as ei:
            mt.get_hit(HITId="NOSUCHHIT")
        assert error_code(ei.value) == "AWS.MechanicalTurk.HITDoesNotExist"
        with pytest.raises(mt.exceptions.RequestError):
            mt.create_hit_type(
                Title="t", Description="d", Reward="abc", AssignmentDurationInSeconds=60
            )
        with pytest.raises(ClientError) as ei:
            client_for(app, mturk_access_key="stranger").get_account_balance()
        assert ei.value.response["Error"]["Code"] == "UnrecognizedClientException"
        with pytest.raises(ClientError) as ei:
            client_for(app, mturk_secret_key="wrong").get_account_balance()
        assert ei.value.response["Error"]["Code"] == "InvalidSignatureException"
    finally:
        handle.stop()

    # State survives a restart: a new server on the same database knows every HIT.
    handle = serve(app)
    try:
        mt = client_for(app)
        assert mt.get_hit(HITId=lost_id)["HIT"]["HITStatus"] == "Disposed"
        assert len(list(paginate(mt.list_hits, "HITs"))) >= 5
    finally:
        handle.stop()


def _all_no(aid: str) -> dict[str, str]:
    return {"assignmentId": aid, "n_items": "6"}


def _open_hit(app, mt) -> str:  # type: ignore[no-untyped-def]
    """A fresh HIT of 6 tiles (4 items + 2 gold) to work on."""
    fresh = seed(app, "n00000001", 4, rng_seed=4)
    publish(app, yes=True, needs={c: 1 for c in fresh["ids"]}, client=mt, out=lambda s: None)
    with app.Session() as s:
        return s.scalar(select(HitItem.hit_id).where(HitItem.candidate_id == fresh["ids"][0]))


def test_auto_approval_and_returned_slot(sqlite_app):  # type: ignore[no-untyped-def]
    """MTurk approves by itself after AutoApprovalDelay; a returned slot goes to someone else."""
    from mturk.layout import Tile, html_question, render_task_html

    app = sqlite_app
    handle = serve(app)
    try:
        mt = client_for(app)
        type_id = mt.create_hit_type(
            Title="t",
            Description="d",
            Reward="0.05",
            AssignmentDurationInSeconds=60,
            AutoApprovalDelayInSeconds=0,
        )["HITTypeId"]
        doc = render_task_html("n1", ["x"], "y", [Tile(0, "a" * 64, "/images/a")])
        hit = mt.create_hit(
            MaxAssignments=1,
            LifetimeInSeconds=600,
            Question=html_question(doc),
            Title="t",
            Description="d",
            Reward="0.05",
            AssignmentDurationInSeconds=60,
            AutoApprovalDelayInSeconds=0,
            UniqueRequestToken="auto-1",
        )["HIT"]
        assert hit["HITTypeId"] == type_id  # same parameters, same HIT type
        http = requests.Session()
        http.trust_env = False
        http.post(f"{handle.url}/worker/signin", data={"worker_id": "QUITTER"})
        r = http.post(f"{handle.url}/worker/hits/{hit['HITId']}/accept", allow_redirects=False)
        aid = r.headers["Location"].rsplit("/", 1)[1]
        assert mt.get_hit(HITId=hit["HITId"])["HIT"]["HITStatus"] == "Unassignable"
        assert http.post(f"{handle.url}/worker/assignments/{aid}/return").status_code == 200
        assert mt.get_hit(HITId=hit["HITId"])["HIT"]["NumberOfAssignmentsAvailable"] == 1
        r = _work(
            handle.url,
            "FINISHER",
            hit["HITId"],
            lambda a: {"assignmentId": a, "n_items": "1", "item_0": "yes"},
        )
        assert r.status_code == 200
        got = mt.list_assignments_for_hit(HITId=hit["HITId"])["Assignments"]
        assert [(a["WorkerId"], a["AssignmentStatus"]) for a in got] == [("FINISHER", "Approved")]
        assert float(mt.get_account_balance()["AvailableBalance"]) == pytest.approx(10000 - 0.06)
    finally:
        handle.stop()


def test_collect_keeps_the_servers_verdict(sqlite_app):  # type: ignore[no-untyped-def]
    """An assignment reviewed on the server before collect (another tool, a crash) is not reviewed
    again: the local record follows the server, and its answer is still stored."""
    app = sqlite_app
    data = seed(app, "n00000007", 2)
    gold = seed(app, "n00000007", 2, rng_seed=1, frac_yes=0.5)
    add_gold(app, "n00000007", gold["ids"], gold["truth"])
    handle = serve(app)
    try:
        mt = client_for(app)
        publish(app, yes=True, needs={c: 1 for c in data["ids"]}, client=mt, out=lambda s: None)
        with app.Session() as s:
            items = list(s.scalars(select(HitItem)))
        hit_id = items[0].hit_id

        def all_wrong(aid: str) -> dict[str, str]:
            f = {"assignmentId": aid, "n_items": str(len(items))}
            f.update({f"item_{i.position}": "yes" for i in items if i.gold_label is False})
            return f

        assert _work(handle.url, "W1", hit_id, all_wrong).status_code == 200
        aid = mt.list_assignments_for_hit(HITId=hit_id)["Assignments"][0]["AssignmentId"]
        mt.approve_assignment(AssignmentId=aid)
        rep = collect(app, client=mt, more=False, out=lambda s: None)
        assert rep["assignments_new"] == 1 and rep["already"] == 1 and rep["rejected"] == 0
        with app.Session() as s:
            row = s.get(Assignment, aid)
            assert row.status == "Approved" and row.reviewed_at and row.answer_xml
            assert row.gold_correct == 0 and "check images" in row.reject_reason
        assert mt.get_assignment(AssignmentId=aid)["Assignment"]["AssignmentStatus"] == "Approved"
    finally:
        handle.stop()
