"""Synsets from WordNet 3.0: by wnid, subtrees, the shipped ILSVRC-2012 list."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from db.models import Synset
from harvest.synsets import (
    SynsetError,
    add_synsets,
    describe,
    ilsvrc2012_wnids,
    subtree,
    synset_for,
)
from imnet.core.app import App


def test_ilsvrc2012_list_is_the_real_one() -> None:
    w = ilsvrc2012_wnids()
    assert len(w) == 1000 and len(set(w)) == 1000
    # Class 0 is tench, class 999 toilet tissue, in the standard class-index order.
    assert w[0] == "n01440764" and w[1] == "n01443537" and w[-1] == "n15075141"
    assert describe(synset_for(w[-1]))["lemmas"][0] == "toilet tissue"


def test_describe_tench() -> None:
    d = describe(synset_for("n01440764"))
    assert d["lemmas"] == ["tench", "Tinca tinca"]
    assert d["parent_wnid"] == "n01439121" and d["is_leaf"] and d["depth"] > 5
    assert "freshwater" in d["gloss"]


def test_bad_wnids_are_clear_errors() -> None:
    with pytest.raises(SynsetError, match="not a wnid"):
        synset_for("tench")
    with pytest.raises(SynsetError, match="not a WordNet 3.0 noun synset"):
        synset_for("n00000001")


def test_subtree_leaves_only() -> None:
    dogs = subtree("n02084071")
    leaves = subtree("n02084071", leaves_only=True)
    assert "n02084071" in dogs and "n02084071" not in leaves
    assert set(leaves) < set(dogs) and "n02091244" in leaves  # Ibizan hound
    assert all(describe(synset_for(w))["is_leaf"] for w in leaves[:20])


def test_add_synsets_all_ways(app: App) -> None:
    assert add_synsets(app, wnids=["n01440764", "n01440764"]) == 1
    assert add_synsets(app, root="n02084071", leaves_only=True, max_n=5) == 5
    with pytest.raises(SynsetError):
        add_synsets(app, wnids=["n01443537", "n99999999"])
    with app.Session() as s:
        rows = {r.wnid: r for r in s.scalars(select(Synset))}
    assert len(rows) == 6 and "n01443537" not in rows  # a bad wnid writes nothing
    assert rows["n01440764"].lemmas == ["tench", "Tinca tinca"]
    assert add_synsets(app, ilsvrc2012=True, max_n=3) == 3


def test_missing_wordnet_is_said_not_taken_for_unknown_wnids(
    app: App, tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    import nltk.data

    from harvest.synsets import ensure_synsets
    from imnet.core import wordnet as W

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("NLTK_DATA", str(tmp_path / "empty"))
    monkeypatch.setattr(nltk.data, "path", [str(tmp_path / "empty")])
    monkeypatch.setattr(W, "DEBIAN_DIR", tmp_path / "no-debian")
    W.forget_loaded()
    try:
        # A URL list's wnids are not "not synsets" when WordNet itself is missing.
        with pytest.raises(SynsetError, match="imnet setup"):
            ensure_synsets(app, ["n01440764"])
        with pytest.raises(SynsetError, match="imnet setup"):
            subtree("n02084071")
    finally:
        W.forget_loaded()
