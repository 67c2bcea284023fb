"""Plain Zarr arrays (bigresample/plainzarr.py), v2 and v3, in a folder and at a URL: resampled equal to scipy on
the whole array, their axes read from ``dimension_names`` or NGFF's order."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import zarr

from bigresample import make_grid, resample
from bigresample.cli import main
from bigresample.inputs import open_input

from .helpers import assert_matches_reference, scipy_reference


def _write(path, data, zarr_format, names=None, chunks=(3, 5, 4)):
    kw = {"dimension_names": names} if names else {}
    arr = zarr.create_array(str(path), shape=data.shape, chunks=chunks[-data.ndim:] if data.ndim <= 3
                            else (1,) * (data.ndim - 3) + chunks, dtype=data.dtype, zarr_format=zarr_format, **kw)
    arr[...] = data
    return path


@pytest.mark.parametrize("zarr_format", [2, 3])
def test_a_plain_zarr_array_resamples_as_scipy_on_the_whole_array(tmp_path, zarr_format):
    zyx = (np.random.default_rng(3).random((10, 17, 13)) * 50).astype(np.float32)
    src = _write(tmp_path / "in.zarr", zyx, zarr_format)
    vol = open_input(src, read_data=False)
    assert vol.format == f"Zarr v{zarr_format} array" and vol.shape == (13, 17, 10) and vol.spacing_from is None
    out = tmp_path / "out.nii"
    resample(src, out, spacing=(0.3, 0.3, 0.3), input_spacing=(0.2, 0.25, 0.5), order=3, chunks=(5, 6, 4))
    g = make_grid((13, 17, 10), (0.2, 0.25, 0.5), (0.3, 0.3, 0.3), "center")
    data = zyx.T
    assert_matches_reference(np.asanyarray(nib.load(out).dataobj), scipy_reference(data, g, 3, "nearest"), data, 3)


def test_dimension_names_say_which_axis_is_which(tmp_path):
    xczy = np.random.default_rng(4).integers(0, 1000, (9, 2, 7, 11)).astype(np.uint16)
    src = _write(tmp_path / "in.zarr", xczy, 3, names=["x", "c", "z", "y"], chunks=(1, 3, 5, 4)[1:])
    vol = open_input(src, read_data=False)
    assert vol.shape == (9, 11, 7, 2) and vol.extra_axes[0]["name"] == "c"
    assert "stored (x=9, c=2, z=7, y=11), read as x, y, z, c" in vol.notes[0]
    out = tmp_path / "out.nii"
    resample(src, out, spacing=(1.5, 1.5, 1.5), input_spacing=(1, 1, 2), order=1, chunks=(4, 4, 3))
    data = xczy.transpose(0, 3, 2, 1)
    g = make_grid(data.shape[:3], (1, 1, 2), (1.5, 1.5, 1.5), "center")
    assert_matches_reference(np.asanyarray(nib.load(out).dataobj), scipy_reference(data, g, 1, "nearest"), data, 1)


def test_a_plain_zarr_array_at_a_url(tmp_path):
    zyx = np.random.default_rng(5).random((6, 8, 9)).astype(np.float32)
    _write(tmp_path / "in.zarr", zyx, 3)
    out = tmp_path / "out.nii"
    resample("file://" + str(tmp_path / "in.zarr"), out, spacing=(0.5, 0.5, 0.5), input_spacing=(0.4, 0.4, 0.4),
             order=1, chunks=(4, 4, 3))
    g = make_grid((9, 8, 6), (0.4, 0.4, 0.4), (0.5, 0.5, 0.5), "center")
    data = zyx.T
    assert_matches_reference(np.asanyarray(nib.load(out).dataobj), scipy_reference(data, g, 1, "nearest"), data, 1)


def test_a_plain_array_without_spacing_is_refused_naming_the_option(tmp_path, capsys):
    src = _write(tmp_path / "in.zarr", np.zeros((4, 5, 6), np.float32), 2)
    assert main([str(src), str(tmp_path / "o.nii"), "--spacing", "1", "1", "1", "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Zarr v2 array gives no voxel spacing" in err and "--input-spacing" in err


def test_unmappable_dimension_names_are_refused_in_one_line(tmp_path, capsys):
    src = _write(tmp_path / "in.zarr", np.zeros((3, 4, 5, 6), np.float32), 3, names=["q", "z", "y", "x"],
                 chunks=(4, 5, 6))
    assert main([str(src), str(tmp_path / "o.nii"), "--spacing", "1", "1", "1", "--input-spacing", "1", "1", "1",
                 "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "axis 'q' of length 3" in err
