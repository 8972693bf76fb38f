"""Class sets: import the ILSVRC-2012 1000 classes, or choose N non-nested WordNet classes."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from imnet.core.app import App

WNID_RE = re.compile(r"^n\d{8}$")


class ClassError(ValueError):
    """A class set cannot be made; the message is one line for the user."""


def _wordnet() -> Any:
    """WordNet's noun synsets from imnet's compact cache (loaded once per process)."""
    from imnet.core.wordnet import nouns

    return nouns()


def wn_synset(wn: Any, wnid: str) -> Any | None:
    """The noun synset of a wnid, or None when WordNet 3.0 has no such noun."""
    return wn.get(wnid) if WNID_RE.match(wnid) else None


def to_wnid(syn: Any) -> str:
    return str(syn.wnid)


def ancestors(wn: Any, wnid: str, parents: dict[str, str | None]) -> set[str]:
    """Every ancestor: WordNet hypernyms and instance hypernyms (all paths), plus the database's
    parent chain for synsets WordNet does not know."""
    out: set[str] = set()
    out.update(wn.ancestors(wnid))  # hypernyms and instance hypernyms, all paths
    p = parents.get(wnid)
    while p and p not in out:
        out.add(p)
        p = parents.get(p)
    out.discard(wnid)
    return out


def accepted_counts(session: Session, wnids: Iterable[str] | None = None) -> dict[str, int]:
    """Distinct usable images with an accepted label, per wnid (quality not rejected, not a near
    duplicate)."""
    from sqlalchemy import func, or_, select

    from db.models import Candidate, Image, Label

    q = (
        select(Label.wnid, func.count(func.distinct(Candidate.image_sha256)))
        .join(Candidate, Candidate.id == Label.candidate_id)
        .join(Image, Image.sha256 == Candidate.image_sha256)
        .where(
            Label.decision == "accept",
            or_(Image.quality.is_(None), Image.quality != "rejected"),
            Image.near_dup_of.is_(None),
        )
        .group_by(Label.wnid)
    )
    if wnids is not None:
        q = q.where(Label.wnid.in_(list(wnids)))
    return {w: int(n) for w, n in session.execute(q)}


def _write_set(
    session: Session, set_name: str, wnids: Sequence[str], ordered: bool = False
) -> None:
    """Replace the set; class_index = position in wnid order (ImageFolder and ILSVRC order), or
    in the given order when `ordered` (an official list)."""
    from sqlalchemy import delete

    from db.models import ClassChoice

    session.execute(delete(ClassChoice).where(ClassChoice.set_name == set_name))
    session.flush()
    for i, w in enumerate(wnids if ordered else sorted(wnids)):
        session.add(ClassChoice(set_name=set_name, wnid=w, class_index=i))


def import_ilsvrc2012(app: App, set_name: str = "ilsvrc2012") -> int:
    """Store the real ILSVRC-2012 1000 classes as a class set; returns how many were stored."""
    try:
        from harvest.synsets import ilsvrc2012_wnids
    except ImportError as e:
        raise ClassError(
            f"the ILSVRC-2012 class list is unavailable (harvest.synsets: {e})"
        ) from None
    wnids = list(ilsvrc2012_wnids())
    bad = [w for w in wnids if not WNID_RE.match(w)]
    if bad or len(set(wnids)) != len(wnids) or not wnids:
        raise ClassError(f"the ILSVRC-2012 list is malformed ({len(wnids)} wnids, bad: {bad[:3]})")
    with app.Session.begin() as s:
        _write_set(s, set_name, wnids, ordered=True)
    return len(wnids)


def choose_classes(
    app: App,
    set_name: str,
    n: int,
    roots: Sequence[str] | None = None,
    min_images: int = 1,
) -> dict[str, Any]:
    """Choose up to n synsets of the database under the roots (all when None) such that none is an
    ancestor of another and each has >= min_images accepted images; store them as a class set.

    Greedy: most accepted images first (ties: deeper synset, then smaller wnid). Returns
    {"set", "requested", "chosen": [wnid...], "counts": {wnid: n}, "rejected": {wnid: reason},
    "short_by"}.
    """
    from sqlalchemy import select

    from db.models import Synset

    if n < 1:
        raise ClassError(f"--n must be at least 1, got {n}")
    wn = _wordnet()
    roots = list(roots or [])
    for r in roots:
        if not WNID_RE.match(r):
            raise ClassError(f"root {r!r} is not a wnid like n02084071")
    with app.Session() as s:
        synsets = {
            w: (p, d)
            for w, p, d in s.execute(select(Synset.wnid, Synset.parent_wnid, Synset.depth))
        }
        counts = accepted_counts(s)
    parents = {w: p for w, (p, _) in synsets.items()}
    rejected: dict[str, str] = {}
    anc: dict[str, set[str]] = {}
    eligible: list[str] = []
    for w in sorted(synsets):
        anc[w] = ancestors(wn, w, parents)
        if roots and w not in roots and not anc[w].intersection(roots):
            rejected[w] = f"not_under_roots: {w} descends from none of {', '.join(roots)}"
            continue
        k = counts.get(w, 0)
        if k < min_images:
            rejected[w] = f"too_few_images: {k} accepted < {min_images}"
            continue
        eligible.append(w)
    eligible.sort(key=lambda w: (-counts.get(w, 0), -synsets[w][1], w))
    chosen: list[str] = []
    for w in eligible:
        if len(chosen) >= n:
            rejected[w] = f"not_needed: {n} classes already chosen ({counts.get(w, 0)} images)"
            continue
        above = sorted(c for c in chosen if c in anc[w])
        below = sorted(c for c in chosen if w in anc[c])
        if above:
            rejected[w] = f"descendant_of_chosen: {above[0]} is an ancestor"
        elif below:
            rejected[w] = f"ancestor_of_chosen: {below[0]} is a descendant"
        else:
            chosen.append(w)
    if not chosen:
        raise ClassError(
            f"no synset qualifies for set {set_name!r} ({len(synsets)} synsets in the database, "
            f"min_images={min_images}); nothing was stored"
        )
    with app.Session.begin() as s:
        _write_set(s, set_name, chosen)
    return {
        "set": set_name,
        "requested": n,
        "chosen": sorted(chosen),
        "counts": {w: counts.get(w, 0) for w in sorted(chosen)},
        "rejected": dict(sorted(rejected.items())),
        "short_by": max(0, n - len(chosen)),
    }


def class_set(session: Session, set_name: str) -> list[tuple[str, int]]:
    """(wnid, class_index) of a stored set, in class-index order."""
    from sqlalchemy import select

    from db.models import ClassChoice

    return [
        (w, i)
        for w, i in session.execute(
            select(ClassChoice.wnid, ClassChoice.class_index)
            .where(ClassChoice.set_name == set_name)
            .order_by(ClassChoice.class_index)
        )
    ]


def describe(app: App, wnids: Sequence[str]) -> dict[str, tuple[list[str], str]]:
    """(lemmas, gloss) per wnid: the synset table first, WordNet for what it lacks."""
    from sqlalchemy import select

    from db.models import Synset

    out: dict[str, tuple[list[str], str]] = {}
    with app.Session() as s:
        for w, lemmas, gloss in s.execute(
            select(Synset.wnid, Synset.lemmas, Synset.gloss).where(Synset.wnid.in_(list(wnids)))
        ):
            if lemmas:
                out[w] = ([str(x).replace("_", " ") for x in lemmas], gloss or "")
    out.update(describe_wordnet([w for w in wnids if w not in out]))
    return out


def describe_wordnet(wnids: Sequence[str]) -> dict[str, tuple[list[str], str]]:
    """(lemmas, gloss) per wnid from WordNet alone (the wnid itself when WordNet lacks it)."""
    wn = _wordnet() if wnids else None
    out: dict[str, tuple[list[str], str]] = {}
    for w in wnids:
        syn = wn_synset(wn, w)
        out[w] = (
            ([x.replace("_", " ") for x in syn.lemma_names()], syn.definition())
            if syn is not None
            else ([w], "")
        )
    return out


def show_classes(app: App, set_name: str) -> list[dict[str, Any]]:
    """The stored set with names and accepted-image counts."""
    with app.Session() as s:
        rows = class_set(s, set_name)
        counts = accepted_counts(s, [w for w, _ in rows])
    if not rows:
        raise ClassError(
            f"no class set named {set_name!r}; run `imnet classes choose` or import one"
        )
    names = describe(app, [w for w, _ in rows])
    return [
        {"class_index": i, "wnid": w, "words": ", ".join(names[w][0]), "accepted": counts.get(w, 0)}
        for w, i in rows
    ]
