"""The MTurk requester API over JSON 1.1 with SigV4 checks, so the real boto3 client can talk to it."""

from __future__ import annotations

import asyncio
import calendar
import hashlib
import hmac
import json
import logging
import re
import time
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any

from aiohttp import web
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest, HTTPHeaders
from botocore.credentials import Credentials

from mturk.server.common import MTurkError
from mturk.server.params import InputError, parse_body, validate
from mturk.server.store import Store

log = logging.getLogger(__name__)

TARGET_PREFIX = "MTurkRequesterServiceV20170117."
SERVICE = "mturk-requester"
MAX_BODY = 2_000_000
MAX_SKEW = 15 * 60
_AUTH_RE = re.compile(
    r"^AWS4-HMAC-SHA256\s+Credential=([^/\s,]+)/(\d{8})/([^/\s,]+)/([^/\s,]+)/aws4_request,\s*"
    r"SignedHeaders=([a-z0-9;\-]+),\s*Signature=([0-9a-f]{64})$"
)


class AuthError(Exception):
    def __init__(self, kind: str, message: str, http: int = 400) -> None:
        super().__init__(message)
        self.kind, self.message, self.http = kind, message, http


def check_sigv4(
    method: str, path: str, query: str, headers: Any, body: bytes, keys: dict[str, str]
) -> str:
    """Verify an AWS Signature Version 4 header; returns the access key or raises AuthError."""
    auth = headers.get("Authorization", "")
    m = _AUTH_RE.match(auth.strip())
    if not m:
        raise AuthError(
            "MissingAuthenticationTokenException",
            "Request is missing a valid SigV4 Authorization header.",
            403,
        )
    akid, day, region, service, signed, signature = m.groups()
    secret = keys.get(akid)
    if secret is None:
        raise AuthError(
            "UnrecognizedClientException", "The security token included in the request is invalid."
        )
    if service != SERVICE:
        raise AuthError(
            "InvalidSignatureException", f"Credential should be scoped to service '{SERVICE}'.", 403
        )
    amz_date = headers.get("X-Amz-Date", "")
    try:
        ts = calendar.timegm(time.strptime(amz_date, "%Y%m%dT%H%M%SZ"))
    except ValueError:
        raise AuthError(
            "IncompleteSignatureException", "X-Amz-Date is missing or malformed."
        ) from None
    if abs(ts - time.time()) > MAX_SKEW or not amz_date.startswith(day):
        raise AuthError(
            "InvalidSignatureException", "Signature expired or X-Amz-Date out of scope.", 403
        )
    names = signed.split(";")
    if "host" not in names:
        raise AuthError("InvalidSignatureException", "The host header must be signed.", 403)
    claimed = headers.get("X-Amz-Content-SHA256")
    if claimed is not None and claimed != hashlib.sha256(body).hexdigest():
        raise AuthError("InvalidSignatureException", "X-Amz-Content-SHA256 does not match.", 403)
    expect = _expected_signature(
        method, path, query, headers, names, body, akid, secret, region, amz_date
    )
    if not hmac.compare_digest(expect, signature):
        raise AuthError(
            "InvalidSignatureException",
            "The request signature we calculated does not match the signature you provided.",
            403,
        )
    return akid


def _expected_signature(
    method: str,
    path: str,
    query: str,
    headers: Any,
    names: list[str],
    body: bytes,
    akid: str,
    secret: str,
    region: str,
    amz_date: str,
) -> str:
    """botocore's own SigV4 over the request as received: only the headers the client signed,
    at the client's timestamp (add_auth would stamp "now")."""
    signed_headers = HTTPHeaders()
    for name in names:
        for value in headers.getall(name, [""]):
            signed_headers[name] = value
    url = "http://" + headers.get("Host", "") + (path or "/") + ("?" + query if query else "")
    req = AWSRequest(method=method, url=url, headers=signed_headers, data=body)
    req.context["timestamp"] = amz_date
    signer = SigV4Auth(Credentials(akid, secret), SERVICE, region)
    return str(signer.signature(signer.string_to_sign(req, signer.canonical_request(req)), req))


def operations(store: Store) -> dict[str, Callable[[dict], dict]]:
    return {
        "CreateHITType": store.create_hit_type,
        "CreateHITWithHITType": lambda p: store.create_hit(p, "CreateHITWithHITType"),
        "CreateHIT": lambda p: store.create_hit(p, "CreateHIT"),
        "GetHIT": store.get_hit,
        "ListHITs": store.list_hits,
        "ListHITsForQualificationType": store.list_hits,
        "ListReviewableHITs": lambda p: store.list_hits(p, reviewable=True),
        "ListAssignmentsForHIT": store.list_assignments,
        "GetAssignment": store.get_assignment,
        "ApproveAssignment": lambda p: store.review(p, approve=True),
        "RejectAssignment": lambda p: store.review(p, approve=False),
        "CreateAdditionalAssignmentsForHIT": store.create_additional_assignments,
        "UpdateExpirationForHIT": store.update_expiration,
        "UpdateHITReviewStatus": store.update_review_status,
        "DeleteHIT": store.delete_hit,
        "GetAccountBalance": store.account_balance,
        "CreateQualificationType": store.create_qualification_type,
        "ListQualificationTypes": store.list_qualification_types,
        "AssociateQualificationWithWorker": store.associate_qualification,
        "DisassociateQualificationFromWorker": lambda p: store.associate_qualification(
            p, grant=False
        ),
        "ListWorkersWithQualificationType": store.list_workers_with_qualification,
        "CreateWorkerBlock": store.block_worker,
        "DeleteWorkerBlock": lambda p: store.block_worker(p, block=False),
        "ListWorkerBlocks": store.list_worker_blocks,
        "SendBonus": store.send_bonus,
        "ListBonusPayments": store.list_bonus_payments,
        "NotifyWorkers": store.notify_workers,
    }


def _json_error(kind: str, message: str, http: int, code: str | None = None) -> web.Response:
    body: dict[str, Any] = {"__type": kind, "Message": message}
    if code:
        body["TurkErrorCode"] = code
    return web.Response(
        status=http, text=json.dumps(body), content_type="application/x-amz-json-1.1"
    )


def make_api_handler(
    store: Store, keys: dict[str, str], executor: Executor
) -> Callable[[web.Request], Any]:
    ops = operations(store)

    async def handle(request: web.Request) -> web.Response:
        target = request.headers.get("X-Amz-Target", "")
        if not target.startswith(TARGET_PREFIX):
            return _json_error("UnknownOperationException", f"Unknown target {target[:80]!r}", 400)
        op = target[len(TARGET_PREFIX) :]
        if request.content_length and request.content_length > MAX_BODY:
            return _json_error("SerializationException", "Request body too large", 413)
        body = await request.read()
        try:
            check_sigv4(
                request.method, request.path, request.query_string, request.headers, body, keys
            )
        except AuthError as e:
            return _json_error(e.kind, e.message, e.http)
        fn = ops.get(op)
        if fn is None:
            return _json_error(
                "RequestError",
                f"Operation {op!r} is not supported by this server.",
                400,
                "AWS.UnsupportedOperation",
            )
        try:
            params = parse_body(body)
            validate(op, params)
        except InputError as e:
            return _json_error(e.kind, e.message, 400)
        loop = asyncio.get_running_loop()
        try:
            result = await loop.run_in_executor(executor, fn, params)
        except MTurkError as e:
            return _json_error(e.kind, e.message, e.http, e.code)
        # A value the shapes allow but a handler cannot use (e.g. a Decimal NaN) is still a 400.
        except (KeyError, TypeError, ValueError, ArithmeticError) as e:
            return _json_error(
                "RequestError", f"Invalid parameter: {e}", 400, "AWS.ParameterOutOfRange"
            )
        except Exception as e:  # a server bug must still answer as MTurk's ServiceFault does
            log.exception("ServiceFault in %s", op)
            return _json_error(
                "ServiceFault", f"Internal error: {type(e).__name__}", 500, "AWS.ServiceFault"
            )
        return web.Response(text=json.dumps(result), content_type="application/x-amz-json-1.1")

    return handle
