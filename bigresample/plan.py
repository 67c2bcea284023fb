"""Block plan: output block shape and concurrency from a memory budget.

A NIfTI file is x-fastest, so the natural output block is a slab of whole
x-y planes: it is read from a contiguous stretch of the input file and written
as a contiguous stretch of the output.  The slab is as thick as the budget
allows for ``workers`` blocks in flight; when even one plane per worker does not
fit, planes are split along y, then x.
"""

from __future__ import annotations

import itertools
from math import prod
import os
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from . import rawio
from .errors import BigresampleError
from .blocks import is_file_stretch

if TYPE_CHECKING:
    from .resampling import BlockResampler

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


class PlanError(BigresampleError):
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


def window_shape(resampler: BlockResampler, block: tuple[int, ...]) -> tuple[int, ...]:
    """Input voxels per axis that an output block of shape ``block`` reads."""
    return resampler.window_shape(block)


def block_bytes(resampler: BlockResampler, block: tuple[int, ...], in_itemsize: int, out_itemsize: int) -> int:
    """Estimated peak bytes of one worker computing an output block of shape ``block``
    (what the resampler says: ``BlockResampler.block_bytes``)."""
    return resampler.block_bytes(block, in_itemsize, out_itemsize)


@dataclass(frozen=True)
class Plan:
    block: tuple[int, ...]  # spatial block shape (output voxels)
    workers: int
    memory_limit: int
    block_bytes: int  # estimated peak per block

    def peak_bytes(self, out_shape, out_itemsize: int, gzip: bool, base: int = 100 * 2**20) -> int:
        """Estimated peak resident memory of a run with this plan.

        ``base``: the interpreter with numpy and nibabel (~90 MiB measured).
        Workspaces of every worker; for a .nii.gz also the gzip members in
        flight, or the (two) slabs being assembled when blocks are not file
        stretches, plus one slab's compressed member.
        """
        x, y = out_shape[0], out_shape[1]
        bx, by, bz = self.block[:3]
        peak = base + self.workers * self.block_bytes
        if gzip:
            if is_file_stretch(self.block, out_shape):
                peak += (self.workers + 2) * bx * by * bz * out_itemsize
            else:
                peak += 3 * x * y * bz * out_itemsize
        return int(peak)


def plan_blocks(
    resampler: BlockResampler,
    in_itemsize: int,
    out_itemsize: int,
    memory_limit: int,
    workers: int,
    block=None,
    reserve: int = 160 * 2**20,
    gzip: bool = False,
    stretches: bool = False,
) -> Plan:
    """Choose the block shape (or check the given one) for the budget.

    ``stretches``: only blocks that are stretches of the file (a cluster's
    workers compress each block into a gzip member of its own).
    ``reserve`` is kept for the interpreter and libraries.  ``gzip``: the
    output is a .nii.gz (slabs of whole planes are compressed).
    """
    out = resampler.grid.out_shape
    workers = max(1, int(workers))
    if block is not None:
        block = tuple(int(b) for b in block)
        if len(block) != len(out) or any(b < 1 for b in block):
            raise PlanError(f"chunks must be {len(out)} positive integers; got {block!r}")
        block = tuple(min(b, m) for b, m in zip(block, out))
        return Plan(block, workers, memory_limit, block_bytes(resampler, block, in_itemsize, out_itemsize))
    per_block = min(max(1, (memory_limit - reserve) // workers), resampler.target_block_bytes)

    def cost(b):
        return block_bytes(resampler, b, in_itemsize, out_itemsize)

    budget = max(1, memory_limit - reserve)

    def score(b):
        """What the block shape ``b`` costs in all (None: not allowed)."""
        c = cost(b)
        if c > per_block:
            return None
        contiguous = is_file_stretch(b, out)
        if stretches and not contiguous:
            return None
        # a .nii.gz is compressed a slab of whole planes at a time: blocks that
        # are not stretches of the file are assembled into (at most two) slabs
        if gzip and not contiguous and (
            3 * out[0] * out[1] * b[2] * out_itemsize + workers * c > budget
            or out[0] * out[1] * b[2] * out_itemsize > per_block
        ):
            return None
        n_blocks = prod(-(-n // bi) for n, bi in zip(out, b))
        total = n_blocks * (resampler.planning_work(b) + BLOCK_OVERHEAD_VOXELS + _io_cost(resampler, b, in_itemsize))
        if not contiguous:
            total *= SPLIT_PENALTY_GZIP if gzip else SPLIT_PENALTY
        return total

    # Every shape from halving each axis; keep those that fit the budget and
    # pick the one reading the fewest input voxels in all (halo overlap counts
    # twice), plus a fixed cost per block.  Whole x-y planes win whenever they
    # fit; under a tight budget and a spline halo, splitting y keeps the slabs
    # thick instead of reading each plane 30 times over.
    best, best_score = None, None
    for b in itertools.product(*[_halvings(n) for n in out]):
        s = score(b)
        if s is not None and (best_score is None or s < best_score):
            best, best_score = b, s
    if best is None:
        raise PlanError(f"memory limit {format_bytes(memory_limit)} is too small for even a single row of voxels")
    # enough blocks to keep every worker busy, and a progress bar that moves:
    # halve z, or y or x where that costs less (where thinner slabs would cut
    # an ever narrower window out of every input row: a permuted or rotated
    # grid whose output z runs along the input's x)
    while best[2] > 1 and prod(-(-n // bi) for n, bi in zip(out, best)) < resampler.min_blocks_per_worker * workers:
        halved = [best[:a] + (-(-best[a] // 2),) + best[a + 1:] for a in (2, 1, 0) if best[a] > 1]
        if not _narrow(resampler, halved[0]):
            halved = halved[:1]
        scored = [(s, i, b) for i, b in enumerate(halved) if (s := score(b)) is not None]
        best = min(scored)[2] if scored else halved[0]
    return Plan(best, workers, memory_limit, cost(best))


def _io_cost(resampler, block, in_itemsize: int) -> int:
    """What the file reads and writes of a block of shape ``block`` cost, in
    input voxels: ``SPAN_VOXELS`` a contiguous stretch (one for whole planes,
    window depth + block depth for whole rows, that times the block's rows
    otherwise).  Where a block of whole rows reads a window that cuts the
    input's rows (``_narrow``: a permuted or rotated grid), the reader reads
    rows at most ``rawio.ROW_GAP`` bytes apart as whole rows (the voxels beyond
    the window count), others one read a row."""
    out, wshape = resampler.grid.out_shape, resampler.window_shape(block)
    if block[0] == out[0] and block[1] == out[1]:
        spans = 1
    elif block[0] == out[0]:
        spans = wshape[2] + block[2]
    else:
        spans = (wshape[2] + block[2]) * block[1]
    extra = 0
    if _narrow(resampler, block, wshape):
        gap = resampler.grid.in_shape[0] - wshape[0]
        if gap * in_itemsize > rawio.ROW_GAP:
            spans = max(spans, wshape[1] * wshape[2])
        else:
            extra = gap * wshape[1] * wshape[2]
    return spans * SPAN_VOXELS + extra


def _narrow(resampler, block, wshape=None) -> bool:
    """True when a block of whole output rows reads a window that cuts the
    input's rows (the output's x runs along another input axis)."""
    wshape = resampler.window_shape(block) if wshape is None else wshape
    return block[0] == resampler.grid.out_shape[0] and wshape[0] < resampler.grid.in_shape[0]


#: Fixed cost of a block in the planner, in input voxels (Python overhead):
#: discourages needlessly small blocks.
BLOCK_OVERHEAD_VOXELS = 20_000
#: Cost of one positional read or write, in input voxels.
SPAN_VOXELS = 4_096
#: Blocks that are not stretches of the output file cost this much more
#: (written in pieces; a .nii.gz must assemble and compress them serially).
SPLIT_PENALTY = 1.25
#: ... and for a .nii.gz, whose assembled slabs are compressed by one thread
#: where stretches are compressed by every worker (order 3, 512x512x300:
#: 2.8 s with whole planes, 3.7 s with split ones; bench_speed.py).
SPLIT_PENALTY_GZIP = 2.0


def _halvings(n: int) -> list[int]:
    """n, ceil(n/2), ceil(n/4), ... 1."""
    out = [n]
    while out[-1] > 1:
        out.append(-(-out[-1] // 2))
    return out


#: ``--shards auto``: grow the shards until a level holds at most this many shard files (or the budget stops it)
MAX_SHARD_FILES = 10_000


def shard_plan(resampler: BlockResampler, chunk_plan: Plan, shards, in_itemsize: int, out_itemsize: int,
               reserve: int = 160 * 2**20) -> tuple[Plan, tuple[int, ...]]:
    """A sharded output's plan: ``(plan, shard)``, the plan's block one whole shard (clipped to the output:
    blocks and shards share the grid from 0, so no two workers write one shard), ``shard`` its shape in
    voxels (``chunk_plan.block``, the chunk, times ``shards`` chunks per axis).  ``shards``: x, y, z chunks
    per shard, refused in one line when a shard's block does not fit the budget with this many workers; or
    "auto": doubled along the axis with the most shards until at most ``MAX_SHARD_FILES`` remain, while a
    shard fits.  A shard's block also counts the encoded shard zarr assembles (its output bytes again)."""
    out = tuple(resampler.grid.out_shape)
    chunk, workers, limit = chunk_plan.block, chunk_plan.workers, chunk_plan.memory_limit
    budget = max(1, (limit - reserve) // workers)

    def plan_for(n):
        shard = tuple(c * k for c, k in zip(chunk, n))
        block = tuple(min(s, m) for s, m in zip(shard, out))
        cost = block_bytes(resampler, block, in_itemsize, out_itemsize) + prod(block) * out_itemsize
        return Plan(block, workers, limit, cost), shard

    if shards != "auto":
        plan, shard = plan_for(tuple(int(k) for k in shards))
        if plan.block_bytes > budget:
            raise PlanError(f"a shard of {'x'.join(map(str, shard))} voxels needs {format_bytes(plan.block_bytes)} "
                            f"per block; the budget {format_bytes(limit)} holds {format_bytes(budget)} for each of "
                            f"{workers} workers: give smaller --shards, fewer --workers or a larger --memory-limit")
        return plan, shard
    # then on while a shard is smaller than the block the planner aims at (fewer, larger blocks run faster)
    # and every worker still has blocks to take
    target, enough = min(budget, resampler.target_block_bytes), resampler.min_blocks_per_worker * workers
    n, best = [1, 1, 1], plan_for((1, 1, 1))
    while True:
        along = [-(-m // (c * k)) for m, c, k in zip(out, chunk, n)]
        few = prod(along) <= MAX_SHARD_FILES
        axis = max(range(3), key=lambda a: along[a])
        if along[axis] <= 1 or (few and (best[0].block_bytes >= target or prod(along) <= enough)):
            return best
        trial = list(n)
        trial[axis] *= 2
        candidate = plan_for(trial)
        if candidate[0].block_bytes > (target if few else budget):
            return best
        n, best = trial, candidate
