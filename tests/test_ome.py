"""OME-Zarr output, read back by an independent reader (ome-zarr-py)."""

import nibabel as nib
import numpy as np
import pytest

from bigresample import resample
from bigresample.cli import main

from .test_cli import make_volume

ome_zarr = pytest.importorskip("ome_zarr")


def _read(path):
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Reader

    node = list(Reader(parse_url(str(path)))())[0]
    scale, translation = node.metadata["coordinateTransformations"][0]
    return np.asarray(node.data[0]), node.metadata["axes"], scale["scale"], translation["translation"]


def test_an_ome_zarr_output_reads_back_with_the_data_and_the_scale(tmp_path, capsys):
    src = tmp_path / "in.nii.gz"
    make_volume(src, shape=(30, 26, 20))
    out = tmp_path / "out.zarr"
    args = ["--spacing", "0.13", "0.2", "0.07", "--order", "3", "--chunks", "16", "26", "5"]
    assert main([str(src), str(out), *args]) == 0
    assert "Verified new spacing (mm): x=0.1300, y=0.2000, z=0.0700" in capsys.readouterr().out
    assert main([str(src), str(tmp_path / "ref.nii"), *args, "--quiet"]) == 0
    ref = nib.load(tmp_path / "ref.nii")
    data, axes, scale, translation = _read(out)
    np.testing.assert_array_equal(data, np.asanyarray(ref.dataobj).T)  # NGFF order z, y, x
    assert [a["name"] for a in axes] == ["z", "y", "x"] and {a["unit"] for a in axes} == {"millimeter"}
    np.testing.assert_allclose(scale, np.diag(ref.affine)[:3][::-1], rtol=1e-6)
    np.testing.assert_allclose(translation, ref.affine[:3, 3][::-1], atol=1e-5)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.nii.gz", "out.zarr", "ref.nii"]


def test_microns_and_a_time_axis_are_described(tmp_path):
    src = tmp_path / "in.nii"
    data = (np.random.default_rng(0).random((12, 10, 8, 3)) * 100).astype(np.float32)
    img = nib.Nifti1Image(data, np.diag([100.0, 100.0, 100.0, 1.0]))
    img.header.set_xyzt_units("micron", "sec")
    img.header.set_zooms((100.0, 100.0, 100.0, 2.5))
    nib.save(img, src)
    out = tmp_path / "out.zarr"
    resample(src, out, spacing=(None, None, 0.15), order=1)
    got, axes, scale, _ = _read(out)
    assert [a["name"] for a in axes] == ["t", "z", "y", "x"]
    assert axes[0]["unit"] == "second" and {a["unit"] for a in axes[1:]} == {"micrometer"}
    np.testing.assert_allclose(scale, [2.5, 150.0, 100.0, 100.0], rtol=1e-6)
    assert got.shape == (3, 5, 10, 12)


def test_a_rotated_affine_keeps_the_nifti_affine_beside_the_ngff_transformations(tmp_path):
    import zarr

    src = tmp_path / "in.nii"
    affine = np.array([[0.0, -0.1, 0.0, 5.0], [0.1, 0.0, 0.0, -3.0], [0.0, 0.0, 0.1, 2.0], [0, 0, 0, 1]])
    nib.save(nib.Nifti1Image(np.ones((10, 12, 8), np.float32), affine), src)
    out = tmp_path / "out.zarr"
    r = resample(src, out, spacing=(None, None, 0.2))
    attrs = zarr.open_group(str(out), mode="r").attrs["bigresample"]
    assert attrs["axis_aligned"] is False
    np.testing.assert_allclose(attrs["nifti_affine"], r.affine)
    _, _, scale, translation = _read(out)
    np.testing.assert_allclose(scale, [0.2, 0.1, 0.1], rtol=1e-6)
    np.testing.assert_allclose(translation, r.affine[:3, 3][::-1])


def test_an_existing_ome_zarr_output_is_replaced_whole(tmp_path):
    src = tmp_path / "in.nii"
    make_volume(src)
    out = tmp_path / "out.zarr"
    resample(src, out, spacing=(None, None, 0.2))
    resample(src, out, spacing=(None, None, 0.05))
    assert _read(out)[0].shape == (28, 20, 24)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.nii", "out.zarr"]


def test_levels_make_a_pyramid_each_level_resampled_from_the_input(tmp_path):
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Reader

    src = tmp_path / "in.nii"
    make_volume(src, shape=(40, 36, 30))
    out = tmp_path / "out.zarr"
    assert main([str(src), str(out), "--spacing", "0.1", "0.1", "0.07", "--order", "3", "--levels", "3",
                 "--quiet"]) == 0
    node = list(Reader(parse_url(str(out)))())[0]
    assert len(node.data) == 3
    scales = [t[0]["scale"] for t in node.metadata["coordinateTransformations"]]
    np.testing.assert_allclose(scales, [[0.07 * 2**k, 0.1 * 2**k, 0.1 * 2**k] for k in range(3)], rtol=1e-6)
    for k in (1, 2):
        ref = tmp_path / f"level{k}.nii"
        resample(src, ref, spacing=(0.1 * 2**k, 0.1 * 2**k, 0.07 * 2**k), order=3)
        # the pyramid doubles the stored spacing (0.10000000149), the reference asks for 0.2 exactly: the
        # grids differ by a few 1e-8 voxels, so equal to the order-3 tolerance (1e-5 of the 0-1000 range)
        np.testing.assert_allclose(np.asarray(node.data[k]), np.asanyarray(nib.load(ref).dataobj).T, rtol=0,
                                   atol=1e-5 * 1000)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.nii", "level1.nii", "level2.nii", "out.zarr"]


def test_levels_need_an_ome_zarr_output(tmp_path, capsys):
    src = tmp_path / "in.nii"
    make_volume(src)
    assert main([str(src), str(tmp_path / "o.nii"), "--z-spacing", "0.2", "--levels", "2"]) == 2
    assert "--levels needs an OME-Zarr output (.zarr); got 'o.nii'" in capsys.readouterr().err
