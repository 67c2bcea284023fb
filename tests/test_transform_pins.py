"""The general (rotated) path pinned: windows and memory estimates by hand, blocks
against whole-array scipy.ndimage.affine_transform with strict comparisons."""

import warnings

import numpy as np
import pytest
from scipy import ndimage

from bigresample.engine import Workspace
from bigresample.geometry import reference_grid
from bigresample.transform import AffineResampler, _whole_rows, block_bytes

from .helpers import blockwise, whole

TOL = {0: 0.0, 1: 1e-6, 2: 1e-5, 3: 1e-5, 4: 1e-5, 5: 1e-5}  # docs/grids-and-exactness.md, "Exactness"


def identity_grid(in_shape, out_shape=None, shift=(0.0, 0.0, 0.0)):
    ref = np.eye(4)
    ref[:3, 3] = shift
    return reference_grid(in_shape, np.eye(4), out_shape or in_shape, ref)


def rotated_grid(in_shape, out_shape, degrees=20.0, scale=1.1):
    t = np.radians(degrees)
    ref = np.eye(4)
    ref[:3, :3] = np.array([[np.cos(t), -np.sin(t), 0], [np.sin(t), np.cos(t), 0], [0, 0, 1]]) * scale
    centre_in = (np.array(in_shape) - 1) / 2
    ref[:3, 3] = centre_in - ref[:3, :3] @ ((np.array(out_shape) - 1) / 2)
    return reference_grid(in_shape, np.eye(4), out_shape, ref)


def assert_strict(got, expected, data, order, cval=0.0):
    assert got.shape == expected.shape and got.dtype == expected.dtype
    np.testing.assert_array_equal(np.isnan(got), np.isnan(expected))
    if order == 0:  # scipy's coordinates, computed as its C loop does: bit for bit
        np.testing.assert_array_equal(got, expected)
        return
    d = data.astype(np.float64)
    span = max(np.ptp(d), abs(cval - d.min()), abs(cval - d.max()))
    ok = ~np.isnan(expected)
    np.testing.assert_allclose(got[ok], expected[ok], rtol=0, atol=TOL[order] * span)


def smooth(shape, seed=0):
    rng = np.random.default_rng(seed)
    return ndimage.gaussian_filter(rng.standard_normal(shape), 2.0) * 1000


def test_reach_windows_and_their_bounds_by_hand():
    """Identity grid on 200^3: a block's coordinates are its own indices.  Order 1
    reaches floor + 2 (taps floor..floor+1, plus one); order 3 adds the halo (17)."""
    g = identity_grid((200, 200, 200))
    r1 = AffineResampler(g, 1, "nearest")
    assert r1.reach == 2
    block = (slice(50, 60), slice(0, 10), slice(190, 200))
    # x: 48..62; y at the start: clipped to 0, at least 2 * reach + 2 = 6 voxels; z at the end
    assert r1.window(block) == [(48, 62), (0, 12), (188, 200)]
    assert r1.input_region(block) == (slice(48, 62), slice(0, 12), slice(188, 200))
    # a block beyond the end still reads the last 6 voxels (edge values)
    assert r1.window((slice(300, 310), slice(50, 60), slice(50, 60)))[0] == (194, 200)
    assert r1.window((slice(-40, -30), slice(50, 60), slice(50, 60)))[0] == (0, 6)
    assert r1.window_shape((10, 10, 10)) == (15, 15, 15)  # 9 + 2 * 2 + 2
    assert r1.window_shape((10, 10, 10, 3)) == (15, 15, 15)  # a 4D run's block: the spatial axes
    r3 = AffineResampler(g, 3, "nearest")
    assert r3.reach == 2 + 1 + 17
    # at an edge at least 2 * 20 + 2 = 42 voxels
    assert r3.window(block) == [(30, 80), (0, 42), (158, 200)]
    assert r3.window_shape((10, 10, 10)) == (51, 51, 51)
    assert AffineResampler(g, 0, "nearest").reach == 1
    assert AffineResampler(g, 2, "nearest").reach == 1 + 1 + 12
    # folding modes read the whole axis once a block reaches outside
    rm = AffineResampler(g, 1, "mirror")
    assert rm.window(block) == [(48, 62), (0, 200), (0, 200)]
    assert rm.window_shape((10, 10, 10)) == (200, 200, 200)  # some sample reaches outside


def test_short_axes_are_read_whole_and_wide_windows_widen_to_rows():
    g = identity_grid((64, 65, 300))
    r = AffineResampler(g, 1, "nearest")
    assert r.window((slice(10, 12), slice(10, 12), slice(100, 102))) == [(0, 64), (8, 14), (98, 104)]
    assert r.window_shape((2, 2, 2)) == (64, 7, 7)
    # x covering half the row or more: the whole row; then y the same way
    assert _whole_rows([(0, 50), (3, 60), (5, 9)], (100, 100, 100)) == [(0, 100), (0, 100), (5, 9)]
    assert _whole_rows([(0, 49), (3, 60), (5, 9)], (100, 100, 100)) == [(0, 49), (3, 60), (5, 9)]
    assert _whole_rows([(10, 60), (3, 40), (5, 9)], (100, 100, 100)) == [(0, 100), (3, 40), (5, 9)]
    # y widened only when x is whole
    assert _whole_rows([(0, 30), (0, 80), (5, 9)], (100, 100, 100)) == [(0, 30), (0, 80), (5, 9)]


def test_orders_2_and_up_prefilter_only_the_support_of_a_widened_window():
    """Reading whole rows is cheap, prefiltering them is not: at order 3 the window is read
    whole along x (the support covers half the row or more) but the coefficients are made
    on the taps' and halo's support only; at order 1 the kernel reads the read window."""
    g = identity_grid((100, 200, 300))
    block = (slice(30, 50), slice(80, 90), slice(100, 110))
    r3 = AffineResampler(g, 3, "nearest")
    assert r3.window(block) == [(0, 100), (60, 110), (80, 130)]
    assert r3.coefficient_window(block) == [(10, 70), (60, 110), (80, 130)]
    assert r3.window_shape((20, 10, 10)) == (100, 51, 51)
    assert r3.coefficient_shape((20, 10, 10)) == (61, 51, 51)
    r2 = AffineResampler(g, 2, "nearest")  # order 2 prefilters too: reach 1 + 1 + 12
    block2 = (slice(30, 55),) + block[1:]
    assert r2.window(block2) == [(0, 100), (66, 104), (86, 124)]
    assert r2.coefficient_window(block2) == [(16, 69), (66, 104), (86, 124)]
    assert r2.coefficient_shape((25, 10, 10)) == (54, 39, 39)
    assert r2.window_shape((25, 10, 10)) == (100, 39, 39)
    r1 = AffineResampler(g, 1, "nearest")
    wide = (slice(30, 80), slice(80, 90), slice(100, 110))  # taps 28..81: half the row or more
    assert r1.coefficient_window(wide) == r1.window(wide) == [(0, 100), (78, 92), (98, 112)]
    assert r1.coefficient_shape((50, 10, 10)) == r1.window_shape((50, 10, 10)) == (100, 15, 15)
    # the block's bytes: the read window in the stored type (twice), the coefficients of the
    # support with scipy's pre-pad of 12 per side, 8 bytes of values and the output twice
    out = 20 * 10 * 10
    assert block_bytes(r3, (20, 10, 10), 4, 4) == 2 * 100 * 51 * 51 * 4 + 8 * out + 2 * out * 4 + 85 * 75 * 75 * 8


def test_the_kernel_gets_the_coefficients_of_the_support_and_its_first_sample(monkeypatch):
    """At order 3 the window read whole along x is cut to its support before the
    prefilter: the kernel's array is the support plus scipy's pre-pad of 12 per side
    for 'nearest', and ``first`` is the support's start; at order 1 it is the read window."""
    from bigresample import kernel

    seen = []
    real = kernel.resample_block

    def spy(data, out, matrix, offset, origin, first, length, **sampling):
        seen.append((data.shape, tuple(first)))
        return real(data, out, matrix, offset, origin, first, length, **sampling)

    monkeypatch.setattr(kernel, "resample_block", spy)
    g = identity_grid((100, 200, 300))
    data = smooth((100, 200, 300))
    block = (slice(30, 50), slice(80, 90), slice(100, 110))
    AffineResampler(g, 3, "nearest").compute(data, block)
    AffineResampler(g, 1, "nearest").compute(data, (slice(30, 80),) + block[1:])
    # (z, y, x): z 80..130, y 60..110, x 10..70, each padded by 12; order 1: x read whole
    assert seen == [((74, 74, 84), (10, 60, 80)), ((14, 14, 100), (0, 78, 98))]


def test_a_grid_inside_the_volume_does_not_leave_it_in_folding_modes():
    g = identity_grid((200, 200, 200), out_shape=(20, 20, 20), shift=(90.0, 90.0, 90.0))
    r = AffineResampler(g, 1, "wrap")
    assert r.window((slice(0, 10),) * 3) == [(88, 102)] * 3
    assert r.window_shape((10, 10, 10)) == (15, 15, 15)


def test_block_bytes_by_hand():
    """Axes of 64 voxels or fewer are read whole: window 10x20x30 voxels, block 4x5x6; the window
    twice (a native copy for float16 or another byte order), 8 bytes of values per output voxel
    (integer outputs) and the output block, twice."""
    g = identity_grid((10, 20, 30))
    window, out = 6000, 120
    assert block_bytes(AffineResampler(g, 1, "mirror"), (4, 5, 6), 4, 4) == 2 * window * 4 + 8 * out + 2 * out * 4
    assert block_bytes(AffineResampler(g, 1, "mirror"), (4, 5, 6), 2, 8) == 2 * window * 2 + 8 * out + 2 * out * 8
    # orders >= 2: the float64 coefficients, pre-padded by 12 on each side for 'nearest' and 'grid-constant'
    base = 2 * window * 4 + 8 * out + 2 * out * 4
    assert block_bytes(AffineResampler(g, 3, "mirror"), (4, 5, 6), 4, 4) == base + window * 8
    assert block_bytes(AffineResampler(g, 3, "nearest"), (4, 5, 6), 4, 4) == base + 34 * 44 * 54 * 8
    assert block_bytes(AffineResampler(g, 5, "grid-constant"), (4, 5, 6), 4, 4) == base + 34 * 44 * 54 * 8
    assert block_bytes(AffineResampler(g, 2, "reflect"), (4, 5, 6), 4, 4) == base + window * 8


def test_every_sample_of_a_block_lies_inside_its_window_with_its_reach():
    """The kernel computes each coordinate where it uses it; the window must hold every
    sample's taps: coordinates from the matrix here, independently of the kernel."""
    g = rotated_grid((80, 70, 66), (30, 20, 10))
    r = AffineResampler(g, 1, "nearest")
    spatial = (slice(3, 7), slice(2, 4), slice(5, 6))
    win = r.window(spatial)
    o = np.stack(np.meshgrid(np.arange(3, 7), np.arange(2, 4), np.arange(5, 6), indexing="ij"), axis=0)
    c = np.einsum("ij,jxyz->ixyz", g.matrix, o.astype(float)) + g.offset[:, None, None, None]
    for i, n in enumerate(g.in_shape):
        lo, hi = win[i]
        assert lo == 0 or c[i].min() - lo >= r.reach - 1
        assert hi == n or c[i].max() + r.reach <= hi


@pytest.mark.parametrize("order", [0, 1, 2, 3, 5])
@pytest.mark.parametrize("mode", ["nearest", "grid-constant", "constant", "mirror", "grid-wrap"])
def test_rotated_blocks_equal_the_whole_array_call_strictly(order, mode):
    """Windows cut inside a volume longer than 64 on every axis (planewise prefilter on
    y and z, scipy's on x); float64 in and out, cval off the data's range."""
    data = smooth((80, 76, 70), seed=order)
    g = rotated_grid(data.shape, (26, 22, 16), degrees=25, scale=1.7)
    r = AffineResampler(g, order, mode, cval=-2000.0)
    got = blockwise(r, data, (17, 15, 10), ws=Workspace())
    assert_strict(got, whole(data, g, order, mode, cval=-2000.0), data, order, cval=-2000.0)


@pytest.mark.parametrize("order", [1, 3])
def test_integer_input_with_a_fractional_cval_pads_like_scipy(order):
    """scipy pads the input in its own type, so cval 2.7 becomes 2 in an int16 pre-pad;
    NaN as cval of an integer input must not warn or fail either."""
    rng = np.random.default_rng(2)
    data = rng.integers(-500, 500, size=(70, 68, 66)).astype(np.int16)
    g = rotated_grid(data.shape, (20, 20, 20), degrees=-30, scale=4.0)  # reaching outside
    for cval in (2.7, 0.0):
        got = blockwise(AffineResampler(g, order, "grid-constant", cval), data, (10, 20, 7), dtype=np.float64)
        assert_strict(got, whole(data, g, order, "grid-constant", cval, dtype=np.float64), data, order, cval)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # NaN cast to the window's integer type: no RuntimeWarning
        got = blockwise(AffineResampler(g, 3, "grid-constant", np.nan), data, (20, 20, 20), dtype=np.float64)
    assert np.isfinite(got).sum() > 0


def test_float16_input_and_output_types():
    data = (smooth((70, 66, 65)) / 10).astype(np.float16)
    g = rotated_grid(data.shape, (15, 12, 10))
    for order, dtype in ((1, np.float32), (3, np.float64), (1, np.int16)):
        got = blockwise(AffineResampler(g, order, "nearest"), data, (8, 12, 5), dtype=dtype)
        expected = whole(data.astype(np.float32), g, order, "nearest", dtype=dtype)
        assert got.dtype == np.dtype(dtype)
        np.testing.assert_allclose(got.astype(float), expected.astype(float), rtol=0,
                                   atol=1.0 if dtype == np.int16 else 1e-5 * np.ptp(data.astype(float)))


def test_4d_blocks_in_file_order_and_every_volume():
    data = smooth((66, 65, 64, 2))
    g = rotated_grid(data.shape[:3], (12, 10, 8))
    r = AffineResampler(g, 3, "reflect")
    ws = Workspace()
    block = r.compute_into(data, (slice(0, 12), slice(0, 10), slice(0, 8), slice(1, 2)), np.float64, ws)
    assert block.shape == (1, 8, 10, 12) and block.flags.c_contiguous
    expected = whole(data[..., 1], g, 3, "reflect")
    assert_strict(block[0].T, expected, data, 3)
    got = blockwise(r, data, (5, 10, 3))
    for v in range(2):
        assert_strict(got[..., v], whole(data[..., v], g, 3, "reflect"), data, 3)


@pytest.mark.parametrize("dtype", [np.float32, np.int16])
def test_a_block_without_an_output_type_keeps_the_inputs(dtype):
    """``compute(source, region)`` with no type gives the input's type (scipy's
    ``affine_transform`` default output), values as the whole-array call's."""
    data = (np.random.default_rng(5).random((20, 18, 12)) * 300).astype(dtype)
    g = rotated_grid(data.shape, (14, 16, 10))
    r = AffineResampler(g, 1, "nearest")
    got = r.compute(data, tuple(slice(0, n) for n in g.out_shape))
    assert got.dtype == dtype
    expected = whole(data, g, 1, "nearest")
    assert np.abs(got.astype(np.float64) - expected).max() <= (1 if dtype == np.int16 else 1e-4)


def test_two_extra_axes_of_different_lengths_are_each_resampled():
    """A 5-d input (x, y, z, t, c), t != c: every (t, c) volume equals its own whole-array call."""
    data = np.random.default_rng(9).random((16, 14, 12, 3, 2)) * 100
    g = rotated_grid(data.shape[:3], (12, 13, 10))
    r = AffineResampler(g, 1, "nearest")
    got = r.compute(data, tuple(slice(0, n) for n in g.out_shape) + (slice(None), slice(None)))
    assert got.shape == g.out_shape + (3, 2)
    for t in range(3):
        for c in range(2):
            np.testing.assert_allclose(got[..., t, c], whole(data[..., t, c], g, 1, "nearest"), rtol=0, atol=1e-9)


@pytest.mark.parametrize("mode", ["reflect", "mirror", "wrap", "grid-wrap", "nearest", "grid-constant"])
@pytest.mark.parametrize("shape", [(70, 66, 12), (20, 18, 2), (20, 18, 1)])
def test_rough_data_at_the_volumes_edges_equals_scipy_at_order_3(shape, mode):
    """White noise, not smooth data: each mode's prefilter start at the volume's edge
    (reflect, mirror, periodic) shows in the samples near it; thin volumes (2 and 1
    slices) prefilter their short axes as scipy does.  Blocks vs the whole-array call."""
    data = np.random.default_rng(3).standard_normal(shape) * 100
    g = rotated_grid(shape, tuple(max(1, n - 3) for n in shape[:2]) + (shape[2],), degrees=25.0, scale=1.05)
    r = AffineResampler(g, 3, mode)
    got = blockwise(r, data, (17, 23, 5))
    expected = whole(data, g, 3, mode)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5 * np.ptp(data))
