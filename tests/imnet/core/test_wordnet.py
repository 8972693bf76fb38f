"""`imnet setup`'s Debian path: WordNet 3.0 files copied for nltk with a generated lexnames file."""

from __future__ import annotations

from pathlib import Path

import pytest

from imnet.core.wordnet import DEBIAN_DIR, WordNetUnavailable, install_from_debian, lexnames_text


def test_lexnames_matches_wordnet_numbering() -> None:
    lines = lexnames_text().splitlines()
    assert len(lines) == 45
    assert lines[3] == "03\tnoun.Tops\t1"
    assert lines[5] == "05\tnoun.animal\t1"
    assert lines[29] == "29\tverb.body\t2"
    assert lines[44] == "44\tadj.ppl\t3"


@pytest.mark.slow
def test_install_from_debian_loads_in_nltk(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    if not (DEBIAN_DIR / "data.noun").exists():
        pytest.fail("Debian's wordnet-base is not installed; scripts/setup.sh installs it")
    dest = install_from_debian(dest_root=tmp_path)
    import nltk
    from nltk.corpus.reader import WordNetCorpusReader

    # nltk only reads corpora inside its data folders
    monkeypatch.setattr(nltk.data, "path", [str(tmp_path), *nltk.data.path])

    wn = WordNetCorpusReader(str(dest), None)
    tench = wn.synset_from_pos_and_offset("n", 1440764)
    assert tench.lemma_names()[0] == "tench"
    assert tench.lexname() == "noun.animal"
    assert sum(1 for _ in wn.all_synsets("n")) == 82115


def test_missing_files_say_what_to_install(tmp_path: Path) -> None:
    with pytest.raises(WordNetUnavailable, match="apt-get install wordnet-base"):
        install_from_debian(src=tmp_path, dest_root=tmp_path / "out")
