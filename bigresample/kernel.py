"""The compiled kernels: the general path's (one output block from one input
window) and the separable engine's per-axis sum (``axis_sum``, at the end).

``scipy.ndimage.affine_transform`` (``NI_GeometricTransform`` in scipy's
ni_interpolation.c) visits every output voxel, computes its input coordinate,
maps it through the boundary mode, finds its ``order + 1`` taps per axis
(folding those outside the line with the spline's boundary mode) and sums the
taps' values times their B-spline weights.  This module does the same, per
block, in C (``_kernel.c``, built by ``pip install``; the GIL released:
worker threads run it in parallel), with differences that cost nothing in
exactness:

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
* at orders 0 and 1 each row's *interior span* (``span``: the x range whose
  taps all lie inside the window, with coordinates inside the volume or, for
  'nearest', clamped onto it; solved once per row and axis from the row's
  linear coordinates, 1e-6 voxel and one x inside the exact bounds) runs
  without tests.  Order 0 computes scipy's coordinates there too
  (``interior_nearest``: identical, ties included); order 1 takes scipy's at
  the span's start plus ``k`` times the matrix's first column
  (``interior_linear``: a few 1e-13 voxel off scipy's, so within 1e-12 of the
  input's range); the part of that span whose coordinates lie inside the
  volume on every axis (no clamping, every second tap the next sample) in one
  pass with fixed steps (``linear_inside``; from a float32 window, where the
  processor has AVX2, four voxels at a time: ``linear_reads``, the same
  operations in the same order, so the same bits).
* at order 3 the row's interior span (the same ``span``, for four taps)
  runs without tests too (``interior_cubic``): ``row``'s sums in the same
  order, so the same values bit for bit;
* for orders >= 2 the window's prefilter is compiled too (``prefilter_lines``;
  ``spline_filter_lines``: scipy's ``spline_filter1d`` bit for bit, for the separable engine).

The window is in file order (``(z, y, x)``, C-ordered), and so is the output
block: what a NIfTI holds, no transposing.  For orders >= 2 the window holds
the B-spline coefficients (``transform.AffineResampler._coefficients``),
pre-padded like scipy's whole array; ``first`` gives, per input axis, the
index of the window's first sample on scipy's (pre-padded) line of length
``length``.

The C code (``_kernel.c``: modes, weights and spans; ``_kernel_impl.h``: the
loops, once per window and output type) is this description operation for
operation, in double precision, compiled without fused multiply-adds
(``setup.py``); the names above are its functions'.  Compiled ahead (no JIT), it costs
nothing to load: the whole-process start of a numba kernel was ~0.8 s
(benchmarks/README.md, fifth round).

The separable engine (``engine._eval_axis``) sums ``order + 1`` taps along
one axis at a time; ``axis_sum`` (``_axis_impl.h``) is its numpy sum in C,
the same products added in the same order, so the same values bit for bit,
one pass over the window per axis instead of numpy's four per output plane
(and no interpreter between them: the GIL is released).
"""

from __future__ import annotations

import importlib
import os

import numpy as np

#: The environment variable that chooses the kernel: ``python`` runs on the
#: fallback (``bigresample/_pykernel.py``) even where the extension is built,
#: ``compiled`` refuses to run without the extension (``check``); unset (or
#: ``auto``): the extension if it imports, else the fallback.
ENV = "BIGRESAMPLE_KERNEL"
CHOICES = ("auto", "compiled", "python")
#: How much slower the fallback runs than the extension, as the report says it
#: (benchmarks/README.md, "The fallback beside the kernel": end to end, orders
#: 0/1/3, 0.9-1.8x the time on a spacing change, 1.6-3.8x onto a rotated grid).
FALLBACK_COST = "1-2x slower for a spacing change, 2-4x onto a rotated grid"


def _load():
    """The extension, or the fallback and why; the one place the kernel is chosen."""
    choice = os.environ.get(ENV, "").strip() or "auto"
    if choice.lower() != "python":
        try:
            return importlib.import_module("._kernel", __package__), None, choice
        except ModuleNotFoundError as exc:
            if exc.name != f"{__package__}._kernel":
                raise
            why = "bigresample._kernel was not built (no C compiler at install time?)"
        except ImportError as exc:  # built, but not loadable here (another Python, a missing symbol)
            why = f"bigresample._kernel did not import: {exc}"
    else:
        why = f"{ENV}=python"
    from . import _pykernel

    return _pykernel, why, choice


_kernel, FALLBACK_WHY, _CHOICE = _load()
#: True when the C extension runs.
COMPILED = FALLBACK_WHY is None


def describe() -> str:
    """The report's line on the kernel that runs (``report.Planned``)."""
    if COMPILED:
        return "compiled (the C extension bigresample._kernel)"
    return f"pure-Python fallback (no compiled kernel: {FALLBACK_WHY}), about {FALLBACK_COST}"


def check() -> None:
    """Refuse a run whose ``BIGRESAMPLE_KERNEL`` is not one of ``CHOICES``, or
    is ``compiled`` without the extension (``Request.make`` calls it)."""
    from .errors import BigresampleError

    if _CHOICE.lower() not in CHOICES:
        raise BigresampleError(f"{ENV} must be one of {', '.join(CHOICES)} (or unset); got {_CHOICE!r}")
    if _CHOICE.lower() == "compiled" and not COMPILED:
        raise BigresampleError(f"{ENV}=compiled, but {FALLBACK_WHY}")


#: Boundary modes as the kernel numbers them ('grid-mirror' is parsed as 'reflect').
MODE_CODES = {"nearest": 0, "wrap": 1, "reflect": 2, "mirror": 3, "constant": 4, "grid-wrap": 5,
              "grid-constant": 6}

#: ``splines.start_kind``'s starts as ``prefilter_lines`` numbers them.
PREFILTER_KINDS = {"mirror": 0, "reflect": 1, "wrap": 2}


#: The interior routes hold tap positions along an axis in 32 bits: longer
#: lines take the per-point route (exact too, slower).  So do the voxels of
#: orders 0 and 1 read from a window of more than 2**31 - 1 samples (8 GiB of
#: float32: the positions in the window are 32-bit too).
INTERIOR_MAX_LENGTH = 2**31 - 1


def resample_block(data, out, matrix, offset, origin, first, length, *, pad: float, order: int, mode: int,
                   cval: float, interior: bool | None = None, rows=None) -> int:
    """Fill ``out`` (``(bz, by, bx)``, C-ordered float32 or float64) with the
    samples of output voxels ``origin + (x, y, z)``.  ``data``: the window
    (``(z, y, x)``, any integer or float type in the machine's byte order);
    ``matrix``/``offset``: input coordinate per output index, spatial-first
    (scipy's); ``first``/``length`` per input axis (x, y, z); ``pad``: scipy's
    pre-pad (added to every coordinate).  ``interior``: run the rows' interior
    spans without tests (default: if no line is longer than
    ``INTERIOR_MAX_LENGTH``); False sends every voxel by scipy's per-point
    route.  ``rows``: ITK's rule, an int64 ``(2, bz, by)`` array, each output
    row's part ``[lo, hi)`` along x inside the input (``bounds.row_spans``):
    only that part is computed, ``cval`` written around it (None: every voxel
    computed).  Returns the number of taps that left the window (0 unless the
    window was planned wrong)."""
    data = np.ascontiguousarray(data)
    matrix, offset, origin, first = (np.ravel(v).tolist() for v in (matrix, offset, origin, first))
    if not COMPILED:  # the fallback by keyword; the extension's arguments are positional
        return _kernel.resample_block(data, out, matrix=matrix, offset=offset, origin=origin, first=first,
                                      pad=float(pad), order=int(order), mode=int(mode), cval=float(cval), rows=rows)
    length = np.ravel(length).tolist()
    if interior is None:
        interior = max(length) <= INTERIOR_MAX_LENGTH
    extra = () if rows is None else (rows,)  # (an extension built before rows= takes none: bench_kernel's baseline)
    return _kernel.resample_block(data, out, matrix, offset, origin, first, length, float(pad), int(order), int(mode),
                                  float(cval), bool(interior), *extra)


def sample_points(data, coords, out, first, length, pad: float, order: int, mode: int, cval: float) -> int:
    """Fill ``out`` (C-ordered float32 or float64, ``n`` samples, any shape)
    with the window ``data`` (``(z, y, x)``, as ``resample_block``'s) sampled
    at the explicit input coordinates ``coords`` (``(n, 3)`` float64, x y z
    per point, without scipy's pre-pad ``pad``, which is added): scipy's
    ``map_coordinates`` on the whole array (``prefilter=True``: at orders
    >= 2 ``data`` holds the window's coefficients) wherever the window holds
    every tap, by ``resample_block``'s routes (the bulk sum, else scipy's
    per-point route).  ``first``/``length``: per input axis, as for
    ``resample_block``.  A coordinate that is not finite or reaches 2**62 is
    refused (``ValueError``) before anything is written.  Returns the number
    of taps that left the window (0 unless the window was planned wrong)."""
    return _kernel.sample_points(np.ascontiguousarray(data), np.ascontiguousarray(coords, dtype=np.float64), out,
                                 np.ravel(first).tolist(), np.ravel(length).tolist(), float(pad), int(order),
                                 int(mode), float(cval))


def chain_points(out, origin, count, matrices, fields, inside=None, in_shape=None) -> tuple:
    """The input coordinates of every output voxel of a block through a chain, in one pass
    (``warp.WarpGrid.coordinates``): into ``out`` (``(n, 3)`` float64, x y z per point, x
    fastest) for the output indices ``origin + (x, y, z)``, ``0 <= x, y, z < count``; each
    point through ``matrices[0]``, then field 0, ``matrices[1]``, ..., ``matrices[-1]``
    (``3x4``, spatial first: ``registration.affine_points``' sums).  A field is ``(window,
    inverse, first, shape)``: its displacements ``(wx, wy, wz, 3)`` float64 read at ``first``
    of the field's ``shape``, and ``inverse`` (``3x4``) its world -> voxel index map; a point
    ``p`` becomes ``p + d(p)``, ``d`` trilinear with scipy's ``nearest`` (as
    ``registration.DisplacementField.displacements``, to a few 1e-16 of the displacements).
    ``inside`` (``n`` bools), with the input's ``in_shape``: ITK's rule per point
    (``bounds.inside`` on every axis) written there.  Returns ``(bad, lo, hi, counted)``:
    ``bad`` 0, or ``k + 1`` if a point's index on field ``k`` is not finite or reaches 2**62
    (the points after it unwritten); per axis the smallest and largest coordinate of the points
    counted (every point, NaN if one is not finite; with ``inside``, those inside) and how many.
    A tap outside a field's window is refused (``IndexError``)."""
    return _kernel.chain_points(out, np.ravel(origin).tolist(), np.ravel(count).tolist(),
                                [np.ravel(np.asarray(m, dtype=np.float64)[:3, :4]).tolist() for m in matrices],
                                [(np.ascontiguousarray(w, dtype=np.float64),
                                  np.ravel(np.asarray(inv, dtype=np.float64)[:3, :4]).tolist(),
                                  np.ravel(first).tolist(), np.ravel(shape).tolist()) for w, inv, first, shape in fields],
                                inside, None if in_shape is None else np.ravel(in_shape).tolist())


def prefilter_lines(a, gain, zs, horizons, kind, acc) -> None:
    """``splines.prefilter_planes`` compiled: the B-spline prefilter along
    axis 1 of the 3-d float64 view ``a`` (``(lead, n, rest)``, any strides),
    in place, with the same gain, poles ``zs``, truncated boundary starts
    (``horizons``) and recursions, each operation in the same order and
    rounding (no fused multiply-adds), so its results are
    ``prefilter_planes``' bit for bit.  The innermost loop runs over ``rest``:
    the recursions of ``rest`` lines advance together, one pass over the
    window per direction instead of numpy's several per plane.  ``acc``: a
    scratch row of ``rest`` samples."""
    _kernel.prefilter_lines(a, float(gain), np.ravel(zs).tolist(), np.ravel(horizons).tolist(), int(kind), acc)


def spline_filter_lines(a, order: int, kind: int, acc) -> None:
    """``scipy.ndimage.spline_filter1d`` along axis 1 of the 3-d float64 view
    ``a`` (``(lead, n, rest)``, any strides), in place, bit for bit, for lines
    of any length (``prefilter_lines`` truncates the boundary starts; this
    takes scipy's whole ones): scipy's poles (ni_splines.c's literals), gain,
    start ``kind`` (``PREFILTER_KINDS``: the mode's, ``splines.start_kind``),
    recursions and operations in its order; a line of one sample is left as
    it is.  The ``rest`` lines advance together (``acc``: a scratch row of
    ``rest`` samples), one pass per direction instead of scipy's one line at a
    time along a strided axis."""
    _kernel.spline_filter_lines(a, int(order), int(kind), acc)


def label_boxes(keys, lo: int, counts, boxes) -> None:
    """Each key's voxel count and bounding box in one pass over ``keys`` (a
    C-ordered window of unsigned integers, 1 to 8 axes; ``labels.window_labels``):
    ``counts[k]`` (int64, ``n``) the voxels holding ``lo + k``, and for those
    counted, ``boxes[k]`` (int64, ``(n, 2 * ndim)``) the first and the last index
    along each axis (the boxes of keys not present are left undefined).  A key
    below ``lo`` or not below ``lo + n`` is refused (``ValueError``).  Per row,
    one compare per voxel and the rest per run of one key: what ``np.bincount``,
    a lookup table and ``scipy.ndimage.find_objects`` took three passes and two
    window-sized arrays for."""
    _kernel.label_boxes(keys, int(lo), counts, boxes)


def axis_sum(x, out, index, weights) -> None:
    """The separable engine's per-axis sum, compiled: ``out[o, j, i] =
    sum_t weights[j, t] * x[o, index[j, t], i]`` for ``x`` ``(outer, n,
    inner)`` (C-ordered, any integer or float type) and ``out`` ``(outer, m,
    inner)`` (C-ordered float32 or float64), ``index`` ``(m, ntaps)`` int64
    inside ``[0, n)`` and ``weights`` ``(m, ntaps)`` float64: in double
    precision, the first tap's product, then each next one added, cast once
    (numpy's order in ``engine._eval_axis``, so its values bit for bit).  The
    GIL is released."""
    _kernel.axis_sum(x, out, np.ascontiguousarray(index, dtype=np.int64),
                     np.ascontiguousarray(weights, dtype=np.float64))


def axis_take(x, out, index) -> None:
    """``axis_sum`` without weights (one tap, ``index[:, 0]``): ``out[o, j, i]
    = x[o, index[j, 0], i]``, ``out`` of ``x``'s type (copied, not converted)."""
    _kernel.axis_take(x, out, np.ascontiguousarray(index, dtype=np.int64))


def use_avx2(on: bool) -> bool:
    """Turn ``linear_reads`` (order 1's reads four voxels at a time, with AVX2)
    on or off; returns whether they are now used (never where the
    processor or the build lacks AVX2).  For the tests: the results are the
    same bits either way (tests/test_kernel_fuzz.py compares them)."""
    return bool(_kernel.set_avx2(bool(on)))


def _span(colx, geom, pad, order, clamp, ry=(0.0, 0.0, 0.0), rz=(0.0, 0.0, 0.0)) -> tuple[int, int]:
    """The interior span ``[a, b)`` of one row (``colx``: ``(3, n)`` float64,
    the row's x terms of each coordinate; ``ry``/``rz``: its y and z terms;
    ``geom``: first, width and length of the window per axis), as
    ``resample_block`` finds it for every row: the x
    range whose taps all lie inside the window, with coordinates inside the
    volume or, if ``clamp`` ('nearest', orders 0 and 1), anywhere on an axis
    whose window reaches the volume's edge."""
    return _kernel.span(np.ascontiguousarray(colx, dtype=np.float64), np.ravel(geom).tolist(), float(pad), int(order),
                        bool(clamp), tuple(map(float, ry)), tuple(map(float, rz)))
