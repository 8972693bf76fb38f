"""What every part of the self-hosted server shares: MTurk-style errors, ids and money checks."""

from __future__ import annotations

import secrets
import string
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
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


def fee_rate(max_assignments: int) -> Decimal:
    """MTurk's commission: 20%, or 40% for HITs with 10 or more assignments."""
    return Decimal("0.40") if max_assignments >= 10 else Decimal("0.20")


def is_system_qual(qid: str) -> bool:
    # MTurk's built-in qualifications (approval rate, locale, Masters...) have fixed ids of zeros
    # and digits; the sandbox server has no such statistics and treats them as satisfied.
    return qid.startswith("00000000000000000") or qid.startswith("2F1QJWKUDD8XADTFD2Q0G6UTO95ALH")


def assignment_cost(reward: Decimal, max_assignments: int) -> Decimal:
    """What an approved assignment costs the requester: reward plus commission (at least $0.01)."""
    cent = Decimal("0.01")
    fee = max(cent, (reward * fee_rate(max_assignments)).quantize(cent, rounding=ROUND_HALF_UP))
    return reward + fee


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
