"""The requester's review page: labels per synset as thumbnails, the worker table, and hand overrides."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import io
import os
from collections import OrderedDict
from collections.abc import Sequence
from html import escape
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from aiohttp import web
from sqlalchemy import and_, func, select

from curation.consensus.base import ACCEPT, INSUFFICIENT, REJECT, UNDECIDED
from curation.consensus.labels import override_label
from curation.consensus.loading import eligible_filter
from db.models import Candidate, Image, Label, Synset, Vote, Worker, WorkerVerdict
from imnet.core.app import App

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from imnet.core.blobstore import FileStore, S3Store

APP_KEY = web.AppKey("imnet_app", App)
SECRET_KEY = web.AppKey("csrf_secret", bytes)
THUMBS_KEY = web.AppKey("thumbs", OrderedDict)
THUMB_SIDE = 160
THUMB_CACHE = 512
SECTION_LIMIT = 200

CSS = """
body{font-family:sans-serif;margin:1em;background:#fafafa;color:#222}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:2px 8px}
.grid{display:flex;flex-wrap:wrap;gap:8px}
.tile{border:4px solid #999;background:#fff;padding:4px;width:170px;font-size:12px}
.tile.accept{border-color:#2a2}.tile.reject{border-color:#c22}.tile.undecided{border-color:#999}
.tile img{width:160px;height:120px;object-fit:contain;background:#eee;display:block}
.tile form{display:inline}.manual{font-weight:bold;color:#a60}
"""


def mount_review(root: web.Application, app: App, prefix: str = "/review") -> None:
    """Mount the review page under `prefix` of `root`; `prefix` without its slash redirects."""

    async def to_index(request: web.Request) -> web.StreamResponse:
        query = request.query_string
        raise web.HTTPFound(prefix + "/" + (f"?{query}" if query else ""))

    root.router.add_get(prefix, to_index)
    root.add_subapp(prefix, make_review_app(app))


def make_review_app(app: App) -> web.Application:
    """The review page as an aiohttp application; `mount_review` mounts it."""
    sub = web.Application()
    sub[APP_KEY] = app
    sub[SECRET_KEY] = os.urandom(32)
    sub[THUMBS_KEY] = OrderedDict()
    sub.router.add_get("/", index, name="index")
    sub.router.add_get("/synset/{wnid}", synset_page, name="synset")
    sub.router.add_get("/workers", workers_page, name="workers")
    sub.router.add_get("/thumb/{sha:[0-9a-f]{64}}", thumb, name="thumb")
    sub.router.add_post("/label/{cid:[0-9]+}", override, name="label")
    return sub


async def _db(request: web.Request, fn: Any, *args: Any) -> Any:
    """Run a blocking database function in a thread, with its own session."""
    app = request.app[APP_KEY]

    def work() -> Any:
        with app.Session() as session:
            return fn(session, *args)

    return await asyncio.get_running_loop().run_in_executor(None, work)


def _page(title: str, body: str) -> web.Response:
    html = (
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{escape(title)}</title>"
        f"<style>{CSS}</style></head><body>{body}</body></html>"
    )
    return web.Response(text=html, content_type="text/html", charset="utf-8")


def _url(request: web.Request, name: str, **parts: str) -> str:
    # url_for on the sub-app's router includes the mount prefix (e.g. /review).
    return str(request.app.router[name].url_for(**parts))


def _token(request: web.Request, cid: int) -> str:
    return hmac.new(request.app[SECRET_KEY], f"label:{cid}".encode(), hashlib.sha256).hexdigest()


def _index_data(session: Session) -> tuple[list[Any], dict[str, dict[str, int]]]:
    synsets = list(session.execute(select(Synset.wnid, Synset.lemmas).order_by(Synset.wnid)))
    counts: dict[str, dict[str, int]] = {}
    for wnid, decision, n in session.execute(
        select(Label.wnid, Label.decision, func.count()).group_by(Label.wnid, Label.decision)
    ):
        counts.setdefault(wnid, {})[decision] = n
    for wnid, n in session.execute(
        select(Candidate.wnid, func.count())
        .join(Image, Image.sha256 == Candidate.image_sha256)
        .where(*eligible_filter())
        .group_by(Candidate.wnid)
    ):
        counts.setdefault(wnid, {})["eligible"] = n
    return synsets, counts


async def index(request: web.Request) -> web.Response:
    synsets, counts = await _db(request, _index_data)
    rows = []
    for wnid, lemmas in synsets:
        c = counts.get(wnid, {})
        rows.append(
            f"<tr class='synset-row'><td><a href='{escape(_url(request, 'synset', wnid=wnid))}'>"
            f"{escape(wnid)}</a></td><td>{escape(', '.join(map(str, lemmas or [])))}</td>"
            f"<td>{c.get('eligible', 0)}</td><td>{c.get(ACCEPT, 0)}</td><td>{c.get(REJECT, 0)}</td>"
            f"<td>{c.get(UNDECIDED, 0)}</td><td class='insufficient'>{c.get(INSUFFICIENT, 0)}"
            "</td></tr>"
        )
    workers = await _db(request, _worker_rows)
    crowd = await _db(request, _crowd)
    body = (
        "<h1>imnet review</h1><h2>Synsets</h2><table id='synsets'><tr><th>wnid</th><th>lemmas</th>"
        "<th>eligible</th><th>accepted</th><th>rejected</th><th>undecided</th>"
        "<th>insufficient crowd</th></tr>"
        + "".join(rows)
        + "</table>"
        + _crowd_section(*crowd)
        + _worker_table(workers)
    )
    return _page("imnet review", body)


def _crowd(session: Session) -> tuple[dict[str, Any], list[list[str]]]:
    from mturk.routing import crowd_status

    groups: dict[str, list[str]] = {}
    for wid, g in session.execute(
        select(Worker.worker_id, Worker.dependence_group)
        .where(Worker.dependence_group.is_not(None))
        .order_by(Worker.worker_id)
    ):
        groups.setdefault(str(g), []).append(wid)
    return crowd_status(session), [groups[g] for g in sorted(groups)]


def _crowd_section(status: dict[str, Any], groups: list[list[str]]) -> str:
    """How many items the crowd cannot decide and the crowd the set goal needs; dependent
    groups (workers who vote as one source, weighed as one)."""
    n = status["insufficient_crowd"]
    if n:
        line = (
            f"<span id='insufficient-count'>{n}</span> items are insufficient_crowd: the eligible "
            "workers left cannot decide them. The set goal needs about "
            f"<span id='crowd-needed'>{status['crowd_needed']}</span> annotators of the measured "
            f"skill: <span id='more-needed'>{status['more_annotators_needed']}</span> more."
        )
    else:
        line = "No item lacks the crowd to decide it."
    routed = ", ".join(f"{k}: {v}" for k, v in sorted(status["routed_away"].items())) or "none"
    notes = "".join(
        f"<p class='note'>{escape(str(x))}</p>" for x in status.get("consensus_notes", [])
    )
    items = (
        "".join(f"<li class='dependent-group'>{escape(', '.join(g))}</li>" for g in groups)
        or "<li>none found</li>"
    )
    return (
        f"<section id='crowd'><h2>Crowd</h2><p>{line}</p><p>Routed away: {escape(routed)}; "
        f"promoted gold: {status['gold_promoted']}</p>{notes}"
        f"<h3>Dependent worker groups (each weighed as one source)</h3><ul id='groups'>{items}</ul>"
        "</section>"
    )


def _worker_rows(session: Session) -> list[tuple[Any, ...]]:
    votes = dict(
        session.execute(select(Vote.worker_id, func.count()).group_by(Vote.worker_id)).all()
    )
    # Which synsets' fits route each worker away as uninformative (the reason behind the verdict).
    flagged: dict[str, list[str]] = {}
    q = select(WorkerVerdict.worker_id, WorkerVerdict.wnid).where(WorkerVerdict.uninformative)
    for wid, wnid in session.execute(q.order_by(WorkerVerdict.worker_id, WorkerVerdict.wnid)):
        flagged.setdefault(wid, []).append(wnid)
    out = []
    for w in session.scalars(select(Worker).order_by(Worker.worker_id)):
        out.append(
            (
                w.worker_id,
                w.gold_seen,
                w.gold_correct,
                w.approved,
                w.rejected,
                w.blocked,
                votes.get(w.worker_id, 0),
                w.routing,
                w.dependence_group,
                flagged.get(w.worker_id, []),
            )
        )
    return out


def _worker_table(rows: list[tuple[Any, ...]]) -> str:
    out = [
        "<h2>Workers</h2><table id='workers'><tr><th>worker</th><th>votes</th><th>gold seen</th>"
        "<th>gold correct</th><th>gold accuracy</th><th>approved</th><th>rejected</th>"
        "<th>blocked</th><th>routed away</th><th>group</th></tr>"
    ]
    for wid, seen, correct, approved, rejected, blocked, votes, routing, group, where in rows:
        acc = f"{correct / seen:.3f}" if seen else "-"
        why = escape(routing or "-")
        if routing == "uninformative" and where:
            # "~": a verdict kept from before per-synset verdicts (migration 0009).
            names = ", ".join(w if w != "~" else "an earlier run" for w in where[:20])
            more = f" and {len(where) - 20} more" if len(where) > 20 else ""
            n = len(where)
            why += (
                f" <span title='{escape(names + more)}'>({n} synset{'s' if n > 1 else ''})</span>"
            )
        out.append(
            f"<tr class='worker-row'><td>{escape(str(wid))}</td><td>{votes}</td><td>{seen}</td>"
            f"<td>{correct}</td><td class='gold-acc'>{acc}</td><td>{approved}</td>"
            f"<td>{rejected}</td><td>{'yes' if blocked else 'no'}</td>"
            f"<td class='routing'>{why}</td><td>{escape(group or '-')}</td></tr>"
        )
    return "".join(out) + "</table>"


async def workers_page(request: web.Request) -> web.Response:
    rows = await _db(request, _worker_rows)
    return _page("imnet review: workers", _worker_table(rows))


def _synset_data(session: Session, wnid: str) -> tuple[Any, Sequence[Any]]:
    syn = session.execute(select(Synset.lemmas, Synset.gloss).where(Synset.wnid == wnid)).first()
    eligible = and_(*eligible_filter())
    rows = session.execute(
        select(
            Candidate.id,
            Candidate.image_sha256,
            Candidate.url,
            Candidate.title,
            Label.votes_yes,
            Label.votes_no,
            Label.posterior,
            Label.decision,
            Label.decided_by,
            Label.overridden,
            eligible.label("eligible"),
        )
        .join(Image, Image.sha256 == Candidate.image_sha256)
        .outerjoin(Label, Label.candidate_id == Candidate.id)
        .where(Candidate.wnid == wnid)
        .order_by(Candidate.id)
    ).all()
    return syn, rows


async def synset_page(request: web.Request) -> web.Response:
    wnid = request.match_info["wnid"]
    if len(wnid) > 64 or not wnid.isprintable():
        # No synset id holds these, and PostgreSQL text cannot even be compared with a NUL.
        raise web.HTTPNotFound(text="unknown synset")
    try:
        limit = max(1, min(5000, int(request.query.get("limit", SECTION_LIMIT))))
    except ValueError:
        raise web.HTTPBadRequest(text="limit must be an integer") from None
    syn, rows = await _db(request, _synset_data, wnid)
    if syn is None:
        raise web.HTTPNotFound(text=f"unknown synset {wnid}")
    sections: dict[str, list[Any]] = {ACCEPT: [], REJECT: [], INSUFFICIENT: [], UNDECIDED: []}
    for r in rows:
        if r.decision in (ACCEPT, REJECT, INSUFFICIENT):
            sections[r.decision].append(r)
        elif r.decision == UNDECIDED or r.eligible:
            sections[UNDECIDED].append(r)
    titles = {
        ACCEPT: "Accepted",
        REJECT: "Rejected",
        INSUFFICIENT: "Insufficient crowd (posterior = precision if accepted)",
        UNDECIDED: "Undecided",
    }
    parts = [
        f"<p><a href='{escape(_url(request, 'index'))}'>all synsets</a></p>",
        f"<h1>{escape(wnid)}: {escape(', '.join(map(str, syn.lemmas or [])))}</h1>",
        f"<p class='gloss'>{escape(syn.gloss or '')}</p>",
    ]
    for key, items in sections.items():
        parts.append(f"<section id='{key}'><h2>{titles[key]} ({len(items)})</h2><div class='grid'>")
        parts.extend(_tile(request, r) for r in items[:limit])
        parts.append("</div>")
        if len(items) > limit:
            parts.append(f"<p>{len(items) - limit} more not shown (?limit=N)</p>")
        parts.append("</section>")
    return _page(f"imnet review: {wnid}", "".join(parts))


def _tile(request: web.Request, r: Any) -> str:
    decision = r.decision or UNDECIDED
    post = "-" if r.posterior is None else f"{r.posterior:.4f}"
    by = r.decided_by or ("no votes yet" if r.votes_yes is None else "-")
    manual = " <span class='manual'>manual</span>" if r.overridden else ""
    action = escape(_url(request, "label", cid=str(r.id)))
    token = _token(request, r.id)
    buttons = "".join(
        f"<button type='submit' name='decision' value='{d}'>{label}</button>"
        for d, label in ((ACCEPT, "accept"), (REJECT, "reject"), ("clear", "clear"))
    )
    return (
        f"<div class='tile {decision}' id='c{r.id}' data-candidate='{r.id}' "
        f"data-decision='{escape(decision)}'>"
        f"<img src='{escape(_url(request, 'thumb', sha=r.image_sha256))}' "
        f"alt='{escape(r.title or '')}' title='{escape(r.url or '')}'>"
        f"<div>#{r.id} yes {r.votes_yes or 0} / no {r.votes_no or 0}</div>"
        f"<div>posterior <span class='posterior'>{post}</span></div>"
        f"<div>by {escape(by)}{manual}</div>"
        f"<form method='post' action='{action}'><input type='hidden' name='token' "
        f"value='{token}'>{buttons}</form></div>"
    )


async def thumb(request: web.Request) -> web.Response:
    sha = request.match_info["sha"]
    cache = request.app[THUMBS_KEY]
    if sha in cache:
        cache.move_to_end(sha)
        data = cache[sha]
    else:
        store = request.app[APP_KEY].blobs
        loop = asyncio.get_running_loop()
        data = await loop.run_in_executor(None, _make_thumb, store, sha)
        if data is None:
            raise web.HTTPNotFound(text=f"image {sha} is not in the blob store or not decodable")
        cache[sha] = data
        if len(cache) > THUMB_CACHE:
            cache.popitem(last=False)
    return web.Response(
        body=data, content_type="image/jpeg", headers={"Cache-Control": "max-age=86400"}
    )


def _make_thumb(store: FileStore | S3Store, sha: str) -> bytes | None:
    from PIL import Image as PILImage

    from imnet.core.blobstore import BlobError

    try:
        raw = store.get(sha)
        with PILImage.open(io.BytesIO(raw)) as src:
            src.draft("RGB", (THUMB_SIDE, THUMB_SIDE))
            im = src.convert("RGB")
            im.thumbnail((THUMB_SIDE, THUMB_SIDE))
            out = io.BytesIO()
            im.save(out, format="JPEG", quality=85)
            return out.getvalue()
    except (BlobError, OSError, ValueError, PILImage.DecompressionBombError):
        return None


async def override(request: web.Request) -> web.Response:
    cid = int(request.match_info["cid"])
    origin = request.headers.get("Origin")
    if origin and origin != "null" and urlsplit(origin).netloc != request.host:
        raise web.HTTPForbidden(text="cross-origin form post refused")
    form = await request.post()
    token = str(form.get("token", ""))
    if not hmac.compare_digest(token, _token(request, cid)):
        raise web.HTTPForbidden(text="missing or stale form token; reload the page and retry")
    decision = str(form.get("decision", ""))
    if decision not in (ACCEPT, REJECT, "clear"):
        raise web.HTTPBadRequest(text="decision must be accept, reject or clear")
    wnid = await _db(request, override_label, cid, decision)
    if wnid is None:
        raise web.HTTPNotFound(text=f"no candidate {cid}")
    raise web.HTTPSeeOther(_url(request, "synset", wnid=wnid) + f"#c{cid}")
