"""Hostile input on the worker site: forged, repeated, late and unknown submissions are refused."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import urllib.request

import requests
from sqlalchemy import select, update

from mturk.layout import Tile, render_task_html
from mturk.publish import publish
from mturk.server.models import SandboxAssignment
from tests.dbrows import seed
from tests.mturk.serving import client_for, serve


def _session(base: str, worker: str | None) -> requests.Session:
    http = requests.Session()
    http.trust_env = False
    if worker:
        http.post(f"{base}/worker/signin", data={"worker_id": worker}).raise_for_status()
    return http


def _accept(http: requests.Session, base: str, hit_id: str) -> tuple[str, str]:
    """Accept; returns the assignment id and the turkSubmitTo the assignment page hands the task."""
    r = http.post(f"{base}/worker/hits/{hit_id}/accept", allow_redirects=False)
    assert r.status_code == 303, r.text
    page = http.get(base + r.headers["Location"]).text
    aid = r.headers["Location"].rsplit("/", 1)[1]
    submit_to = re.search(r"turkSubmitTo=([^&\"]+)", page).group(1)
    return aid, requests.utils.unquote(submit_to)


def _rows(app) -> list[tuple]:  # type: ignore[no-untyped-def]
    with app.Session() as s:
        return [
            (a.assignment_id, a.worker_id, a.status, a.answer, a.submit_time)
            for a in s.scalars(select(SandboxAssignment).order_by(SandboxAssignment.assignment_id))
        ]


def test_refusals_leave_stored_data_unchanged(sqlite_app):  # type: ignore[no-untyped-def]
    app = sqlite_app
    data = seed(app, "n00000003", 4)
    handle = serve(app)
    base = handle.url
    try:
        mt = client_for(app)
        publish(app, yes=True, needs={c: 3 for c in data["ids"]}, client=mt, out=lambda s: None)
        hit_id = mt.list_hits()["HITs"][0]["HITId"]
        alice, bob = _session(base, "ALICE"), _session(base, "BOB")
        a_aid, a_to = _accept(alice, base, hit_id)
        b_aid, b_to = _accept(bob, base, hit_id)
        good = {"assignmentId": a_aid, "n_items": "4", "item_1": "yes"}
        before = _rows(app)

        # Bob forges a submission for Alice's assignment: by cookie, and through his own key.
        r = bob.post(f"{base}/mturk/externalSubmit", data=good)
        assert r.status_code == 403 and "another worker" in r.text
        r = bob.post(f"{b_to}/mturk/externalSubmit", data=good)
        assert r.status_code == 403 and "not authorised" in r.text
        # Without any identity at all.
        r = _session(base, None).post(f"{base}/mturk/externalSubmit", data=good)
        assert r.status_code == 401
        # Alice names an item the HIT does not have, or a stray field.
        r = alice.post(f"{a_to}/mturk/externalSubmit", data={**good, "item_99": "yes"})
        assert r.status_code == 400 and "item_99" in r.text
        r = alice.post(f"{a_to}/mturk/externalSubmit", data={**good, "<script>": "x"})
        assert r.status_code == 400 and "&lt;script&gt;" in r.text
        # The preview id is not an assignment.
        r = alice.post(
            f"{a_to}/mturk/externalSubmit",
            data={**good, "assignmentId": "ASSIGNMENT_ID_NOT_AVAILABLE"},
        )
        assert r.status_code == 400 and "preview" in r.text
        assert _rows(app) == before

        # Alice submits properly once; a resubmission is refused and changes nothing.
        assert "Return HIT" in alice.get(f"{base}/worker/assignments/{a_aid}").text
        r = alice.post(f"{a_to}/mturk/externalSubmit", data=good)
        assert r.status_code == 200 and "submitted" in r.text
        # Submitted work is no longer offered for return (Bob's accepted one still is).
        assert "Return HIT" not in alice.get(f"{base}/worker/assignments/{a_aid}").text
        assert "Return HIT" in bob.get(f"{base}/worker/assignments/{b_aid}").text
        after_first = _rows(app)
        r = alice.post(f"{a_to}/mturk/externalSubmit", data={**good, "item_2": "yes"})
        assert r.status_code == 409 and "already submitted" in r.text
        assert _rows(app) == after_first
        stored = mt.get_assignment(AssignmentId=a_aid)["Assignment"]["Answer"]
        assert "<QuestionIdentifier>item_1</QuestionIdentifier>" in stored
        assert "item_2" not in stored

        # Bob's deadline passes (set in the database: tests do not sleep through 30 s).
        with app.Session() as s:
            s.execute(
                update(SandboxAssignment)
                .where(SandboxAssignment.assignment_id == b_aid)
                .values(deadline=1.0)
            )
            s.commit()
        frozen = _rows(app)
        r = bob.post(f"{b_to}/mturk/externalSubmit", data={**good, "assignmentId": b_aid})
        assert r.status_code == 409 and "time allotted" in r.text
        assert _rows(app) == frozen
        # The expired slot is free again for another worker.
        carol = _session(base, "CAROL")
        c_aid, _ = _accept(carol, base, hit_id)
        assert c_aid not in (a_aid, b_aid)
    finally:
        handle.stop()


def test_task_html_escapes_everything_from_outside() -> None:
    doc = render_task_html(
        'n1"><script>',
        ["<b>lemma</b>", "x' onmouseover='y"],
        "gloss </p><script>alert(1)</script>",
        [Tile(0, 'abc"><img src=x>', 'http://e/a.jpg"><script>', "t<script>")],
    )
    assert "<script>alert" not in doc and "<b>lemma" not in doc
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in doc
    assert 'data-sha256="abc&quot;&gt;&lt;img src=x&gt;"' in doc
    assert 'src="http://e/a.jpg&quot;&gt;&lt;script&gt;"' in doc
    assert doc.count("<script>") == 1  # only the layout's own script
    assert "search=%3Cb%3Elemma%3C%2Fb%3E" in doc


def _imnet(tmp_path, *args: str) -> subprocess.Popen:  # type: ignore[no-untyped-def]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "imnet", "--data-dir", str(tmp_path / "data"), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def test_serve_on_a_busy_port_is_one_line_and_exit_2(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        proc = _imnet(tmp_path, "mturk", "serve", "--host", "127.0.0.1", "--port", str(port))
        out, err = proc.communicate(timeout=120)
    assert proc.returncode == 2, (out, err)
    assert out == ""  # no URL is announced for a server that never listened
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith("imnet: error:") and f"127.0.0.1:{port}" in lines[0], err


def test_serve_announces_urls_once_listening(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = _imnet(tmp_path, "mturk", "serve", "--host", "127.0.0.1", "--port", str(port))
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        base = f"http://127.0.0.1:{port}"
        assert f"requester API: {base}/" in line and f"worker site: {base}/worker/" in line, line
        assert f"review: {base}/review/" in line, line
        # Announced means bound: the worker site answers at once.
        direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with direct.open(f"{base}/worker/", timeout=10) as r:
            assert r.status == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0 and "Traceback" not in err, err


def test_ids_in_paths_outside_the_id_alphabet_are_404_before_any_lookup(any_app) -> None:  # type: ignore[no-untyped-def]
    """PostgreSQL text cannot hold NUL: a path id with one used to reach the query (HTTP 500)."""
    handle = serve(any_app)
    try:
        http = _session(handle.url, "ALICE")
        for path in ("/worker/hits/%00nul/accept", "/worker/assignments/%00x/return"):
            r = http.post(handle.url + path, allow_redirects=False)
            assert r.status_code == 404, (path, r.status_code)
        for path in ("/worker/hits/%00nul", "/worker/task/%3Cb%3E", "/images/%00"):
            assert http.get(handle.url + path).status_code == 404, path
    finally:
        handle.stop()
