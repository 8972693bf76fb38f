"""Query expansion as ImageNet did it: synonyms, synonym + parent lemma, optional translations."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from imnet.core.app import App

log = logging.getLogger(__name__)

DEFAULT_SOURCES = ("openverse", "wikimedia")
# nltk's Open Multilingual WordNet uses ISO 639-3 codes; users type the two-letter ones.
OMW_CODES = {
    "es": "spa",
    "it": "ita",
    "nl": "nld",
    "zh": "cmn",
    "fr": "fra",
    "pt": "por",
    "ja": "jpn",
    "fi": "fin",
    "pl": "pol",
    "ca": "cat",
    "da": "dan",
    "sv": "swe",
    "el": "ell",
    "he": "heb",
}


class TranslationTable:
    """English phrase -> translations per language, from a TSV file and/or nltk's OMW lemmas.

    The file has lines `lang<TAB>english<TAB>translation` (`#` starts a comment); several lines
    may translate one phrase. WordNet's own other-language lemmas are used where the OMW corpus
    is installed; they are looked up by synset, so they need no file.
    """

    def __init__(self, path: str | None = None) -> None:
        self.table: dict[tuple[str, str], list[str]] = {}
        if path:
            self.load(path)

    def load(self, path: str) -> None:
        p = Path(path)
        if not p.exists():
            raise ValueError(f"translation table {path} does not exist")
        for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            parts = line.split("\t")
            if len(parts) != 3 or not all(x.strip() for x in parts):
                raise ValueError(f"{path}:{n}: expected lang<TAB>english<TAB>translation")
            lang, en, tr = (x.strip() for x in parts)
            self.table.setdefault((lang, en.lower()), []).append(tr)

    def translate(self, lang: str, phrase: str) -> list[str]:
        return list(self.table.get((lang, phrase.lower()), []))

    def langs(self) -> set[str]:
        return {lang for lang, _ in self.table}


def _omw_missing(lang: str) -> str | None:
    """What stops nltk's OMW from translating into `lang`, or None when it can."""
    from harvest.synsets import synset_for

    code = OMW_CODES.get(lang, lang)
    try:
        synset_for("n00001740").lemma_names(lang=code)  # `entity`, the root: always present
    except LookupError:
        return "nltk's Open Multilingual WordNet (OMW) corpus is not installed"
    except Exception:  # nltk's WordNetError: OMW has no such language
        return f"nltk's OMW has no language {code!r}"
    return None


def check_languages(langs: list[str], table: TranslationTable) -> None:
    """ValueError naming what is missing when a language would get no queries at all."""
    missing = {}
    for lang in langs:
        if lang not in table.langs() and (why := _omw_missing(lang)):
            missing[lang] = why
    if missing:
        raise ValueError(
            f"no translations for {', '.join(missing)}: {'; '.join(set(missing.values()))}, "
            "and setting query_translation_file (lang<TAB>english<TAB>translation) has none"
        )


def _omw_lemmas(wnid: str, lang: str) -> list[str]:
    """Other-language lemmas of a synset from nltk's OMW corpus, or [] when it is not installed."""
    code = OMW_CODES.get(lang, lang)
    try:
        from harvest.synsets import synset_for

        names = synset_for(wnid).lemma_names(lang=code)
    except Exception:  # OMW missing or language unknown: no translation from WordNet
        return []
    return [n.replace("_", " ") for n in names]


def expand_texts(lemmas: list[str], parent_lemmas: list[str]) -> list[str]:
    """Every synonym, and each combined with each parent lemma ("whippet dog"), de-duplicated."""
    out: dict[str, None] = {}
    for lem in lemmas:
        out.setdefault(lem.strip(), None)
    for lem in lemmas:
        for p in parent_lemmas:
            if p.lower() in lem.lower().split() or p.lower() == lem.lower():
                continue
            out.setdefault(f"{lem.strip()} {p.strip()}", None)
    seen: set[str] = set()
    result = []
    for t in out:
        if t and t.lower() not in seen:
            seen.add(t.lower())
            result.append(t)
    return result


def queries_for(
    synset: dict[str, Any], parent_lemmas: list[str], langs: list[str], table: TranslationTable
) -> list[tuple[str, str]]:
    """(lang, text) pairs for one synset: English always, then each requested language."""
    pairs = [("en", t) for t in expand_texts(synset["lemmas"], parent_lemmas)]
    for lang in langs:
        lemmas = _omw_lemmas(synset["wnid"], lang)
        for lem in synset["lemmas"]:
            lemmas += table.translate(lang, lem)
        parents: list[str] = []
        if synset.get("parent_wnid"):
            parents = _omw_lemmas(synset["parent_wnid"], lang)
        for p in parent_lemmas:
            parents += table.translate(lang, p)
        pairs += [(lang, t) for t in expand_texts(list(dict.fromkeys(lemmas)), parents)]
    return pairs


def expand_queries(
    app: App,
    sources: list[str] | None = None,
    langs: list[str] | None = None,
    wnids: list[str] | None = None,
) -> int:
    """Create `query` rows for every synset (or `wnids`) and source; returns how many are new.

    Existing rows (same wnid, text, lang, source) are kept with their paging cursor, so running
    this again never restarts a half-done query.
    """
    from db.models import Query, Synset
    from db.tx import insert_ignore
    from harvest.sources import source_names

    sources = list(sources or DEFAULT_SOURCES)
    unknown = [s for s in sources if s not in source_names() or s == "urllist"]
    if unknown:
        raise ValueError(
            f"unknown search source(s) {', '.join(unknown)}; choose from "
            + ", ".join(n for n in source_names() if n != "urllist")
        )
    if langs is None:
        langs = [x.strip() for x in app.settings.query_languages.split(",") if x.strip()]
    table = TranslationTable(app.settings.query_translation_file or None)
    check_languages(langs, table)
    with app.Session() as s:
        q = s.query(Synset)
        if wnids:
            q = q.filter(Synset.wnid.in_(wnids))
        syns = [
            {"wnid": r.wnid, "lemmas": list(r.lemmas or []), "parent_wnid": r.parent_wnid}
            for r in q.order_by(Synset.wnid)
        ]
    parent_lemmas = _parent_lemmas(app, syns)
    rows = []
    for syn in syns:
        for lang, text in queries_for(syn, parent_lemmas.get(str(syn["wnid"]), []), langs, table):
            for src in sources:
                rows.append(
                    {
                        "wnid": syn["wnid"],
                        "text": text,
                        "lang": lang,
                        "source": src,
                        "status": "pending",
                        "n_results": 0,
                        "attempts": 0,
                    }
                )
    with app.engine.begin() as conn:
        return insert_ignore(conn, Query.__table__, rows)


def _parent_lemmas(app: App, syns: list[dict[str, Any]]) -> dict[str, list[str]]:
    """Parent lemmas per wnid: from the parent's synset row, else straight from WordNet."""
    from db.models import Synset
    from harvest.synsets import SynsetError, synset_for

    parents = {s["parent_wnid"] for s in syns if s["parent_wnid"]}
    with app.Session() as s:
        known = {
            r.wnid: list(r.lemmas or []) for r in s.query(Synset).filter(Synset.wnid.in_(parents))
        }
    out: dict[str, list[str]] = {}
    for syn in syns:
        p = syn["parent_wnid"]
        if not p:
            continue
        if p not in known:
            try:
                known[p] = [n.replace("_", " ") for n in synset_for(p).lemma_names()]
            except SynsetError:
                known[p] = []
        out[syn["wnid"]] = known[p]
    return out
