"""The `imnet synsets` and `imnet harvest` command lines, end to end on a loopback web."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from imnet.cli import main
from tests.harvest.loopweb import LoopWeb, body, jpeg
from tests.harvest.test_sources import wikimedia_api


def test_cli_flow(
    tmp_path: Path,
    sqlite_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("IMNET_ALLOW_PRIVATE_HOSTS", "1")
    monkeypatch.chdir(tmp_path)
    g = ["--data-dir", str(tmp_path / "d"), "--database-url", sqlite_url]
    assert main([*g, "synsets", "add", "n01440764"]) == 0
    assert main([*g, "synsets", "add", "bogus"]) == 2
    assert "not a wnid" in capsys.readouterr().err
    assert main([*g, "synsets", "list"]) == 0
    assert "n01440764" in capsys.readouterr().out
    with LoopWeb({"/a.jpg": body(jpeg(200, 150)), "/w/api.php": wikimedia_api}) as w:
        monkeypatch.setenv("IMNET_SOURCE_WIKIMEDIA_URL", w.url("/w/api.php"))
        urls = tmp_path / "urls.tsv"
        urls.write_text(
            f"n01440764\t{w.url('/a.jpg')}\nn01443537\t{w.url('/a.jpg')}\n"
            "garbage line\nn00000001\thttp://x.example/a.jpg\n"
            "n01440764\tftp://x.example/a.jpg\n"
        )
        assert main([*g, "harvest", "import-urls", str(urls)]) == 1  # bad lines: exit 1, reported
        rep = json.loads(capsys.readouterr().out)
        assert rep["added"] == 2 and rep["bad_lines"] == 3
        assert any("line 3" in b for b in rep["bad_examples"])
        stats = tmp_path / "stats.json"
        assert main([*g, "harvest", "crawl", "--no-progress", "--stats-json", str(stats)]) == 0
        capsys.readouterr()
        assert json.loads(stats.read_text())["status"] == {"fetched": 2}
        assert main([*g, "harvest", "queries", "--sources", "bing"]) == 2
        assert "unknown search source" in capsys.readouterr().err
        assert (
            main([*g, "harvest", "queries", "--sources", "wikimedia", "--wnid", "n01440764"]) == 0
        )
        capsys.readouterr()
        assert main([*g, "harvest", "search", "--max-pages", "2"]) == 0
        out = capsys.readouterr().out
        assert json.loads(out[out.index("{") :])["candidates_added"] == 3
    assert main([*g, "harvest", "status", "--json"]) == 0
    st = json.loads(capsys.readouterr().out)
    assert st["candidates"] == {"fetched": 2, "pending": 3}
    assert st["queries"]["wikimedia"]["done"] >= 1
    assert main([*g, "harvest", "status"]) == 0
    assert "candidates: fetched=2  pending=3" in capsys.readouterr().out
