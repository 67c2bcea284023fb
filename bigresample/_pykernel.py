"""The fallback for the C extension ``bigresample._kernel``: the same
functions, with the same arguments, in numpy and scipy.  ``kernel.py``
imports it in the extension's place when the extension was not built (no
compiler at install time) or ``BIGRESAMPLE_KERNEL=python`` asks for it; the
rest of bigresample does not know which one runs.

* ``resample_block``: ``scipy.ndimage.map_coordinates`` on the block's
  window (``prefilter=False``: at orders >= 2 the window holds the B-spline
  coefficients already), one output plane at a time, with the coordinates
  computed as scipy's ``affine_transform`` computes them
  (``((offset + o_x m_0) + o_y m_1) + o_z m_2``, then ``+ prepad``) and
  moved onto the window (minus ``first``: exact for the coordinates a window
  holds).  scipy's own taps, weights and boundary rules: order 0 gives the
  whole-array call's values bit for bit, the others within a few 1e-16 of
  the range.  What the coordinates cost (24 bytes per voxel of a plane) is
  one plane's, not the block's.
* ``sample_points``: ``map_coordinates`` on the window at the coordinates
  given, moved onto it as ``resample_block``'s.
* ``chain_points``: the chain's numpy steps (``registration.affine_points``,
  ``map_coordinates`` on each field's window), a piece of rows at a time.
* ``prefilter_lines``: ``splines.prefilter_recursions``, the numpy
  recursions the C code was written from (the same values bit for bit).
* ``spline_filter_lines``: scipy's ``spline_filter1d`` in a mode of the same
  start.
* ``label_boxes``: ``np.bincount`` and ``scipy.ndimage.find_objects``.
* ``axis_sum`` / ``axis_take``: numpy gathers and sums in the C code's order
  (the separable engine calls its own ``engine._eval_axis_numpy`` instead;
  these serve direct callers).

``span`` (the C code's interior spans) has no counterpart: the fallback has
no interior route.
"""

from __future__ import annotations

import numpy as np

from . import splines

#: ``kernel.MODE_CODES`` the other way round.
_MODES = ("nearest", "wrap", "reflect", "mirror", "constant", "grid-wrap", "grid-constant")
#: Output voxels of one pass of ``chain_points`` (its temporaries: a few (n, 3) float64 arrays).
_PIECE_POINTS = 2**16
#: ``kernel.PREFILTER_KINDS`` the other way round.
_KINDS = ("mirror", "reflect", "wrap")
#: a scipy mode whose prefilter starts as each of those (ni_splines.c's ``apply_filter``)
_SPLINE_MODES = ("mirror", "reflect", "grid-wrap")


def resample_block(data, out, *, matrix, offset, origin, first, pad, order, mode, cval, rows=None) -> int:
    """``kernel.resample_block`` (lists for the matrix, offset, origin and first); the
    lines' lengths and the interior spans are not needed here (the window's edge at the
    volume's is where scipy's boundary rules apply); ``rows`` (ITK's rule: each row's part
    inside the input) as the extension checks it, ``cval`` written around that part.
    Returns 0: the taps lie in the window as planned."""
    from scipy import ndimage

    outside = None if rows is None else _outside(out, rows)
    m = np.asarray(matrix, dtype=np.float64).reshape(3, 3)
    bz, by, bx = out.shape
    o = [np.arange(origin[a], origin[a] + n, dtype=np.float64) for a, n in enumerate((bx, by, bz))]
    coords = np.empty((3, by, bx), dtype=np.float64)
    row = np.empty((3, by, bx), dtype=np.float64)
    for i in range(3):  # the x and y terms of every plane: scipy's order, then the z term per plane
        np.add(offset[i] + o[0] * m[i, 0], (o[1] * m[i, 1])[:, None], out=row[i])
    src = np.asarray(data).T  # (x, y, z): the order of the coordinates' axes
    for k in range(bz):
        for i in range(3):
            np.add(row[i], o[2][k] * m[i, 2], out=coords[i])
            if pad:
                coords[i] += pad
            coords[i] -= first[i]
        ndimage.map_coordinates(src, coords, output=out[k], order=order, mode=_MODES[mode], cval=cval,
                                prefilter=False)
    if rows is not None:
        out[outside] = cval
    return 0


def _outside(out, rows) -> np.ndarray:
    """The voxels of ``out`` (``(bz, by, bx)``) outside each row's part ``rows[0] <= x < rows[1]``,
    after the checks the extension makes (before anything is written)."""
    rows = np.asarray(rows)
    bz, by, bx = out.shape
    if rows.dtype != np.int64 or rows.shape != (2, bz, by):
        raise TypeError(f"resample_block: rows must be int64 of shape (2, {bz}, {by})")
    lo, hi = rows
    if np.any(lo < 0) or np.any(lo > hi) or np.any(hi > bx):
        raise ValueError(f"resample_block: a row's part is not within [0, {bx}]")
    x = np.arange(bx)
    return (x < lo[..., None]) | (x >= hi[..., None])


def sample_points(data, coords, out, first, length, pad, order, mode, cval) -> int:
    """``kernel.sample_points``: ``map_coordinates`` on the window (``prefilter=False``),
    the coordinates moved onto it (plus ``pad``, minus ``first``); refuses
    coordinates not finite or beyond 2**62 as the extension does.  Returns 0."""
    from scipy import ndimage

    c = np.asarray(coords, dtype=np.float64)
    if c.ndim != 2 or c.shape[1] != 3 or out.size != c.shape[0]:
        raise ValueError(f"sample_points: (n, 3) coordinates for {out.size} output samples; got {c.shape}")
    with np.errstate(invalid="ignore"):
        if not np.all(np.abs(c) + pad < 2.0**62):
            raise ValueError("sample_points: a coordinate is not finite or reaches 2**62")
    local = ((c + pad) - np.asarray(first, dtype=np.float64)).T
    flat = out.reshape(-1)
    ndimage.map_coordinates(np.asarray(data).T, local, output=flat, order=order, mode=_MODES[mode], cval=cval,
                            prefilter=False)
    return 0


def chain_points(out, origin, count, matrices, fields, inside=None, in_shape=None) -> tuple:
    """``kernel.chain_points`` in numpy: the block's points, each matrix by
    ``registration.affine_points``, each field by ``map_coordinates`` (order 1,
    ``nearest``) on its window, a piece of rows at a time."""
    from scipy import ndimage

    from .registration import affine_points

    nx, ny, nz = (int(v) for v in count)
    if np.shape(out) != (nx * ny * nz, 3) or len(matrices) != len(fields) + 1:
        raise ValueError(f"chain_points: (n, 3) output for the block and one matrix more than fields; got "
                         f"{np.shape(out)}, {len(matrices)} matrices, {len(fields)} fields")
    mats = [np.vstack([np.asarray(m, dtype=np.float64).reshape(-1)[:12].reshape(3, 4), (0, 0, 0, 1)])
            for m in matrices]
    invs = [np.vstack([np.asarray(inv, dtype=np.float64).reshape(-1)[:12].reshape(3, 4), (0, 0, 0, 1)])
            for _, inv, _, _ in fields]
    rows = max(1, _PIECE_POINTS // nx)
    yz = np.stack(np.meshgrid(np.arange(origin[1], origin[1] + ny, dtype=np.float64),
                              np.arange(origin[2], origin[2] + nz, dtype=np.float64), indexing="xy"),
                  axis=-1).reshape(-1, 2)
    ox = np.arange(origin[0], origin[0] + nx, dtype=np.float64)
    for r0 in range(0, len(yz), rows):
        part = yz[r0:r0 + rows]
        idx = np.empty((len(part), nx, 3))
        idx[..., 0] = ox
        idx[..., 1:] = part[:, None, :]
        p = affine_points(idx.reshape(-1, 3), mats[0])
        for k, (win, _, first, shape) in enumerate(fields):
            v = affine_points(p, invs[k])
            with np.errstate(invalid="ignore"):
                if not np.all(np.abs(v) < 2.0**62):
                    return k + 1, (np.nan,) * 3, (np.nan,) * 3, 0
            local = (np.clip(v, 0, np.asarray(shape, dtype=np.float64) - 1) - np.asarray(first)).T
            d = np.empty_like(p)
            for c in range(3):
                ndimage.map_coordinates(np.asarray(win, dtype=np.float64)[..., c], local, output=d[:, c], order=1,
                                        mode="nearest")
            p = affine_points(p + d, mats[k + 1])
        out[r0 * nx:(r0 + len(part)) * nx] = p
    return (0,) + _stats(out, inside, in_shape)


def _stats(points, inside, in_shape) -> tuple:
    """``chain_points``' bounds of the points counted and their number (ITK's rule into ``inside``)."""
    from . import bounds
    from .registration import column_bounds

    if inside is not None:
        inside[...] = bounds.inside(points[:, 0], in_shape[0])
        for a in (1, 2):
            inside &= bounds.inside(points[:, a], in_shape[a])
        points = points[inside]
    if not len(points):
        return (np.inf,) * 3, (-np.inf,) * 3, 0
    lo, hi = column_bounds(points)
    return tuple(lo), tuple(hi), len(points)


def prefilter_lines(a, gain, zs, horizons, kind, acc) -> None:
    """``kernel.prefilter_lines``: along axis 1 of the 3-d float64 view ``a``, in place."""
    splines.prefilter_recursions(a, a, 1, gain, zs, horizons, _KINDS[kind])


def spline_filter_lines(a, order, kind, acc) -> None:
    """``kernel.spline_filter_lines``: scipy's ``spline_filter1d`` itself along axis 1 of the
    3-d float64 view ``a``, in place, in a mode whose start is ``kind``'s."""
    from scipy import ndimage

    ndimage.spline_filter1d(a, order, axis=1, output=a, mode=_SPLINE_MODES[kind])


def label_boxes(keys, lo, counts, boxes) -> None:
    """``kernel.label_boxes``: ``np.bincount`` and ``scipy.ndimage.find_objects`` of the keys' ids."""
    from scipy import ndimage

    shifted = keys - keys.dtype.type(lo)
    if shifted.dtype.itemsize >= 8:
        shifted = shifted.astype(np.int64)
    n = len(counts)
    if shifted.size and int(shifted.max()) >= n:
        raise ValueError("label_boxes: a key below lo or not below lo + len(counts)")
    counts[...] = np.bincount(shifted.reshape(-1), minlength=n)
    for k, box in enumerate(ndimage.find_objects(shifted.astype(np.int64) + 1, max_label=n)):
        if box is not None:
            boxes[k] = [v for s in box for v in (s.start, s.stop - 1)]


def axis_sum(x, out, index, weights) -> None:
    """``kernel.axis_sum``: the first tap's products in float64, each next one added, cast once."""
    acc = np.multiply(x[:, index[:, 0], :], weights[:, 0][None, :, None], dtype=np.float64)
    for t in range(1, index.shape[1]):
        acc += np.multiply(x[:, index[:, t], :], weights[:, t][None, :, None], dtype=np.float64)
    np.copyto(out, acc, casting="unsafe")


def axis_take(x, out, index) -> None:
    """``kernel.axis_take``: ``out[o, j, i] = x[o, index[j, 0], i]``."""
    np.copyto(out, x[:, index[:, 0], :])
