"""Class sets: the real ILSVRC-2012 list, and automatic non-nested choice with reasons."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from curation.classes import ClassError, choose_classes, import_ilsvrc2012, show_classes
from db.models import ClassChoice
from tests.curation.images import encode, smooth_image
from tests.dbrows import add_candidate, add_synset

DOG, TOY_DOG, CHIHUAHUA, SPANIEL = "n02084071", "n02085374", "n02085620", "n02085782"
TABBY, ORANGE = "n02123045", "n07747607"


def _populate(app, counts: dict[str, int]) -> None:  # type: ignore[no-untyped-def]
    seed = 0
    with app.Session.begin() as s:
        for wnid, n in counts.items():
            add_synset(s, wnid)
            for _ in range(n):
                seed += 1
                add_candidate(s, app.blobs, wnid, encode(smooth_image(seed), "PNG"))
            # A rejected label never counts.
            seed += 1
            add_candidate(s, app.blobs, wnid, encode(smooth_image(seed), "PNG"), decision="reject")


@pytest.mark.slow
def test_choose_skips_ancestors_and_explains_every_rejection(app) -> None:  # type: ignore[no-untyped-def]
    _populate(app, {DOG: 9, TOY_DOG: 2, CHIHUAHUA: 5, SPANIEL: 4, TABBY: 3, ORANGE: 1})
    rep = choose_classes(app, "auto", n=3, roots=["n01317541"], min_images=2)  # domestic animal
    print(rep)
    # DOG has most images and is chosen first; its descendants are then ruled out.
    assert rep["chosen"] == [DOG, TABBY]
    assert rep["rejected"][CHIHUAHUA].startswith("descendant_of_chosen: n02084071")
    assert rep["rejected"][SPANIEL].startswith("descendant_of_chosen")
    assert rep["rejected"][TOY_DOG].startswith("descendant_of_chosen")
    assert rep["rejected"][ORANGE].startswith("not_under_roots")
    assert rep["short_by"] == 1
    with app.Session() as s:
        rows = s.execute(
            select(ClassChoice.wnid, ClassChoice.class_index)
            .where(ClassChoice.set_name == "auto")
            .order_by(ClassChoice.class_index)
        ).all()
    assert rows == [(DOG, 0), (TABBY, 1)]

    # Without roots: TOY_DOG (2 images) misses the bar, the breeds lose to DOG, TABBY fills up.
    rep = choose_classes(app, "auto", n=2, min_images=3)
    assert rep["chosen"] == [DOG, TABBY]
    assert rep["rejected"][TOY_DOG] == "too_few_images: 2 accepted < 3"
    assert rep["rejected"][ORANGE] == "too_few_images: 1 accepted < 3"
    rep = choose_classes(app, "breeds", n=5, roots=[TOY_DOG], min_images=3)
    assert rep["chosen"] == [CHIHUAHUA, SPANIEL]
    assert rep["rejected"][TOY_DOG] == "too_few_images: 2 accepted < 3"
    assert rep["rejected"][DOG].startswith("not_under_roots")
    shown = show_classes(app, "breeds")
    assert [(r["wnid"], r["accepted"]) for r in shown] == [(CHIHUAHUA, 5), (SPANIEL, 4)]
    assert shown[0]["words"] == CHIHUAHUA  # the synset row's lemmas (here: the wnid itself)

    with pytest.raises(ClassError):
        choose_classes(app, "none", n=2, min_images=100)
    with app.Session() as s:
        assert not s.scalars(select(ClassChoice).where(ClassChoice.set_name == "none")).all()


@pytest.mark.slow
def test_no_chosen_class_is_an_ancestor_of_another(app) -> None:  # type: ignore[no-untyped-def]
    from curation.classes import _wordnet, ancestors

    _populate(app, {DOG: 1, TOY_DOG: 6, CHIHUAHUA: 5, SPANIEL: 4, TABBY: 3, ORANGE: 2})
    rep = choose_classes(app, "all", n=10)
    wn = _wordnet()
    for a in rep["chosen"]:
        assert not set(rep["chosen"]) & ancestors(wn, a, {})
    assert set(rep["chosen"]) | set(rep["rejected"]) == {
        DOG,
        TOY_DOG,
        CHIHUAHUA,
        SPANIEL,
        TABBY,
        ORANGE,
    }


def test_import_ilsvrc2012(app) -> None:  # type: ignore[no-untyped-def]
    assert import_ilsvrc2012(app) == 1000
    assert import_ilsvrc2012(app) == 1000  # replacing the set is idempotent
    with app.Session() as s:
        rows = s.execute(
            select(ClassChoice.wnid, ClassChoice.class_index)
            .where(ClassChoice.set_name == "ilsvrc2012")
            .order_by(ClassChoice.class_index)
        ).all()
    assert len(rows) == 1000
    assert rows[0] == ("n01440764", 0) and rows[-1] == ("n15075141", 999)
    assert [w for w, _ in rows] == sorted(w for w, _ in rows)
