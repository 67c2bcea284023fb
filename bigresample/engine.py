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
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy import ndimage

from . import splines
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


@lru_cache(maxsize=4096)
def plan_axis(
    ax: AxisMap, start: int, stop: int, order: int, mode: str, ndim: int, copy: bool = False
) -> AxisPlan:
    """Plan output samples ``start:stop`` of one axis (see ``AxisPlan``).

    ``copy``: the whole resampling is a copy (scipy.ndimage.zoom returns its
    input unchanged when every zoom factor is 1).
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
    used = ~t.outside
    if not used.any():  # every sample is cval ('constant' mode)
        return AxisPlan(np.zeros(0, np.int64), (), None, None, t.outside.copy(), False)
    idx = t.index[used]
    needed = np.unique(idx[idx >= 0])

    h = splines.halo(order, ndim)
    filtered = order > 1
    windows: list[tuple[int, int]] = []  # in padded-line coordinates (may be < 0 for grid-wrap)
    clusters = _split_runs(needed, 2 * h + 1 if filtered else READ_GAP)
    periodic = filtered and mode == "grid-wrap"
    for k0, k1 in clusters:
        if not filtered:
            windows.append((k0, k1))
        elif periodic:
            a, b = k0 - h, k1 + h
            if b - a >= length or (a <= 0 and b >= length):
                windows = [(0, length)]  # the whole (periodic) line: exact
                break
            windows.append((a, b))
        else:
            windows.append((max(0, k0 - h), min(length, k1 + h)))

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


def cast_output(values: np.ndarray, dtype) -> np.ndarray:
    """Store float results as scipy.ndimage does: integers rounded half away
    from zero and saturated at the dtype's limits."""
    dtype = np.dtype(dtype)
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        r = np.where(values > 0, np.floor(values + 0.5), np.ceil(values - 0.5))
        np.clip(r, info.min, info.max, out=r)
        return r.astype(dtype)
    return values.astype(dtype, copy=False)


def _read(source, srcs: list[np.ndarray], extra: tuple[slice, ...], cval: float) -> np.ndarray:
    """Read the local window: ``out[i, j, ...] = source[srcs[0][i], srcs[1][j], ...]``.

    Reads one box per combination of runs (one box in the usual case), never
    the bounding box of far-apart runs, then gathers if the local line is not a
    plain range.  Positions with ``src == -1`` get ``cval``.
    """
    runs, positions = [], []
    for src in srcs:
        uniq = np.unique(src[src >= 0])
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


def _apply_taps(x: np.ndarray, axis: int, index: np.ndarray, weights: np.ndarray | None) -> np.ndarray:
    """``out[..., o, ...] = sum_t weights[o, t] * x[..., index[o, t], ...]`` along ``axis``."""
    if weights is None:
        return np.take(x, index[:, 0], axis=axis)
    shape = [1] * x.ndim
    shape[axis] = len(index)
    out = np.take(x, index[:, 0], axis=axis)
    out *= weights[:, 0].reshape(shape)
    for t in range(1, index.shape[1]):
        tmp = np.take(x, index[:, t], axis=axis)
        tmp *= weights[:, t].reshape(shape)
        out += tmp
    return out


@dataclass(frozen=True)
class Resampler:
    """Everything that determines the values of a resampling (small, picklable).

    ``grid`` covers the leading spatial axes; any further axes of the source
    (time, channels) are carried through untouched.
    """

    grid: Grid
    order: int = 1
    mode: str = "nearest"
    cval: float = 0.0

    def __post_init__(self):
        object.__setattr__(self, "order", splines.parse_order(self.order))
        object.__setattr__(self, "mode", splines.parse_mode(self.mode))
        object.__setattr__(self, "cval", float(self.cval))

    @property
    def ndim(self) -> int:
        return len(self.grid.axes)

    @property
    def halo(self) -> int:
        """Prefilter halo in voxels (0 for orders 0 and 1)."""
        return splines.halo(self.order, self.ndim)

    def plans(self, region: tuple[slice, ...]) -> list[AxisPlan]:
        """Per-axis plans of the output block ``region`` (spatial slices first)."""
        return [
            plan_axis(ax, sl.start, sl.stop, self.order, self.mode, self.ndim, self.grid.is_copy)
            for ax, sl in zip(self.grid.axes, region)
        ]

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
            numpy array (numpy array, nibabel ArrayProxy, zarr array, ...).
        region : tuple of slice
            Output slices, spatial axes first, then the extra axes.
        dtype : numpy dtype, optional
            Output dtype (default: the source's).
        """
        k = self.ndim
        spatial, extra = tuple(region[:k]), tuple(region[k:])
        dtype = np.dtype(source.dtype if dtype is None else dtype)
        plans = self.plans(spatial)
        block_shape = tuple(p.size for p in plans)
        extra_shape = tuple(len(range(*s.indices(n))) for s, n in zip(extra, source.shape[k:]))
        if any(p.outside.all() for p in plans):
            return cast_output(np.full(block_shape + extra_shape, self.cval), dtype)

        x = _read(source, [p.src for p in plans], extra, self.cval)
        interpolate = any(p.index is not None for p in plans)
        if interpolate and self.order > 0:
            x = x.astype(np.float64, copy=False)

        # axes that shrink the most first: less work for the axes after them
        order_axes = sorted(range(k), key=lambda a: plans[a].size / max(1, len(plans[a].src)))
        for a in order_axes:
            p = plans[a]
            if p.index is None:
                continue
            if p.segments:
                # never in place: x may be a view of the caller's array
                coef = np.empty(x.shape, dtype=np.float64)
                for s0, s1 in p.segments:
                    sl = [slice(None)] * x.ndim
                    sl[a] = slice(s0, s1)
                    sl = tuple(sl)
                    ndimage.spline_filter1d(x[sl], self.order, axis=a, output=coef[sl], mode=self.mode)
                x = coef
            if p.cval_slot:
                if x.dtype.kind != "f":
                    x = x.astype(np.float64)  # cval is a float, as in scipy
                pad = [(0, 0)] * x.ndim
                pad[a] = (0, 1)
                x = np.pad(x, pad, mode="constant", constant_values=self.cval)
            x = _apply_taps(x, a, p.index, p.weights)

        if any(p.outside.any() for p in plans):
            if x.dtype.kind not in "fc" and not np.can_cast(np.min_scalar_type(self.cval), x.dtype):
                x = x.astype(np.float64)
            for a, p in enumerate(plans):
                if p.outside.any():
                    sl = [slice(None)] * x.ndim
                    sl[a] = p.outside
                    x[tuple(sl)] = self.cval
        if x.dtype == dtype:
            return x
        return cast_output(x, dtype) if x.dtype.kind == "f" else _cast_exact(x, dtype)


def _cast_exact(x: np.ndarray, dtype) -> np.ndarray:
    """Cast values that are already input samples (order 0 / selections)."""
    dtype = np.dtype(dtype)
    if dtype.kind in "iu" and x.dtype.kind in "iu":
        info = np.iinfo(dtype)
        return np.clip(x, max(info.min, np.iinfo(x.dtype).min), min(info.max, np.iinfo(x.dtype).max)).astype(dtype)
    if dtype.kind in "iu":
        return cast_output(x.astype(np.float64), dtype)
    return x.astype(dtype)
