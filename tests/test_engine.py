"""Chunked results equal the whole-array scipy.ndimage call on the same grid."""

import itertools

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from bigresample import Resampler, make_grid, resample_array
from bigresample.engine import sorted_unique
from bigresample.splines import MODES, ORDERS

from .helpers import assert_matches_reference, scipy_reference

GRIDS = ("center", "origin", "zoom")
DTYPES = (np.uint8, np.int16, np.float32, np.float64)


def _data(shape, dtype, seed=0):
    rng = np.random.default_rng(seed)
    if np.dtype(dtype).kind in "iu":
        info = np.iinfo(dtype)
        lo, hi = max(info.min, -2000), min(info.max, 2000)
        return rng.integers(lo, hi, size=shape, endpoint=True).astype(dtype)
    return (rng.standard_normal(shape) * 100 + 50).astype(dtype)


def _blockwise(resampler, data, chunks, dtype=None):
    """Compute every block separately with the engine and assemble them."""
    g = resampler.grid
    out = np.empty(g.out_shape + data.shape[len(g.axes):], dtype=dtype or data.dtype)
    starts = [range(0, m, c) for m, c in zip(g.out_shape, chunks)]
    for idx in itertools.product(*starts):
        region = tuple(slice(i, min(i + c, m)) for i, c, m in zip(idx, chunks, g.out_shape))
        out[region] = resampler.compute(data, region + (slice(None),) * (data.ndim - len(region)), dtype)
    return out


@pytest.mark.slow
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("grid", GRIDS)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("order", ORDERS)
def test_block_decomposition_matches_a_single_whole_image_call(order, mode, grid, dtype):
    data = _data((17, 12, 9), dtype, seed=order)
    # down on x, up on y, mixed with an unchanged axis on z
    g = make_grid(data.shape, (0.1, 0.1, 0.2), (0.23, 0.045, 0.2 if order % 2 else 0.13), grid)
    cval = 7.0
    expected = scipy_reference(data, g, order, mode, cval)
    got = resample_array(data, (0.1, 0.1, 0.2), g_spacing(g, (0.1, 0.1, 0.2)), order=order, mode=mode,
                         cval=cval, grid=grid, chunks=(3, 7, 4)).compute()
    assert_matches_reference(got, expected, data, order, cval)


def g_spacing(g, spacing):
    return tuple(s * a.ratio for s, a in zip(spacing, g.axes))


@pytest.mark.slow
@pytest.mark.parametrize("order", ORDERS)
@given(
    shape=st.tuples(*[st.integers(1, 24)] * 3),
    ratios=st.tuples(*[st.sampled_from([0.3, 0.5, 0.77, 1.0, 1.0, 1.5, 2.0, 3.1])] * 3),
    chunks=st.tuples(*[st.integers(1, 30)] * 3),
    grid=st.sampled_from(GRIDS),
    mode=st.sampled_from(MODES),
    dtype=st.sampled_from(DTYPES),
)
def test_any_shape_spacing_and_chunking_matches_scipy(order, shape, ratios, chunks, grid, mode, dtype):
    """Hypothesis draws 1-voxel axes, unchanged axes, chunks smaller than the halo
    and uneven edge chunks."""
    data = _data(shape, dtype, seed=sum(shape))
    spacing = (0.1, 0.2, 0.3)
    new = tuple(s * r for s, r in zip(spacing, ratios))
    g = make_grid(shape, spacing, new, grid)
    expected = scipy_reference(data, g, order, mode, 3.0)
    got = _blockwise(Resampler(g, order, mode, 3.0), data, chunks)
    assert_matches_reference(got, expected, data, order, 3.0)


@pytest.mark.parametrize("mode", MODES)
def test_order_0_ties_at_exact_2x_upsampling_on_the_origin_grid_are_identical(mode):
    data = _data((9, 8, 7), np.int16, seed=3)
    g = make_grid(data.shape, (1, 1, 1), (0.5, 0.5, 0.5), "origin")
    # every other sample sits exactly half-way between two voxels
    assert np.any(g.axes[0].coordinates() % 1 == 0.5)
    expected = scipy_reference(data, g, 0, mode)
    got = _blockwise(Resampler(g, 0, mode), data, (3, 5, 2))
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("order", ORDERS)
def test_4d_input_resamples_every_volume_the_same_way(order):
    data = _data((10, 9, 8, 3), np.float32, seed=4)
    g = make_grid(data.shape[:3], (1, 1, 1), (0.6, 1.7, 1.0), "center")
    expected = scipy_reference(data, g, order, "nearest")
    got = resample_array(data, (1, 1, 1), (0.6, 1.7, 1.0), order=order, chunks=(4, 3, 5)).compute()
    assert_matches_reference(got, expected, data, order)
    assert got.shape == g.out_shape + (3,)


@pytest.mark.parametrize("dtype", [np.uint8, np.int16])
@pytest.mark.parametrize("order", [3, 5])
def test_cubic_overshoot_saturates_integers_instead_of_wrapping(order, dtype):
    info = np.iinfo(dtype)
    data = np.full((16, 6, 5), info.max, dtype=dtype)
    data[:8] = info.min  # one step edge: splines overshoot on both sides of it
    g = make_grid(data.shape, (1, 1, 1), (0.37, 1, 1), "center")
    resampler = Resampler(g, order, "mirror")
    floats = _blockwise(resampler, data, (5, 6, 5), dtype=np.float64)
    assert floats.min() < info.min and floats.max() > info.max  # the overshoot is real
    got = _blockwise(resampler, data, (5, 6, 5))
    expected = scipy_reference(data, g, order, "mirror")
    assert_matches_reference(got, expected, data, order)
    assert got.min() == info.min and got.max() == info.max


@pytest.mark.parametrize("out_dtype", [np.uint8, np.int16, np.float32])
def test_output_dtype_override_rounds_like_scipy(out_dtype):
    data = _data((12, 10, 8), np.float64, seed=5)
    g = make_grid(data.shape, (1, 1, 1), (0.8, 1.3, 1.0), "center")
    expected = scipy_reference(data, g, 1, "nearest", dtype=out_dtype)
    got = resample_array(data, (1, 1, 1), (0.8, 1.3, 1.0), order=1, chunks=5, dtype=out_dtype).compute()
    assert_matches_reference(got, expected, data, 1)


def test_nan_cval_with_float_output_marks_outside_samples():
    data = _data((10, 10, 10), np.float32)
    g = make_grid(data.shape, (1, 1, 1), (0.5, 0.5, 0.5), "center")
    got = resample_array(data, (1, 1, 1), (0.5, 0.5, 0.5), order=1, mode="constant", cval=np.nan, chunks=7).compute()
    expected = scipy_reference(data, g, 1, "constant", np.nan)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(expected))
    assert np.isnan(got).any()
    assert_matches_reference(got, expected, data, 1)


def test_a_zoom_of_one_returns_the_input_unchanged_like_scipy():
    data = _data((5, 4, 3), np.float64)
    g = make_grid(data.shape, (0.1, 0.1, 0.1), (0.1, 0.1, 0.1), "zoom")
    got = _blockwise(Resampler(g, 5, "reflect"), data, (2, 2, 2))
    np.testing.assert_array_equal(got, data)


@pytest.mark.parametrize("values", [[], [7], [3, 3], [5, -1, 5, 2, 9, 2, 2], list(range(40, 0, -3)) * 2])
def test_sorted_unique_is_numpys_unique(values):
    a = np.array(values, dtype=np.int64)
    got = sorted_unique(a)
    np.testing.assert_array_equal(got, np.unique(a))
    assert got.dtype == np.int64
