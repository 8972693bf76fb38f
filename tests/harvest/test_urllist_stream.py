"""URL import streams: bounded batches, each its own transaction, and a crashed import resumes."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import func, select

import db.tx
from db.models import Candidate
from harvest.sources.urllist import import_urls


class Crash(Exception):
    """Stands for the process dying mid-import."""


WNIDS = ("n02084071", "n02123045", "n02085620")  # dog, tabby, Chihuahua


def write_list(path: Path, n: int, bad_every: int = 0) -> int:
    """n lines of `wnid<TAB>url` (every bad_every-th one broken); returns how many are valid."""
    good = 0
    with open(path, "w") as f:
        for i in range(n):
            if bad_every and i % bad_every == bad_every - 1:
                f.write(f"not-a-wnid\thttp://127.0.0.1/{i}.jpg\n")
                continue
            f.write(f"{WNIDS[i % 3]}\thttp://127.0.0.1/img/{i}.jpg\n")
            good += 1
    return good


def _count(app) -> int:  # type: ignore[no-untyped-def]
    with app.Session() as s:
        return s.scalar(select(func.count()).select_from(Candidate)) or 0


def test_import_holds_one_batch_at_a_time(app, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The rows handed to the database per transaction never exceed the batch, for any file size:
    the import's working set is one batch, so memory does not grow with the file."""
    sizes: list[int] = []
    real = db.tx.insert_ignore

    def spy(conn, table, rows, chunk=500):  # type: ignore[no-untyped-def]
        sizes.append(len(rows))
        return real(conn, table, rows, chunk)

    monkeypatch.setattr(db.tx, "insert_ignore", spy)
    small, large = tmp_path / "small.tsv", tmp_path / "large.tsv"
    n_small = write_list(small, 1_000, bad_every=97)
    n_large = write_list(large, 12_000, bad_every=97)
    with open(small, "a") as f:
        f.write("n99999999\thttp://127.0.0.1/not-a-synset.jpg\n")  # a wnid WordNet lacks
    rep = import_urls(app, str(small), batch=500)
    assert rep["added"] == n_small and rep["batches"] == 2 and max(sizes) <= 500
    assert rep["bad_lines"] == 1_000 - n_small + 1
    assert rep["bad_examples"][-1] == "line 1001: n99999999 is not a WordNet noun synset"
    sizes.clear()
    rep = import_urls(app, str(large), batch=500)
    assert max(sizes) <= 500 and len(sizes) == rep["batches"] >= 12_000 // 500
    # The first 1,000 lines repeat the small file's URLs: known, not added again.
    assert rep["lines_ok"] == n_large and rep["already_known"] == n_small
    assert rep["added"] == n_large - n_small
    assert rep["bad_lines"] == 12_000 - n_large
    assert rep["bad_examples"][0] == "line 97: bad wnid 'not-a-wnid'"
    assert len(rep["bad_examples"]) == 20  # the first 20, however many there are
    assert _count(app) == n_large


def test_interrupted_import_resumes(app, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """A crash after two batches keeps them committed; the rerun adds the rest, counts the two."""
    path = tmp_path / "urls.tsv"
    n = write_list(path, 2_500)
    real = db.tx.insert_ignore
    calls = {"n": 0}

    def crash_on_third(conn, table, rows, chunk=500):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] == 3:
            raise Crash("killed")
        return real(conn, table, rows, chunk)

    monkeypatch.setattr(db.tx, "insert_ignore", crash_on_third)
    with pytest.raises(Crash):
        import_urls(app, str(path), batch=1_000)
    assert _count(app) == 2_000
    monkeypatch.setattr(db.tx, "insert_ignore", real)
    rep = import_urls(app, str(path), batch=1_000)
    assert (rep["added"], rep["already_known"], rep["lines_ok"]) == (n - 2_000, 2_000, n)
    assert _count(app) == n
    with app.Session() as s:
        refs = s.scalars(select(Candidate.source_ref).limit(3)).all()
    assert all(r.startswith("urls.tsv:") for r in refs)


def test_bad_batch_size_is_refused(app, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "urls.tsv"
    write_list(path, 3)
    with pytest.raises(ValueError, match="batch"):
        import_urls(app, str(path), batch=0)
