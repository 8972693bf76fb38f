"""`imnet demo --serve-fixture`: the demo's fixture web alone, for walking the README's Tour offline."""

from __future__ import annotations

import json
import signal
import threading
from pathlib import Path

URLS_PER_SYNSET = 3


def write_url_list(root: Path, url: str) -> Path:
    """root/urls.tsv: a few true images per synset as wnid<TAB>url lines (for import-urls)."""
    corpus = json.loads((root / "corpus.json").read_text())
    lines = []
    for wnid, names in sorted(corpus["results"].items()):
        true = [n for n in names if corpus["items"][n]["kind"] == "true"]
        # a query string makes them URLs the search never returned (same bytes: duplicates)
        lines += [f"{wnid}\t{url}/img/{n}?from=list" for n in true[:URLS_PER_SYNSET]]
    path = root / "urls.tsv"
    path.write_text("".join(f"{ln}\n" for ln in lines))
    return path


def serve_fixture(workdir: Path, seed: int, scale: int, port: int | None) -> int:
    """Serve until SIGINT/SIGTERM; prints the settings that point imnet's sources at it."""
    from imnet.demo.fixtureweb import start_fixture_web

    root = workdir.resolve()
    web = start_fixture_web(root, seed=seed, scale=scale, port=port)
    done = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda *_: done.set())
    try:
        urls = write_url_list(root, web.url)
        print(
            f"fixture web {web.url}: search API {web.url}/v1/images/ "
            f"(set IMNET_SOURCE_OPENVERSE_URL to it, and IMNET_ALLOW_PRIVATE_HOSTS=true); "
            f"truth {web.truth_path}; URL list {urls}",
            flush=True,
        )
        # Serve until SIGTERM or Ctrl-C: a timed wait keeps the main thread interruptible.
        while not done.wait(3600):
            pass
    except KeyboardInterrupt:
        pass  # Ctrl-C is how a foreground server is meant to stop
    finally:
        signal.signal(signal.SIGTERM, previous)
        web.stop()
    return 0
