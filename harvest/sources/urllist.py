"""The `urllist` source: a file of `wnid<TAB>url` lines (img2dataset-style input) -> candidates."""

from __future__ import annotations

import contextlib
from collections.abc import Generator
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import urlsplit

from harvest.sources.base import Page, Source, SourceError, register_source

if TYPE_CHECKING:
    from imnet.core.app import App


def parse_lines(path: str | Path) -> Generator[tuple[int, str | None, str | None, str]]:
    """Yield (line number, wnid, url, problem) per non-blank line; problem is '' when valid."""
    from harvest.synsets import WNID_RE

    with open(path, encoding="utf-8", errors="replace") as f:
        for n, raw in enumerate(f, 1):
            line = raw.rstrip("\r\n")
            if not line.strip() or line.startswith("#"):
                continue
            parts = line.split("\t")
            if len(parts) < 2:
                yield n, None, None, "expected wnid<TAB>url"
                continue
            wnid, url = parts[0].strip(), parts[1].strip()
            if not WNID_RE.match(wnid):
                yield n, None, None, f"bad wnid {wnid[:20]!r}"
                continue
            u = urlsplit(url)
            if u.scheme not in {"http", "https"} or not u.hostname:
                yield n, wnid, None, f"not an http(s) URL: {url[:60]!r}"
                continue
            yield n, wnid, url, ""


def check_text_file(p: Path) -> None:
    """ValueError (one line) unless `p` is a readable file that looks like text."""
    if p.is_dir():
        raise ValueError(f"URL list {p} is a directory, not a file")
    if not p.exists():
        raise ValueError(f"URL list {p} does not exist")
    with open(p, "rb") as f:
        head = f.read(8192)
    # A binary file would parse as hundreds of bad lines: refuse it when it has NUL bytes or
    # is mostly undecodable or control bytes (a stray Latin-1 character is still text).
    text = head.decode("utf-8", errors="replace")
    odd = sum(1 for c in text if c == "\ufffd" or (c < " " and c not in "\t\r\n\f"))
    if b"\0" in head or odd > len(text) // 10:
        raise ValueError(f"{p} is not a text file (a URL list has wnid<TAB>url lines)")


@register_source("urllist")
class UrlListSource(Source):
    """No search: `import_urls` streams the file. Listed so `get_source` knows every source."""

    async def search(self, text: str, cursor: str | None, page_size: int) -> Page:
        raise SourceError(
            "no_search", "urllist has no search; use `imnet harvest import-urls FILE`"
        )


def import_urls(app: App, path: str, batch: int = 10_000) -> dict[str, Any]:
    """Add one pending candidate per valid line; returns counts and the first bad lines.

    Unknown but valid wnids get their synset row from WordNet; lines with a wnid that is not a
    WordNet noun synset are reported and skipped, never silently dropped.

    Streams: the file is read line by line and written `batch` rows per transaction, so memory
    stays bounded whatever the file's size (plus one entry per distinct wnid). A rerun after a
    crash adds the lines not yet stored and counts the others under `already_known`.
    """
    from db.models import Candidate
    from db.tx import insert_ignore
    from harvest.synsets import ensure_synsets

    p = Path(path)
    if batch < 1:
        raise ValueError("batch must be at least 1")
    check_text_file(p)
    known: set[str] = set()  # wnids with a synset row (checked once each)
    not_synsets: set[str] = set()
    bad: list[str] = []
    counts = {"lines_ok": 0, "added": 0, "bad_lines": 0, "batches": 0}

    def report_bad(n: int, problem: str) -> None:
        counts["bad_lines"] += 1
        if len(bad) < 20:
            bad.append(f"line {n}: {problem}")

    def flush(pending: list[tuple[int, str, str]]) -> None:
        fresh = {w for _, w, _ in pending} - known - not_synsets
        if fresh:
            missing = set(ensure_synsets(app, sorted(fresh)))
            not_synsets.update(missing)
            known.update(fresh - missing)
        rows = []
        for n, wnid, url in pending:
            if wnid in not_synsets:
                report_bad(n, f"{wnid} is not a WordNet noun synset")
                continue
            rows.append(
                {
                    "wnid": wnid,
                    "url": url,
                    "source": "urllist",
                    "source_ref": f"{p.name}:{n}",
                    "status": "pending",
                    "attempts": 0,
                }
            )
        with app.engine.begin() as conn:
            counts["added"] += insert_ignore(conn, Candidate.__table__, rows, chunk=2000)
        counts["lines_ok"] += len(rows)
        counts["batches"] += 1

    pending: list[tuple[int, str, str]] = []
    # closing(): a failed batch closes the file now, not whenever the generator is collected.
    with contextlib.closing(parse_lines(p)) as lines:
        for n, wnid, url, problem in lines:
            if problem:
                report_bad(n, problem)
                continue
            pending.append((n, cast(str, wnid), cast(str, url)))  # set when no problem
            if len(pending) >= batch:
                flush(pending)
                pending = []
    if pending:
        flush(pending)
    if counts["lines_ok"] == 0 and counts["bad_lines"] == 0:
        raise ValueError(f"no URLs in {path} (expected wnid<TAB>url lines)")
    return {
        "lines_ok": counts["lines_ok"],
        "added": counts["added"],
        "already_known": counts["lines_ok"] - counts["added"],
        "bad_lines": counts["bad_lines"],
        "bad_examples": bad,
        "batches": counts["batches"],
    }
