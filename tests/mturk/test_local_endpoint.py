"""publish/collect follow a running `imnet mturk serve` on the same data dir when no endpoint is set."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from imnet.core.settings import load_settings
from mturk import local_endpoint
from mturk.client import AWS_LIVE_URL, AWS_SANDBOX_URL, endpoint_url


def test_endpoint_follows_a_live_local_server(tmp_path: Path) -> None:
    s = load_settings(None, overrides={"data_dir": str(tmp_path)})
    assert endpoint_url(s) == AWS_SANDBOX_URL  # nothing recorded yet
    local_endpoint.record(tmp_path, "http://127.0.0.1:9999/")
    assert endpoint_url(s) == "http://127.0.0.1:9999"
    # an explicit setting wins, and --live never falls back to a local server
    assert endpoint_url(s.replace(mturk_endpoint_url="http://h:1")) == "http://h:1"
    assert endpoint_url(s.replace(mturk_live=True)) == AWS_LIVE_URL
    local_endpoint.forget(tmp_path)
    assert endpoint_url(s) == AWS_SANDBOX_URL


def test_a_dead_servers_record_is_ignored(tmp_path: Path) -> None:
    p = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True)
    dead = int(p.stdout)
    (tmp_path / local_endpoint.FILE).write_text(json.dumps({"url": "http://x:1", "pid": dead}))
    assert local_endpoint.running(tmp_path) is None
    (tmp_path / local_endpoint.FILE).write_text("not json")
    assert local_endpoint.running(tmp_path) is None
