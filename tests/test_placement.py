"""Where the output grid sits: the default `center` grid and the first-voxel placement of nibabel
(`resample_to_output`) and SimpleITK, which `--grid origin` matches (docs/grids-and-exactness.md)."""

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from bigresample.cli import main
from bigresample.report import CENTER_VS_OTHERS

from .helpers import TOLERANCE


def _brain(path, shape=(40, 46, 38)):
    """A smooth RAS+ image at 1 mm, its first voxel at (-20, -23, -19) mm."""
    data = ndimage.gaussian_filter(np.random.default_rng(0).random(shape), 2).astype(np.float32) * 1000
    affine = np.diag([1.0, 1.0, 1.0, 1.0])
    affine[:3, 3] = [-20.0, -23.0, -19.0]
    nib.save(nib.Nifti1Image(data, affine), path)
    return data, affine


def test_grid_origin_equals_nibabel_resample_to_output(tmp_path):
    from nibabel.processing import resample_to_output

    data, affine = _brain(tmp_path / "in.nii")
    out = tmp_path / "out.nii"
    # nibabel's defaults: order 3, mode 'constant', cval 0 (scipy.ndimage.affine_transform)
    assert main([str(tmp_path / "in.nii"), str(out), "--spacing", "1.5", "1.5", "1.5", "--grid", "origin",
                 "--order", "3", "--mode", "constant", "--quiet"]) == 0
    theirs = resample_to_output(nib.load(tmp_path / "in.nii"), (1.5, 1.5, 1.5))
    ours = nib.load(out)
    np.testing.assert_allclose(ours.affine, theirs.affine, atol=1e-6)
    # nibabel covers every input voxel centre, so it may have one more voxel at the far end of an axis
    assert ours.shape == (27, 31, 25) and theirs.shape == (27, 31, 26)
    got = np.asanyarray(ours.dataobj).astype(np.float64)
    expected = np.asanyarray(theirs.dataobj)[: got.shape[0], : got.shape[1], : got.shape[2]]
    assert np.abs(got - expected).max() <= TOLERANCE[3] * float(data.max() - data.min())


def test_the_default_center_grid_is_offset_from_theirs_as_the_report_says(tmp_path, capsys):
    """1 mm to 1.5 mm: the field of view centred moves the first voxel by ((n-1) - (m-1)*1.5)/2 mm."""
    _brain(tmp_path / "in.nii")
    out = tmp_path / "out.nii"
    assert main([str(tmp_path / "in.nii"), str(out), "--spacing", "1.5", "1.5", "1.5"]) == 0
    assert f"Grid: center (field of view centred, spacing exact)\n  {CENTER_VS_OTHERS}\n" in capsys.readouterr().out
    n, m = np.array([40, 46, 38]), np.array([27, 31, 25])
    shift = ((n - 1) - (m - 1) * 1.5) / 2
    np.testing.assert_allclose(nib.load(out).affine[:3, 3], np.array([-20.0, -23.0, -19.0]) + shift)
    assert nib.load(out).affine[2, 3] == pytest.approx(-19.0 + 0.5)  # z: 37 mm of centres, 36 mm of output
