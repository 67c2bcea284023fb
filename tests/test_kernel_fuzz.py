"""The compiled kernel's fuzz driver (issue 28): hypothesis over shapes,
strides, dtypes, byte orders, orders 0-5, modes, extreme matrices and
offsets, empty and 1-voxel axes, calling the kernel's entry points directly
(``kernel.resample_block``, ``sample_points``, ``chain_points``, ``axis_sum``/``axis_take``,
``prefilter_lines``, ``spline_filter_lines``, ``label_boxes``)
and through the resamplers.  Each case ends in a clean exception or in
scipy's values.  tools/sanitize.sh runs it under AddressSanitizer and
UndefinedBehaviorSanitizer; windows sit at the end of a guarded allocation
(a PROT_NONE page after them) and float32 windows run with AVX2's gathers on
and off, compared bit for bit: the reads ASan cannot see still fault or differ.

``FUZZ_EXAMPLES`` sets the examples per test of an entry point (default: the
profile's); the two tests through the resamplers take a fifth of it.
"""

import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy import ndimage

from bigresample import kernel, splines
from bigresample.engine import Resampler
from bigresample.errors import BigresampleError
from bigresample.geometry import ReferenceGrid, make_grid
from bigresample.transform import AffineResampler

from .helpers import assert_matches_reference, compiled_only, guarded, with_exact

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "0")) or settings().max_examples
#: the entry points, called directly (small arrays: fast even under ASan)
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
#: through the resamplers (each example a whole-array scipy call and a block loop): a fifth as many
FUZZ_RESAMPLERS = settings(max_examples=max(10, EXAMPLES // 5), deadline=None,
                           suppress_health_check=list(HealthCheck))

TYPES = ("u1", "i1", "u2", "i2", "u4", "i4", "u8", "i8", "f4", "f8")
MODES = tuple(kernel.MODE_CODES)
EXTREME = (0.0, 1e-300, -1e-300, 1e10, -1e10, 2.0**54, -(2.0**54), 1e19, 1e300, -1e300, np.nan, np.inf, -np.inf)


def values(rng, shape, kind):
    """Samples of ``kind`` (a numpy type string), small enough that sums stay exact-ish."""
    if np.dtype(kind).kind == "f":
        return rng.uniform(-50, 50, shape).astype(kind)
    info = np.iinfo(kind)
    return rng.integers(max(info.min, -100), min(info.max, 100), shape, endpoint=True).astype(kind)


@st.composite
def matrices(draw):
    """A rotation times a scaling (sometimes 0 or negative) or, now and then, extreme entries."""
    angles = draw(st.lists(st.floats(-np.pi, np.pi), min_size=3, max_size=3))
    scale = draw(st.lists(st.sampled_from((1.0, 0.5, 2.0, 0.3, -1.0, 1.7, 0.0)), min_size=3, max_size=3))
    m = np.diag(scale)
    for ax, a in enumerate(angles):
        c, s = np.cos(a), np.sin(a)
        i, j = [k for k in range(3) if k != ax]
        r = np.eye(3)
        r[i, i], r[i, j], r[j, i], r[j, j] = c, -s, s, c
        m = r @ m
    offset = np.array(draw(st.lists(st.floats(-8, 12), min_size=3, max_size=3)))
    if draw(st.integers(0, 5)) == 0:
        spots = draw(st.lists(st.tuples(st.integers(0, 11), st.sampled_from(EXTREME)), min_size=1, max_size=3))
        for at, v in spots:
            (m.reshape(-1) if at < 9 else offset)[at % 9] = v
    return m, offset


def bound(matrix, offset, out_shape, origin=(0, 0, 0)):
    """The largest magnitude of a coordinate's terms over a block of ``out_shape`` (z, y, x) at ``origin`` (x, y, z)."""
    with np.errstate(all="ignore"):
        far = np.abs(np.array(origin, dtype=np.float64)) + np.array(out_shape[::-1], dtype=np.float64) - 1
        return np.abs(offset) + np.abs(matrix) @ far


def guarded_window(rng, vol, sub, dtype=None):
    """A window of ``vol`` (all of it, or a random box of it when ``sub``; the box on its first three axes)
    copied to the end of a guarded allocation (as ``dtype``, or ``vol``'s type): the window, the allocation and
    the box's first index (``vol``'s axes' order)."""
    lo, hi = [0, 0, 0], list(vol.shape[:3])
    if sub:
        lo = [int(rng.integers(0, m)) for m in vol.shape[:3]]
        hi = [int(rng.integers(a + 1, m + 1)) for a, m in zip(lo, vol.shape[:3])]
    win = vol[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]]
    data, mem = guarded(win.shape, win.dtype if dtype is None else dtype)
    data[...] = win
    return data, mem, lo


def assert_kernel_values(out, expected, vol, order, out_kind):
    """``out`` (``out_kind``) against scipy's float64 ``expected`` on samples ``vol`` (cval -7.5): exact at order 0,
    else to 1e-9 (float64) or 2e-6 (float32) of the largest magnitude."""
    scale = max(1.0, float(np.abs(vol).max()), 7.5)
    tol = 0.0 if order == 0 else 1e-9 * scale
    if out_kind == "f4":
        expected = expected.astype(np.float32)
        tol = 0.0 if order == 0 else 2e-6 * scale
    np.testing.assert_allclose(out, expected, rtol=0, atol=tol)


@FUZZ
@given(st.integers(0, 2**32 - 1), st.lists(st.integers(1, 7), min_size=3, max_size=3),
       st.lists(st.integers(0, 6), min_size=3, max_size=3), matrices(), st.integers(0, 5), st.sampled_from(MODES),
       st.sampled_from(TYPES), st.sampled_from(("f8", "f4")), st.booleans(), st.booleans())
def test_resample_block_gives_scipys_values_or_refuses(seed, shape, block, geometry, order, mode, kind, out_kind,
                                                       sub, swapped):
    """A volume (z, y, x), a window of it (all of it, or a box when ``sub``)
    at the end of a guarded allocation, any block: scipy's values
    (``prefilter=False``: the window holds the coefficients) wherever the
    kernel reports no tap outside the window, or a ValueError/TypeError."""
    rng = np.random.default_rng(seed)
    matrix, offset = geometry
    vol = values(rng, tuple(shape), kind)
    data, _mem, lo = guarded_window(rng, vol, sub, vol.dtype.newbyteorder(">") if swapped else None)
    first = lo[::-1]
    out = np.full(tuple(block), -123.0, out_kind)
    origin = [int(v) for v in rng.integers(-3, 5, 3)]
    call = dict(pad=0.0, order=order, mode=kernel.MODE_CODES[mode], cval=-7.5)
    try:
        bad = kernel.resample_block(data, out, matrix, offset, origin, first, shape[::-1], **call)
    except (ValueError, TypeError) as e:
        assert swapped or not np.all(bound(matrix, offset, block, origin) < 2.0**61), e
        return
    assert not swapped or data.dtype.itemsize == 1  # another byte order is refused (one byte has none)
    if kind == "f4" and order == 1 and out.size:  # AVX2's gathers on and off: the same bits
        kernel.use_avx2(False)
        try:
            again = np.full_like(out, -123.0)
            kernel.resample_block(data, again, matrix, offset, origin, first, shape[::-1], **call)
        finally:
            kernel.use_avx2(True)
        np.testing.assert_array_equal(again, out)
    reach = bound(matrix, offset, block, origin)
    if bad or out.size == 0 or min(origin) < 0 or not np.all(reach < 2.0**40):
        return  # compared where scipy computes the same coordinates: its output from index 0, sliced at origin
    h = np.eye(4)
    h[:3, :3], h[:3, 3] = matrix, offset
    whole = tuple(o + b for o, b in zip(origin, block[::-1]))
    expected = ndimage.affine_transform(vol.T.astype(np.float64), h, output_shape=whole, order=order, mode=mode,
                                        cval=-7.5, prefilter=False)
    expected = expected[tuple(slice(o, None) for o in origin)].T
    assert_kernel_values(out, expected, vol, order, out_kind)


@FUZZ
@given(st.integers(0, 2**32 - 1), st.lists(st.integers(1, 7), min_size=3, max_size=3), st.integers(0, 12),
       st.integers(0, 5), st.sampled_from(MODES), st.sampled_from(TYPES), st.sampled_from(("f8", "f4")),
       st.booleans(), st.sampled_from((0.0, 3.0)), st.sampled_from((1.0, 10.0, 1e10)), st.booleans())
def test_sample_points_gives_scipys_values_or_refuses(seed, shape, n, order, mode, kind, out_kind, sub, pad, spread,
                                                      wild):
    """``kernel.sample_points`` on a window (all of a volume, or a box of it
    when ``sub``) at the end of a guarded allocation, at random coordinates
    (far, or now and then extreme): ``map_coordinates``' values
    (``prefilter=False``) wherever no tap left the window, or a ValueError
    for a coordinate not finite or beyond 2**62."""
    rng = np.random.default_rng(seed)
    vol = values(rng, tuple(shape), kind)
    data, _mem, lo = guarded_window(rng, vol, sub)
    first = lo[::-1]
    coords = rng.uniform(-spread, np.array(shape[::-1]) + spread, (n, 3))
    if wild and n:
        coords[rng.integers(0, n), rng.integers(0, 3)] = rng.choice(EXTREME)
    out = np.full(n, -123.0, out_kind)
    length = [m + 2 * int(pad) for m in shape[::-1]]
    try:
        bad = kernel.sample_points(data, coords, out, first, length, pad, order, kernel.MODE_CODES[mode], -7.5)
    except ValueError as e:
        assert not np.all(np.abs(coords) + pad < 2.0**62), e
        assert (out == -123.0).all()  # refused before anything was written
        return
    if bad or not n or not np.all(np.abs(coords) < 2.0**40):
        return
    expected = ndimage.map_coordinates(vol.T.astype(np.float64), (coords + pad).T, order=order, mode=mode,
                                       cval=-7.5, prefilter=False) if not pad else None
    if expected is None:  # the line is longer than the volume by the pad: scipy's whole pre-padded line
        padded = np.zeros(tuple(length))
        padded[tuple(slice(int(pad), int(pad) + m) for m in shape[::-1])] = vol.T
        if sub:
            return  # the window does not hold the pre-pad: nothing to compare
        expected = ndimage.map_coordinates(padded, (coords + pad).T, order=order, mode=mode, cval=-7.5,
                                           prefilter=False)
        data2, _mem2 = guarded(padded.T.shape, np.float64)
        data2[...] = padded.T
        got = np.full(n, -123.0, out_kind)
        if kernel.sample_points(data2, coords, got, (0, 0, 0), length, pad, order, kernel.MODE_CODES[mode], -7.5):
            return
        out = got
    assert_kernel_values(out, expected, vol, order, out_kind)


@compiled_only
@FUZZ
@given(st.integers(0, 2**32 - 1), st.lists(st.integers(1, 6), min_size=3, max_size=3),
       st.lists(st.integers(1, 5), min_size=3, max_size=3), st.integers(0, 2), st.booleans(),
       st.sampled_from((0.5, 3.0, 1e3)), st.booleans())
def test_chain_points_gives_the_numpy_chains_coordinates_or_refuses(seed, count, fshape, nfields, sub, reach, itk):
    """``kernel.chain_points`` against the numpy chain (``_pykernel.chain_points``: the affine
    sums of ``registration.affine_points``, ``map_coordinates`` on each field's window) on random
    affines and fields, each field's window at the end of a guarded allocation (the box its
    points reach, or the whole field): the same coordinates to 1e-12 of their size, the same
    bounds, ITK's rule per point the same (but within 1e-9 voxel of its edges), or the same
    refusal (a non-finite field index names the same field; a tap beyond the window is an
    IndexError)."""
    from bigresample import _pykernel

    rng = np.random.default_rng(seed)
    mats = [np.hstack([rng.uniform(-2, 2, (3, 3)), rng.uniform(-reach, reach, (3, 1))]) for _ in range(nfields + 1)]
    fields, guards = [], []
    for _ in range(nfields):
        vals = rng.uniform(-reach, reach, tuple(fshape) + (3,))
        win, mem, lo = guarded_window(rng, vals, sub)
        guards.append(mem)
        inv = np.hstack([rng.uniform(-1, 1, (3, 3)), rng.uniform(-2, 2, (3, 1))])
        fields.append((win, inv, lo, fshape))
    origin = [int(v) for v in rng.integers(-3, 3, 3)]
    n = int(np.prod(count))
    in_shape = [int(v) for v in rng.integers(1, 8, 3)]
    got, want = np.full((n, 3), -1.0), np.full((n, 3), -1.0)
    ok_got, ok_want = (np.zeros(n, bool), np.zeros(n, bool)) if itk else (None, None)
    try:
        res = kernel.chain_points(got, origin, count, mats, fields, ok_got, in_shape if itk else None)
    except IndexError:
        assert sub  # only a window smaller than its field can miss a tap
        return
    ref = _pykernel.chain_points(want, origin, count, mats, fields, ok_want, in_shape if itk else None)
    assert res[0] == ref[0]
    if res[0]:
        return
    tol = 1e-12 * max(1.0, float(np.abs(want).max()))
    np.testing.assert_allclose(got, want, rtol=0, atol=tol)
    if itk:
        edge = np.any(np.abs(np.concatenate([want + 0.5, want - (np.array(in_shape) - 0.5)], axis=1)) < 1e-9, axis=1)
        assert np.array_equal(ok_got[~edge], ok_want[~edge])
        if edge.any():
            return
    assert res[3] == ref[3]
    if res[3]:
        np.testing.assert_allclose(res[1], ref[1], rtol=0, atol=tol)
        np.testing.assert_allclose(res[2], ref[2], rtol=0, atol=tol)


@FUZZ
@given(st.integers(0, 2**32 - 1), st.integers(0, 4), st.integers(0, 6), st.integers(0, 5), st.integers(0, 6),
       st.integers(1, 5), st.sampled_from(TYPES), st.sampled_from(("f8", "f4", "same")), st.booleans())
def test_axis_sum_and_take_give_numpys_sums_or_refuse(seed, outer, n, inner, m, ntaps, kind, out_kind, wild):
    """``x`` (outer, n, inner) at the end of a guarded allocation, any taps
    (``wild``: some outside [0, n)): numpy's sums in the same order, bit for
    bit, or an IndexError/ValueError; an empty axis writes nothing."""
    rng = np.random.default_rng(seed)
    x, _mem = guarded((outer, n, inner), np.dtype(kind))
    x[...] = values(rng, (outer, n, inner), kind)
    hi = n + 3 if wild else max(n, 1)
    index = rng.integers(-2 if wild else 0, hi, (m, ntaps)).astype(np.int64)
    weights = rng.uniform(-1, 1, (m, ntaps))
    take = out_kind == "same"
    out = np.zeros((outer, m, inner), kind if take else out_kind)
    inside = bool(np.all((index >= 0) & (index < n)))
    try:
        if take:
            kernel.axis_take(x, out, index)
        else:
            kernel.axis_sum(x, out, index, weights)
    except (IndexError, ValueError):
        assert not inside or (ntaps < 1 and m > 0)
        return
    assert inside
    if take:
        np.testing.assert_array_equal(out, x[:, index[:, 0], :])
        return
    acc = x[:, index[:, 0], :].astype(np.float64) * weights[:, 0][None, :, None]
    for t in range(1, ntaps):
        acc = acc + x[:, index[:, t], :].astype(np.float64) * weights[:, t][None, :, None]
    np.testing.assert_array_equal(out, acc.astype(out.dtype))


@FUZZ
@given(st.integers(0, 2**32 - 1), st.integers(1, 6), st.one_of(st.integers(1, 9), st.integers(64, 80)),
       st.integers(1, 6), st.integers(2, 5), st.sampled_from(splines.MODES), st.sampled_from(("c", "t", "r")),
       st.integers(0, 5))
def test_prefilter_lines_gives_scipys_coefficients_or_refuses(seed, lead, n, rest, order, mode, layout, skew):
    """Any view (C-ordered, transposed, reversed) of a 3-d float64 array:
    scipy's ``spline_filter1d`` along axis 1 (lines of 64 samples or more, as
    the project calls it: scipy starts shorter lines otherwise), or a
    ValueError (a line of one sample; a horizon pushed past the line by ``skew``)."""
    rng = np.random.default_rng(seed)
    mode = splines.parse_mode(mode)  # as the resamplers take it ('grid-mirror' is 'reflect')
    shape = {"c": (lead, n, rest), "t": (rest, n, lead), "r": (lead, n, rest)}[layout]
    base = rng.uniform(-10, 10, shape)
    view = {"c": base, "t": base.transpose(2, 1, 0), "r": base[::-1, :, ::-1]}[layout]
    orig = np.array(view)
    n = view.shape[1]
    zs = np.array(splines.poles(order))
    horizons = [splines.start_horizon(p, n) + (skew if skew > 3 else 0) for p in zs]
    acc = np.zeros(view.shape[2])
    try:
        kernel.prefilter_lines(view, splines.prefilter_gain(zs), zs, horizons,
                               kernel.PREFILTER_KINDS[splines.start_kind(mode)], acc)
    except ValueError:
        assert n < 2 or max(horizons) > n - 1
        return
    assert n >= 2 and max(horizons) <= n - 1
    if skew > 3 or n < splines.PLANEWISE_MIN_LEN:
        return  # a horizon pushed (other finite starts), or a line scipy starts whole
    expected = ndimage.spline_filter1d(orig, order, axis=1, mode=mode)
    np.testing.assert_allclose(view, expected, rtol=0, atol=1e-9 * max(1.0, float(np.abs(orig).max())))


@FUZZ
@given(st.integers(0, 2**32 - 1), st.integers(0, 5), st.one_of(st.integers(0, 9), st.integers(60, 70)),
       st.integers(0, 6), st.integers(0, 6), st.sampled_from(splines.MODES), st.sampled_from(("c", "t", "r")))
def test_spline_filter_lines_gives_scipys_coefficients_bit_for_bit_or_refuses(seed, lead, n, rest, order, mode,
                                                                             layout):
    """Any view (C-ordered, transposed, reversed; empty axes too) of a 3-d float64 array:
    scipy's ``spline_filter1d`` along axis 1 bit for bit, or a ValueError (an order without
    a prefilter: 0, 1, 6)."""
    rng = np.random.default_rng(seed)
    mode = splines.parse_mode(mode)
    shape = {"c": (lead, n, rest), "t": (rest, n, lead), "r": (lead, n, rest)}[layout]
    base, acc = guarded(shape, np.float64)
    base[...] = rng.uniform(-10, 10, shape)
    view = {"c": base, "t": base.transpose(2, 1, 0), "r": base[::-1, :, ::-1]}[layout]
    orig = np.array(view)
    row, mem = guarded((view.shape[2],), np.float64)
    try:
        kernel.spline_filter_lines(view, order, kernel.PREFILTER_KINDS[splines.start_kind(mode)], row)
    except ValueError:
        assert not 2 <= order <= 5
        return
    assert 2 <= order <= 5
    expected = ndimage.spline_filter1d(orig, order, axis=1, mode=mode) if orig.size else orig
    assert np.array(view).tobytes() == expected.tobytes()


@FUZZ
@given(st.integers(0, 2**32 - 1), st.lists(st.integers(0, 7), min_size=1, max_size=4),
       st.sampled_from(("u1", "u2", "u4", "u8")), st.integers(0, 3), st.integers(-2, 2))
def test_label_boxes_counts_and_boxes_every_key_or_refuses(seed, shape, kind, spread, shift):
    """Keys of every unsigned type in a window at the end of a guarded page, ``lo`` and the
    range shifted past them by ``shift``: numpy's counts and ``np.argwhere``'s boxes, or a
    ValueError exactly when a key falls outside the range."""
    rng = np.random.default_rng(seed)
    keys, mem = guarded(tuple(shape), np.dtype(kind))
    keys[...] = rng.integers(5, 6 + spread, tuple(shape))
    lo, n = 5 + shift, spread + 1
    counts, boxes = np.zeros(n, np.int64), np.zeros((n, 2 * len(shape)), np.int64)
    outside = keys.size and (int(keys.min()) < lo or int(keys.max()) >= lo + n)
    try:
        kernel.label_boxes(keys, lo, counts, boxes)
    except ValueError:
        assert outside
        return
    assert not outside
    for k in range(n):
        where = np.argwhere(keys == lo + k)
        assert counts[k] == len(where)
        if len(where):
            assert boxes[k].tolist() == [int(v) for a, b in zip(where.min(0), where.max(0)) for v in (a, b)]


@FUZZ_RESAMPLERS
@given(st.integers(0, 2**32 - 1), st.lists(st.integers(1, 12), min_size=3, max_size=3),
       st.lists(st.integers(1, 9), min_size=3, max_size=3), matrices(), st.integers(0, 5), st.sampled_from(MODES),
       st.sampled_from(("f4", ">f4", "i2", ">i2", "u1", "f8")), st.lists(st.integers(1, 6), min_size=3, max_size=3))
def test_the_affine_resampler_gives_scipys_values_or_refuses(seed, in_shape, out_shape, geometry, order, mode, kind,
                                                             block):
    """Through ``AffineResampler`` (1-voxel axes, other byte orders, extreme
    matrices): every block equal to the whole-array scipy call, or one
    ``BigresampleError`` when the grid is built."""
    rng = np.random.default_rng(seed)
    matrix, offset = geometry
    try:
        r = AffineResampler(ReferenceGrid(tuple(in_shape), tuple(out_shape), matrix, offset, np.eye(4)), order, mode,
                            -3.0)
    except BigresampleError:
        assert not np.all(bound(matrix, offset, out_shape[::-1]) + 12 <= 2.0**26)
        return
    data = values(rng, tuple(in_shape), kind.lstrip(">")).astype(kind)
    out_dtype = np.float64 if kind.lstrip(">") in ("f8", "i2", "u1") else np.float32
    got = np.empty(tuple(out_shape), out_dtype)
    for start in np.ndindex(*[-(-m // b) for m, b in zip(out_shape, block)]):
        region = tuple(slice(s * b, min((s + 1) * b, m)) for s, b, m in zip(start, block, out_shape))
        got[region] = r.compute(data, region, out_dtype)
    expected = ndimage.affine_transform(data, r.grid.homogeneous, output_shape=tuple(out_shape), order=order,
                                        mode=mode, cval=-3.0, output=out_dtype)
    assert_matches_reference(got, expected, data, order, cval=-3.0)


@FUZZ_RESAMPLERS
@given(st.integers(0, 2**32 - 1), st.lists(st.integers(1, 30), min_size=3, max_size=3),
       st.lists(st.sampled_from((0.5, 1.0, 1.5, 3.1, 0.7, 8.0)), min_size=3, max_size=3), st.integers(0, 5),
       st.sampled_from(MODES), st.sampled_from(("center", "origin")), st.sampled_from(("f4", ">i2", "u1", "f8")),
       st.lists(st.integers(1, 9), min_size=3, max_size=3))
def test_the_separable_resampler_gives_scipys_values(seed, shape, new_spacing, order, mode, grid, kind, block):
    """Through the separable ``Resampler`` (empty sources on an axis, 1-voxel
    axes, other byte orders): every block equal to the whole-array scipy call."""
    rng = np.random.default_rng(seed)
    data = values(rng, tuple(shape), kind.lstrip(">")).astype(kind)
    g = make_grid(data.shape, (1.0, 1.0, 1.0), tuple(new_spacing), grid)
    r = Resampler(g, order, mode, -3.0)
    out_dtype = np.dtype(kind).newbyteorder("=")
    got = np.empty(g.out_shape, out_dtype)
    for start in np.ndindex(*[-(-m // b) for m, b in zip(g.out_shape, block)]):
        region = tuple(slice(s * b, min((s + 1) * b, m)) for s, b, m in zip(start, block, g.out_shape))
        got[region] = r.compute(data, region, out_dtype)

    def call(out):
        return ndimage.affine_transform(data, g.steps, offset=g.offsets, output_shape=g.out_shape, order=order,
                                        mode=mode, cval=-3.0, output=out)

    expected = call(out_dtype)
    if order > 0 and out_dtype.kind in "iu":
        expected = with_exact(expected, call(np.float64))
    assert_matches_reference(got, expected, data, order, cval=-3.0)


@pytest.mark.parametrize("flag", [False, True])
def test_the_avx2_switch_reports_what_it_did(flag):
    try:
        assert kernel.use_avx2(flag) == (flag and kernel._kernel.has_avx2())
    finally:
        kernel.use_avx2(True)
