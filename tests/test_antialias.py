"""The anti-aliasing filter on its own (bigresample/antialias.py): any region of ``Smoothed`` equals the
same region of the whole-array ``scipy.ndimage.gaussian_filter1d`` (mode nearest, truncate 4, float64)
along each smoothed axis; the runs through it are checked in test_cli.py and test_claims.py."""

import pickle

import numpy as np
import pytest
from scipy import ndimage

from bigresample.antialias import Smoothed, radius, sigmas


def whole_filter(data, sigma):
    out = data.astype(np.float64)
    for ax, s in enumerate(sigma):
        if s > 0:
            out = ndimage.gaussian_filter1d(out, s, axis=ax, mode="nearest", truncate=4.0)
    return out


@pytest.fixture
def data():
    return np.random.default_rng(7).integers(-300, 300, size=(23, 17, 9, 2)).astype(np.int16)


@pytest.mark.parametrize("sigma", [(1.0, 0.0, 0.75), (0.0, 2.5, 0.0), (3.0, 1.5, 0.25)])
@pytest.mark.parametrize("region", [
    (slice(0, 5), slice(0, 17), slice(0, 9)),  # at the low edges, whole along y and z
    (slice(18, 23), slice(6, 11), slice(7, 9)),  # at the high edges
    (slice(9, 10), slice(8, 9), slice(4, 5), slice(1, 2)),  # one voxel of the second volume
    (slice(2, 21, 4), slice(None), slice(1, None, 3)),  # strided
])
def test_a_region_equals_the_same_region_of_the_whole_array_filter(data, sigma, region):
    expected = whole_filter(data, sigma)[region]
    got = Smoothed(data, sigma)[region]
    assert got.dtype == np.float64 and got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-9)


def test_radius_is_scipys_kernel_half_width():
    for sigma in (0.25, 0.5, 1.0, 1.1, 2.5, 3.0):
        impulse = np.zeros(81)
        impulse[40] = 1.0
        reach = np.flatnonzero(ndimage.gaussian_filter1d(impulse, sigma, mode="nearest", truncate=4.0))
        assert radius(sigma) == 40 - reach[0] == reach[-1] - 40, sigma
    assert radius(0.0) == 0


def test_only_downsampled_axes_are_smoothed():
    assert sigmas([3.0, 1.0, 0.4]) == (1.0, 0.0, 0.0)


def test_it_pickles_as_its_source_and_sigmas(data):
    sm = pickle.loads(pickle.dumps(Smoothed(data, (1.0, 0.0, 0.5))))
    assert sm.shape == data.shape and sm.sigma == (1.0, 0.0, 0.5)
    np.testing.assert_array_equal(sm[2:6, 3:5, 0:9], Smoothed(data, (1.0, 0.0, 0.5))[2:6, 3:5, 0:9])
