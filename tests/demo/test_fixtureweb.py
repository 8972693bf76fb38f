"""The demo's fixture web: real WordNet synsets, Openverse wire format, messy results, exact truth."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from pathlib import Path

import pytest
import requests

from imnet.demo.fixtureimages import ROOTS, SYNSETS
from imnet.demo.fixtureweb import corpus_summary, match_synset, start_fixture_web


@pytest.fixture(scope="module")
def web(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    w = start_fixture_web(tmp_path_factory.mktemp("fixture"), seed=3, scale=1)
    yield w
    w.stop()


def _all_results(url: str, q: str, page_size: int = 20) -> list[dict]:
    out, page = [], 1
    while True:
        r = requests.get(
            f"{url}/v1/images/", params={"q": q, "page": page, "page_size": page_size}, timeout=10
        )
        assert r.status_code == 200
        data = r.json()
        assert {"result_count", "page_count", "page_size", "page", "results"} <= set(data)
        out += data["results"]
        if page >= data["page_count"]:
            assert len(out) == data["result_count"]
            return out
        page += 1


@pytest.mark.slow
def test_synsets_are_real_wordnet_leaves_under_two_roots() -> None:
    from nltk.corpus import wordnet as wn

    assert len(SYNSETS) >= 10
    roots_used = Counter(root for root, _l, _p in SYNSETS.values())
    assert len(roots_used) >= 2 and set(roots_used) <= set(ROOTS)
    for wnid, (root, lemmas, _photo) in SYNSETS.items():
        s = wn.synset_from_pos_and_offset("n", int(wnid[1:]))
        r = wn.synset_from_pos_and_offset("n", int(root[1:]))
        assert r in s.closure(lambda x: x.hypernyms()), (wnid, root)
        assert not s.hyponyms(), f"{wnid} is not a leaf"
        names = {n.lower().replace("_", " ") for n in s.lemma_names()}
        assert lemmas[0] in names, (wnid, lemmas)
        assert match_synset(lemmas[0]) == wnid


def test_openverse_wire_format_paging_and_errors(web) -> None:  # type: ignore[no-untyped-def]
    res = _all_results(web.url, "beagle hound", page_size=7)
    item = res[0]
    for key in (
        "id",
        "title",
        "url",
        "thumbnail",
        "foreign_landing_url",
        "creator",
        "license",
        "license_version",
        "provider",
        "source",
        "width",
        "height",
        "filesize",
        "filetype",
    ):
        assert key in item
    assert len({r["url"] for r in res}) == len(res)
    assert (
        requests.get(
            f"{web.url}/v1/images/", params={"q": "beagle", "page": 99}, timeout=10
        ).status_code
        == 400
    )
    assert requests.get(f"{web.url}/v1/images/", params={"q": ""}, timeout=10).status_code == 400
    # A query that names no fixture synset still returns (unrelated) images, as search engines do.
    assert _all_results(web.url, "zebra crossing")


def test_results_are_mostly_wrong_with_dups_and_broken(web) -> None:  # type: ignore[no-untyped-def]
    truth = json.loads(web.truth_path.read_text())["images"]
    for wnid, (_root, lemmas, _p) in SYNSETS.items():
        res = _all_results(web.url, lemmas[0])
        outcome: Counter = Counter()
        shas = []
        for r in res:
            resp = requests.get(r["url"], timeout=10)
            if resp.status_code != 200:
                outcome["http_error"] += 1
                continue
            sha = hashlib.sha256(resp.content).hexdigest()
            assert sha in truth, "every served body is in the ground truth"
            shas.append(sha)
            outcome["right" if truth[sha] == wnid else "wrong"] += 1
            if not resp.content.startswith((b"\xff\xd8", b"\x89PNG")):
                outcome["not_image"] += 1
        assert outcome["right"] < len(res) / 2, (wnid, outcome)  # most results are wrong
        assert outcome["right"] >= 8
        assert outcome["http_error"] >= 1 and outcome["not_image"] >= 1
        assert len(shas) > len(set(shas)), "some results repeat the same bytes under another URL"


def test_truth_matches_served_bytes_and_restart_keeps_urls(tmp_path: Path) -> None:
    w = start_fixture_web(tmp_path, seed=5, scale=1)
    try:
        first = _all_results(w.url, "banjo")
        body = requests.get(first[0]["url"], timeout=10).content
        truth1 = w.truth_path.read_bytes()
        url1 = w.url
    finally:
        w.stop()
    w2 = start_fixture_web(tmp_path, seed=5, scale=1)
    try:
        assert w2.url == url1, "a restart serves the same URLs (the port is remembered)"
        assert _all_results(w2.url, "banjo") == first
        assert requests.get(first[0]["url"], timeout=10).content == body
        assert w2.truth_path.read_bytes() == truth1
        assert w2.stats["image_requests"] == 1
    finally:
        w2.stop()
    summary = corpus_summary(tmp_path)
    assert summary["true"] == 16 * len(SYNSETS) and summary["broken_404"] >= len(SYNSETS)


def test_harvest_openverse_adapter_reads_the_fixture(web) -> None:  # type: ignore[no-untyped-def]
    import asyncio

    from harvest.sources import get_source
    from imnet.core.settings import Settings

    src = get_source("openverse", Settings(source_openverse_url=f"{web.url}/v1/images/"))
    urls, cursor = [], None
    for _ in range(20):
        page = asyncio.run(src.search("Siberian husky", cursor, 20))  # sources are async
        urls += [h.url for h in page.hits]
        cursor = page.next_page
        if cursor is None:
            break
    assert urls == [r["url"] for r in _all_results(web.url, "Siberian husky")]
