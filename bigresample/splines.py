"""One-dimensional B-spline sampling exactly as ``scipy.ndimage`` does it.

``scipy.ndimage.zoom`` and ``affine_transform`` with a diagonal matrix run
``NI_ZoomShift``, which treats every axis on its own: per output index it maps
the coordinate through the boundary mode, finds the first of ``order + 1``
taps, folds taps that fall outside the line and computes the B-spline weights.
This module reproduces those per-axis steps in numpy (vectorised), so that a
block of the output can be computed from a block of the input and agree with the
whole-array call: the tests check every mode and order against scipy itself.

It also holds the spline prefilter's poles and the halo derived from them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from .errors import BigresampleError
from .names import SCIPY_MODES

#: Boundary modes, as scipy.ndimage names them (``names``: the command line offers them).
MODES = SCIPY_MODES
ORDERS = (0, 1, 2, 3, 4, 5)

#: scipy pre-pads the input by this many voxels before the spline prefilter in
#: these modes (``scipy.ndimage._interpolation._prepad_for_spline_filter``).
PREPAD_MODES = ("nearest", "grid-constant")
NPAD = 12


class SplineError(BigresampleError):
    """An interpolation order or boundary mode scipy.ndimage does not offer."""


def parse_order(order) -> int:
    if isinstance(order, bool) or not isinstance(order, (int, np.integer)) or order not in ORDERS:
        raise SplineError(f"order must be an integer from 0 to 5; got {order!r}")
    return int(order)


def parse_mode(mode: str) -> str:
    if mode not in MODES:
        raise SplineError(f"mode must be one of {', '.join(MODES)}; got {mode!r}")
    return "reflect" if mode == "grid-mirror" else mode


def prepad(order: int, mode: str) -> int:
    """Voxels scipy pads on each side before prefiltering (0 for most modes)."""
    return NPAD if order > 1 and mode in PREPAD_MODES else 0


def spline_mode(mode: str) -> str:
    """Boundary rule for taps outside the line (``_get_spline_boundary_mode``)."""
    return "mirror" if mode in ("constant", "wrap") else mode


def map_coordinate(x: np.ndarray, length: int, mode: str) -> np.ndarray:
    """Vectorised ``map_coordinate`` of ni_interpolation.c.

    Maps coordinates outside ``[0, length - 1]`` back inside according to the
    mode; 'constant' returns -1 (meaning: use cval); 'grid-constant' leaves
    them unchanged.  Integer casts of the C code are truncations toward zero.
    """
    x = np.array(x, dtype=np.float64, copy=True)
    lo = x < 0
    hi = x > length - 1
    if not (lo.any() or hi.any()):
        return x
    n = length
    if mode == "constant":
        x[lo | hi] = -1.0
        return x
    if mode == "grid-constant":
        return x
    if mode == "nearest":
        x[lo] = 0.0
        x[hi] = n - 1
        return x
    if n <= 1:
        x[lo | hi] = 0.0
        return x
    a = x[lo]
    b = x[hi]
    if mode == "mirror":
        sz2 = 2 * n - 2
        a = sz2 * np.trunc(-a / sz2) + a
        a = np.where(a <= 1 - n, a + sz2, -a)
        b = b - sz2 * np.trunc(b / sz2)
        b = np.where(b >= n, sz2 - b, b)
    elif mode == "reflect":
        sz2 = 2 * n
        a = np.where(a < -sz2, sz2 * np.trunc(-a / sz2) + a, a)
        # scipy guards against (-a - 1) == -1 for tiny negative a
        a = np.where(a < -n, a + sz2, np.where(a > -1e-15, 1e-15, -a) - 1)
        b = b - sz2 * np.trunc(b / sz2)
        b = np.where(b >= n, sz2 - b - 1, b)
    elif mode == "wrap":
        sz = n - 1
        a = a + sz * (np.trunc(-a / sz) + 1)
        b = b - sz * np.trunc(b / sz)
    elif mode == "grid-wrap":
        a = a + n * (np.trunc((-1 - a) / n) + 1)
        b = b - n * np.trunc(b / n)
    else:  # pragma: no cover - parse_mode guards this
        raise SplineError(f"unknown mode {mode!r}")
    x[lo] = a
    x[hi] = b
    return x


def bspline(d: np.ndarray, order: int) -> np.ndarray:
    """Centred B-spline of degree ``order`` evaluated at distances ``|d|``."""
    y = np.abs(d)
    if order == 0:
        return (y < 0.5).astype(np.float64)
    if order == 1:
        return np.where(y < 1.0, 1.0 - y, 0.0)
    if order == 2:
        return np.where(y < 0.5, 0.75 - y * y, np.where(y < 1.5, 0.5 * (1.5 - y) ** 2, 0.0))
    if order == 3:
        return np.where(
            y < 1.0,
            (y * y * (y - 2.0) * 3.0 + 4.0) / 6.0,
            np.where(y < 2.0, (2.0 - y) ** 3 / 6.0, 0.0),
        )
    if order == 4:
        y2 = y * y
        return np.where(
            y < 0.5,
            y2 * (y2 * 0.25 - 0.625) + 115.0 / 192.0,
            np.where(
                y < 1.5,
                y * (y * (y * (5.0 / 6.0 - y / 6.0) - 1.25) + 5.0 / 24.0) + 55.0 / 96.0,
                np.where(y < 2.5, (y - 2.5) ** 4 / 24.0, 0.0),
            ),
        )
    if order == 5:
        f = y * y
        return np.where(
            y < 1.0,
            f * (f * (0.25 - y / 12.0) - 0.5) + 0.55,
            np.where(
                y < 2.0,
                y * (y * (y * (y * (y / 24.0 - 0.375) + 1.25) - 1.75) + 0.625) + 0.425,
                np.where(y < 3.0, (3.0 - y) ** 5 / 120.0, 0.0),
            ),
        )
    raise SplineError(f"order must be an integer from 0 to 5; got {order!r}")


@dataclass(frozen=True)
class Taps:
    """Per output sample of one axis: ``order + 1`` tap indices and weights.

    ``index`` holds indices into the (pre-padded) coefficient line of length
    ``length``; the value ``-1`` marks a tap that reads ``cval`` (only in
    'grid-constant' mode).  ``outside`` marks samples that are ``cval``
    altogether ('constant' mode).  ``weights`` is None for order 0.
    """

    index: np.ndarray  # (m, order + 1) int64
    weights: np.ndarray | None  # (m, order + 1) float64
    outside: np.ndarray  # (m,) bool
    length: int  # length of the coefficient line (n + 2 * npad)
    npad: int


def taps(coords: np.ndarray, n: int, order: int, mode: str) -> Taps:
    """Taps of ``NI_ZoomShift`` for the given input coordinates of one axis.

    Parameters
    ----------
    coords : (m,) float64 array
        Input coordinates ``x(o)`` exactly as the reference computes them.
    n : int
        Input length of the axis (before any pre-padding).
    """
    npad = prepad(order, mode)
    length = n + 2 * npad
    cc = np.asarray(coords, dtype=np.float64) + float(npad)
    if mode not in ("grid-constant", "nearest"):
        cc = map_coordinate(cc, length, mode)
    if mode in ("grid-constant", "nearest"):
        outside = np.zeros(cc.shape, dtype=bool)
    else:
        outside = ~(cc > -1.0)
    cc = np.where(outside, 0.0, cc)
    if order & 1:
        start = np.floor(cc).astype(np.int64) - order // 2
    else:
        start = np.floor(cc + 0.5).astype(np.int64) - order // 2
    index = start[:, None] + np.arange(order + 1, dtype=np.int64)[None, :]
    bad = (index < 0) | (index >= length)
    if bad.any():
        if mode == "grid-constant":
            index[bad] = -1
        else:
            folded = map_coordinate(index[bad].astype(np.float64), length, spline_mode(mode))
            index[bad] = np.trunc(folded).astype(np.int64)
    weights = None
    if order > 0:
        weights = bspline(start[:, None] + np.arange(order + 1)[None, :] - cc[:, None], order)
    return Taps(index, weights, outside, length, npad)


# --------------------------------------------------------------------------
# Prefilter poles and the halo they imply.
#
# For order >= 2 scipy first turns the samples into B-spline coefficients with
# the recursive filter  H(z) = prod_i g_i / ((1 - p_i z^-1)(1 - p_i z)),
# g_i = (1 - p_i)(1 - 1/p_i), run causally then anti-causally along every line
# (NI_SplineFilter1D).  One pole's section has the two-sided impulse response
#     h_i[k] = g_i * (-p_i) / (1 - p_i**2) * p_i**|k|,
# and H's response h is the convolution of the sections (tests check it against
# scipy).  A coefficient computed from a window cut at distance d from it
# differs from the whole-line coefficient only through samples beyond the cut,
# each replaced by another sample of the line (the filter's mirror/reflect/wrap
# start), so by at most R = max - min of the data per sample:
#     |error| <= R * T(d),   T(d) = sum_{|k| >= d} |h[k]|.
# The error then passes through the filters of the other axes (gain
# G = sum |h| each: 3 for order 3, 7.5 for order 5) and the interpolation
# (non-negative weights summing to 1).  With a cut on both sides and D filtered
# axes the output error is at most 2 * D * G**(D - 1) * R * T(d); the halo is
# the smallest d making that <= tol * R.  T decays like |p_max|**d, which is
# dask-image's ceil(log(tol) / log|p|) with the constants written out.
# --------------------------------------------------------------------------

#: Relative tolerance the halo is sized for: 100x below the 1e-5 x range that
#: docs/grids-and-exactness.md promises for orders 2-5 ("Exactness"), so rounding has room.
PREFILTER_TOL = 1e-7


def poles(order: int) -> tuple[float, ...]:
    """Poles of the B-spline prefilter (same closed forms as scipy's ni_splines.c)."""
    if order == 2:
        return (math.sqrt(8.0) - 3.0,)
    if order == 3:
        return (math.sqrt(3.0) - 2.0,)
    if order == 4:
        return (
            math.sqrt(664.0 - math.sqrt(438976.0)) + math.sqrt(304.0) - 19.0,
            math.sqrt(664.0 + math.sqrt(438976.0)) - math.sqrt(304.0) - 19.0,
        )
    if order == 5:
        return (
            math.sqrt(67.5 - math.sqrt(4436.25)) + math.sqrt(26.25) - 6.5,
            math.sqrt(67.5 + math.sqrt(4436.25)) - math.sqrt(26.25) - 6.5,
        )
    return ()


@lru_cache(maxsize=None)
def prefilter_response(order: int, half_width: int = 200) -> np.ndarray:
    """Impulse response ``h[-half_width .. half_width]`` of the prefilter."""
    h = np.ones(1)
    k = np.arange(-half_width, half_width + 1)
    for p in poles(order):
        g = (1.0 - p) * (1.0 - 1.0 / p)
        h = np.convolve(h, g * (-p) / (1.0 - p * p) * p ** np.abs(k))
    c = len(h) // 2
    return h[c - half_width : c + half_width + 1]


@lru_cache(maxsize=None)
def halo(order: int, ndim: int = 3, tol: float = PREFILTER_TOL) -> int:
    """Prefilter halo in voxels for ``order``: 0 for orders 0 and 1.

    See the derivation above; for the default tolerance and three axes this
    gives 12, 17, 23 and 29 voxels for orders 2 to 5.
    """
    if order < 2:
        return 0
    h = np.abs(prefilter_response(order))
    c = len(h) // 2
    gain = h.sum()
    budget = tol / (2 * max(ndim, 1) * gain ** max(ndim - 1, 0))
    for d in range(1, c):
        tail = h[c + d :].sum() + h[: c - d + 1].sum()
        if tail <= budget:
            return d
    raise SplineError(f"tolerance {tol!r} too small for order {order}")


# --------------------------------------------------------------------------
# Where a label can win (docs/grids-and-exactness.md, "Label maps").
#
# A label's interpolated indicator at a sample x is sum_k c[k] * w_k(x), with
# non-negative weights summing to 1 over the taps k (|x_a - k_a| <= (order+1)/2
# on every axis, folded taps included) and coefficients c = h (x) ... (x) h
# applied to the indicator (its line extended by the boundary rules: mirrored,
# reflected, wrapped images).  If every voxel of the label, images included,
# lies at least D voxels beyond every tap along one axis a, then
#     |c[k]| <= sum_{i >= D} |h[i]| * G**(ndim - 1),   G = sum |h|,
# (a one-sided tail along a, whole lines along the others), and so is the
# value.  With K candidate labels, whose values sum to 1, the winner has at
# least (1 - K * bound) / K; a bound <= 1/(4K) leaves it 1/(2K) ahead of a
# label that far away.
# --------------------------------------------------------------------------


@lru_cache(maxsize=None)
def _tails(order: int, ndim: int) -> np.ndarray:
    """``G**(ndim - 1) * sum_{i >= D} |h[i]|`` for D = 0, 1, 2, ... (the bound above)."""
    h = np.abs(prefilter_response(order))
    c = len(h) // 2
    return h.sum() ** max(ndim - 1, 0) * np.cumsum(h[c:][::-1])[::-1]


def winning_reach(order: int, ndim: int, candidates: int) -> int:
    """Input voxels beyond a label's bounding box (order >= 2) within which its
    interpolated indicator can win the arg-max of ``candidates`` labels' (see
    above): a sample farther than ``r`` from the box along some axis has taps
    ``D = floor(r - (order + 1) / 2) + 1`` or more voxels from every voxel of
    it, so the label's value is at most ``1 / (4 * candidates)``.  At most
    ``order + 1 + halo(order, ndim)`` (``D`` stays within the halo, so the
    images of a label across a window's cut are farther still)."""
    h = halo(order, ndim)
    cap = order + 1 + h
    if order < 2:
        return order + 1
    tails, budget = _tails(order, ndim), 1.0 / (4.0 * max(int(candidates), 1))
    for r in range(1, cap):
        d = math.floor(r - (order + 1) / 2) + 1
        if 1 <= d <= h and tails[d] <= budget:
            return r
    return cap


#: Lines at least this long are prefiltered plane by plane in numpy (below).
#: Then every pole's horizon (|p|**k < 1e-16: 44 samples for order 5) fits
#: inside the line, the far-end terms of the boundary starts vanish, and the
#: truncated starts equal scipy's full ones to rounding.
PLANEWISE_MIN_LEN = 64
_HORIZON_TOL = 1e-16


def prefilter_gain(zs) -> float:
    """The prefilter's gain for poles ``zs`` (scipy's ``apply_filter`` product)."""
    gain = 1.0
    for z in zs:
        gain *= (1.0 - z) * (1.0 - 1.0 / z)
    return gain


def start_kind(mode: str) -> str:
    """The boundary start scipy's ni_splines.c gives a prefilter line in ``mode``:
    periodic for 'grid-wrap', reflect for 'reflect' and 'nearest', else mirror."""
    if mode == "grid-wrap":
        return "wrap"
    if mode in ("reflect", "nearest"):
        return "reflect"
    return "mirror"


def start_horizon(z: float, n: int) -> int:
    """Terms of a boundary start's sum kept for pole ``z`` on a line of ``n``
    samples: up to ``|z|**k < 1e-16``."""
    return min(n - 1, int(math.ceil(math.log(_HORIZON_TOL) / math.log(abs(z)))))


def prefilter_planes(x: np.ndarray, out: np.ndarray, order: int, mode: str, axis: int) -> np.ndarray:
    """scipy.ndimage.spline_filter1d along a non-contiguous ``axis``, plane by plane.

    scipy walks each line with the axis' stride, one element at a time; along
    the outer axes of a C-ordered block that is one cache miss per sample.
    Here the recursions run on whole (hyper)planes, which numpy streams:
    about 2.5x faster for the slowest axis (benchmarks/bench_engine.py).  Same
    gain, poles, recursions and boundary starts as scipy's ni_splines.c
    (mirror start for 'mirror', 'constant', 'wrap' and 'grid-constant';
    reflect start for 'reflect' and 'nearest'; periodic for 'grid-wrap'),
    with the starts' sums truncated at the pole's horizon.  Needs
    ``x.shape[axis] >= PLANEWISE_MIN_LEN``.
    """
    n = x.shape[axis]
    if n < PLANEWISE_MIN_LEN:
        raise ValueError(f"line of {n} samples is too short for the planewise prefilter")
    zs = poles(order)
    return prefilter_recursions(x, out, axis, prefilter_gain(zs), zs, [start_horizon(z, n) for z in zs],
                                start_kind(mode))


def prefilter_recursions(x, out, axis: int, gain: float, zs, horizons, kind: str) -> np.ndarray:
    """``prefilter_planes`` with its gain, poles ``zs``, their starts' ``horizons``
    and start ``kind`` ('mirror', 'reflect', 'wrap') given: the compiled
    ``kernel.prefilter_lines``' stand-in without the C extension
    (``bigresample/_pykernel.py``), the same operations in the same order."""
    n = x.shape[axis]
    lead = (slice(None),) * axis

    def P(i):
        return out[lead + (i,)]

    np.multiply(x, np.float64(gain), out=out)  # a strong float64: no float32 arithmetic
    tmp = np.empty(P(0).shape)
    acc = np.empty(P(0).shape)
    for z, horizon in zip(zs, horizons):
        z, horizon = float(z), int(horizon)
        # causal start
        if kind == "wrap":  # c0 + sum_{i>=1} z^i c[n-i]
            np.copyto(acc, P(0))
            zi = z
            for i in range(1, horizon + 1):
                np.multiply(P(n - i), zi, out=tmp)
                acc += tmp
                zi *= z
        else:  # sum_{i>=0} z^i c[i]
            np.copyto(acc, P(0))
            zi = z
            for i in range(1, horizon + 1):
                np.multiply(P(i), zi, out=tmp)
                acc += tmp
                zi *= z
            if kind == "reflect":  # c0 + z * sum
                acc *= z
                acc += P(0)
        np.copyto(P(0), acc)
        # causal recursion
        for i in range(1, n):
            np.multiply(P(i - 1), z, out=tmp)
            P(i)[...] += tmp
        # anti-causal start
        last = P(n - 1)
        if kind == "mirror":
            np.multiply(P(n - 2), z, out=tmp)
            tmp += last
            np.multiply(tmp, z / (z * z - 1.0), out=last)
        elif kind == "reflect":
            last *= z / (z - 1.0)
        else:  # wrap: (c[n-1] + sum_{i>=0} z^(i+1) c[i]) * z / (z^n - 1), z^n -> 0
            zi = z
            for i in range(0, horizon):
                np.multiply(P(i), zi, out=tmp)
                last += tmp
                zi *= z
            last *= -z
        # anti-causal recursion
        for i in range(n - 2, -1, -1):
            np.subtract(P(i + 1), P(i), out=tmp)
            np.multiply(tmp, z, out=P(i))
    return out
