"""Headless Chromium: a worker signs in, previews, accepts, ticks images, submits; boto3 collects it."""

from __future__ import annotations

import asyncio
import json

from sqlalchemy import select

from db.models import HitItem, Vote
from mturk.answers import parse_fields
from mturk.collect import collect
from mturk.publish import publish
from tests._chromium import Browser
from tests.dbrows import add_gold, seed
from tests.mturk.serving import client_for, serve

HOSTILE = 'a <script>window.pwned=1</script> "quoted" & <b>bold</b> gloss'


def test_worker_in_browser_then_requester_collects(sqlite_app, chromium):  # type: ignore[no-untyped-def]
    app = sqlite_app
    data = seed(app, "n00000002", 4, gloss=HOSTILE, lemmas=["<img src=x onerror=alert(1)>", "dog"])
    gold = seed(app, "n00000002", 2, rng_seed=1)
    add_gold(app, "n00000002", gold["ids"], gold["truth"])
    handle = serve(app)
    try:
        mt = client_for(app)
        rep = publish(
            app, yes=True, needs={c: 1 for c in data["ids"]}, client=mt, out=lambda s: None
        )
        assert rep["created"] == 1
        with app.Session() as s:
            items = list(s.scalars(select(HitItem).order_by(HitItem.position)))
        hit_id = items[0].hit_id
        ticked_positions = asyncio.run(_drive(handle.url, hit_id))

        # The requester collects exactly what was ticked, through boto3.
        got = mt.list_assignments_for_hit(HITId=hit_id)["Assignments"]
        assert len(got) == 1 and got[0]["WorkerId"] == "BROWSER1"
        fields = parse_fields(got[0]["Answer"])
        assert fields.pop("n_items") == str(len(items))
        assert fields == {f"item_{p}": "yes" for p in ticked_positions}
        collect(app, client=mt, more=False, out=lambda s: None)
        with app.Session() as s:
            votes = {v.candidate_id: v.is_match for v in s.scalars(select(Vote))}
        want = {
            i.candidate_id: i.position in ticked_positions for i in items if i.gold_label is None
        }
        assert votes == want
    finally:
        handle.stop()


async def _drive(base: str, hit_id: str) -> list[int]:
    b = Browser()
    await b.start()
    try:
        await b.goto(f"{base}/worker/")
        await b.eval(
            "document.getElementById('worker_id').value='BROWSER1';"
            "document.getElementById('signin').click(); true"
        )
        await b.wait_for(
            "location.pathname === '/worker/hits' && document.readyState === 'complete'"
        )
        assert await b.eval("document.getElementById('me').textContent") == "BROWSER1"
        # The list names the task's subject (the hostile lemma as text) and the HIT id.
        row = await b.eval("document.querySelector('a.preview').closest('tr').innerText")
        assert "<img src=x onerror=alert(1)>" in row and hit_id in row
        assert await b.eval("document.querySelectorAll('td img').length") == 0
        await b.eval("document.querySelector('a.preview').click(); true")
        await b.wait_for(f"location.pathname === '/worker/hits/{hit_id}'")

        # Preview: the task shows, hostile text is inert, and nothing can be submitted.
        await b.wait_for("document.getElementById('submitButton') !== null", frame=True)
        assert await b.frame_eval("document.getElementById('submitButton').disabled") is True
        assert await b.frame_eval("document.querySelector('input[type=checkbox]').disabled") is True
        assert await b.frame_eval("document.getElementById('gloss').textContent") == HOSTILE
        assert await b.frame_eval("typeof window.pwned") == "undefined"
        assert await b.frame_eval("document.querySelectorAll('#gloss *').length") == 0
        lemmas = await b.frame_eval("document.getElementById('lemmas').textContent")
        assert lemmas.startswith("<img src=x onerror=alert(1)>")
        # Forcing the form past its disabled button still gets a refusal from the server.
        await b.frame_eval("document.getElementById('mturk_form').submit(); true")
        text = await b.wait_for(
            "document.body && document.body.innerText.includes('preview') && document.body.innerText",
            frame=True,
        )
        assert "accept the HIT" in text

        # Accept, tick two tiles, submit.
        await b.goto(f"{base}/worker/hits/{hit_id}")
        await b.eval("document.getElementById('accept').click(); true")
        await b.wait_for("location.pathname.startsWith('/worker/assignments/')")
        assert await b.eval("document.getElementById('return') !== null") is True
        await b.wait_for(
            "document.getElementById('submitButton') && !document.getElementById('submitButton').disabled",
            frame=True,
        )
        # The images come from the server's blob-backed /images/<sha256>.
        await b.wait_for(
            "Array.from(document.querySelectorAll('.tile img')).every("
            "function(i){ return i.complete && i.naturalWidth === 8; })",
            frame=True,
        )
        positions = json.loads(
            await b.frame_eval(
                "var t = document.querySelectorAll('.tile'); var out = [];"
                "[0, 2].forEach(function(i){ t[i].querySelector('input').click();"
                " out.push(parseInt(t[i].dataset.position)); }); JSON.stringify(out)"
            )
        )
        await b.frame_eval("document.getElementById('submitButton').click(); true")
        done = await b.wait_for(
            "document.getElementById('done') && document.getElementById('done').textContent",
            frame=True,
        )
        assert "submitted" in done
        # Submitted work cannot be returned: the button goes at once, and stays gone on reload.
        await b.wait_for("document.getElementById('return') === null")
        await b.eval("location.reload(); true")
        await b.wait_for("document.readyState === 'complete' && !!document.getElementById('task')")
        assert await b.eval("document.getElementById('return') === null") is True
        return positions
    finally:
        await b.close()
