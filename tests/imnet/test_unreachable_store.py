"""An S3 blob store that does not answer stops curate and export at once, with one line.

Before, curate retried every image (four tries of 60 s each against a hung endpoint, 3 s against
a refused one) until 20 had failed in a row: a minute for a refused port, most of an hour for a
hung one. Now the stage asks the endpoint once (one HEAD of the bucket, short timeouts) before it
starts a worker, and a worker that finds the store gone mid-run stops the scan.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from curation.filters import Result, _apply, _new_report
from tests._servers import free_port
from tests.dbrows import sqlite_with_candidates
from tests.imnet.test_hostile_cli import quiet_env, run, verdict


@pytest.fixture
def hung_port() -> Iterator[int]:
    """A loopback port that accepts connections and never answers."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(64)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        srv.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(srv.accept()[0])
            except OSError:
                continue

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    yield srv.getsockname()[1]
    stop.set()
    t.join()
    for c in held:
        c.close()
    srv.close()


@pytest.mark.parametrize("kind", ["refused", pytest.param("hung", marks=pytest.mark.slow)])
def test_curate_stops_before_any_worker_when_s3_does_not_answer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str, request: pytest.FixtureRequest
) -> None:
    db = sqlite_with_candidates(tmp_path, 6)
    port = free_port() if kind == "refused" else request.getfixturevalue("hung_port")
    with quiet_env(tmp_path, monkeypatch):
        monkeypatch.setenv("IMNET_S3_ENDPOINT_URL", f"http://127.0.0.1:{port}")
        monkeypatch.setenv("IMNET_S3_ACCESS_KEY", "k")
        monkeypatch.setenv("IMNET_S3_SECRET_KEY", "s")
        argv = ["--database-url", db, "--blob-url", "s3://bucket/prefix", "curate"]
        rc, out, err = run(argv)
    assert verdict(argv, rc, out, err, ok_codes=(2,)) == ""
    # The preflight's HEAD of the bucket failed, not an image's GET: no worker ran.
    assert "unusable" in err and f'127.0.0.1:{port}/bucket"' in err, err


def test_a_store_gone_mid_scan_stops_it_at_the_first_image() -> None:
    report = _new_report()
    ok = Result("a" * 64)
    gone = Result("b" * 64, error="blob store: unusable", store_error=True, store_down=True)
    with pytest.raises(RuntimeError, match="unreachable"):
        _apply(None, [ok, gone], report)  # type: ignore[arg-type]
    assert report["scanned"] == 2
