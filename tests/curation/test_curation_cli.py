"""`imnet curate`, `imnet classes ...` and `imnet export` end to end through the real CLI."""

from __future__ import annotations

import json
from pathlib import Path

from imnet.cli import main
from imnet.core.app import App
from imnet.core.settings import Settings
from tests.curation.images import encode, photo, smooth_image
from tests.dbrows import add_candidate, add_synset


def test_cli_curate_choose_show_export(
    tmp_path: Path, sqlite_url: str, capsys, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    # 8 images a class: quotas it can meet (the export stops on a class short of them)
    monkeypatch.setenv("IMNET_VAL_PER_CLASS", "2")
    monkeypatch.setenv("IMNET_TEST_PER_CLASS", "2")
    data_dir = tmp_path / "data"
    app = App(Settings(data_dir=str(data_dir), database_url=sqlite_url))
    with app.Session.begin() as s:
        for ci, w in enumerate(("n02085620", "n02123045")):
            add_synset(s, w, lemmas=[f"class_{ci}"])
            for k in range(8):
                add_candidate(s, app.blobs, w, encode(smooth_image(100 * ci + k), "PNG"))
        add_candidate(s, app.blobs, "n02123045", encode(photo("coffee").resize((30, 20)), "PNG"))
    app.close()
    base = ["--data-dir", str(data_dir), "--database-url", sqlite_url]

    assert main([*base, "curate"]) == 0
    out = capsys.readouterr().out
    assert "scan: 17 images, 17 hashed, 16 ok, 1 rejected" in out
    assert "rejected by reason too_small 1;" in out and "{" not in out  # readable, no dicts

    assert main([*base, "classes", "choose", "--set", "two", "--n", "3", "--min-images", "2"]) == 0
    out = capsys.readouterr().out
    assert "2 of 3 classes chosen" in out and "warning: 1 classes short" in out
    assert main([*base, "classes", "show", "--set", "two", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert [(r["class_index"], r["wnid"], r["accepted"]) for r in shown] == [
        (0, "n02085620", 8),
        (1, "n02123045", 8),
    ]

    out_dir = tmp_path / "export"
    assert (
        main(
            [
                *base,
                "export",
                "--set",
                "two",
                "--format",
                "ilsvrc",
                "--out",
                str(out_dir),
                "--resize",
                "48",
                "--json",
            ]
        )
        == 0
    )
    rep = json.loads(capsys.readouterr().out)
    assert sum(rep["counts"].values()) == len(list(out_dir.glob("*/**/*.JPEG")))
    assert (out_dir / "data" / "meta.mat").exists()

    # Clear one-line errors, exit status 2, nothing written.
    assert (
        main([*base, "export", "--set", "nope", "--format", "ilsvrc", "--out", str(tmp_path / "x")])
        == 2
    )
    err = capsys.readouterr().err
    assert "no class set named 'nope'" in err and "Traceback" not in err
    assert not (tmp_path / "x").exists()
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "precious.txt").write_text("keep me")
    assert (
        main(
            [
                *base,
                "export",
                "--set",
                "two",
                "--format",
                "webdataset",
                "--out",
                str(tmp_path / "busy"),
            ]
        )
        == 2
    )
    assert "holds no imnet export" in capsys.readouterr().err
    assert (tmp_path / "busy" / "precious.txt").read_text() == "keep me"
    assert main([*base, "classes", "choose", "--set", "z", "--n", "2", "--root", "dog"]) == 2
    assert "is not a wnid" in capsys.readouterr().err


def test_curate_and_export_from_s3_with_worker_processes(
    tmp_path: Path, sqlite_url: str, s3_server
) -> None:  # type: ignore[no-untyped-def]
    """Blobs in a real S3 server (SeaweedFS): the spawned workers open their own boto3 clients."""
    from curation import run_curation
    from curation.classes import choose_classes
    from curation.export import run_export

    bucket = s3_server.create_bucket()
    settings = Settings(
        data_dir=str(tmp_path / "data"),
        database_url=sqlite_url,
        blob_url=f"s3://{bucket}/blobs",
        s3_endpoint_url=s3_server.endpoint,
        s3_access_key=s3_server.access_key,
        s3_secret_key=s3_server.secret_key,
        curation_workers=2,
        val_per_class=2,
        test_per_class=2,
        train_max_per_class=20,
    )
    app = App(settings)
    try:
        with app.Session.begin() as s:
            for ci, w in enumerate(("n02085620", "n02123045")):
                add_synset(s, w)
                for k in range(30):  # 60 images: above the inline threshold, so a pool runs
                    add_candidate(s, app.blobs, w, encode(smooth_image(300 * ci + k), "JPEG"))
        rep = run_curation(app, steps=("phash", "filter"))
        assert rep["scan"]["scanned"] == 60 and rep["scan"]["hashed"] == 60
        choose_classes(app, "s3", n=2)
        out = run_export(app, "s3", "webdataset", tmp_path / "wds", resize=32)
        assert sum(out["counts"].values()) > 40 and out["dropped_images"].get("blob", 0) == 0
    finally:
        app.close()
