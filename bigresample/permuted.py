"""Reference grids that permute (and flip) the input's axes, through the separable engine.

A reference grid whose matrix ``A_in^-1 @ A_ref`` has one non-zero a row and a
column (``ReferenceGrid.permutation``: a P-I-L reference onto an R-A-S input,
say) is axis-aligned: output axis ``j`` samples input axis ``axes[j]`` alone,
at ``matrix[axes[j], j] * o + offset[axes[j]]`` (scipy's sum with the other
terms zero: the same float64 value).  So the per-axis engine
(``engine.Resampler``) computes the block on the input's axis order (the grid
``ReferenceGrid.on_input_axes``: input axis ``i`` gets the length and step of
the output axis that samples it), and the block is transposed into the
output's order.  Every question the planner, the executors and the label
methods ask is answered by the engine on the block's regions taken in the
input's order and put back into the output's.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from math import prod

import numpy as np

from .engine import Resampler, Sampling, Workspace, _Fresh
from .geometry import ReferenceGrid


@dataclass(frozen=True)
class PermutedResampler(Sampling):
    """scipy's ``affine_transform`` onto a ``ReferenceGrid`` that permutes the input's
    axes (flips allowed), computed by the separable engine (small, picklable)."""

    grid: ReferenceGrid

    #: no per-axis ``plans`` in the output's axis order (a label method takes the general route)
    separable = False
    min_blocks_per_worker = Resampler.min_blocks_per_worker

    def __post_init__(self):
        super().__post_init__()
        if self.grid.permutation() is None:
            raise ValueError("PermutedResampler needs a grid that permutes the input's axes "
                             f"(one non-zero a row and a column, not diagonal); got the matrix {self.grid.matrix.tolist()}")

    @cached_property
    def axes(self) -> tuple[int, ...]:
        """``axes[j]``: the input axis output axis ``j`` samples."""
        return self.grid.permutation()

    @cached_property
    def engine(self) -> Resampler:
        """The separable engine on the grid in the input's axis order."""
        return Resampler(self.grid.on_input_axes(), self.order, self.boundary, self.cval)

    @property
    def target_block_bytes(self) -> int:
        return self.engine.target_block_bytes

    def _inner(self, region) -> tuple:
        """An output region (or shape), spatial axes taken in the input's order; extra axes as they are."""
        region = tuple(region)
        k = len(self.axes)
        return tuple(region[self.axes.index(i)] for i in range(k)) + region[k:]

    def _outer(self, inner) -> tuple:
        """The inverse of ``_inner``: spatial axes in the input's order back in the output's."""
        inner = tuple(inner)
        k = len(self.axes)
        return tuple(inner[i] for i in self.axes) + inner[k:]

    def input_region(self, region) -> tuple[slice, ...]:
        return self.engine.input_region(self._inner(region))

    def window_shape(self, block) -> tuple[int, ...]:
        """Input voxels per input axis that an output block of shape ``block`` reads (at most)."""
        return self.engine.window_shape(self._inner(block[:3]))

    def planning_work(self, block) -> int:
        return self.engine.planning_work(self._inner(block[:3]))

    def block_bytes(self, block, in_itemsize: int, out_itemsize: int) -> int:
        """The engine's peak on the block, and the block once more: transposed into the output's order."""
        inner = self._inner(block[:3])
        return self.engine.block_bytes(inner, in_itemsize, out_itemsize) + prod(block[:3]) * out_itemsize

    def reaching(self, region, lo, hi, folding_reach=None):
        """As ``Resampler.reaching`` (``lo``, ``hi`` per input axis), the part of the output block."""
        inner = self.engine.reaching(self._inner(region[:3]), lo, hi, folding_reach)
        return None if inner is None else self._outer(inner)

    def compute(self, source, region, dtype=None) -> np.ndarray:
        """The output block ``region`` as a new array (spatial axes first)."""
        return self.compute_into(source, region, dtype, _Fresh()).T

    def compute_into(self, source, region, dtype, ws: Workspace) -> np.ndarray:
        """The block in file order, C-ordered, in ``ws``'s buffers (as ``Resampler.compute_into``):
        the engine's block in the input's axis order, transposed."""
        inner = self.engine.compute_into(source, self._inner(region), dtype, ws)
        nd, k = inner.ndim, len(self.axes)
        # file order: output axis j sits at nd - 1 - j; the engine's block holds it where input axis axes[j] is
        order = list(range(nd - k)) + [nd - 1 - self.axes[j] for j in reversed(range(k))]
        view = inner.transpose(order)
        out = ws.array("permuted", view.shape, inner.dtype)
        np.copyto(out, view)
        return out
