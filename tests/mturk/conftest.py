"""Fixtures for the mturk tests: a seeded database, the self-hosted server on loopback, boto3."""

from __future__ import annotations

import io
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from imnet.core.app import App
from imnet.core.settings import Settings


def seed(
    app: App,
    wnid: str,
    n: int,
    *,
    gloss: str = "a test concept",
    frac_yes: float = 0.5,
    rng_seed: int = 0,
    lemmas: list[str] | None = None,
) -> dict[str, Any]:
    """A synset with n fetched candidates (tiny real PNGs in the blob store); returns the truth."""
    from PIL import Image as PILImage

    from db.models import Candidate, Image, Synset

    rng = random.Random(f"{wnid}:{rng_seed}")
    truth: dict[str, str | None] = {}
    ids: list[int] = []
    with app.Session() as s:
        if s.get(Synset, wnid) is None:
            s.add(Synset(wnid=wnid, lemmas=lemmas or [f"thing_{wnid}"], gloss=gloss))
            s.flush()
        for i in range(n):
            im = PILImage.new("RGB", (8, 8), (rng.randrange(256), rng.randrange(256), i % 256))
            buf = io.BytesIO()
            im.save(buf, "PNG")
            data = buf.getvalue() + f"{wnid}:{rng_seed}:{i}".encode()
            sha = app.blobs.put(data)
            if s.get(Image, sha) is None:
                s.add(
                    Image(
                        sha256=sha, blob_key=sha, width=8, height=8, format="PNG", bytes=len(data)
                    )
                )
                s.flush()
            c = Candidate(
                wnid=wnid,
                url=f"http://127.0.0.1:9/{wnid}/{rng_seed}/{i}.png",
                status="fetched",
                image_sha256=sha,
                title=f"image {i}",
            )
            s.add(c)
            s.flush()
            ids.append(c.id)
            truth[sha] = wnid if rng.random() < frac_yes else None
        s.commit()
    return {"ids": ids, "truth": truth}


def add_gold(app: App, wnid: str, ids: list[int], truth: dict[str, str | None]) -> None:
    """Hand labels for some candidates (the demo seeds these from its fixture's ground truth)."""
    from db.models import Candidate, Label

    with app.Session() as s:
        for cid in ids:
            c = s.get(Candidate, cid)
            assert c is not None
            ok = truth[c.image_sha256] == wnid
            s.add(
                Label(
                    candidate_id=cid,
                    wnid=wnid,
                    decision="accept" if ok else "reject",
                    decided_by="manual",
                    overridden=True,
                    posterior=1.0 if ok else 0.0,
                )
            )
        s.commit()


@pytest.fixture
def sqlite_app(tmp_path: Path) -> Iterator[App]:
    st = Settings(data_dir=str(tmp_path / "data"), mturk_images_per_hit=6, mturk_gold_per_hit=2)
    a = App(st)
    yield a
    a.close()


@pytest.fixture
def any_app(tmp_path: Path, db_url: str) -> Iterator[App]:
    """Runs on SQLite and on PostgreSQL."""
    st = Settings(
        data_dir=str(tmp_path / "data"),
        database_url=db_url,
        mturk_images_per_hit=6,
        mturk_gold_per_hit=2,
    )
    a = App(st)
    yield a
    a.close()


def serve(app: App) -> Any:
    """Start the server for `app`, then point the app's settings (endpoint) at it."""
    from mturk.server import start_in_thread

    handle = start_in_thread(app)
    app.settings = app.settings.replace(mturk_endpoint_url=handle.url)
    return handle


def client_for(app: App, **changes: Any) -> Any:
    from mturk.client import make_client

    return make_client(app.settings.replace(**changes) if changes else app.settings)
