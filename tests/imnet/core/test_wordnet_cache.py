"""The compact WordNet noun cache: same facts as nltk, read without nltk, rebuilt when stale."""

from __future__ import annotations

import json
import pickle
import random
import subprocess
import sys
from pathlib import Path

import pytest

from imnet.core import wordnet as W


@pytest.fixture
def own_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """A private cache dir; the process-wide index is dropped before and after."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    W.forget_loaded()
    yield tmp_path / "cache"
    W.forget_loaded()


def _nltk_facts(s) -> tuple:  # type: ignore[no-untyped-def]
    def ids(xs) -> tuple[str, ...]:  # type: ignore[no-untyped-def]
        return tuple(sorted(f"n{x.offset():08d}" for x in xs))

    return (
        tuple(s.lemma_names()),
        s.definition(),
        ids(s.hypernyms() + s.instance_hypernyms()),
        ids(s.hyponyms() + s.instance_hyponyms()),
        s.min_depth(),
    )


def test_cache_agrees_with_nltk(own_cache: Path) -> None:
    from nltk.corpus import wordnet as wn

    nouns = W.nouns()
    assert len(nouns) == 82115 and W.cache_path().exists()
    rng = random.Random(7)
    # tench, entity (the root), dog (two parents), Paris (an instance hyponym), and a sample
    wnids = ["n01440764", "n00001740", "n02084071", "n08932568"]
    wnids += rng.sample(sorted(nouns._rows), 400)
    for w in wnids:
        n = nouns.get(w)
        assert n is not None
        assert (n.lemmas, n.gloss, n.parents, n.children, n.depth) == _nltk_facts(
            wn.synset_from_pos_and_offset("n", int(w[1:]))
        ), w

    def full_height(s) -> int:  # type: ignore[no-untyped-def]
        return 1 + max((full_height(k) for k in s.hyponyms() + s.instance_hyponyms()), default=-1)

    for w in ("n02085374", "n02084071", "n01440764", "n02121808"):
        assert nouns.get(w).height == full_height(wn.synset_from_pos_and_offset("n", int(w[1:])))
    assert nouns.get("n02085374").height == 3  # toy dog > toy spaniel > English toy > Blenheim
    assert nouns.get("n01440764").lemma_names() == ["tench", "Tinca_tinca"]
    assert "n00001740" in nouns.ancestors("n01440764") and nouns.ancestors("n00001740") == set()


@pytest.mark.slow
def test_later_processes_read_the_cache_without_nltk(own_cache: Path) -> None:
    code = (
        "import json, sys, time\n"
        "t = time.perf_counter()\n"
        "from harvest.synsets import describe, synset_for\n"
        "d = describe(synset_for('n01440764'))\n"
        "print(json.dumps([d, 'nltk' in sys.modules, time.perf_counter() - t]))\n"
    )
    env = {**__import__("os").environ, "XDG_CACHE_HOME": str(own_cache)}
    runs = []
    for _ in range(2):
        p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
        assert p.returncode == 0, p.stderr
        runs.append(json.loads(p.stdout))
    assert runs[0][0] == runs[1][0] and runs[1][0]["parent_wnid"] == "n01439121"
    assert runs[0][1] is True  # the first process built the cache with nltk's help
    assert runs[1][1] is False  # the second did not even import nltk


@pytest.mark.slow
def test_a_stale_cache_is_rebuilt(own_cache: Path) -> None:
    W.nouns()
    path = W.cache_path()
    with path.open("rb") as f:
        header = pickle.load(f)
        rows = pickle.load(f)
    header["source"] = (header["source"][0], header["source"][1] + 1, header["source"][2])
    rows.pop("n01440764")
    with path.open("wb") as f:
        pickle.dump(header, f)
        pickle.dump(rows, f)
    W.forget_loaded()
    assert W.nouns().get("n01440764") is not None  # the changed corpus stamp forced a rebuild
    path.write_bytes(b"not a pickle")
    W.forget_loaded()
    assert len(W.nouns()) == 82115


def test_missing_wordnet_names_imnet_setup(
    own_cache: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import nltk.data

    from harvest.synsets import SynsetError, synset_for
    from imnet.cli import main

    monkeypatch.setattr(nltk.data, "path", [str(tmp_path / "empty")])
    monkeypatch.setenv("NLTK_DATA", str(tmp_path / "empty"))
    monkeypatch.setattr(W, "DEBIAN_DIR", tmp_path / "no-debian")
    with pytest.raises(SynsetError, match=r"not installed.*`imnet setup`"):
        synset_for("n01440764")
    W.forget_loaded()
    rc = main(["--data-dir", str(tmp_path / "data"), "synsets", "add", "n01440764"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "imnet setup" in err[0], err
    assert "not a WordNet 3.0 noun synset" not in err[0]
