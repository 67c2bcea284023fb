"""The per-axis replica of scipy.ndimage's sampling, checked against scipy itself."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy import ndimage

from bigresample import splines

MODES = splines.MODES
ORDERS = splines.ORDERS


def _sample_1d(x, coords, order, mode, cval):
    """Evaluate the replica's taps on the (pre-padded, prefiltered) line."""
    m = splines.parse_mode(mode)
    t = splines.taps(coords, len(x), order, m)
    if order > 1:
        if t.npad:
            pad = dict(mode="edge") if m == "nearest" else dict(mode="constant", constant_values=cval)
            x = np.pad(x, t.npad, **pad)
        x = ndimage.spline_filter1d(x, order, mode=mode)
    line = np.append(np.asarray(x, dtype=np.float64), cval)  # index -1 reads cval
    vals = line[t.index]
    out = vals[:, 0] if order == 0 else (vals * t.weights).sum(axis=1)
    out[t.outside] = cval
    return out


@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("mode", MODES)
@given(
    n=st.integers(1, 40),
    ratio=st.floats(0.2, 3.0),
    offset=st.floats(-6.0, 6.0),
    m=st.integers(1, 50),
)
def test_taps_reproduce_affine_transform_in_1d(order, mode, n, ratio, offset, m):
    x = np.random.default_rng(n).normal(size=n)
    ref = ndimage.affine_transform(x, [ratio], offset=[offset], output_shape=(m,), order=order, mode=mode, cval=0.7)
    coords = (np.arange(m) + offset / ratio) * ratio
    got = _sample_1d(x, coords, order, mode, 0.7)
    if order == 0:
        np.testing.assert_array_equal(got, ref)
    else:
        np.testing.assert_allclose(got, ref, rtol=0, atol=1e-12)


@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("mode", MODES)
@given(n=st.integers(1, 40), m=st.integers(1, 50))
def test_taps_reproduce_zoom_in_1d(order, mode, n, m):
    if m == n:
        return  # scipy returns the input unchanged for a zoom of 1
    x = np.random.default_rng(m).normal(size=n)
    ref = ndimage.zoom(x, m / n, order=order, mode=mode, cval=0.7, grid_mode=False)
    m = len(ref)
    step = (n - 1) / (m - 1) if m > 1 else 1.0
    got = _sample_1d(x, np.arange(m) * step, order, mode, 0.7)
    if order == 0:
        np.testing.assert_array_equal(got, ref)
    else:
        np.testing.assert_allclose(got, ref, rtol=0, atol=1e-12)


@pytest.mark.parametrize("order", [2, 3, 4, 5])
def test_prefilter_impulse_response_from_the_poles_matches_scipy(order):
    x = np.zeros(401)
    x[200] = 1.0
    y = ndimage.spline_filter1d(x, order, mode="mirror")
    h = splines.prefilter_response(order, 60)
    np.testing.assert_allclose(y[140:261], h, atol=1e-13)


def test_halo_per_order_is_derived_from_the_poles():
    # pinned: these are the numbers quoted in docs/grids-and-exactness.md and the closing note
    assert [splines.halo(o) for o in ORDERS] == [0, 0, 12, 17, 23, 29]
    # a looser tolerance or fewer filtered axes never needs more
    for o in (2, 3, 4, 5):
        assert splines.halo(o, 1) <= splines.halo(o, 3)
        assert splines.halo(o, 3, 1e-5) < splines.halo(o, 3)


@pytest.mark.parametrize("order", [2, 3, 4, 5])
def test_a_window_cut_one_halo_from_the_samples_stays_within_tolerance(order):
    """The derivation's claim, on the worst data for it: alternating extremes."""
    n, h = 400, splines.halo(order, 1)
    x = np.where(np.arange(n) % 2 == 0, 1.0, 0.0)
    x[n // 2 :] = np.random.default_rng(0).random(n // 2)
    whole = ndimage.spline_filter1d(x, order, mode="mirror")
    for centre in (100, 200, 250):
        lo, hi = centre - h, centre + h + 1
        part = ndimage.spline_filter1d(x[lo:hi], order, mode="mirror")
        assert abs(part[h] - whole[centre]) <= splines.PREFILTER_TOL


def test_scipy_reflect_prefilter_is_inexact_on_short_lines():
    """Why the engine prefilters short 'reflect' lines even at integer samples."""
    x = np.random.default_rng(0).random(4)
    c = ndimage.spline_filter1d(x, 5, mode="reflect")
    t = splines.taps(np.arange(4.0), 4, 5, "reflect")
    back = (c[t.index] * t.weights).sum(axis=1)
    assert np.abs(back - x).max() > 1e-6
    x = np.random.default_rng(0).random(splines.NPAD + 20)
    c = ndimage.spline_filter1d(x, 5, mode="reflect")
    t = splines.taps(np.arange(len(x), dtype=float), len(x), 5, "reflect")
    np.testing.assert_allclose((c[t.index] * t.weights).sum(axis=1), x, atol=1e-14)


@pytest.mark.parametrize("bad", [-1, 6, 1.5, "3", True])
def test_order_outside_0_to_5_is_refused(bad):
    with pytest.raises(splines.SplineError, match="order must be an integer from 0 to 5"):
        splines.parse_order(bad)


def test_unknown_mode_is_refused_with_the_value():
    with pytest.raises(splines.SplineError, match="'edge'"):
        splines.parse_mode("edge")
