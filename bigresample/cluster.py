"""Running on a dask.distributed cluster.

The blocks become tasks of a dask graph that holds the input's small reader
(path, offset, shape, dtype) and the zarr store's address, never voxels: each
worker opens the input and writes its blocks into the store itself, so the
input and ``--tmp-dir`` must be on a filesystem every worker sees.  The client
then streams the NIfTI out of the store.  A block write replaces the whole
chunk, so a task that dask reruns after a worker died writes the same bytes.

``distributed`` is an optional dependency (``pip install
'bigresample[distributed]'``).
"""

from __future__ import annotations

import os
import socket
import sys
from contextlib import contextmanager
from .errors import BigresampleError, one_line


class ClusterError(BigresampleError):
    """The cluster cannot be reached or cannot see the files."""


def _distributed():
    try:
        import distributed
    except ImportError:
        raise ClusterError(
            "running on a cluster needs the 'distributed' package: pip install 'bigresample[distributed]'"
        ) from None
    return distributed


@contextmanager
def connect(scheduler: str | None = None, local_cluster: int | None = None, client=None):
    """Yield the ``distributed.Client`` to run on, or None for local threads.

    ``client`` is used as given; ``scheduler`` connects to a running scheduler
    (``tcp://host:8786``); ``local_cluster`` starts that many worker processes
    on this machine for the run.  Otherwise an active client is used when the
    caller created one (the dask convention), else local threads.  The
    arguments were checked by ``bigresample.request.Request``.
    """
    if client is not None:
        yield client
        return
    if scheduler is not None:
        distributed = _distributed()
        try:
            c = distributed.Client(scheduler, timeout="10s", set_as_default=False)
        except (OSError, TimeoutError) as exc:
            raise ClusterError(f"cannot reach the dask scheduler at {scheduler}: {one_line(exc)}") from None
        try:
            yield c
        finally:
            c.close()
        return
    if local_cluster is not None:
        distributed = _distributed()
        cluster = distributed.LocalCluster(
            n_workers=int(local_cluster), threads_per_worker=1, processes=True, dashboard_address=None,
        )
        c = distributed.Client(cluster, set_as_default=False)
        try:
            yield c
        finally:
            c.close()
            cluster.close()
        return
    if "distributed" in sys.modules:
        try:
            yield sys.modules["distributed"].default_client()
            return
        except ValueError:
            pass
    yield None




def _visible(paths, options=None):
    from .location import display, is_url, problem

    missing = []
    for p in paths:
        if is_url(p):
            why = problem(p, options)
            p = display(p)
            if why:
                missing.append(f"{p} ({why})")
        elif not os.path.exists(p):
            missing.append(p)
    return missing, socket.gethostname()


def check_visible(client, paths, options: dict | None = None) -> int:
    """Raise ClusterError naming the first worker that cannot see one of ``paths``.

    Returns the number of workers.
    """
    from .location import is_url

    paths = [p if is_url(p) else os.path.abspath(p) for p in paths]
    results = client.run(_visible, paths, *([options] if options else []))
    if not results:
        raise ClusterError("the dask cluster has no workers")
    for worker, (missing, host) in sorted(results.items()):
        if missing:
            raise ClusterError(
                f"dask worker {worker} (host {host}) cannot see {missing[0]}: put the input and --tmp-dir on a "
                "filesystem (or object store) every worker reaches"
            )
    return len(results)


def describe(client) -> str:
    info = client.scheduler_info()
    workers = info.get("workers", {})
    threads = sum(w.get("nthreads", 0) for w in workers.values())
    return f"{len(workers)} dask workers ({threads} threads) at {info.get('address', '?')}"


def compute_blocks(client, tasks, keys, finished) -> None:
    """Compute the dask ``tasks`` on the cluster, calling ``finished(key)``
    with the matching one of ``keys`` as each completes."""
    distributed = _distributed()
    futures = client.compute(tasks)
    key_of = dict(zip((f.key for f in futures), keys))
    for fut in distributed.as_completed(futures, loop=client.loop):
        fut.result()
        finished(key_of[fut.key])
