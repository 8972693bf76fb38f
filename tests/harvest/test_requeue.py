"""`imnet harvest retry` requeues by reason in keyset batches; hostile URL lists and languages."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import insert, select

from db.models import Candidate
from harvest.requeue import requeue
from harvest.synsets import add_synsets
from imnet.cli import main
from imnet.core.app import App
from tests.harvest.loopweb import LoopWeb, body, jpeg

W = "n01440764"


def test_requeue_by_reason_in_batches(app: App) -> None:
    add_synsets(app, wnids=[W])
    kinds = [
        ("rejected", "private_address: 127.0.0.1 is a private, loopback or link-local address"),
        ("failed", "timeout: total time limit reached"),
        ("rejected", "private_address_like: not the same code"),
        ("fetched", None),
        ("pending", None),
        ("failed", "private_address"),
    ]
    rows = [
        {
            "wnid": W,
            "url": f"http://h/{i}.jpg",
            "source": "urllist",
            "status": kinds[i % len(kinds)][0],
            "error": kinds[i % len(kinds)][1],
            "http_status": 500,
            "lease_owner": "crawl:dead",
            "lease_until": 1.0,
            "attempts": 3,
        }
        for i in range(60)
    ]
    with app.engine.begin() as conn:
        conn.execute(insert(Candidate), rows)
    # batch=7: several keyset batches, none aligned with the pattern's period.
    assert requeue(app, reason="private_address", batch=7) == 20
    with app.Session() as s:
        got = {c.url: c for c in s.scalars(select(Candidate))}
    for i, (status, error) in enumerate(kinds[i % len(kinds)] for i in range(60)):
        c = got[f"http://h/{i}.jpg"]
        if error is not None and error.split(":")[0] == "private_address":
            assert (c.status, c.error, c.lease_owner, c.lease_until) == (
                "pending",
                None,
                None,
                None,
            )
            assert c.http_status is None and c.attempts == 0
        else:
            assert (c.status, c.error) == (status, error)
    # Without --reason every other failed or rejected row comes back; fetched ones stay.
    assert requeue(app, batch=7) == 20
    with app.Session() as s:
        statuses = sorted(c.status for c in s.scalars(select(Candidate)))
    assert statuses.count("fetched") == 10 and statuses.count("pending") == 50
    assert requeue(app) == 0
    with pytest.raises(ValueError, match="not a reason code"):
        requeue(app, reason="a%")


def test_local_url_list_hint_then_retry(
    tmp_path: Path,
    sqlite_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("IMNET_ALLOW_PRIVATE_HOSTS", raising=False)
    g = ["--data-dir", str(tmp_path / "d"), "--database-url", sqlite_url]
    with LoopWeb({"/a.jpg": body(jpeg(200, 150))}) as w:
        urls = tmp_path / "urls.tsv"
        urls.write_text(f"{W}\t{w.url('/a.jpg')}\n")
        assert main([*g, "harvest", "import-urls", str(urls)]) == 0
        capsys.readouterr()
        assert main([*g, "harvest", "crawl", "--no-progress"]) == 0
        err = capsys.readouterr().err
        assert "allow_private_hosts" in err and "retry --reason private_address" in err
        assert main([*g, "harvest", "status"]) == 0
        assert "allow_private_hosts" in capsys.readouterr().out
        monkeypatch.setenv("IMNET_ALLOW_PRIVATE_HOSTS", "1")
        assert main([*g, "harvest", "retry", "--reason", "timeout"]) == 0
        assert capsys.readouterr().out.startswith("0 ")
        assert main([*g, "harvest", "retry", "--reason", "private_address"]) == 0
        assert capsys.readouterr().out.startswith("1 ")
        assert main([*g, "harvest", "crawl", "--no-progress"]) == 0
        assert "allow_private_hosts" not in capsys.readouterr().err
    assert main([*g, "harvest", "status", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["candidates"] == {"fetched": 1}
    assert w.hits["/a.jpg"] == 1


def _one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err, err
    return err


def test_hostile_url_lists_and_languages(
    tmp_path: Path, sqlite_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    g = ["--data-dir", str(tmp_path / "d"), "--database-url", sqlite_url]
    assert main([*g, "harvest", "import-urls", str(tmp_path)]) == 2
    assert "is a directory" in _one_line_error(capsys)
    assert main([*g, "harvest", "import-urls", str(tmp_path / "nope.tsv")]) == 2
    assert "does not exist" in _one_line_error(capsys)
    binary = tmp_path / "photo.jpg"
    binary.write_bytes(jpeg(64, 64) * 4)
    assert main([*g, "harvest", "import-urls", str(binary)]) == 2
    assert "not a text file" in _one_line_error(capsys)
    empty = tmp_path / "empty.tsv"
    empty.write_text("# only a comment\n\n")
    assert main([*g, "harvest", "import-urls", str(empty)]) == 2
    assert f"no URLs in {empty}" in _one_line_error(capsys)
    assert main([*g, "harvest", "retry", "--reason", "50%"]) == 2
    assert "not a reason code" in _one_line_error(capsys)
    assert main([*g, "synsets", "add", W]) == 0
    capsys.readouterr()
    # `xx` is in no OMW and no translation file: the error says what is missing.
    assert main([*g, "harvest", "queries", "--langs", "xx"]) == 2
    err = _one_line_error(capsys)
    assert "no translations for xx" in err and "query_translation_file" in err
    assert "OMW" in err
