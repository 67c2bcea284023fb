"""The comparison helpers of helpers.py catch what they claim to: each blind spot they once had, planted."""

import numpy as np
import pytest

from bigresample.geometry import make_grid

from .helpers import assert_matches_reference, scipy_reference, with_exact


def _float_case(order=1):
    rng = np.random.default_rng(3)
    data = (rng.random((12, 10, 8)) * 100).astype(np.float32)
    g = make_grid(data.shape, (1, 1, 1), (0.7, 1.3, 1.0), "center")
    return data, scipy_reference(data, g, order, "constant", cval=np.nan)


def test_an_exact_copy_of_the_reference_passes_nan_included():
    data, expected = _float_case()
    assert np.isnan(expected).any() and np.isfinite(expected).any()
    assert_matches_reference(expected.copy(), expected, data, 1)


def test_a_difference_within_the_tolerance_passes_and_one_just_over_fails():
    data, expected = _float_case()
    span = float(data.max() - data.min())
    got = expected.astype(np.float64)
    i = tuple(np.argwhere(np.isfinite(expected))[0])
    got[i] += 0.5e-6 * span
    assert_matches_reference(got.astype(np.float32), expected, data, 1)
    got[i] += 2e-6 * span
    with pytest.raises(AssertionError, match="tolerance"):
        assert_matches_reference(got.astype(np.float32), expected, data, 1)


@pytest.mark.parametrize("planted", [np.nan, np.inf, -np.inf])
def test_a_non_finite_value_where_scipy_is_finite_fails(planted):
    data, expected = _float_case()
    got = expected.copy()
    got[tuple(np.argwhere(np.isfinite(expected))[0])] = planted
    with pytest.raises(AssertionError, match="NaN mismatch|infinity mismatch"):
        assert_matches_reference(got, expected, data, 1)


def test_a_finite_value_where_scipy_has_nan_fails():
    data, expected = _float_case()
    got = expected.copy()
    got[tuple(np.argwhere(np.isnan(expected))[0])] = 1.0
    with pytest.raises(AssertionError, match="NaN mismatch"):
        assert_matches_reference(got, expected, data, 1)


@pytest.mark.parametrize("ref, got", [(np.inf, -np.inf), (-np.inf, np.inf), (np.inf, 1e30), (np.inf, np.nan)])
def test_infinities_must_match_in_place_and_sign(ref, got):
    data = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    expected = data.copy()
    expected[1, 1, 1] = ref
    result = expected.copy()
    result[1, 1, 1] = got
    with pytest.raises(AssertionError, match="mismatch"):
        assert_matches_reference(result, expected, data, 3)
    assert_matches_reference(expected.copy(), expected, data, 3)


def _integer_case(dtype=np.uint8):
    rng = np.random.default_rng(5)
    data = rng.integers(0, 200, (14, 12, 9)).astype(dtype)
    g = make_grid(data.shape, (1, 1, 1), (0.6, 0.75, 1.0), "center")
    expected = scipy_reference(data, g, 1, "nearest")
    return data, expected


def test_an_integer_reference_carries_its_float64_twin():
    data, expected = _integer_case()
    assert expected.dtype == np.uint8 and expected.exact.dtype == np.float64
    np.testing.assert_array_equal(np.clip(np.floor(expected.exact + 0.5), 0, 255), expected)


def test_one_unit_off_away_from_a_rounding_boundary_fails_for_integers():
    data, expected = _integer_case()
    frac = expected.exact - np.floor(expected.exact)
    far = np.argwhere((np.abs(frac - 0.5) > 0.1) & (expected > 0) & (expected < 255))[0]
    got = np.asarray(expected).copy()
    got[tuple(far)] += 1
    with pytest.raises(AssertionError, match="away from a rounding boundary"):
        assert_matches_reference(got, expected, data, 1)


def test_one_unit_off_on_a_rounding_boundary_passes_two_fail():
    data = np.zeros((4, 3, 3), np.int16)
    data[0, 0, 0] = 1000  # the range that sets the tolerance
    exact = np.zeros((4, 3, 3))
    exact[1, 1, 1] = 7.5 - 1e-12  # scipy rounds to 7, a block may see 7.5 + 1e-12 and round to 8
    expected = with_exact(np.floor(exact + 0.5).astype(np.int16), exact)
    assert expected[1, 1, 1] == 7
    got = np.asarray(expected).copy()
    got[1, 1, 1] = 8
    assert_matches_reference(got, expected, data, 1)
    got[1, 1, 1] = 9
    with pytest.raises(AssertionError):
        assert_matches_reference(got, expected, data, 1)


def test_saturated_integers_must_be_equal():
    data = np.array([0, 255, 0, 255], np.uint8).reshape(4, 1, 1).repeat(3, 1).repeat(3, 2)
    exact = np.full((4, 3, 3), 300.2)  # a spline overshoot: saturates to 255
    expected = with_exact(np.full((4, 3, 3), 255, np.uint8), exact)
    got = np.asarray(expected).copy()
    assert_matches_reference(got, expected, data, 3)
    got[0, 0, 0] = 254
    with pytest.raises(AssertionError, match="away from a rounding boundary"):
        assert_matches_reference(got, expected, data, 3)


def test_an_integer_output_at_order_above_zero_needs_the_float_reference():
    data, expected = _integer_case()
    with pytest.raises(AssertionError, match="float64 reference"):
        assert_matches_reference(np.asarray(expected), np.asarray(expected), data, 1)


def test_integer_order_zero_is_identical():
    data, _ = _integer_case()
    g = make_grid(data.shape, (1, 1, 1), (0.6, 0.75, 1.0), "center")
    expected = scipy_reference(data, g, 0, "nearest")
    got = expected.copy()
    got[0, 0, 0] ^= 1
    with pytest.raises(AssertionError):
        assert_matches_reference(got, expected, data, 0)


def test_the_reference_refuses_a_grid_whose_shape_is_not_the_documented_one():
    import dataclasses

    data, _ = _float_case()
    g = make_grid(data.shape, (1, 1, 1), (0.7, 1.3, 1.0), "center")
    bad = dataclasses.replace(g, axes=(dataclasses.replace(g.axes[0], m=g.axes[0].m + 1),) + g.axes[1:])
    with pytest.raises(AssertionError, match="documented"):
        scipy_reference(data, bad, 1, "nearest")
    shifted = dataclasses.replace(g, axes=(dataclasses.replace(g.axes[0], offset=g.axes[0].offset + 0.25),)
                                  + g.axes[1:])
    with pytest.raises(AssertionError):
        scipy_reference(data, shifted, 1, "nearest")


def test_the_zoom_reference_is_scipy_zoom_with_the_asked_factor_s_over_t():
    """A zoom grid with ratio 0.9999 keeps m == n voxels: bigresample samples the input at
    ``o * (n-1)/(m-1)`` and interpolates, as ``scipy.ndimage.zoom(zoom=s/t = 1/0.9999,
    grid_mode=False)`` does.  A reference passing ``zoom=m/n = 1`` instead gets scipy's
    early exit, a plain copy cast to the output type: 2.7 becomes 2 (truncated), not 3."""
    from scipy import ndimage

    from bigresample.lazy import resample_array

    rng = np.random.default_rng(8)
    data = (rng.random((9, 7, 5)) * 100).astype(np.float32)
    data[0, 0, 0] = 2.7
    g = make_grid(data.shape, (1, 1, 1), (0.9999, 0.9999, 0.9999), "zoom")
    assert g.out_shape == data.shape and not g.is_copy
    expected = scipy_reference(data, g, 1, "nearest", dtype=np.int16)
    claimed = ndimage.zoom(data, 1 / 0.9999, order=1, mode="nearest", grid_mode=False, output=np.int16)
    np.testing.assert_array_equal(expected, claimed)
    assert expected[0, 0, 0] == 3  # interpolated (at the sample itself) and rounded, not a truncating copy
    got = resample_array(data, (1, 1, 1), (0.9999, 0.9999, 0.9999), grid="zoom", dtype=np.int16,
                         chunks=(4, 3, 2)).compute()
    assert_matches_reference(got, expected, data, 1)
