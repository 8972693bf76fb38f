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
        raise MTurkError(
            "AWS.ParameterOutOfRange", f"{name} {str(value)[:40]!r} is not a number"
        ) from None
    # NaN/Infinity parse as Decimals but compare and quantize with an exception: refuse first.
    if not d.is_finite() or d < 0 or d.adjusted() > 9 or d != d.quantize(Decimal("0.01")):
        raise MTurkError(
            "AWS.ParameterOutOfRange",
            f"{name} {str(value)[:40]!r} must be 0..1e9 with at most cents",
        )
    return d


def is_system_qual(qid: str) -> bool:
    # MTurk's built-in qualifications (approval rate, locale, Masters...) have fixed ids of zeros
    # and digits; the sandbox server has no such statistics and treats them as satisfied.
    return qid.startswith("00000000000000000") or qid.startswith("2F1QJWKUDD8XADTFD2Q0G6UTO95ALH")


def _compared(reqs: list[dict] | None, comparator: str) -> set[str]:
    return {
        str(r.get("QualificationTypeId", ""))
        for r in reqs or []
        if r.get("Comparator") == comparator
        and not is_system_qual(str(r.get("QualificationTypeId", "")))
    }


def excluding(reqs: list[dict] | None) -> set[str]:
    """The qualification types a worker must not hold (`DoesNotExist` requirements)."""
    return _compared(reqs, "DoesNotExist")


def gate_of(reqs: list[dict] | None) -> str | None:
    """A HIT type's gate: its `Exists` requirements' ids, sorted and joined (None: none)."""
    return ",".join(sorted(_compared(reqs, "Exists"))) or None


def derive_hit(
    status: str,
    max_assignments: int,
    expiration: float,
    n_done: int,
    deadlines: list[float],
    reviewable_at: float | None,
    now: float,
) -> dict[str, Any]:
    """The derived columns of a HIT (see SandboxHit) from its stored status and assignments:
    n_done finished ones and the deadlines of its Accepted ones."""
    deadlines = sorted(deadlines, reverse=True)
    left = max_assignments - n_done
    pending = deadlines[0] if deadlines else None
    if left > 0:
        # Reviewable once it has expired and no accepted work can still come back.
        at = max(expiration, pending or expiration)
    elif reviewable_at is None or reviewable_at > now:
        at = now  # done just now; one reviewable already keeps its place in the listing
    else:
        at = reviewable_at
    return {
        "n_done": n_done,
        "pending_until": pending,
        # Accepted ones fill the `left` free slots until the left-th latest deadline passes.
        "full_until": deadlines[left - 1] if 0 < left <= len(deadlines) else None,
        "reviewable_at": at,
        "is_open": status == "Assignable" and left > 0,
    }
