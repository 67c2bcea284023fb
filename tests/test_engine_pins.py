"""The engine's pieces pinned against plain numpy and whole-array scipy.ndimage, with
strict comparisons: NaN where scipy has a number fails, integer outputs may differ
by one unit only where scipy's float value is within tolerance of a rounding boundary."""

import threading

import numpy as np
import pytest
from scipy import ndimage

from bigresample import engine
from bigresample.engine import Resampler, Workspace
from bigresample.geometry import make_grid
from bigresample.splines import MODES

from .helpers import blockwise, cast_output, compiled_only, engine_reference

TOL = {0: 0.0, 1: 1e-6, 2: 1e-5, 3: 1e-5, 4: 1e-5, 5: 1e-5}  # docs/grids-and-exactness.md, "Exactness"


def assert_strict(got, expected, data, order, cval=0.0):
    assert got.shape == expected.shape and got.dtype == expected.dtype
    np.testing.assert_array_equal(np.isnan(got), np.isnan(expected))
    if order == 0:
        np.testing.assert_array_equal(got, expected)
        return
    span = max(float(np.nanmax(data)) - float(np.nanmin(data)), abs(cval - float(np.nanmin(data))),
               abs(cval - float(np.nanmax(data))))
    ok = ~np.isnan(expected)
    np.testing.assert_allclose(got[ok], expected[ok], rtol=0, atol=TOL[order] * span)


def smooth(shape, seed=0):
    rng = np.random.default_rng(seed)
    return ndimage.gaussian_filter(rng.standard_normal(shape), 1.5) * 1000 + 200


# ---------------------------------------------------------------- output conversion


def test_store_rounds_half_away_from_zero_and_saturates():
    v = np.array([-300.0, -2.5, -1.5, -0.5, -0.49, 0.49, 0.5, 1.5, 2.5, 254.6, 300.0])
    np.testing.assert_array_equal(cast_output(v, np.uint8), [0, 0, 0, 0, 0, 0, 1, 2, 3, 255, 255])
    np.testing.assert_array_equal(cast_output(v, np.int8), [-128, -3, -2, -1, 0, 0, 1, 2, 3, 127, 127])
    out = np.empty(v.shape, np.int16)
    engine.cast_into(v, out, np.empty(v.shape))  # with a scratch buffer
    np.testing.assert_array_equal(out, [-300, -3, -2, -1, 0, 0, 1, 2, 3, 255, 300])
    # scipy's own conversion agrees
    np.testing.assert_array_equal(cast_output(v, np.int8), ndimage.shift(v, 0, order=1, output=np.int8))


def test_store_between_integer_types_saturates_and_floats_copy():
    v = np.array([-40000, -300, -1, 0, 5, 300, 70000], dtype=np.int32)
    np.testing.assert_array_equal(cast_output(v, np.uint8), [0, 0, 0, 0, 5, 255, 255])
    np.testing.assert_array_equal(cast_output(v, np.int16), [-32768, -300, -1, 0, 5, 300, 32767])
    np.testing.assert_array_equal(cast_output(v, np.int64), v)
    u = np.array([0, 200, 65535], dtype=np.uint16)
    np.testing.assert_array_equal(cast_output(u, np.int8), [0, 127, 127])
    np.testing.assert_array_equal(cast_output(u, np.int16), [0, 200, 32767])
    np.testing.assert_array_equal(cast_output(np.array([True, False]), np.int8), [1, 0])
    f = cast_output(np.array([1.25, -2.75, np.nan]), np.float32)
    assert f.dtype == np.float32
    np.testing.assert_array_equal(f, np.array([1.25, -2.75, np.nan], np.float32))


# ---------------------------------------------------------------- buffers


def test_workspace_reuses_a_buffer_big_enough_and_grows_otherwise():
    ws = Workspace()
    a = ws.array("x", (4, 5), np.float64)
    assert a.shape == (4, 5) and a.dtype == np.float64 and a.flags.c_contiguous
    assert ws.nbytes == 160
    b = ws.array("x", (2, 3), np.int16)  # smaller: the same memory
    assert b.shape == (2, 3) and b.dtype == np.int16 and np.shares_memory(a, b)
    c = ws.array("x", (4, 5), np.float64)  # exactly as big: still the same
    assert np.shares_memory(a, c)
    d = ws.array("x", (4, 6), np.float64)  # bigger: a new buffer
    assert not np.shares_memory(a, d) and ws.nbytes == 192
    e = ws.array("y", (0, 3), np.float32)  # empty shapes work
    assert e.shape == (0, 3) and ws.nbytes == 193
    f = ws.array("y", (), np.float64)  # a 0-d array
    assert f.shape == () and f.dtype == np.float64


def test_each_thread_has_its_own_workspace_and_fresh_never_reuses():
    mine = engine.thread_workspace()
    assert engine.thread_workspace() is mine
    other = []
    t = threading.Thread(target=lambda: other.append(engine.thread_workspace()))
    t.start()
    t.join()
    assert other[0] is not mine and isinstance(other[0], Workspace)
    fresh = engine._Fresh()
    a, b = fresh.array("x", (3, 2), np.int16), fresh.array("x", (3, 2), np.int16)
    assert a.shape == (3, 2) and a.dtype == np.int16 and not np.shares_memory(a, b)


def test_slice_lengths_and_file_order_reads():
    assert engine.slice_lengths((slice(None), slice(2, 5), slice(1, None, 2)), (4, 10, 6)) == (4, 3, 3)
    src = np.arange(24).reshape(2, 3, 4)
    out = np.empty((4, 2, 2), dtype=src.dtype)  # file order: axes reversed
    engine.read_file_order(src, (slice(None), slice(1, 3), slice(None)), out)
    np.testing.assert_array_equal(out, src[:, 1:3, :].T)

    class Direct:
        def __init__(self):
            self.calls = []

        def read_into(self, slices, out):
            self.calls.append(slices)
            out[...] = 7

    d = Direct()
    engine.read_file_order(d, (slice(0, 1),), out)
    assert d.calls == [(slice(0, 1),)] and (out == 7).all()


# ---------------------------------------------------------------- index helpers, by hand


def test_split_runs_plain_and_shifted_ranges_by_hand():
    v = np.array([1, 2, 3, 10, 11, 30])
    assert engine._split_runs(v, 1) == [(1, 4), (10, 12), (30, 31)]
    assert engine._split_runs(v, 7) == [(1, 12), (30, 31)]
    assert engine._split_runs(v, 6) == [(1, 4), (10, 12), (30, 31)]
    assert engine._split_runs(v, 19) == [(1, 31)]
    assert engine._split_runs(np.array([], dtype=np.int64), 3) == []
    assert engine._plain_range(np.array([4, 5, 6])) == (4, 7)
    assert engine._plain_range(np.array([4])) == (4, 5)
    assert engine._plain_range(np.array([4, 6, 6])) is None
    assert engine._plain_range(np.array([4, 5, 7])) is None
    assert engine._plain_range(np.array([-1, 0, 1])) is None
    assert engine._plain_range(np.array([], dtype=np.int64)) is None
    assert engine._plain_range(np.array([6, 5, 4])) is None


def test_shift_runs_by_hand():
    idx = np.array([[0, 1], [1, 2], [2, 3], [5, 6], [6, 7], [6, 5], [9, 10]])
    assert engine._shift_runs(idx) == [(0, 3), (3, 5), (5, 6), (6, 7)]
    assert engine._shift_runs(np.array([[3], [4], [5], [7]])) == [(0, 3), (3, 4)]


def test_padded_range_by_hand():
    assert engine._padded_range(np.array([0, 0, 0, 1, 2, 3, 3])) == (2, 0, 4, 1)
    assert engine._padded_range(np.array([-1, -1, 5, 6, 7, -1])) == (2, 5, 8, 1)
    assert engine._padded_range(np.array([4, 5, 6])) == (0, 4, 7, 0)
    assert engine._padded_range(np.array([2])) == (0, 2, 3, 0)
    assert engine._padded_range(np.array([-1, -1])) is None
    assert engine._padded_range(np.array([3, 1, 2])) is None  # a head that is not the edge voxel
    assert engine._padded_range(np.array([1, 2, 3, 1])) is None  # a tail that is not the edge voxel
    assert engine._padded_range(np.array([1, 2, 5, 6])) is None


def test_read_generic_equals_numpy_fancy_indexing():
    rng = np.random.default_rng(0)
    src = rng.integers(0, 100, size=(150, 9, 4, 2)).astype(np.int16)
    # far-apart runs on x (a gap > READ_GAP, the first not at 0), a gathered order on y, cval on z
    sx = np.array([5, 6, 7, 140, 141, 8])
    sy = np.array([8, 7, 7, 0])
    sz = np.array([-1, 0, 1, 2, 3, -1])
    got = engine._read_generic(src, [sx, sy, sz], (slice(None),), cval=-5.5)
    expected = src[np.ix_(sx, sy, np.clip(sz, 0, None))].astype(np.float64)
    expected[:, :, sz < 0] = -5.5
    assert got.dtype == np.float64
    np.testing.assert_array_equal(got, expected)
    # no cval: the stored type, one box
    got = engine._read_generic(src, [np.array([3, 4, 5]), np.array([1, 2]), np.array([0, 1])], (slice(0, 1),), 0.0)
    assert got.dtype == np.int16
    np.testing.assert_array_equal(got, src[3:6, 1:3, 0:2, 0:1])
    # two far-apart runs on every axis: one box per combination of runs
    big = np.random.default_rng(1).integers(0, 100, size=(140, 140, 140)).astype(np.int16)
    far = [np.array([1, 2, 130, 131]), np.array([100, 3, 4]), np.array([139, 0])]
    got = engine._read_generic(big, far, (), 0.0)
    assert got.dtype == np.int16  # the stored type: int64 labels beyond 2**53 would not survive float64
    np.testing.assert_array_equal(got, big[np.ix_(*far)])
    # a whole axis of cval: nothing read, every value cval
    got = engine._read_generic(src, [np.array([3, 4]), np.array([-1, -1, -1]), np.array([0])], (slice(None),), 2.5)
    assert got.shape == (2, 3, 1, 2) and (got == 2.5).all()


def _eval_reference(x, iax, index, weights):
    taken = np.take(x.astype(np.float64), index, axis=iax)  # the taps on a new axis after iax
    if weights is None:
        return np.take(x, index[:, 0], axis=iax)
    shape = [1] * taken.ndim
    shape[iax], shape[iax + 1] = weights.shape
    return (taken * weights.reshape(shape)).sum(axis=iax + 1)


@pytest.mark.parametrize("iax", [0, 1, 2])
@pytest.mark.parametrize("kind", ["weighted", "nearest"])
@pytest.mark.parametrize("pattern", ["shifted", "scattered"])
def test_eval_axis_is_the_weighted_sum_of_the_taps(iax, kind, pattern):
    rng = np.random.default_rng(iax)
    x = rng.standard_normal((7, 6, 30)) * 50
    n = x.shape[iax]
    m, ntaps = 11, 3
    if pattern == "shifted":  # three runs of shifted taps, one folded at the edge
        start = np.r_[np.arange(4), np.arange(1, 5), [0, 0, 0]]
        index = np.minimum(start[:, None] + np.arange(ntaps), n - 1)
        index[-1] = [1, 0, 1]
    else:
        index = rng.integers(0, n, size=(m, ntaps))
    weights = None if kind == "nearest" else rng.random((m, ntaps))
    if weights is None:
        index = index[:, :1]
    shape = list(x.shape)
    shape[iax] = m
    expected = _eval_reference(x, iax, index, weights)
    for dtype in (np.float64, np.int16):
        out = np.empty(shape, dtype=dtype)
        engine._eval_axis(x, iax, index, weights, out, Workspace(), "t")
        np.testing.assert_allclose(out, cast_output(expected, dtype), rtol=0, atol=1e-9)


def test_eval_axis_on_many_rows_crosses_the_row_chunks():
    """More rows than one chunk of _ROW_BYTES: every row is computed."""
    x = np.random.default_rng(1).standard_normal((40, 2100, 20))
    index = np.array([[0, 1], [5, 6], [10, 11], [19, 19]])
    weights = np.array([[0.25, 0.75], [0.5, 0.5], [1.0, 0.0], [0.3, 0.7]])
    for idx, w in ((index, weights), (index[::-1].copy(), weights)):
        out = np.empty((40, 2100, 4))
        engine._eval_axis(x, 2, idx, w, out, Workspace(), "t")
        np.testing.assert_allclose(out, _eval_reference(x, 2, idx, w), rtol=0, atol=1e-12)
    many = np.stack([np.arange(10) * 2, np.arange(10) * 2 + 1], axis=1)  # ten runs: the gathered path
    out = np.empty((40, 2100, 10), dtype=np.float32)
    engine._eval_axis(x, 2, many, np.full((10, 2), 0.5), out, Workspace(), "t")
    np.testing.assert_allclose(out, _eval_reference(x, 2, many, np.full((10, 2), 0.5)), rtol=1e-6, atol=1e-5)
    out = np.empty((40, 2100, 10), dtype=np.float32)
    engine._eval_axis(x, 2, many[:, :1], None, out, Workspace(), "t")
    np.testing.assert_array_equal(out, x[:, :, ::2].astype(np.float32))


_TYPES = ("u1", "i1", "u2", "i2", "u4", "i4", "u8", "i8", "f4", "f8")


@pytest.mark.parametrize("xtype", _TYPES)
@pytest.mark.parametrize("iax", [0, 1, 2, 3])
def test_compiled_axis_sum_equals_numpy_bit_for_bit(xtype, iax):
    """kernel.axis_sum / axis_take (what _eval_axis runs) give _eval_axis_numpy's
    values exactly: every input type, every axis of a 4-d array, 1 to 6 taps,
    float and integer outputs (rounded and saturated by store)."""
    rng = np.random.default_rng(iax)
    x = rng.standard_normal((3, 5, 4, 9)) * 90
    info = np.iinfo(xtype) if np.dtype(xtype).kind in "iu" else None
    if info is not None:
        x = np.clip(np.round(x * 3), info.min, info.max)
    x = x.astype(xtype)
    n = x.shape[iax]
    for ntaps in range(1, 7):
        index = rng.integers(0, n, size=(6, ntaps))
        weights = rng.standard_normal((6, ntaps))
        shape = list(x.shape)
        shape[iax] = 6
        for out_type in ("f8", "f4", "i2", "u1"):
            got = np.empty(shape, out_type)
            want = np.full(shape, 7, out_type)
            engine._eval_axis(x, iax, index, weights, got, Workspace(), "t")
            engine._eval_axis_numpy(x, iax, index, weights, want, Workspace(), "t")
            assert got.tobytes() == want.tobytes(), (ntaps, out_type)
        got = np.empty(shape, x.dtype)
        engine._eval_axis(x, iax, index[:, :1], None, got, Workspace(), "t")
        np.testing.assert_array_equal(got, np.take(x, index[:, 0], axis=iax))


def test_compiled_axis_sum_of_an_integer_output_in_pieces():
    """An integer output is summed into float64 scratch a few MiB at a time:
    pieces along the first axis and, when there is one row, along the second."""
    rng = np.random.default_rng(5)
    for shape, iax in (((40, 300, 200), 1), ((1, 3000, 300), 1), ((1, 2000, 700), 2)):
        x = (rng.standard_normal(shape) * 1e4).astype(np.float32)
        n = shape[iax]
        index = np.sort(rng.integers(0, n, size=(n // 2, 2)), axis=1)
        weights = rng.random((n // 2, 2))
        oshape = list(shape)
        oshape[iax] = n // 2
        got, want = np.empty(oshape, np.int16), np.empty(oshape, np.int16)
        engine._eval_axis(x, iax, index, weights, got, Workspace(), "t")
        engine._eval_axis_numpy(x, iax, index, weights, want, Workspace(), "t")
        np.testing.assert_array_equal(got, want)


@compiled_only
def test_compiled_axis_sum_refuses_taps_outside_the_line_and_wrong_types():
    from bigresample import kernel

    x = np.zeros((2, 5, 3))
    out = np.zeros((2, 4, 3))
    with pytest.raises(IndexError, match="index 5 outside"):
        kernel.axis_sum(x, out, np.array([[0, 1], [1, 2], [3, 4], [4, 5]]), np.ones((4, 2)))
    with pytest.raises(IndexError, match="index -1 outside"):
        kernel.axis_take(x, out, np.array([[0], [-1], [3], [4]]))
    with pytest.raises(TypeError, match="float32/float64 out"):
        kernel.axis_sum(x, out.astype(np.int16), np.zeros((4, 1)), np.ones((4, 1)))
    with pytest.raises(TypeError, match="same numeric type"):
        kernel.axis_take(x, out.astype(np.float32), np.zeros((4, 1)))
    with pytest.raises(TypeError, match="ntaps"):
        kernel.axis_sum(x, out, np.zeros((4, 2)), np.ones((4, 3)))


def test_eval_axis_falls_back_to_numpy_for_other_types_and_byte_orders():
    x = np.arange(60, dtype=">f4").reshape(3, 4, 5)
    index = np.array([[0, 1], [2, 3]])
    weights = np.array([[0.5, 0.5], [0.25, 0.75]])
    out = np.empty((3, 2, 5))
    engine._eval_axis(x, 1, index, weights, out, Workspace(), "t")
    np.testing.assert_allclose(out, _eval_reference(x.astype(np.float64), 1, index, weights), rtol=0, atol=1e-12)
    h = np.arange(60, dtype=np.float16).reshape(3, 4, 5)
    out = np.empty((3, 2, 5), np.float16)
    engine._eval_axis(h, 1, index[:, :1], None, out, Workspace(), "t")
    np.testing.assert_array_equal(out, h[:, [0, 2]])


# ---------------------------------------------------------------- resamplers against scipy


def test_sampling_parses_its_fields():
    g = make_grid((4, 4, 4), (1, 1, 1), (2, 2, 2))
    r = Resampler(g, np.int64(3), "grid-mirror", 2)
    assert (r.order, r.mode, r.cval) == (3, "reflect", 2.0)
    assert type(r.order) is int and type(r.cval) is float
    assert r.ndim == 3 and r.halo == 17
    with pytest.raises(Exception, match="order must be"):
        Resampler(g, 6)


def test_input_region_is_the_bounding_box_of_the_taps_by_hand():
    """Center grid, 10 voxels to half as many: x(o) = 0.5 + 2 o.  Outputs 1..2 sample
    2.5 and 4.5: linear taps 2..5; nearest 2 and 4 (ties round up: 3 and 5, as scipy)."""
    g = make_grid((10, 10, 10), (1, 1, 1), (2, 2, 2), "center")
    region = (slice(1, 3), slice(0, 1), slice(4, 5))
    assert Resampler(g, 1).input_region(region) == (slice(2, 6), slice(0, 2), slice(8, 10))
    r0 = Resampler(g, 0).input_region(region)
    assert r0[0].start in (2, 3) and r0[0].stop in (5, 6)
    g = make_grid((10, 10, 10), (1, 1, 1), (1, 1, 1), "origin")
    assert Resampler(g, 1, "constant").input_region((slice(2, 4),) * 3) == (slice(2, 4),) * 3
    # 'constant' wholly outside on x (samples from x = 10 on): nothing read there
    from bigresample.geometry import AxisMap, Grid

    shifted = Grid((AxisMap(6, 8, 1.0, 1.0, 10.0, "matrix"),) + make_grid((6, 6, 6), (1,) * 3, (1,) * 3).axes[1:],
                   "reference")
    assert Resampler(shifted, 1, "constant").input_region((slice(0, 8), slice(1, 3), slice(0, 6))) == (
        slice(0, 0), slice(1, 3), slice(0, 6))


@pytest.mark.parametrize("order", [0, 1, 2, 3, 4, 5])
@pytest.mark.parametrize("mode", ["nearest", "grid-constant", "constant", "reflect", "grid-wrap"])
def test_blocks_with_long_outer_lines_equal_the_whole_array_call(order, mode):
    """Windows longer than splines.PLANEWISE_MIN_LEN on y and z (prefiltered plane by
    plane) and cut inside the volume; float64, strict.  One mode per way the engine
    treats an edge: pre-padded by the edge value or cval, cval outside, folded, periodic."""
    data = smooth((10, 72, 70), seed=order)
    g = make_grid(data.shape, (1, 1, 1), (1.3, 0.9, 0.95), "center")
    expected = engine_reference(data, g, order, mode, cval=-40.0)
    got = blockwise(Resampler(g, order, mode, -40.0), data, (11, 45, 80), ws=Workspace())
    assert_strict(got, expected, data, order, cval=-40.0)


@pytest.mark.parametrize("grid", ["center", "origin", "zoom"])
@pytest.mark.parametrize("order", [0, 1, 3])
def test_integer_outputs_equal_scipys_except_at_rounding_boundaries(grid, order):
    rng = np.random.default_rng(order)
    data = rng.integers(-2000, 2000, size=(15, 13, 9)).astype(np.int16)
    g = make_grid(data.shape, (1, 1, 1), (0.7, 1.6, 1.0), grid)
    for out_dtype in (np.int16, np.uint8):
        expected = engine_reference(data, g, order, "mirror", output=out_dtype)
        floats = engine_reference(data, g, order, "mirror")
        got = blockwise(Resampler(g, order, "mirror"), data, (4, 5, 9), dtype=out_dtype)
        near_half = np.abs(np.abs(floats) % 1 - 0.5) <= TOL[order] * 4000
        assert got.dtype == np.dtype(out_dtype)
        np.testing.assert_array_equal(got[~near_half], expected[~near_half])
        assert np.abs(got.astype(int) - expected.astype(int)).max() <= 1


@pytest.mark.parametrize("order", [1, 3])
def test_constant_mode_blocks_wholly_or_partly_outside(order):
    """An output grid reaching beyond the input: blocks entirely cval, partly cval, and
    NaN as cval where scipy has NaN only (float32 output, int output saturating cval)."""
    data = smooth((12, 10, 8)).astype(np.float32)
    g = make_grid(data.shape, (1, 1, 1), (0.4, 1, 1), "center")
    for cval in (np.nan, 5.0):
        r = Resampler(g, order, "constant", cval)
        expected = engine_reference(data, g, order, "constant", cval, output=np.float32)
        assert_strict(blockwise(r, data, (3, 4, 8)), expected, data, order, cval=0.0 if np.isnan(cval) else cval)
    wide = make_grid((6, 6, 6), (1, 1, 1), (1, 1, 1), "origin")
    from bigresample.geometry import AxisMap, Grid

    shifted = Grid((AxisMap(6, 8, 1.0, 1.0, 10.0, "matrix"),) + wide.axes[1:], "reference")  # x from 10: all outside
    src = np.arange(216, dtype=np.int16).reshape(6, 6, 6)
    out = Resampler(shifted, order, "constant", 300.5).compute(src, (slice(0, 8), slice(0, 6), slice(0, 6)))
    assert out.dtype == np.int16 and (out == 301).all()  # cval rounded like a value
    out = Resampler(shifted, order, "constant", 300.5).compute(src, (slice(0, 8), slice(0, 6), slice(0, 6)), np.uint8)
    assert (out == 255).all()  # and saturated


def test_an_unchanged_grid_with_another_output_type_is_converted_like_scipy():
    data = np.random.default_rng(0).standard_normal((6, 5, 4)) * 200
    g = make_grid(data.shape, (1, 1, 1), (1, 1, 1), "origin")
    for dtype in (np.int16, np.uint8, np.float32):
        got = blockwise(Resampler(g, 3, "nearest"), data, (4, 5, 3), dtype=dtype, ws=Workspace())
        np.testing.assert_array_equal(got, engine_reference(data, g, 3, "nearest", output=dtype))


def test_4d_blocks_carry_the_extra_axes_in_file_order():
    data = smooth((9, 8, 7, 2, 3))
    g = make_grid(data.shape[:3], (1, 1, 1), (0.8, 1.5, 1.0), "center")
    r = Resampler(g, 3, "reflect")
    ws = Workspace()
    got = np.empty(g.out_shape + (2, 3))
    for x0 in range(0, g.out_shape[0], 5):
        region = (slice(x0, min(x0 + 5, g.out_shape[0])), slice(0, g.out_shape[1]), slice(0, 7), slice(None), slice(None))
        block = r.compute_into(data, region, np.float64, ws)
        assert block.shape == (3, 2, 7, g.out_shape[1], region[0].stop - x0) and block.flags.c_contiguous
        got[region[0]] = block.T
    for idx in np.ndindex(2, 3):
        expected = engine_reference(data[(Ellipsis,) + idx], g, 3, "reflect")
        assert_strict(got[(Ellipsis,) + idx], expected, data, 3)
    # a slice of the extra axes only
    part = r.compute(data, (slice(0, 4), slice(0, 3), slice(0, 7), slice(1, 2), slice(0, 3, 2)))
    assert part.shape == (4, 3, 7, 1, 2)
    np.testing.assert_allclose(part, got[:4, :3, :, 1:2, 0:3:2], rtol=0, atol=1e-9)


@pytest.mark.slow
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("order", [0, 1, 2, 3, 4, 5])
def test_blocks_cut_on_every_axis_with_one_workspace_equal_the_whole_array_call(order, mode):
    """Blocks cut on every axis (windows padded on one side only, at each edge of the
    volume; lines of 64 samples and more and shorter ones), all computed in one
    reused Workspace as a worker computes them, float32 and int16 inputs, a
    fractional cval; strict against the whole-array call."""
    for dtype in (np.float32, np.int16):
        data = smooth((14, 75, 68), seed=order).astype(dtype)
        g = make_grid(data.shape, (1, 1, 1), (1.3, 0.8, 1.1), "center")
        expected = engine_reference(data, g, order, mode, cval=-40.5)
        got = blockwise(Resampler(g, order, mode, -40.5), data, (5, 30, 25), dtype=np.float64, ws=Workspace())
        assert_strict(got, expected, data, order, cval=-40.5)


def test_a_fractional_cval_outside_the_input_is_rounded_into_an_integer_output():
    """Output voxels outside the input in 'constant' mode hold cval converted as scipy
    converts values (-40.6 -> -41 in int16, not truncated to -40), in blocks partly outside."""
    data = smooth((12, 10, 8))
    g = make_grid(data.shape, (1, 1, 1), (0.4, 1, 1), "center")
    expected = engine_reference(data, g, 1, "constant", -40.6, output=np.int16)
    got = blockwise(Resampler(g, 1, "constant", -40.6), data, (7, 4, 8), dtype=np.int16, ws=Workspace())
    assert (got == -41).any()
    np.testing.assert_array_equal(got[expected == -41], expected[expected == -41])


@pytest.mark.parametrize("mode", ["wrap", "grid-wrap", "reflect", "mirror"])
def test_a_grid_reaching_past_both_ends_prefilters_each_window_piece(mode):
    """Outputs beyond both ends of a long line fold onto both of its ends: the local
    window is two pieces, each prefiltered on its own (order 3), strict against scipy."""
    from bigresample.geometry import AxisMap, Grid

    data = smooth((8, 6, 150))
    base = make_grid(data.shape, (1, 1, 1), (1, 1, 1), "origin")
    z = AxisMap(150, 40, 1.0, 1.0, -20.0, "matrix")  # z from -20 to 19: both ends of the line
    z2 = AxisMap(150, 40, 1.0, 1.0, 130.0, "matrix")  # z from 130 to 169
    for axis in (z, z2):
        g = Grid(base.axes[:2] + (axis,), "reference")
        expected = ndimage.affine_transform(data, [1, 1, 1], offset=[0, 0, axis.offset], output_shape=g.out_shape,
                                            order=3, mode=mode)
        got = blockwise(Resampler(g, 3, mode), data, (8, 6, 40), dtype=np.float64, ws=Workspace())
        assert_strict(got, expected, data, 3)


def test_a_nan_cval_in_an_integer_volumes_pre_pad_warns_nothing():
    """np.pad casts cval to the input's type in scipy's pre-pad; NaN into int16 is cast
    quietly (numpy would warn 'invalid value'), as scipy's own np.pad call does."""
    import warnings

    data = (smooth((20, 70, 66)) % 1000).astype(np.int16)
    g = make_grid(data.shape, (1, 1, 1), (1.3, 0.8, 1.1), "center")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        blockwise(Resampler(g, 3, "grid-constant", np.nan), data, (20, 40, 40), dtype=np.float32)


@compiled_only
@pytest.mark.parametrize("order", [0, 1, 3])
def test_a_big_endian_source_gives_the_native_ones_values_bit_for_bit(order, monkeypatch):
    """A window in another byte order (a big-endian file on this machine) is
    swapped in place after the read, so the compiled sums take it (never the
    numpy sum); the values are the native array's, block by block, the source
    untouched."""

    def refuse(*args):
        raise AssertionError("the numpy sum ran")

    monkeypatch.setattr(engine, "_eval_axis_numpy", refuse)
    rng = np.random.default_rng(order)
    native = (rng.standard_normal((23, 19, 17)) * 300).astype(np.float32)
    swapped = native.astype(">f4")
    before = swapped.copy()
    grid = make_grid(native.shape, (1.0, 1.0, 1.0), (0.8, 1.3, 0.7))
    r = Resampler(grid, order, "nearest")
    ws_a, ws_b = Workspace(), Workspace()
    for region in ((slice(0, 29), slice(0, 15), slice(0, 24)), (slice(3, 11), slice(2, 9), slice(5, 20))):
        a = r.compute_into(native, region, np.float32, ws_a)
        b = r.compute_into(swapped, region, np.float32, ws_b)
        assert a.tobytes() == b.tobytes()
    assert swapped.tobytes() == before.tobytes() and swapped.dtype == np.dtype(">f4")
