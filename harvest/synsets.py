"""WordNet synsets for harvest: load by wnid, whole subtrees, or the ILSVRC-2012 class list."""

from __future__ import annotations

import re
from functools import cache
from importlib import resources
from typing import Any

from imnet.core.app import App

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


@cache
def _wn() -> Any:
    import nltk.corpus

    from imnet.core.wordnet import WordNetUnavailable, ensure_wordnet

    try:
        ensure_wordnet(allow_download=False)
    except WordNetUnavailable as e:
        raise SynsetError(str(e)) from None
    # Read the attribute after ensure_wordnet: it may have replaced nltk's corpus loader.
    return nltk.corpus.wordnet


def wnid_of(syn: Any) -> str:
    return f"n{syn.offset():08d}"


def synset_for(wnid: str) -> Any:
    """The nltk synset of a wnid; SynsetError when malformed or unknown."""
    if not WNID_RE.match(wnid or ""):
        raise SynsetError(f"{wnid!r} is not a wnid (n + 8 digits, e.g. n01440764)")
    import warnings

    try:
        with warnings.catch_warnings():
            # nltk warns and returns None for an offset that is not a synset's start.
            warnings.simplefilter("ignore", UserWarning)
            syn = _wn().synset_from_pos_and_offset("n", int(wnid[1:]))
    except Exception:  # nltk raises WordNetError/ValueError/IndexError for unknown offsets
        syn = None
    if syn is None:
        raise SynsetError(f"{wnid} is not a WordNet 3.0 noun synset")
    return syn


def _children(syn: Any) -> list[Any]:
    return sorted(syn.hyponyms() + syn.instance_hyponyms(), key=lambda s: s.offset())


def _parents(syn: Any) -> list[Any]:
    # nltk's hypernym order follows set iteration (PYTHONHASHSEED); sort so that a synset with two
    # parents always gets the same parent_wnid, and reruns create no new queries.
    return sorted(syn.hypernyms() + syn.instance_hypernyms(), key=lambda s: s.offset())


def describe(syn: Any) -> dict[str, Any]:
    """The `synset` row values for an nltk synset."""
    parents = _parents(syn)
    return {
        "wnid": wnid_of(syn),
        "lemmas": [n.replace("_", " ") for n in syn.lemma_names()],
        "gloss": syn.definition() or "",
        "parent_wnid": wnid_of(parents[0]) if parents else None,
        "depth": syn.min_depth(),
        "is_leaf": not _children(syn),
    }


def subtree(root: str, leaves_only: bool = False) -> list[str]:
    """Every wnid under `root` (itself included), sorted; only leaves with leaves_only."""
    seen: dict[str, Any] = {}
    stack = [synset_for(root)]
    while stack:
        s = stack.pop()
        w = wnid_of(s)
        if w in seen:
            continue
        seen[w] = s
        stack.extend(_children(s))
    return sorted(w for w, s in seen.items() if not leaves_only or not _children(s))


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
    bad, good = [], []
    for w in wanted:
        if w in have:
            continue
        try:
            synset_for(w)
            good.append(w)
        except SynsetError:
            bad.append(w)
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
