"""WordNet 3.0: made available to nltk (`imnet setup`); a compact noun cache loaded once per process."""

from __future__ import annotations

import contextlib
import hashlib
import os
import pickle
import re
import shutil
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any, NamedTuple

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


# --- The compact noun cache -------------------------------------------------------------------
# nltk's reader maps every part of speech on each load (seconds and ~350 MB per process); imnet
# needs only noun synsets, so data.noun is parsed once into a pickle in the user cache dir and
# later processes read that (a fraction of a second). nltk is needed only to locate and build it.
CACHE_FORMAT = 1
SETUP_HINT = "run `imnet setup` first"


class Noun(NamedTuple):
    """One WordNet 3.0 noun synset, with the few nltk-style accessors imnet's callers use."""

    wnid: str
    lemmas: tuple[str, ...]  # as WordNet spells them ("Tinca_tinca")
    gloss: str  # nltk's definition(): the gloss without its quoted examples
    parents: tuple[str, ...]  # hypernyms and instance hypernyms, sorted
    children: tuple[str, ...]  # hyponyms and instance hyponyms, sorted
    depth: int  # nltk's min_depth(): shortest path up to a root
    height: int  # longest path down to a leaf of the full hierarchy (0 for a leaf)

    def offset(self) -> int:
        return int(self.wnid[1:])

    def definition(self) -> str:
        return self.gloss

    def lemma_names(self, lang: str = "eng") -> list[str]:
        """WordNet's lemmas; other languages come from nltk's Open Multilingual WordNet."""
        if lang == "eng":
            return list(self.lemmas)
        import nltk.corpus

        return list(
            nltk.corpus.wordnet.synset_from_pos_and_offset("n", self.offset()).lemma_names(
                lang=lang
            )
        )


class Nouns:
    """Every WordNet 3.0 noun synset by wnid (see nouns())."""

    def __init__(self, rows: dict[str, tuple[Any, ...]], source: str) -> None:
        self._rows = rows
        self.source = source

    def __len__(self) -> int:
        return len(self._rows)

    def __contains__(self, wnid: object) -> bool:
        return wnid in self._rows

    def get(self, wnid: str) -> Noun | None:
        row = self._rows.get(wnid)
        return None if row is None else Noun(wnid, *row)

    def ancestors(self, wnid: str) -> set[str]:
        """Every hypernym and instance hypernym along all paths up (not wnid itself)."""
        out: set[str] = set()
        todo = list(self._rows[wnid][2]) if wnid in self._rows else []
        while todo:
            w = todo.pop()
            if w not in out:
                out.add(w)
                todo.extend(self._rows[w][2])
        return out


def parse_data_noun(lines: Iterable[str]) -> dict[str, tuple[Any, ...]]:
    """wnid -> (lemmas, gloss, parents, children, depth, height) from data.noun's lines."""
    raw: dict[str, tuple[tuple[str, ...], str, tuple[str, ...], tuple[str, ...]]] = {}
    for line in lines:
        if line.startswith("  ") or not line.strip():  # the licence header
            continue
        head, _, gloss = line.partition("|")
        f = head.split()
        n_words = int(f[3], 16)
        lemmas = tuple(f[4 + 2 * k] for k in range(n_words))
        i = 4 + 2 * n_words
        ptrs = f[i + 1 : i + 1 + 4 * int(f[i])]
        up, down = set(), set()
        for k in range(0, len(ptrs), 4):
            if ptrs[k + 2] != "n":
                continue
            if ptrs[k] in ("@", "@i"):
                up.add(f"n{ptrs[k + 1]}")
            elif ptrs[k] in ("~", "~i"):
                down.add(f"n{ptrs[k + 1]}")
        # the same cleaning as nltk's definition(): drop the quoted examples
        definition = re.sub(r"[\"].*?[\"]", "", gloss.strip()).strip().strip("; ")
        raw[f"n{f[0]}"] = (lemmas, definition, tuple(sorted(up)), tuple(sorted(down)))
    depth = _depths(raw)
    height = _heights(raw)
    return {w: (*r, depth[w], height[w]) for w, r in raw.items()}


def _depths(raw: dict[str, tuple[Any, ...]]) -> dict[str, int]:
    depth = {w: 0 for w, r in raw.items() if not r[2]}
    frontier = list(depth)
    while frontier:  # breadth first from the roots: the first visit is the shortest path
        nxt = []
        for w in frontier:
            for c in raw[w][3]:
                if c not in depth:
                    depth[c] = depth[w] + 1
                    nxt.append(c)
        frontier = nxt
    return depth


def _heights(raw: dict[str, tuple[Any, ...]]) -> dict[str, int]:
    height: dict[str, int] = {}
    for start in raw:
        stack = [start]
        while stack:  # iterative post-order: WordNet is ~20 levels deep, but keep the stack flat
            w = stack[-1]
            if w in height:
                stack.pop()
                continue
            todo = [c for c in raw[w][3] if c not in height]
            if todo:
                stack.extend(todo)
            else:
                height[w] = 1 + max((height[c] for c in raw[w][3]), default=-1)
                stack.pop()
    return height


def cache_path() -> Path:
    """imnet's file in the user cache dir ($XDG_CACHE_HOME, else ~/.cache); IMNET_* names are
    settings, so the standard variable moves it."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "imnet" / f"wordnet-nouns-v{CACHE_FORMAT}.pickle"


def _locate_data_noun() -> Path:
    """data.noun of the WordNet corpus nltk would load; WordNetUnavailable naming `imnet setup`."""
    import nltk.data

    try:
        found = nltk.data.find("corpora/wordnet/data.noun")
    except LookupError:
        try:  # Debian's files, copied where nltk looks (what `imnet setup` does offline)
            ensure_wordnet(allow_download=False)
            found = nltk.data.find("corpora/wordnet/data.noun")
        except (WordNetUnavailable, LookupError, OSError):
            raise WordNetUnavailable(
                f"WordNet 3.0 is not installed for nltk; {SETUP_HINT}"
            ) from None
    path = getattr(found, "path", None)
    if not isinstance(path, str) or not os.path.isfile(path):
        raise WordNetUnavailable(
            f"WordNet 3.0 is installed as a zip archive nltk cannot map ({found}); {SETUP_HINT}"
        )
    return Path(path)


def _stamp(path: Path) -> tuple[str, int, int]:
    st = path.stat()
    return (str(path), st.st_size, st.st_mtime_ns)


def _read_cache(path: Path) -> tuple[dict[str, Any], dict[str, tuple[Any, ...]]] | None:
    try:
        with path.open("rb") as f:
            header = pickle.load(f)
            if header.get("format") != CACHE_FORMAT or header.get("nltk_data") != os.environ.get(
                "NLTK_DATA"
            ):
                return None
            if _stamp(Path(header["source"][0])) != tuple(header["source"]):
                return None  # the corpus moved or changed: rebuild from it
            return header, pickle.load(f)
    except (OSError, EOFError, pickle.UnpicklingError, KeyError, TypeError, ValueError):
        return None


def build_cache(path: Path | None = None) -> Nouns:
    """Parse the installed data.noun and write the cache (best effort); returns the index."""
    src = _locate_data_noun()
    data = src.read_bytes()
    rows = parse_data_noun(data.decode("utf-8", "replace").splitlines())
    if len(rows) < 80000:  # WordNet 3.0 has 82,115 noun synsets
        raise WordNetUnavailable(
            f"{src} holds {len(rows)} noun synsets, not WordNet 3.0's 82,115; {SETUP_HINT}"
        )
    header = {
        "format": CACHE_FORMAT,
        "source": _stamp(src),
        "sha256": hashlib.sha256(data).hexdigest(),
        "nltk_data": os.environ.get("NLTK_DATA"),
    }
    dest = path or cache_path()
    with contextlib.suppress(OSError):  # an unwritable cache dir only costs the next process time
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
        with tmp.open("wb") as f:
            pickle.dump(header, f, protocol=pickle.HIGHEST_PROTOCOL)
            pickle.dump(rows, f, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(tmp, dest)  # atomic: a concurrent reader sees the old file or the new one
    return Nouns(rows, str(src))


_LOADED: list[Nouns] = []
_LOCK = threading.Lock()


def nouns() -> Nouns:
    """WordNet 3.0's noun synsets, loaded once per process (from the cache when it is current)."""
    with _LOCK:
        if not _LOADED:
            cached = _read_cache(cache_path())
            _LOADED.append(
                Nouns(cached[1], cached[0]["source"][0]) if cached is not None else build_cache()
            )
        return _LOADED[0]


def forget_loaded() -> None:
    """Drop this process's loaded index (tests; after `imnet setup` installs a corpus)."""
    with _LOCK:
        _LOADED.clear()
