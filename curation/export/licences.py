"""Licence and attribution of an exported image, from the candidate that owns it (issue 17)."""

from __future__ import annotations

import re
from typing import Any

# What the sources report, normalised to SPDX ids where SPDX has one: Openverse "cc-by 4.0" /
# "cc0" / "pdm", Flickr's table ("cc-by-sa 2.0", "no known copyright", "all rights reserved"),
# Wikimedia's LicenseShortName ("CC BY-SA 4.0", "CC0", "Public domain").
_SPECIAL = {
    "cc0": "CC0-1.0",
    "cc0 1.0": "CC0-1.0",
    "pdm": "LicenseRef-PDM-1.0",
    "public domain": "LicenseRef-Public-Domain",
    "no known copyright": "LicenseRef-No-Known-Copyright",
    "all rights reserved": "LicenseRef-All-Rights-Reserved",
}
_CC = re.compile(r"^cc[\s_-]*((?:by|nc|nd|sa)(?:[\s_-]+(?:by|nc|nd|sa))*)[\s_-]*(\d(?:\.\d)?)?$")


def normalise(raw: str | None) -> str | None:
    """An SPDX-style id (CC-BY-4.0, CC-BY-SA-2.0, CC0-1.0, ...), a LicenseRef- id for the
    others sources name, or None when the source gave nothing."""
    if not raw or not raw.strip():
        return None
    text = " ".join(raw.strip().lower().split())
    if text in _SPECIAL:
        return _SPECIAL[text]
    m = _CC.match(text)
    if m:
        parts = "-".join(re.split(r"[\s_-]+", m.group(1))).upper()
        version = m.group(2) or ""
        if version and "." not in version:
            version += ".0"
        return f"CC-{parts}-{version}" if version else f"CC-{parts}"
    return "LicenseRef-" + re.sub(r"[^A-Za-z0-9.]+", "-", raw.strip()).strip("-")


def family(spdx: str | None) -> str | None:
    """The licence without its version, lower case: cc0, cc-by, cc-by-sa, pdm, ..."""
    if spdx is None:
        return None
    if spdx == "CC0-1.0":
        return "cc0"
    if spdx.startswith("CC-"):
        return re.sub(r"-\d(\.\d)?$", "", spdx).lower()
    return spdx.lower().removeprefix("licenseref-").removesuffix("-1.0")


def parse_allowed(text: str | None) -> frozenset[str] | None:
    """`--licenses cc0,cc-by,cc-by-sa` -> the families (or exact ids) allowed; None = all."""
    if text is None:
        return None
    allowed = frozenset(t.strip().lower() for t in text.split(",") if t.strip())
    if not allowed:
        raise ValueError("--licenses needs at least one licence, e.g. cc0,cc-by,cc-by-sa")
    return allowed


def allowed_by(spdx: str | None, allowed: frozenset[str] | None) -> bool:
    if allowed is None:
        return True
    return spdx is not None and (spdx.lower() in allowed or family(spdx) in allowed)


def author(meta: dict[str, Any] | None) -> str | None:
    """The creator as each source names it: Openverse `creator`, Flickr `ownername`, Wikimedia
    `artist` (when the harvester keeps it)."""
    for key in ("creator", "ownername", "artist", "author"):
        value = (meta or {}).get(key)
        if isinstance(value, str) and value.strip():
            return re.sub(r"<[^>]+>", "", value).strip()  # Wikimedia's Artist is HTML
    return None


def page_url(source_ref: str | None) -> str | None:
    """The page the image is shown on (Openverse foreign_landing_url, Wikimedia description
    page, Flickr photo page): a source_ref that is a URL, nothing else."""
    if source_ref and source_ref.startswith(("http://", "https://")):
        return source_ref
    return None


def attribution_line(path: str, info: dict[str, Any]) -> str:
    """One ATTRIBUTION.txt line: file, title, author, licence, where it was found."""
    title = info.get("title") or "untitled"
    who = info.get("author") or "unknown author"
    lic = info.get("license") or "licence not given by the source"
    where = info.get("page_url") or info.get("url") or ""
    via = info.get("source") or ""
    return f'{path}\t"{title}" by {who}, {lic}, {where} (via {via})\n'
