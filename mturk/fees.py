"""MTurk's fee rule, in one place: what `publish` estimates and what the self-hosted server charges."""

from __future__ import annotations

from collections.abc import Iterable
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

CENT = Decimal("0.01")
# MTurk charges 40% instead of 20% from 10 assignments on, so a HIT never asks for more than 9.
MAX_ASSIGNMENTS_PER_HIT = 9


def fee_rate(max_assignments: int) -> Decimal:
    """MTurk's commission: 20%, or 40% for HITs with 10 or more assignments."""
    return Decimal("0.40") if max_assignments > MAX_ASSIGNMENTS_PER_HIT else Decimal("0.20")


def commission(reward: Decimal, max_assignments: int) -> Decimal:
    """MTurk's fee on one assignment, unrounded: the rate of the reward, at least $0.01."""
    return max(CENT, reward * fee_rate(max_assignments))


def assignment_cost(reward: Decimal, max_assignments: int) -> Decimal:
    """What an approved assignment costs the requester: reward plus commission, in cents."""
    return reward + commission(reward, max_assignments).quantize(CENT, rounding=ROUND_HALF_UP)


def estimate_cost(assignments: Iterable[int], reward: str) -> dict[str, Any]:
    """The bill for HITs of `assignments` (each HIT's max_assignments) at `reward` per assignment:
    rewards plus MTurk's commission (`commission`), summed, then rounded to cents."""
    r = Decimal(reward)
    sizes = list(assignments)
    rewards = sum((r * n for n in sizes), Decimal(0))
    fees = sum((commission(r, n) * n for n in sizes), Decimal(0))
    return {
        "hits": len(sizes),
        "assignments": sum(sizes),
        "reward_per_assignment": str(r),
        "rewards": str(rewards.quantize(CENT)),
        "fees": str(fees.quantize(CENT)),
        "total": str((rewards + fees).quantize(CENT)),
    }
