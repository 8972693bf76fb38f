"""Query expansion: synonyms, synonym + parent lemma, translations from a table file."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from db.models import Query
from harvest.queries import expand_queries, expand_texts
from harvest.synsets import add_synsets
from imnet.core.app import App


def test_expand_texts_dedupes_and_combines() -> None:
    assert expand_texts(["whippet"], ["greyhound"]) == ["whippet", "whippet greyhound"]
    # A parent word already in the synonym is not repeated; case-insensitive duplicates collapse.
    assert expand_texts(["sea bass", "Sea Bass"], ["bass"]) == ["sea bass"]


def test_expand_queries_rows_and_idempotence(app: App, tmp_path: Path) -> None:
    add_synsets(app, wnids=["n01440764"])  # tench, parent cyprinid
    table = tmp_path / "tr.tsv"
    table.write_text(
        "# lang\tenglish\ttranslation\nes\ttench\ttenca\nes\tcyprinid\tciprínido\n",
        encoding="utf-8",
    )
    app.settings = app.settings.replace(query_translation_file=str(table))
    n = expand_queries(app, sources=["openverse", "wikimedia"])
    with app.Session() as s:
        rows = list(s.scalars(select(Query)))
    texts = {(q.lang, q.text) for q in rows}
    assert ("en", "tench") in texts and ("en", "Tinca tinca cyprinid") in texts
    assert not any(lang == "es" for lang, _ in texts)  # other languages are off by default
    assert n == len(rows) == 2 * len(texts)
    assert {q.status for q in rows} == {"pending"} and {q.next_page for q in rows} == {None}
    assert expand_queries(app, sources=["openverse", "wikimedia"]) == 0
    n_es = expand_queries(app, sources=["wikimedia"], langs=["es"])
    with app.Session() as s:
        es = {q.text for q in s.scalars(select(Query).where(Query.lang == "es"))}
    assert es == {"tenca", "tenca ciprínido"} and n_es == 2
    with pytest.raises(ValueError, match="unknown search source"):
        expand_queries(app, sources=["bing"])
