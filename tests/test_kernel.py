"""The general path's compiled kernel (bigresample/kernel.py) against the
whole-array ``scipy.ndimage.affine_transform``: every order, mode and input
type, any shape, angle and block (docs/grids-and-exactness.md, "Exactness")."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy import ndimage

from bigresample.geometry import reference_grid
from bigresample.splines import MODES, ORDERS
from bigresample.transform import AffineResampler

from .helpers import (A_IN, assert_matches_reference, blockwise, check_general, compiled_only, kernel_volume,
                      near_tie, rotated_grid, whole)

DTYPES = (np.float32, np.float64, np.int16, np.uint8)


@pytest.mark.slow
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("order", ORDERS)
def test_every_order_mode_and_type_equals_the_whole_array_call(order, mode, dtype):
    data = kernel_volume((40, 36, 30), dtype, seed=order)
    # rotated, scaled and shifted so that blocks reach beyond every edge of the volume
    g = rotated_grid(data.shape, (34, 31, 27), (8, -11, 23), (1.1, 0.9, 1.2), (-4, 3, -2))
    cval = -30.5 if np.dtype(dtype).kind == "f" else 7.0
    r = AffineResampler(g, order, mode, cval=cval)
    got = blockwise(r, data, (13, 17, 9), dtype)
    check_general(got, whole(data, g, order, mode, cval, dtype), data, order, cval, g)


@pytest.mark.parametrize("out", [np.float32, np.uint8, np.int16])
def test_outputs_of_another_type_are_rounded_and_saturated_as_scipy(out):
    data = kernel_volume((40, 36, 30), np.float32) * 2  # beyond uint8's range both ways
    g = rotated_grid(data.shape, (30, 28, 20), (5, 0, 31))
    for order in (0, 1, 3):
        r = AffineResampler(g, order, "mirror")
        got = blockwise(r, data, (30, 11, 7), out)
        check_general(got, whole(data, g, order, "mirror", 0.0, out), data, order, None, g)


def test_extra_axes_big_endian_and_float16_windows():
    data = kernel_volume((30, 28, 26), np.float32)
    g = rotated_grid(data.shape, (20, 22, 18), (0, 12, -7))
    four = np.stack([data, -data, data * 0.5], axis=-1)
    got = blockwise(AffineResampler(g, 1, "reflect"), four, (20, 9, 18), np.float32)
    for k in range(3):
        assert_matches_reference(got[..., k], whole(four[..., k], g, 1, "reflect", 0.0, np.float32), data, 1)
    for dtype in (">f4", np.float16):
        src = data.astype(dtype)
        got = blockwise(AffineResampler(g, 0, "nearest"), src, (7, 22, 5), np.float32)
        check_general(got, whole(src.astype(np.float32), g, 0, "nearest", 0.0, np.float32), data, 0, None, g)


def test_order_0_ties_are_the_only_excuse():
    # twice the spacing, half a voxel off: every coordinate is k + 0.5, a tie
    data = kernel_volume((40, 36, 30), np.float32)
    a_ref = A_IN @ np.array([[2, 0, 0.001, 0.5], [0, 2, 0, 0.5], [0, 0, 2, -0.5], [0, 0, 0, 1]])
    g = reference_grid(data.shape, A_IN, (20, 18, 16), a_ref)
    assert near_tie(g).mean() > 0.5
    got = blockwise(AffineResampler(g, 0, "nearest"), data, (7, 18, 5), np.float32)
    # the kernel computes scipy's coordinates: the ties fall as scipy's too
    np.testing.assert_array_equal(got, whole(data, g, 0, "nearest", 0.0, np.float32))


@pytest.mark.slow
@given(
    shape=st.tuples(st.integers(1, 12), st.integers(1, 40), st.integers(20, 45)),
    out_shape=st.tuples(st.integers(1, 25), st.integers(1, 12), st.integers(1, 25)),
    angles=st.tuples(*[st.floats(-180, 180)] * 3),
    scale=st.tuples(*[st.floats(0.3, 3.0)] * 3),
    shift=st.tuples(*[st.floats(-15, 15)] * 3),
    block=st.tuples(st.integers(1, 25), st.integers(1, 12), st.integers(1, 25)),
    order=st.sampled_from(ORDERS),
    mode=st.sampled_from(MODES),
    dtype=st.sampled_from(DTYPES),
)
def test_any_shape_angle_block_and_type(shape, out_shape, angles, scale, shift, block, order, mode, dtype):
    data = kernel_volume(shape, dtype, seed=3)
    g = rotated_grid(shape, out_shape, angles, scale, shift)
    cval = 5.0
    got = blockwise(AffineResampler(g, order, mode, cval=cval), data, block, dtype)
    check_general(got, whole(data, g, order, mode, cval, dtype), data, order, cval, g)


def test_order_1_reads_a_zero_weight_tap_as_scipy_does():
    # integer y and z coordinates: scipy reads the next line at weight 0, so a NaN there spreads
    from bigresample import kernel

    data = kernel_volume((8, 7, 6), np.float32).T.copy()  # (z, y, x) file order
    data[3, 4, 5] = np.nan
    out = np.empty((5, 6, 20), np.float32)
    m = np.diag([0.25, 1.0, 1.0])
    kernel.resample_block(data, out, m, np.zeros(3), np.zeros(3, np.int64), np.zeros(3, np.int64),
                          np.array([8, 7, 6]), pad=0.0, order=1, mode=kernel.MODE_CODES["nearest"], cval=0.0)
    ref = ndimage.affine_transform(data, m[::-1, ::-1], output_shape=out.shape, order=1, mode="nearest")
    assert np.isnan(ref).sum() > 2
    np.testing.assert_array_equal(np.isnan(out), np.isnan(ref))
    np.testing.assert_allclose(out, ref, rtol=0, atol=1e-6 * 1000)


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["nearest", "mirror", "reflect", "wrap", "grid-wrap", "constant", "grid-constant"])
@pytest.mark.parametrize("order", [2, 3, 4, 5])
def test_the_compiled_prefilter_is_the_planewise_one_bit_for_bit_and_scipys_along_x(order, mode):
    """The window's B-spline prefilter (``transform._prefilter``, compiled) along
    z and y equals ``splines.prefilter_planes`` exactly, and along every axis
    (x included, where scipy's own ``spline_filter1d`` ran before) scipy's
    ``spline_filter1d`` to rounding; lines of 64 samples and more, as it is used."""
    for shape in ((66, 70, 81), (3, 70, 2)):  # the second: lines of y beside very short x and z
        _check_prefilter(np.random.default_rng(order).standard_normal(shape) * 1000, order, mode)


def _check_prefilter(data, order, mode):
    from bigresample.engine import Workspace
    from bigresample.splines import prefilter_planes
    from bigresample.transform import _prefilter

    for axis in (a for a in range(3) if data.shape[a] >= 64):
        got = data.copy()
        _prefilter(got, order, mode, axis, Workspace())
        expected = ndimage.spline_filter1d(data, order, axis=axis, mode=mode)
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-10 * np.ptp(data))
        if axis < 2:
            planes = data.copy()
            prefilter_planes(planes, planes, order, mode, axis)
            assert np.array_equal(got, planes)


@compiled_only
@pytest.mark.parametrize("mode", ["nearest", "mirror", "reflect", "wrap", "grid-wrap", "constant", "grid-constant"])
@pytest.mark.parametrize("order", [2, 3, 4, 5])
def test_spline_filter_lines_is_scipys_spline_filter1d_bit_for_bit(order, mode):
    """``kernel.spline_filter_lines`` (the separable engine's prefilter where ``prefilter_lines``'
    truncated starts do not apply) gives scipy's ``spline_filter1d`` bit for bit on lines of
    every length, short ones above all (scipy's whole boundary start, the sum over the line and
    its far end), along each axis of a view of any strides, a reversed one included."""
    from bigresample import kernel
    from bigresample.splines import start_kind

    rng = np.random.default_rng(order)
    kind = kernel.PREFILTER_KINDS[start_kind(mode)]
    for n in (1, 2, 3, 4, 5, 7, 12, 23, 40, 63, 64, 90):
        data = rng.standard_normal((3, n, 5)) * 10.0 ** rng.integers(-3, 4)
        for axis in range(3):
            x = np.moveaxis(data, 1, axis).copy()
            want = ndimage.spline_filter1d(x, order, axis=axis, mode=mode)
            got = x.copy()
            view = np.moveaxis(got, axis, 1)  # the line's axis in the middle, whatever its stride
            kernel.spline_filter_lines(view, order, kind, np.empty(view.shape[2]))
            assert got.tobytes() == want.tobytes(), (n, axis)
            back = x.copy()  # the lines walked backwards (a negative stride) are other lines: scipy's on them
            kernel.spline_filter_lines(np.moveaxis(back, axis, 1)[:, ::-1], order, kind, np.empty(5))
            flipped = ndimage.spline_filter1d(np.flip(x, axis), order, axis=axis, mode=mode)
            assert np.flip(back, axis).tobytes() == flipped.tobytes(), (n, axis)


@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.int16])
@pytest.mark.parametrize("mode", ["nearest", "reflect", "grid-wrap"])
def test_the_separable_engines_prefilter_is_scipys_bit_for_bit_on_every_axis(mode, dtype):
    """The separable engine's prefilter of a window's segment (``engine._spline_filter``, the
    route of every line shorter than ``splines.PLANEWISE_MIN_LEN`` and of x) is scipy's
    ``spline_filter1d`` of it bit for bit, whatever the window's type, with a fourth axis."""
    from bigresample.engine import Workspace, _spline_filter

    x = (np.random.default_rng(1).standard_normal((2, 9, 33, 20)) * 300).astype(dtype)
    for axis in (1, 2, 3):
        sl = (slice(None),) * axis + (slice(2, 2 + min(x.shape[axis] - 2, 40)),)
        want = ndimage.spline_filter1d(x[sl], 3, axis=axis, mode=mode)
        coef = np.full(x.shape, np.nan)
        _spline_filter(x[sl], coef[sl], 3, mode, axis, Workspace())
        assert coef[sl].tobytes() == want.tobytes(), axis


@compiled_only
@given(
    near=st.floats(-4, 4), m=st.floats(-1.5, 1.5), n=st.integers(2, 60),
    first=st.integers(0, 30), width=st.integers(1, 50), length=st.integers(1, 90), order=st.sampled_from(ORDERS),
    at_end=st.booleans(),
)
def test_the_interior_span_holds_only_points_whose_taps_lie_in_the_window_and_volume(near, m, n, first, width, length,
                                                                                     order, at_end):
    """``_span`` at every order: each x of ``[a, b)`` has its coordinate inside the volume and
    its ``order + 1`` taps (scipy's first tap: floor(c) - order // 2 at odd orders, floor(c + 0.5)
    - order // 2 at even ones) inside the window, a few 1e-6 voxel from either bound; the
    interior routes (``_interior``, ``_interior_cubic``) read there without a test."""
    from bigresample import kernel

    c0 = near + (min(first + width, length) if at_end else max(first, 0))  # rows that start near an edge
    colx = np.zeros((3, n))
    colx[0] = c0 + np.arange(n) * m
    colx[1] = colx[2] = first + width / 2  # the other axes in the middle of a wide window
    geom = np.array([first, 0, 0, width, 10**6, 10**6, length, 2 * 10**6, 2 * 10**6], dtype=np.int64)
    a, b = kernel._span(colx, geom, 0.0, order, False)
    assert 0 <= a <= b and (a == b or b <= n)  # an empty span may start anywhere
    c = colx[0, a:b]
    start = (np.floor(c) if order & 1 else np.floor(c + 0.5)) - order // 2
    assert np.all(c >= 0) and np.all(c <= length - 1)
    assert np.all(start >= first) and np.all(start + order <= first + width - 1)
    # and nothing is lost inside: a row well inside on every count spans all but its ends
    if order == 3 and m == 0 and first + 1.01 <= c0 <= min(first + width, length) - 2.01:
        assert (a, b) == (0, n)


@pytest.mark.slow
@compiled_only
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("order", [0, 1, 3])
def test_without_interior_spans_every_voxel_takes_scipys_route_and_agrees(order, mode, monkeypatch):
    """Lines longer than ``kernel.INTERIOR_MAX_LENGTH`` (tap positions beyond 32 bits)
    take no interior span: every voxel by the per-point route, still the whole-array
    call's values.  Orders 0 and 3 give the same bits either way (the interior routes sum
    as the per-point one does); order 1's interior steps its coordinates, a few 1e-13
    voxel off scipy's, so float64 outputs show which route ran."""
    from bigresample import kernel

    data = kernel_volume((40, 36, 30), np.float32, seed=order)
    g = rotated_grid(data.shape, (34, 31, 27), (8, -11, 23), (1.1, 0.9, 1.2), (-4, 3, -2))
    expected = whole(data, g, order, mode, -30.5, np.float64)
    calls = []
    real = kernel.resample_block

    def spy(*args, **kwargs):
        calls.append(kwargs.get("interior"))
        return real(*args, **kwargs)

    monkeypatch.setattr(kernel, "resample_block", spy)
    r = AffineResampler(g, order, mode, cval=-30.5)
    with_spans = blockwise(r, data, (13, 17, 9), np.float64)
    assert calls and set(calls) == {None}  # the default: the lines are short
    monkeypatch.setattr(kernel, "INTERIOR_MAX_LENGTH", 39)  # the volume's x line is 40 long
    without = blockwise(r, data, (13, 17, 9), np.float64)
    check_general(without, expected, data, order, -30.5, g)
    check_general(with_spans, expected, data, order, -30.5, g)
    assert np.array_equal(without, with_spans) == (order != 1)


@pytest.mark.slow
@pytest.mark.parametrize("out", [np.float32, np.float64])
@pytest.mark.parametrize("mode", ["nearest", "reflect", "constant"])
def test_order_1_from_a_float32_window_equals_the_same_values_in_float64_bit_for_bit(mode, out):
    """A float32 window's order-1 reads have their own route where the processor has
    AVX2 (``_kernel_impl.h``: ``linear_reads``, four voxels at a time); every other
    type takes the scalar loop.  Both convert each sample to double and do the same
    operations in the same order, so the float64 copy of the window gives the same
    bits; blocks of odd widths leave tails of 1-3 voxels to the scalar loop too."""
    data = kernel_volume((47, 41, 33), np.float32, seed=3)
    g = rotated_grid(data.shape, (45, 39, 31), (9, -6, 17), (0.93, 1.05, 1.1), (-2, 1, -3))
    r = AffineResampler(g, 1, mode, cval=-7.25)
    for block in ((45, 39, 31), (23, 11, 7), (5, 13, 9)):
        single = blockwise(r, data, block, out)
        double = blockwise(r, data.astype(np.float64), block, out)
        assert single.tobytes() == double.tobytes(), block
    check_general(single, whole(data, g, 1, mode, -7.25, out), data, 1, -7.25, g)
