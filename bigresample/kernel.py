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

_JIT = dict(nogil=True, cache=True, fastmath=False)


@njit(**_JIT)
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


@njit(**_JIT)
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


@njit(**_JIT)
def _map(x, n, mode):
    if x < 0:
        return _map_low(x, n, mode)
    if x > n - 1:
        return _map_high(x, n, mode)
    return x


@njit(**_JIT)
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


@njit(**_JIT)
def _start(cc, order):
    """First tap of a (mapped) coordinate, as scipy finds it."""
    if order & 1:
        return int(math.floor(cc)) - order // 2
    return int(math.floor(cc + 0.5)) - order // 2


@njit(**_JIT)
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


@njit(**_JIT)
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


@njit(**_JIT)
def _bulk(cc, first, width, order):
    """Window position of the first tap if every tap lies inside the window
    (and so inside the volume) and the coordinate needs no mapping, else -1."""
    if not cc >= 0.0:
        return -1
    j = _start(cc, order) - first
    if j < 0 or j + order >= width:
        return -1
    return j


@njit(**_JIT)
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
    bad = 0
    for z in range(bz):
        oz = float(origin[2] + z)
        for y in range(by):
            oy = float(origin[1] + y)
            ry = (oy * matrix[0, 1], oy * matrix[1, 1], oy * matrix[2, 1])
            rz = (oz * matrix[0, 2], oz * matrix[1, 2], oz * matrix[2, 2])
            dst = out[z, y]
            if mode == _NEAREST and order < 2:
                nslow = _row_nearest(data, dst, colx, geom, slow, order, *ry, *rz)
            else:
                nslow = _row(data, dst, colx, geom, slow, pad, order, mode, cval, *ry, *rz, w)
            if nslow:
                bad += _edges(data, dst, colx, geom, slow, nslow, pad, order, mode, cval, *ry, *rz, idx, w)
    return bad


@njit(**_JIT)
def _row(data, dst, colx, geom, slow, pad, order, mode, cval, ryx, ryy, ryz, rzx, rzy, rzz, w):
    """One output row along x, but the voxels near or beyond the volume's
    edges: their positions go to ``slow``; returns how many."""
    fx, fy, fz, wx, wy, wz = geom[0], geom[1], geom[2], geom[3], geom[4], geom[5]
    limx, limy, limz = geom[6] - 1.0, geom[7] - 1.0, geom[8] - 1.0
    nslow = 0
    for x in range(dst.shape[0]):
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


@njit(**_JIT)
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


@njit(**_JIT)
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


@njit(**_JIT)
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


@njit(**_JIT)
def _clamped(cc, order, first, length, width):
    """'nearest' at orders 0 and 1 (no pre-pad): the window positions of the
    two taps, clamped to the volume as scipy folds them (-1: outside the window)."""
    s = _start(cc, order)
    j0 = min(max(s, 0), length - 1) - first
    j1 = min(max(s + 1, 0), length - 1) - first
    if j0 < 0 or j0 >= width or j1 < 0 or j1 >= width:
        return -1, -1
    return j0, j1


@njit(**_JIT)
def _row_nearest(data, dst, colx, geom, slow, order, ryx, ryy, ryz, rzx, rzy, rzz):
    """``_row`` for 'nearest' at orders 0 and 1: points beyond the edges too."""
    nslow = 0
    for x in range(dst.shape[0]):
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
