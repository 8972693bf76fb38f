"""The fuzz test's parts: request strategies from botocore's mturk model, a signing client, snapshots."""

from __future__ import annotations

import http.client
import json
import os
from collections import Counter
from typing import Any
from urllib.parse import urlsplit

import botocore.session
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from hypothesis import strategies as st
from sqlalchemy import MetaData, select

from imnet.core.app import App
from mturk.layout import Tile, html_question, render_task_html

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
