"""A fixture web at scale for bench/scale.py: a cached pack of generated JPEGs served on loopback.

URL i (0-based) belongs to class i // per_class and its kind depends only on (seed, i), so every
size is a prefix of the next and one pack serves them all. About 9% of URLs are broken (404,
truncated JPEG, HTML sent as image/jpeg, 16x16 too small for the crawl, 48x36 too small for
curation), 5% are exact duplicates and 5% near duplicates (resized, re-encoded) of an earlier
image of the same class, 25% show something else (truth None) and the rest show their class.
Every image's pixels are distinct (a random low-frequency pattern with noise), so perceptual
hashes only collide where the fixture means them to.

    python -m bench._scaleweb serve --pack DIR --n N --hosts 8   # prints the port, then serves
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import mmap
import os
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

WIDTH, HEIGHT = 256, 192  # every good image; the projection scales decode work by pixels
BROKEN = ("404", "truncated", "html", "tiny", "small")
CHUNK = 2000


def _raw_kind(seed: int, i: int) -> str:
    r = int.from_bytes(hashlib.blake2b(f"{seed}:{i}".encode(), digest_size=4).digest(), "big") % 100
    if r < 9:
        return BROKEN[r % len(BROKEN)]
    if r < 19:
        return "dup" if r < 14 else "neardup"
    return "wrong" if r < 44 else "true"


def source_of(seed: int, i: int, per_class: int) -> int:
    """The URL whose content a dup/neardup copies: the nearest earlier good image of its class."""
    j = i - 1
    while j >= i - i % per_class:
        if _raw_kind(seed, j) in ("true", "wrong"):
            return j
        j -= 1
    return -1


def kind_of(seed: int, i: int, per_class: int) -> str:
    """true, wrong, dup, neardup or a broken kind; dups only where an earlier image of the class is."""
    kind = _raw_kind(seed, i)
    if kind in ("dup", "neardup") and source_of(seed, i, per_class) < 0:
        return "true"
    return kind


def _pattern(seed: int, i: int, w: int = WIDTH, h: int = HEIGHT):  # type: ignore[no-untyped-def]
    from PIL import Image

    rng = np.random.default_rng([seed, i])
    small = rng.integers(0, 256, size=(6, 8, 3), dtype=np.uint8)
    im = Image.fromarray(small).resize((w, h), Image.BICUBIC)
    arr = np.asarray(im, dtype=np.int16) + rng.integers(-12, 13, size=(h, w, 3), dtype=np.int16)
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))


def _jpeg(im, quality: int = 85) -> bytes:  # type: ignore[no-untyped-def]
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def body_of(seed: int, i: int, per_class: int) -> tuple[str, bytes]:
    """(kind, the bytes URL i serves); a 404 serves nothing."""
    from PIL import Image

    kind = kind_of(seed, i, per_class)
    if kind in ("true", "wrong"):
        return kind, _jpeg(_pattern(seed, i))
    if kind == "dup":
        return kind, body_of(seed, source_of(seed, i, per_class), per_class)[1]
    if kind == "neardup":
        src = _pattern(seed, source_of(seed, i, per_class))
        return kind, _jpeg(src.resize((WIDTH * 3 // 4, HEIGHT * 3 // 4), Image.BILINEAR), 70)
    if kind == "truncated":
        data = _jpeg(_pattern(seed, i))
        return kind, data[: len(data) // 2]
    if kind == "html":
        return kind, b"<html><body>This photo has moved.</body></html>"
    if kind == "tiny":
        return kind, _jpeg(_pattern(seed, i, 16, 16))
    if kind == "small":
        return kind, _jpeg(_pattern(seed, i, 48, 36))
    return kind, b""


def _chunk(args: tuple[int, int, int, int]) -> list[tuple[str, bytes]]:
    seed, per_class, lo, hi = args
    return [body_of(seed, i, per_class) for i in range(lo, hi)]


class Pack:
    """URL bodies 0..n-1 in one file plus an offsets index; grown on demand, reused across runs."""

    def __init__(self, root: Path, seed: int, per_class: int) -> None:
        self.dir = Path(root) / f"seed{seed}-pc{per_class}-{WIDTH}x{HEIGHT}"
        self.seed, self.per_class = seed, per_class
        self.dir.mkdir(parents=True, exist_ok=True)
        self.data, self.meta = self.dir / "bodies.bin", self.dir / "index.json"

    def index(self) -> dict[str, list]:
        if self.meta.exists():
            return json.loads(self.meta.read_text())
        return {"offsets": [0], "kinds": [], "sha256": []}

    def ensure(self, n: int, workers: int = 2, out=print) -> dict[str, list]:  # type: ignore[no-untyped-def]
        idx = self.index()
        have = len(idx["kinds"])
        if have >= n:
            return idx
        out(f"fixture pack: generating URLs {have}..{n - 1} in {self.dir} (cached for later runs)")
        jobs = [(self.seed, self.per_class, lo, min(n, lo + CHUNK)) for lo in range(have, n, CHUNK)]
        with open(self.data, "r+b" if self.data.exists() else "wb") as f:
            f.truncate(idx["offsets"][-1])
            f.seek(idx["offsets"][-1])
            with ProcessPoolExecutor(max(1, workers)) as pool:
                for part in pool.map(_chunk, jobs):
                    for kind, body in part:
                        f.write(body)
                        idx["offsets"].append(idx["offsets"][-1] + len(body))
                        idx["kinds"].append(kind)
                        idx["sha256"].append(hashlib.sha256(body).hexdigest() if body else "")
        tmp = self.meta.with_suffix(".tmp")
        tmp.write_text(json.dumps(idx))
        tmp.replace(self.meta)
        return idx


def truth_for(idx: dict[str, list], wnids: list[str], n: int, per_class: int, seed: int) -> dict:
    """{"images": {sha256: wnid | None}} for the simulated crowd and the vote fill."""
    images: dict[str, str | None] = {}
    for i in range(n):
        kind, sha = idx["kinds"][i], idx["sha256"][i]
        if kind in BROKEN or not sha:
            continue
        if kind in ("dup", "neardup"):
            kind = idx["kinds"][source_of(seed, i, per_class)]
        images[sha] = wnids[i // per_class] if kind == "true" else None
    return {"images": images}


def url_lines(n: int, per_class: int, wnids: list[str], port: int, hosts: int) -> list[str]:
    """wnid<TAB>url lines; classes spread over `hosts` loopback addresses, as over many sites."""
    return [
        f"{wnids[i // per_class]}\thttp://127.0.0.{1 + (i // per_class) % hosts}:{port}/img/{i}.jpg"
        for i in range(n)
    ]


def counts(idx: dict[str, list], n: int) -> dict[str, int]:
    out: dict[str, int] = {}
    for k in idx["kinds"][:n]:
        out[k] = out.get(k, 0) + 1
    return out


def serve(pack_dir: Path, n: int, hosts: int, port: int) -> None:
    """Serve /img/<i>.jpg and /robots.txt on 127.0.0.1..127.0.0.<hosts>; print the port."""
    import asyncio

    from aiohttp import web

    idx = json.loads((pack_dir / "index.json").read_text())
    offsets, kinds = idx["offsets"], idx["kinds"]
    f = open(pack_dir / "bodies.bin", "rb")
    mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)

    async def image(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        i = int(name[:-4]) if name.endswith(".jpg") and name[:-4].isdigit() else -1
        if not 0 <= i < min(n, len(kinds)) or kinds[i] == "404":
            return web.Response(status=404, text="not found")
        return web.Response(body=mm[offsets[i] : offsets[i + 1]], content_type="image/jpeg")

    async def robots(_r: web.Request) -> web.Response:
        return web.Response(text="User-agent: *\nAllow: /\n")

    async def main() -> None:
        app = web.Application()
        app.router.add_get("/img/{name}", image)
        app.router.add_get("/robots.txt", robots)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        p = port
        for h in range(hosts):
            site = web.TCPSite(runner, f"127.0.0.{1 + h}", p, reuse_address=True)
            await site.start()
            p = p or runner.addresses[0][1]
        print(p, flush=True)
        parent = os.getppid()
        while os.getppid() == parent:  # the bench died without stopping us: stop too
            await asyncio.sleep(1.0)

    asyncio.run(main())


def _main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("cmd", choices=["serve"])
    ap.add_argument("--pack", required=True)
    ap.add_argument("--n", type=int, required=True)
    ap.add_argument("--hosts", type=int, default=8)
    ap.add_argument("--port", type=int, default=0)
    a = ap.parse_args()
    serve(Path(a.pack), a.n, a.hosts, a.port)
    return 0


if __name__ == "__main__":
    sys.exit(_main())
