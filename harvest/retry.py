"""One retry policy for harvest's HTTP (crawler and search sources): what to retry, how long to wait."""

from __future__ import annotations

import contextlib
import random
import textwrap
from dataclasses import dataclass

# Worth another try soon: the server is there but busy, slow or dropped the connection.
RETRYABLE = {"timeout", "rate_limited", "http_429", "disconnected"}
# The host cannot be reached at all (name does not resolve, connection refused): retrying
# within seconds does not help, so these are not retried; a search source's circuit breaker
# counts them and a later run resumes what was skipped.
UNREACHABLE = {"dns_error", "connect_error"}


def retryable(code: str) -> bool:
    """True for a failure worth retrying after a short wait (busy, slow, 5xx)."""
    return code in RETRYABLE or code.startswith("http_5")


def unreachable(code: str) -> bool:
    """True for a failure that says the host cannot be reached at all."""
    return code in UNREACHABLE


@dataclass(frozen=True)
class RetryPolicy:
    """`retries` extra attempts after the first, exponential backoff from `base` up to `cap`.

    A server's Retry-After is honoured as given when it is at most `max_wait`; a longer one
    gives up now (the caller keeps the work for a later run rather than block for minutes).
    """

    retries: int
    base: float = 0.5
    cap: float = 30.0
    max_wait: float = 60.0

    def delay(self, attempt: int, code: str, retry_after: float | None = None) -> float | None:
        """Seconds to wait before retry `attempt` (1 = the first retry), or None: give up."""
        if attempt > self.retries or not retryable(code):
            return None
        if retry_after is not None:
            return retry_after if retry_after <= self.max_wait else None
        d = min(self.cap, self.base * 2 ** (attempt - 1))
        # Equal jitter: many clients failing together do not all retry at the same instant.
        return d / 2 + random.uniform(0, d / 2)


def clip(text: str, width: int = 200) -> str:
    """One line of at most `width` characters, cut at a word boundary (never mid-word), that
    both backends can store (a server's error text can carry a NUL)."""
    from db.tx import storable

    flat = " ".join((storable(str(text)) or "").split())
    out = textwrap.shorten(flat, width, placeholder=" ...")
    # A single word longer than `width` (a long URL) would shorten to the placeholder alone.
    return out if out.strip(" .") else flat[: width - 3] + "..."


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date); None when absent/bad."""
    if not value:
        return None
    value = value.strip()
    with contextlib.suppress(ValueError):  # not seconds: an HTTP date, parsed below
        return max(0.0, float(value))
    import email.utils
    import time

    try:
        dt = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, dt.timestamp() - time.time())
