"""Requester API paging: offset and keyset NextTokens, checked before they reach a query."""

from __future__ import annotations

import base64
import binascii
import json
import math
import re

from mturk.server.common import MTurkError

# Any HIT id new_id() makes (a forged token's id is checked before it reaches a query).
_HIT_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


def _size(p: dict, default: int) -> int:
    try:
        size = int(p.get("MaxResults", default))
    except (TypeError, ValueError):
        raise MTurkError("AWS.ParameterOutOfRange", "bad MaxResults") from None
    if not 1 <= size <= 100:
        raise MTurkError("AWS.ParameterOutOfRange", "MaxResults must be 1..100")
    return size


def offset_page(p: dict, default: int = 10) -> tuple[int, int]:
    """Page size and offset (NextToken is the offset this server issued, as text)."""
    size = _size(p, default)
    try:
        offset = int(p.get("NextToken") or 0)
    except (TypeError, ValueError):
        raise MTurkError("AWS.ParameterOutOfRange", "bad NextToken") from None
    # Past 2**62 it would overflow PostgreSQL's bigint OFFSET (a 500 instead of a 400).
    if not 0 <= offset <= 2**62:
        raise MTurkError("AWS.ParameterOutOfRange", "bad NextToken")
    return size, offset


def keyset_page(p: dict, default: int = 10) -> tuple[int, tuple[float, str] | None]:
    """Page size and the last key of the previous page (NextToken is that key, encoded)."""
    size = _size(p, default)
    token = p.get("NextToken")
    if not token:
        return size, None
    try:
        key, hit_id = json.loads(base64.urlsafe_b64decode(str(token)[:512].encode()))
    except (ValueError, TypeError, binascii.Error, UnicodeError):
        raise MTurkError("AWS.ParameterOutOfRange", "bad NextToken") from None
    # A forged token decodes to anything: a NUL in the id is PostgreSQL's DataError (a 500).
    number = isinstance(key, int | float) and not isinstance(key, bool)
    if not number or not math.isfinite(key) or not isinstance(hit_id, str):
        raise MTurkError("AWS.ParameterOutOfRange", "bad NextToken")
    if not _HIT_ID.fullmatch(hit_id):
        raise MTurkError("AWS.ParameterOutOfRange", "bad NextToken")
    return size, (float(key), hit_id)


def keyset_token(key: float, hit_id: str) -> str:
    """The NextToken that resumes after (key, hit_id)."""
    return base64.urlsafe_b64encode(json.dumps([key, hit_id]).encode()).decode()
