"""bench/harvest.py's loopback web: N Flickr-like JPEGs, 5% bad responses, added latency."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path

BAD_KINDS = ("404", "500", "truncated", "html", "gif1x1")


def base_images(count: int = 48) -> list[bytes]:
    """Real photos (scikit-image, scikit-learn samples) at Flickr sizes, 50-200 KB each."""
    import numpy as np
    from PIL import Image

    photos = []
    from skimage import data

    for name in (
        "astronaut",
        "chelsea",
        "coffee",
        "rocket",
        "hubble_deep_field",
        "immunohistochemistry",
        "motorcycle_left",
        "retina",
    ):
        try:
            photos.append(Image.fromarray(getattr(data, name)()).convert("RGB"))
        except Exception:  # a sample that needs a download is skipped
            continue
    try:
        from sklearn.datasets import load_sample_images

        photos += [Image.fromarray(a) for a in load_sample_images().images]
    except Exception:
        pass  # scikit-learn's two sample photos are optional; the others suffice
    rng = np.random.default_rng(0)
    out: list[bytes] = []
    long_sides = (500, 640, 800, 1024)
    for attempt in range(count * 20):  # bounded: some photo/size pairs never land in range
        if len(out) >= count:
            break
        im = photos[attempt % len(photos)]
        w, h = im.size
        # A random crop keeps the content real but varies it.
        cw, ch = int(w * rng.uniform(0.6, 1.0)), int(h * rng.uniform(0.6, 1.0))
        x, y = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
        crop = im.crop((x, y, x + cw, y + ch))
        side = long_sides[(attempt // len(photos)) % len(long_sides)]
        scale = side / max(cw, ch)
        crop = crop.resize((max(32, int(cw * scale)), max(32, int(ch * scale))), Image.BILINEAR)
        for q in (90, 80, 70, 55):
            buf = io.BytesIO()
            crop.save(buf, "JPEG", quality=q)
            if buf.tell() <= 200_000:
                break
        if 50_000 <= buf.tell() <= 200_000:
            out.append(buf.getvalue())
    if len(out) < count // 2:
        raise SystemExit(f"only {len(out)} base photos in the 50-200 KB range")
    return out


def tagged(jpeg: bytes, i: int) -> bytes:
    """Insert a JPEG comment naming i: every URL has distinct content, same decode cost."""
    text = f"imnet bench {i}".encode()
    return jpeg[:2] + b"\xff\xfe" + (len(text) + 2).to_bytes(2, "big") + text + jpeg[2:]


def kind_of(i: int) -> str:
    # Every 20th URL (5%) is bad, cycling through the bad kinds.
    return BAD_KINDS[(i // 20) % len(BAD_KINDS)] if i % 20 == 7 else "ok"


def serve(n: int, latency: float, port_file: str) -> None:
    """The loopback web (runs in its own process)."""
    from aiohttp import web
    from PIL import Image

    bases = base_images()
    gif = io.BytesIO()
    Image.new("P", (1, 1)).save(gif, "GIF")

    async def handle(request: web.Request) -> web.StreamResponse:
        await asyncio.sleep(latency)
        name = request.match_info["name"]
        if not name.endswith(".jpg") or not name[:-4].isdigit() or int(name[:-4]) >= n:
            return web.Response(status=404, text="not found")
        i = int(name[:-4])
        kind = kind_of(i)
        data = tagged(bases[i % len(bases)], i)
        if kind == "404":
            return web.Response(status=404, text="gone")
        if kind == "500":
            return web.Response(status=500, text="server error")
        if kind == "truncated":
            data = data[: len(data) // 3]
        if kind == "html":
            return web.Response(
                body=b"<!doctype html><html><body>Photo not found</body></html>",
                content_type="image/jpeg",
            )
        if kind == "gif1x1":
            return web.Response(body=gif.getvalue(), content_type="image/gif")
        return web.Response(body=data, content_type="image/jpeg")

    async def robots(_: web.Request) -> web.StreamResponse:
        await asyncio.sleep(latency)
        return web.Response(status=404)

    async def main() -> None:
        app = web.Application()
        app.router.add_get("/robots.txt", robots)
        app.router.add_get("/img/{name}", handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, backlog=1024)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        Path(port_file).write_text(str(port))
        await asyncio.Event().wait()

    asyncio.run(main())
