"""ARCHITECTURE.md's "Where to add", held true: each extension is a small class defined here, outside
``bigresample/``, registered once and run end to end through ``bigresample.resample``."""

from __future__ import annotations

import json
import os

import numpy as np
import nibabel as nib
import pytest
from numpy.testing import assert_array_equal
from scipy import ndimage

from bigresample import resample
from bigresample import executors, inputs, outputs, resampling, safefs, transform_files
from bigresample.volume import array_volume
from bigresample.engine import Resampler
from bigresample.sinks import Sink
from .helpers import make_volume


# --- a toy output format: a raw .npy (x fastest, as a NIfTI), resumable ------------------------------------
class NpySink(Sink):
    """Blocks written at their offsets into a partial .npy made to its full size at once (resumable: the
    journal says which blocks are there); renamed onto the output when finished."""

    def begin(self, stage, done):
        shape, dtype = tuple(int(n) for n in self.header.get_data_shape()), self.header.get_data_dtype()
        if not (done and self.partial.exists()):
            done = {}
            os.close(safefs.create_file(self.partial))  # exclusive: never through a planted link
            np.lib.format.open_memmap(self.partial, "w+", dtype, shape, fortran_order=True).flush()
        self.array = np.load(self.partial, mmap_mode="r+")

        def write(region, block):  # the block comes in file order (axes reversed)
            self.array[region] = block.T
        return write, done

    def end(self, ok):
        if ok:
            self.array.flush()
        self.array = None

    def finish(self, progress):
        self.partial.replace(self.output)

    def written(self):
        return np.load(self.output, mmap_mode="r"), self.header.get_best_affine(), np.array(self.header.get_zooms()[:3])


class NpyOutput(outputs.OutputFormat):
    name, suffixes, nifti_header = "NumPy array", (".npy",), False

    def make_sink(self, request, vol, stages, header, out_dtype, zarr_store, executor, record):
        return NpySink(request.output, header, request.kind)


@pytest.fixture
def npy_output():
    fmt = NpyOutput()
    outputs.register(fmt)
    yield fmt
    outputs.OUTPUTS.remove(fmt)


def test_a_toy_output_format_writes_the_same_values_as_a_nifti(tmp_path, npy_output):
    src = tmp_path / "in.nii"
    make_volume(src, shape=(30, 20, 12))
    resample(src, tmp_path / "out.nii", spacing=(0.13, 0.07, 0.15), workers=2, chunks=(30, 20, 3))
    resample(src, tmp_path / "out.npy", spacing=(0.13, 0.07, 0.15), workers=2, chunks=(30, 20, 3))
    assert_array_equal(np.load(tmp_path / "out.npy"), nib.load(tmp_path / "out.nii").get_fdata(dtype=np.float32))
    assert not list(tmp_path.glob(".*"))  # no partial output, no journal left


def test_a_toy_output_format_resumes_after_an_interruption(tmp_path, npy_output, monkeypatch):
    src = tmp_path / "in.nii"
    make_volume(src, shape=(30, 20, 12))
    calls = []
    real = Resampler.compute_into

    def stop_at_third(self, *args):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(self, *args)
    monkeypatch.setattr(Resampler, "compute_into", stop_at_third)
    with pytest.raises(KeyboardInterrupt):
        resample(src, tmp_path / "out.npy", spacing=(0.2, 0.2, 0.2), workers=1, chunks=(15, 5, 2))
    monkeypatch.setattr(Resampler, "compute_into", real)
    counted = []
    monkeypatch.setattr(Resampler, "compute_into", lambda self, *a: counted.append(1) or real(self, *a))
    resample(src, tmp_path / "out.npy", spacing=(0.2, 0.2, 0.2), workers=1, chunks=(15, 5, 2))
    monkeypatch.setattr(Resampler, "compute_into", real)
    resample(src, tmp_path / "whole.nii", spacing=(0.2, 0.2, 0.2), workers=1)
    assert_array_equal(np.load(tmp_path / "out.npy"), nib.load(tmp_path / "whole.nii").get_fdata(dtype=np.float32))
    assert len(counted) == 4  # of 6 blocks: the two finished ones were not computed again


# --- a toy input format: a .npy volume (x, y, z) with its spacing in a sidecar "NAME.npy.json" -----------------
class NpyInput(inputs.InputFormat):
    name = "NumPy volume"

    def recognises(self, path, options):
        return str(path).endswith(".npy")

    def open(self, path, *, role, options):
        spacing = json.loads(path.with_name(path.name + ".json").read_text())["spacing_mm"]
        data = np.load(path, mmap_mode="r")  # read region by region, never whole
        return array_volume(path, data, np.diag(list(spacing) + [1.0]), units="mm", format_name="NumPy volume")


@pytest.mark.parametrize("order", [0, 1, 3])
def test_a_toy_input_format_resamples_as_scipy_does_on_the_whole_array(tmp_path, order):
    fmt = NpyInput()
    inputs.register(fmt)
    try:
        data = np.random.default_rng(1).random((20, 16, 12)).astype(np.float32)
        np.save(tmp_path / "in.npy", data)
        (tmp_path / "in.npy.json").write_text(json.dumps({"spacing_mm": [0.1, 0.2, 0.3]}))
        result = resample(tmp_path / "in.npy", tmp_path / "out.nii", spacing=(0.15, 0.15, 0.15), order=order,
                          grid="origin", chunks=(7, 9, 5))
    finally:
        inputs.INPUTS.remove(fmt)
    out = nib.load(tmp_path / "out.nii")
    zoom = np.array([0.1, 0.2, 0.3]) / 0.15
    m = tuple(int(round(n * z)) for n, z in zip(data.shape, zoom))
    expected = ndimage.affine_transform(data, 1 / zoom, output_shape=m, order=order, mode="nearest")
    np.testing.assert_allclose(out.get_fdata(dtype=np.float32), expected, atol=1e-5 if order > 1 else 1e-6, rtol=0)
    assert result.in_shape == (20, 16, 12) and np.allclose(out.header.get_zooms(), (0.15, 0.15, 0.15))


# --- a toy resampler: nearest neighbour after shifting the input by whole voxels ----------------------------
class Shifted:
    """Output voxel o takes input voxel o + SHIFT (clipped to the volume): order 0 with a shift."""
    SHIFT = (2, -1, 1)
    separable, min_blocks_per_worker, target_block_bytes, order = False, 1, 2**20, 0

    def __init__(self, grid):
        self.grid = grid

    def input_region(self, region):
        return tuple(slice(min(max(s.start + d, 0), n - 1), min(max(s.stop + d, 1), n))
                     for s, d, n in zip(region, self.SHIFT, self.grid.in_shape))

    def window_shape(self, block):
        return tuple(block[:3])

    def planning_work(self, block):
        return int(np.prod(block[:3]))

    def block_bytes(self, block, in_itemsize, out_itemsize):
        return int(np.prod(block)) * (in_itemsize + out_itemsize)

    def compute_into(self, source, region, dtype, ws):
        idx = np.ix_(*[np.clip(np.arange(s.start, s.stop) + d, 0, n - 1)
                       for s, d, n in zip(region[:3], self.SHIFT, self.grid.in_shape)])
        return np.ascontiguousarray(np.asarray(source[tuple(slice(None) for _ in region)])[idx].T.astype(dtype))


def test_a_toy_resampler_runs_end_to_end_and_is_journaled_by_name(tmp_path):
    resampling.register("shifted", lambda grid, order, mode, cval: Shifted(grid))
    try:
        src = tmp_path / "in.nii"
        make_volume(src, shape=(16, 12, 10))
        resample(src, tmp_path / "out.nii", shape=(16, 12, 10), resampler="shifted", workers=2, chunks=(8, 6, 5))
    finally:
        del resampling.RESAMPLERS["shifted"]
    data = nib.load(src).get_fdata(dtype=np.float32)
    expected = ndimage.shift(data, [-d for d in Shifted.SHIFT], order=0, mode="nearest")
    assert_array_equal(nib.load(tmp_path / "out.nii").get_fdata(dtype=np.float32), expected)


# --- a toy executor: every block in this thread, in reverse order --------------------------------------------
class Backwards:
    """Serial, last block first: commits are not in block order, so the sinks must not rely on it."""
    remote, ordered_commits = False, False
    ran = 0

    def __init__(self, request):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def describe(self):
        return None

    def check_visible(self, paths, options=None):
        pass

    def run(self, task, todo, commit):
        for i in sorted(todo, reverse=True):
            Backwards.ran += 1
            commit(i, task(i))

    def after_running(self, fn):
        fn()


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz", ".zarr"])
def test_a_toy_executor_runs_every_output_format(tmp_path, suffix):
    executors.register("backwards", Backwards)
    try:
        src = tmp_path / "in.nii"
        make_volume(src, shape=(20, 16, 12))
        Backwards.ran = 0
        resample(src, tmp_path / f"out{suffix}", spacing=(0.2, 0.15, 0.3), executor="backwards", chunks=(5, 6, 2))
        resample(src, tmp_path / "threads.nii", spacing=(0.2, 0.15, 0.3), chunks=(5, 6, 2))
    finally:
        del executors.EXECUTORS["backwards"]
    assert Backwards.ran == 8
    want = nib.load(tmp_path / "threads.nii").get_fdata(dtype=np.float32)
    if suffix == ".zarr":
        import zarr
        got = np.asarray(zarr.open_group(str(tmp_path / "out.zarr"), mode="r")["0"]).T
    else:
        got = nib.load(tmp_path / f"out{suffix}").get_fdata(dtype=np.float32)
    assert_array_equal(got, want)


# --- a toy transform-file format: a JSON shift in mm ------------------------------------------------------------
class ShiftFile(transform_files.TransformFormat):
    """``{"shift_mm": [x, y, z]}`` in a ``.shift`` file: each output point samples the input that far away."""

    name = "JSON shift"

    def recognises(self, path, head):
        return path.suffix == ".shift"

    def read(self, path, *, moving, reference):
        from bigresample.registration import AffineMap

        m = np.eye(4)
        m[:3, 3] = json.loads(path.read_text())["shift_mm"]
        return AffineMap(m, f"{path.name} ({self.name})")


def test_a_toy_transform_format_is_applied_as_scipy_shifts_the_whole_array(tmp_path):
    fmt = ShiftFile()
    transform_files.register(fmt)
    try:
        data = np.random.default_rng(2).random((20, 16, 12)).astype(np.float32)
        img = nib.Nifti1Image(data, np.diag([0.5, 0.5, 0.5, 1.0]))
        nib.save(img, tmp_path / "in.nii")
        (tmp_path / "t.shift").write_text(json.dumps({"shift_mm": [0.75, -0.25, 1.0]}))
        resample(tmp_path / "in.nii", tmp_path / "out.nii", reference=tmp_path / "in.nii",
                 transforms=[tmp_path / "t.shift"], order=1, mode="nearest", chunks=(7, 9, 5))
    finally:
        transform_files._REGISTERED.remove(fmt)
    expected = ndimage.affine_transform(data, np.eye(3), offset=(1.5, -0.5, 2.0), order=1, mode="nearest")
    np.testing.assert_allclose(nib.load(tmp_path / "out.nii").get_fdata(dtype=np.float32), expected, atol=1e-6, rtol=0)
