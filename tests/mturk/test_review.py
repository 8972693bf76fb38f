"""The review page in headless Chromium: DOM, screenshot, and a hand override clicked in the browser."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import requests
from PIL import Image as PILImage

from curation.consensus.decide import run_consensus
from db.models import Candidate, Label, Worker
from tests import dbrows

WNID = "n02123045"
RED, BLUE, GREEN = (220, 20, 20), (20, 40, 220), (20, 200, 40)


@pytest.fixture
def served(app) -> Iterator[tuple[str, object, list[int]]]:  # type: ignore[no-untyped-def]
    """A synset with 3 accepted (red), 3 rejected (blue), 2 undecided (green) images, served
    under /review as `imnet mturk serve` mounts it."""
    from aiohttp import web

    from imnet.core.webthread import start_web_thread
    from mturk.server.review import mount_review

    app.settings.consensus_initial_subset = 100
    with app.Session() as s:
        dbrows.add_synset(s, WNID, "tabby")
        ids = dbrows.add_candidates(s, WNID, 3, blobs=app.blobs, colours=[RED])
        ids += dbrows.add_candidates(s, WNID, 3, blobs=app.blobs, colours=[BLUE])
        ids += dbrows.add_candidates(s, WNID, 2, blobs=app.blobs, colours=[GREEN])
        s.get(Candidate, ids[0]).title = "<script>alert(1)</script>"
        rows = []
        for i, cid in enumerate(ids):
            for k in range(10 if i < 6 else 2):
                rows.append((cid, f"w{k}", i < 3 if i < 6 else k == 0))
        dbrows.add_votes(s, WNID, rows)
        w = s.get(Worker, "w0")
        w.gold_seen, w.gold_correct, w.approved, w.rejected = 8, 6, 5, 1
        s.get(Worker, "w9").blocked = True
        s.commit()
        run_consensus(s, "majority", settings=app.settings)
        # Make the last two undecided as the review page should show them.
        for cid in ids[6:]:
            lab = s.get(Label, cid)
            lab.decision = "undecided"
        s.commit()

    root = web.Application()
    mount_review(root, app)
    with start_web_thread(root, "127.0.0.1", 0, name="review") as server:
        yield f"{server.url}/review", app, ids


def _tiles(dom: str, section: str) -> list[str]:
    m = re.search(rf"<section id=\"{section}\">(.*?)</section>", dom, re.S)
    assert m, f"section {section} missing"
    return re.findall(r'data-candidate="(\d+)"', m.group(1))


def test_review_dom_screenshot_and_override(served, chromium, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    base, app, ids = served
    dom = chromium.dump_dom(f"{base}/synset/{WNID}")
    assert _tiles(dom, "accept") == [str(c) for c in ids[:3]]
    assert _tiles(dom, "reject") == [str(c) for c in ids[3:6]]
    assert _tiles(dom, "undecided") == [str(c) for c in ids[6:]]
    assert dom.count("<img ") == 8 and dom.count('name="token"') == 8
    assert "yes 9 / no 0" in dom and "posterior" in dom  # w9 is blocked: its votes do not count
    # The hostile title is text, not a script element.
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in dom and "<script>" not in dom

    index = chromium.dump_dom(f"{base}/")
    assert WNID in index and "tabby" in index
    rows = re.findall(r'<tr class="worker-row">(.*?)</tr>', index, re.S)
    assert len(rows) == 10
    w0 = next(r for r in rows if ">w0<" in r)
    assert "0.750" in w0 and ">5<" in w0 and ">1<" in w0
    assert ">yes<" in next(r for r in rows if ">w9<" in r)

    shot = chromium.screenshot(f"{base}/synset/{WNID}", tmp_path / "review.png")
    with PILImage.open(shot) as im:
        rgb = im.convert("RGB")
        assert rgb.size == (1280, 2000)
        colours = rgb.getcolors(maxcolors=1 << 20) or []
        assert len(colours) > 20, "screenshot looks blank"
        px = np.asarray(rgb.resize((320, 500)), dtype=np.int32).reshape(-1, 3)

    def share(ref: tuple[int, int, int]) -> float:
        return float((np.abs(px - np.array(ref)).sum(axis=1) < 40).mean())

    # Each thumbnail colour covers a visible part of the page (3, 3 and 2 tiles).
    assert share(RED) > 0.005 and share(BLUE) > 0.005 and share(GREEN) > 0.003

    # Override: click "accept" on a rejected tile, in the browser, through the real form.
    target = ids[3]

    async def click() -> tuple[str, str]:
        async with chromium.Browser() as b:
            await b.goto(f"{base}/synset/{WNID}")
            await b.eval(f"document.querySelector('#c{target} button[value=accept]').click()")
            await b.wait_event("Page.loadEventFired")
            where = await b.eval(f"document.querySelector('#c{target}').closest('section').id")
            text = await b.eval(f"document.querySelector('#c{target}').innerText")
            return where, text

    where, text = asyncio.run(click())
    assert where == "accept" and "manual" in text
    with app.Session() as s:
        lab = s.get(Label, target)
        assert (lab.decision, lab.decided_by, lab.overridden, lab.posterior) == (
            "accept",
            "manual",
            True,
            1.0,
        )
        # The override survives the next consensus run.
        run_consensus(s, "dynamic", settings=app.settings)
        assert s.get(Label, target).decision == "accept"


def test_override_refuses_bad_posts(served) -> None:  # type: ignore[no-untyped-def]
    base, app, ids = served
    page = requests.get(f"{base}/synset/{WNID}", timeout=30).text
    token = re.search(rf"id=.c{ids[0]}.*?name=.token. value=.([0-9a-f]+)", page, re.S).group(1)
    url = f"{base}/label/{ids[0]}"
    r = requests.post(url, data={"decision": "reject"}, timeout=30, allow_redirects=False)
    assert r.status_code == 403
    r = requests.post(url, data={"decision": "maybe", "token": token}, timeout=30)
    assert r.status_code == 400
    r = requests.post(
        url,
        data={"decision": "reject", "token": token},
        headers={"Origin": "http://evil.example"},
        timeout=30,
    )
    assert r.status_code == 403
    assert requests.get(url, timeout=30).status_code == 405
    assert requests.get(f"{base}/synset/n99999999", timeout=30).status_code == 404
    assert requests.get(f"{base}/thumb/{'0' * 64}", timeout=30).status_code == 404
    # Hostile paths never reach a query as a 500 (PostgreSQL text cannot hold a NUL).
    for path in ("/synset/n0%00x", "/synset/%ff%fe", f"/synset/{'n' * 5000}", "/thumb/%00"):
        assert requests.get(base + path, timeout=30).status_code in (400, 404), path
    assert requests.get(f"{base}/synset/{WNID}?limit={'9' * 40}", timeout=30).status_code == 200
    r = requests.post(f"{base}/label/{'9' * 40}", data={"decision": "reject"}, timeout=30)
    assert r.status_code == 403
    with app.Session() as s:
        assert s.get(Label, ids[0]).decision == "accept"  # nothing changed
    r = requests.post(url, data={"decision": "reject", "token": token}, timeout=30)
    assert r.status_code == 200 and r.url.endswith(f"/review/synset/{WNID}#c{ids[0]}")
    r = requests.post(url, data={"decision": "clear", "token": token}, timeout=30)
    with app.Session() as s:
        lab = s.get(Label, ids[0])
        assert (lab.decision, lab.overridden, lab.decided_by) == ("undecided", False, None)


def test_review_without_its_slash_redirects(served) -> None:  # type: ignore[no-untyped-def]
    base, _app, _ids = served
    r = requests.get(base, timeout=30, allow_redirects=False)
    assert r.status_code == 302 and r.headers["Location"] == "/review/"
    r = requests.get(f"{base}?wnid={WNID}", timeout=30, allow_redirects=False)
    assert r.headers["Location"] == f"/review/?wnid={WNID}"
    r = requests.get(base, timeout=30)
    assert r.url.endswith("/review/") and "id='synsets'" in r.text
