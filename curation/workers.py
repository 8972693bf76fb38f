"""A process pool for CPU-bound per-image work, run inline when the job is too small to pay off."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from typing import Any


class Mapper:
    """`map(fn, tasks)` in order, in spawned worker processes (nothing of this process, such as a
    database connection or a thread, is inherited) or inline below `inline_below` tasks."""

    def __init__(
        self,
        settings: Any,
        init: Callable[[Any], None],
        total: int,
        inline_below: int = 48,
        workers: int | None = None,
    ) -> None:
        self.settings = settings
        self.init = init
        self.workers = workers or settings.curation_workers or os.cpu_count() or 1
        self.inline = total < inline_below or self.workers == 1
        self.pool: Any = None

    def __enter__(self) -> Mapper:
        if self.inline:
            self.init(self.settings)
        else:
            from concurrent.futures import ProcessPoolExecutor
            from multiprocessing import get_context

            self.pool = ProcessPoolExecutor(
                self.workers,
                mp_context=get_context("spawn"),
                initializer=self.init,
                initargs=(self.settings,),
            )
        return self

    def map(
        self, fn: Callable[[Any], Any], tasks: Iterable[Any], chunksize: int = 4
    ) -> Iterator[Any]:
        if self.pool is None:
            return map(fn, tasks)
        return self.pool.map(fn, tasks, chunksize=chunksize)

    def __exit__(self, *exc: object) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
