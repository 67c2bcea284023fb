"""The output's blocks as an object: count, i-th region, file order; never a list.

A run cuts its output (spatial axes, then any extra axes such as time) into
blocks of one spatial shape, taking the extra axes one index at a time.
Blocks are numbered in NIfTI file order: x fastest, then y, z, then the extra
axes in turn (dimension 4, then 5, ...).  That number is what the journal
records, what the sinks commit in order and what the executors schedule.

Everything here is arithmetic on the block index: ``len``, ``region(i)`` and
``index(region)`` cost O(1) whatever the number of blocks (a 1e15-voxel
request has ~1e8 blocks, and planning must not enumerate them).
"""

from __future__ import annotations

from dataclasses import dataclass
from math import prod


@dataclass(frozen=True)
class BlockSet:
    """Blocks of spatial shape ``block`` over an output of shape ``shape``
    (spatial axes first, then extra axes, taken one index at a time)."""

    shape: tuple[int, ...]
    block: tuple[int, ...]

    def __post_init__(self):
        object.__setattr__(self, "shape", tuple(int(n) for n in self.shape))
        object.__setattr__(self, "block", tuple(min(int(b), n) for b, n in zip(self.block, self.shape)))
        if len(self.block) > len(self.shape) or any(b < 1 for b in self.block):
            raise ValueError(f"block {self.block} does not fit an output of shape {self.shape}")

    @property
    def spatial(self) -> tuple[int, ...]:
        return self.shape[: len(self.block)]

    @property
    def extra(self) -> tuple[int, ...]:
        return self.shape[len(self.block):]

    @property
    def counts(self) -> tuple[int, ...]:
        """Blocks along each axis (spatial, then extra), x first."""
        return tuple(-(-n // b) for n, b in zip(self.spatial, self.block)) + self.extra

    def __len__(self) -> int:
        return prod(self.counts)

    def region(self, i: int) -> tuple[slice, ...]:
        """Slices of block ``i`` (spatial axes first, then one index of each extra axis)."""
        n = len(self)
        if not 0 <= i < n:
            raise IndexError(f"block {i} of {n}")
        out = []
        k = len(self.block)
        for axis, c in enumerate(self.counts):
            i, j = divmod(i, c)
            if axis < k:
                b = self.block[axis]
                out.append(slice(j * b, min((j + 1) * b, self.shape[axis])))
            else:
                out.append(slice(j, j + 1))
        return tuple(out)

    def index(self, region) -> int:
        """The number of the block whose slices are ``region``."""
        i = 0
        for axis, c in reversed(list(enumerate(self.counts))):
            start = region[axis].start
            j = start // self.block[axis] if axis < len(self.block) else start
            i = i * c + j
        return i

    def __iter__(self):
        for i in range(len(self)):
            yield self.region(i)

    @property
    def is_file_stretch(self) -> bool:
        """Consecutive blocks are consecutive stretches of the file."""
        return is_file_stretch(self.block, self.spatial)

    def slab(self, i: int) -> int:
        """The slab (whole x-y planes, as thick as a block) that block ``i`` lies in,
        numbered in file order; the blocks of one slab are consecutive."""
        cx, cy = self.counts[:2]
        return i // (cx * cy)

    def slab_blocks(self, s: int) -> range:
        """Block numbers of slab ``s``."""
        per = self.counts[0] * self.counts[1]
        return range(s * per, (s + 1) * per)


def is_file_stretch(block, shape) -> bool:
    """Blocks of spatial shape ``block`` over ``shape``, in file order, are
    consecutive stretches of the file: whole x-y planes, whole rows of one
    plane, or pieces of one row."""
    (bx, by, bz), (x, y) = block[:3], shape[:2]
    return (bx == x and by == y) or (bx == x and bz == 1) or (by == 1 and bz == 1)
