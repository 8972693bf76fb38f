"""Fuzzed requester API and worker forms: every botocore mturk operation, hostile values, real HTTP."""

from __future__ import annotations

import http.client
import json
import os
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import botocore.session
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.exceptions import ClientError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import MetaData, select

from imnet.core.app import App
from imnet.core.settings import Settings
from mturk.layout import Tile, html_question, render_task_html
from mturk.simulate import Http
from tests.mturk.serving import client_for, serve

MODEL = botocore.session.get_session().get_service_model("mturk")
OPERATIONS = sorted(MODEL.operation_names)
TARGET = "MTurkRequesterServiceV20170117."
# Per operation; IMNET_FUZZ_EXAMPLES raises it (the slow-marked run multiplies it by 10).
EXAMPLES = int(os.environ.get("IMNET_FUZZ_EXAMPLES", "20"))
STATS: Counter[str] = Counter()

# Values json.dumps cannot write: spliced into the body text after dumping.
_RAW = {
    "@@1e999@@": b"1e999",
    "@@-1e999@@": b"-1e999",
    "@@1e-999@@": b"1e-999",
    "@@deep_list@@": b"[" * 100_000 + b"]" * 100_000,
    "@@deep_dict@@": b'{"a":' * 50_000 + b"1" + b"}" * 50_000,
    "@@bad_utf8@@": b'"\xff\xfe\xc3\x28 \xed\xa0\x80"',
    "@@big_number@@": b"9" * 5000,
}
HOSTILE = st.sampled_from(
    [
        float("nan"),
        float("inf"),
        float("-inf"),
        10**30,
        -(10**30),
        2**63,
        -1,
        0,
        None,
        True,
        [],
        {},
        [[[[]]]],
        {"a": {"b": {"c": [1, "x", None]}}},
        "",
        " ",
        "NaN",
        "Infinity",
        "-Infinity",
        "1e999",
        "-0.01",
        "0.001",
        "99999999999999999999999.00",
        "x" * 100_000,
        "\ud800 lone surrogate",
        "\x00nul",
        "<script>alert(1)</script>",
        "]]></ExternalURL><x>&amp;",
        "' OR 1=1 --",
        *_RAW,
    ]
)
WRONG_TYPE = st.one_of(
    st.integers(), st.floats(), st.text(max_size=20), st.booleans(), st.none(), st.lists(st.none())
)


def _question() -> str:
    tile = Tile(1, "a" * 64, "http://127.0.0.1:9/a.png", "t")
    return html_question(render_task_html("n00000001", ["thing"], "a gloss", [tile]))


def _string(name: str, shape: Any, ids: dict[str, list[str]]) -> st.SearchStrategy[Any]:
    if shape.enum:
        return st.sampled_from(list(shape.enum))
    for suffix, pool in ids.items():
        if name.endswith(suffix) and pool:
            return st.one_of(st.sampled_from(pool), st.text(max_size=40))
    if name in ("Reward", "BonusAmount", "Amount"):
        return st.sampled_from(["0.01", "0.05", "1.00", "0.10"])
    if name == "Question":
        return st.just(_question())
    return st.text(max_size=40)


def value_for(
    shape: Any, name: str, ids: dict[str, list[str]], hostile: bool, depth: int = 0
) -> st.SearchStrategy[Any]:
    """A strategy for one member: valid for the shape, or (when `hostile`) sometimes anything."""
    t = shape.type_name
    if t == "structure":
        valid: st.SearchStrategy[Any] = structure(shape, ids, hostile, depth + 1)
    elif t == "list":
        valid = st.lists(value_for(shape.member, name, ids, hostile, depth + 1), max_size=3)
    elif t == "map":
        valid = st.dictionaries(st.text(max_size=10), st.text(max_size=10), max_size=3)
    elif t == "string":
        valid = _string(name, shape, ids)
    elif t in ("integer", "long"):
        lo, hi = shape.metadata.get("min", -5), shape.metadata.get("max", 10**6)
        valid = st.integers(min_value=lo, max_value=hi)
    elif t in ("double", "float"):
        valid = st.floats(allow_nan=False, allow_infinity=False, width=32)
    elif t == "boolean":
        valid = st.booleans()
    elif t == "timestamp":
        valid = st.one_of(
            st.integers(1_700_000_000, 2_000_000_000), st.just("2030-01-01T00:00:00Z")
        )
    else:
        valid = st.text(max_size=10)
    if not hostile or depth > 3:
        return valid
    return st.one_of(valid, valid, valid, HOSTILE, WRONG_TYPE)


def structure(
    shape: Any, ids: dict[str, list[str]], hostile: bool, depth: int = 0
) -> st.SearchStrategy[dict[str, Any]]:
    required = set(shape.required_members)
    members = shape.members
    return st.fixed_dictionaries(
        {k: value_for(members[k], k, ids, hostile, depth) for k in required},
        optional={
            k: value_for(m, k, ids, hostile, depth) for k, m in members.items() if k not in required
        },
    )


def dump(params: dict[str, Any]) -> bytes:
    body = json.dumps(params).encode()  # NaN and Infinity as JavaScript literals, as hostile
    for marker, raw in _RAW.items():
        body = body.replace(json.dumps(marker).encode(), raw)
    return body


class Api:
    """Correctly signed raw requests (no client-side validation) over one loopback connection."""

    def __init__(self, url: str, access: str, secret: str, region: str) -> None:
        self.url = url
        self.netloc = urlsplit(url).netloc
        self.signer = SigV4Auth(Credentials(access, secret), "mturk-requester", region)

    def call(self, op: str, body: bytes) -> tuple[int, bytes]:
        req = AWSRequest(
            method="POST",
            url=self.url + "/",
            data=body,
            headers={
                "X-Amz-Target": TARGET + op,
                "Content-Type": "application/x-amz-json-1.1",
            },
        )
        self.signer.add_auth(req)
        conn = http.client.HTTPConnection(self.netloc, timeout=60)
        try:
            conn.request("POST", "/", body=body, headers=dict(req.headers.items()))
            resp = conn.getresponse()
            return resp.status, resp.read()
        finally:
            conn.close()


_TABLES: dict[int, MetaData] = {}


def snapshot(app: App) -> dict[str, list[tuple]]:
    """Every row of the server's sandbox_* tables, in a stable order (tables reflected once)."""
    meta = _TABLES.get(id(app))
    if meta is None:
        meta = _TABLES[id(app)] = MetaData()
        meta.reflect(app.engine, only=lambda name, _m: name.startswith("sandbox_"))
    out = {}
    with app.engine.connect() as conn:
        for name, table in sorted(meta.tables.items()):
            out[name] = sorted(tuple(map(repr, r)) for r in conn.execute(select(table)))
    return out


def check_answer(status: int, raw: bytes, where: str) -> None:
    STATS["requests"] += 1
    STATS[f"{status // 100}xx"] += 1
    assert status < 500, f"{where}: HTTP {status}: {raw[:300]!r}"


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
