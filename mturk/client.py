"""The boto3 `mturk` client from settings: self-hosted server, AWS sandbox, or (only if asked) live."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from imnet.core.app import App
    from imnet.core.settings import Settings

T = TypeVar("T")
R = TypeVar("R")

AWS_SANDBOX_URL = "https://mturk-requester-sandbox.us-east-1.amazonaws.com"
AWS_LIVE_URL = "https://mturk-requester.us-east-1.amazonaws.com"
# Requests in flight at once: publish and collect wait on the network, not on the CPU.
CONCURRENCY = 8


def endpoint_url(settings: Settings) -> str:
    """mturk_endpoint_url if set, else the AWS sandbox; production only with mturk_live."""
    if settings.mturk_endpoint_url:
        return settings.mturk_endpoint_url.rstrip("/")
    if not settings.mturk_live:
        from mturk.local_endpoint import running

        # `imnet mturk serve` on this data dir records where it listens: follow it.
        if local := running(settings.data_dir):
            return local
    return AWS_LIVE_URL if settings.mturk_live else AWS_SANDBOX_URL


def is_self_hosted(settings: Settings) -> bool:
    return endpoint_url(settings) not in (AWS_SANDBOX_URL, AWS_LIVE_URL)


def make_client(settings: Settings, connections: int = 16) -> Any:
    """A real boto3 client; retries are bounded and every creating call carries its own token.
    It is shared by the request threads (botocore clients are thread-safe): `connections` should
    be at least the number of threads, or connections are dropped and reopened."""
    import boto3
    from botocore.config import Config

    url = endpoint_url(settings)
    if url == AWS_LIVE_URL and not settings.mturk_live:
        raise ValueError("the production endpoint needs --live (setting mturk_live)")
    session = boto3.session.Session()
    return session.client(
        "mturk",
        endpoint_url=url,
        region_name=settings.mturk_region,
        aws_access_key_id=settings.mturk_access_key,
        aws_secret_access_key=settings.mturk_secret_key,
        config=Config(
            retries={"max_attempts": 3, "mode": "standard"},
            connect_timeout=10,
            read_timeout=60,
            max_pool_connections=max(1, connections),
        ),
    )


def error_code(exc: BaseException) -> str:
    """TurkErrorCode (or the AWS error code) of a botocore ClientError, '' otherwise."""
    resp = getattr(exc, "response", None) or {}
    return str(resp.get("TurkErrorCode") or resp.get("Error", {}).get("Code") or "")


def paginate(call: Any, key: str, page_size: int = 100, **params: Any) -> Any:
    """Yield every item of a NextToken-paged list call: botocore's own paginator for a boto3
    client method (it stops with PaginationError on a repeated token), else a bounded loop."""
    client, name = getattr(call, "__self__", None), getattr(call, "__name__", "")
    if client is not None and hasattr(client, "can_paginate") and client.can_paginate(name):
        pages = client.get_paginator(name).paginate(
            **params, PaginationConfig={"PageSize": page_size}
        )
        for page in pages:
            yield from page.get(key, [])
        return
    token = None
    seen: set[str] = set()
    while True:
        kw = dict(params, MaxResults=page_size)
        if token:
            kw["NextToken"] = token
        resp = call(**kw)
        yield from resp.get(key, [])
        token = resp.get("NextToken")
        if not token or token in seen:
            return
        seen.add(token)


def call_all(
    fn: Callable[[T], R], items: Sequence[T], concurrency: int = CONCURRENCY
) -> list[tuple[T, R | None, BaseException | None]]:
    """fn over items on up to `concurrency` threads: [(item, result, error)] in input order.
    Every call finishes before this returns, so a caller records what succeeded before it
    raises the first error."""

    def one(x: T) -> tuple[T, R | None, BaseException | None]:
        try:
            return x, fn(x), None
        except Exception as e:  # handed back to the caller, which re-raises after recording
            return x, None, e

    if concurrency <= 1 or len(items) <= 1:
        return [one(x) for x in items]
    with ThreadPoolExecutor(max_workers=min(concurrency, len(items))) as pool:
        return list(pool.map(one, items))


def first_error(results: Sequence[tuple[Any, Any, BaseException | None]]) -> None:
    """Raise the first error of call_all's results, if any."""
    for _x, _r, err in results:
        if err is not None:
            raise err


@contextmanager
def write_session(app: App) -> Iterator[Session]:
    """A session for ONE read-then-write transaction. On SQLite it starts with BEGIN IMMEDIATE:
    a deferred transaction whose snapshot went stale (the server wrote meanwhile) cannot upgrade
    to a writer and fails at once instead of waiting."""
    from db.tx import write_session as _write_session

    with _write_session(app.engine) as s:
        yield s


def find_or_create_qualification(client: Any, name: str, description: str) -> str:
    """The id of this requester's qualification type `name` (created once; found again by name)."""
    try:
        resp = client.create_qualification_type(
            Name=name, Description=description, QualificationTypeStatus="Active"
        )
        return str(resp["QualificationType"]["QualificationTypeId"])
    except client.exceptions.RequestError as e:
        if "AlreadyExists" not in error_code(e) and "already" not in str(e).lower():
            raise
    for q in paginate(
        client.list_qualification_types,
        "QualificationTypes",
        Query=name,
        MustBeRequestable=False,
        MustBeOwnedByCaller=True,
    ):
        if q["Name"] == name:
            return str(q["QualificationTypeId"])
    raise RuntimeError(f"qualification {name!r} exists but cannot be listed")
