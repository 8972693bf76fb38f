"""Headless Chromium for tests: the binary, its flags, and starting / stopping a DevTools process.

Shared by the review-page tests (tests/curation/consensus/chromium.py) and the worker-site tests
(tests/mturk/_cdp.py); each keeps its own DevTools client on top of these.
"""

from __future__ import annotations

import re
import subprocess

CHROMIUM = "/usr/bin/chromium"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

_DEVTOOLS = re.compile(r"DevTools listening on (ws://\S+)")


def command(profile: str, *args: str) -> list[str]:
    """The Chromium command line with the shared flags and a throwaway profile directory."""
    return [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *args]


def launch(profile: str, *args: str) -> subprocess.Popen[str]:
    """Start Chromium on about:blank with DevTools on a free port (see `devtools_url`)."""
    return subprocess.Popen(
        command(profile, "--remote-debugging-port=0", *args, "about:blank"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def devtools_url(proc: subprocess.Popen[str], max_lines: int = 200) -> str:
    """The browser's DevTools websocket URL, read from Chromium's first lines of stderr."""
    assert proc.stderr is not None
    for _ in range(max_lines):  # bounded: Chromium prints the line within its first output
        line = proc.stderr.readline()
        if not line:  # end of output: Chromium is exiting
            break
        m = _DEVTOOLS.search(line)
        if m:
            return m.group(1)
    raise RuntimeError("chromium did not report its DevTools endpoint")


def stop(proc: subprocess.Popen[str]) -> None:
    """Terminate Chromium (kill it if it does not exit in 10 s) and close its stderr pipe."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
    if proc.stderr:
        proc.stderr.close()
