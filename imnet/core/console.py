"""What a command prints: the one-line user error, JSON output, and OSError as one line."""

from __future__ import annotations

import json
import os


class UserError(RuntimeError):
    """Raised by commands for a clear one-line failure (no traceback)."""


def print_json(obj: object) -> None:
    print(json.dumps(obj, indent=2, sort_keys=True, default=str))


def os_error_line(e: OSError) -> str:
    """`cannot use PATH: reason` for an OSError, on one line."""
    reason = e.strerror or str(e) or type(e).__name__
    where = e.filename if e.filename is not None else None
    if isinstance(e, FileExistsError) and where is not None and not os.path.isdir(where):
        reason = "a file is there, not a directory"  # mkdir's "File exists" misleads
    line = f"cannot use {where}: {reason}" if where is not None else reason
    return " ".join(line.split())
