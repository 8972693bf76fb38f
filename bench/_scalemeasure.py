"""Measure one command of bench/scale.py: wall, CPU of its process tree, peak RSS, servers' CPU.

CPU comes from os.wait4 on the command (user+sys of it and every descendant it reaped, exact);
peak RSS is the largest sum of VmRSS over the live process tree, sampled every 0.2 s from /proc
(a tree of several crawl processes is summed), and never less than the largest VmHWM (a single
process's own peak) seen. Not ru_maxrss: Linux carries the forking parent's peak across exec, so
every command would report at least this bench's own size. Long-lived servers the command talks to (the
MTurk server, PostgreSQL, SeaweedFS) are charged separately: their tree CPU before and after.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path
from typing import Any

TICK = os.sysconf("SC_CLK_TCK")
SAMPLE_S = 0.2


def _stat(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name may hold spaces and parentheses; fields start after the last ')'.
    return raw[raw.rindex(")") + 2 :].split()


def _children_map() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        st = _stat(int(name))
        if st is not None:
            kids.setdefault(int(st[1]), []).append(int(name))
    return kids


def tree(pid: int, kids: dict[int, list[int]] | None = None) -> list[int]:
    """pid and all its live descendants."""
    kids = _children_map() if kids is None else kids
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(kids.get(p, []))
    return out


def tree_rss(pid: int) -> tuple[int, int]:
    """(sum of VmRSS over the tree, largest VmHWM of one process in it), bytes."""
    total = hwm = 0
    for p in tree(pid):
        try:
            fields = dict(
                ln.split(":", 1) for ln in Path(f"/proc/{p}/status").read_text().splitlines()
            )
            total += int(fields["VmRSS"].split()[0]) * 1024
            hwm = max(hwm, int(fields["VmHWM"].split()[0]) * 1024)
        except (OSError, KeyError, IndexError, ValueError):
            continue  # gone, or a zombie without memory
    return total, hwm


def tree_cpu(pid: int) -> float:
    """Seconds of user+sys of a live process, its live descendants and the children it reaped."""
    total = 0.0
    for i, p in enumerate(tree(pid)):
        st = _stat(p)
        if st is None:
            continue
        # Fields (after the name): 11 utime, 12 stime, 13 cutime, 14 cstime.
        total += int(st[11]) + int(st[12])
        if i == 0:
            total += int(st[13]) + int(st[14])
    return total / TICK


def run(
    argv: list[str],
    env: dict[str, str],
    log: Path,
    servers: dict[str, int] | None = None,
    timeout: float | None = None,
) -> dict[str, Any]:
    """Run argv to completion; its measurements, return code and the tail of its output."""
    servers = servers or {}
    before = {k: tree_cpu(p) for k, p in servers.items()}
    t0 = time.monotonic()
    with open(log, "wb") as fh:
        proc = subprocess.Popen(argv, env=env, stdout=fh, stderr=subprocess.STDOUT)
        peak = hwm = 0
        status, ru = None, None
        while status is None:
            pid, st, r = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                status, ru = st, r
                break
            rss, h = tree_rss(proc.pid)
            peak, hwm = max(peak, rss), max(hwm, h)
            if timeout is not None and time.monotonic() - t0 > timeout:
                proc.kill()
            time.sleep(SAMPLE_S)
        proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.monotonic() - t0
    text = log.read_text(errors="replace")
    return {
        "argv": argv[argv.index("imnet") + 1 :] if "imnet" in argv else argv,
        "rc": proc.returncode,
        "wall_s": round(wall, 3),
        "cpu_s": round(ru.ru_utime + ru.ru_stime, 3),
        "cpu_user_s": round(ru.ru_utime, 3),
        "cpu_sys_s": round(ru.ru_stime, 3),
        "rss_peak_mb": round(max(peak, hwm) / 2**20, 1),
        "rss_max_proc_mb": round(hwm / 2**20, 1),
        "server_cpu_s": {k: round(tree_cpu(p) - before[k], 3) for k, p in servers.items()},
        "output_tail": text[-1500:],
        "output": text if len(text) < 200_000 else text[-200_000:],
    }


def timed(fn, servers: dict[str, int] | None = None) -> tuple[Any, dict[str, Any]]:  # type: ignore[no-untyped-def]
    """Run fn in this process (a direct insert step); its wall and this process's CPU."""
    servers = servers or {}
    before = {k: tree_cpu(p) for k, p in servers.items()}
    t0, c0 = time.monotonic(), os.times()
    value = fn()
    c1 = os.times()
    cpu = (c1.user - c0.user) + (c1.system - c0.system)
    return value, {
        "rc": 0,
        "wall_s": round(time.monotonic() - t0, 3),
        "cpu_s": round(cpu, 3),
        "rss_peak_mb": None,
        "server_cpu_s": {k: round(tree_cpu(p) - before[k], 3) for k, p in servers.items()},
    }
