"""permuted: reference grids that permute and flip the input's axes, on the separable engine,
against the whole-array scipy.ndimage.affine_transform (tests/helpers.py ``whole``)."""

import dask.array as da
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bigresample import labels as label_methods
from bigresample import resampling
from bigresample.engine import Resampler, Workspace
from bigresample.geometry import GeometryError, make_grid, reference_grid
from bigresample.lazy import resample_with
from bigresample.permuted import PermutedResampler
from bigresample.transform import AffineResampler

from .helpers import (assert_matches_reference, blockwise, interpolated_reference, permuted_grid, planned,
                      whole, write_nifti)

MODES = ("nearest", "constant", "grid-constant", "reflect", "mirror", "wrap", "grid-wrap", "itk")
#: output axis j along input axis AXES[j], flipped where FLIPS[j]: a P-I-L reference onto an R-A-S input
AXES, FLIPS = (1, 2, 0), (True, True, True)


def _data(shape=(23, 19, 17), seed=0, dtype=np.float32):
    return np.random.default_rng(seed).normal(size=shape).astype(dtype) * 100


def test_a_signed_permutation_is_found_and_laid_out_on_the_input_axes():
    g = permuted_grid((23, 19, 17), AXES, (True, False, True), (0.7, 1.3, 2.0), (25, 20, 30))
    assert g.permutation() == AXES and g.separable() is None
    inner = g.on_input_axes()
    # input axis 0 is sampled by output axis 2 (30 samples, flipped), 1 by 0 (25, flipped), 2 by 1 (20)
    assert inner.in_shape == (23, 19, 17) and inner.out_shape == (30, 25, 20)
    assert [a.step for a in inner.axes] == [-2.0, -0.7, 1.3]
    for j, i in enumerate(AXES):  # each input axis' coordinates are the reference's own
        o = np.arange(g.out_shape[j], dtype=np.float64)
        np.testing.assert_array_equal(inner.axes[i].coordinates(), o * g.matrix[i, j] + g.offset[i])
    assert isinstance(resampling.interpolating(g, 1, "nearest", 0.0), PermutedResampler)
    aligned = permuted_grid((23, 19, 17), (0, 1, 2), (True, False, False), 0.5, (9, 9, 9))
    assert aligned.permutation() is None and isinstance(resampling.interpolating(aligned, 1, "nearest", 0.0),
                                                        Resampler)
    tilted = reference_grid((23, 19, 17), np.eye(4), (9, 9, 9),
                            np.array([[0, 1, 0.01, 0], [1, 0, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1.0]]))
    assert tilted.permutation() is None and isinstance(resampling.interpolating(tilted, 1, "nearest", 0.0),
                                                       AffineResampler)
    with pytest.raises(GeometryError, match="does not permute"):
        aligned.on_input_axes()
    with pytest.raises(ValueError, match="permutes the input's axes"):
        PermutedResampler(aligned, 1)


@pytest.mark.parametrize("order", range(6))
@pytest.mark.parametrize("mode", MODES)
def test_every_order_and_mode_equals_the_whole_array_call_with_blocks_cut_on_every_axis(order, mode):
    data = _data((15, 13, 11))
    g = permuted_grid(data.shape, AXES, FLIPS, (0.7, 1.3, 0.9), (16, 13, 19), shift=(1.5, -2.0, 0.5))
    r = resampling.interpolating(g, order, mode, -7.5)
    got = blockwise(r, data, (7, 6, 11), ws=Workspace())
    expected = whole(data, g, order, mode, -7.5)
    assert_matches_reference(got, expected, data, order)
    if order == 0:  # the very voxels the whole-array call picks
        np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("dtype", [np.int16, np.uint8, np.float64])
def test_other_types_and_extra_axes_carried_through(dtype):
    data = (_data((13, 11, 9, 2), seed=3) % 120).astype(dtype)
    g = permuted_grid(data.shape[:3], (2, 0, 1), (False, True, False), (0.6, 1.0, 1.7), (17, 14, 8))
    r = resampling.interpolating(g, 3, "nearest", 0.0)
    got = blockwise(r, data, (5, 4, 3), ws=Workspace())
    assert_matches_reference(got, whole(data, g, 3, "nearest"), data, 3)


@settings(max_examples=30, deadline=None)
@given(axes=st.permutations([0, 1, 2]), flips=st.tuples(*[st.booleans()] * 3),
       steps=st.tuples(*[st.sampled_from([0.5, 0.75, 1.0, 1.3, 2.0, 2.5])] * 3),
       out_shape=st.tuples(*[st.integers(1, 14)] * 3), block=st.tuples(*[st.integers(1, 9)] * 3),
       order=st.integers(0, 5), mode=st.sampled_from(MODES), shift=st.tuples(*[st.floats(-6, 6)] * 3))
def test_random_permutations_flips_and_spacings(axes, flips, steps, out_shape, block, order, mode, shift):
    data = _data((12, 10, 9), seed=7)
    g = permuted_grid(data.shape, tuple(axes), flips, steps, out_shape, shift)
    r = resampling.interpolating(g, order, mode, 3.0)
    assert isinstance(r, Resampler if tuple(axes) == (0, 1, 2) else PermutedResampler)
    got = blockwise(r, data, block, ws=Workspace())
    expected = whole(data, g, order, mode, 3.0)
    assert_matches_reference(got, expected, data, order)
    if order == 0:
        np.testing.assert_array_equal(got, expected)


def test_windows_reaching_and_the_lazy_path():
    """``input_region`` holds every voxel a block's output depends on (a volume that is NaN
    elsewhere gives the same block); ``reaching`` finds the samples of an input box; the dask
    path (``resample_with``) equals the whole-array call."""
    data = _data((30, 26, 22), seed=1).astype(np.float64)
    g = permuted_grid(data.shape, AXES, FLIPS, (0.8, 1.5, 1.2), (28, 14, 20), shift=(0.5, 1.0, -1.0))
    r = resampling.interpolating(g, 1, "nearest", 0.0)
    expected = whole(data, g, 1, "nearest")
    region = (slice(3, 17), slice(2, 9), slice(5, 15))
    window = r.input_region(region)
    masked = np.full_like(data, np.nan)
    masked[window] = data[window]
    np.testing.assert_array_equal(r.compute(masked, region), r.compute(data, region))
    assert_matches_reference(r.compute(data, region), expected[region], data, 1)
    # reaching: the outputs whose sample lies within the input box (per input axis)
    lo, hi = (10.0, 5.0, 4.0), (20.0, 12.0, 9.0)
    reach = r.reaching(region, lo, hi)
    coords = [np.arange(n) * 1.0 for n in g.out_shape]
    for j, (s, i) in enumerate(zip(reach, AXES)):
        x = coords[j] * g.matrix[i, j] + g.offset[i]
        inside = np.flatnonzero((x >= lo[i]) & (x <= hi[i]))
        inside = inside[(inside >= region[j].start) & (inside < region[j].stop)]
        assert (s.start, s.stop) == (inside[0], inside[-1] + 1)
    assert r.reaching(region, (100.0,) * 3, (200.0,) * 3) is None
    lazy = resample_with(r, da.from_array(data, chunks=(11, 9, 7)), chunks=(9, 5, 6)).compute()
    assert_matches_reference(lazy, expected, data, 1)


@pytest.mark.parametrize("method", ["linear", "cubic"])
def test_label_methods_on_a_permuted_grid(method):
    labels = (np.random.default_rng(2).integers(0, 4, size=(14, 12, 10)) * 3).astype(np.int16)
    g = permuted_grid(labels.shape, AXES, FLIPS, (0.7, 1.2, 0.9), (13, 11, 16))
    got = blockwise(label_methods.make(method, g, "nearest", 0), labels, (5, 4, 6), ws=Workspace())
    expected, gap = interpolated_reference(labels, g, label_methods.ORDERS[method], "nearest", 0)
    differ = got != expected
    assert not differ.any() or gap[differ].max() <= 1e-9


def test_a_run_onto_a_permuted_reference_and_a_spacing_change_on_a_permuted_input(tmp_path):
    """Through the planner and the threads: a P-I-L reference goes to the separable engine
    (equal to the whole-array call); a spacing change on an input whose affine permutes its axes
    was separable already (its grid is per stored axis) and stays so."""
    data = _data((40, 36, 30), seed=4)
    a_in = np.diag([0.5, 0.5, 0.5, 1.0])
    src = tmp_path / "in.nii"
    write_nifti(src, data, a_in)
    g = permuted_grid(data.shape, AXES, FLIPS, 1.6, (20, 16, 22))
    ref = tmp_path / "ref.nii"
    a_ref = a_in @ g.homogeneous
    write_nifti(ref, np.zeros(g.out_shape, np.uint8), a_ref)
    job = planned(src, tmp_path / "out.nii", reference=str(ref), order=3, mode="nearest", workers=2,
                  chunks=(7, 5, 9))
    assert isinstance(job.stages[0].resampler, PermutedResampler)
    from bigresample.pipeline import resample
    resample(src, tmp_path / "out.nii", reference=str(ref), order=3, mode="nearest", workers=2, chunks=(7, 5, 9))
    import nibabel as nib
    out = nib.load(tmp_path / "out.nii")
    grid = reference_grid(data.shape, nib.load(src).affine, g.out_shape, nib.load(ref).affine)
    assert_matches_reference(np.asanyarray(out.dataobj), whole(data, grid, 3, "nearest"), data, 3)
    # an input stored P-I-L (its affine permutes and flips the axes), --spacing
    a_pil = np.array([[0, 0, -0.5, 10], [-0.5, 0, 0, 8], [0, -0.5, 0, 6], [0, 0, 0, 1.0]])
    pil = tmp_path / "pil.nii"
    write_nifti(pil, data, a_pil)
    job = planned(pil, tmp_path / "s.nii", spacing=(0.8, 1.1, 0.65))
    assert isinstance(job.stages[0].resampler, Resampler)
    assert job.grid.out_shape == make_grid(data.shape, (0.5,) * 3, (0.8, 1.1, 0.65)).out_shape
