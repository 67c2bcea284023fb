"""``--mode itk``: ITK's rule for output voxels outside the input.

ITK's (and SimpleITK's) ``ResampleImageFilter`` samples an output voxel only
when its continuous input index ``x`` is inside the input's buffer, per axis
(``ImageFunction::IsInsideBuffer``)::

    -0.5 <= x < n - 0.5          (a NaN is outside)

and writes the default value (here ``cval``) everywhere else.  Inside, the
value is scipy's ``mode='nearest'`` sample (within half a voxel of the edge
that is the edge value at orders 0 and 1, and the spline with scipy's 'nearest'
boundary at orders >= 2).  So ``--mode itk`` is the whole-array
``scipy.ndimage`` call with ``mode='nearest'`` and then ``cval`` at every
output voxel whose ``x`` is outside on some axis (tests/conftest.py,
``itk_reference``).  It is the default of a ``--reference`` run; a spacing grid
(``center``/``origin``/``zoom``) keeps ``nearest``
(docs/grids-and-exactness.md, "Outside the input").

``x`` is the coordinate the resampler itself uses: ``AxisMap.coordinates`` on
a per-axis ``Grid``; on a ``ReferenceGrid`` scipy's own sum
``((offset + o_x m_0) + o_y m_1) + o_z m_2`` (the kernel's order of
operations).  The rule is applied around the resamplers, never inside the
compiled kernel: per axis a 1-D mask on a ``Grid`` (the block's mask is their
outer product), per output row an interval of ``o_x`` on a ``ReferenceGrid``
(``x`` is monotone along a row, so the interval's ends are found by bisection
on the exact sum: no coordinate array the size of a block).  A grid that maps
each voxel on its own (``warp.WarpGrid``, through a displacement field)
answers ``inside_mask(spatial)`` itself, from its coordinates.
"""

from __future__ import annotations

import numpy as np

from . import splines
from .geometry import Grid
from .names import ITK, MODES  # the rule's name (--mode itk) and every --mode: kept in names for the command line


def parse_mode(mode: str) -> str:
    """A ``--mode``: ITK's rule or one of scipy's (``splines.parse_mode``: 'grid-mirror' is 'reflect')."""
    if mode == ITK:
        return ITK
    if mode not in MODES:
        raise splines.SplineError(f"mode must be one of {', '.join(MODES)}; got {mode!r}")
    return splines.parse_mode(mode)


def uses_cval(mode: str) -> bool:
    """True when ``cval`` is written somewhere: the constant modes and ITK's rule."""
    return mode == ITK or "constant" in mode


def inside(x: np.ndarray, n: int) -> np.ndarray:
    """ITK's ``IsInsideBuffer`` along one axis of ``n`` voxels."""
    return (x >= -0.5) & (x < n - 0.5)


def axis_masks(grid: Grid, spatial) -> list[np.ndarray]:
    """Per axis of a per-axis ``grid``, which output samples of the block ``spatial`` are inside."""
    return [inside(ax.coordinates(s.start, s.stop), ax.n) for ax, s in zip(grid.axes, spatial)]


def row_spans(grid, spatial) -> tuple[np.ndarray, np.ndarray]:
    """``(lo, hi)`` of every output row of the block ``spatial`` on a ``ReferenceGrid``:
    arrays of shape ``(z, y)`` (file order) such that the row's samples at block-local
    ``lo <= j < hi`` are inside the input and the others are not (``lo == hi``: none)."""
    x0, x1 = spatial[0].start, spatial[0].stop
    oy, oz = _row_coords(spatial)
    lo = np.full(oy.shape, x0, dtype=np.int64)
    hi = np.full(oy.shape, x1, dtype=np.int64)
    for a, n in enumerate(grid.in_shape):
        m0, off = float(grid.matrix[a, 0]), float(grid.offset[a])
        b1, b2 = oy * grid.matrix[a, 1], oz * grid.matrix[a, 2]

        def x(ox, m0=m0, off=off, b1=b1, b2=b2):  # scipy's ((offset + o_x m_0) + o_y m_1) + o_z m_2, per row
            t = ox * m0
            t += off
            t += b1
            t += b2
            return t

        if m0 == 0:  # constant along the row
            hi = np.where(inside(x(np.full(oy.shape, float(x0))), n), hi, lo)
            continue
        # the first sample at or past each end of [-0.5, n - 0.5), walking along the row
        if m0 > 0:
            first_in = _first(lambda o: x(o) >= -0.5, x0, x1, oy.shape)
            first_out = _first(lambda o: x(o) >= n - 0.5, x0, x1, oy.shape)
        else:
            first_in = _first(lambda o: x(o) < n - 0.5, x0, x1, oy.shape)
            first_out = _first(lambda o: x(o) < -0.5, x0, x1, oy.shape)
        lo, hi = np.maximum(lo, first_in), np.minimum(hi, first_out)
        hi = np.maximum(hi, lo)
    return lo - x0, hi - x0


def _row_coords(spatial) -> tuple[np.ndarray, np.ndarray]:
    """The output y and z index of every row of the block, shape ``(z, y)``, float64."""
    oz, oy = np.meshgrid(np.arange(spatial[2].start, spatial[2].stop, dtype=np.float64),
                         np.arange(spatial[1].start, spatial[1].stop, dtype=np.float64), indexing="ij")
    return oy, oz


def _first(pred, x0: int, x1: int, shape) -> np.ndarray:
    """Per row, the first ``o`` in ``[x0, x1)`` where ``pred`` (false, then true along the row)
    holds, ``x1`` if none; by bisection on float64 indices (whole numbers, exact)."""
    first, last = np.full(shape, float(x0)), np.full(shape, float(x1 - 1))
    # rows that hold at their start, or not even at their end, are answered at once
    # (a block well inside or well outside: two evaluations, no bisection)
    at_start, at_end = pred(first), pred(last)
    lo = np.where(at_start, x0, np.where(at_end, x0 + 1.0, float(x1)))
    hi = np.where(at_start | ~at_end, lo, last)
    todo = lo < hi
    while todo.any():
        mid = np.floor((lo + hi) * 0.5)
        p = pred(mid)
        np.copyto(hi, mid, where=todo & p)
        np.copyto(lo, mid + 1.0, where=todo & ~p)
        todo = lo < hi
    return lo.astype(np.int64)


def nothing_inside(grid, spatial) -> bool:
    """True when no output voxel of the block ``spatial`` is inside the input."""
    if isinstance(grid, Grid):
        return any(not m.any() for m in axis_masks(grid, spatial))
    if hasattr(grid, "inside_mask"):  # a grid that maps each voxel on its own (warp.WarpGrid)
        return not grid.inside_mask(spatial).any()
    return nothing_in(row_spans(grid, spatial))


def nothing_in(spans) -> bool:
    """True when ``row_spans`` found no voxel inside."""
    lo, hi = spans
    return not (hi > lo).any()


def fill_outside(block: np.ndarray, grid, spatial, value, ws=None) -> None:
    """Write ``value`` (already in ``block``'s type) into every voxel of ``block`` outside the
    input.  ``block`` is in file order (``(..., z, y, x)``, any extra axes first); ``ws`` a
    ``Workspace`` for the mask of a ``ReferenceGrid``'s block (a fresh array without)."""
    if isinstance(grid, Grid):
        for a, ok in enumerate(axis_masks(grid, spatial)):
            if not ok.all():
                sl = [slice(None)] * block.ndim
                sl[block.ndim - 1 - a] = ~ok
                block[tuple(sl)] = value
        return
    if hasattr(grid, "inside_mask"):  # its own per-voxel rule (warp.WarpGrid): (z, y, x), True inside
        np.copyto(block, value, where=~grid.inside_mask(spatial, ws))
        return
    fill_rows(block, row_spans(grid, spatial), value, ws)


def fill_rows(block: np.ndarray, spans, value, ws=None) -> None:
    """``fill_outside`` on a ``ReferenceGrid``'s block, from its ``row_spans``: through a
    mask of the block's spatial shape (1 byte a voxel), only where some row is cut."""
    lo, hi = spans
    nx = block.shape[-1]
    if (lo == 0).all() and (hi == nx).all():
        return
    shape = block.shape[block.ndim - 3:]
    mask = ws.array("itk_mask", shape, bool) if ws is not None else np.empty(shape, bool)
    beyond = ws.array("itk_beyond", shape, bool) if ws is not None else np.empty(shape, bool)
    # in 32 bits where a row is shorter than 2**31 and into reused buffers: the 64-bit
    # comparisons and the fresh mask took about 18 ms of a 512x512x19 block, now about 6
    # (benchmarks/README.md, "The rotated order-1 row")
    kind = np.int32 if nx < 2**31 else np.int64
    j = np.arange(nx, dtype=kind)
    np.less(j, lo.astype(kind)[..., None], out=mask)
    np.greater_equal(j, hi.astype(kind)[..., None], out=beyond)
    np.logical_or(mask, beyond, out=mask)
    np.copyto(block, value, where=mask)
