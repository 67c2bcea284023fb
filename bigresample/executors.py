"""Where the blocks are computed: local threads, or dask (its threads or a cluster).

An executor runs a ``BlockTask`` (compute block ``i``, hand it to the sink's
writer in the same worker) for the block numbers it is given, and calls
``commit(i, payload)`` in the calling thread for each: strictly in block order
for ``Threads``, as blocks complete for ``Dask``.  Executors are made at
planning time and connect nothing until a run enters them (``with executor:``),
so a dry run or a refused run never starts a process.

* ``Threads``: a pool of worker threads, each with its own reused
  ``engine.Workspace`` (``thread_workspace``); at most ``workers + 2`` blocks are in flight, which bounds
  memory.  scipy.ndimage, numpy's ufuncs, zlib/isal and the positional reads
  and writes release the GIL, so threads scale on the cores.
* ``Dask``: one task per block on a dask.distributed cluster, the task object
  (resampler, the source's small reader, the writer's address) held once in
  the graph, never voxels: each worker opens the input and writes its own
  blocks.  Its writer must be picklable and reach storage every worker sees
  (a zarr store).
"""

from __future__ import annotations

import itertools
import queue
import threading
import sys
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Callable, Iterable, Protocol, runtime_checkable

import numpy as np

from . import cluster, timeline
from .blocks import BlockSet
from .engine import thread_workspace


@dataclass(frozen=True)
class BlockTask:
    """Compute block ``i`` of ``blocks`` from ``source`` and pass it to ``write(region, block)``
    (which returns what the sink commits).  Small and picklable when its parts are."""

    resampler: object
    source: object
    dtype: np.dtype
    blocks: BlockSet
    write: Callable

    def __call__(self, i: int):
        t = timeline.now()
        region = self.blocks.region(i)
        # the worker thread's own buffers, reused from block to block
        block = self.resampler.compute_into(self.source, region, self.dtype, thread_workspace())
        t = timeline.span("compute", t, i)
        payload = self.write(region, block)
        timeline.span("write", t, i)
        return payload


@runtime_checkable
class Executor(Protocol):
    """What the run loop (``runner.run_stage``) and the planner (``job``) ask of an executor.
    A new one is a class that answers these, registered with ``register``."""

    #: the blocks are computed (and written, by the sink's writer) in other processes or machines: the writer
    #: must be picklable and reach storage they all see
    remote: bool
    #: ``commit`` is called in block order (a sink that appends, ``sinks.GzipNifti``, needs it)
    ordered_commits: bool

    def __enter__(self): ...

    def __exit__(self, *exc): ...

    def describe(self) -> str | None:
        """One line for the report (a cluster's address and workers), or None."""

    def check_visible(self, paths, options=None) -> None:
        """Refuse (one line) if the workers cannot see these paths (a remote executor)."""

    def run(self, task: BlockTask, todo: Iterable[int], commit: Callable[[int, object], None]) -> None:
        """Call ``task(i)`` for every ``i`` of ``todo`` and ``commit(i, payload)`` in this thread for each."""

    def after_running(self, fn: Callable[[], None]) -> None:
        """Call ``fn`` once no block of the last run is being computed any more (now, or later
        after an interruption left some running)."""


class Threads:
    """Local worker threads; commits in block order.

    The threads are daemons: a run stopped by Ctrl-C or SIGTERM returns at
    once, without waiting for the blocks being computed (a general-path block
    can take seconds), and the process can exit; blocks that finish later
    are simply not committed.  ``after_running`` defers what must wait for
    them (closing the file they write into).
    """

    remote = False  # blocks are written in this process
    ordered_commits = True

    def __init__(self, workers: int):
        self.workers = max(1, int(workers))
        self._running: list[Future] = []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def describe(self) -> str | None:
        return None

    def check_visible(self, paths, options=None) -> None:
        pass

    def run(self, task: BlockTask, todo: Iterable[int], commit: Callable[[int, object], None]) -> None:
        t = timeline.now()
        pool = _DaemonPool(self.workers)
        timeline.span("threads", t)
        pending = []
        it = iter(todo)
        try:
            for i in itertools.islice(it, self.workers + 2):
                pending.append((i, pool.submit(task, i)))
            while pending:
                i, fut = pending.pop(0)
                t = timeline.now()
                payload = fut.result()
                t = timeline.span("wait", t, i)
                commit(i, payload)
                timeline.span("commit", t, i)
                nxt = next(it, None)
                if nxt is not None:
                    pending.append((nxt, pool.submit(task, nxt)))
        except BaseException:
            for _, fut in pending:
                fut.cancel()
            self._running = [fut for _, fut in pending if not fut.cancelled()]
            pool.shutdown(wait=False)
            raise
        pool.shutdown(wait=True)

    def after_running(self, fn: Callable[[], None]) -> None:
        """Call ``fn`` once no block of the last run is being computed any more:
        now, or (after an interruption) when the last one finishes."""
        running, self._running = [f for f in self._running if not f.done()], []
        if not running:
            fn()
            return
        left, lock = [len(running)], threading.Lock()

        def one_done(_):
            with lock:
                left[0] -= 1
                last = left[0] == 0
            if last:
                fn()

        for fut in running:
            fut.add_done_callback(one_done)


class _DaemonPool:
    """The few threads of one run, as daemons (``concurrent.futures``'
    threads are joined at interpreter exit, which would hold a stopped run
    until its blocks finish)."""

    def __init__(self, n: int):
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._threads = [threading.Thread(target=self._work, name=f"bigresample-{k}", daemon=True) for k in range(n)]
        for t in self._threads:
            t.start()

    def submit(self, fn, arg) -> Future:
        fut: Future = Future()
        self._queue.put((fut, fn, arg))
        return fut

    def _work(self) -> None:
        while (item := self._queue.get()) is not None:
            fut, fn, arg = item
            if not fut.set_running_or_notify_cancel():
                continue
            try:
                fut.set_result(fn(arg))
            except BaseException as exc:  # handed to the caller through the future
                fut.set_exception(exc)

    def shutdown(self, wait: bool) -> None:
        for _ in self._threads:
            self._queue.put(None)
        if wait:
            for t in self._threads:
                t.join()


class Dask:
    """dask tasks on a ``distributed`` cluster: a client, a scheduler's
    address, or local worker processes started for the run; commits as
    blocks complete."""

    remote = True  # blocks are written by the workers
    ordered_commits = False  # as blocks complete

    def __init__(self, scheduler: str | None = None, local_cluster: int | None = None, client=None):
        self.scheduler, self.local_cluster, self.given = scheduler, local_cluster, client
        self.client = None
        self._connection = None

    @staticmethod
    def active_client():
        """A ``distributed.Client`` the caller made current (the dask convention), or None."""
        if "distributed" in sys.modules:
            try:
                return sys.modules["distributed"].default_client()
            except ValueError:
                pass
        return None

    def __enter__(self):
        self._connection = cluster.connect(self.scheduler, self.local_cluster, self.given)
        self.client = self._connection.__enter__()
        return self

    def __exit__(self, *exc):
        connection, self._connection, self.client = self._connection, None, None
        return connection.__exit__(*exc) if connection is not None else False

    def describe(self) -> str:
        return cluster.describe(self.client)

    def check_visible(self, paths, options=None) -> None:
        cluster.check_visible(self.client, paths, options)

    @staticmethod
    def tasks(task: BlockTask, todo: list[int]) -> list:
        """One dask ``delayed`` per block number in ``todo``; the graph holds
        ``task`` once (as one key), never voxels."""
        import uuid

        from dask import delayed

        token = uuid.uuid4().hex
        shared = delayed(task, name=f"blocktask-{token}")
        run = delayed(_run_block, pure=False)
        return [run(shared, i, dask_key_name=f"block-{token}-{i}") for i in todo]

    def after_running(self, fn: Callable[[], None]) -> None:
        fn()  # the workers write elsewhere: nothing here waits for them

    def run(self, task: BlockTask, todo: Iterable[int], commit: Callable[[int, object], None]) -> None:
        todo = list(todo)
        cluster.compute_blocks(self.client, self.tasks(task, todo), todo, lambda i: commit(i, None))


def _run_block(task: BlockTask, i: int) -> None:
    task(i)  # a block's payload stays in the worker: the writer stored it


#: name -> factory ``(request) -> Executor``, for ``resample(..., executor=NAME)``
EXECUTORS: dict[str, Callable[..., Executor]] = {}


def register(name: str, factory: Callable[..., Executor]) -> None:
    """Make ``resample(..., executor=name)`` run its blocks on ``factory(request)``."""
    EXECUTORS[name] = factory


def choose(request) -> Executor:
    """The executor a request asks for: one registered by name (``request.executor``), a cluster
    when one is named or a ``distributed.Client`` is current, else local threads.  Connects nothing."""
    if request.executor is not None:
        return EXECUTORS[request.executor](request)
    if request.on_cluster:
        return Dask(request.scheduler, request.local_cluster, request.client)
    client = Dask.active_client()
    return Dask(client=client) if client is not None else Threads(request.workers)
