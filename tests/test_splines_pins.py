"""The spline pieces pinned one by one: boundary folding by hand, the B-spline basis
against scipy.interpolate's, the planewise prefilter against scipy.ndimage's own."""

import math

import numpy as np
import pytest
from scipy import interpolate, ndimage

from bigresample import splines


def test_refusals_word_for_word():
    with pytest.raises(splines.SplineError) as err:
        splines.parse_order(7)
    assert str(err.value) == "order must be an integer from 0 to 5; got 7"
    with pytest.raises(splines.SplineError) as err:
        splines.parse_mode("edge")
    assert str(err.value) == ("mode must be one of nearest, constant, reflect, grid-mirror, mirror, wrap, "
                              "grid-wrap, grid-constant; got 'edge'")
    with pytest.raises(splines.SplineError) as err:
        splines.bspline(np.zeros(2), 6)
    assert str(err.value) == "order must be an integer from 0 to 5; got 6"
    with pytest.raises(ValueError, match="line of 63 samples is too short for the planewise prefilter"):
        splines.prefilter_planes(np.zeros((63, 2)), np.zeros((63, 2)), 3, "mirror", 0)


def test_accepted_orders_and_modes():
    assert [splines.parse_order(o) for o in (0, np.int64(5), np.uint8(2))] == [0, 5, 2]
    assert type(splines.parse_order(np.int64(5))) is int
    assert splines.parse_mode("grid-mirror") == "reflect"  # scipy's alias
    assert [splines.parse_mode(m) for m in ("nearest", "wrap", "grid-constant")] == ["nearest", "wrap", "grid-constant"]


def test_prepad_and_the_spline_boundary_rule():
    """scipy pre-pads 12 voxels before prefiltering only for orders > 1 in 'nearest'
    and 'grid-constant' (_prepad_for_spline_filter); its taps fold 'constant' and 'wrap'
    lines as 'mirror' (_get_spline_boundary_mode)."""
    assert splines.NPAD == 12
    assert [splines.prepad(o, "nearest") for o in range(6)] == [0, 0, 12, 12, 12, 12]
    assert [splines.prepad(o, "grid-constant") for o in range(6)] == [0, 0, 12, 12, 12, 12]
    assert {splines.prepad(5, m) for m in splines.MODES if m not in ("nearest", "grid-constant")} == {0}
    assert [splines.spline_mode(m) for m in ("constant", "wrap", "reflect", "grid-wrap", "mirror", "nearest")] == [
        "mirror", "mirror", "reflect", "grid-wrap", "mirror", "nearest"]


# x, then its image on a line of 5 samples per mode, derived by hand from the
# mode's definition (docs/grids-and-exactness.md; scipy's ndimage tutorial):
#   mirror: period 8, reflection about 0 and 4; reflect: period 10, about -0.5 and 4.5;
#   wrap: period 4 (first and last sample coincide); grid-wrap: period 5.
X = [-7.5, -1.2, 0.0, 2.5, 4.0, 5.3, 11.7]
FOLDED = {
    "mirror": [0.5, 1.2, 0.0, 2.5, 4.0, 2.7, 3.7],
    "reflect": [2.5, 0.2, 0.0, 2.5, 4.0, 3.7, 1.7],
    "wrap": [0.5, 2.8, 0.0, 2.5, 4.0, 1.3, 3.7],
    "grid-wrap": [2.5, 3.8, 0.0, 2.5, 4.0, 0.3, 1.7],
    "nearest": [0.0, 0.0, 0.0, 2.5, 4.0, 4.0, 4.0],
    "constant": [-1.0, -1.0, 0.0, 2.5, 4.0, -1.0, -1.0],
    "grid-constant": X,
}


@pytest.mark.parametrize("mode", sorted(FOLDED))
def test_map_coordinate_folds_by_the_modes_definition(mode):
    x = np.array(X)
    got = splines.map_coordinate(x, 5, mode)
    np.testing.assert_allclose(got, FOLDED[mode], rtol=0, atol=1e-12)
    np.testing.assert_array_equal(x, X)  # the argument is not modified
    inside = np.array([0.0, 1.5, 4.0])
    np.testing.assert_array_equal(splines.map_coordinate(inside, 5, mode), inside)


@pytest.mark.parametrize("mode", ["mirror", "reflect", "wrap", "grid-wrap"])
def test_map_coordinate_on_a_one_sample_line_is_that_sample(mode):
    np.testing.assert_array_equal(splines.map_coordinate(np.array([-3.5, 0.0, 2.0]), 1, mode), [0.0, 0.0, 0.0])


def test_map_coordinate_folds_only_what_is_outside():
    x = np.array([-0.5, 0.5, 3.5, 4.5])
    np.testing.assert_allclose(splines.map_coordinate(x, 4, "nearest"), [0.0, 0.5, 3.0, 3.0])
    # (3, 4) is left to the taps (their folding reads sample 2 for 3.5)
    np.testing.assert_allclose(splines.map_coordinate(x, 4, "mirror"), [0.5, 0.5, 3.5, 1.5])
    np.testing.assert_allclose(splines.map_coordinate(x, 4, "grid-wrap"), [3.5, 0.5, 3.5, 0.5])
    np.testing.assert_allclose(splines.map_coordinate(x, 4, "wrap"), [2.5, 0.5, 0.5, 1.5])


@pytest.mark.parametrize("order", [1, 2, 3, 4, 5])
def test_bspline_is_the_cardinal_b_spline(order):
    """The centred B-spline of degree ``order``: scipy.interpolate's basis element on
    the knots -(order+1)/2 .. (order+1)/2, zero beyond them."""
    knots = np.arange(order + 2) - (order + 1) / 2
    basis = interpolate.BSpline.basis_element(knots, extrapolate=False)
    d = np.linspace(-4, 4, 161)
    expected = np.nan_to_num(basis(d), nan=0.0)
    np.testing.assert_allclose(splines.bspline(d, order), expected, rtol=0, atol=1e-14)
    # symmetric, and a partition of unity at any shift
    for shift in (0.0, 0.25, 0.5, 0.8):
        taps = np.arange(-4, 5) + shift
        assert splines.bspline(taps, order).sum() == pytest.approx(1.0, abs=1e-14)


def test_bspline_of_order_0_is_the_box_open_at_one_half():
    np.testing.assert_array_equal(splines.bspline(np.array([-0.75, -0.5, -0.49, 0.0, 0.49, 0.5, 1.0]), 0),
                                  [0, 0, 1, 1, 1, 0, 0])


def test_bspline_values_by_hand():
    """B-spline values at 0, 1/2, 1 and 3/2 (the usual tables: 2/3, 1/6 for the cubic...)."""
    d = np.array([0.0, 0.5, 1.0, 1.5, 2.0, 2.5])
    np.testing.assert_allclose(splines.bspline(d, 1), [1, 0.5, 0, 0, 0, 0], atol=1e-15)
    np.testing.assert_allclose(splines.bspline(d, 2), [0.75, 0.5, 0.125, 0, 0, 0], atol=1e-15)
    np.testing.assert_allclose(splines.bspline(d, 3), [2 / 3, 23 / 48, 1 / 6, 1 / 48, 0, 0], atol=1e-15)
    np.testing.assert_allclose(splines.bspline(d, 4), np.array([115, 88, 38, 8, 0.5, 0]) / 192, atol=1e-15)
    np.testing.assert_allclose(splines.bspline(d, 5), np.array([2112, 1682, 832, 237, 32, 1]) / 3840, atol=1e-15)


def test_poles_are_the_roots_of_the_b_spline_symbol():
    """The prefilter's poles are the roots inside the unit circle of
    sum_k b(k) z^k, b the sampled B-spline (Unser's recipe)."""
    for order in (2, 3, 4, 5):
        k = np.arange(-(order // 2), order // 2 + 1)
        b = splines.bspline(k.astype(float), order)
        roots = np.roots(b[::-1])
        inside = np.sort(roots[np.abs(roots) < 1].real)
        np.testing.assert_allclose(np.sort(splines.poles(order)), inside, rtol=0, atol=1e-12)
    assert splines.poles(0) == () and splines.poles(1) == ()


@pytest.mark.parametrize("order", [2, 3, 4, 5])
@pytest.mark.parametrize("mode", splines.MODES)
def test_prefilter_planes_equals_scipys_spline_filter1d(order, mode):
    rng = np.random.default_rng(order)
    x = rng.standard_normal((70, 3, 64)) * 10
    for axis in (0, 2):
        expected = ndimage.spline_filter1d(x, order, axis=axis, mode=mode)
        out = np.empty_like(x)
        got = splines.prefilter_planes(x, out, order, splines.parse_mode(mode), axis)
        assert got is out
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-10)


def test_prefilter_planes_works_in_float64_on_float32_and_in_place():
    x = (np.random.default_rng(0).random((64, 5)) * 1000).astype(np.float32)
    expected = ndimage.spline_filter1d(x.astype(np.float64), 3, axis=0, mode="mirror")
    out = np.empty(x.shape)
    np.testing.assert_allclose(splines.prefilter_planes(x, out, 3, "mirror", 0), expected, rtol=0, atol=1e-9)
    y = x.astype(np.float64)
    splines.prefilter_planes(y, y, 3, "mirror", 0)
    np.testing.assert_allclose(y, expected, rtol=0, atol=1e-9)


def test_the_prefilter_horizon_is_where_the_pole_falls_below_1e_16():
    # 44 samples for order 5's largest pole, as prefilter_planes' docstring says
    z = max(abs(p) for p in splines.poles(5))
    assert math.ceil(math.log(1e-16) / math.log(z)) == 44


@pytest.mark.parametrize("mode", ["mirror", "reflect", "wrap", "grid-wrap"])
def test_map_coordinate_computes_in_float64_like_the_c_code(mode):
    """ni_interpolation.c folds coordinates as doubles: float32 coordinates give the
    float64 result of the same values, not float32 arithmetic."""
    x32 = np.array([-7.3, -1.2, 5.3, 11.7, 23.9], dtype=np.float32)
    got = splines.map_coordinate(x32, 5, mode)
    assert got.dtype == np.float64
    np.testing.assert_array_equal(got, splines.map_coordinate(x32.astype(np.float64), 5, mode))


@pytest.mark.parametrize("mode, expected", [
    ("reflect", [2.5, 2.2, 4.0, 3.5]),  # period 10, about -0.5: -23.5 + 30 = 6.5 -> 2.5
    ("mirror", [0.5, 2.8, 0.0, 1.5]),  # period 8, about 0: -23.5 + 24 = 0.5
    ("wrap", [0.5, 2.8, 4.0, 1.5]),  # period 4 (-16 lands on 0, which is also 4: the C code says 4)
    ("grid-wrap", [1.5, 1.8, 4.0, 3.5]),  # period 5
])
def test_map_coordinate_folds_coordinates_several_periods_away(mode, expected):
    """More than one period below 0 (the far branch of each mode), by hand on 5 samples."""
    got = splines.map_coordinate(np.array([-23.5, -13.2, -16.0, 33.5]), 5, mode)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)


def test_reflect_maps_exactly_one_period_below_zero_to_zero():
    np.testing.assert_array_equal(splines.map_coordinate(np.array([-10.0]), 5, "reflect"), [0.0])


def test_reflect_guards_a_tiny_negative_coordinate_as_scipy_does():
    """ni_interpolation.c's 'reflect' maps ``in`` in (-1e-15, 0) to ``1e-15 - 1``,
    not ``-in - 1`` (which rounds to -1); -1e-15 itself gives the same either way."""
    got = splines.map_coordinate(np.array([-1e-16, -1e-300, -1e-15, -0.25]), 5, "reflect")
    np.testing.assert_array_equal(got, [1e-15 - 1, 1e-15 - 1, 1e-15 - 1, -0.75])


def test_an_unknown_mode_is_refused_by_name():
    with pytest.raises(splines.SplineError, match="unknown mode 'edge'"):
        splines.map_coordinate(np.array([-1.0]), 5, "edge")


@pytest.mark.parametrize("mode, npad", [("nearest", 12), ("grid-constant", 12), ("mirror", 0), ("constant", 0)])
def test_taps_record_the_padded_line_and_mark_no_sample_outside_but_in_constant_mode(mode, npad):
    """``Taps.length`` is the pre-padded line (n + 2 * npad) the indices point into;
    only 'constant' marks samples as cval altogether ('grid-constant' reads cval
    tap by tap, 'nearest' clamps); order 0 has no weights."""
    coords = np.array([-30.0, -1.5, 0.0, 2.5, 4.0, 9.0, 40.0])
    t = splines.taps(coords, 5, 3, mode)
    assert (t.length, t.npad) == (5 + 2 * npad, npad)
    assert t.outside.tolist() == ([True, True, False, False, False, True, True] if mode == "constant" else [False] * 7)
    t0 = splines.taps(coords, 5, 0, mode)
    assert t0.weights is None and t0.index.shape == (7, 1)
