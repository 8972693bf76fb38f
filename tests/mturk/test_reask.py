"""Re-asks keep out the workers who already answered their images (mturk/exclusion.py)."""

from __future__ import annotations

import requests

from imnet.core.settings import Settings
from mturk.exclusion import MAX_EXCLUDED, to_exclude, voter_qual_name, worker_number
from mturk.publish import publish
from mturk.verify import plan_hits
from tests import dbrows
from tests.mturk.serving import client_for, serve

WNID = "n00000071"


def _accepts(url: str, worker: str, hit_id: str) -> bool:
    """Whether `worker` both finds the HIT listed and may accept it (they must agree)."""
    http = requests.Session()
    http.trust_env = False
    http.post(f"{url}/worker/signin", data={"worker_id": worker}).raise_for_status()
    listed = hit_id in http.get(f"{url}/worker/hits?limit=100").text
    r = http.post(f"{url}/worker/hits/{hit_id}/accept", allow_redirects=False)
    assert listed == (r.status_code == 303), (worker, listed, r.status_code)
    return listed


def test_a_reask_is_closed_to_its_voters_and_open_to_the_rest(any_app) -> None:
    app = any_app
    with app.Session() as s:
        dbrows.add_synset(s, WNID, "bittern")
        a, b, fresh = dbrows.add_candidates(s, WNID, 3)
        # a and b were answered by w0/w1 and w2; w3 and w4 answered something else.
        other = dbrows.add_candidates(s, WNID, 1)[0]
        votes = [(a, "w0", True), (a, "w1", False), (b, "w2", True)]
        dbrows.add_votes(s, WNID, [*votes, (other, "w3", True), (other, "w4", False)])
        s.commit()
    handle = serve(app)
    try:
        mt = client_for(app)
        rep = publish(app, yes=True, needs={a: 2, b: 2, fresh: 3}, client=mt, out=lambda m: None)
        assert rep["created"] == 2 and rep["reasks"] == 1 and rep["voter_quals_created"] == 3
        hits = {h["HITId"]: h for h in mt.list_hits()["HITs"]}
        reask = max(hits.values(), key=lambda h: len(h["QualificationRequirements"]))
        fresh_hit = next(h for h in hits.values() if h["HITId"] != reask["HITId"])
        names = {
            q["QualificationTypeId"]: q["Name"]
            for q in mt.list_qualification_types(
                Query="imnet-voter-", MustBeRequestable=False, MustBeOwnedByCaller=True
            )["QualificationTypes"]
        }
        kept_out = [
            names[q["QualificationTypeId"]]
            for q in reask["QualificationRequirements"]
            if q["QualificationTypeId"] in names
        ]
        assert sorted(kept_out) == sorted(voter_qual_name(w) for w in ("w0", "w1", "w2"))
        for voter in ("w0", "w1", "w2"):
            assert not _accepts(handle.url, voter, reask["HITId"])
            assert _accepts(handle.url, voter, fresh_hit["HITId"])
        assert _accepts(handle.url, "w3", reask["HITId"])
        # Newcomers hold no imnet qualification: every re-ask is open to them.
        assert _accepts(handle.url, "NEWCOMER", reask["HITId"])
        # A rerun finds the same HITs (tokens unchanged by the exclusion).
        again = publish(app, yes=True, needs={a: 2, b: 2, fresh: 3}, client=mt, out=lambda m: None)
        assert again.get("created", 0) == 0
    finally:
        handle.stop()


def test_reasks_are_packed_so_that_someone_can_still_take_them(sqlite_app) -> None:
    app = sqlite_app
    with app.Session() as s:
        dbrows.add_synset(s, WNID, "bittern")
        ids = dbrows.add_candidates(s, WNID, 4)
        # A crowd of four: items 0/1 were answered by w0+w1, items 2/3 by w2+w3.
        dbrows.add_votes(
            s,
            WNID,
            [(c, w, True) for c in ids[:2] for w in ("w0", "w1")]
            + [(c, w, True) for c in ids[2:] for w in ("w2", "w3")],
        )
        s.commit()
        plan = plan_hits(s, dict.fromkeys(ids, 2), Settings(mturk_images_per_hit=10))
    # One HIT of all four would shut out the whole crowd; two HITs leave two workers each.
    groups = sorted(sorted(c for _p, c, g in h.items if g is None) for h in plan)
    assert groups == [ids[:2], ids[2:]]
    assert sorted(sorted(h.exclude) for h in plan) == [["w0", "w1"], ["w2", "w3"]]


def test_the_most_active_voters_are_named_first() -> None:
    activity = {f"w{i:02d}": i for i in range(20)}
    named = to_exclude(set(activity), activity)
    assert len(named) == MAX_EXCLUDED and named[0] == "w19" and "w00" not in named
    assert worker_number("w01") == worker_number("w01") > 0


def test_server_refuses_a_set_comparison_over_fifteen_values(any_app) -> None:
    handle = serve(any_app)
    try:
        mt = client_for(any_app)
        qid = mt.create_qualification_type(
            Name="n", Description="d", QualificationTypeStatus="Active"
        )["QualificationType"]["QualificationTypeId"]
        base = {
            "Title": "t",
            "Description": "d",
            "Reward": "0.10",
            "AssignmentDurationInSeconds": 600,
        }
        req = {"QualificationTypeId": qid, "Comparator": "NotIn"}
        mt.create_hit_type(**base, QualificationRequirements=[{**req, "IntegerValues": [1] * 15}])
        try:
            mt.create_hit_type(
                **base, QualificationRequirements=[{**req, "IntegerValues": list(range(16))}]
            )
        except mt.exceptions.RequestError as e:
            assert "15" in str(e)
        else:
            raise AssertionError("16 values accepted")
    finally:
        handle.stop()


def test_more_extends_no_hit_whose_images_others_answered(sqlite_app) -> None:
    """An extension keeps out the HIT's own workers only: once an item of it has a vote from
    elsewhere, `more` publishes a re-ask (which names every voter) instead."""
    from mturk.collect import collect, request_more
    from mturk.simulate import run_workers

    app = sqlite_app
    data = dbrows.seed(app, "n00000072", 4)
    handle = serve(app)
    try:
        mt = client_for(app)
        publish(app, yes=True, needs={c: 2 for c in data["ids"]}, client=mt, out=lambda m: None)
        run_workers(handle.url, data["truth"], n_workers=2, mix="good=1", max_seconds=60)
        collect(app, client=mt, more=False, out=lambda m: None)
        with app.Session() as s:
            dbrows.add_votes(s, "n00000072", [(c, "ELSEWHERE", True) for c in data["ids"]])
            s.commit()
        more = request_more(app, client=mt, needs={c: 1 for c in data["ids"]}, out=lambda m: None)
        assert more["extended_hits"] == 0
        assert more["published"]["created"] == 1 and more["published"]["reasks"] == 1
    finally:
        handle.stop()
