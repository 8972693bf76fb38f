"""Fuzzed requester API and worker forms: every botocore mturk operation, hostile values, real HTTP."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from imnet.core.app import App
from imnet.core.settings import Settings
from mturk.simulate import Http
from tests.mturk.fuzzing import (
    _RAW,
    EXAMPLES,
    HOSTILE,
    MODEL,
    OPERATIONS,
    STATS,
    Api,
    _question,
    check_answer,
    dump,
    snapshot,
    structure,
)
from tests.mturk.serving import client_for, serve


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def world(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Any]]:
    """A server (SQLite, then PostgreSQL) with a HIT type, two HITs (one worked), a qualification."""
    tmp: Path = tmp_path_factory.mktemp("fuzz")
    url = (
        f"sqlite:///{tmp / 'imnet.sqlite3'}"
        if request.param == "sqlite"
        else request.getfixturevalue("postgres").create_database()
    )
    app = App(Settings(data_dir=str(tmp / "data"), database_url=url))
    handle = serve(app)
    mt = client_for(app)
    ht = mt.create_hit_type(
        AssignmentDurationInSeconds=600, Reward="0.05", Title="t", Description="d"
    )["HITTypeId"]
    hits = [
        mt.create_hit_with_hit_type(
            HITTypeId=ht, MaxAssignments=3, LifetimeInSeconds=3600, Question=_question()
        )["HIT"]["HITId"]
        for _ in range(2)
    ]
    qual = mt.create_qualification_type(
        Name="q", Description="d", QualificationTypeStatus="Active"
    )["QualificationType"]["QualificationTypeId"]
    worker = Http()
    worker.post(f"{handle.url}/worker/signin", data={"worker_id": "FUZZW1"})
    status, headers, _ = worker.post(f"{handle.url}/worker/hits/{hits[0]}/accept", data=b"")
    assert status == 303
    aid = headers["Location"].rsplit("/", 1)[1]
    status, _, _ = worker.post(
        f"{handle.url}/mturk/externalSubmit",
        data={"assignmentId": aid, "n_items": "1", "item_1": "yes"},
    )
    assert status == 200
    mt.associate_qualification_with_worker(
        QualificationTypeId=qual, WorkerId="FUZZW1", IntegerValue=1
    )
    ids = {
        "HITTypeId": [ht],
        "HITId": hits,
        "AssignmentId": [aid],
        "QualificationTypeId": [qual],
        "WorkerId": ["FUZZW1", "FUZZW2"],
    }
    s = app.settings
    api = Api(handle.url, s.mturk_access_key, s.mturk_secret_key, s.mturk_region)
    try:
        yield {"app": app, "url": handle.url, "api": api, "ids": ids, "mt": mt, "hits": hits}
    finally:
        handle.stop()
        app.close()
        print(f"\nfuzz ({request.param}): {dict(STATS)}")
        STATS.clear()


def _fuzz_operation(world: dict[str, Any], op: str, examples: int) -> None:
    app, api = world["app"], world["api"]
    shape = MODEL.operation_model(op).input_shape

    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(hostile=st.booleans(), data=st.data())
    def run(hostile: bool, data: st.DataObject) -> None:
        params = data.draw(structure(shape, world["ids"], hostile) if shape else st.just({}))
        body = dump(params)
        before = snapshot(app)
        status, raw = api.call(op, body)
        check_answer(status, raw, f"{op} {body[:200]!r}")
        if status >= 300:
            err = json.loads(raw)
            assert set(err) >= {"__type", "Message"}, err
            assert snapshot(app) == before, f"refused {op} changed the server's state"
        else:
            assert isinstance(json.loads(raw), dict)

    run()


@pytest.mark.parametrize("op", OPERATIONS)
def test_every_operation_answers_4xx_or_2xx(world: dict[str, Any], op: str) -> None:
    _fuzz_operation(world, op, EXAMPLES)


@pytest.mark.slow
@pytest.mark.parametrize("op", OPERATIONS)
def test_every_operation_longer_run(world: dict[str, Any], op: str) -> None:
    _fuzz_operation(world, op, EXAMPLES * 10)


@pytest.mark.parametrize(
    "op, extra",
    [
        ("ListWorkerBlocks", {}),
        ("ListQualificationTypes", {"MustBeRequestable": False}),
        ("ListBonusPayments", {"HITId": None}),
        ("ListAssignmentsForHIT", {"HITId": None}),
        ("ListWorkersWithQualificationType", {"QualificationTypeId": None}),
    ],
)
def test_offset_token_past_bigint_is_refused(world: dict[str, Any], op: str, extra: dict) -> None:
    """A NextToken offset of 2**63 (a fuzz find) is a 400, not PostgreSQL's bigint overflow."""
    ids = world["ids"]
    params = {k: (ids[k][0] if v is None else v) for k, v in extra.items()}
    for token, ok in ((str(2**63), False), (str(2**62 + 1), False), ("0", True)):
        status, raw = world["api"].call(op, dump({**params, "NextToken": token}))
        assert (status == 200) is ok, (op, token, status, raw[:200])
        if not ok:
            assert status == 400 and "NextToken" in json.loads(raw)["Message"], raw[:200]


def test_hostile_keyset_tokens_are_4xx_or_2xx(world: dict[str, Any]) -> None:
    """ListHITs' NextToken is a (key, HIT id) pair we encode; a forged one decodes to anything."""
    import base64

    for key, hit_id in [
        ("NaN", '"x"'),
        ("1e999", '"x"'),
        ("-1e999", '"x"'),
        ("1.0", '"a\\u0000b"'),
        ("1.0", '"\\ud800"'),
        ("99999999999999999999999", '"x"'),
        ("1.0", "[1, 2]"),
    ]:
        token = base64.urlsafe_b64encode(f"[{key}, {hit_id}]".encode()).decode()
        for op in ("ListHITs", "ListReviewableHITs"):
            status, raw = world["api"].call(op, dump({"NextToken": token}))
            check_answer(status, raw, f"{op} {key} {hit_id}")


def test_raw_hostile_bodies(world: dict[str, Any]) -> None:
    """Bodies that are not JSON objects at all, and AWS's 400 for out-of-range money."""
    api = world["api"]
    ht = world["ids"]["HITTypeId"][0]
    for op, body in [
        ("GetAccountBalance", b"[" * 100_000),
        ("GetAccountBalance", _RAW["@@deep_dict@@"]),
        ("GetAccountBalance", b"\xff\xfe"),
        ("GetAccountBalance", b"[]"),
        ("GetAccountBalance", b'{"a": 1e999}'),
        (
            "CreateHITType",
            b'{"Reward": NaN, "Title": "t", "Description": "d", "AssignmentDurationInSeconds": 60}',
        ),
        (
            "CreateHITType",
            b'{"Reward": 1e999, "Title": "t", "Description": "d", '
            b'"AssignmentDurationInSeconds": 60}',
        ),
        (
            "SendBonus",
            json.dumps(
                {
                    "WorkerId": "FUZZW1",
                    "BonusAmount": "Infinity",
                    "AssignmentId": world["ids"]["AssignmentId"][0],
                    "Reason": "r",
                }
            ).encode(),
        ),
        (
            "CreateHITWithHITType",
            json.dumps(
                {"HITTypeId": ht, "LifetimeInSeconds": 10**30, "Question": _question()}
            ).encode(),
        ),
        ("NoSuchOperation", b"{}"),
    ]:
        before = snapshot(world["app"])
        status, raw = api.call(op, body)
        check_answer(status, raw, f"{op} {body[:80]!r}")
        assert 400 <= status < 500, (op, status, raw[:200])
        err = json.loads(raw)
        assert set(err) >= {"__type", "Message"}
        assert snapshot(world["app"]) == before


def test_hostile_values_through_boto3(world: dict[str, Any]) -> None:
    """boto3 itself (validation off, no retries): 400 ClientErrors, never a retried ServiceFault."""
    import boto3

    app, s = world["app"], world["app"].settings
    c = boto3.session.Session().client(
        "mturk",
        endpoint_url=world["url"],
        region_name=s.mturk_region,
        aws_access_key_id=s.mturk_access_key,
        aws_secret_access_key=s.mturk_secret_key,
        config=Config(parameter_validation=False, retries={"max_attempts": 1}),
    )
    ht = world["ids"]["HITTypeId"][0]
    aid = world["ids"]["AssignmentId"][0]
    calls = (
        [
            (
                "create_hit_type",
                {"AssignmentDurationInSeconds": 60, "Reward": v, "Title": "t", "Description": "d"},
            )
            for v in ("NaN", "Infinity", "-Infinity", "1e999", "-0.05", "0.001")
        ]
        + [
            (
                "send_bonus",
                {"WorkerId": "FUZZW1", "BonusAmount": v, "AssignmentId": aid, "Reason": "r"},
            )
            for v in ("NaN", "Infinity", "1e999", "-1.00")
        ]
        + [
            (
                "create_hit_with_hit_type",
                {"HITTypeId": ht, "LifetimeInSeconds": v, "Question": _question()},
            )
            for v in (-1, 10**30, "abc")
        ]
        + [("list_hits", {"MaxResults": v}) for v in (0, -5, 10**30, "x")]
        + [("get_hit", {"HITId": v}) for v in ("", "x" * 10_000, "<script>", {"a": 1})]
    )
    for name, kw in calls:
        before = snapshot(app)
        with pytest.raises(ClientError) as exc:
            getattr(c, name)(**kw)
        meta = exc.value.response["ResponseMetadata"]
        check_answer(meta["HTTPStatusCode"], json.dumps(exc.value.response["Error"]).encode(), name)
        assert meta["HTTPStatusCode"] == 400 and meta.get("RetryAttempts", 0) == 0, (name, kw)
        assert snapshot(app) == before


FORM_VALUE = st.one_of(
    st.text(max_size=30),
    HOSTILE.filter(lambda v: isinstance(v, str) and v not in _RAW and "\ud800" not in v),
)


def test_worker_forms(world: dict[str, Any]) -> None:
    """Accept, return and submit POSTs with hostile ids, fields and bodies: 4xx or 2xx/3xx only."""
    app, base = world["app"], world["url"]
    worker = Http()
    worker.post(f"{base}/worker/signin", data={"worker_id": "FUZZW2"})
    ids = world["hits"] + world["ids"]["AssignmentId"]
    target = st.one_of(st.sampled_from(ids), st.text(max_size=40), FORM_VALUE)
    fields = st.dictionaries(
        st.one_of(st.sampled_from(["assignmentId", "n_items", "item_1", "item_2"]), FORM_VALUE),
        st.one_of(st.sampled_from(ids + ["yes", "1", "-1", "999999999999"]), FORM_VALUE),
        max_size=5,
    )

    @settings(
        max_examples=EXAMPLES * 10,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(
        kind=st.sampled_from(["accept", "return", "submit", "submit_key", "signin"]),
        who=target,
        form=fields,
        raw=st.one_of(
            st.none(), st.sampled_from([b"\xff\xfe=\xc3\x28", b"a=%ff%fe&b=%00", b"=" * 1000])
        ),
        as_json=st.booleans(),
    )
    def run(kind: str, who: str, form: dict[str, str], raw: bytes | None, as_json: bool) -> None:
        from urllib.parse import quote

        seg = quote(who, safe="") or "x"
        path = {
            "accept": f"/worker/hits/{seg}/accept",
            "return": f"/worker/assignments/{seg}/return",
            "submit": "/mturk/externalSubmit",
            "submit_key": f"/submit/{seg}/mturk/externalSubmit",
            "signin": "/worker/signin",
        }[kind]
        body = raw if raw is not None else urlencode(form).encode()
        if kind == "signin":
            body = urlencode({"worker_id": who}).encode() if raw is None else raw
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
        if as_json:
            headers["Accept"] = "application/json"
        before = snapshot(app)
        status, _, text = worker.post(base + path, data=body, headers=headers)
        check_answer(status, text.encode(), f"{kind} {path} {body[:100]!r}")
        if status >= 400:
            assert snapshot(app) == before, f"refused {kind} changed the server's state"

    run()
    status, _, _ = worker.get(f"{base}/worker/hits")  # the server still answers afterwards
    assert status < 500
