"""argparse types for numeric flags: an integer or finite float within a range, refused in one line."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable


def int_in(lo: int, hi: int | None = None) -> Callable[[str], int]:
    """argparse type: an integer in [lo, hi] (no upper bound when hi is None)."""

    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if v < lo or (hi is not None and v > hi):
            raise argparse.ArgumentTypeError(
                f"{v} is out of range (at least {lo}" + (f", at most {hi})" if hi else ")")
            )
        return v

    parse.__name__ = "integer"  # argparse names the type in "invalid <name> value"
    return parse


def float_in(
    lo: float, hi: float, lo_open: bool = False, hi_open: bool = False
) -> Callable[[str], float]:
    """argparse type: a finite float in [lo, hi], either end open on request."""

    def parse(text: str) -> float:
        try:
            v = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        low_ok = v > lo if lo_open else v >= lo
        high_ok = v < hi if hi_open else v <= hi
        if not (math.isfinite(v) and low_ok and high_ok):
            span = f"{'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}"
            raise argparse.ArgumentTypeError(f"{text} is outside {span}")
        return v

    parse.__name__ = "number"
    return parse
