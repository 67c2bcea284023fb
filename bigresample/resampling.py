"""What a resampler is to the rest of bigresample, and which one a grid gets.

A resampler computes output blocks from input windows.  The planner
(``plan.plan_blocks``), the executors (``executors.BlockTask``) and the label
methods (``labels``) ask it the questions of ``BlockResampler`` and never test
its class, so a new resampler is one class that answers them, registered once
with ``register`` (then ``resample(..., resampler=NAME)`` uses it).

The built-in ones: ``engine.Resampler`` (separable grids: spacing changes and
axis-aligned references), ``permuted.PermutedResampler`` (references that
permute the input's axes, on the same engine), ``transform.AffineResampler``
(rotated references), ``warp.WarpResampler`` (a chain of transforms with a
displacement field),
and the label methods of ``labels`` built on either.
"""

from __future__ import annotations

from typing import Callable, Protocol, runtime_checkable

import numpy as np

from .engine import Resampler, Workspace
from .errors import BigresampleError
from .permuted import PermutedResampler
from .transform import AffineResampler
from .warp import WarpGrid, WarpResampler


@runtime_checkable
class BlockResampler(Protocol):
    """The questions every resampler answers (small and picklable: a task holds one)."""

    #: the grid: ``in_shape`` and ``out_shape`` (spatial axes)
    grid: object
    #: the interpolation order (0-5) its values follow, as the report names it
    order: int
    #: the output is computed axis by axis from ``plans(region)`` (``engine.AxisPlan`` per axis)
    separable: bool
    #: the planner makes at least this many blocks per worker
    min_blocks_per_worker: int
    #: the per-block working set the planner aims for when the budget allows more
    target_block_bytes: int

    def input_region(self, region) -> tuple[slice, ...]:
        """The input window (spatial slices) the output block ``region`` reads."""

    def window_shape(self, block) -> tuple[int, ...]:
        """The largest input window an output block of shape ``block`` reads."""

    def planning_work(self, block) -> int:
        """The planner's cost of one block of shape ``block``, in input voxels."""

    def block_bytes(self, block, in_itemsize: int, out_itemsize: int) -> int:
        """The peak bytes of one worker computing a block of shape ``block``."""

    def reaching(self, region, lo, hi, folding_reach=None):
        """The part of ``region`` whose samples lie in the input box ``[lo, hi]``, or None."""

    def compute_into(self, source, region, dtype, ws: Workspace) -> np.ndarray:
        """The output block ``region`` in file order (axes reversed), in ``ws``'s buffers."""


class ResamplerError(BigresampleError):
    """A resampler name nobody registered."""


def interpolating(grid, order: int, mode: str, cval: float) -> BlockResampler:
    """scipy.ndimage's interpolation on ``grid``: the separable engine wherever the
    grid is axis-aligned (flips allowed: ``ReferenceGrid.separable``; axes permuted too:
    ``ReferenceGrid.permutation``, through ``permuted``), the point-by-point path for a
    chain of transforms with a displacement field (``warp.WarpGrid``), else the general path."""
    if isinstance(grid, WarpGrid):
        return WarpResampler(grid, order, mode, cval)
    separable = grid.separable()
    if separable is not None:
        return Resampler(separable, order, mode, cval)
    if grid.permutation() is not None:
        return PermutedResampler(grid, order, mode, cval)
    return AffineResampler(grid, order, mode, cval)


#: name -> factory ``(grid, order, mode, cval) -> BlockResampler``
RESAMPLERS: dict[str, Callable[..., BlockResampler]] = {"scipy": interpolating}
DEFAULT = "scipy"


def register(name: str, factory: Callable[..., BlockResampler]) -> None:
    """Make ``resample(..., resampler=name)`` build its resampler with ``factory(grid, order, mode, cval)``
    (``mode`` as the request holds it: 'itk', ITK's rule of ``bounds``, included)."""
    RESAMPLERS[name] = factory


def parse_resampler(name) -> str:
    if name is None:
        return DEFAULT
    if name not in RESAMPLERS:
        raise ResamplerError(f"resampler must be one of {', '.join(sorted(RESAMPLERS))}; got {name!r}")
    return name


def make(name: str, grid, order: int, mode: str, cval: float) -> BlockResampler:
    """The resampler registered as ``name`` on ``grid``."""
    return RESAMPLERS[parse_resampler(name)](grid, order, mode, cval)
