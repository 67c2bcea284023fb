"""Local execution: worker threads compute blocks in file order and hand them on.

Each worker keeps its own ``Workspace`` (no fresh memory per block).  A block's
result goes to ``work(region, block)`` in the worker that computed it (for a
.nii output: written at its file offsets; for .nii.gz: compressed into a gzip
member), then ``commit(i, payload)`` runs in the calling thread strictly in
block order (appending the member, recording completion).  At most
``workers + 2`` blocks are in flight, which bounds memory.

scipy.ndimage, numpy's ufuncs, zlib/isal and the positional reads and writes
release the GIL, so threads scale on the cores.
"""

from __future__ import annotations

import itertools
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterable

import numpy as np

from .engine import Resampler, Workspace


def block_regions(out_shape, block) -> list[tuple[slice, ...]]:
    """Output blocks in NIfTI file order: extra axes outermost, then z, y, x.

    ``out_shape`` is the full output shape (spatial then extra axes); extra
    axes are taken one index at a time.
    """
    k = len(block)
    spatial, extra = out_shape[:k], out_shape[k:]
    starts = [range(0, n, b) for n, b in zip(spatial, block)]
    regions = []
    for e in itertools.product(*[range(n) for n in extra]):
        for rev in itertools.product(*starts[::-1]):
            idx = rev[::-1]
            sl = tuple(slice(i, min(i + b, n)) for i, b, n in zip(idx, block, spatial))
            regions.append(sl + tuple(slice(j, j + 1) for j in e))
    return regions


def run_blocks(
    resampler: Resampler,
    source,
    out_dtype,
    regions: Iterable[tuple[slice, ...]],
    workers: int,
    work: Callable[[tuple, np.ndarray], object],
    commit: Callable[[int, object], None],
    skip: Callable[[int], bool] = lambda i: False,
) -> None:
    """Compute ``regions`` with ``workers`` threads (see module docstring).

    ``skip(i)`` true: block ``i`` is already done (resume) and is not computed.
    """
    local = threading.local()
    out_dtype = np.dtype(out_dtype)

    def task(region):
        ws = getattr(local, "ws", None)
        if ws is None:
            ws = local.ws = Workspace()
        block = resampler.compute_into(source, region, out_dtype, ws)
        return work(region, block)

    todo = [(i, r) for i, r in enumerate(regions) if not skip(i)]
    ahead = max(1, workers) + 2
    with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="bigresample") as pool:
        pending = []
        it = iter(todo)
        try:
            for i, r in itertools.islice(it, ahead):
                pending.append((i, pool.submit(task, r)))
            while pending:
                i, fut = pending.pop(0)
                payload = fut.result()
                commit(i, payload)
                nxt = next(it, None)
                if nxt is not None:
                    pending.append((nxt[0], pool.submit(task, nxt[1])))
        except BaseException:
            for _, fut in pending:
                fut.cancel()
            raise
