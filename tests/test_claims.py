"""Claims of the README and docs/ that had no test: each checked against scipy, numpy or nibabel."""

import gzip

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from bigresample import make_grid, resample
from bigresample import plan as plan_module
from bigresample.cli import main
from bigresample.geometry import voxel_spacing
from bigresample.job import plan_job
from bigresample.request import Request

from .helpers import assert_matches_reference, make_volume, ome_array, scipy_reference, write_ome


def _read(path):
    if str(path).endswith(".zarr"):
        pytest.importorskip("ome_zarr")
        return ome_array(path)[0]
    return np.asanyarray(nib.load(path).dataobj)


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz", ".zarr"])
@pytest.mark.parametrize("in_dtype, out_dtype", [(np.float32, "uint8"), (np.int16, "float32"), (np.float32, "int16")])
def test_dtype_on_every_file_output(tmp_path, suffix, in_dtype, out_dtype):
    """README/docs: --dtype T gives the output that type, integers rounded and saturated like scipy."""
    src = tmp_path / "in.nii"
    data, affine = make_volume(src, shape=(18, 14, 10), dtype=in_dtype)
    if out_dtype == "uint8":
        data = (data / 3.0).astype(in_dtype)  # 0-333: saturates above 255
        nib.save(nib.Nifti1Image(data, affine), src)
    out = tmp_path / f"out{suffix}"
    assert main([str(src), str(out), "--spacing", "0.13", "0.07", "0.1", "--order", "3", "--dtype", out_dtype,
                 "--chunks", "7", "9", "4", "--quiet"]) == 0
    got = _read(out)
    assert got.dtype == np.dtype(out_dtype)
    g = make_grid(data.shape, voxel_spacing(nib.load(src).affine), (0.13, 0.07, 0.1), "center")
    assert_matches_reference(got, scipy_reference(data, g, 3, "nearest", dtype=out_dtype), data, 3)
    if out_dtype == "uint8":
        assert got.max() == 255  # saturated, not wrapped


def test_an_mgz_input(tmp_path):
    """docs/files.md: anything nibabel opens, .mgz included (nibabel's MGHImage)."""
    data = (np.random.default_rng(2).random((20, 16, 12)) * 500).astype(np.float32)
    affine = np.array([[-0.5, 0, 0, 10.0], [0, 0, 0.6, -4.0], [0, -0.7, 0, 6.0], [0, 0, 0, 1]])
    src = tmp_path / "in.mgz"
    nib.save(nib.MGHImage(data, affine), src)
    out = tmp_path / "out.nii"
    r = resample(src, out, spacing=(0.4, 0.9, 0.5), order=1, chunks=(7, 5, 4))
    g = make_grid(data.shape, (0.5, 0.7, 0.6), (0.4, 0.9, 0.5), "center")  # the columns' lengths
    img = nib.load(out)
    assert_matches_reference(np.asanyarray(img.dataobj), scipy_reference(data, g, 1, "nearest"), data, 1)
    # the header tells where each sample came from: A_out @ o == A_in @ x(o), x(0) from the docs' formula
    x0 = [(0 - (m - 1) / 2) * t / s + (n - 1) / 2 for n, m, s, t in
          zip(data.shape, img.shape, (0.5, 0.7, 0.6), (0.4, 0.9, 0.5))]
    np.testing.assert_allclose(img.affine[:3, 3], nib.affines.apply_affine(affine, x0), atol=1e-5)
    np.testing.assert_allclose(voxel_spacing(img.affine), (0.4, 0.9, 0.5), rtol=1e-6)
    assert r.in_shape == data.shape


def test_tmp_dir_holds_the_decompressed_input_during_the_run_and_nothing_after(tmp_path):
    """docs/usage.md: --tmp-dir is where a .nii.gz input the memory budget cannot hold is decompressed (a
    budget of 100 MiB holds the interpreter's share alone); the copy is removed afterwards."""
    src = tmp_path / "in.nii.gz"
    data, _ = make_volume(src, shape=(20, 18, 16))
    size = len(gzip.decompress(src.read_bytes()))
    scratch, out_dir = tmp_path / "scratch", tmp_path / "out"
    scratch.mkdir()
    out_dir.mkdir()
    seen = []

    def log(line):  # the report's lines, written while the run goes on
        seen.append(({p.name: p.stat().st_size for p in scratch.iterdir()}, {p.name for p in out_dir.iterdir()}))

    resample(src, out_dir / "out.nii", spacing=(None, None, 0.2), tmp_dir=scratch, log=log, chunks=(20, 18, 2),
             memory_limit="100MiB")
    copies = {name for files, _ in seen for name, n in files.items() if n == size}
    assert copies, f"no decompressed copy ({size} bytes) was ever in --tmp-dir: {seen}"
    beside = {name for _, names in seen for name in names}
    assert beside <= {"out.nii", ".out.bigresample-partial.nii", ".out.nii.bigresample-journal"}, beside
    assert list(scratch.iterdir()) == []
    assert sorted(p.name for p in out_dir.iterdir()) == ["out.nii"]
    stored = voxel_spacing(nib.load(src).affine)
    g = make_grid(data.shape, stored, (stored[0], stored[1], 0.2), "center")
    assert_matches_reference(_read(out_dir / "out.nii"), scipy_reference(data, g, 1, "nearest"), data, 1)


def _mem_available():
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    pytest.skip("no MemAvailable in /proc/meminfo")


def test_the_default_budget_is_half_the_available_memory(tmp_path, monkeypatch, capsys):
    """docs/usage.md: --memory-limit defaults to half the memory available."""
    available = _mem_available()
    assert abs(plan_module.default_memory_limit() - max(256 * 2**20, available // 2)) < 0.05 * available
    monkeypatch.setattr(plan_module, "available_memory", lambda: 3 * 2**30)
    src = tmp_path / "in.nii"
    make_volume(src)
    job = plan_job(Request.make(src, tmp_path / "o.nii", spacing=(None, None, 0.2)))
    job.volume.close()
    assert job.request.memory_limit == 3 * 2**30 // 2
    assert main([str(src), str(tmp_path / "o.nii"), "--z-spacing", "0.2", "--no-progress"]) == 0
    assert "Memory budget: 1.5 GiB" in capsys.readouterr().out
    monkeypatch.setattr(plan_module, "available_memory", lambda: 100 * 2**20)  # the floor: 256 MiB
    assert plan_module.default_memory_limit() == 256 * 2**20


@pytest.mark.parametrize("grid", ["center", "zoom"])
def test_levels_with_antialias_each_level_is_the_smoothed_input_resampled(tmp_path, grid):
    """docs/files.md: level k is the input resampled to 2^k times the spacing, with the same --antialias
    (docs/grids-and-exactness.md: gaussian_filter1d, sigma (r-1)/2, mode nearest, truncate 4, float64)."""
    pytest.importorskip("ome_zarr")
    src = tmp_path / "in.nii"
    data, _ = make_volume(src, shape=(40, 36, 30))
    spacing = np.array([0.1, 0.1, 0.1], np.float32).astype(np.float64)  # as stored
    out = tmp_path / "out.zarr"
    assert main([str(src), str(out), "--spacing", "0.1", "0.1", "0.15", "--order", "3", "--levels", "3",
                 "--antialias", "--grid", grid, "--chunks", "9", "11", "4", "--quiet"]) == 0
    for k in range(3):
        target = np.array([spacing[0] * 2**k, spacing[1] * 2**k, 0.15 * 2**k])
        if k > 0:  # the pyramid doubles level 0's stored spacing
            target = np.array([0.1, 0.1, 0.15], np.float32).astype(np.float64) * 2**k
        smooth = data.astype(np.float64)
        for axis, r in enumerate(target / spacing):
            if r > 1:
                smooth = ndimage.gaussian_filter1d(smooth, (r - 1) / 2, axis=axis, mode="nearest", truncate=4.0)
        g = make_grid(data.shape, spacing, target, grid)
        expected = scipy_reference(smooth, g, 3, "nearest", dtype=np.float32)
        got, _ = ome_array(out, k)
        assert_matches_reference(got, expected, data, 3)
        if k == 2:  # the smoothing is real: without it the level differs
            plain = scipy_reference(data, g, 3, "nearest")
            assert np.abs(got - plain).max() > 1.0


@pytest.mark.parametrize("unit, scale, nifti_unit, zooms", [
    ("nanometer", (200.0, 100.0, 100.0), "micron", (0.1, 0.1, 0.2)),
    ("angstrom", (2000.0, 1000.0, 1000.0), "micron", (0.1, 0.1, 0.2)),
    ("meter", (2e-4, 1e-4, 1e-4), "meter", (1e-4, 1e-4, 2e-4)),
    ("centimeter", (0.02, 0.01, 0.01), "mm", (0.1, 0.1, 0.2)),
])
def test_ome_zarr_units_are_converted(tmp_path, unit, scale, nifti_unit, zooms):
    """docs/files.md: nanometer and angstrom become microns, meter is kept, centimeter becomes mm."""
    pytest.importorskip("ome_zarr")

    zyx = (np.random.default_rng(4).random((10, 14, 12)) * 100).astype(np.float32)
    src = tmp_path / "in.zarr"
    write_ome(src, zyx, scale, units=unit)
    out = tmp_path / "out.nii"
    mm = {"micron": 1e-3, "meter": 1e3, "mm": 1.0}[nifti_unit]
    target_mm = np.array(zooms) * mm * np.array([1.0, 2.0, 1.0])  # x unchanged, y coarser, z unchanged
    resample(src, out, spacing=tuple(target_mm), order=1)
    img = nib.load(out)
    assert img.header.get_xyzt_units()[0] == nifti_unit
    np.testing.assert_allclose(img.header.get_zooms()[:3], np.array(zooms) * [1, 2, 1], rtol=1e-5)
    xyz = zyx.T
    g = make_grid(xyz.shape, zooms, tuple(np.array(zooms) * [1, 2, 1]), "center")
    assert_matches_reference(np.asanyarray(img.dataobj), scipy_reference(xyz, g, 1, "nearest"), xyz, 1)


def test_compare_statistics_equal_numpy_on_the_whole_arrays(tmp_path, capsys):
    """--compare's min/max/mean/std, block by block, against numpy on the whole input and output; slabs
    with very different means, so a dropped between-slab term shows."""
    src = tmp_path / "in.nii"
    z = np.arange(40, dtype=np.float64)[None, None, :]
    raw = (np.random.default_rng(6).integers(0, 50, (16, 14, 40)) + z * 300).astype(np.int16)
    img = nib.Nifti1Image(raw, np.diag([0.1, 0.1, 0.1, 1.0]))
    img.header.set_slope_inter(0.5, -20.0)
    nib.save(img, src)
    out = tmp_path / "out.nii"
    r = resample(src, out, spacing=(None, None, 0.13), order=1, chunks=(16, 14, 3), compare=True)
    scaled_in = raw * 0.5 - 20.0
    scaled_out = nib.load(out).get_fdata(dtype=np.float64)
    for label, a in (("input", scaled_in), ("output", scaled_out)):
        expected = {"min": a.min(), "max": a.max(), "mean": a.mean(), "std": a.std()}
        for key, value in expected.items():
            assert r.stats[label][key] == pytest.approx(value, rel=1e-9, abs=1e-9), (label, key)
    assert main([str(src), str(out), "--z-spacing", "0.13", "--chunks", "16", "14", "3", "--compare",
                 "--no-progress"]) == 0
    text = capsys.readouterr().out
    for label, a in (("input", scaled_in), ("output", scaled_out)):
        line = next(x for x in text.splitlines() if x.strip().startswith(label + " "))
        printed = [float(v) for v in line.split()[1:]]
        np.testing.assert_allclose(printed, [a.min(), a.max(), a.mean(), a.std()], rtol=1e-5)
