"""Requester API input as AWS checks it: strict JSON, then botocore's own mturk shapes."""

from __future__ import annotations

import functools
import json
import math
from typing import Any

INT64 = 2**63 - 1
MAX_DEPTH = 32  # the deepest mturk input shape nests 4 levels; anything deeper is hostile


class InputError(ValueError):
    """A request AWS refuses with HTTP 400: `kind` is its `__type`."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind, self.message = kind, message


def _float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e999 parses to inf; AWS answers 400, not a stored infinity
        raise InputError("SerializationException", f"Number {text[:40]} is out of range.")
    return value


def _int(text: str) -> int:
    if len(text) > 20 or abs(value := int(text)) > INT64:
        raise InputError("SerializationException", f"Number {text[:40]}... is out of range.")
    return value


def _constant(name: str) -> Any:
    raise InputError("SerializationException", f"{name} is not a JSON value.")


def parse_body(body: bytes) -> dict[str, Any]:
    """The body as a JSON object: no NaN/Infinity, numbers within int64/double, strings storable."""
    try:
        params = json.loads(
            body or b"{}", parse_float=_float, parse_int=_int, parse_constant=_constant
        )
    except InputError:
        raise
    except RecursionError:
        raise InputError("SerializationException", "JSON nesting is too deep.") from None
    except ValueError as e:  # includes bodies that are not UTF-8
        raise InputError("SerializationException", f"Body is not JSON: {e}") from None
    if not isinstance(params, dict):
        raise InputError("SerializationException", "Body is not a JSON object.")
    _check_values(params)
    return params


def _check_values(params: dict[str, Any]) -> None:
    # Iterative, so a deep (but parseable) body cannot exhaust the stack here either.
    stack: list[tuple[Any, int]] = [(params, 0)]
    while stack:
        value, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise InputError("ValidationException", "Input nests deeper than any MTurk shape.")
        if isinstance(value, dict):
            stack.extend((x, depth + 1) for kv in value.items() for x in kv)
        elif isinstance(value, list):
            stack.extend((x, depth + 1) for x in value)
        elif isinstance(value, str):
            # Lone surrogates cannot be stored as UTF-8; PostgreSQL text cannot hold NUL.
            if "\x00" in value or not value.isascii() and not _utf8(value):
                raise InputError(
                    "ValidationException", "Strings must be UTF-8 text without NUL characters."
                )


def _utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


@functools.cache
def _shapes() -> tuple[Any, Any]:
    import botocore.session
    from botocore.validate import ParamValidator

    return botocore.session.get_session().get_service_model("mturk"), ParamValidator()


def validate(op: str, params: dict[str, Any]) -> None:
    """Types, required members and minimums from botocore's mturk model, as boto3 checks them
    client-side; unknown members are ignored as AWS's JSON protocol does."""
    model, validator = _shapes()
    if op not in model.operation_names:
        return
    shape = model.operation_model(op).input_shape
    if shape is None:
        return
    try:
        report = validator.validate(params, shape)
    except (RuntimeError, ValueError, OverflowError, OSError) as e:
        # dateutil gives up on timestamps like 1e226 with a RuntimeError: out of range for AWS too.
        raise InputError("ValidationException", f"A value is out of range: {e}"[:300]) from None
    errors = [e for e in getattr(report, "_errors", []) if e[0] != "unknown field"]
    if errors:
        report._errors = errors
        lines = report.generate_report().splitlines()
        raise InputError(
            "ValidationException",
            f"{len(errors)} validation error(s) detected: " + "; ".join(lines[:5])[:1000],
        )
