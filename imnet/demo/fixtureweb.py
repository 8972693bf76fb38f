"""A loopback "fixture web" for the demo: an Openverse-compatible search API plus the images it finds."""

from __future__ import annotations

import json
import math
import re
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from imnet.core.webthread import WebThread, start_web_thread
from imnet.demo.fixtureimages import ROOTS, SYNSETS, Corpus, load_or_build, truth_map

if TYPE_CHECKING:
    from aiohttp import web as aw

# Openverse lets anonymous clients page 20 at a time; authenticated ones up to 500.
DEFAULT_PAGE_SIZE = 20
MAX_PAGE_SIZE = 500


def _norm(text: str) -> str:
    return " " + re.sub(r"[\s_\-]+", " ", text.lower()).strip() + " "


def match_synset(q: str) -> str | None:
    """The synset whose longest lemma occurs in the query as whole words (None: nothing matches)."""
    nq = _norm(q)
    best: tuple[int, str] | None = None
    for wnid, (_root, lemmas, _spec) in SYNSETS.items():
        for lemma in lemmas:
            nl = _norm(lemma)
            if nl in nq and (best is None or len(nl) > best[0]):
                best = (len(nl), wnid)
    return best[1] if best else None


@dataclass
class FixtureWeb:
    """Handle of a running fixture web: `.url`, `.truth_path`, `.stop()`, request counters."""

    url: str
    truth_path: Path
    root: Path
    synsets: list[str]
    roots: dict[str, str]
    stats: Counter = field(default_factory=Counter)
    _server: WebThread | None = None

    @property
    def openverse_url(self) -> str:
        return f"{self.url}/v1"

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop(timeout=10)
            self._server = None

    def __enter__(self) -> FixtureWeb:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _result(base: str, corpus: Corpus, name: str) -> dict:
    """One result in Openverse's images-API wire format (v1 `/images/` search)."""
    item = corpus.items[name]
    rid = str(uuid.uuid5(uuid.NAMESPACE_URL, f"imnet-fixture/{corpus.seed}/{name}"))
    ext = name.rsplit(".", 1)[-1]
    return {
        "id": rid,
        "title": f"Photo {name.split('-')[0]}",
        "indexed_on": "2024-01-01T00:00:00Z",
        "foreign_landing_url": f"{base}/photo/{name}",
        "url": f"{base}/img/{name}",
        "creator": "fixture photographer",
        "creator_url": f"{base}/people/fixture",
        "license": "by",
        "license_version": "4.0",
        "license_url": "https://creativecommons.org/licenses/by/4.0/",
        "provider": "fixture",
        "source": "fixture",
        "category": "photograph",
        "genres": None,
        "filesize": None,
        "filetype": "png" if ext == "png" else "jpg",
        "tags": [],
        "alt_files": None,
        "attribution": f'"Photo {name}" by fixture photographer is licensed under CC BY 4.0.',
        "fields_matched": ["title"],
        "mature": False,
        "height": item.height or None,
        "width": item.width or None,
        "thumbnail": f"{base}/v1/images/{rid}/thumb/",
        "detail_url": f"{base}/v1/images/{rid}/",
        "related_url": f"{base}/v1/images/{rid}/related/",
        "unstable__sensitivity": [],
    }


def _make_app(web: FixtureWeb, corpus: Corpus, corpus_dir: Path) -> aw.Application:
    from aiohttp import web as aw

    async def search(request: aw.Request) -> aw.Response:
        web.stats["search_requests"] += 1
        q = request.query.get("q", "").strip()
        try:
            page = int(request.query.get("page", "1"))
            page_size = int(request.query.get("page_size", str(DEFAULT_PAGE_SIZE)))
        except ValueError:
            return aw.json_response({"detail": "page and page_size must be integers"}, status=400)
        if not q:
            return aw.json_response({"detail": "q is required"}, status=400)
        if page < 1 or not 1 <= page_size <= MAX_PAGE_SIZE:
            return aw.json_response({"detail": "Invalid page or page_size"}, status=400)
        wnid = match_synset(q)
        names = corpus.results[wnid] if wnid else corpus.noise
        page_count = max(1, math.ceil(len(names) / page_size))
        if page > page_count:
            return aw.json_response({"detail": "Invalid page."}, status=400)
        base = f"{request.scheme}://{request.host}"
        chunk = names[(page - 1) * page_size : page * page_size]
        return aw.json_response(
            {
                "result_count": len(names),
                "page_count": page_count,
                "page_size": page_size,
                "page": page,
                "results": [_result(base, corpus, n) for n in chunk],
                "warnings": [],
            }
        )

    async def image(request: aw.Request) -> aw.StreamResponse:
        name = request.match_info["name"]
        item = corpus.items.get(name)
        web.stats["image_requests"] += 1
        if item is None or item.file is None:
            web.stats["image_404"] += 1
            return aw.Response(status=404, text="not found")
        body = (corpus_dir / item.file).read_bytes()
        return aw.Response(body=body, status=item.status, content_type=item.content_type)

    async def landing(request: aw.Request) -> aw.Response:
        name = request.match_info["name"]
        return aw.Response(
            text=f"<html><body><img src='/img/{name}'></body></html>", content_type="text/html"
        )

    async def robots(_request: aw.Request) -> aw.Response:
        return aw.Response(text="User-agent: *\nAllow: /\n", content_type="text/plain")

    app = aw.Application()
    app.router.add_get("/v1/images/", search)
    app.router.add_get("/v1/images", search)
    app.router.add_get("/img/{name}", image)
    app.router.add_get("/photo/{name}", landing)
    app.router.add_get("/robots.txt", robots)
    return app


def start_fixture_web(
    root_dir: str | Path, seed: int = 0, scale: int = 1, port: int | None = None
) -> FixtureWeb:
    """Build (or reuse) the corpus under root_dir, write truth.json, serve it on 127.0.0.1.

    The port is remembered in root_dir/port so a rerun serves the same URLs (candidates already in
    the database keep working after a restart); a busy port falls back to a free one.
    """
    root = Path(root_dir)
    root.mkdir(parents=True, exist_ok=True)
    corpus = load_or_build(root, seed, scale)
    truth_path = root / "truth.json"
    truth = {
        "images": truth_map(root / "corpus", corpus),
        "synsets": {w: {"root": v[0], "lemmas": list(v[1])} for w, v in SYNSETS.items()},
        "roots": ROOTS,
    }
    tmp = truth_path.with_suffix(".tmp")
    tmp.write_text(json.dumps(truth, indent=0, sort_keys=True))
    tmp.replace(truth_path)

    port_file = root / "port"
    wanted = port if port is not None else (int(port_file.read_text()) if port_file.exists() else 0)
    web = FixtureWeb(
        url="", truth_path=truth_path, root=root, synsets=list(SYNSETS), roots=dict(ROOTS)
    )
    # A busy remembered port falls back to any free one.
    server = start_web_thread(
        _make_app(web, corpus, root / "corpus"),
        "127.0.0.1",
        [wanted, 0] if wanted else [0],
        name="imnet-fixture-web",
        reuse_address=True,
        shutdown_timeout=2.0,
    )
    port_file.write_text(str(server.port))
    web.url, web._server = server.url, server
    return web


def corpus_summary(root_dir: str | Path) -> dict[str, int]:
    """Counts of served URLs by kind, and of all search results by how they relate to the query."""
    data = json.loads((Path(root_dir) / "corpus.json").read_text())
    kinds = Counter(v["kind"] for v in data["items"].values())
    results: Counter = Counter()
    for wnid, names in data["results"].items():
        for n in names:
            item = data["items"][n]
            t = item["truth"]
            if item["kind"].startswith("broken"):
                results["broken"] += 1
            elif t == wnid:
                results["right" if item["kind"] == "true" else f"right_{item['kind']}"] += 1
            elif t is None:
                results["unrelated_photo"] += 1
            elif SYNSETS[t][0] == SYNSETS[wnid][0]:
                results["related_synset"] += 1
            else:
                results["other_root_synset"] += 1
    return {
        "urls": len(data["items"]),
        **dict(sorted(kinds.items())),
        "search_results": sum(results.values()),
        **{f"results_{k}": v for k, v in sorted(results.items())},
    }
