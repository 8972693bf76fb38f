"""`imnet consensus run|table`, `imnet mturk needs` and `imnet review` through the real command line."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from imnet.cli import main
from tests import dbrows


def _argv(app) -> list[str]:  # type: ignore[no-untyped-def]
    s = app.settings
    return ["--data-dir", s.data_dir, "--database-url", s.resolved_database_url()]


def test_consensus_commands(app, capsys, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    # ImageNet's dynamic consensus, with its calibration subset (the default is robust).
    monkeypatch.setenv("IMNET_CONSENSUS_ALGORITHM", "dynamic")
    monkeypatch.setenv("IMNET_CONSENSUS_INITIAL_SUBSET", "2")
    with app.Session() as s:
        dbrows.add_synset(s, "n00000007", "dog")
        ids = dbrows.add_candidates(s, "n00000007", 5)
        s.commit()
    assert main([*_argv(app), "mturk", "needs", "--json"]) == 0
    calib = sorted(int(c) for c in json.loads(capsys.readouterr().out))
    assert len(calib) == 2
    with app.Session() as s:
        rows = [(c, f"w{k}", i == 0) for i, c in enumerate(calib) for k in range(10)]
        dbrows.add_votes(s, "n00000007", rows)
        s.commit()
    assert main([*_argv(app), "consensus", "run", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["algorithm"] == "dynamic"
    per = report["per_wnid"]["n00000007"]
    assert (per["accept"], per["reject"], per["items"], per["votes"]) == (1, 1, 5, 20)

    assert main([*_argv(app), "consensus", "run", "--algorithm", "majority"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("majority: 1 accepted, 1 rejected")

    assert main([*_argv(app), "mturk", "needs", "--json"]) == 0
    needs = json.loads(capsys.readouterr().out)
    assert needs and all(1 <= v <= 3 for v in needs.values())
    assert set(needs) == {str(c) for c in ids if c not in calib}
    assert main([*_argv(app), "mturk", "needs"]) == 0
    assert "n00000007: " in capsys.readouterr().out

    assert main([*_argv(app), "consensus", "table", "--wnid", "n00000007", "--max", "3"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("n00000007: 2 calibration items") and len(out) == 6

    assert main([*_argv(app), "consensus", "table", "--wnid", "n09999999"]) == 2
    assert "no eligible candidates" in capsys.readouterr().err


def test_help_texts(capsys) -> None:  # type: ignore[no-untyped-def]
    for argv in (["consensus", "run", "--help"], ["review", "--help"]):
        with pytest.raises(SystemExit) as e:
            main(argv)
        assert e.value.code == 0
        assert "--" in capsys.readouterr().out


@pytest.mark.slow
def test_imnet_review_serves_the_page(tmp_path: Path) -> None:
    """`imnet review` as a real process: it answers on its port and / redirects to /review/."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "IMNET_DATA_DIR": str(tmp_path / "data")}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from imnet.cli import main; raise SystemExit(main())",
            "review",
            "--port",
            str(port),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    try:
        line = proc.stdout.readline()  # type: ignore[union-attr]
        assert line.startswith(f"review page on http://127.0.0.1:{port}/review/"), (
            line + proc.stderr.read()  # type: ignore[union-attr]
        )
        r = requests.get(f"http://127.0.0.1:{port}/", timeout=30)
        assert r.status_code == 200 and r.url.endswith("/review/")
        assert "<h2>Workers</h2>" in r.text and "id='synsets'" in r.text
    finally:
        proc.terminate()
        proc.wait(30)
        proc.stdout.close()  # type: ignore[union-attr]
        proc.stderr.close()  # type: ignore[union-attr]
