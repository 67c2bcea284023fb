"""``--compare``'s statistics on their own (bigresample/stats.py): slab by slab, equal to numpy on the
whole array in scaled units; the run through ``resample(compare=True)`` is checked in test_claims.py."""

from types import SimpleNamespace

import numpy as np
import pytest

from bigresample.stats import compare_stats


def whole(values):
    v = np.asarray(values, dtype=np.float64)
    return {"min": v.min(), "max": v.max(), "mean": v.mean(), "std": v.std()}


def stats(source, output, slab, slope=1.0, inter=0.0):
    vol = SimpleNamespace(source=source, slope=slope, inter=inter)
    return compare_stats(vol, output, SimpleNamespace(block=(4, 4, slab)), workers=1)


@pytest.mark.parametrize("slab", [1, 3, 7, 50])  # one plane, a slab not dividing the depth, whole
def test_slab_by_slab_equals_numpy_on_the_whole_arrays(slab):
    rng = np.random.default_rng(5)
    source = rng.integers(-1000, 1000, size=(6, 5, 7, 2)).astype(np.int16)  # with a second volume
    output = rng.random((4, 3, 9)).astype(np.float32)
    got = stats(source, output, slab, slope=-0.5, inter=10.0)
    assert got["input"] == pytest.approx(whole(source * -0.5 + 10.0), rel=1e-12, abs=1e-9)
    assert got["output"] == pytest.approx(whole(output), rel=1e-12, abs=1e-12)


def test_a_large_offset_keeps_the_standard_deviation():
    """Moments around each slab's mean: a spread of 1 on top of 1e9 survives float64."""
    source = 1e9 + np.random.default_rng(6).standard_normal((8, 8, 40))
    got = stats(source, np.zeros((2, 2, 2)), 3)
    assert got["input"]["std"] == pytest.approx(np.std(source - 1e9), rel=1e-6)
    assert got["input"]["mean"] == pytest.approx(np.mean(source), rel=1e-15)
