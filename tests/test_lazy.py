"""The array-level API is lazy and its graph carries readers, not voxels."""

import pickle

import dask
import dask.array as da
from dask.core import flatten
from dask.optimization import cull
import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from bigresample import make_grid, resample_array
from bigresample.engine import Resampler

from .helpers import assert_matches_reference, scipy_reference


class CountingReader:
    """A virtual array-like volume: values from a formula, every read recorded."""

    def __init__(self, shape, dtype=np.float32):
        self.shape, self.dtype, self.ndim = tuple(shape), np.dtype(dtype), len(shape)
        self.reads = []

    def __getitem__(self, slices):
        self.reads.append(tuple(slices))
        grids = np.meshgrid(*[np.arange(*s.indices(n)) for s, n in zip(slices, self.shape)], indexing="ij", sparse=True)
        return (np.sin(grids[0] * 0.01) + np.cos(grids[1] * 0.02) + grids[2] * 1e-4).astype(self.dtype)


def test_nothing_is_computed_until_the_result_is():
    src = CountingReader((40, 30, 20))
    y = resample_array(src, (1, 1, 1), (0.5, 2, 1.5), order=3, chunks=(16, 16, 16))
    z = (y + 1).sum()
    assert src.reads == []
    z.compute(scheduler="sync")
    assert src.reads


@pytest.mark.slow
def test_a_10000_cubed_virtual_input_computes_one_block_reading_only_its_region():
    src = CountingReader((10000, 10000, 10000))
    y = resample_array(src, (0.1, 0.1, 0.1), (0.25, 0.25, 0.1), order=3, chunks=(128, 128, 128))
    assert y.shape == (4000, 4000, 10000)
    block = y.blocks[10, 5, 20].compute(scheduler="sync")
    assert block.shape == (128, 128, 128)
    assert len(src.reads) == 1
    (xs, ys, zs) = src.reads[0]
    halo = 17
    # output block 10 along x covers samples 1280..1407, about input 3200..3520
    assert xs.start >= 3200 - 2 - halo and xs.stop <= 3520 + 3 + halo
    assert zs.start >= 2560 - halo and zs.stop <= 2688 + halo
    # and the values are those of the whole-array computation on that neighbourhood
    g = make_grid((10000,) * 3, (0.1,) * 3, (0.25, 0.25, 0.1), "center")
    region = (slice(1280, 1408), slice(640, 768), slice(2560, 2688))
    local = Resampler(g, 3, "nearest").compute(src, region)
    np.testing.assert_array_equal(block, local)
    # independently: scipy on a window 40 voxels wider than the corner it samples, the grid from the docs'
    # formula x(o) = (o - (m-1)/2) * r + (n-1)/2 (the spline prefilter forgets the window's edges by 0.27**40)
    for corner in (0, 96):
        o0 = np.array([1280, 640, 2560]) + corner
        r = np.array([2.5, 2.5, 1.0])
        x0 = (o0 - (np.array([4000, 4000, 10000]) - 1) / 2) * r + (10000 - 1) / 2
        lo = np.floor(x0).astype(int) - 40
        hi = np.ceil(x0 + 31 * r).astype(int) + 41
        window = src[tuple(slice(a, b) for a, b in zip(lo, hi))].astype(np.float64)
        expected = ndimage.affine_transform(window, r, offset=x0 - lo, output_shape=(32, 32, 32), order=3,
                                            mode="nearest", output=np.float32)
        got = block[corner:corner + 32, corner:corner + 32, corner:corner + 32]
        assert np.abs(got - expected).max() <= 1e-5 * 5.0  # the formula's range: sin + cos + z/1e4


def _nifti(tmp_path, shape, name):
    data = np.random.default_rng(0).random(shape).astype(np.float32)
    path = tmp_path / name
    nib.save(nib.Nifti1Image(data, np.diag([0.1, 0.1, 0.1, 1])), path)
    return nib.load(path), data


def test_the_graph_does_not_carry_a_buffer_for_every_block(tmp_path):
    sizes = []
    for shape in [(32, 32, 32), (64, 64, 64)]:
        img, _ = _nifti(tmp_path, shape, f"v{shape[0]}.nii")
        y = resample_array(img.dataobj, (0.1,) * 3, (0.1, 0.1, 0.15), chunks=(16, 16, 16))
        graph = dict(y.__dask_graph__())
        per_block = len(pickle.dumps(graph)) / y.npartitions
        sizes.append(per_block)
        voxel_bytes = np.prod(shape) * 4
        assert len(pickle.dumps(graph)) < voxel_bytes / 20
    assert sizes[1] <= sizes[0] * 1.5  # bounded, independent of the volume


def test_a_file_backed_source_equals_the_in_memory_result(tmp_path):
    img, data = _nifti(tmp_path, (20, 18, 16), "small.nii")
    got = resample_array(img.dataobj, (0.1,) * 3, (0.07, 0.13, 0.1), order=3, chunks=(6, 5, 7)).compute()
    g = make_grid(data.shape, (0.1,) * 3, (0.07, 0.13, 0.1))
    assert_matches_reference(got, scipy_reference(data, g, 3, "nearest"), data, 3)


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["nearest", "wrap", "grid-wrap", "reflect"])
def test_a_dask_input_equals_the_numpy_input_and_reads_only_overlapping_chunks(mode):
    data = np.random.default_rng(1).random((90, 20, 75))
    x = da.from_array(data, chunks=(15, 6, 15))
    y = resample_array(x, (1, 1, 1), (0.8, 1.6, 1.2), order=3, mode=mode, chunks=(9, 4, 8))
    g = make_grid(data.shape, (1, 1, 1), (0.8, 1.6, 1.2))
    assert_matches_reference(y.compute(), scipy_reference(data, g, 3, mode), data, 3)
    # one output block depends on a few input chunks, not on all of them
    one = y.blocks[6, 1, 4]  # a block in the middle of x and z
    needed, _ = cull(dict(one.__dask_graph__()), list(flatten(one.__dask_keys__())))
    deps = [k for k in needed if isinstance(k, tuple) and k[0] == x.name]
    assert 0 < len(deps) < x.npartitions


def test_threads_and_the_synchronous_scheduler_agree():
    data = np.random.default_rng(2).random((24, 24, 24)).astype(np.float32)
    y = resample_array(data, (1, 1, 1), (0.7, 1.1, 1.9), order=5, chunks=8)
    with dask.config.set(scheduler="threads", num_workers=2):
        a = y.compute()
    b = y.compute(scheduler="sync")
    np.testing.assert_array_equal(a, b)


def test_too_few_dimensions_for_the_spacing_is_refused():
    with pytest.raises(ValueError, match="2 dimensions but 3 spacings"):
        resample_array(np.zeros((4, 4)), (1, 1, 1), (2, 2, 2))
