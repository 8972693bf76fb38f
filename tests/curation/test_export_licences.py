"""Licences and attribution per image, `--licenses`, ATTRIBUTION.txt, DATASHEET.md, public vs
private exports and classes short of their val/test quota."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import update

from curation.classes import choose_classes
from curation.export import ExportError, run_export
from curation.export.licences import family, normalise
from db.models import Candidate
from tests.curation.images import encode, smooth_image
from tests.dbrows import add_candidate, add_synset

BIG = ("n02085620", "n02123045")
SMALL = "n02085782"
# (raw licence as the source reports it, source API, source_ref, meta)
SOURCES = (
    ("cc-by 4.0", "openverse", "https://example.org/p/{k}", {"creator": "Ann {k}"}),
    ("cc-by-nc 2.0", "flickr", "https://www.flickr.com/photos/o/{k}", {"ownername": "Bob {k}"}),
    ("CC BY-SA 4.0", "wikimedia", "https://commons.example/File:{k}", {"artist": "<a>Cy {k}</a>"}),
    ("cc0", "openverse", "https://example.org/p/{k}", {"creator": "Di {k}"}),
    (None, "urllist", None, None),
)


@pytest.fixture
def lic_app(app):  # type: ignore[no-untyped-def]
    app.settings.val_per_class = 2
    app.settings.test_per_class = 2
    app.settings.train_max_per_class = 50
    app.settings.train_min_per_class = 1
    with app.Session.begin() as s:
        for ci, w in enumerate((*BIG, SMALL)):
            add_synset(s, w, lemmas=[f"class_{ci}"])
            for k in range(30 if w in BIG else 3):
                im = smooth_image(3000 + 100 * ci + k, (50 + k, 40 + ci))
                cid = add_candidate(s, app.blobs, w, encode(im, "JPEG", quality=90))
                raw, src, ref, meta = SOURCES[k % len(SOURCES)]
                s.execute(
                    update(Candidate)
                    .where(Candidate.id == cid)
                    .values(
                        license=raw,
                        source=src,
                        source_ref=ref.format(k=cid) if ref else None,
                        meta={m: v.format(k=cid) for m, v in meta.items()} if meta else None,
                        title=f"photo {cid}",
                    )
                )
    choose_classes(app, "lic", n=3)
    return app


def _entries(root: Path) -> list[dict[str, Any]]:
    lines = (root / "manifest.jsonl").read_text().splitlines()
    return [e for e in map(json.loads, lines) if e.get("source_sha256")]


def test_normalised_licence_ids() -> None:
    assert normalise("cc-by 4.0") == "CC-BY-4.0"
    assert normalise("CC BY-SA 4.0") == "CC-BY-SA-4.0"
    assert normalise("cc-by-nc-nd 2.0") == "CC-BY-NC-ND-2.0"
    assert normalise("cc0") == "CC0-1.0" and family("CC0-1.0") == "cc0"
    assert normalise("CC BY 2.5") == "CC-BY-2.5" and family("CC-BY-2.5") == "cc-by"
    assert normalise("all rights reserved") == "LicenseRef-All-Rights-Reserved"
    assert normalise(None) is None and normalise("  ") is None


def test_short_class_refused_or_dropped(lic_app, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ExportError, match=SMALL):
        run_export(lic_app, "lic", "ilsvrc", tmp_path / "x", resize=32, workers=1)
    assert not (tmp_path / "x").exists()
    from imnet.cli import main

    s = lic_app.settings
    code = main(
        ["--data-dir", s.data_dir, "--database-url", s.database_url, "export", "--set", "lic"]
        + ["--format", "ilsvrc", "--out", str(tmp_path / "y"), "--resize", "32"]
    )
    err = capsys.readouterr().err
    assert code == 2 and SMALL in err and "--drop-short-classes" in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    rep = run_export(
        lic_app, "lic", "ilsvrc", tmp_path / "z", resize=32, workers=1, drop_short_classes=True
    )
    assert rep["dropped_classes"] == {SMALL: "too_few_test: 1 < 2"}
    assert {e["wnid"] for e in _entries(tmp_path / "z") if e["wnid"]} == set(BIG)


def test_licences_attribution_and_datasheet(lic_app, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    kw: dict[str, Any] = {"resize": 32, "workers": 1, "drop_short_classes": True}
    allowed = "cc0,cc-by,cc-by-sa"
    a = run_export(lic_app, "lic", "webdataset", tmp_path / "a", licenses=allowed, **kw)
    b = run_export(lic_app, "lic", "webdataset", tmp_path / "b", licenses=allowed, name="b", **kw)
    entries = _entries(tmp_path / "a")
    # 3 of the 5 licence kinds may be redistributed: 18 images per class, minus nothing else.
    assert a["dropped_images"]["license"] == 2 * 12 + 1  # the nc and unlicensed; SMALL: 1 nc
    assert {e["license"] for e in entries} == {"CC-BY-4.0", "CC-BY-SA-4.0", "CC0-1.0"}
    assert sum(a["counts"].values()) == len(entries) == 2 * 18
    by_lic = {"CC-BY-4.0": "Ann", "CC-BY-SA-4.0": "Cy", "CC0-1.0": "Di"}
    for e in entries:
        assert e["author"].startswith(by_lic[e["license"]] + " ")  # Wikimedia's HTML stripped
        assert e["page_url"].startswith("https://") and e["url"].startswith("http://127.0.0.1/")
        assert e["source"] in ("openverse", "wikimedia") and e["title"].startswith("photo ")
    # Each shard sample's .json says the same as its manifest line.
    import webdataset as wds

    samples = {(e["path"], e["member"]): e for e in entries}
    for shard in sorted({e["path"] for e in entries}):
        for sample in wds.WebDataset(str(tmp_path / "a" / shard), shardshuffle=False):
            meta = json.loads(sample["json"])
            want = samples[(shard, sample["__key__"] + ".jpg")]
            assert {k: want[k] for k in meta} == meta
            assert hashlib.sha256(sample["jpg"]).hexdigest() == meta["sha256"]
    # ATTRIBUTION.txt credits every exported image's author.
    credits = (tmp_path / "a" / "ATTRIBUTION.txt").read_text().splitlines()
    lines = [ln for ln in credits if not ln.startswith("#")]
    assert len(lines) == len(entries)
    for e, line in zip(entries, lines, strict=True):
        assert line.startswith(f"{e['path']}#{e['member']}\t") and e["author"] in line
        assert e["license"] in line and e["page_url"] in line
    # DATASHEET.md: from the database, byte-identical for another name and folder, listed in
    # SHA256SUMS, and without worker ids (public export: no test labels either).
    sheet = (tmp_path / "a" / "DATASHEET.md").read_bytes()
    assert sheet == (tmp_path / "b" / "DATASHEET.md").read_bytes()
    text = sheet.decode()
    for heading in ("Counts per stage", "Verification", "Class selection", "Licences", "Checksums"):
        assert f"## {heading}" in text
    assert f"| train | {a['counts']['train']} |" in text
    assert f"{SMALL}: too_few_test" in text and a["manifest_sha256"] in text
    assert "| CC-BY-SA-4.0 | 12 |" in text
    sums = (tmp_path / "a" / "SHA256SUMS").read_text()
    assert f"{hashlib.sha256(sheet).hexdigest()}  DATASHEET.md" in sums
    assert "ATTRIBUTION.txt" in sums
    assert b["manifest_sha256"] == a["manifest_sha256"]
    assert all(e["wnid"] is None for e in entries if e["split"] == "test")
    assert "worker" not in (tmp_path / "a" / "manifest.jsonl").read_text()


def test_private_export_keeps_test_labels(lic_app, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    kw: dict[str, Any] = {"resize": 32, "workers": 1, "drop_short_classes": True}
    run_export(lic_app, "lic", "ilsvrc", tmp_path / "p", with_test_labels=True, **kw)
    test = [e for e in _entries(tmp_path / "p") if e["split"] == "test"]
    assert len(test) == 2 * 2
    assert all(e["path"] == f"test/{e['wnid']}/{e['path'].rsplit('/', 1)[1]}" for e in test)
    assert all(e["class_index"] == sorted(BIG).index(e["wnid"]) for e in test)
