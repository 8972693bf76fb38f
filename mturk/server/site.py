"""The worker site: sign in with a worker id, list HITs, preview, accept, work in a sandboxed iframe."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import html
import json
import re
from collections.abc import Callable
from concurrent.futures import Executor
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from aiohttp import web
from sqlalchemy import select

from mturk.layout import PREVIEW_ASSIGNMENT_ID, esc, html_from_question
from mturk.server.common import MTurkError
from mturk.server.work import WorkerOps, WorkError

if TYPE_CHECKING:
    from imnet.core.blobstore import FileStore, S3Store

COOKIE = "imnet_worker"
WORKER_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
# The task document runs with scripts and forms only: an opaque origin that can neither read the
# site's cookies nor reach the parent page.
TASK_SANDBOX = "allow-scripts allow-forms allow-popups allow-popups-to-escape-sandbox"
_CSS = (
    "body{font-family:system-ui,sans-serif;margin:16px} table{border-collapse:collapse}"
    "td,th{padding:4px 10px;border-bottom:1px solid #ddd;text-align:left}"
    "iframe{width:100%;height:80vh;border:1px solid #bbb} .err{color:#a00}"
)


SUBMITTED = "imnet:submitted"
_SUBMITTED_LISTENER = (
    'addEventListener("message",function(e){var t=document.getElementById("task"),'
    'f=document.getElementById("return");if(f&&t&&e.source===t.contentWindow&&e.data==="'
    + SUBMITTED
    + '")f.remove();});'
)
_TITLE_RE = re.compile(r"<title>(.*?)</title>", re.S | re.I)


def _same(given: str, expected: str) -> bool:
    """Constant-time compare of a client's token (any text: compare_digest refuses non-ASCII str)."""
    return hmac.compare_digest(given.encode("utf-8", "replace"), expected.encode("utf-8"))


def _js(text: str) -> str:
    """A JavaScript string literal safe inside <script> (the Host header is the client's)."""
    return json.dumps(text).replace("<", "\\u003c").replace(">", "\\u003e")


def _page(title: str, body: str, status: int = 200) -> web.Response:
    doc = (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{esc(title)}</title>'
        f"<style>{_CSS}</style></head><body><h1>{esc(title)}</h1>{body}</body></html>"
    )
    return web.Response(
        text=doc,
        status=status,
        content_type="text/html",
        headers={"X-Frame-Options": "SAMEORIGIN", "X-Content-Type-Options": "nosniff"},
    )


# Ids, keys in URL paths: anything else (NUL, markup, non-ASCII) is a 404 before any lookup.
_ID = "[A-Za-z0-9_-]{1,64}"


class WorkerSite:
    def __init__(
        self,
        ops: WorkerOps,
        secret: bytes,
        executor: Executor,
        blobs: FileStore | S3Store | None = None,
    ) -> None:
        self.ops = ops
        self.secret = secret
        self.executor = executor
        self.blobs = blobs

    async def _run(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)

    # -- identity -------------------------------------------------------------------------
    def _sign(self, text: str) -> str:
        return hmac.new(self.secret, text.encode(), hashlib.sha256).hexdigest()[:32]

    def cookie_for(self, worker_id: str) -> str:
        return f"{worker_id}.{self._sign('worker:' + worker_id)}"

    def worker_of(self, request: web.Request) -> str | None:
        raw = request.cookies.get(COOKIE, "")
        wid, _, sig = raw.rpartition(".")
        if wid and WORKER_RE.match(wid) and _same(sig, self._sign("worker:" + wid)):
            return wid
        return None

    def submit_key(self, assignment_id: str, worker_id: str) -> str:
        return self._sign(f"submit:{assignment_id}:{worker_id}")

    def _need_worker(self, request: web.Request) -> str:
        wid = self.worker_of(request)
        if wid is None:
            raise web.HTTPSeeOther("/worker/")
        return wid

    def _wants_json(self, request: web.Request) -> bool:
        return request.query.get("format") == "json" or "application/json" in request.headers.get(
            "Accept", ""
        )

    def _refuse(self, request: web.Request, e: WorkError) -> web.Response:
        if self._wants_json(request):
            return web.json_response({"error": e.message}, status=e.http)
        return _page(
            "Refused",
            f'<p class="err">{esc(e.message)}</p><p><a href="/worker/hits" '
            'target="_top">Back to HITs</a></p>',
            e.http,
        )

    async def _form(self, request: web.Request) -> Any:
        """The posted form, or WorkError 400 for a body that is not url-encoded UTF-8."""
        try:
            return await request.post()
        except (UnicodeDecodeError, ValueError) as e:
            raise WorkError(400, f"The form could not be read: {type(e).__name__}.") from None

    # -- pages ----------------------------------------------------------------------------
    async def home(self, request: web.Request) -> web.Response:
        if self.worker_of(request):
            raise web.HTTPSeeOther("/worker/hits")
        return _page(
            "imnet worker sandbox",
            '<form method="post" action="/worker/signin"><label>Worker ID '
            '<input name="worker_id" id="worker_id" required pattern="[A-Za-z0-9_-]{1,64}"></label> '
            '<button type="submit" id="signin">Sign in</button></form>',
        )

    async def signin(self, request: web.Request) -> web.Response:
        try:
            form = await self._form(request)
        except WorkError as e:
            return self._refuse(request, e)
        wid = str(form.get("worker_id", "")).strip()
        if not WORKER_RE.match(wid):
            return _page(
                "Sign in", '<p class="err">A worker id is 1-64 letters, digits, - or _.</p>', 400
            )
        resp = web.HTTPSeeOther("/worker/hits")
        resp.set_cookie(COOKIE, self.cookie_for(wid), httponly=True, samesite="Lax", path="/")
        raise resp

    async def signout(self, request: web.Request) -> web.Response:
        resp = web.HTTPSeeOther("/worker/")
        resp.del_cookie(COOKIE, path="/")
        raise resp

    async def hits(self, request: web.Request) -> web.Response:
        wid = self._need_worker(request)
        try:
            limit = max(1, min(100, int(request.query.get("limit", 20))))
            # Bounded: the poll reads offset + limit rows of the open-HIT index.
            offset = max(0, min(10_000, int(request.query.get("offset", 0))))
        except ValueError:
            limit, offset = 20, 0
        rows = await self._run(self.ops.available, wid, limit, offset)
        if self._wants_json(request):
            return web.json_response({"worker_id": wid, "hits": rows})
        # Every HIT of a HIT type shares its title: show what the task itself is about too.
        subjects = await self._run(self._subjects, [r["hit_id"] for r in rows])
        trs = "".join(
            f"<tr><td>{esc(subjects.get(r['hit_id']) or r['title'])}<br>"
            f'<small class="hit-id">{esc(r["hit_id"])}</small></td>'
            f"<td>${esc(r['reward'])}</td><td>{r['available']}</td>"
            f'<td><a class="preview" href="/worker/hits/{esc(r["hit_id"])}">Preview</a></td></tr>'
            for r in rows
        )
        body = (
            f'<p>Signed in as <b id="me">{esc(wid)}</b>. '
            '<form method="post" action="/worker/signout" style="display:inline">'
            "<button>Sign out</button></form></p>"
            + (
                f"<table><tr><th>HIT</th><th>Reward</th><th>Available</th><th></th></tr>{trs}</table>"
                if rows
                else '<p id="none">No HITs available right now.</p>'
            )
        )
        return _page("Available HITs", body)

    def _subjects(self, hit_ids: list[str]) -> dict[str, str]:
        """HIT id -> the <title> of its task document (at most one page of HITs is read)."""
        from mturk.server.models import SandboxHit

        if not hit_ids:
            return {}
        with self.ops.store.Session() as s:
            got = s.execute(
                select(SandboxHit.hit_id, SandboxHit.question).where(SandboxHit.hit_id.in_(hit_ids))
            ).all()
        out = {}
        for hit_id, question in got:
            try:
                m = _TITLE_RE.search(html_from_question(question))
            except ValueError:
                continue
            if m:
                out[hit_id] = " ".join(html.unescape(m.group(1)).split())[:160]
        return out

    def _task_src(self, hit_id: str, params: dict[str, str]) -> str:
        return f"/worker/task/{hit_id}?" + urlencode({**params, "hitId": hit_id})

    async def preview(self, request: web.Request) -> web.Response:
        hit_id = request.match_info["hit_id"]
        try:
            h = await self._run(self.ops.hit_summary, hit_id)
        except MTurkError as e:
            return self._refuse(request, WorkError(404, e.message))
        src = self._task_src(hit_id, {"assignmentId": PREVIEW_ASSIGNMENT_ID})
        accept = (
            f'<form method="post" action="/worker/hits/{esc(hit_id)}/accept">'
            '<button type="submit" id="accept">Accept &amp; work</button></form>'
            if self.worker_of(request)
            else '<p><a href="/worker/">Sign in</a> to accept.</p>'
        )
        body = (
            f"<p>{esc(h['description'])} Reward ${esc(h['reward'])}.</p>{accept}"
            f'<iframe id="task" sandbox="{TASK_SANDBOX}" src="{esc(src)}"></iframe>'
        )
        return _page(f"Preview: {h['title']}", body)

    async def accept(self, request: web.Request) -> web.Response:
        wid = self._need_worker(request)
        try:
            got = await self._run(self.ops.accept, request.match_info["hit_id"], wid)
        except WorkError as e:
            return self._refuse(request, e)
        raise web.HTTPSeeOther(f"/worker/assignments/{got['assignment_id']}")

    async def assignment(self, request: web.Request) -> web.Response:
        wid = self._need_worker(request)
        aid = request.match_info["assignment_id"]
        try:
            a = await self._run(self.ops.assignment, aid, wid)
        except WorkError as e:
            return self._refuse(request, e)
        origin = f"{request.scheme}://{request.host}"
        submit_to = f"{origin}/submit/{self.submit_key(aid, wid)}"
        src = self._task_src(
            a["hit_id"], {"assignmentId": aid, "workerId": wid, "turkSubmitTo": submit_to}
        )
        # Only accepted work can be returned; the submitted page in the frame says when it is done.
        give_back = (
            f'<form id="return" method="post" action="/worker/assignments/{esc(aid)}/return">'
            "<button>Return HIT</button></form>"
            if a["status"] == "Accepted"
            else ""
        )
        body = (
            f'<p>Assignment <code id="assignment">{esc(aid)}</code> ({esc(a["status"])}).</p>'
            f"{give_back}"
            f'<iframe id="task" sandbox="{TASK_SANDBOX}" src="{esc(src)}"></iframe>'
            f"<script>{_SUBMITTED_LISTENER}</script>"
        )
        return _page("Work on HIT", body)

    async def give_back(self, request: web.Request) -> web.Response:
        wid = self._need_worker(request)
        try:
            await self._run(self.ops.give_back, request.match_info["assignment_id"], wid)
        except WorkError as e:
            return self._refuse(request, e)
        raise web.HTTPSeeOther("/worker/hits")

    async def task(self, request: web.Request) -> web.Response:
        """The requester's HTML, served sandboxed (CSP) even when opened outside the iframe."""
        hit_id = request.match_info["hit_id"]

        def load() -> str:
            with self.ops.store.Session() as s:
                return html_from_question(self.ops.store._hit(s, hit_id).question)

        try:
            doc = await self._run(load)
        except (MTurkError, ValueError) as e:
            return web.Response(status=404, text=str(e))
        return web.Response(
            text=doc,
            content_type="text/html",
            headers={"Content-Security-Policy": f"sandbox {TASK_SANDBOX}"},
        )

    async def external_submit(self, request: web.Request) -> web.Response:
        """POST /mturk/externalSubmit (cookie) or /submit/<key>/mturk/externalSubmit (iframe)."""
        try:
            form = await self._form(request)
        except WorkError as e:
            return self._refuse(request, e)
        fields = [(str(k), str(v)) for k, v in form.items() if k != "assignmentId"]
        aid = str(form.get("assignmentId", ""))
        if aid == PREVIEW_ASSIGNMENT_ID or not aid:
            return self._refuse(
                request, WorkError(400, "This is a preview: accept the HIT before submitting.")
            )
        cookie_worker = self.worker_of(request)
        key = request.match_info.get("key")
        worker = None
        if key is not None:
            # The key names exactly one (assignment, worker); a signed-in cookie must agree.
            owner = await self._run(self._owner, aid)
            if owner and _same(key, self.submit_key(aid, owner)):
                worker = owner
            if cookie_worker and worker and cookie_worker != worker:
                worker = None
            if worker is None:
                return self._refuse(
                    request,
                    WorkError(403, "This submission is not authorised for that assignment."),
                )
        else:
            worker = cookie_worker
            if worker is None:
                return self._refuse(request, WorkError(401, "Sign in before submitting."))
        try:
            got = await self._run(self.ops.submit, aid, worker, fields)
        except WorkError as e:
            return self._refuse(request, e)
        if self._wants_json(request):
            return web.json_response({"submitted": got["assignment_id"]})
        return _page(
            "Submitted",
            f'<p id="done">Thank you. Assignment {esc(got["assignment_id"])} was submitted.</p>'
            '<p><a href="/worker/hits" target="_top">Find more HITs</a></p>'
            f"<script>parent.postMessage({_js(SUBMITTED)}, "
            f"{_js(f'{request.scheme}://{request.host}')})</script>",
        )

    def _owner(self, aid: str) -> str | None:
        from mturk.server.models import SandboxAssignment

        with self.ops.store.Session() as s:
            a = s.get(SandboxAssignment, aid)
            return a.worker_id if a is not None else None

    async def image(self, request: web.Request) -> web.StreamResponse:
        sha = request.match_info["sha256"]
        if self.blobs is None or not re.fullmatch(r"[0-9a-f]{64}", sha):
            return web.Response(status=404, text="no such image")
        try:
            data = await self._run(self.blobs.get, sha)
        except Exception:
            return web.Response(status=404, text="no such image")
        ctype = "image/png" if data[:8] == b"\x89PNG\r\n\x1a\n" else "image/jpeg"
        if data[:4] == b"GIF8":
            ctype = "image/gif"
        elif data[:4] == b"RIFF":
            ctype = "image/webp"
        return web.Response(
            body=data,
            content_type=ctype,
            headers={
                "Cache-Control": "public, max-age=86400, immutable",
                "X-Content-Type-Options": "nosniff",
            },
        )

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/worker", self.home)
        app.router.add_get("/worker/", self.home)
        app.router.add_post("/worker/signin", self.signin)
        app.router.add_post("/worker/signout", self.signout)
        app.router.add_get("/worker/hits", self.hits)
        app.router.add_get(f"/worker/hits/{{hit_id:{_ID}}}", self.preview)
        app.router.add_post(f"/worker/hits/{{hit_id:{_ID}}}/accept", self.accept)
        app.router.add_get(f"/worker/assignments/{{assignment_id:{_ID}}}", self.assignment)
        app.router.add_post(f"/worker/assignments/{{assignment_id:{_ID}}}/return", self.give_back)
        app.router.add_get(f"/worker/task/{{hit_id:{_ID}}}", self.task)
        app.router.add_post("/mturk/externalSubmit", self.external_submit)
        app.router.add_post(f"/submit/{{key:{_ID}}}/mturk/externalSubmit", self.external_submit)
        app.router.add_get("/images/{sha256:[0-9a-f]{64}}", self.image)
