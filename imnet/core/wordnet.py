"""Make WordNet 3.0 available to nltk: installed corpus, else nltk.download, else Debian's files."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

DEBIAN_DIR = Path("/usr/share/wordnet")
DEBIAN_HINT = (
    "install Debian's WordNet files (apt-get install wordnet-base wordnet-sense-index) and rerun "
    "`imnet setup`, or run python -m nltk.downloader wordnet where the internet is reachable"
)
# The lexicographer files of WordNet 3.0 in file-number order (lexnames(5WN)); Debian's
# wordnet-base omits the `lexnames` file that nltk reads, so we write it from this table.
LEXNAMES = (
    "adj.all adj.pert adv.all noun.Tops noun.act noun.animal noun.artifact noun.attribute "
    "noun.body noun.cognition noun.communication noun.event noun.feeling noun.food noun.group "
    "noun.location noun.motive noun.object noun.person noun.phenomenon noun.plant noun.possession "
    "noun.process noun.quantity noun.relation noun.shape noun.state noun.substance noun.time "
    "verb.body verb.change verb.cognition verb.communication verb.competition verb.consumption "
    "verb.contact verb.creation verb.emotion verb.motion verb.perception verb.possession "
    "verb.social verb.stative verb.weather adj.ppl"
).split()
_CATEGORY = {"noun": 1, "verb": 2, "adj": 3, "adv": 4}
NEEDED = ("data.noun", "index.noun", "index.sense")


class WordNetUnavailable(RuntimeError):
    """No way to provide WordNet worked; the message says what to install."""


def lexnames_text() -> str:
    return "".join(
        f"{i:02d}\t{name}\t{_CATEGORY[name.split('.')[0]]}\n" for i, name in enumerate(LEXNAMES)
    )


def _corpus_ok() -> bool:
    try:
        import nltk.corpus

        wn = nltk.corpus.wordnet

        wn.ensure_loaded()
        return wn.synset_from_pos_and_offset("n", 1440764) is not None
    except (LookupError, OSError, ValueError):
        return False


def _reset_nltk_reader() -> None:
    # nltk caches a failed LazyCorpusLoader; rebuild it so the new files are seen in-process.
    import nltk.corpus
    from nltk.corpus.reader import CorpusReader, WordNetCorpusReader
    from nltk.corpus.util import LazyCorpusLoader

    omw = LazyCorpusLoader("omw-1.4", CorpusReader, r".*/wn-data-.*\.tab", encoding="utf8")
    nltk.corpus.wordnet = LazyCorpusLoader("wordnet", WordNetCorpusReader, omw)


def nltk_data_dir() -> Path:
    """The first writable nltk data folder (NLTK_DATA first, then ~/nltk_data)."""
    env = os.environ.get("NLTK_DATA")
    if env:
        return Path(env.split(os.pathsep)[0])
    return Path.home() / "nltk_data"


def install_from_debian(src: Path = DEBIAN_DIR, dest_root: Path | None = None) -> Path:
    """Copy Debian's WordNet 3.0 files into an nltk data folder and write `lexnames`."""
    missing = [n for n in NEEDED if not (src / n).exists()]
    if missing:
        raise WordNetUnavailable(f"{src} lacks {', '.join(missing)}; {DEBIAN_HINT}")
    dest = (dest_root or nltk_data_dir()) / "corpora" / "wordnet"
    dest.mkdir(parents=True, exist_ok=True)
    for p in src.iterdir():
        # nltk refuses symlinks outside its data folders, so the files are copied.
        if p.is_file() and re.match(
            r"^(data|index|lexnames|.*\.exc|cntlist|sentidx|verb|LICENSE)", p.name
        ):
            shutil.copyfile(p, dest / p.name)
    if not (dest / "lexnames").exists():
        (dest / "lexnames").write_text(lexnames_text())
    return dest


def ensure_wordnet(allow_download: bool = True) -> str:
    """Return a sentence saying how WordNet is available; raise WordNetUnavailable if it is not."""
    if _corpus_ok():
        return "WordNet 3.0: nltk's corpus is already installed"
    tried: list[str] = []
    if DEBIAN_DIR.exists():
        dest = install_from_debian()
        _reset_nltk_reader()
        if _corpus_ok():
            return f"WordNet 3.0: copied Debian's files from {DEBIAN_DIR} into {dest}"
        tried.append(f"Debian files in {DEBIAN_DIR} did not load")
    if allow_download:
        import nltk

        try:
            ok = nltk.download("wordnet", quiet=True, raise_on_error=True)
        except Exception as e:  # no network is the usual cause
            ok = False
            tried.append(f"nltk.download failed ({type(e).__name__})")
        if ok:
            _reset_nltk_reader()
            if _corpus_ok():
                return "WordNet 3.0: downloaded with nltk.download"
        else:
            tried.append("nltk.download could not fetch wordnet")
    raise WordNetUnavailable(
        "WordNet is not available (" + "; ".join(tried or ["nothing found"]) + "); " + DEBIAN_HINT
    )
