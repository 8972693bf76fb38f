"""The export shared out: 1 process, 2 processes and 2 `imnet export --shard` invocations give
byte-identical files; a killed export resumes without redoing finished files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import func, select, update

import curation.export.encode as enc
import curation.export.finish as fin
import curation.export.plan as plan_mod
from curation.classes import choose_classes
from curation.export import run_export
from curation.export.finish import staged_path
from db.models import Export, ExportItem, Image
from imnet.core.app import App
from imnet.core.settings import Settings
from tests.curation.images import encode, smooth_image
from tests.dbrows import add_candidate, add_synset

CLASSES = ("n02085620", "n02085782", "n02123045")
SIZES = {"val_per_class": 4, "test_per_class": 3, "train_max_per_class": 30}


def _fill(app: App) -> None:
    """Three classes of 24 generated images (PNG and JPEG, so every one is re-encoded), plus
    one accepted image whose blob cannot be decoded although it has a phash: its encode fails,
    and the files after it must still be numbered without a gap."""
    with app.Session.begin() as s:
        for ci, w in enumerate(CLASSES):
            add_synset(s, w, lemmas=[f"class_{ci}"])
            for k in range(24):
                im = smooth_image(1000 * ci + k, (64 + k, 48 + ci))
                data = encode(im, "PNG") if k % 2 else encode(im, "JPEG", quality=90)
                add_candidate(s, app.blobs, w, data)
        add_candidate(s, app.blobs, CLASSES[0], b"\xff\xd8\xff not really a jpeg")
        s.execute(update(Image).where(Image.width == 0).values(phash=0x0F0F0F0F0F0F0F0F))
    choose_classes(app, "three", n=3)


def _tree(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def _settings(tmp_path: Path, db_url: str, **kw: object) -> Settings:
    return Settings(data_dir=str(tmp_path / "data"), database_url=db_url, **SIZES, **kw)  # type: ignore[arg-type]


def _shard_env(settings: Settings) -> dict[str, str]:
    env = dict(os.environ)
    for key in (
        "data_dir",
        "database_url",
        "blob_url",
        "s3_endpoint_url",
        "s3_access_key",
        "s3_secret_key",
        "val_per_class",
        "test_per_class",
        "train_max_per_class",
        "export_shard_maxcount",
    ):
        value = getattr(settings, key)
        if value not in (None, ""):
            env[f"IMNET_{key.upper()}"] = str(value)
    return env


@pytest.mark.parametrize("fmt", ["ilsvrc", "webdataset"])
def test_processes_and_shards_give_identical_exports(
    fmt: str, tmp_path: Path, pg_url: str, s3_server, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    bucket = s3_server.create_bucket()
    settings = _settings(
        tmp_path,
        pg_url,
        blob_url=f"s3://{bucket}/blobs",
        s3_endpoint_url=s3_server.endpoint,
        s3_access_key=s3_server.access_key,
        s3_secret_key=s3_server.secret_key,
        export_shard_maxcount=9,  # several shards per split, written by the pool
    )
    app = App(settings)
    try:
        _fill(app)
        one = run_export(app, "three", fmt, tmp_path / "one", resize=40, workers=1)
        # Tiny pages and sort runs: keyset pagination and the spilled SHA256SUMS merge are used.
        monkeypatch.setattr(fin, "PAGE", 7)
        monkeypatch.setattr(fin, "SORT_RUN", 5)
        monkeypatch.setattr(plan_mod, "BATCH", 11)
        two = run_export(app, "three", fmt, tmp_path / "two", resize=40, workers=2)
        monkeypatch.undo()
        # Two invocations of the real command at once, as on two machines.
        cmd = [sys.executable, "-m", "imnet", "export", "--set", "three", "--format", fmt]
        cmd += ["--out", str(tmp_path / "sharded"), "--resize", "40", "--workers", "1", "--json"]
        procs = [
            subprocess.Popen(
                [*cmd, "--shard", f"{i}/2"],
                env=_shard_env(settings),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for i in range(2)
        ]
        reports = []
        for p in procs:
            out, err = p.communicate(timeout=300)
            assert p.returncode == 0, err
            reports.append(json.loads(out))
        with app.Session() as s:
            exports = s.execute(select(Export.name, Export.status, Export.manifest_sha256)).all()
            n_items = {
                name: s.scalar(
                    select(func.count())
                    .select_from(ExportItem)
                    .join(Export, Export.id == ExportItem.export_id)
                    .where(Export.name == name)
                )
                for name, _, _ in exports
            }
    finally:
        app.close()

    assert sorted(r["status"] for r in reports) == ["complete", "waiting"], json.dumps(reports)
    done = next(r for r in reports if r["status"] == "complete")
    assert sum(r["encoded"] for r in reports) == sum(one["counts"].values()) + 1
    trees = [_tree(tmp_path / d) for d in ("one", "two", "sharded")]
    assert trees[0] == trees[1], "2 processes wrote other bytes than 1"
    assert trees[0] == trees[2], "2 shards wrote other bytes than 1 process"
    assert one["manifest_sha256"] == two["manifest_sha256"] == done["manifest_sha256"]
    assert one["dropped_images"] == {"unreadable": 1} == done["dropped_images"]
    assert {st for _, st, _ in exports} == {"complete"} and len(exports) == 3
    assert set(n_items.values()) == {sum(one["counts"].values())}

    entries = [
        json.loads(x) for x in (tmp_path / "one" / "manifest.jsonl").read_text().split("\n")[:-1]
    ]
    images = [e for e in entries if e.get("source_sha256")]
    n_val = one["counts"]["val"]
    assert len(images) == sum(one["counts"].values()) and n_val >= 3
    # Dense numbering although one image of CLASSES[0] failed to encode.
    key = "member" if fmt == "webdataset" else "path"
    for w in CLASSES:
        names = [
            e[key].rsplit("/", 1)[-1].split(".")[0]
            for e in images
            if e["split"] == "train" and e["wnid"] == w
        ]
        assert names == [f"{w}_{n}" for n in range(1, len(names) + 1)]
    vals = [e[key].rsplit("/", 1)[-1].split(".")[0] for e in images if e["split"] == "val"]
    assert vals == [f"ILSVRC2012_val_{n:08d}" for n in range(1, n_val + 1)]
    sums = (tmp_path / "one" / "SHA256SUMS").read_text().splitlines()
    paths = [line.split("  ", 1)[1] for line in sums]
    assert paths == sorted(paths) and "manifest.jsonl" in paths
    if fmt == "ilsvrc":
        truth = (
            (tmp_path / "one" / "data/ILSVRC2012_validation_ground_truth.txt").read_text().split()
        )
        by_name = {e["path"]: e["class_index"] + 1 for e in images if e["split"] == "val"}
        order = sorted(by_name, key=lambda p: p.rsplit("/", 1)[-1])  # val/<wnid>/ILSVRC2012_val_N
        assert [int(t) for t in truth] == [by_name[p] for p in order]
    else:
        assert sum(p.endswith(".tar") and p.startswith("train-") for p in paths) >= 5
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir()), "staging left behind"


class Killed(RuntimeError):
    """Stands for a SIGKILL part-way through encoding."""


def test_killed_export_resumes_without_redoing_files(
    tmp_path: Path, db_url: str, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    app = App(_settings(tmp_path, db_url))
    try:
        _fill(app)
        real_stage = enc.stage
        calls = {"n": 0}

        def dying_stage(task: enc.Task) -> enc.Result:
            calls["n"] += 1
            if calls["n"] > 40:
                raise Killed("killed")
            return real_stage(task)

        monkeypatch.setattr(enc, "stage", dying_stage)
        with pytest.raises(Killed):
            run_export(app, "three", "ilsvrc", tmp_path / "out", resize=40, workers=1)
        monkeypatch.undo()
        staging = tmp_path / ".out.partial"
        with app.Session() as s:
            done = s.scalars(
                select(ExportItem.image_sha256).where(ExportItem.status == "done")
            ).all()
            total = s.scalar(select(func.count()).select_from(ExportItem))
        assert len(done) >= 32, "the results finished before the crash were not recorded"
        before = {sha: os.stat(staged_path(staging, sha)) for sha in done}
        assert not (tmp_path / "out").exists()

        rep = run_export(app, "three", "ilsvrc", tmp_path / "out", resize=40, workers=1)
        fresh = run_export(app, "three", "ilsvrc", tmp_path / "fresh", resize=40, workers=1)
    finally:
        app.close()
    assert rep["resumed"] and not fresh["resumed"]
    assert rep["encoded"] == total - len(done), "finished files were encoded again"
    assert _tree(tmp_path / "out") == _tree(tmp_path / "fresh")
    entries = [
        json.loads(x) for x in (tmp_path / "out" / "manifest.jsonl").read_text().splitlines()
    ]
    for e in entries:
        if e.get("source_sha256") in before:
            st = os.stat(tmp_path / "out" / e["path"])
            old = before[e["source_sha256"]]
            # The very file the first run wrote (a hard link to it), not a rewrite.
            assert (st.st_ino, st.st_mtime_ns) == (old.st_ino, old.st_mtime_ns), e["path"]


def test_bad_shard_argument_is_one_line(tmp_path: Path, sqlite_url: str, capsys) -> None:  # type: ignore[no-untyped-def]
    from imnet.cli import main

    base = ["--data-dir", str(tmp_path / "d"), "--database-url", sqlite_url]
    for bad in ("2/2", "x", "1/0"):
        code = main(
            [
                *base,
                "export",
                "--set",
                "s",
                "--format",
                "ilsvrc",
                "--out",
                str(tmp_path / "o"),
                "--shard",
                bad,
            ]
        )
        err = capsys.readouterr().err
        assert code == 2 and "--shard" in err and "Traceback" not in err
        assert len(err.strip().splitlines()) == 1
