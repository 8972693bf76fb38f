"""WordNet synsets for harvest: load by wnid, whole subtrees, or the ILSVRC-2012 class list."""

from __future__ import annotations

import re
from functools import cache
from importlib import resources
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from imnet.core.app import App
    from imnet.core.wordnet import Noun, Nouns

WNID_RE = re.compile(r"^n\d{8}$")


class SynsetError(ValueError):
    """A wnid is malformed or not a WordNet 3.0 noun synset; the message is one line."""


def ilsvrc2012_wnids() -> list[str]:
    """The 1,000 ILSVRC-2012 wnids in class-index order (shipped data file, from timm, Apache-2.0)."""
    return list(_ilsvrc2012())


@cache
def _ilsvrc2012() -> tuple[str, ...]:
    text = resources.files("harvest").joinpath("data/ilsvrc2012_wnids.txt").read_text()
    wnids = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]
    if len(wnids) != 1000 or len(set(wnids)) != 1000:
        raise RuntimeError(f"harvest/data/ilsvrc2012_wnids.txt holds {len(wnids)} wnids, not 1000")
    return tuple(wnids)


def _nouns() -> Nouns:
    from imnet.core.wordnet import WordNetUnavailable, nouns

    try:
        return nouns()
    except WordNetUnavailable as e:  # the real cause, naming `imnet setup`
        raise SynsetError(str(e)) from None


def wnid_of(syn: Noun) -> str:
    return syn.wnid


def synset_for(wnid: str) -> Noun:
    """The WordNet noun synset of a wnid; SynsetError when malformed, unknown, or WordNet is
    missing (then the message names `imnet setup`)."""
    if not WNID_RE.match(wnid or ""):
        raise SynsetError(f"{wnid!r} is not a wnid (n + 8 digits, e.g. n01440764)")
    syn = _nouns().get(wnid)
    if syn is None:
        raise SynsetError(f"{wnid} is not a WordNet 3.0 noun synset")
    return syn


def describe(syn: Noun) -> dict[str, Any]:
    """The `synset` row values for a noun synset."""
    # parents are sorted by wnid, so a synset with two parents always gets the same parent_wnid
    # and reruns create no new queries.
    return {
        "wnid": syn.wnid,
        "lemmas": [n.replace("_", " ") for n in syn.lemmas],
        "gloss": syn.gloss,
        "parent_wnid": syn.parents[0] if syn.parents else None,
        "depth": syn.depth,
        "is_leaf": not syn.children,
    }


def subtree(root: str, leaves_only: bool = False) -> list[str]:
    """Every wnid under `root` (itself included), sorted; only leaves with leaves_only."""
    index = _nouns()
    seen: dict[str, Noun] = {}
    stack = [synset_for(root)]
    while stack:
        s = stack.pop()
        if s.wnid in seen:
            continue
        seen[s.wnid] = s
        stack.extend(n for c in s.children if (n := index.get(c)) is not None)
    return sorted(w for w, s in seen.items() if not leaves_only or not s.children)


def add_synsets(
    app: App,
    wnids: list[str] | None = None,
    root: str | None = None,
    leaves_only: bool = False,
    max_n: int | None = None,
    ilsvrc2012: bool = False,
) -> int:
    """Insert or refresh `synset` rows; returns how many wnids were written.

    Sources combine: explicit wnids, the subtree under `root`, and the ILSVRC-2012 list. All wnids
    are checked against WordNet before anything is written, so a bad one changes nothing.
    """
    from db.models import Synset

    chosen: list[str] = list(wnids or [])
    if root:
        chosen += subtree(root, leaves_only=leaves_only)
    if ilsvrc2012:
        chosen += ilsvrc2012_wnids()
    chosen = list(dict.fromkeys(chosen))
    if max_n is not None:
        chosen = chosen[: max(0, max_n)]
    rows = [describe(synset_for(w)) for w in chosen]
    with app.Session() as s, s.begin():
        existing = (
            {r.wnid: r for r in s.query(Synset).filter(Synset.wnid.in_([r["wnid"] for r in rows]))}
            if rows
            else {}
        )
        for r in rows:
            obj = existing.get(r["wnid"])
            if obj is None:
                s.add(Synset(**r))
            else:
                for k, v in r.items():
                    setattr(obj, k, v)
    return len(rows)


def ensure_synsets(app: App, wnids: list[str]) -> list[str]:
    """Add the wnids that lack a row (e.g. from a URL list); returns those that are not synsets."""
    from db.models import Synset

    wanted = sorted(set(wnids))
    with app.Session() as s:
        have = {w for (w,) in s.query(Synset.wnid).filter(Synset.wnid.in_(wanted))}
    bad: list[str] = []
    good: list[str] = []
    for w in wanted:
        if w in have:
            continue
        (good if w in _nouns() else bad).append(w)
    if good:
        add_synsets(app, wnids=good)
    return bad


def list_synsets(app: App) -> list[dict[str, Any]]:
    from db.models import Synset

    with app.Session() as s:
        return [
            {
                "wnid": r.wnid,
                "lemmas": r.lemmas,
                "gloss": r.gloss,
                "parent": r.parent_wnid,
                "depth": r.depth,
                "leaf": r.is_leaf,
            }
            for r in s.query(Synset).order_by(Synset.wnid)
        ]
