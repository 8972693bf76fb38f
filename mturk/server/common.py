"""What every part of the self-hosted server shares: MTurk-style errors, ids and money checks."""

from __future__ import annotations

import secrets
import string
from decimal import Decimal, InvalidOperation
from typing import Any

_ID_ALPHABET = string.ascii_uppercase + string.digits


class MTurkError(Exception):
    """An error answered as MTurk does: `__type` RequestError (400) or ServiceFault (500)."""

    def __init__(self, code: str, message: str, kind: str = "RequestError", http: int = 400):
        super().__init__(message)
        self.code = code
        self.message = message
        self.kind = kind
        self.http = http


def new_id(first: str = "3") -> str:
    return first + "".join(secrets.choice(_ID_ALPHABET) for _ in range(29))


def parse_money(value: Any, name: str) -> Decimal:
    try:
        d = Decimal(str(value))
    except InvalidOperation:
        raise MTurkError("AWS.ParameterOutOfRange", f"{name} {value!r} is not a number") from None
    if d < 0 or d != d.quantize(Decimal("0.01")):
        raise MTurkError("AWS.ParameterOutOfRange", f"{name} {value!r} must be >= 0 with cents")
    return d
