"""The general path: resampling onto a reference grid of any orientation.

A rotated (or sheared) target is not separable, so the per-axis engine of
``bigresample.engine`` does not apply.  Each output block is instead computed
by the compiled kernel of ``bigresample.kernel`` on the *input window* the
block needs:

* the kernel computes each voxel's input coordinate as scipy's own
  ``affine_transform`` computes it (``((offset + o_x m_0) + o_y m_1) + o_z m_2``,
  the C loop's order) where it uses it (no coordinate arrays), and follows
  scipy's taps, weights and boundary rules: order 0 gives the whole-array
  call's values bit for bit (nearest-neighbour ties included), order 1 within
  a few 1e-16 of the range (the taps are summed in another order);
* the window is the bounding box of those coordinates plus the interpolation
  support, plus the prefilter halo of ``bigresample.splines.halo`` for orders
  >= 2 (the B-spline coefficients of a window differ from the whole volume's by
  less than 1e-7 of the range beyond it);
* at the volume's edges the window's edge *is* the volume's edge, so scipy's
  boundary handling (its 12-voxel pre-pad for ``nearest``/``grid-constant``,
  the mode's prefilter initialisation) is reproduced; for the modes that fold
  the volume onto itself (``wrap``, ``reflect``, ``mirror`` and their grid
  variants) a block that reaches outside the volume reads the whole axis.

An axis-aligned reference (flips allowed) never comes here: its grid is
separable (``ReferenceGrid.separable``) and goes to the per-axis engine; nor
does one that permutes the input's axes (``ReferenceGrid.permutation``: the
same engine on the input's axis order, ``bigresample.permuted``).

Everything works in file order (axes reversed: ``(..., z, y, x)``), like
``Resampler.compute_into``, so a NIfTI window is read and the block written
without transposing.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from math import prod

import numpy as np

from . import bounds, splines
from .engine import Sampling, Workspace, _Fresh, ndimage, read_file_order, slice_lengths, cast_into
from .geometry import ReferenceGrid, check_coordinates

#: Modes whose outside samples come from elsewhere in the volume.
FOLDING_MODES = ("wrap", "grid-wrap", "reflect", "mirror", "grid-mirror")
#: scipy pre-pads the input by NPAD voxels (edge values, or cval) before its
#: spline filter in these modes (``splines.PREPAD_MODES``).
PREPAD, PREPAD_MODES = splines.NPAD, splines.PREPAD_MODES
#: The per-block working set the planner aims for on this path, whose windows
#: are boxes around rotated blocks: bigger blocks waste less of the prefilter on
#: window overlap (bench_reference.py, order 3, 384x384x256 onto a 15-degree
#: grid: 6.4 s at 110 MiB per block, 4.0 s at 460 MiB).
TARGET_BLOCK_BYTES_GENERAL = 512 * 2**20
#: ... and at orders >= 2, where the blocks are scored on the coefficients
#: they prefilter (512x512x300 onto a grid rotated 15/7 degrees, order 3,
#: --chunks by hand, one run each: 512x64x75 (the plan at 512 MiB scored on
#: the read window) 7.99 s, 512x128x75 (this plan) 6.21 s, 512x512x38 7.64 s,
#: 512x128x150 5.63 s at 1.1 GB peak RSS).
TARGET_BLOCK_BYTES_GENERAL_SPLINE = 768 * 2**20
#: Axes this short are always read whole (scipy prefilters short lines with
#: whole-line initial conditions).
SHORT_AXIS = 64


@dataclass(frozen=True)
class AffineResampler(Sampling):
    """Output blocks on a ``ReferenceGrid`` (small, picklable), equal to
    ``scipy.ndimage.affine_transform(input, grid.homogeneous, output_shape=grid.out_shape)``."""

    grid: ReferenceGrid

    def __post_init__(self):
        super().__post_init__()
        # a grid made without reference_grid: empty shapes and coordinates the
        # kernel cannot trust are refused here too, in one line
        check_coordinates(self.grid.in_shape, self.grid.out_shape, self.grid.matrix, self.grid.offset)

    separable = False  # a rotated grid: no per-axis plans

    @property
    def min_blocks_per_worker(self) -> int:
        """Blocks per worker the plan makes at least (thinner slabs if need be).
        Orders 0 and 1 want more: their windows of whole planes are mapped, not
        read, so a thinner slab costs little, and the last blocks' writes overlap
        less work (512x512x300 onto a grid rotated 15/7 degrees, order 1,
        alternating runs: slabs of 38 planes 1.75-4.00 s, of 19 planes 0.98-1.13 s,
        of 10 planes 1.27-1.33 s)."""
        return 8 if self.order < 2 else 4

    @property
    def target_block_bytes(self) -> int:
        """The per-block working set the planner aims for (``TARGET_BLOCK_BYTES_GENERAL*``)."""
        return TARGET_BLOCK_BYTES_GENERAL_SPLINE if self.order > 1 else TARGET_BLOCK_BYTES_GENERAL

    def planning_work(self, block) -> int:
        """What a block costs the planner, in input voxels: at orders >= 2 the
        prefilter's three passes over every coefficient of the block's support,
        else the window it reads."""
        return prod(self.coefficient_shape(block) if self.order > 1 else self.window_shape(block))

    def block_bytes(self, block, in_itemsize: int, out_itemsize: int) -> int:
        return block_bytes(self, block, in_itemsize, out_itemsize)

    def reaching(self, region, lo, hi, folding_reach=None):
        """The output bounding box, within ``region``, of the input box ``[lo, hi]``'s
        corners, or None (the whole block when ``folding_reach`` is given and the block
        reads beyond an edge by more than it, or the box is unbounded)."""
        if folding_reach is not None:
            cmin, cmax = self._corners(region)
            if np.any(cmin < folding_reach) or np.any(cmax > np.array(self.grid.in_shape) - 1 - folding_reach):
                return tuple(region)
        if not (np.all(np.isfinite(lo)) and np.all(np.isfinite(hi))):
            return tuple(region)
        corners = np.array([[hi[a] if (c >> a) & 1 else lo[a] for a in range(3)] for c in range(8)])
        o = np.linalg.solve(self.grid.matrix, (corners - self.grid.offset).T).T
        omin, omax = np.floor(o.min(axis=0)) - 1, np.ceil(o.max(axis=0)) + 1
        out = []
        for s, a, b in zip(region, omin, omax):
            a, b = max(s.start, int(a)), min(s.stop, int(b) + 1)
            if b <= a:
                return None
            out.append(slice(a, b))
        return tuple(out)

    @property
    def reach(self) -> int:
        """Input voxels beyond a coordinate's floor that its value can depend on."""
        return (self.order + 1) // 2 + 1 + (self.halo if self.order > 1 else 0)

    def _corners(self, region) -> tuple[np.ndarray, np.ndarray]:
        """Lowest and highest input coordinate per input axis over the block."""
        lo = np.array([s.start for s in region[:3]], dtype=np.float64)
        hi = np.array([s.stop - 1 for s in region[:3]], dtype=np.float64)
        corners = np.array([[hi[a] if (c >> a) & 1 else lo[a] for a in range(3)] for c in range(8)])
        coords = corners @ self.grid.matrix.T + self.grid.offset
        return coords.min(axis=0), coords.max(axis=0)

    def window(self, region) -> list[tuple[int, int]]:
        """``(start, stop)`` of the input window read per input axis for the
        output block ``region``: the samples its taps reach (``_support``),
        widened to whole rows (``_whole_rows``) as the block would be away from
        the volume's edges (as ``window_shape`` counts it): a window cut short
        by an edge reads whole rows too, not one short read per row."""
        return _whole_rows(self._support(region), self.grid.in_shape, self._support(region, clip=False))

    def coefficient_window(self, region) -> list[tuple[int, int]]:
        """The part of ``window`` the kernel works on: at orders >= 2 only the
        samples the block's taps and prefilter halo reach (each sample of the
        window costs a prefilter pass per axis), at orders 0 and 1 the whole
        read window (the kernel reads it as one C-ordered array)."""
        return self._support(region) if self.order > 1 else self.window(region)

    def _support(self, region, clip: bool = True) -> list[tuple[int, int]]:
        """Per input axis, the samples the block's taps (and prefilter halo) reach
        (``clip=False``: as many from 0 as they would be away from the edges)."""
        return self._support_of(*self._corners(region), clip=clip)

    def _support_of(self, cmin, cmax, clip: bool = True) -> list[tuple[int, int]]:
        """Per input axis, the samples the taps (and prefilter halo) of coordinates
        in ``[cmin, cmax]`` reach, the window's edge at the volume's where it reaches it
        (``clip=False``: as many from 0 as they would be away from the edges)."""
        reach = self.reach
        out = []
        for n, c0, c1 in zip(self.grid.in_shape, cmin, cmax):
            a, b = int(np.floor(c0)) - reach, int(np.floor(c1)) + reach + 1
            if not clip:  # as _support_ranges counts a block's width
                out.append((0, min(int(np.ceil(c1 - c0)) + 2 * reach + 2, n)))
                continue
            if n <= SHORT_AXIS or (self.mode in FOLDING_MODES and (a < 0 or b > n)):
                out.append((0, n))
                continue
            # a block beyond an edge still needs the volume's last voxels
            # (edge values, the pre-pad, the prefilter's boundary)
            keep = min(n, 2 * reach + 2)
            a = min(max(a, 0), n - keep)
            b = max(min(b, n), keep)
            out.append((a, b))
        return out

    def window_shape(self, block) -> tuple[int, ...]:
        """Largest window (input voxels per axis) an output block of shape ``block`` reads."""
        return tuple(b - a for a, b in _whole_rows(self._support_ranges(block), self.grid.in_shape))

    def coefficient_shape(self, block) -> tuple[int, ...]:
        """Largest ``coefficient_window`` of an output block of shape ``block``."""
        if self.order < 2:
            return self.window_shape(block)
        return tuple(b - a for a, b in self._support_ranges(block))

    def _support_ranges(self, block) -> list[tuple[int, int]]:
        """Per input axis, the largest ``_support`` of a block of shape ``block``, from 0."""
        span = self._spans(block)
        ranges = []
        for n, s in zip(self.grid.in_shape, span):
            w = int(np.ceil(s)) + 2 * self.reach + 2
            whole = n <= SHORT_AXIS or (self.mode in FOLDING_MODES and self._leaves)
            ranges.append((0, n if whole else min(w, n)))
        return ranges

    def _spans(self, block) -> np.ndarray:
        """Per input axis, the largest extent of a block's coordinates (``block``: its shape)."""
        return np.abs(self.grid.matrix) @ (np.asarray(block[:3], dtype=np.float64) - 1)

    @cached_property
    def _leaves(self) -> bool:
        """True if some output sample's support reaches outside the input."""
        cmin, cmax = self._corners(tuple(slice(0, m) for m in self.grid.out_shape))
        return bool(np.any(np.floor(cmin) - self.reach < 0)
                    or np.any(np.floor(cmax) + self.reach + 1 > np.array(self.grid.in_shape)))

    def input_region(self, region) -> tuple[slice, ...]:
        return tuple(slice(a, b) for a, b in self.window(region))

    def compute(self, source, region, dtype=None) -> np.ndarray:
        """The output block ``region`` as a new array (spatial axes first)."""
        return self.compute_into(source, region, dtype, _Fresh()).T

    def compute_into(self, source, region, dtype, ws: Workspace) -> np.ndarray:
        """The block in file order, C-ordered, in ``ws``'s buffers (as ``Resampler.compute_into``)."""
        from . import kernel

        spatial, extra, bshape, extra_shape, dtype, out = block_output(source, region, dtype, ws)
        rows = None
        if self.itk:  # ITK's rule: cval beyond half a voxel of the input (bounds.row_spans, per output row)
            spans = bounds.row_spans(self.grid, spatial)
            if bounds.nothing_in(spans):
                fill = np.empty((), dtype=dtype)
                cast_into(np.array(self.cval), fill)
                out[...] = fill
                return out
            # the kernel computes each row's part inside and writes cval around it (cast as scipy's
            # values are: the voxels bounds.fill_rows would write, without computing them first)
            rows = np.stack(spans).astype(np.int64, copy=False)
        read_range, win_range = self.window(spatial), self.coefficient_window(spatial)
        win = read_window(source, read_range, win_range, extra, extra_shape, ws)
        pad = PREPAD if self.order > 1 and self.mode in PREPAD_MODES else 0
        first = np.array([a for a, _ in win_range], dtype=np.int64)
        length = np.array(self.grid.in_shape, dtype=np.int64) + 2 * pad
        origin = np.array([s.start for s in spatial], dtype=np.int64)
        direct = dtype in (np.float32, np.float64)  # else float64 values, stored as scipy stores them
        values = None if direct else ws.array("values", bshape[::-1], np.float64)
        for idx in np.ndindex(*extra_shape[::-1]) if extra_shape else [()]:
            data = self._coefficients(win[idx], pad, ws) if self.order > 1 else win[idx]
            dst = out[idx] if direct else values
            bad = kernel.resample_block(data, dst, self.grid.matrix, self.grid.offset, origin, first, length,
                                        pad=float(pad), order=self.order, mode=kernel.MODE_CODES[self.mode],
                                        cval=self.cval, rows=rows)
            if bad:  # pragma: no cover - the window is planned to hold every tap
                raise RuntimeError(f"{bad} samples of block {region} read outside its window {win_range}")
            if not direct:
                cast_into(values, out[idx])
        return out

    def _coefficients(self, win, pad, ws) -> np.ndarray:
        """B-spline coefficients of the window, as scipy's ``map_coordinates``
        makes them (pre-padded by ``pad`` with edge values or cval, then
        ``spline_filter`` with the mode), in a reused workspace buffer: fresh
        window-sized arrays per block cost more in page faults than the filter.
        Axes of 64 samples or more go through the compiled ``_prefilter``
        (``splines.prefilter_planes``' recursions and starts: scipy's,
        streamed), shorter ones through scipy's ``spline_filter1d``."""
        shape = tuple(n + 2 * pad for n in win.shape)
        coef = ws.array("coef", shape, np.float64)
        inner = tuple(slice(pad, pad + n) for n in win.shape)
        coef[inner] = win
        # np.pad, as scipy calls it, pads in the window's type: cval cast to it
        with np.errstate(invalid="ignore"):
            fill = np.array(self.cval).astype(win.dtype)
        for ax in range(3):
            if not pad:
                break
            lead = (slice(None),) * ax
            n = shape[ax]
            for part, edge in ((slice(0, pad), slice(pad, pad + 1)), (slice(n - pad, n), slice(n - pad - 1, n - pad))):
                coef[lead + (part,)] = fill if self.mode == "grid-constant" else coef[lead + (edge,)]
        for ax in range(3):
            if shape[ax] < 2:
                continue
            if shape[ax] >= splines.PLANEWISE_MIN_LEN:
                _prefilter(coef, self.order, self.mode, ax, ws)
            else:
                ndimage().spline_filter1d(coef, self.order, axis=ax, output=coef, mode=self.mode)
        return coef


def block_output(source, region, dtype, ws):
    """What a point-by-point resampler's ``compute_into`` starts from: the block's spatial
    slices and further ones, its spatial shape and the further axes' lengths, the output
    type (the stored one when ``dtype`` is None) and the output buffer in file order."""
    spatial, extra = tuple(region[:3]), tuple(region[3:])
    dtype = np.dtype(source.dtype if dtype is None else dtype)
    bshape = tuple(s.stop - s.start for s in spatial)
    extra_shape = slice_lengths(extra, source.shape[3:])
    return spatial, extra, bshape, extra_shape, dtype, ws.array("out", (bshape + extra_shape)[::-1], dtype)


def read_window(source, read_range, win_range, extra, extra_shape, ws) -> np.ndarray:
    """The input window ``read_range`` (``(start, stop)`` per spatial axis; the
    extra axes ``extra``, of lengths ``extra_shape``) in file order and in a
    type the kernel reads (mapped without a copy where the source can), as
    the view of its part ``win_range`` (orders >= 2: the samples the taps and
    the prefilter halo reach)."""
    sl = tuple(slice(a, b) for a, b in read_range) + extra
    mapped = getattr(source, "mapped", None)
    win = mapped(sl) if mapped is not None else None
    if win is None:
        win = ws.array("win", (tuple(b - a for a, b in read_range) + extra_shape)[::-1], source.dtype)
        read_file_order(source, sl, win)
    win = _native(win, ws)
    if win_range != read_range:  # orders >= 2: a view of the samples the taps and halo reach
        inner = tuple(slice(a - r, b - r) for (a, b), (r, _) in zip(win_range, read_range))
        win = win[(Ellipsis,) + inner[::-1]]
    return win


def _prefilter(coef, order, mode, axis, ws) -> None:
    """``splines.prefilter_planes`` along ``axis`` of the C-ordered 3-d
    ``coef``, in place, by the compiled ``kernel.prefilter_lines`` (the same
    values bit for bit): along z and y the lines of a plane row advance
    together; along x (scipy's ``spline_filter1d`` before, one line at a time)
    the rows of a plane do (bench_kernel.py: the prefilter)."""
    from . import kernel

    z, y, x = coef.shape
    view = (coef.reshape(1, z, y * x), coef, coef.transpose(0, 2, 1))[axis]
    zs = np.array(splines.poles(order))
    horizons = np.array([splines.start_horizon(p, view.shape[1]) for p in zs], dtype=np.int64)
    gain = splines.prefilter_gain(zs)
    acc = ws.array("prefilter", (view.shape[2],), np.float64)
    kernel.prefilter_lines(view, gain, zs, horizons, kernel.PREFILTER_KINDS[splines.start_kind(mode)], acc)


def _native(win, ws) -> np.ndarray:
    """The window in a type the kernel reads: float16 as float32 (scipy's C
    code has no float16 either), other byte orders as the machine's, bool as uint8."""
    if win.dtype == np.float16:
        kind = np.dtype(np.float32)
    elif win.dtype == np.bool_:
        kind = np.dtype(np.uint8)
    elif not win.dtype.isnative:
        kind = win.dtype.newbyteorder("=")
    else:
        return win
    native = ws.array("native", win.shape, kind)
    np.copyto(native, win, casting="unsafe")
    return native


def _whole_rows(ranges, shape, widest=None) -> list[tuple[int, int]]:
    """Widen a window covering half of x or more to whole rows (and then half of
    y or more to whole planes): one read per plane (or one read) instead of one
    per row, at most twice the bytes (bench_reference.py: 308k row reads, 1.3 s
    of a 2.4 s order-1 run).  ``widest``: decide on these ranges instead (the
    widest window of the block's shape, so that its blocks at the edges read as
    the planner counted)."""
    out, widths = list(ranges), list(ranges if widest is None else widest)
    for ax in range(2):
        if ax > 0 and out[ax - 1] != (0, shape[ax - 1]):
            break
        a, b = widths[ax]
        if 2 * (b - a) >= shape[ax]:
            out[ax] = (0, shape[ax])
    return out


def block_bytes(resampler: AffineResampler, block, in_itemsize: int, out_itemsize: int) -> int:
    """Estimated peak bytes of one worker computing an output block of shape ``block``:
    the window in the stored type (twice: a native copy for float16 or another
    byte order), its float64 B-spline coefficients with scipy's pre-pad (orders
    >= 2), the output block and its float64 values (integer outputs), and with
    ITK's rule two bytes a voxel (the kernel is given each row's part inside, 16 bytes a row;
    the two-byte masks ``bounds.fill_rows`` made before are still counted: the plans stay as they were)."""
    window, out = prod(resampler.window_shape(block)), prod(block)  # Python ints: no int64 wrap on absurd grids
    total = 2 * window * in_itemsize + 8 * out + 2 * out * out_itemsize + (2 * out if resampler.itk else 0)
    if resampler.order > 1:
        pad = 2 * PREPAD if resampler.mode in PREPAD_MODES else 0
        total += prod(w + pad for w in resampler.coefficient_shape(block)) * 8
    return int(total)
