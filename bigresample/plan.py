"""Block plan: output block shape and concurrency from a memory budget.

A NIfTI file is x-fastest, so the natural output block is a slab of whole
x-y planes: it is read from a contiguous stretch of the input file and written
as a contiguous stretch of the output.  The slab is as thick as the budget
allows for ``workers`` blocks in flight; when even one plane per worker does not
fit, planes are split along y, then x.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

import numpy as np

from .engine import Resampler

_UNITS = {
    "": 1,
    "b": 1,
    "k": 10**3,
    "kb": 10**3,
    "m": 10**6,
    "mb": 10**6,
    "g": 10**9,
    "gb": 10**9,
    "t": 10**12,
    "tb": 10**12,
    "kib": 2**10,
    "mib": 2**20,
    "gib": 2**30,
    "tib": 2**40,
}


class PlanError(ValueError):
    """A memory budget or block shape that cannot work."""


def parse_memory(value) -> int:
    """'2GB', '512MiB', '1.5g', 1000000 -> bytes."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        n = int(value)
    else:
        m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*", str(value))
        if not m or m.group(2).lower() not in _UNITS:
            raise PlanError(f"memory limit must look like 2GB, 512MiB or a number of bytes; got {value!r}")
        n = int(float(m.group(1)) * _UNITS[m.group(2).lower()])
    if n <= 0:
        raise PlanError(f"memory limit must be > 0; got {value!r}")
    return n


def available_memory() -> int:
    """MemAvailable from /proc/meminfo (or total physical memory)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def default_memory_limit() -> int:
    """Half of the memory available now, at least 256 MiB."""
    return max(256 * 2**20, available_memory() // 2)


def format_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"  # pragma: no cover


def block_bytes(resampler: Resampler, block: tuple[int, ...], in_itemsize: int, out_itemsize: int) -> int:
    """Estimated peak bytes of one worker computing an output block of shape ``block``.

    What ``Resampler.compute_into`` keeps in its workspace: the input window
    (block / zoom, plus the prefilter halo on resampled axes) in the stored
    type, twice when scipy's pre-padding applies; the float64 prefilter
    coefficients (orders >= 2); two float64 intermediates when more than one
    axis is resampled; the output block; its gzip member; and plane-sized
    float64 accumulators.
    """
    order = resampler.order
    window, plane, active = 1, 1, 0
    for i, (ax, b) in enumerate(zip(resampler.grid.axes, block)):
        if ax.is_identity:
            span = b
        else:
            active += 1
            span = int(np.ceil(b * max(ax.step, 1e-9))) + order + 1
            if order > 1:
                span += 2 * resampler.halo
            span = min(span, ax.n + (24 if order > 1 else 0))
        window *= span
        if i < 2:
            plane *= max(span, b)
    out = int(np.prod(block))
    total = window * in_itemsize * (2 if order > 1 else 1) + 2 * out * out_itemsize + 4 * plane * 8
    if order > 1:
        total += window * 8
    if active > 1:
        total += 2 * max(window, out) * 8
    return int(total)


#: Per-block working set the planner aims for when the budget allows more:
#: big enough to amortise the prefilter halo (orders >= 2) and the per-block
#: overheads, small enough that each worker's buffers stay few and cheap to
#: fault in (benchmarks/bench_speed.py, --chunks sweeps).
TARGET_BLOCK_BYTES = {0: 48 * 2**20, 1: 48 * 2**20}
TARGET_BLOCK_BYTES_SPLINE = 320 * 2**20


@dataclass(frozen=True)
class Plan:
    block: tuple[int, ...]  # spatial block shape (output voxels)
    workers: int
    memory_limit: int
    block_bytes: int  # estimated peak per block

    @property
    def peak_bytes(self) -> int:
        return self.block_bytes * self.workers


def plan_blocks(
    resampler: Resampler,
    in_itemsize: int,
    out_itemsize: int,
    memory_limit: int,
    workers: int,
    block=None,
    reserve: int = 160 * 2**20,
) -> Plan:
    """Choose the block shape (or check the given one) for the budget.

    ``reserve`` is kept for the interpreter, libraries and the writer's slab.
    """
    out = resampler.grid.out_shape
    workers = max(1, int(workers))
    if block is not None:
        block = tuple(int(b) for b in block)
        if len(block) != len(out) or any(b < 1 for b in block):
            raise PlanError(f"chunks must be {len(out)} positive integers; got {block!r}")
        block = tuple(min(b, m) for b, m in zip(block, out))
        return Plan(block, workers, memory_limit, block_bytes(resampler, block, in_itemsize, out_itemsize))
    per_block = max(1, (memory_limit - reserve) // workers)
    per_block = min(per_block, TARGET_BLOCK_BYTES.get(resampler.order, TARGET_BLOCK_BYTES_SPLINE))

    def cost(b):
        return block_bytes(resampler, b, in_itemsize, out_itemsize)

    x, y, z = out[0], out[1], out[2]
    # whole planes, as many as fit (but keep >= 2 blocks per worker for balance)
    best = None
    for dz in _candidates(z):
        if cost((x, y, dz)) <= per_block:
            best = (x, y, dz)
            break
    if best is None:
        for dy in _candidates(y):
            if cost((x, dy, 1)) <= per_block:
                best = (x, dy, 1)
                break
    if best is None:
        for dx in _candidates(x):
            if cost((dx, 1, 1)) <= per_block:
                best = (dx, 1, 1)
                break
    if best is None:
        raise PlanError(f"memory limit {format_bytes(memory_limit)} is too small for even a single row of voxels")
    # enough blocks to keep every worker busy, and a progress bar that moves
    min_blocks = 4 * workers
    bx, by, bz = best
    while bz > 1 and -(-z // bz) * -(-y // by) * -(-x // bx) < min_blocks:
        bz = -(-bz // 2)
    best = (bx, by, bz)
    return Plan(best, workers, memory_limit, cost(best))


def _candidates(n: int):
    """n, then shrinking sizes down to 1."""
    seen = set()
    v = n
    while v >= 1:
        if v not in seen:
            seen.add(v)
            yield v
        v = v * 3 // 4 if v > 4 else v - 1
