"""The block engine: one output block from one input region.

A diagonal (axis-aligned) resampling is separable: scipy's result is, along
each spatial axis in turn, a prefilter (orders >= 2) followed by a weighted sum
of ``order + 1`` taps, and these per-axis operators commute.  So a block is
computed axis by axis from an input window that holds exactly the taps its
samples need, widened by the prefilter halo (``splines.halo``) wherever the
window is cut inside the volume.  At the volume's own edges the window ends
where the volume ends and is pre-padded and prefiltered exactly as scipy does
it, so boundary modes agree with the whole-array call.

Per axis the plan is pure index arithmetic (``plan_axis``); ``Resampler.compute``
reads the window through the source's ``__getitem__`` (a numpy array, a
nibabel array proxy, a zarr array...) and never touches anything else.
"""

from __future__ import annotations

import itertools
import threading
from dataclasses import dataclass
from functools import lru_cache
import math
from math import prod

import numpy as np

from . import bounds, kernel, splines, timeline
from .geometry import AxisMap, Grid

#: Gaps between needed input runs up to this many voxels are read through
#: rather than split into separate reads.
READ_GAP = 64

#: Lines shorter than this are prefiltered in 'reflect' mode even where the
#: samples fall on input voxels (scipy's filter start is inexact there).
REFLECT_EXACT_LEN = 32


@dataclass(frozen=True)
class AxisPlan:
    """How one output block is made along one axis.

    ``src`` lists, for each position of the block's local input line, the input
    index it holds (``-1``: the value ``cval``).  ``segments`` are the local
    ranges to prefilter, each as an independent line.  ``index``/``weights``
    give the taps in local coordinates (``index`` None: the local line *is* the
    output, no interpolation).  A tap equal to ``len(src)`` reads the cval slot
    appended after prefiltering ('grid-constant' taps outside the line).
    ``outside`` marks output samples that are ``cval`` ('constant' mode).
    """

    src: np.ndarray
    segments: tuple[tuple[int, int], ...]
    index: np.ndarray | None
    weights: np.ndarray | None
    outside: np.ndarray
    cval_slot: bool

    @property
    def size(self) -> int:
        return len(self.outside)


def _split_runs(values: np.ndarray, gap: int) -> list[tuple[int, int]]:
    """Sorted unique ints -> [(start, stop)] runs, splitting where the gap > gap."""
    if len(values) == 0:
        return []
    cut = np.nonzero(np.diff(values) > gap)[0]
    starts = np.concatenate([[0], cut + 1])
    stops = np.concatenate([cut + 1, [len(values)]])
    return [(int(values[a]), int(values[b - 1]) + 1) for a, b in zip(starts, stops)]


def sorted_unique(a: np.ndarray) -> np.ndarray:
    """``np.unique`` of a 1-D integer array, without it: numpy 2's ``unique`` asks
    ``np.ma.is_masked``, which imports ``numpy.ma`` on a run's first block (25-50 ms
    in each worker's first block, benchmarks/README.md, "Start-up")."""
    a = np.sort(a)
    if a.size < 2:
        return a
    keep = np.empty(a.size, dtype=bool)
    keep[0] = True
    np.not_equal(a[1:], a[:-1], out=keep[1:])
    return a[keep]


@lru_cache(maxsize=4096)
def plan_axis(
    ax: AxisMap, start: int, stop: int, order: int, mode: str, ndim: int, copy: bool = False, halo=None
) -> AxisPlan:
    """Plan output samples ``start:stop`` of one axis (see ``AxisPlan``).

    ``copy``: the whole resampling is a copy (scipy.ndimage.zoom returns its
    input unchanged when every zoom factor is 1).  ``halo``: the prefilter
    halo the windows are widened by, one number or a ``(before, after)`` pair
    (None: ``splines.halo(order, ndim)``).
    """
    coords = ax.coordinates(start, stop)
    n = ax.n
    size = stop - start
    no_outside = np.zeros(size, dtype=bool)

    # Samples that fall exactly on input voxels need no interpolation: the
    # spline through the data passes through the data.  Except that scipy's
    # 'reflect' prefilter is inexact on short lines (up to 1e-2 of the range
    # for order 5 on 2 voxels, below 1e-15 from 20 voxels on: see
    # tests/test_splines.py), and the reference must be matched as it is.
    exact_prefilter = copy or not (order > 1 and mode == "reflect" and n < REFLECT_EXACT_LEN)
    if (
        exact_prefilter
        and np.all(coords == np.floor(coords))
        and coords.min() >= 0
        and coords.max() <= n - 1
    ):
        src = coords.astype(np.int64)
        return AxisPlan(src, (), None, None, no_outside, False)

    t = splines.taps(coords, n, order, mode)
    length, npad = t.length, t.npad
    if order == 0 and not t.outside.any() and _plain_range(t.index[:, 0]) is not None:
        # nearest neighbours that are consecutive voxels (a ratio within
        # rounding of 1): a plain read, nothing to interpolate
        return AxisPlan(t.index[:, 0].copy(), (), None, None, no_outside, False)
    used = ~t.outside
    if not used.any():  # every sample is cval ('constant' mode)
        return AxisPlan(np.zeros(0, np.int64), (), None, None, t.outside.copy(), False)
    idx = t.index[used]
    needed = sorted_unique(idx[idx >= 0])

    filtered = order > 1
    periodic = filtered and mode == "grid-wrap"
    clusters, windows = _windows(needed, length, order, ndim, mode, halo)
    if not windows:  # every tap reads cval ('grid-constant' far outside)
        local = np.zeros_like(t.index)
        return AxisPlan(np.zeros(0, np.int64), (), local, t.weights, t.outside.copy(), True)
    # local line: the windows one after the other
    offsets = np.cumsum([0] + [b - a for a, b in windows])
    p = np.concatenate([np.arange(a, b) for a, b in windows])
    u = p - npad
    if periodic:
        src = np.mod(u, n)
    elif mode == "nearest":
        src = np.clip(u, 0, n - 1)
    else:  # 'grid-constant' pads with cval; other modes have npad == 0
        src = np.where((u >= 0) & (u < n), u, -1)
    segments = tuple((int(offsets[i]), int(offsets[i + 1])) for i in range(len(windows))) if filtered else ()

    # taps -> local positions: each needed index lies in its own cluster's
    # window, at least a halo away from any cut of that window
    local = np.zeros_like(t.index)
    valid = (t.index >= 0) & used[:, None]
    k = t.index[valid]
    if len(windows) == 1:
        which = np.zeros(len(k), dtype=np.int64)
    else:
        which = np.searchsorted(np.array([a for a, _ in clusters]), k, side="right") - 1
    wstarts = np.array([a for a, _ in windows])
    local[valid] = offsets[which] + k - wstarts[which]
    cval_slot = bool(((t.index < 0) & used[:, None]).any())
    local[(t.index < 0) & used[:, None]] = len(src)
    return AxisPlan(src, segments, local, t.weights, t.outside.copy(), cval_slot)


def _prefilter_planes(x: np.ndarray, coef: np.ndarray, order: int, mode: str, axis: int, ws) -> None:
    """``splines.prefilter_planes(x, coef, order, mode, axis)`` by ``kernel.prefilter_lines``
    (compiled: the same operations, so the same values bit for bit; the lines of a plane
    advance together, the GIL released): ``x`` copied into ``coef`` (C-ordered but along
    ``axis``; nothing to copy when they are one), then filtered there in place."""
    if coef is not x:
        np.copyto(coef, x, casting="unsafe")
    n = coef.shape[axis]
    view = coef.view()
    view.shape = (prod(coef.shape[:axis]), n, prod(coef.shape[axis + 1:]))  # a view, never a copy
    zs = splines.poles(order)
    horizons = np.array([splines.start_horizon(z, n) for z in zs], dtype=np.int64)
    acc = ws.array("prefilter", (view.shape[2],), np.float64)
    kernel.prefilter_lines(view, splines.prefilter_gain(zs), np.array(zs), horizons,
                           kernel.PREFILTER_KINDS[splines.start_kind(mode)], acc)


def _prefilter_rows(x: np.ndarray, coef: np.ndarray, order: int, mode: str, ws) -> None:
    """The prefilter along the last axis by ``kernel.prefilter_lines``, the rows of a plane
    advancing together: ``splines.prefilter_planes``' operations, whose truncated boundary
    starts equal scipy's ``spline_filter1d`` (the route otherwise) to rounding, not bit for bit.
    Taken for a label's indicator only (``Sampling.prefilter_halo`` set): the label methods
    promise the reference's arg-max beyond rounding, the intensity path scipy's values."""
    if coef is not x:
        np.copyto(coef, x, casting="unsafe")
    rows = coef.view()
    rows.shape = (prod(coef.shape[:-2]), coef.shape[-2], coef.shape[-1])  # a view, never a copy
    view = rows.transpose(0, 2, 1)
    n = view.shape[1]
    zs = splines.poles(order)
    horizons = np.array([splines.start_horizon(z, n) for z in zs], dtype=np.int64)
    acc = ws.array("prefilter", (view.shape[2],), np.float64)
    kernel.prefilter_lines(view, splines.prefilter_gain(zs), np.array(zs), horizons,
                           kernel.PREFILTER_KINDS[splines.start_kind(mode)], acc)


def _spline_filter(x: np.ndarray, coef: np.ndarray, order: int, mode: str, axis: int, ws) -> None:
    """``scipy.ndimage.spline_filter1d(x, order, axis, output=coef, mode=mode)`` by
    ``kernel.spline_filter_lines``: scipy's operations on each line, so its values bit for bit
    (tests/test_kernel.py pins them), but the lines of a plane advance together (one pass per
    direction over a strided axis, where scipy walks one line at a time; the last axis' rows
    side by side, as ``_prefilter_rows``) and the GIL released.  Taken for lines shorter than
    ``splines.PLANEWISE_MIN_LEN`` (3.6x scipy's speed along x for rows of 40 in planes of 300,
    0.13x for rows of 512, where scipy's one contiguous line at a time wins).  ``x`` copied
    into ``coef`` (nothing to copy when they are one), then filtered there in place."""
    if coef is not x:
        np.copyto(coef, x, casting="unsafe")
    view = coef.view()
    if axis == coef.ndim - 1 and coef.ndim > 1:
        view.shape = (prod(coef.shape[:-2]), coef.shape[-2], coef.shape[-1])  # a view, never a copy
        view = view.transpose(0, 2, 1)
    else:
        view.shape = (prod(coef.shape[:axis]), coef.shape[axis], prod(coef.shape[axis + 1:]))
    acc = ws.array("prefilter", (view.shape[2],), np.float64)
    kernel.spline_filter_lines(view, order, kernel.PREFILTER_KINDS[splines.start_kind(mode)], acc)


def _windows(needed: np.ndarray, length: int, order: int, ndim: int, mode: str, halo=None):
    """``(clusters, windows)`` of one axis: the runs of ``needed`` tap indices
    (split where far apart) and the local line's windows around them, in
    padded-line coordinates (below 0 for 'grid-wrap'), widened by the
    prefilter halo for orders >= 2 (the whole line if a periodic window
    would cover it)."""
    h = h_lo = h_hi = splines.halo(order, ndim)
    if halo is not None:
        h_lo, h_hi = (halo, halo) if np.ndim(halo) == 0 else halo
        h = max(h_lo, h_hi)
    filtered = order > 1
    windows: list[tuple[int, int]] = []
    if not filtered:
        gap = READ_GAP
    else:  # a halo set lower (a label's indicator) is sized for the window's outer cuts only: one window
        gap = 2 * h + 1 if halo is None else length
    clusters = _split_runs(needed, gap)
    for k0, k1 in clusters:
        if not filtered:
            windows.append((k0, k1))
        elif mode == "grid-wrap":
            a, b = k0 - h, k1 + h
            if b - a >= length or (a <= 0 and b >= length):
                return clusters, [(0, length)]  # the whole (periodic) line: exact
            windows.append((a, b))
        else:
            windows.append((max(0, k0 - h_lo), min(length, k1 + h_hi)))
    return clusters, windows


def cast_into(src: np.ndarray, dst: np.ndarray, tmp: np.ndarray | None = None) -> None:
    """``dst[...] = src`` with scipy.ndimage's output conversion.

    Floats into integers: rounded half away from zero and saturated (never
    wrapped).  Integers into a narrower integer type: saturated.  ``tmp`` is
    an optional float64 scratch of ``src``'s shape (no allocation then).
    """
    if dst.dtype.kind not in "iu":
        np.copyto(dst, src, casting="unsafe")
        return
    info = np.iinfo(dst.dtype)
    if src.dtype.kind in "iub":
        if np.can_cast(src.dtype, dst.dtype):
            np.copyto(dst, src, casting="unsafe")
        else:
            lo = max(info.min, np.iinfo(src.dtype).min) if src.dtype.kind != "b" else 0
            hi = min(info.max, np.iinfo(src.dtype).max) if src.dtype.kind != "b" else 1
            np.copyto(dst, np.clip(src, lo, hi), casting="unsafe")
        return
    if tmp is None:
        tmp = np.empty(src.shape, dtype=np.float64)
    np.abs(src, out=tmp)
    tmp += 0.5
    np.floor(tmp, out=tmp)
    np.copysign(tmp, src, out=tmp)
    np.clip(tmp, info.min, info.max, out=tmp)
    np.copyto(dst, tmp, casting="unsafe")


class Workspace:
    """Reusable buffers of one worker thread.

    Fresh memory costs a page fault per 4 KiB on first touch, which on these
    machines is slower than copying the data: a copy into a fresh 128 MiB
    array takes 6.7x as long as into a reused one, still 3.0x with numpy's
    huge pages (benchmarks/bench_engine.py).  Every large temporary of a block
    is taken from here and reused.
    """

    def __init__(self):
        self._bufs: dict[str, np.ndarray] = {}

    def array(self, name: str, shape, dtype) -> np.ndarray:
        dtype = np.dtype(dtype)
        # math.prod (np.prod costs ~10 us a call: 20000 calls for the cubic label benchmark)
        n = prod(int(v) for v in (shape if isinstance(shape, (tuple, list)) else (shape,))) * dtype.itemsize
        buf = self._bufs.get(name)
        if buf is None or buf.nbytes < n:
            buf = np.empty(max(n, 1), dtype=np.uint8)
            self._bufs[name] = buf
        return buf[:n].view(dtype).reshape(shape)

    @property
    def nbytes(self) -> int:
        return sum(b.nbytes for b in self._bufs.values())


_thread = threading.local()


def thread_workspace() -> Workspace:
    """The calling thread's own Workspace, kept for the thread's life (for
    tasks run by a pool, e.g. a dask worker's threads; its size is one
    block's working set)."""
    ws = getattr(_thread, "ws", None)
    if ws is None:
        ws = _thread.ws = Workspace()
    return ws


class _Fresh(Workspace):
    """A workspace that never reuses: for results handed to someone else."""

    def array(self, name, shape, dtype):
        return np.empty(shape, dtype=dtype)


def slice_lengths(slices, shape) -> tuple[int, ...]:
    """How many elements each slice takes of the axis it indexes."""
    return tuple(len(range(*s.indices(n))) for s, n in zip(slices, shape))


def read_file_order(source, slices, out: np.ndarray) -> None:
    """Read ``source[slices]`` (spatial-first) into ``out``, a C-ordered buffer
    in file order (axes reversed): straight in through the source's
    ``read_into`` when it has one (``rawio.RawReader``), else transposed."""
    reader = getattr(source, "read_into", None)
    if reader is not None:
        reader(slices, out)
    else:
        np.copyto(out, np.asarray(source[slices]).T)


def _read_generic(source, srcs: list[np.ndarray], extra: tuple[slice, ...], cval: float) -> np.ndarray:
    """Read the local window: ``out[i, j, ...] = source[srcs[0][i], srcs[1][j], ...]``.

    Reads one box per combination of runs (one box in the usual case), never
    the bounding box of far-apart runs, then gathers if the local line is not a
    plain range.  Positions with ``src == -1`` get ``cval``.  Spatial-first
    axis order, as the source returns it.
    """
    runs, positions = [], []
    for src in srcs:
        uniq = sorted_unique(src[src >= 0])
        r = _split_runs(uniq, READ_GAP)
        runs.append(r)
        if not r:
            positions.append(np.zeros(len(src), dtype=np.int64))
            continue
        starts = np.array([a for a, _ in r])
        base = np.cumsum([0] + [b - a for a, b in r])
        s = np.where(src >= 0, src, uniq[0])
        which = np.searchsorted(starts, s, side="right") - 1
        positions.append(base[which] + s - starts[which])
    if any(not r for r in runs):  # a whole axis of cval: nothing to read
        probe = np.asarray(source[tuple(slice(0, 1) for _ in srcs) + extra])
        shape = tuple(len(s) for s in srcs) + probe.shape[len(srcs):]
        return np.full(shape, cval, dtype=np.result_type(probe.dtype, np.float64))
    if all(len(r) == 1 for r in runs):
        compact = np.asarray(source[tuple(slice(*r[0]) for r in runs) + extra])
    else:
        bases = [np.cumsum([0] + [b - a for a, b in r]) for r in runs]
        compact = None
        for combo in itertools.product(*[range(len(r)) for r in runs]):
            piece = np.asarray(source[tuple(slice(*runs[ax][i]) for ax, i in enumerate(combo)) + extra])
            if compact is None:
                shape = tuple(int(b[-1]) for b in bases) + piece.shape[len(srcs):]
                compact = np.empty(shape, dtype=piece.dtype)
            compact[tuple(slice(bases[ax][i], bases[ax][i + 1]) for ax, i in enumerate(combo))] = piece
    out = _gather(compact, positions)
    masks = [s < 0 for s in srcs]
    if any(m.any() for m in masks):
        out = out.astype(np.result_type(out.dtype, np.float64), copy=True)
        for ax, m in enumerate(masks):
            if m.any():
                sl = [slice(None)] * out.ndim
                sl[ax] = m
                out[tuple(sl)] = cval
    return out


def _gather(a: np.ndarray, positions: list[np.ndarray]) -> np.ndarray:
    for ax, pos in enumerate(positions):
        if not (len(pos) == a.shape[ax] and np.array_equal(pos, np.arange(len(pos)))):
            a = np.take(a, pos, axis=ax)
    return a


def _plain_range(src: np.ndarray) -> tuple[int, int] | None:
    """(a, b) if ``src`` is exactly ``arange(a, b)``."""
    if len(src) == 0 or src[0] < 0:
        return None
    a, b = int(src[0]), int(src[-1]) + 1
    if b - a == len(src) and (len(src) < 2 or np.all(np.diff(src) == 1)):
        return a, b
    return None


def _shift_runs(index: np.ndarray) -> list[tuple[int, int]]:
    """Runs of outputs ``[o0, o1)`` whose taps are ``index[o0] + (o - o0)``.

    Inside a run every tap reads a plain slice of the input line, so the sum
    needs no gather.  A spacing within rounding of the input's makes 1-3 runs.
    """
    d = index[:, 0] - np.arange(len(index))
    consecutive = np.all(np.diff(index, axis=1) == 1, axis=1) if index.shape[1] > 1 else np.ones(len(index), bool)
    cuts = np.nonzero((np.diff(d) != 0) | ~consecutive[1:] | ~consecutive[:-1])[0] + 1
    bounds = np.concatenate([[0], cuts, [len(index)]])
    return [(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:])]


def _eval_last_axis_slices(x, index, weights, out, ws, tag, runs):
    """The contiguous-axis sum when the taps come in a few shifted runs."""
    xs = x.reshape(-1, x.shape[-1])
    os_ = out.reshape(-1, len(index))
    rows = max(1, _ROW_BYTES // (8 * max(len(index), 1)))
    for r0 in range(0, xs.shape[0], rows):
        r1 = min(r0 + rows, xs.shape[0])
        for o0, o1 in runs:
            w = o1 - o0
            dst = os_[r0:r1, o0:o1]
            i0 = int(index[o0, 0])
            plain = w > 1 or np.all(np.diff(index[o0]) == 1)
            if weights is None:
                cast_into(xs[r0:r1, i0 : i0 + w], dst)
                continue
            acc = ws.array(tag + "a", (r1 - r0, w), np.float64)
            tmp = ws.array(tag + "t", (r1 - r0, w), np.float64)
            for t in range(index.shape[1]):
                if plain:
                    src = xs[r0:r1, i0 + t : i0 + t + w]
                else:  # one output whose taps were folded at the edge
                    k = int(index[o0, t])
                    src = xs[r0:r1, k : k + 1]
                if t == 0:
                    np.multiply(src, weights[o0:o1, 0], out=acc)
                else:
                    np.multiply(src, weights[o0:o1, t], out=tmp)
                    acc += tmp
            cast_into(acc, dst, tmp)
    return out


#: Rows handled at once on the contiguous axis: keeps temporaries in cache.
_ROW_BYTES = 1 << 20


#: Types the compiled per-axis sum reads (``kernel.axis_sum``).
_COMPILED_TYPES = frozenset(np.dtype(t) for t in ("u1", "i1", "u2", "i2", "u4", "i4", "u8", "i8", "f4", "f8"))

#: Float64 sums of an integer output are made and stored this many bytes at a time.
_STORE_CHUNK_BYTES = 4 << 20


def _eval_axis(x, iax, index, weights, out, ws, tag):
    """``out[.., o, ..] = sum_t weights[o, t] * x[.., index[o, t], ..]`` along internal axis ``iax``.

    ``x`` and ``out`` are C-ordered.  Compiled (``kernel.axis_sum`` /
    ``axis_take``, the same values bit for bit) where the types allow it and
    the extension is built (``kernel.COMPILED``), else ``_eval_axis_numpy``.
    An output that is not float32/float64 (an integer type, float16) gets
    the float64 sums a few MiB at a time, stored with ``store``'s conversion
    (``_sum_stored``).
    """
    if out.size == 0:  # an axis of another step is empty (every tap of it reads cval): nothing to sum
        return out
    if (kernel.COMPILED and x.dtype in _COMPILED_TYPES and x.dtype.isnative and x.flags.c_contiguous
            and out.flags.c_contiguous):
        outer = prod(x.shape[:iax])
        inner = prod(x.shape[iax + 1 :])
        x3 = x.reshape(outer, x.shape[iax], inner)
        o3 = out.reshape(outer, len(index), inner)
        if weights is None:
            if out.dtype == x.dtype:
                kernel.axis_take(x3, o3, index)
                return out
        elif out.dtype in (np.float32, np.float64) and out.dtype.isnative:
            kernel.axis_sum(x3, o3, index, weights)
            return out
        else:
            _sum_stored(x3, o3, index, weights, ws, tag)
            return out
    return _eval_axis_numpy(x, iax, index, weights, out, ws, tag)


def _sum_stored(x3, o3, index, weights, ws, tag):
    """``kernel.axis_sum`` into float64 scratch of bounded size, then ``store``
    into ``o3`` (an integer or float16 output), piece by piece along its first
    axis (or, for a single one, its second)."""
    outer, m, inner = o3.shape
    per = max(1, _STORE_CHUNK_BYTES // (8 * max(1, m * inner)))
    if outer > 1 or m == 1:
        for a in range(0, outer, per):
            b = min(outer, a + per)
            acc = ws.array(tag + "c", (b - a, m, inner), np.float64)
            kernel.axis_sum(x3[a:b], acc, index, weights)
            cast_into(acc, o3[a:b], ws.array(tag + "t", acc.shape, np.float64))
        return
    per = max(1, _STORE_CHUNK_BYTES // (8 * max(1, inner)))
    for a in range(0, m, per):
        b = min(m, a + per)
        acc = ws.array(tag + "c", (1, b - a, inner), np.float64)
        kernel.axis_sum(x3, acc, index[a:b], weights[a:b])
        cast_into(acc, o3[:, a:b], ws.array(tag + "t", acc.shape, np.float64))


def _eval_axis_numpy(x, iax, index, weights, out, ws, tag):
    """``_eval_axis`` in numpy (any types, any layout).

    Along the contiguous last axis the taps are gathered a few rows at a
    time; along the others whole (hyper)planes are combined, one output index
    at a time, with plane-sized float64 accumulators that stay in cache.
    """
    m = len(index)
    ntaps = index.shape[1]
    if iax == x.ndim - 1:
        runs = _shift_runs(index)
        if len(runs) <= 8:
            return _eval_last_axis_slices(x, index, weights, out, ws, tag, runs)
        xs = x.reshape(-1, x.shape[-1])
        os_ = out.reshape(-1, m)
        rows = max(1, _ROW_BYTES // (8 * max(m, 1)))
        for r0 in range(0, xs.shape[0], rows):
            r1 = min(r0 + rows, xs.shape[0])
            n = r1 - r0
            if weights is None:
                if xs.dtype == os_.dtype:
                    np.take(xs[r0:r1], index[:, 0], axis=1, out=os_[r0:r1])
                else:
                    g = ws.array(tag + "g", (n, m), xs.dtype)
                    np.take(xs[r0:r1], index[:, 0], axis=1, out=g)
                    cast_into(g, os_[r0:r1], ws.array(tag + "t", (n, m), np.float64))
                continue
            g = ws.array(tag + "g", (n, m), xs.dtype)
            acc = ws.array(tag + "a", (n, m), np.float64)
            tmp = ws.array(tag + "t", (n, m), np.float64)
            np.take(xs[r0:r1], index[:, 0], axis=1, out=g)
            np.multiply(g, weights[:, 0], out=acc)
            for t in range(1, ntaps):
                np.take(xs[r0:r1], index[:, t], axis=1, out=g)
                np.multiply(g, weights[:, t], out=tmp)
                acc += tmp
            cast_into(acc, os_[r0:r1], tmp)
        return out
    lead = (slice(None),) * iax
    pshape = out.shape[:iax] + out.shape[iax + 1 :]
    acc = ws.array(tag + "a", pshape, np.float64) if weights is not None else None
    tmp = ws.array(tag + "t", pshape, np.float64)
    for o in range(m):
        dst = out[lead + (o,)]
        if weights is None:
            cast_into(x[lead + (int(index[o, 0]),)], dst, tmp)
            continue
        np.multiply(x[lead + (int(index[o, 0]),)], weights[o, 0], out=acc)
        for t in range(1, ntaps):
            np.multiply(x[lead + (int(index[o, t]),)], weights[o, t], out=tmp)
            acc += tmp
        cast_into(acc, dst, tmp)
    return out


#: Per-block working set the planner aims for when the budget allows more:
#: big enough to amortise the prefilter halo (orders >= 2) and the per-block
#: overheads, small enough that each worker's buffers stay few and cheap to
#: fault in (benchmarks/bench_speed.py, --chunks sweeps).
TARGET_BLOCK_BYTES = {0: 48 * 2**20, 1: 48 * 2**20}
TARGET_BLOCK_BYTES_SPLINE = 128 * 2**20


@dataclass(frozen=True)
class Sampling:
    """A grid and how it samples the input (order, mode, cval), checked:
    what every resampler is made of (small, picklable).

    ``mode='itk'`` (``bounds``) is kept as ``mode='nearest'`` (how the samples
    are computed) with ``itk`` set (``cval`` beyond half a voxel of the input)."""

    grid: object
    order: int = 1
    mode: str = "nearest"
    cval: float = 0.0
    itk: bool = False
    #: the prefilter halo the windows are cut with (orders >= 2): None (``splines.halo``, sized for
    #: any data), one number, or per spatial axis a ``(before, after)`` pair (the separable engine;
    #: the general path takes the largest).  Set lower only by a label method, for an indicator
    #: whose label lies far enough inside the window that the cut changes nothing it needs
    #: (``labels``, "Label maps" in docs/grids-and-exactness.md)
    prefilter_halo: object = None

    def __post_init__(self):
        object.__setattr__(self, "order", splines.parse_order(self.order))
        if bounds.parse_mode(self.mode) == bounds.ITK:
            object.__setattr__(self, "mode", "nearest")
            object.__setattr__(self, "itk", True)
        object.__setattr__(self, "mode", splines.parse_mode(self.mode))
        object.__setattr__(self, "cval", float(self.cval))
        object.__setattr__(self, "itk", bool(self.itk))
        if self.itk and self.mode != "nearest":
            raise splines.SplineError(f"ITK's rule samples the input with mode 'nearest'; got mode {self.mode!r}")

    @property
    def boundary(self) -> str:
        """The mode as asked: 'itk' or scipy's mode."""
        return bounds.ITK if self.itk else self.mode

    @property
    def ndim(self) -> int:
        return len(self.grid.in_shape)

    @property
    def halo(self) -> int:
        """Prefilter halo in voxels (0 for orders 0 and 1)."""
        if self.prefilter_halo is None:
            return splines.halo(self.order, self.ndim)
        return int(np.max(self.prefilter_halo))


@dataclass(frozen=True)
class Resampler(Sampling):
    """Everything that determines the values of a separable resampling.

    ``grid`` (a ``Grid``) covers the leading spatial axes; any further axes of
    the source (time, channels) are carried through untouched.
    """

    grid: Grid

    #: the block's input is read and summed axis by axis (``plans``): a label method can take the shortcut of
    #: ``labels._linear`` on it
    separable = True
    #: blocks per worker the planner makes at least (``resampling.BlockResampler``)
    min_blocks_per_worker = 4

    @property
    def target_block_bytes(self) -> int:
        """The per-block working set the planner aims for when the budget allows more."""
        return TARGET_BLOCK_BYTES.get(self.order, TARGET_BLOCK_BYTES_SPLINE)

    def window_shape(self, block) -> tuple[int, ...]:
        """Input voxels per axis that an output block of shape ``block`` reads (at most)."""
        shape = []
        for ax, b in zip(self.grid.axes, block):
            if ax.is_identity:
                shape.append(b)
                continue
            # math: numpy scalars cost the planner; abs: a flip has a negative step
            span = math.ceil(b * max(abs(ax.step), 1e-9)) + self.order + 1
            if self.order > 1:
                span += 2 * self.halo
            shape.append(min(span, ax.n + (24 if self.order > 1 else 0)))
        return tuple(shape)

    def planning_work(self, block) -> int:
        """What a block of shape ``block`` costs the planner, in input voxels: its window."""
        return prod(self.window_shape(block))

    def block_bytes(self, block, in_itemsize: int, out_itemsize: int) -> int:
        """Estimated peak bytes of one worker computing an output block of shape ``block``.

        What ``compute_into`` keeps in its workspace: the input window
        (block / zoom, plus the prefilter halo on resampled axes) in the stored
        type, twice when scipy's pre-padding applies; the float64 prefilter
        coefficients (orders >= 2); two float64 intermediates when more than one
        axis is resampled; the output block; its gzip member; and plane-sized
        float64 accumulators.
        """
        order = self.order
        wshape = self.window_shape(block)
        window = prod(wshape)  # Python ints: a 1e17-voxel grid's blocks would wrap int64
        plane = max(wshape[0], block[0]) * max(wshape[1], block[1])
        active = sum(not ax.is_identity for ax in self.grid.axes)
        out = prod(block)
        total = window * in_itemsize * (2 if order > 1 else 1) + 2 * out * out_itemsize + 4 * plane * 8
        if order > 1:
            total += window * 8
        if active > 1:
            total += 2 * max(window, out) * 8
        return int(total)

    def reaching(self, region, lo, hi, folding_reach=None):
        """The part of the output block ``region`` whose samples lie within the input box
        ``[lo, hi]`` (per axis, inclusive; infinite bounds allowed), or None.
        ``folding_reach``: in a mode that folds the volume, samples within this many voxels of
        an edge read it folded, so they count too."""
        out = []
        for ax, s, a, b in zip(self.grid.axes, region, lo, hi):
            x = ax.coordinates(s.start, s.stop)
            near = (x >= a) & (x <= b)
            if folding_reach is not None:
                near |= (x < folding_reach) | (x > ax.n - 1 - folding_reach)
            hit = np.flatnonzero(near)
            if not len(hit):
                return None
            out.append(slice(s.start + int(hit[0]), s.start + int(hit[-1]) + 1))
        return tuple(out)

    def plans(self, region: tuple[slice, ...]) -> list[AxisPlan]:
        """Per-axis plans of the output block ``region`` (spatial slices first)."""
        return [
            plan_axis(ax, sl.start, sl.stop, self.order, self.mode, self.ndim, self.grid.is_copy, h)
            for ax, sl, h in zip(self.grid.axes, region, self._axis_halos())
        ]

    def _axis_halos(self) -> tuple:
        """``prefilter_halo`` per spatial axis (None, a number or a ``(before, after)`` pair)."""
        h = self.prefilter_halo
        return (h,) * self.ndim if h is None or np.ndim(h) == 0 else tuple(tuple(int(v) for v in p) for p in h)

    def input_region(self, region: tuple[slice, ...]) -> tuple[slice, ...]:
        """Bounding box of the input the block ``region`` reads (spatial axes)."""
        out = []
        for p in self.plans(region):
            v = p.src[p.src >= 0]
            out.append(slice(int(v.min()), int(v.max()) + 1) if len(v) else slice(0, 0))
        return tuple(out)

    def compute(self, source, region: tuple[slice, ...], dtype=None) -> np.ndarray:
        """Compute the output block ``region`` (slices over the output array).

        Parameters
        ----------
        source : array-like
            Anything whose ``__getitem__`` with a tuple of slices returns a
            numpy array (numpy array, nibabel ArrayProxy, zarr array,
            ``bigresample.io.RawReader``...).
        region : tuple of slice
            Output slices, spatial axes first, then the extra axes.
        dtype : numpy dtype, optional
            Output dtype (default: the source's).

        Returns
        -------
        block : new array of the block's shape (Fortran-ordered).
        """
        return self.compute_into(source, region, dtype, _Fresh()).T

    def compute_into(self, source, region: tuple[slice, ...], dtype, ws: Workspace) -> np.ndarray:
        """The block in *file order*: a C-ordered array with the axes reversed
        (``(..., z, y, x)``), built in ``ws``'s buffers (valid until ``ws`` is
        used again).  ``.T`` of it is the block in spatial-first order.

        Works internally in that order so that a NIfTI (x-fastest) input and
        output are read and written without transposing.
        """
        k = self.ndim
        spatial, extra = tuple(region[:k]), tuple(region[k:])
        dtype = np.dtype(source.dtype if dtype is None else dtype)
        plans = self.plans(spatial)
        nd = len(source.shape)
        extra_shape = slice_lengths(extra, source.shape[k:])
        out_shape = (tuple(p.size for p in plans) + extra_shape)[::-1]
        outside = [p.outside for p in plans]  # (plan_axis' arrays are cached: never written to)
        if self.itk:  # ITK's rule: the block's mask is the outer product of the axes' masks
            outside = [o | ~ok for o, ok in zip(outside, bounds.axis_masks(self.grid, spatial))]
        if any(o.all() for o in outside):
            out = ws.array("out", out_shape, dtype)
            cast_into(np.full(out_shape, self.cval), out)
            return out

        todo = [a for a in range(k) if plans[a].index is not None]
        t = timeline.now()
        # the window is only read when an axis is summed from it (else it is cast or filled in place)
        x = self._read_window(source, plans, extra, ws, mapped_ok=bool(todo))
        timeline.span("read", t)
        if not x.dtype.isnative:  # another byte order (a big-endian file): swapped in place, for the compiled sums
            x = x.byteswap(inplace=True).view(x.dtype.newbyteorder("="))
        # axes that shrink the most first: less work for the axes after them
        todo.sort(key=lambda a: plans[a].size / max(1, len(plans[a].src)))
        names = iter(("s0", "s1") * (2 * k))
        for step, a in enumerate(todo):
            p = plans[a]
            iax = nd - 1 - a
            if p.segments:
                # a label's float64 indicator window (a workspace buffer, read for this block only):
                # filtered in place; anything else into "coef"
                inplace = self.prefilter_halo is not None and x.dtype == np.float64
                coef = x if inplace else ws.array("coef", x.shape, np.float64)
                for s0, s1 in p.segments:
                    sl = (slice(None),) * iax + (slice(s0, s1),)
                    if iax < x.ndim - 1 and s1 - s0 >= splines.PLANEWISE_MIN_LEN:
                        _prefilter_planes(x[sl], coef[sl], self.order, self.mode, iax, ws)
                    elif self.prefilter_halo is not None and x.ndim > 1 and s1 - s0 >= splines.PLANEWISE_MIN_LEN:
                        _prefilter_rows(x[sl], coef[sl], self.order, self.mode, ws)
                    elif s1 - s0 < splines.PLANEWISE_MIN_LEN:
                        _spline_filter(x[sl], coef[sl], self.order, self.mode, iax, ws)
                    else:  # long rows, one after the other: scipy's own walk is the fastest there
                        ndimage().spline_filter1d(x[sl], self.order, axis=iax, output=coef[sl], mode=self.mode)
                x = coef
            if p.cval_slot:
                pad = [(0, 0)] * x.ndim
                pad[iax] = (0, 1)
                x = np.pad(x.astype(np.float64, copy=False), pad, mode="constant", constant_values=self.cval)
            shape = list(x.shape)
            shape[iax] = p.size
            last = step == len(todo) - 1
            if last:
                out = ws.array("out", tuple(shape), dtype)
            else:
                kind = x.dtype if self.order == 0 else np.float64
                out = ws.array(next(names), tuple(shape), kind)
            x = _eval_axis(x, iax, p.index, p.weights, out, ws, "e")
        if not todo:
            if x.dtype != dtype:
                out = ws.array("out", x.shape, dtype)
                cast_into(x, out)
                x = out
        if any(o.any() for o in outside):
            fill = np.empty((), dtype=dtype)
            cast_into(np.array(self.cval), fill)
            for a, o in enumerate(outside):
                if o.any():
                    sl = [slice(None)] * x.ndim
                    sl[nd - 1 - a] = o
                    x[tuple(sl)] = fill
        return x

    def _prepad_value(self, dtype) -> float:
        """What a window sample with ``src == -1`` holds: ``cval``, except in
        scipy's pre-pad for orders >= 2 ('grid-constant'), which ``np.pad``
        fills in the input's type (cval cast to it: -40.5 is -40 in an int16
        volume, as ``transform.AffineResampler._coefficients`` pads too)."""
        if self.order < 2:
            return self.cval
        with np.errstate(invalid="ignore"):
            return float(np.array(self.cval).astype(dtype))

    def _read_window(self, source, plans, extra, ws, mapped_ok: bool = False) -> np.ndarray:
        """The input window of the block, file order (axes reversed), C-ordered;
        read-only (a view of the file mapped into memory) if ``mapped_ok``.

        The usual window is a plain box of the input (read straight into the
        workspace), possibly with scipy's pre-padding (edge values or cval) at
        the volume's edges; anything else (wrapped or gathered lines) goes
        through ``_read_generic``.
        """
        k = len(plans)
        pads = [_padded_range(p.src) for p in plans]
        fill = self._prepad_value(source.dtype)
        if all(q is not None for q in pads):
            extra_shape = slice_lengths(extra, source.shape[k:])
            core_sl = tuple(slice(a, b) for _, a, b, _ in pads) + extra
            core_shape = (tuple(b - a for _, a, b, _ in pads) + extra_shape)[::-1]
            padded = any(lo or hi for lo, _, _, hi in pads)
            if not padded and mapped_ok:
                # whole planes of a raw file: the page cache's own pages, not a copy (rawio.RawReader.mapped)
                mapped = getattr(source, "mapped", None)
                win = mapped(core_sl) if mapped is not None else None
                if win is not None:
                    return win
            # a cval pad (src -1: 'grid-constant', orders >= 2) holds cval cast to
            # the input's type (_prepad_value): the window keeps that type
            core = ws.array("core" if padded else "win", core_shape, source.dtype)
            read_file_order(source, core_sl, core)
            if not padded:
                return core
            full = (tuple(len(p.src) for p in plans) + extra_shape)[::-1]
            win = ws.array("win", full, source.dtype)
            nd = len(full)
            inner = tuple(slice(lo, lo + (b - a)) for lo, a, b, _ in pads)[::-1]
            win[(slice(None),) * (nd - k) + inner] = core
            for ax, (lo, a, b, hi) in enumerate(pads):
                iax = nd - 1 - ax
                src = plans[ax].src
                lead = (slice(None),) * iax
                if lo:
                    region = win[lead + (slice(0, lo),)]
                    if src[0] < 0:
                        region[...] = fill
                    else:
                        region[...] = win[lead + (slice(lo, lo + 1),)]
                if hi:
                    n = win.shape[iax]
                    region = win[lead + (slice(n - hi, n),)]
                    if src[-1] < 0:
                        region[...] = fill
                    else:
                        region[...] = win[lead + (slice(n - hi - 1, n - hi),)]
            return win
        arr = _read_generic(source, [p.src for p in plans], extra, fill)
        win = ws.array("win", arr.shape[::-1], arr.dtype)
        np.copyto(win, arr.T)
        return win


def _padded_range(src: np.ndarray):
    """``(lo, a, b, hi)`` if ``src`` is ``lo`` pads, ``arange(a, b)``, ``hi`` pads,
    where a pad repeats the edge voxel (scipy's 'nearest' pre-padding) or is
    ``-1`` (cval, 'grid-constant'); else None."""
    valid = np.nonzero(src >= 0)[0]
    if len(valid) == 0:
        return None
    # the core: the first stretch where src increases by one (found by numpy: a Python loop
    # over a window's line cost a label pass 0.2 ms)
    diff = np.diff(src) == 1
    rise = np.flatnonzero(diff)
    lo = int(rise[0]) if len(rise) else len(src) - 1
    stop = np.flatnonzero(~diff[lo:])
    hi_i = lo + int(stop[0]) if len(stop) else len(src) - 1
    a, b = int(src[lo]), int(src[hi_i]) + 1
    if a < 0:
        return None
    head, tail = src[:lo], src[hi_i + 1 :]
    ok_head = len(head) == 0 or np.all(head == -1) or np.all(head == a)
    ok_tail = len(tail) == 0 or np.all(tail == -1) or np.all(tail == b - 1)
    if not (ok_head and ok_tail):
        return None
    return lo, a, b, len(tail)


def ndimage():
    """scipy.ndimage, imported on first use (it costs 0.4 s; orders 0 and 1 never need it)."""
    from scipy import ndimage as nd

    return nd
