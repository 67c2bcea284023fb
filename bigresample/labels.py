"""Label maps resampled without losing labels: ``--labels linear``, ``cubic`` and ``mode``.

The rules are written down in docs/grids-and-exactness.md ("Label maps"); in short:

* ``linear`` / ``cubic``: the indicator of each label (1.0 on the label, 0.0
  elsewhere; outside the volume 1.0 for the label ``cval`` in the constant
  modes, else 0.0) is resampled at order 1 / 3 exactly as an intensity image
  is (the same grid, mode, prefilter), and each output voxel takes the label
  with the largest value, ties (exact equality in float64) to the smallest label;
* ``mode``: each output voxel takes the most frequent label among the input
  voxels of its footprint, ties to the smallest label.

Per block only the labels present in the block's input window are candidates
(with the ``cval`` label in the constant modes), and each is computed only on
the part of the block its bounding box can reach, so a 700-label atlas costs
about one pass per label *overlapping* a region of the block, not 700 passes.
Why leaving the other labels out does not change the arg-max: the indicators
of all K candidates sum to one everywhere (they partition the volume and its
outside, and every order's weights sum to one), so the largest value is at
least ``1 / K``, while a label whose voxels are farther than the interpolation's
support (linear) has a value of exactly 0, and one farther than the winning
reach (cubic: ``splines.winning_reach``, derived from the prefilter's tail) at
most ``1 / (4K)``: it never wins.  A cubic label's indicator is prefiltered
with the halo its surrounding zeros leave needed (``InterpolatedLabels.label_halo``).
The most frequent label of the window (the background) is computed last and
only where another label reaches; elsewhere it is the only candidate.

``InterpolatedLabels`` wraps the intensity resamplers (``engine.Resampler`` for
axis-aligned grids, ``transform.AffineResampler`` for rotated references) and
feeds them each label's indicator from the block's window, read once.
``ModeLabels`` counts labels with separable box sums (cumulative sums along
each axis).  Both give the block in file order, like the resamplers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from math import prod

import numpy as np

from . import bounds, kernel
from .bounds import ITK, uses_cval
from .engine import Workspace, _Fresh, ndimage, read_file_order, slice_lengths, cast_into
from .errors import BigresampleError
from .geometry import Grid
from .names import LABEL_METHODS
from .resampling import BlockResampler, interpolating
from .splines import winning_reach
from .transform import FOLDING_MODES

#: the methods of this module; ``--labels METHOD`` takes these and nearest neighbour (``names.LABEL_METHODS``:
#: ``--labels`` alone, ``labels=True``; the engines at order 0)
METHODS = LABEL_METHODS[1:]
#: the order each method runs at (mode interpolates nothing)
LABEL_ORDERS = {"nearest": 0, "linear": 1, "cubic": 3, "mode": 0}
ORDERS = {"linear": 1, "cubic": 3}
#: label values counted through a lookup table (a bincount) rather than sorted, up to this range
LUT_RANGE = 1 << 22
#: label values counted and boxed in one compiled pass (``kernel.label_boxes``: 56 bytes per value of the
#: range), up to this range: any 16-bit label map
BOX_RANGE = 1 << 16
#: The per-block working set the planner aims for with a label method (``InterpolatedLabels``).
TARGET_BLOCK_BYTES_LABELS = 384 * 2**20


class LabelMapError(BigresampleError):
    """A label map (or its options) that a label method cannot resample."""


def parse_labels(labels) -> str | None:
    """``labels`` as given (False/None, True for nearest neighbour, or a method's name) -> a method or None."""
    if labels is None or labels is False:
        return None
    if labels is True:
        return "nearest"
    if isinstance(labels, str) and labels in LABEL_METHODS:
        return labels
    raise LabelMapError(f"--labels method must be one of {', '.join(LABEL_METHODS)}; got {labels!r}")


def check(method: str, dtype, slope: float, inter: float, mode: str, cval: float, grid) -> None:
    """Refuse, in one line naming the value, what ``method`` cannot resample: a non-integer
    or scaled image, a ``cval`` that is no label of its type where it is used, and for
    ``mode`` an upsampled axis or a rotated grid."""
    dtype = np.dtype(dtype)
    what = f"--labels {method}"
    if dtype.kind not in "iu":
        raise LabelMapError(f"{what} needs an integer label image; this one is {dtype.name} (its labels could be "
                            f"any number: use --labels nearest, which keeps every value)")
    if not (slope == 1.0 and inter == 0.0):
        raise LabelMapError(f"{what} needs unscaled labels; this image has scl_slope {slope:g} and scl_inter "
                            f"{inter:g} (use --labels nearest, which keeps the scaling)")
    if method == "mode" or uses_cval(mode):
        info = np.iinfo(dtype)
        # (held as a float: whole numbers are exact up to 2**53)
        if not (float(cval).is_integer() and max(info.min, -2**53) <= cval <= min(info.max, 2**53)):
            raise LabelMapError(f"{what}: --cval is the label outside the volume and must be a whole number in "
                                f"{dtype.name}'s range (and within +-2**53); got {cval:g}")
    if method != "mode":
        return
    if not isinstance(grid, Grid):
        raise LabelMapError("--labels mode needs a grid aligned with the input's axes; this reference (or "
                            "registration) is rotated (use --labels linear or cubic)")
    for a, ax in zip("xyz", grid.axes):
        if abs(ax.affine_scale) < 1.0:
            raise LabelMapError(f"--labels mode is for downsampling: the {a}-axis output spacing is "
                                f"{abs(ax.affine_scale):.4g} input voxels, below 1 (use --labels linear or cubic)")


def make(method: str, grid, mode: str, cval: float, interpolate=None):
    """The label resampler of ``method`` on ``grid`` (a ``Grid``, or a ``ReferenceGrid`` for linear/cubic);
    ``interpolate(grid, order, mode, cval)`` makes the intensity resampler linear/cubic run on each label's
    indicator (default: ``resampling.interpolating``).  ``mode='itk'``: the labels of 'nearest', then the
    label ``cval`` beyond half a voxel of the input."""
    itk = mode == ITK
    if method == "mode":
        return ModeLabels(grid, float(cval), itk)
    order, mode = ORDERS[method], "nearest" if itk else mode
    interpolate = interpolating if interpolate is None else interpolate
    return InterpolatedLabels(interpolate(grid, order, mode, 0.0), interpolate(grid, order, mode, 1.0), method,
                              float(cval), itk)


@dataclass(frozen=True)
class WindowLabels:
    """The labels of an input window: their values (sorted), how many voxels
    each has, and the bounding box of each in the window's own axes."""

    values: np.ndarray
    counts: np.ndarray
    boxes: list


def window_labels(win: np.ndarray, ws: Workspace) -> WindowLabels:
    """The labels present in ``win`` (any integer array): when their range is at most
    ``BOX_RANGE``, their counts and boxes in one compiled pass (``kernel.label_boxes``);
    else through a lookup table when their range allows, or a sort, and
    ``scipy.ndimage.find_objects`` of the window's dense ids (1..K in the labels' order,
    left in ``ws``'s buffer "lab_dense")."""
    if win.size == 0:
        return WindowLabels(win.reshape(-1)[:0], np.zeros(0, np.int64), [])
    u = _unsigned(win)
    lo, hi = int(u.min()), int(u.max())
    if hi - lo < BOX_RANGE:
        if not u.dtype.isnative:
            u = u.astype(u.dtype.newbyteorder("="))
        counts, boxes = np.empty(hi - lo + 1, np.int64), np.empty((hi - lo + 1, 2 * win.ndim), np.int64)
        kernel.label_boxes(np.ascontiguousarray(u), lo, counts, boxes)
        present = np.flatnonzero(counts)
        values = _from_unsigned(present.astype(np.uint64) + np.uint64(lo), win.dtype)
        return WindowLabels(values, counts[present], [tuple(slice(int(b[2 * d]), int(b[2 * d + 1]) + 1)
                                                            for d in range(win.ndim)) for b in boxes[present]])
    dense = ws.array("lab_dense", win.shape, np.int32)
    if hi - lo < LUT_RANGE:
        shifted = u - u.dtype.type(lo)
        if shifted.dtype.itemsize >= 8:
            shifted = shifted.astype(np.int64)
        counts = np.bincount(shifted.reshape(-1), minlength=hi - lo + 1)
        present = np.flatnonzero(counts)
        lut = np.zeros(hi - lo + 1, dtype=np.int32)
        lut[present] = np.arange(1, len(present) + 1, dtype=np.int32)
        np.take(lut, shifted, out=dense)
        values, counts = _from_unsigned(present.astype(np.uint64) + np.uint64(lo), win.dtype), counts[present]
    else:
        values_u, inverse, counts = np.unique(u, return_inverse=True, return_counts=True)
        np.add(inverse.reshape(win.shape), 1, out=dense, casting="unsafe")
        values = _from_unsigned(values_u, win.dtype)
    boxes = ndimage().find_objects(dense, max_label=len(values))
    return WindowLabels(values, counts, boxes)


def _unsigned(a: np.ndarray) -> np.ndarray:
    """``a``'s values mapped, order kept, onto the unsigned type of its size (the sign bit flipped)."""
    if a.dtype.kind == "u":
        return a
    udt = np.dtype(f"u{a.dtype.itemsize}")
    return a.view(udt) ^ udt.type(1 << (8 * a.dtype.itemsize - 1))


def _from_unsigned(values: np.ndarray, dtype) -> np.ndarray:
    """The inverse of ``_unsigned``."""
    dtype = np.dtype(dtype)
    udt = np.dtype(f"u{dtype.itemsize}")
    v = np.asarray(values).astype(udt)
    return v if dtype.kind == "u" else (v ^ udt.type(1 << (8 * dtype.itemsize - 1))).view(dtype)


class _Indicator:
    """The indicator of one label as an array-like over the whole input (what
    a resampler reads), served from the block's window: float64, 1.0 where the
    window holds the label.  ``window`` is in file order (axes reversed),
    ``origin`` its first voxel (spatial axes first, then the extra axes)."""

    dtype = np.dtype(np.float64)

    def __init__(self, window: np.ndarray, origin, shape, label):
        self.window, self.origin, self.shape, self.label = window, tuple(origin), tuple(shape), label
        self.ndim = len(self.shape)

    def _local(self, slices) -> tuple[slice, ...]:
        slices = tuple(slices) + (slice(None),) * (self.ndim - len(slices))
        out = []
        for s, o, n, w in zip(slices, self.origin, self.shape, self.window.shape[::-1]):
            a, b, _ = s.indices(n)
            if a - o < 0 or b - o > w:  # pragma: no cover - a planning bug, never data
                raise RuntimeError(f"a label window [{o}, {o + w}) does not hold [{a}, {b})")
            out.append(slice(a - o, b - o))
        return tuple(out)

    def read_into(self, slices, out: np.ndarray) -> None:
        np.equal(self.window[self._local(slices)[::-1]], self.label, out=out, casting="unsafe")

    def __getitem__(self, slices):
        return (self.window[self._local(slices)[::-1]] == self.label).T.astype(np.float64)


class _LabelSampling:
    """What both label resamplers share: the block's window read once, the
    labels found in it, the arg-max kept in the block's buffers."""

    def compute(self, source, region, dtype=None) -> np.ndarray:
        """The output block ``region`` as a new array (spatial axes first)."""
        return self.compute_into(source, region, dtype, _Fresh()).T

    def _read(self, source, window, extra, ws):
        """The input window (spatial ``(start, stop)`` pairs) in file order, and its labels."""
        sl = tuple(slice(a, b) for a, b in window) + extra
        shape = (tuple(b - a for a, b in window) + slice_lengths(extra, source.shape[len(window):]))[::-1]
        win = ws.array("lab_win", shape, source.dtype)
        read_file_order(source, sl, win)
        return win, window_labels(win, ws)

    def _finish(self, lab, dtype, ws) -> np.ndarray:
        if lab.dtype == dtype:
            return lab
        out = ws.array("lab_out", lab.shape, dtype)
        cast_into(lab, out)
        return out

    def _cval_label(self, dtype):
        return np.array(self.cval).astype(dtype)[()]

    def _outside(self, spatial) -> bool:
        """ITK's rule (``bounds``), and no voxel of the block ``spatial`` inside the input."""
        return self.itk and bounds.nothing_inside(self.grid, spatial)

    def _itk_finish(self, lab, spatial, source, dtype, ws) -> np.ndarray:
        """The block's labels, with ITK's rule: the label ``cval`` beyond half a voxel of the input."""
        if self.itk:
            bounds.fill_outside(lab, self.grid, spatial, self._cval_label(source.dtype), ws)
        return self._finish(lab, dtype, ws)


@dataclass(frozen=True)
class InterpolatedLabels(_LabelSampling):
    """``--labels linear`` / ``cubic``: the arg-max of the labels' interpolated
    indicators.  ``zero`` and ``one`` are the same resampler with cval 0.0 and
    1.0 (the indicator outside the volume of a label other than ``cval``, and of ``cval``)."""

    zero: BlockResampler
    one: BlockResampler
    method: str
    cval: float
    itk: bool = False  # ITK's rule (``bounds``): zero and one sample with 'nearest'

    @property
    def base(self):
        return self.zero

    @property
    def grid(self):
        return self.zero.grid

    @property
    def order(self) -> int:
        return self.zero.order

    @property
    def mode(self) -> str:
        return self.zero.mode

    @property
    def boundary(self) -> str:
        return ITK if self.itk else self.mode

    @property
    def ndim(self) -> int:
        return self.zero.ndim

    def input_region(self, region) -> tuple[slice, ...]:
        return self.zero.input_region(region)

    min_blocks_per_worker = 4
    #: a label method's cost is a pass per label present in a block: thicker
    #: blocks meet each label fewer times (a 256x256x150 atlas of 715 labels
    #: upsampled to 512x512x300 with --labels linear: 82 s in 512x512x3 blocks
    #: of 45 MiB, 34 s in 512x512x30 of 360 MiB)
    target_block_bytes = TARGET_BLOCK_BYTES_LABELS

    def window_shape(self, block) -> tuple[int, ...]:
        return self.zero.window_shape(block)

    def planning_work(self, block) -> int:
        return prod(self.window_shape(block))

    def block_bytes(self, block, in_itemsize: int, out_itemsize: int) -> int:
        """The intensity resampler's buffers, counted for float64 indicators, plus ``extra_bytes``."""
        return self.zero.block_bytes(block, 8, 8) + self.extra_bytes(self.window_shape(block), block, in_itemsize,
                                                                     out_itemsize)

    def extra_bytes(self, wshape, block, in_itemsize: int, out_itemsize: int) -> int:
        """Beyond the resampler's own buffers (counted for float64 indicators): the
        label window and its dense ids, the running maximum, the labels kept,
        a mask (three with ITK's rule on a rotated grid: ``bounds.fill_rows``' two) and the output."""
        masks = 3 if self.itk else 1
        return int(prod(wshape) * (in_itemsize + 4) + prod(block) * (8 + in_itemsize + masks + out_itemsize))

    def compute_into(self, source, region, dtype, ws: Workspace) -> np.ndarray:
        k = self.ndim
        spatial, extra = tuple(region[:k]), tuple(region[k:])
        dtype = np.dtype(source.dtype if dtype is None else dtype)
        bshape = (tuple(s.stop - s.start for s in spatial) + slice_lengths(extra, source.shape[k:]))[::-1]
        window = [(s.start, s.stop) for s in self.zero.input_region(spatial)]
        constant = "constant" in self.mode
        cval = self._cval_label(source.dtype) if constant else None
        lab = ws.array("lab_lab", bshape, source.dtype)
        if any(b <= a for a, b in window):  # every sample outside the volume ('constant' mode)
            lab[...] = cval
            return self._finish(lab, dtype, ws)
        if self._outside(spatial):
            lab[...] = self._cval_label(source.dtype)
            return self._finish(lab, dtype, ws)
        win, found = self._read(source, window, extra, ws)
        origin = [a for a, _ in window] + [s.indices(n)[0] for s, n in zip(extra, source.shape[k:])]
        todo = self._candidates(found, cval, spatial, window)
        if len(todo) == 1:
            lab[...] = todo[0][0]
            return self._itk_finish(lab, spatial, source, dtype, ws)
        best = ws.array("lab_best", bshape, np.float64)
        best[...] = -np.inf
        lab[...] = todo[-1][0]
        # order 1 on an axis-aligned grid: straight from the block's plans (a few numpy calls a label)
        plans = self.zero.plans(spatial) if self.order == 1 and self.zero.separable else None
        for i, (value, sub, box) in enumerate(todo):
            if sub is None:
                continue
            outside = 1.0 if constant and value == cval else 0.0
            if plans is not None:
                vals = _linear(plans, win, window, value, sub, spatial, outside)
            else:
                resampler = self.one if outside else self.zero
                halo = None if outside else self.label_halo(box, sub)
                if halo is not None:
                    resampler = replace(resampler, prefilter_halo=halo)
                vals = resampler.compute_into(_Indicator(win, origin, source.shape, value), sub + extra, np.float64,
                                              ws)
            loc = (slice(None),) * len(extra) + tuple(slice(s.start - b.start, s.stop - b.start)
                                                       for s, b in zip(sub, spatial))[::-1]
            b_view, l_view = best[loc], lab[loc]
            mask = ws.array("lab_mask", vals.shape, bool)
            np.greater(vals, b_view, out=mask)
            if i == len(todo) - 1:  # the background, last: it wins exact ties with larger labels only
                mask |= (vals == b_view) & (l_view > value)
            np.copyto(b_view, vals, where=mask)
            np.copyto(l_view, value, where=mask)
        return self._itk_finish(lab, spatial, source, dtype, ws)

    def _candidates(self, found: WindowLabels, cval, spatial, window) -> list:
        """``(label, output sub-box or None, its input box (lo, hi))`` of every candidate: ascending,
        then the background (the window's most frequent label) last, on the box where others reach."""
        values = list(found.values)
        reach = self.reach(len(values) + (cval is not None and cval not in values))
        inboxes = [_input_box(b, window) for b in found.boxes]
        boxes = [self._sub_box(lo, hi, spatial, reach) for lo, hi in inboxes]
        if cval is not None and cval not in values:  # the label outside the volume
            values.append(cval)
            boxes.append(tuple(spatial))
            inboxes.append(None)
        elif cval is not None:
            boxes[values.index(cval)] = tuple(spatial)
        order = sorted(range(len(values)), key=lambda i: values[i])
        if len(order) == 1:
            return [(values[0], boxes[0], inboxes[0])]
        bg = int(np.argmax(found.counts)) if len(found.counts) else order[0]
        others = [i for i in order if i != bg and boxes[i] is not None]
        if not others:
            return [(values[bg], boxes[bg], inboxes[bg])]
        reach = tuple(slice(min(boxes[i][a].start for i in others), max(boxes[i][a].stop for i in others))
                      for a in range(len(spatial)))
        bg_box = _intersect(boxes[bg], reach)
        return [(values[i], boxes[i], inboxes[i]) for i in others] + [(values[bg], bg_box, inboxes[bg])]

    def label_halo(self, box, sub):
        """The prefilter halo enough for the indicator of a label whose voxels in the block's
        window lie in the input box ``box`` (``(lo, hi)``, inclusive), computed on the output
        box ``sub``: per input axis a ``(before, after)`` pair, or None for the full
        ``splines.halo`` everywhere.  A side keeps the full halo when its window would reach
        within a halo of a volume edge (padded or folded lines); else it needs only enough
        that the zeros before the label and the halo add up to the full halo (the mode not
        'grid-wrap', whose cut windows are periodic; docs/grids-and-exactness.md, "Label maps")."""
        full = self.zero.halo
        if self.order < 2 or self.mode == "grid-wrap" or box is None:
            return None
        first, last = self._coordinate_range(sub)
        w = (self.order + 1) / 2
        pairs = []
        for lo, hi, x0, x1, n in zip(*box, first, last, self.grid.in_shape):
            # the first tap is at most floor(x0) and the last at least ceil(x1) (+-1 for rounding)
            gap_lo, gap_hi = lo - (math.floor(x0) + 1), (math.ceil(x1) - 1) - hi
            need_lo = full if x0 - w - full - 1 <= 0 else min(full, max(0, -int((gap_lo - full) // 2)))
            need_hi = full if x1 + w + full + 1 >= n - 1 else min(full, max(0, -int((gap_hi - full) // 2)))
            pairs.append((need_lo, need_hi))
        return None if all(p == (full, full) for p in pairs) else tuple(pairs)

    def _coordinate_range(self, sub) -> tuple[np.ndarray, np.ndarray]:
        """The lowest and the highest input coordinate per input axis of the output box ``sub``'s samples."""
        if isinstance(self.grid, Grid):
            xs = [ax.coordinates(s.start, s.stop) for ax, s in zip(self.grid.axes, sub)]
            return np.array([x.min() for x in xs]), np.array([x.max() for x in xs])
        k = len(sub)
        corners = np.array([[s.stop - 1 if (c >> a) & 1 else s.start for a, s in enumerate(sub)]
                            for c in range(1 << k)], dtype=np.float64)
        coords = corners @ np.asarray(self.grid.matrix, dtype=np.float64).T + self.grid.offset
        return coords.min(axis=0), coords.max(axis=0)

    def reach(self, candidates: int) -> int:
        """Input voxels beyond a label's bounding box within which it can win among
        ``candidates`` labels: the taps' support at order 1 (exactly 0 beyond), the
        derived bound at orders >= 2 (``splines.winning_reach``)."""
        if self.order < 2:
            return self.order + 1
        return winning_reach(self.order, self.ndim, candidates)

    def _sub_box(self, lo, hi, spatial, reach: int):
        """The part of the output block ``spatial`` that the label whose voxels lie
        in the input box ``[lo, hi]`` (``_input_box``) can reach, or None."""
        n = np.array(self.grid.in_shape, dtype=np.float64)
        lo, hi = lo - reach, hi + reach
        folding = self.mode in FOLDING_MODES
        if not folding:  # beyond an edge the edge voxels (or cval), and the label's images, are read:
            lo[lo <= 0], hi[hi >= n - 1] = -np.inf, np.inf  # a label within reach of an edge reaches on
        # a sample within reach of an edge reads the volume folded: any label
        return self.zero.reaching(spatial, lo, hi, reach if folding else None)


def _input_box(box, window) -> tuple[np.ndarray, np.ndarray]:
    """The input box ``(lo, hi)`` (per spatial axis, inclusive) of ``box``, slices of the
    file-ordered window that starts at ``window``'s ``(start, stop)`` pairs."""
    k = len(window)
    lo = np.array([window[a][0] + box[len(box) - 1 - a].start for a in range(k)], dtype=np.float64)
    hi = np.array([window[a][0] + box[len(box) - 1 - a].stop - 1 for a in range(k)], dtype=np.float64)
    return lo, hi


def _linear(plans, win, window, value, sub, spatial, outside: float) -> np.ndarray:
    """The indicator of ``value`` resampled at order 1 on the output box ``sub`` of the
    block ``spatial``, from the block's per-axis plans (``engine.plan_axis``: the input
    index of each local position, the taps and weights, the cval slot and the samples
    outside) and its label window ``win`` (file order, starting at ``window``):
    the engine's per-axis sums, on the label's own box only."""
    nd, k = win.ndim, len(plans)
    gathers, masks, passes, fills = [], [], [], []
    for a, (p, s, b) in enumerate(zip(plans, sub, spatial)):
        j0, j1 = s.start - b.start, s.stop - b.start
        n_src = len(p.src)
        if p.index is None:  # the local line is the output
            q0, q1, taps, weights = j0, j1, None, None
        else:
            taps, weights = p.index[j0:j1], p.weights[j0:j1]
            real = taps[taps < n_src]
            q0, q1 = (int(real.min()), int(real.max()) + 1) if real.size else (0, 0)
            taps = np.where(taps < n_src, taps - q0, q1 - q0)  # the cval slot: one more position
        src = p.src[q0:q1]
        gathers.append(np.where(src >= 0, src - window[a][0], 0))
        masks.append((src < 0, taps is not None and bool((taps == q1 - q0).any())))
        passes.append((j0, j1, q0, taps, weights))
        fills.append(p.outside[j0:j1])
    x = np.equal(win[(Ellipsis,) + np.ix_(*gathers[::-1])], value).astype(np.float64)
    for a, (cval_at, slot) in enumerate(masks):
        iax = nd - 1 - a
        if cval_at.any():
            x[(slice(None),) * iax + (cval_at,)] = outside
        if slot:
            pad = [(0, 0)] * nd
            pad[iax] = (0, 1)
            x = np.pad(x, pad, constant_values=outside)
    for a, (j0, j1, q0, taps, weights) in enumerate(passes):
        iax = nd - 1 - a
        if taps is None:
            x = np.take(x, np.arange(j0 - q0, j1 - q0), axis=iax)
            continue
        shape = (len(taps),) + (1,) * (nd - 1 - iax)
        acc = np.take(x, taps[:, 0], axis=iax) * weights[:, 0].reshape(shape)
        for t in range(1, taps.shape[1]):
            acc += np.take(x, taps[:, t], axis=iax) * weights[:, t].reshape(shape)
        x = acc
    for a, fill in enumerate(fills):
        if fill.any():
            x[(slice(None),) * (nd - 1 - a) + (fill,)] = outside
    return x


def _intersect(a, b):
    if a is None:
        return None
    out = tuple(slice(max(x.start, y.start), min(x.stop, y.stop)) for x, y in zip(a, b))
    return None if any(s.stop <= s.start for s in out) else out


@dataclass(frozen=True)
class ModeLabels(_LabelSampling):
    """``--labels mode``: the most frequent label of each output voxel's footprint.

    Footprint of output voxel ``j`` along an axis: the input voxels ``i`` (inside
    the volume) with ``x(j) - w/2 <= i < x(j) + w/2``, where ``x(j)`` is its
    position in input voxels (``AxisMap.coordinates``) and ``w >= 1`` the output
    spacing in input voxels (``|AxisMap.affine_scale|``); half-open, so
    neighbouring footprints of a spacing grid share no voxel.  A voxel whose
    footprint holds no input voxel takes the label ``cval``."""

    grid: Grid
    cval: float
    itk: bool = False  # ITK's rule (``bounds``) on the output voxels' centres
    order = 0
    mode = "nearest"

    @property
    def boundary(self) -> str:
        return ITK if self.itk else self.mode

    @property
    def ndim(self) -> int:
        return len(self.grid.axes)

    def footprints(self, spatial) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per axis, the first and the stop input index of each output voxel's footprint."""
        out = []
        for ax, s in zip(self.grid.axes, spatial):
            x, w = ax.coordinates(s.start, s.stop), abs(ax.affine_scale)
            lo = np.clip(np.ceil(x - w / 2), 0, ax.n).astype(np.int64)
            hi = np.clip(np.ceil(x + w / 2), 0, ax.n).astype(np.int64)
            out.append((lo, np.maximum(hi, lo)))
        return out

    def input_region(self, region) -> tuple[slice, ...]:
        return tuple(slice(int(lo.min()), max(int(lo.min()), int(hi.max())))
                     for lo, hi in self.footprints(region[: self.ndim]))

    min_blocks_per_worker = 4
    target_block_bytes = TARGET_BLOCK_BYTES_LABELS  # as ``InterpolatedLabels``'

    def planning_work(self, block) -> int:
        return prod(self.window_shape(block))

    def window_shape(self, block) -> tuple[int, ...]:
        """Largest window (input voxels per axis) an output block of shape ``block`` reads."""
        return tuple(min(ax.n, int(np.ceil(b * abs(ax.affine_scale))) + 2) for ax, b in zip(self.grid.axes, block))

    def block_bytes(self, block, in_itemsize: int, out_itemsize: int) -> int:
        """The window and its dense ids; a label's indicator and its running sums
        (int32, at most the window, three times); the counts kept, the labels
        kept, a mask and the output."""
        window, out = prod(self.window_shape(block)), prod(block)
        return int(window * (in_itemsize + 4 + 3 * 4) + out * (4 + in_itemsize + 1 + out_itemsize + 4))

    def compute_into(self, source, region, dtype, ws: Workspace) -> np.ndarray:
        k = self.ndim
        spatial, extra = tuple(region[:k]), tuple(region[k:])
        dtype = np.dtype(source.dtype if dtype is None else dtype)
        bshape = (tuple(s.stop - s.start for s in spatial) + slice_lengths(extra, source.shape[k:]))[::-1]
        feet = self.footprints(spatial)
        window = [(int(lo.min()), max(int(lo.min()), int(hi.max()))) for lo, hi in feet]
        lab = ws.array("lab_lab", bshape, source.dtype)
        lab[...] = self._cval_label(source.dtype)
        if any(b <= a for a, b in window) or self._outside(spatial):
            return self._finish(lab, dtype, ws)
        win, found = self._read(source, window, extra, ws)
        best = ws.array("lab_best", bshape, np.int32)
        best[...] = 0
        nd = win.ndim
        for value, box in zip(found.values, found.boxes):  # ascending: ties keep the smaller label
            sub, counts = [], np.equal(win[box], value).astype(np.int32)
            for a in range(k):
                iax, b0 = nd - 1 - a, box[nd - 1 - a]
                lo, hi = feet[a]
                # the footprints that meet the label's box, cut to it
                start, stop = window[a][0] + b0.start, window[a][0] + b0.stop
                hit = np.flatnonzero((lo < stop) & (hi > start))
                if not len(hit):
                    break
                j0, j1 = int(hit[0]), int(hit[-1]) + 1
                sub.append(slice(j0, j1))
                counts = _box_sums(counts, iax, np.clip(lo[j0:j1], start, stop) - start,
                                   np.clip(hi[j0:j1], start, stop) - start)
            else:
                loc = (slice(None),) * (nd - k) + tuple(sub)[::-1]
                b_view, l_view = best[loc], lab[loc]
                mask = counts > b_view
                np.copyto(b_view, counts, where=mask)
                np.copyto(l_view, value, where=mask)
        return self._itk_finish(lab, spatial, source, dtype, ws)


def _box_sums(a: np.ndarray, axis: int, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """``out[.., j, ..] = a[.., lo[j]:hi[j], ..].sum(axis)``, by cumulative sums."""
    shape = list(a.shape)
    shape[axis] += 1
    c = np.zeros(shape, dtype=np.int32)
    np.cumsum(a, axis=axis, out=c[(slice(None),) * axis + (slice(1, None),)])
    return np.take(c, hi, axis=axis) - np.take(c, lo, axis=axis)
