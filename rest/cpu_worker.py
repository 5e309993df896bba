"""A worker process for the CPU-heavy part of a request, so it never holds the event loop.

A migration parses and validates up to a megabyte of JSON and builds a CRDT document per
item: seconds of CPU for a full payload, which on the event loop stalled every socket and
request of the instance for as long. A thread does not help enough: it holds the GIL for
up to the interpreter's switch interval (5 ms) every time the event loop gives it up for a
system call, so the loop's latency grows with every I/O step of a request (a /healthz p99
of 25-90 ms beside one busy thread on a loaded 2-core machine, 13 ms beside a busy
process). So the work runs in one worker process, started on first use (from a
``forkserver``: never forked from this threaded process) and kept until the app stops.
One process: however many such requests arrive, they queue, first come first served, and
the machine keeps a core for everything else.

Functions run there must be importable module-level functions whose arguments and results
pickle cheaply (bytes, ids, small records): pickling happens in the executor's threads, but
a large object graph would still hold the GIL while it is rebuilt.
"""

from __future__ import annotations

import asyncio
import functools
import multiprocessing
import multiprocessing.connection
import os
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from types import TracebackType
from typing import Any, TypeVar

from aiohttp import web

from storage.errors import DomainError

T = TypeVar("T")
WORKER_NICENESS = 10  # added to the worker process's nice value


class WorkerUnavailable(DomainError):
    status = 503
    code = "worker_unavailable"


def _start_method() -> str:
    return "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"


def _ready() -> bool:
    return True


def _set_up_worker(niceness: int) -> None:
    # Below the event loop's process in the scheduler: when the machine is short of CPU, the
    # loop (and the database) go first and the batch work waits.
    os.nice(niceness)
    # The pool's workers wait on their queue forever: one whose server was killed (SIGKILL,
    # out of memory) would stay, and keep the forkserver alive with it. It goes with it.
    parent = multiprocessing.parent_process()
    if parent is not None:
        threading.Thread(target=_exit_with, args=(parent.sentinel,), name="parent-watch", daemon=True).start()


def _exit_with(sentinel: int) -> None:
    multiprocessing.connection.wait([sentinel])
    os._exit(1)


class CpuWorker:
    """One worker process for CPU-heavy request work:
    ``async with CpuWorker(preload=[...]) as worker: await worker.run(fn, ...)``.

    ``preload``: modules the process imports once, before it takes any work.
    """

    def __init__(self, *, preload: Sequence[str] = ()) -> None:
        self._preload = list(preload)
        self._pool: ProcessPoolExecutor | None = None
        self._starting: asyncio.Lock | None = None
        self._open = False
        self.calls: Counter[str] = Counter()  # work items run, by function name

    async def __aenter__(self) -> CpuWorker:
        self._open = True
        self._starting = asyncio.Lock()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._open = False
        pool, self._pool = self._pool, None
        if pool is not None:
            await asyncio.to_thread(pool.shutdown, wait=True, cancel_futures=True)

    def _new_pool(self) -> ProcessPoolExecutor:
        context = multiprocessing.get_context(_start_method())
        if self._preload and context.get_start_method() == "forkserver":
            context.set_forkserver_preload(self._preload)
        pool = ProcessPoolExecutor(
            max_workers=1, mp_context=context, initializer=_set_up_worker, initargs=(WORKER_NICENESS,)
        )
        pool.submit(_ready).result()  # start it here, in a thread: starting takes a while
        return pool

    async def _get_pool(self) -> ProcessPoolExecutor:
        if not self._open or self._starting is None:
            raise RuntimeError("CpuWorker is not started")
        async with self._starting:
            if self._pool is None:
                self._pool = await asyncio.to_thread(self._new_pool)
            return self._pool

    async def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``fn(*args, **kwargs)`` in the worker process (after the work queued before it)."""
        pool = await self._get_pool()
        call = functools.partial(fn, *args, **kwargs)
        try:
            result = await asyncio.get_running_loop().run_in_executor(pool, call)
        except BrokenProcessPool:  # the process died (killed, out of memory): a new one next time
            if self._pool is pool:
                self._pool = None
            await asyncio.to_thread(pool.shutdown, wait=False, cancel_futures=True)
            raise WorkerUnavailable("the server could not do this work right now; try again") from None
        self.calls[getattr(fn, "__name__", "?")] += 1
        return result


CPU_WORKER = web.AppKey("cpu_worker", CpuWorker)
