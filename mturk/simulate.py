"""Simulated workers: bots that do HITs through the worker site's HTTP pages, like a browser would."""

from __future__ import annotations

import html
import json
import random
import re
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from html.parser import HTMLParser
from http.cookiejar import CookieJar
from pathlib import Path
from typing import Any
from urllib.error import HTTPError
from urllib.parse import parse_qs, urlencode, urljoin, urlsplit
from urllib.request import (
    HTTPCookieProcessor,
    HTTPRedirectHandler,
    ProxyHandler,
    Request,
    build_opener,
)

# Accuracy per kind; "random" ticks half at random, "yes" ticks everything.
KINDS = {"good": 0.9, "mediocre": 0.7, "random": None, "yes": None}
DEFAULT_MIX = {"good": 0.70, "mediocre": 0.20, "random": 0.06, "yes": 0.04}
_IFRAME_RE = re.compile(r'<iframe[^>]*\bid="task"[^>]*\bsrc="([^"]+)"')


def parse_mix(text: str | None) -> dict[str, float]:
    """ "good=0.7,mediocre=0.2,random=0.06,yes=0.04" -> shares (normalised to sum 1)."""
    if not text:
        return dict(DEFAULT_MIX)
    mix: dict[str, float] = {}
    for part in text.split(","):
        k, sep, v = part.partition("=")
        k = k.strip()
        if not sep or k not in KINDS:
            raise ValueError(f"bad mix entry {part!r}: use {','.join(KINDS)} with =share")
        mix[k] = float(v)
        if mix[k] < 0:
            raise ValueError(f"negative share in {part!r}")
    total = sum(mix.values())
    if total <= 0:
        raise ValueError("worker mix sums to zero")
    return {k: v / total for k, v in mix.items()}


def allot(n: int, mix: dict[str, float]) -> list[str]:
    """Deterministic kinds for n workers by largest remainder."""
    raw = {k: n * v for k, v in mix.items()}
    counts = {k: int(v) for k, v in raw.items()}
    for k in sorted(raw, key=lambda k: raw[k] - counts[k], reverse=True)[
        : n - sum(counts.values())
    ]:
        counts[k] += 1
    return [k for k in KINDS if k in counts for _ in range(counts[k])]


def load_truth(path: str | Path) -> dict[str, str | None]:
    data = json.loads(Path(path).read_text())
    images = data.get("images") if isinstance(data, dict) else None
    if not isinstance(images, dict):
        raise ValueError(f'{path}: expected {{"images": {{sha256: wnid | null}}}}')
    return images


class _Form(HTMLParser):
    """Tiles (data-sha256 + checkbox) and hidden inputs of a task document."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.wnid = ""
        self.tiles: list[tuple[str, str]] = []
        self.hidden: dict[str, str] = {}
        self._sha: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        d = {k: v or "" for k, v in attrs}
        if "data-wnid" in d:
            self.wnid = d["data-wnid"]
        if "data-sha256" in d:
            self._sha = d["data-sha256"]
        if tag == "input" and d.get("type") == "hidden" and d.get("name"):
            self.hidden[d["name"]] = d.get("value", "")
        if tag == "input" and d.get("type") == "checkbox" and self._sha is not None:
            self.tiles.append((self._sha, d.get("name", "")))
            self._sha = None


@dataclass
class BotStats:
    worker_id: str
    kind: str
    submitted: int = 0
    conflicts: int = 0
    refused: Counter = field(default_factory=Counter)
    assignment_ids: list[str] = field(default_factory=list)


def answer(kind: str, truth: bool, rng: random.Random) -> bool:
    if kind == "yes":
        return True
    if kind == "random":
        return rng.random() < 0.5
    return truth if rng.random() < (KINDS[kind] or 0.5) else not truth


class Http:
    """A browser-like HTTP client on the standard library: cookies kept, redirects not followed,
    proxies from the environment ignored (loopback only)."""

    def __init__(self, timeout: float = 30.0) -> None:
        self.timeout = timeout
        self._opener = build_opener(
            ProxyHandler({}), HTTPCookieProcessor(CookieJar()), _NoRedirect()
        )

    def request(
        self,
        method: str,
        url: str,
        data: dict[str, str] | bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, Any, str]:
        """(status, headers, text); 4xx/5xx and 3xx answers are returned, not raised."""
        body = urlencode(data).encode() if isinstance(data, dict) else data
        hdrs = dict(headers or {})
        if isinstance(data, dict):
            hdrs.setdefault("Content-Type", "application/x-www-form-urlencoded")
        req = Request(url, data=body, headers=hdrs, method=method)
        try:
            with self._opener.open(req, timeout=self.timeout) as r:
                return r.status, r.headers, r.read().decode("utf-8", "replace")
        except HTTPError as e:
            with e:
                return e.code, e.headers, e.read().decode("utf-8", "replace")

    def get(self, url: str, **kw: Any) -> tuple[int, Any, str]:
        return self.request("GET", url, **kw)

    def post(self, url: str, **kw: Any) -> tuple[int, Any, str]:
        return self.request("POST", url, **kw)


class _NoRedirect(HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kw: Any) -> None:
        return None  # the caller reads Location itself, as the bots' accept step needs


def _bot(
    base: str,
    stats: BotStats,
    truth: dict[str, str | None],
    seed: int,
    deadline: float,
    stop: threading.Event,
    budget: list[int],
    lock: threading.Lock,
) -> None:
    rng = random.Random(f"{seed}:{stats.worker_id}")
    http = Http()
    status, _, text = http.post(f"{base}/worker/signin", data={"worker_id": stats.worker_id})
    if status >= 400:
        raise OSError(f"sign-in refused ({status}): {text[:200]}")
    want_json = {"Accept": "application/json"}
    empty_polls = 0
    while time.time() < deadline and not stop.is_set():
        _, _, text = http.get(f"{base}/worker/hits?" + urlencode({"format": "json", "limit": 50}))
        hits = json.loads(text)["hits"]
        if not hits:
            # Other bots may still return or abandon work; look twice more, then stop.
            empty_polls += 1
            if empty_polls > 2:
                return
            continue
        empty_polls = 0
        hit = rng.choice(hits)
        status, headers, _ = http.post(
            f"{base}/worker/hits/{hit['hit_id']}/accept", data=b"", headers=want_json
        )
        if status != 303:
            stats.conflicts += 1
            continue
        task = open_task(http, base, headers["Location"], stats)
        if task is None:
            continue
        form, fields, q = task
        for sha, name in form.tiles:
            if answer(stats.kind, truth.get(sha) == form.wnid and form.wnid != "", rng):
                fields[name] = "yes"
        with lock:
            if budget[0] <= 0:
                stop.set()
                return
            budget[0] -= 1
        status, _, _ = http.post(
            q["turkSubmitTo"][0].rstrip("/") + "/mturk/externalSubmit",
            data=fields,
            headers=want_json,
        )
        if status == 200:
            stats.submitted += 1
            stats.assignment_ids.append(fields["assignmentId"])
        else:
            stats.refused[f"submit_{status}"] += 1


def run_workers(
    base_url: str,
    truth: dict[str, str | None] | str | Path,
    n_workers: int = 10,
    mix: dict[str, float] | str | None = None,
    seed: int = 0,
    max_seconds: float = 300.0,
    max_assignments: int | None = None,
) -> dict[str, Any]:
    """Run n_workers bots concurrently until no HIT is left, time is up or the budget is used."""
    if not isinstance(truth, dict):
        truth = load_truth(truth)
    shares = (
        parse_mix(mix)
        if not isinstance(mix, dict)
        else parse_mix(",".join(f"{k}={v}" for k, v in mix.items()))
    )
    kinds = allot(n_workers, shares)
    bots = [BotStats(worker_id=f"SIM{k.upper()}{i:04d}", kind=k) for i, k in enumerate(kinds)]
    base = base_url.rstrip("/")
    start = time.time()
    deadline = start + max_seconds
    stop = threading.Event()
    budget = [max_assignments if max_assignments is not None else 1 << 62]
    lock = threading.Lock()
    errors: list[str] = []
    with ThreadPoolExecutor(max_workers=max(1, n_workers), thread_name_prefix="sim") as pool:
        futs = [pool.submit(_bot, base, b, truth, seed, deadline, stop, budget, lock) for b in bots]
        for f in futs:
            try:
                f.result()
            except Exception as e:  # one bot's failure is reported, not fatal to the others
                errors.append(f"{type(e).__name__}: {e}")
    report = crowd_report(bots, kinds, errors, time.time() - start)
    report["timed_out"] = time.time() >= deadline
    report["assignment_ids"] = [a for b in bots for a in b.assignment_ids]
    return report


def open_task(
    http: Http, base: str, location: str, stats: BotStats
) -> tuple[_Form, dict[str, str], dict[str, list[str]]] | None:
    """The accepted assignment's task: its form, the hidden fields to send back, and the
    iframe's query (turkSubmitTo); None (counted as refused) when the page is not there."""
    status, _, page = http.get(urljoin(base, location))
    m = _IFRAME_RE.search(page)
    if status != 200 or not m:
        stats.refused[f"assignment_page_{status}"] += 1
        return None
    src = html.unescape(m.group(1))
    q = parse_qs(urlsplit(src).query)
    _, _, doc = http.get(urljoin(base, src))
    form = _Form()
    form.feed(doc)
    fields: dict[str, str] = dict(form.hidden)
    fields["assignmentId"] = q["assignmentId"][0]
    return form, fields, q


def crowd_report(
    bots: list[BotStats], kinds: list[str], errors: list[str], elapsed: float
) -> dict[str, Any]:
    """What a simulated crowd did: submissions, conflicts, refusals by reason, per worker."""
    submitted = sum(b.submitted for b in bots)
    refused: Counter = Counter()
    for b in bots:
        refused.update(b.refused)
    return {
        "workers": len(bots),
        "kinds": dict(Counter(kinds)),
        "submitted": submitted,
        "conflicts": sum(b.conflicts for b in bots),
        "refused": dict(refused),
        "errors": errors,
        "seconds": round(elapsed, 3),
        "assignments_per_s": round(submitted / elapsed, 2) if elapsed > 0 else 0.0,
        "per_worker": {b.worker_id: {"kind": b.kind, "submitted": b.submitted} for b in bots},
    }
