"""Consensus in several processes (on one or many machines) sharing one database, split by synset."""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from typing import TYPE_CHECKING, Any

from curation.consensus.decide import empty_totals

if TYPE_CHECKING:
    from curation.consensus.decide import AskedVotes
    from imnet.core.settings import Settings


def parse_shard(text: str) -> tuple[int, int]:
    """'i/n' (0 <= i < n) -> (i, n); ValueError with a one-line message otherwise."""
    try:
        i_text, n_text = text.split("/")
        i, n = int(i_text), int(n_text)
    except ValueError:
        raise ValueError(f"--shard wants i/n, e.g. 0/4; got {text!r}") from None
    if n < 1 or not 0 <= i < n:
        raise ValueError(f"--shard {text}: need 0 <= i < n")
    return i, n


def sub_shards(shard: tuple[int, int], processes: int) -> list[tuple[int, int]]:
    """Split hash partition (i, n) into `processes` partitions of the same hash: a synset with
    hash h is in (i + n * p, n * processes) iff h % n == i and (h // n) % processes == p."""
    i, n = shard
    return [(i + n * p, n * processes) for p in range(processes)]


def _run_one(
    settings: Settings,
    algorithm: str,
    wnids: list[str] | None,
    shard: tuple[int, int],
    asked: AskedVotes | None,
    pooled: list[set[str]] | None = None,
) -> dict[str, Any]:
    from curation.consensus.decide import run_consensus
    from imnet.core.app import App

    app = App(settings)
    try:
        with app.Session() as session:
            return run_consensus(
                session, algorithm, wnids, settings, shard=shard, asked=asked, pooled=pooled
            )
    finally:
        app.close()


def _pooled(settings: Settings, algorithm: str) -> list[set[str]] | None:
    """The crowd-wide dependence pass, once for all shards (each would find the same groups)."""
    if algorithm != "robust":
        return None
    from curation.consensus.pooled import pooled_groups
    from imnet.core.app import App

    app = App(settings)
    try:
        with app.Session() as session:
            return pooled_groups(session, settings)
    finally:
        app.close()


def _fresh_verdicts(settings: Settings) -> None:
    """Every synset in several processes is a complete run split up: each process is partial
    (it replaces only its synsets' verdict rows and starts from the others'), so the parent
    drops every row first, as one process deciding every synset would. With the crowd-wide
    pass off, a complete run keeps starting from the stored groups, and so do these."""
    if settings.consensus_dependence_votes <= 0:
        return
    from curation.consensus.crowd import clear_verdicts
    from db.tx import retry_busy, write_session
    from imnet.core.app import App

    app = App(settings)
    try:

        def clear() -> None:
            with write_session(app.engine) as session:
                clear_verdicts(session)
                session.commit()

        retry_busy(clear)
    finally:
        app.close()


def merge_reports(algorithm: str, reports: list[dict[str, Any]]) -> dict[str, Any]:
    """One report from the reports of disjoint shards (totals summed, synsets in wnid order)."""
    totals = empty_totals()
    needed: list[int] = []
    per: dict[str, Any] = {}
    for rep in reports:
        for k in totals:
            totals[k] += rep["totals"].get(k, 0)
        if rep["totals"].get("crowd_needed"):
            needed.append(rep["totals"]["crowd_needed"])
        per.update(rep["per_wnid"])
    totals["crowd_needed"] = max(needed) if needed else None
    return {"algorithm": algorithm, "per_wnid": dict(sorted(per.items())), "totals": totals}


def run_parallel(
    settings: Settings,
    algorithm: str,
    wnids: list[str] | None = None,
    processes: int = 2,
    shard: tuple[int, int] = (0, 1),
    asked: AskedVotes | None = None,
) -> dict[str, Any]:
    """`run_consensus` over shard `shard` in `processes` fresh processes (each opens its own
    connection); the labels are those one process writes, since no synset depends on another.
    `asked` (a module-level function, so that it pickles) goes to every `run_consensus`."""
    parts = sub_shards(shard, processes)
    if processes == 1:
        return merge_reports(algorithm, [_run_one(settings, algorithm, wnids, parts[0], asked)])
    # spawn, not fork: a forked child would share the parent's open database connections.
    ctx = multiprocessing.get_context("spawn")
    pooled = _pooled(settings, algorithm)
    if pooled is not None and wnids is None and shard == (0, 1):
        _fresh_verdicts(settings)
    with ProcessPoolExecutor(max_workers=processes, mp_context=ctx) as pool:
        futures = [
            pool.submit(_run_one, settings, algorithm, wnids, p, asked, pooled) for p in parts
        ]
        return merge_reports(algorithm, [f.result() for f in futures])
