"""The general path's compiled kernel: one output block from one input window.

``scipy.ndimage.affine_transform`` (``NI_GeometricTransform`` in scipy's
ni_interpolation.c) visits every output voxel, computes its input coordinate,
maps it through the boundary mode, finds its ``order + 1`` taps per axis
(folding those outside the line with the spline's boundary mode) and sums the
taps' values times their B-spline weights.  This module does the same, per
block, compiled by numba (``nogil``: worker threads run it in parallel), with
three differences that cost nothing in exactness:

* the coordinates are never stored: each is computed where it is used, in
  scipy's own order and rounding (``((offset + o_x m_0) + o_y m_1) + o_z m_2``,
  then ``+ prepad``), the first two terms per block column and row;
* a voxel whose taps all lie inside the window and inside the volume (the
  bulk) is summed separably (along x, then y, then z) with the weights of
  scipy's ``get_spline_interpolation_weights``; the others (near and beyond
  the volume's edges) take scipy's per-point route (``map_coordinate``, the
  taps folded by the spline boundary mode, ``grid-constant`` taps reading
  ``cval``, ``constant`` points outside the volume set to ``cval``);
* the sum's order differs from scipy's (which multiplies each tap by the three
  weights in turn): order 0 is identical (one tap), orders >= 1 differ in the
  last bits (a few 1e-16 of the input's range).
* at orders 0 and 1 each row's *interior span* (``_span``: the x range whose
  taps all lie inside the window, with coordinates inside the volume or, for
  'nearest', clamped onto it; solved once per row and axis from the row's
  linear coordinates, 1e-6 voxel and one x inside the exact bounds) runs
  without tests (``_interior``), in two passes: the taps' flat window
  positions and weights (vectorised), then the reads.  Order 0 computes
  scipy's coordinates there too (identical, ties included); order 1 takes
  scipy's at the span's start plus ``k`` times the matrix's first column (a
  few 1e-13 voxel off scipy's, so within 1e-12 of the input's range); the part
  of that span whose coordinates lie inside the volume on every axis (no
  clamping, every second tap the next sample) in one pass with fixed steps
  (``_linear_inside``).
* at order 3 the row's interior span (the same ``_span``, for four taps)
  runs without tests too (``_interior_cubic``): ``_row``'s sums in the same
  order, so the same values bit for bit;
* for orders >= 2 the window's prefilter is compiled too (``prefilter_lines``).

The window is in file order (``(z, y, x)``, C-ordered), and so is the output
block: what a NIfTI holds, no transposing.  For orders >= 2 the window holds
the B-spline coefficients (``transform.AffineResampler._coefficients``),
pre-padded like scipy's whole array; ``first`` gives, per input axis, the
index of the window's first sample on scipy's (pre-padded) line of length
``length``.  Compiled at first use and cached on disk (numba's ``cache``: in
the package's ``__pycache__``, else the user's cache folder, or
``NUMBA_CACHE_DIR``).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

#: Boundary modes as the kernel numbers them ('grid-mirror' is parsed as 'reflect').
MODE_CODES = {"nearest": 0, "wrap": 1, "reflect": 2, "mirror": 3, "constant": 4, "grid-wrap": 5,
              "grid-constant": 6}
_NEAREST, _WRAP, _REFLECT, _MIRROR, _CONSTANT, _GRID_WRAP, _GRID_CONSTANT = range(7)



def _jit(fn=None, **options):
    """Compiled without fast-math (scipy's rounding), the GIL released, cached
    on disk; compiled in every process if no cache folder is writable."""
    if fn is None:
        return lambda f: _jit(f, **options)
    try:
        return njit(nogil=True, cache=True, fastmath=False, **options)(fn)
    except RuntimeError:  # numba: "cannot cache function ...: no locator available"
        return njit(nogil=True, fastmath=False, **options)(fn)


@_jit
def _map_low(x, n, mode):
    """``map_coordinate`` of ni_interpolation.c for ``x < 0``."""
    if mode == _NEAREST:
        return 0.0
    if mode == _CONSTANT:
        return -1.0
    if mode == _GRID_CONSTANT:
        return x
    if n <= 1:
        return 0.0
    if mode == _MIRROR:
        sz2 = 2 * n - 2
        x = sz2 * int(-x / sz2) + x
        return x + sz2 if x <= 1 - n else -x
    if mode == _REFLECT:
        sz2 = 2 * n
        if x < -sz2:
            x = sz2 * int(-x / sz2) + x
        if x < -n:
            return x + sz2
        return (1e-15 if x > -1e-15 else -x) - 1
    if mode == _WRAP:
        sz = n - 1
        return x + sz * (int(-x / sz) + 1)
    return x + n * (int((-1 - x) / n) + 1)  # grid-wrap


@_jit
def _map_high(x, n, mode):
    """``map_coordinate`` of ni_interpolation.c for ``x > n - 1``."""
    if mode == _NEAREST:
        return float(n - 1)
    if mode == _CONSTANT:
        return -1.0
    if mode == _GRID_CONSTANT:
        return x
    if n <= 1:
        return 0.0
    if mode == _MIRROR:
        sz2 = 2 * n - 2
        x -= sz2 * int(x / sz2)
        return sz2 - x if x >= n else x
    if mode == _REFLECT:
        sz2 = 2 * n
        x -= sz2 * int(x / sz2)
        return sz2 - x - 1 if x >= n else x
    if mode == _WRAP:
        sz = n - 1
        return x - sz * int(x / sz)
    return x - n * int(x / n)  # grid-wrap


@_jit
def _map(x, n, mode):
    if x < 0:
        return _map_low(x, n, mode)
    if x > n - 1:
        return _map_high(x, n, mode)
    return x


@_jit
def _weights(x, order):
    """``get_spline_interpolation_weights`` of scipy's ni_splines.c, term for
    term, as a tuple of six (the unused ones 0)."""
    x -= math.floor(x if order & 1 else x + 0.5)
    y = x
    z = 1.0 - x
    w0 = w1 = w2 = w3 = w4 = 0.0
    if order == 1:
        w0 = 1.0 - x
        return w0, 1.0 - w0, 0.0, 0.0, 0.0, 0.0
    if order == 2:
        w1 = 0.75 - x * x
        y = 0.5 - x
        w0 = 0.5 * y * y
        return w0, w1, (1.0 - w0) - w1, 0.0, 0.0, 0.0
    if order == 3:
        w1 = (y * y * (y - 2.0) * 3.0 + 4.0) / 6.0
        w2 = (z * z * (z - 2.0) * 3.0 + 4.0) / 6.0
        w0 = z * z * z / 6.0
        return w0, w1, w2, ((1.0 - w0) - w1) - w2, 0.0, 0.0
    if order == 4:
        t = x * x
        w2 = t * (t * 0.25 - 0.625) + 115.0 / 192.0
        y = 1.0 + x
        w1 = y * (y * (y * (5.0 - y) / 6.0 - 1.25) + 5.0 / 24.0) + 55.0 / 96.0
        w3 = z * (z * (z * (5.0 - z) / 6.0 - 1.25) + 5.0 / 24.0) + 55.0 / 96.0
        y = 0.5 - x
        t = y * y
        w0 = t * t / 24.0
        return w0, w1, w2, w3, (((1.0 - w0) - w1) - w2) - w3, 0.0
    if order == 5:
        t = y * y
        w2 = t * (t * (0.25 - y / 12.0) - 0.5) + 0.55
        t = z * z
        w3 = t * (t * (0.25 - z / 12.0) - 0.5) + 0.55
        y += 1.0
        w1 = y * (y * (y * (y * (y / 24.0 - 0.375) + 1.25) - 1.75) + 0.625) + 0.425
        z += 1.0
        w4 = z * (z * (z * (z * (z / 24.0 - 0.375) + 1.25) - 1.75) + 0.625) + 0.425
        y = 1.0 - x
        t = y * y
        w0 = y * t * t / 120.0
        return w0, w1, w2, w3, w4, ((((1.0 - w0) - w1) - w2) - w3) - w4
    return 1.0, 0.0, 0.0, 0.0, 0.0, 0.0  # order 0: the one tap, unweighted


@_jit
def _start(cc, order):
    """First tap of a (mapped) coordinate, as scipy finds it."""
    if order & 1:
        return int(math.floor(cc)) - order // 2
    return int(math.floor(cc + 0.5)) - order // 2


@_jit
def _tap(i, folds, length, first, width, mode):
    """Window position of tap ``i`` of a line of ``length``: folded by the
    spline's boundary mode if the point's taps cross an edge (``folds``), -1
    for a grid-constant tap outside (cval), -2 if outside the window."""
    if mode == _GRID_CONSTANT:
        if i < 0 or i >= length:
            return -1
    elif folds:
        smode = _MIRROR if mode == _CONSTANT or mode == _WRAP else mode
        i = int(_map(float(i), length, smode))
    j = i - first
    return j if 0 <= j < width else -2


@_jit
def _axis_start(cc, length, order, mode):
    """One axis of scipy's per-point route for the coordinate ``cc`` (prepad
    included): ``(cval, cc, start, folds)``: cval True if the point is cval
    ('constant' outside), else the mapped coordinate, its first tap and
    whether its taps cross an edge of the line."""
    if mode != _GRID_CONSTANT and mode != _NEAREST:
        cc = _map(cc, length, mode)
        if not cc > -1.0:
            return True, cc, 0, False
    start = _start(cc, order)
    return False, cc, start, start < 0 or start + order >= length


@_jit
def _bulk(cc, first, width, order):
    """Window position of the first tap if every tap lies inside the window
    (and so inside the volume) and the coordinate needs no mapping, else -1."""
    if not cc >= 0.0:
        return -1
    j = _start(cc, order) - first
    if j < 0 or j + order >= width:
        return -1
    return j


@_jit
def resample_block(data, out, matrix, offset, origin, first, length, pad, order, mode, cval):
    """Fill ``out`` (``(bz, by, bx)``) with the samples of output voxels
    ``origin + (x, y, z)``.  ``matrix``/``offset``: input coordinate per
    output index, spatial-first (scipy's); ``first``/``length`` per input axis
    (x, y, z); ``pad``: scipy's pre-pad (added to every coordinate).
    Returns the number of voxels whose taps left the window (0 unless the
    window was planned wrong)."""
    bz, by, bx = out.shape
    colx = np.empty((3, bx))
    for a in range(3):
        for x in range(bx):
            colx[a, x] = offset[a] + (origin[0] + x) * matrix[a, 0]
    geom = np.array([first[0], first[1], first[2], data.shape[2], data.shape[1], data.shape[0],
                     length[0], length[1], length[2]], dtype=np.int64)
    slow = np.empty(bx, dtype=np.int64)
    idx = np.zeros((3, 6), dtype=np.int64)
    w = np.zeros((3, 6))
    flat = data.ravel()  # a view of a C-ordered window
    tap = np.empty(bx, dtype=np.int64)
    frac = np.empty((3, bx))
    step = np.empty(bx, dtype=np.int64)
    bad = 0
    for z in range(bz):
        oz = float(origin[2] + z)
        for y in range(by):
            oy = float(origin[1] + y)
            ry = (oy * matrix[0, 1], oy * matrix[1, 1], oy * matrix[2, 1])
            rz = (oz * matrix[0, 2], oz * matrix[1, 2], oz * matrix[2, 2])
            dst = out[z, y]
            a, b = 0, 0
            if order < 2:
                a, b = _span(colx, geom, pad, order, mode == _NEAREST, *ry, *rz)
                _interior(flat, data.shape, dst, colx, geom, pad, order, a, b, matrix[0, 0], matrix[1, 0],
                          matrix[2, 0], tap, frac, step, *ry, *rz)
            elif order == 3:
                a, b = _span(colx, geom, pad, order, False, *ry, *rz)
                _interior_cubic(flat, data.shape, dst, colx, geom, pad, a, b, *ry, *rz)
            if mode == _NEAREST and order < 2:
                nslow = _row_nearest(data, dst, colx, geom, slow, order, a, b, *ry, *rz)
            else:
                nslow = _row(data, dst, colx, geom, slow, pad, order, mode, cval, a, b, *ry, *rz, w)
            if nslow:
                bad += _edges(data, dst, colx, geom, slow, nslow, pad, order, mode, cval, *ry, *rz, idx, w)
    return bad


@_jit
def _row(data, dst, colx, geom, slow, pad, order, mode, cval, a, b, ryx, ryy, ryz, rzx, rzy, rzz, w):
    """One output row along x but ``[a, b)`` (done by ``_interior``), and
    but the voxels near or beyond the volume's edges: their positions go to
    ``slow``; returns how many."""
    fx, fy, fz, wx, wy, wz = geom[0], geom[1], geom[2], geom[3], geom[4], geom[5]
    limx, limy, limz = geom[6] - 1.0, geom[7] - 1.0, geom[8] - 1.0
    nslow = 0
    for x in range(dst.shape[0]):
        if a <= x < b:
            continue
        cx = ((colx[0, x] + ryx) + rzx) + pad
        cy = ((colx[1, x] + ryy) + rzy) + pad
        cz = ((colx[2, x] + ryz) + rzz) + pad
        jx = _bulk(cx, fx, wx, order)
        jy = _bulk(cy, fy, wy, order)
        jz = _bulk(cz, fz, wz, order)
        if jx < 0 or jy < 0 or jz < 0 or cx > limx or cy > limy or cz > limz:
            slow[nslow] = x
            nslow += 1
        elif order == 0:
            dst[x] = data[jz, jy, jx]
        elif order == 1:
            ax = 1.0 - (cx - math.floor(cx))
            ay = 1.0 - (cy - math.floor(cy))
            az = 1.0 - (cz - math.floor(cz))
            bx, by, bz = 1.0 - ax, 1.0 - ay, 1.0 - az
            r00 = ax * float(data[jz, jy, jx]) + bx * float(data[jz, jy, jx + 1])
            r01 = ax * float(data[jz, jy + 1, jx]) + bx * float(data[jz, jy + 1, jx + 1])
            r10 = ax * float(data[jz + 1, jy, jx]) + bx * float(data[jz + 1, jy, jx + 1])
            r11 = ax * float(data[jz + 1, jy + 1, jx]) + bx * float(data[jz + 1, jy + 1, jx + 1])
            dst[x] = az * (ay * r00 + by * r01) + bz * (ay * r10 + by * r11)
        else:
            w[0, 0], w[0, 1], w[0, 2], w[0, 3], w[0, 4], w[0, 5] = _weights(cx, order)
            w[1, 0], w[1, 1], w[1, 2], w[1, 3], w[1, 4], w[1, 5] = _weights(cy, order)
            w[2, 0], w[2, 1], w[2, 2], w[2, 3], w[2, 4], w[2, 5] = _weights(cz, order)
            t = 0.0
            for k in range(order + 1):
                p = 0.0
                for j in range(order + 1):
                    q = 0.0
                    for i in range(order + 1):
                        q += w[0, i] * data[jz + k, jy + j, jx + i]
                    p += w[1, j] * q
                t += w[2, k] * p
            dst[x] = t
    return nslow


@_jit
def _edges(data, dst, colx, geom, slow, nslow, pad, order, mode, cval, ryx, ryy, ryz, rzx, rzy, rzz,
           idx, w):
    """The row's voxels listed in ``slow``, by scipy's per-point route."""
    bad = 0
    for k in range(nslow):
        x = slow[k]
        c = (((colx[0, x] + ryx) + rzx) + pad, ((colx[1, x] + ryy) + rzy) + pad,
             ((colx[2, x] + ryz) + rzz) + pad)
        outside = False
        for a in range(3):
            outside, cc, start, folds = _axis_start(c[a], geom[6 + a], order, mode)
            if outside:  # scipy stops at the first axis outside: cval
                break
            for t in range(order + 1):
                j = _tap(start + t, folds, geom[6 + a], geom[a], geom[3 + a], mode)
                bad += j == -2
                idx[a, t] = max(j, -1)
            w[a, 0], w[a, 1], w[a, 2], w[a, 3], w[a, 4], w[a, 5] = _weights(cc, order)
        if outside:
            dst[x] = cval
            continue
        dst[x] = _sum_taps(data, idx, w, order, cval) if mode == _GRID_CONSTANT else _sum_folded(data, idx, w, order)
    return bad


@_jit
def _sum_folded(data, idx, w, order):
    """Separable sum over taps that all read the window."""
    t = 0.0
    for c in range(order + 1):
        p = 0.0
        for b in range(order + 1):
            q = 0.0
            for a in range(order + 1):
                q += w[0, a] * data[idx[2, c], idx[1, b], idx[0, a]]
            p += w[1, b] * q
        t += w[2, c] * p
    return t


@_jit
def _sum_taps(data, idx, w, order, cval):
    """Sum over taps some of which read ``cval`` (``idx`` -1: 'grid-constant')."""
    t = 0.0
    for c in range(order + 1):
        for b in range(order + 1):
            for a in range(order + 1):
                iz, iy, ix = idx[2, c], idx[1, b], idx[0, a]
                v = cval if iz < 0 or iy < 0 or ix < 0 else float(data[iz, iy, ix])
                t += v * (w[2, c] * w[1, b] * w[0, a])
    return t


@_jit
def _clamped(cc, order, first, length, width):
    """'nearest' at orders 0 and 1 (no pre-pad): the window positions of the
    two taps, clamped to the volume as scipy folds them (-1: outside the window)."""
    s = _start(cc, order)
    j0 = min(max(s, 0), length - 1) - first
    j1 = min(max(s + 1, 0), length - 1) - first
    if j0 < 0 or j0 >= width or j1 < 0 or j1 >= width:
        return -1, -1
    return j0, j1


@_jit
def _row_nearest(data, dst, colx, geom, slow, order, a, b, ryx, ryy, ryz, rzx, rzy, rzz):
    """``_row`` for 'nearest' at orders 0 and 1: points beyond the edges too."""
    nslow = 0
    for x in range(dst.shape[0]):
        if a <= x < b:
            continue
        cx = (colx[0, x] + ryx) + rzx
        cy = (colx[1, x] + ryy) + rzy
        cz = (colx[2, x] + ryz) + rzz
        x0, x1 = _clamped(cx, order, geom[0], geom[6], geom[3])
        y0, y1 = _clamped(cy, order, geom[1], geom[7], geom[4])
        z0, z1 = _clamped(cz, order, geom[2], geom[8], geom[5])
        if x0 < 0 or y0 < 0 or z0 < 0:
            slow[nslow] = x
            nslow += 1
        elif order == 0:
            dst[x] = data[z0, y0, x0]
        else:
            ax = 1.0 - (cx - math.floor(cx))
            ay = 1.0 - (cy - math.floor(cy))
            az = 1.0 - (cz - math.floor(cz))
            bx, by, bz = 1.0 - ax, 1.0 - ay, 1.0 - az
            r00 = ax * float(data[z0, y0, x0]) + bx * float(data[z0, y0, x1])
            r01 = ax * float(data[z0, y1, x0]) + bx * float(data[z0, y1, x1])
            r10 = ax * float(data[z1, y0, x0]) + bx * float(data[z1, y0, x1])
            r11 = ax * float(data[z1, y1, x0]) + bx * float(data[z1, y1, x1])
            dst[x] = az * (ay * r00 + by * r01) + bz * (ay * r10 + by * r11)
    return nslow


#: Margin (in voxels) kept from the edges of the interior span: far above the
#: rounding of the span's linear estimate of the coordinates (~1e-13).
_SPAN_EPS = 1e-6


@_jit
def _axis_span(c0, m, lo, hi, n):
    """The x range ``[a, b)`` of ``0 <= x < n`` where ``c0 + x m`` lies in
    ``[lo + eps, hi - eps]``, one x narrower at each end inside the row
    (``lo``/``hi`` may be infinite)."""
    lo += _SPAN_EPS
    hi -= _SPAN_EPS
    if hi < lo:
        return 0, 0
    if m == 0.0:
        return (0, n) if lo <= c0 <= hi else (0, 0)
    t0, t1 = (lo - c0) / m, (hi - c0) / m
    if m < 0.0:
        t0, t1 = t1, t0
    if not (t1 >= 0.0 and t0 < n):  # also NaN
        return 0, 0
    a = int(math.ceil(t0)) + 1 if t0 > 0.0 else 0
    b = int(math.floor(t1)) if t1 < n else n
    return a, max(a, b)


@_jit
def _span(colx, geom, pad, order, clamp, ryx, ryy, ryz, rzx, rzy, rzz):
    """The x range of a row (orders 0 and 1) whose taps all lie inside the
    window, with coordinates inside the volume (no mapping by any mode) or,
    if ``clamp`` ('nearest'), anywhere on an axis whose window reaches the
    volume's edge: 'nearest' maps a coordinate beyond it onto the edge and
    its taps are the edge's."""
    n = colx.shape[1]
    if n < 2:
        return 0, 0
    a, b = 0, n
    r = ((ryx, rzx), (ryy, rzy), (ryz, rzz))
    for k in range(3):
        first, width, length = geom[k], geom[3 + k], geom[6 + k]
        c0 = ((colx[k, 0] + r[k][0]) + r[k][1]) + pad
        m = (colx[k, n - 1] - colx[k, 0]) / (n - 1)
        h = order // 2
        if order & 1:  # the taps floor(c) - h .. floor(c) + h + 1
            lo, hi = max(float(first + h), 0.0), min(first + width - 1.0 - h, length - 1.0)
        else:  # the taps floor(c + 0.5) - h .. floor(c + 0.5) + h
            lo, hi = max(first + h - 0.5, 0.0), min(first + width - 0.5 - h, length - 1.0)
        if clamp and first <= 0:
            lo = -math.inf
        if clamp and first + width >= length:
            hi = math.inf
        ka, kb = _axis_span(c0, m, lo, hi, n)
        a, b = max(a, ka), min(b, kb)
    return a, max(a, b)


@_jit(boundscheck=False, error_model="numpy")
def _interior_cubic(flat, shape, dst, colx, geom, pad, a, b, ryx, ryy, ryz, rzx, rzy, rzz):
    """Order 3 over the span ``[a, b)`` of ``_span`` (coefficients in
    ``flat``): ``_row``'s bulk route (scipy's coordinates and weights, the same
    sums in the same order, so the same values bit for bit) without its tests,
    the 16 rows of four taps read at fixed offsets from the first."""
    sy_, sz_ = shape[2], shape[2] * shape[1]
    base = geom[0] + geom[1] * sy_ + geom[2] * sz_ + 1 + sy_ + sz_  # the first tap is floor(c) - 1
    for x in range(a, b):
        cx = ((colx[0, x] + ryx) + rzx) + pad
        cy = ((colx[1, x] + ryy) + rzy) + pad
        cz = ((colx[2, x] + ryz) + rzz) + pad
        wx = _weights(cx, 3)
        wy = _weights(cy, 3)
        wz = _weights(cz, 3)
        t0 = int(math.floor(cx)) + int(math.floor(cy)) * sy_ + int(math.floor(cz)) * sz_ - base
        t = 0.0
        for k in range(4):
            p = 0.0
            for j in range(4):
                r = np.uint64(t0 + k * sz_ + j * sy_)
                q = 0.0
                q += wx[0] * flat[r]
                q += wx[1] * flat[r + np.uint64(1)]
                q += wx[2] * flat[r + np.uint64(2)]
                q += wx[3] * flat[r + np.uint64(3)]
                p += wy[j] * q
            t += wz[k] * p
        dst[x] = t


@_jit(boundscheck=False, error_model="numpy")
def _interior(flat, shape, dst, colx, geom, pad, order, a, b, mx, my, mz, tap, frac, step, ryx, ryy, ryz, rzx, rzy, rzz):
    """Orders 0 and 1 over the span ``[a, b)`` of ``_span``: no mapping, no
    folding, no test, in two passes (the taps' flat positions in the window
    and the weights, then the reads).  Order 0: coordinates in scipy's order
    and rounding (identical, ties included); order 1: scipy's coordinate at
    ``a`` plus ``(x - a)`` times the matrix's first column ``(mx, my, mz)``
    (a few 1e-13 off scipy's, no dependency between iterations)."""
    if b <= a:
        return
    sy_, sz_ = shape[2], shape[2] * shape[1]
    base = geom[0] + geom[1] * sy_ + geom[2] * sz_
    lx, ly, lz = geom[6] - 1.0, geom[7] - 1.0, geom[8] - 1.0
    if order == 0:
        for x in range(a, b):
            ix = int(min(max(((colx[0, x] + ryx) + rzx) + pad, 0.0), lx) + 0.5)
            iy = int(min(max(((colx[1, x] + ryy) + rzy) + pad, 0.0), ly) + 0.5)
            iz = int(min(max(((colx[2, x] + ryz) + rzz) + pad, 0.0), lz) + 0.5)
            tap[x] = ix + iy * sy_ + iz * sz_ - base
        for x in range(a, b):
            dst[x] = flat[np.uint64(tap[x])]
        return
    _interior_linear(flat, dst, colx, geom, pad, a, b, mx, my, mz, tap, frac[0], frac[1], frac[2], step, sy_,
                     sz_, base, ryx, ryy, ryz, rzx, rzy, rzz)


@_jit(boundscheck=False, error_model="numpy")
def _interior_linear(flat, dst, colx, geom, pad, a, b, mx, my, mz, tap, fx, fy, fz, step, sy_, sz_, base,
                     ryx, ryy, ryz, rzx, rzy, rzz):
    """Order 1 of ``_interior``."""
    lx, ly, lz = geom[6] - 1.0, geom[7] - 1.0, geom[8] - 1.0
    sx = ((colx[0, a] + ryx) + rzx) + pad
    sy = ((colx[1, a] + ryy) + rzy) + pad
    sz = ((colx[2, a] + ryz) + rzz) + pad
    # the part of the span whose coordinates lie inside the volume on every
    # axis: no clamping, every second tap the next sample (one pass, fixed steps)
    ia, ib = a, b
    for c0, m, l in ((sx, mx, lx), (sy, my, ly), (sz, mz, lz)):
        ka, kb = _axis_span(c0, m, 0.0, l, b - a)
        ia, ib = max(ia, a + ka), min(ib, a + kb)
    if ib > ia:
        _linear_inside(flat, dst, sx, sy, sz, a, ia, ib, mx, my, mz, sy_, sz_, base)
        _linear_clamped(flat, dst, sx, sy, sz, a, a, ia, mx, my, mz, lx, ly, lz, tap, fx, fy, fz, step, sy_, sz_, base)
        _linear_clamped(flat, dst, sx, sy, sz, a, ib, b, mx, my, mz, lx, ly, lz, tap, fx, fy, fz, step, sy_, sz_, base)
    else:
        _linear_clamped(flat, dst, sx, sy, sz, a, a, b, mx, my, mz, lx, ly, lz, tap, fx, fy, fz, step, sy_, sz_, base)


@_jit(boundscheck=False, error_model="numpy")
def _linear_inside(flat, dst, sx, sy, sz, a, ia, ib, mx, my, mz, sy_, sz_, base):
    """Order 1 over ``[ia, ib)``, where every coordinate lies in ``[0, length - 1)``."""
    dy, dz = np.uint64(sy_), np.uint64(sz_)
    one = np.uint64(1)
    for x in range(ia, ib):
        k = float(x - a)
        cx, cy, cz = sx + k * mx, sy + k * my, sz + k * mz
        ix, iy, iz = int(cx), int(cy), int(cz)
        bx, by, bz = cx - ix, cy - iy, cz - iz
        ax, ay, az = 1.0 - bx, 1.0 - by, 1.0 - bz
        t = np.uint64(ix + iy * sy_ + iz * sz_ - base)
        r00 = ax * float(flat[t]) + bx * float(flat[t + one])
        r01 = ax * float(flat[t + dy]) + bx * float(flat[t + dy + one])
        r10 = ax * float(flat[t + dz]) + bx * float(flat[t + dz + one])
        r11 = ax * float(flat[t + dz + dy]) + bx * float(flat[t + dz + dy + one])
        dst[x] = az * (ay * r00 + by * r01) + bz * (ay * r10 + by * r11)


@_jit(boundscheck=False, error_model="numpy")
def _linear_clamped(flat, dst, sx, sy, sz, a, lo, hi, mx, my, mz, lx, ly, lz, tap, fx, fy, fz, step, sy_, sz_, base):
    """Order 1 over ``[lo, hi)`` of the span, coordinates clamped to the volume."""
    for x in range(lo, hi):
        k = float(x - a)
        cx = min(max(sx + k * mx, 0.0), lx)
        cy = min(max(sy + k * my, 0.0), ly)
        cz = min(max(sz + k * mz, 0.0), lz)
        ix, iy, iz = int(cx), int(cy), int(cz)
        fx[x], fy[x], fz[x] = cx - ix, cy - iy, cz - iz
        # which second taps are the next sample (bits x, y, z); 'nearest' folds
        # the one beyond the last sample onto it (its weight is 0, as scipy's)
        step[x] = (ix < lx) + 2 * (iy < ly) + 4 * (iz < lz)
        tap[x] = ix + iy * sy_ + iz * sz_ - base
    for x in range(lo, hi):
        t, k = np.uint64(tap[x]), np.uint64(step[x])
        dx = k & np.uint64(1)
        dy = ((k >> np.uint64(1)) & np.uint64(1)) * np.uint64(sy_)
        dz = (k >> np.uint64(2)) * np.uint64(sz_)
        ax, ay, az = 1.0 - fx[x], 1.0 - fy[x], 1.0 - fz[x]
        bx, by, bz = 1.0 - ax, 1.0 - ay, 1.0 - az
        r00 = ax * float(flat[t]) + bx * float(flat[t + dx])
        r01 = ax * float(flat[t + dy]) + bx * float(flat[t + dy + dx])
        r10 = ax * float(flat[t + dz]) + bx * float(flat[t + dz + dx])
        r11 = ax * float(flat[t + dz + dy]) + bx * float(flat[t + dz + dy + dx])
        dst[x] = az * (ay * r00 + by * r01) + bz * (ay * r10 + by * r11)


#: ``splines.start_kind``'s starts as ``prefilter_lines`` numbers them.
PREFILTER_KINDS = {"mirror": 0, "reflect": 1, "wrap": 2}


@_jit(boundscheck=False)
def prefilter_lines(a, gain, zs, horizons, kind, acc):
    """``splines.prefilter_planes`` compiled: the B-spline prefilter along
    axis 1 of the 3-d float64 view ``a`` (``(lead, n, rest)``, any strides),
    in place, with the same gain, poles ``zs``, truncated boundary starts
    (``horizons``) and recursions, each operation in the same order and
    rounding (no fast-math, no fused multiply-adds), so its results are
    ``prefilter_planes``' bit for bit.  The innermost loop runs over ``rest``:
    the recursions of ``rest`` lines advance together, one pass over the
    window per direction instead of numpy's several per plane.  ``acc``: a
    scratch row of ``rest`` samples."""
    lead, n, rest = a.shape
    for l in range(lead):
        for i in range(n):
            for r in range(rest):
                a[l, i, r] = a[l, i, r] * gain
        for p in range(zs.shape[0]):
            z, h = zs[p], horizons[p]
            # causal start
            for r in range(rest):
                acc[r] = a[l, 0, r]
            zi = z
            for i in range(1, h + 1):
                k = n - i if kind == 2 else i
                for r in range(rest):
                    acc[r] = acc[r] + a[l, k, r] * zi
                zi *= z
            if kind == 1:
                for r in range(rest):
                    acc[r] = acc[r] * z + a[l, 0, r]
            for r in range(rest):
                a[l, 0, r] = acc[r]
            # causal recursion
            for i in range(1, n):
                for r in range(rest):
                    a[l, i, r] = a[l, i, r] + a[l, i - 1, r] * z
            # anti-causal start
            if kind == 0:
                f = z / (z * z - 1.0)
                for r in range(rest):
                    a[l, n - 1, r] = (a[l, n - 2, r] * z + a[l, n - 1, r]) * f
            elif kind == 1:
                f = z / (z - 1.0)
                for r in range(rest):
                    a[l, n - 1, r] = a[l, n - 1, r] * f
            else:
                zi = z
                for i in range(h):
                    for r in range(rest):
                        a[l, n - 1, r] = a[l, n - 1, r] + a[l, i, r] * zi
                    zi *= z
                for r in range(rest):
                    a[l, n - 1, r] = a[l, n - 1, r] * -z
            # anti-causal recursion
            for i in range(n - 2, -1, -1):
                for r in range(rest):
                    a[l, i, r] = (a[l, i + 1, r] - a[l, i, r]) * z
