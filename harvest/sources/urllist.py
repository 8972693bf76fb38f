"""The `urllist` source: a file of `wnid<TAB>url` lines (img2dataset-style input) -> candidates."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from harvest.sources.base import Page, Source, SourceError, register_source


def parse_lines(path: str | Path) -> Iterator[tuple[int, str | None, str | None, str]]:
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


@register_source("urllist")
class UrlListSource(Source):
    """No search: `import_urls` reads the whole file. Listed so `get_source` knows every source."""

    def search(self, text: str, cursor: str | None, page_size: int) -> Page:
        raise SourceError(
            "no_search", "urllist has no search; use `imnet harvest import-urls FILE`"
        )


def import_urls(app: Any, path: str, chunk: int = 2000) -> dict[str, Any]:
    """Add one pending candidate per valid line; returns counts and the first bad lines.

    Unknown but valid wnids get their synset row from WordNet; lines with a wnid that is not a
    WordNet noun synset are reported and skipped, never silently dropped.
    """
    from db.models import Candidate
    from harvest._db import insert_ignore
    from harvest.synsets import ensure_synsets

    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"URL list {path} does not exist")
    good: list[tuple[int, str, str]] = []
    bad: list[str] = []
    n_bad = 0
    for n, wnid, url, problem in parse_lines(p):
        if problem:
            n_bad += 1
            if len(bad) < 20:
                bad.append(f"line {n}: {problem}")
        else:
            good.append((n, wnid, url))  # type: ignore[arg-type]
    not_synsets = set(ensure_synsets(app, sorted({w for _, w, _ in good})))
    rows = []
    for n, wnid, url in good:
        if wnid in not_synsets:
            n_bad += 1
            if len(bad) < 20:
                bad.append(f"line {n}: {wnid} is not a WordNet noun synset")
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
    added = 0
    with app.engine.begin() as conn:
        for i in range(0, len(rows), chunk):
            added += insert_ignore(conn, Candidate.__table__, rows[i : i + chunk])
    return {
        "lines_ok": len(rows),
        "added": added,
        "already_known": len(rows) - added,
        "bad_lines": n_bad,
        "bad_examples": bad,
    }
