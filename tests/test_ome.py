"""OME-Zarr output, read back by an independent reader (ome-zarr-py)."""

import nibabel as nib
import numpy as np
import pytest

from bigresample import make_grid, resample
from bigresample.cli import main

from .helpers import assert_matches_reference, itk_reference, make_volume, rotation, scipy_reference, write_ome

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
    raw = np.asanyarray(nib.load(src).dataobj)  # and both equal the whole-array scipy call
    g = make_grid(raw.shape, (0.1, 0.1, 0.1), (0.13, 0.2, 0.07), "center")
    assert_matches_reference(data.T, scipy_reference(raw, g, 3, "nearest"), raw, 3)
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
    raw = np.asanyarray(nib.load(src).dataobj)  # each level against scipy, at the doubled stored spacing
    stored = np.array([0.1, 0.1, 0.07], np.float32).astype(np.float64)
    for k in range(3):
        g = make_grid(raw.shape, np.float32(0.1).astype(np.float64).repeat(3), stored * 2**k, "center")
        assert_matches_reference(np.asarray(node.data[k]).T, scipy_reference(raw, g, 3, "nearest"), raw, 3)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.nii", "level1.nii", "level2.nii", "out.zarr"]


def test_levels_need_an_ome_zarr_output(tmp_path, capsys):
    src = tmp_path / "in.nii"
    make_volume(src)
    assert main([str(src), str(tmp_path / "o.nii"), "--z-spacing", "0.2", "--levels", "2"]) == 2
    assert "--levels needs an OME-Zarr output (.zarr); got 'o.nii'" in capsys.readouterr().err


# --------------------------------------------------------------------------
# OME-Zarr input
# --------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["0.5", "0.4"])
def test_an_ome_zarr_input_is_resampled_like_its_array(tmp_path, fmt, capsys):
    from scipy import ndimage

    rng = np.random.default_rng(3)
    zyx = ndimage.gaussian_filter(rng.standard_normal((20, 30, 40)), 1.5).astype(np.float32) * 100
    src = tmp_path / "in.zarr"
    write_ome(src, zyx, (4.0, 2.0, 1.5), fmt=fmt)  # z, y, x in um
    out = tmp_path / "out.nii.gz"
    assert main([str(src), str(out), "--spacing", "3", "3", "3", "--units", "um", "--order", "3"]) == 0
    report = capsys.readouterr().out
    assert "Loading OME-Zarr image:" in report and "x=1.50, y=2.00, z=4.00" in report
    img = nib.load(out)
    assert img.header.get_xyzt_units()[0] == "micron"
    np.testing.assert_allclose(img.header.get_zooms()[:3], (3.0, 3.0, 3.0), rtol=1e-6)
    data = zyx.T  # x, y, z
    g = make_grid(data.shape, (1.5, 2.0, 4.0), (3.0, 3.0, 3.0), "center")
    assert_matches_reference(np.asanyarray(img.dataobj), scipy_reference(data, g, 3, "nearest"), data, 3)
    np.testing.assert_allclose(img.affine, g.output_affine(np.diag([1.5, 2.0, 4.0, 1.0])), atol=1e-5)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.zarr", "out.nii.gz"]


def test_a_time_series_ome_zarr_keeps_its_time_axis(tmp_path):
    data = (np.random.default_rng(0).random((3, 10, 12, 14)) * 100).astype(np.float32)  # t, z, y, x
    src = tmp_path / "in.zarr"
    write_ome(src, data, (2.5, 0.2, 0.1, 0.1), units="millimeter", axes="tzyx")
    out = tmp_path / "out.nii"
    resample(src, out, spacing=(0.2, 0.2, 0.2), order=1)
    img = nib.load(out)
    assert img.shape == (7, 6, 10, 3)
    assert img.header.get_zooms()[3] == pytest.approx(2.5)
    g = make_grid((14, 12, 10), (0.1, 0.1, 0.2), (0.2, 0.2, 0.2), "center")
    xyzt = data.transpose(3, 2, 1, 0)
    assert_matches_reference(np.asanyarray(img.dataobj), scipy_reference(xyzt, g, 1, "nearest"), xyzt, 1)


def test_ome_zarr_round_trip_keeps_a_translation_and_a_rotated_affine(tmp_path):
    src = tmp_path / "in.nii"
    affine = np.array([[0.0, -0.1, 0.0, 5.0], [0.1, 0.0, 0.0, -3.0], [0.0, 0.0, 0.1, 2.0], [0, 0, 0, 1]])
    data = (np.random.default_rng(1).random((10, 12, 8)) * 100).astype(np.float32)
    nib.save(nib.Nifti1Image(data, affine), src)
    first = resample(src, tmp_path / "a.zarr", spacing=(None, None, 0.2))
    back = resample(tmp_path / "a.zarr", tmp_path / "b.nii", spacing=(0.1, 0.1, 0.2))  # spacing unchanged
    np.testing.assert_allclose(nib.load(tmp_path / "b.nii").affine, first.affine, atol=1e-6)
    np.testing.assert_array_equal(np.asanyarray(nib.load(tmp_path / "b.nii").dataobj),
                                  _read(tmp_path / "a.zarr")[0].T)
    assert back.in_shape == (10, 12, 4)


def test_an_ome_zarr_reference_gives_its_grid(tmp_path):
    src = tmp_path / "in.nii"
    make_volume(src, shape=(30, 26, 20))
    ref = tmp_path / "ref.zarr"
    write_ome(ref, np.zeros((5, 6, 7), np.uint8), (0.35, 0.4, 0.3), units="millimeter")
    res = resample(src, tmp_path / "out.nii", reference=ref, order=1)
    img = nib.load(tmp_path / "out.nii")
    assert img.shape == (7, 6, 5) and res.grid == "reference"
    np.testing.assert_allclose(img.affine, np.diag([0.3, 0.4, 0.35, 1.0]), atol=1e-6)


@pytest.mark.parametrize("make, message", [
    (lambda p: p.mkdir(), "is a folder, not an image file or an OME-Zarr"),
    (lambda p: write_ome(p, np.zeros((2, 3, 4), np.uint8), (1, 1, 1), axes="cyx"),
     "cannot read as OME-Zarr input: spatial axes must be the last three, z y x; got c y x"),
    (lambda p: __import__("zarr").open_group(str(p), mode="w"), "cannot read as OME-Zarr input: no OME-Zarr"),
], ids=["plain folder", "2D with channels", "no metadata"])
def test_a_folder_that_is_not_a_3d_ome_zarr_is_refused_in_one_line(tmp_path, capsys, make, message):
    src = tmp_path / "in.zarr"
    make(src)
    assert main([str(src), str(tmp_path / "out.nii"), "--z-spacing", "0.2"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err, err
    assert not (tmp_path / "out.nii").exists()


def test_channels_and_time_of_an_ome_zarr_input_keep_their_names(tmp_path):
    data = (np.random.default_rng(2).random((2, 3, 10, 12, 14)) * 100).astype(np.float32)  # t, c, z, y, x
    src = tmp_path / "in.zarr"
    write_ome(src, data, (2.5, 1.0, 0.2, 0.1, 0.1), units="millimeter", axes="tczyx")
    resample(src, tmp_path / "out.zarr", spacing=(0.2, 0.2, 0.2), order=1)
    got, axes, scale, _ = _read(tmp_path / "out.zarr")
    assert [(a["name"], a["type"]) for a in axes] == [("t", "time"), ("c", "channel"), ("z", "space"),
                                                        ("y", "space"), ("x", "space")]
    np.testing.assert_allclose(scale, [2.5, 1.0, 0.2, 0.2, 0.2], rtol=1e-6)
    g = make_grid((14, 12, 10), (0.1, 0.1, 0.2), (0.2, 0.2, 0.2), "center")
    xyztc = data.transpose(4, 3, 2, 0, 1)
    expected = scipy_reference(xyztc, g, 1, "nearest")
    assert_matches_reference(got.transpose(4, 3, 2, 0, 1), expected, xyztc, 1)
    resample(src, tmp_path / "out.nii", spacing=(0.2, 0.2, 0.2), order=1)
    img = nib.load(tmp_path / "out.nii")
    assert img.shape == (7, 6, 10, 2, 3)  # NIfTI's dimension 4 is time, 5 the components
    np.testing.assert_allclose(img.header.get_zooms()[3:], (2.5, 1.0))
    np.testing.assert_array_equal(np.asanyarray(img.dataobj), got.transpose(4, 3, 2, 0, 1))
    # and that NIfTI goes back to the same OME-Zarr axes
    resample(tmp_path / "out.nii", tmp_path / "back.zarr", spacing=(0.2, 0.2, 0.2), order=1)
    back, axes_back, scale_back, _ = _read(tmp_path / "back.zarr")
    assert [a["name"] for a in axes_back] == ["t", "c", "z", "y", "x"]
    np.testing.assert_array_equal(back, got)
    np.testing.assert_allclose(scale_back, scale, rtol=1e-6)
    # channels only (the usual microscopy image): c stays a channel axis, not time
    write_ome(tmp_path / "czyx.zarr", data[0], (1.0, 0.2, 0.1, 0.1), units="millimeter", axes="czyx")
    resample(tmp_path / "czyx.zarr", tmp_path / "c.zarr", spacing=(0.2, 0.2, 0.2), order=1)
    assert [a["name"] for a in _read(tmp_path / "c.zarr")[1]] == ["c", "z", "y", "x"]


def test_a_6d_nifti_cannot_be_an_ome_zarr_and_says_so_in_one_line(tmp_path, capsys):
    src = tmp_path / "in.nii"
    nib.save(nib.Nifti1Image(np.zeros((6, 5, 4, 3, 2, 2), np.float32), np.eye(4)), src)
    assert main([str(src), str(tmp_path / "out.zarr"), "--z-spacing", "2", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "NGFF images have at most 5 axes; this one has 6" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.nii"]


def test_an_input_url_of_an_unknown_protocol_is_refused_in_one_line(tmp_path, capsys):
    assert main(["nosuchproto://bucket/image.zarr", str(tmp_path / "out.nii"), "--z-spacing", "0.2"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "input URL cannot be used: nosuchproto://bucket/image.zarr: Protocol not known" in err
    assert list(tmp_path.iterdir()) == []


def test_rewriting_an_ome_zarr_input_in_place_changes_its_identity(tmp_path):
    """A journal must not resume onto an input whose chunks were rewritten."""
    import os
    import time

    import zarr

    from bigresample.journal import input_identity

    src = tmp_path / "in.zarr"
    write_ome(src, np.ones((8, 9, 10), np.float32), (1.0, 1.0, 1.0))
    before = input_identity(src)
    time.sleep(0.01)
    arr = zarr.open_array(str(src / "s0"), mode="r+")
    arr[...] = -np.asarray(arr)
    assert input_identity(src) != before
    assert os.stat(src).st_mtime_ns == before["mtime_ns"]  # the folder alone would not have told


def _edit_metadata(path, change):
    import json

    meta = json.loads((path / "zarr.json").read_text())
    change(meta["attributes"]["ome"]["multiscales"])
    (path / "zarr.json").write_text(json.dumps(meta))


def _level0(ms):
    return ms[0]["datasets"][0]


@pytest.mark.parametrize("change, message", [
    (lambda ms: ms[0].__setitem__("axes", 5), "malformed multiscales metadata (TypeError"),
    (lambda ms: ms[0].pop("axes"), "no 'axes' in the multiscales metadata"),
    (lambda ms: ms[0].__setitem__("datasets", []), "no level 0 dataset with a path"),
    (lambda ms: ms.__setitem__(0, 3), "'multiscales' must be a list of images"),
    (lambda ms: _level0(ms)["coordinateTransformations"][0].__setitem__("scale", [1, 1]),
     "scale must be 3 finite numbers; got [1, 1]"),
    (lambda ms: _level0(ms)["coordinateTransformations"][0].__setitem__("scale", [0.3, 0, 0.2]),
     "scale must not be 0 on any axis"),
    (lambda ms: _level0(ms)["coordinateTransformations"].append({"type": "translation", "translation": "abc"}),
     "malformed multiscales metadata (ValueError"),
    (lambda ms: _level0(ms).__setitem__("coordinateTransformations", [7]), "malformed multiscales metadata"),
    (lambda ms: _level0(ms).__setitem__("path", "../other.zarr/s0"), "level 0 path must lie inside the image folder"),
    (lambda ms: ms[0]["axes"][0].__setitem__("unit", "millimeter"),
     "z, y and x have different units: millimeter, micrometer, micrometer"),
    (lambda ms: [a.__setitem__("unit", "parsec") for a in ms[0]["axes"]], "unsupported space unit 'parsec'"),
], ids=["axes not a list", "no axes", "no datasets", "image not a dict", "short scale", "zero scale",
        "text translation", "transformation not a dict", "path outside", "mixed units", "unknown unit"])
def test_malformed_ome_metadata_is_one_line_as_input_or_reference(tmp_path, capsys, change, message):
    bad = tmp_path / "bad.zarr"
    write_ome(bad, np.zeros((4, 5, 6), np.float32), (0.3, 0.25, 0.2))
    _edit_metadata(bad, change)
    good = tmp_path / "good.nii"
    make_volume(good)
    for args in ([bad, tmp_path / "out.nii", "--z-spacing", "0.5"], [good, tmp_path / "out.nii", "--reference", bad]):
        assert main([str(a) for a in args]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("bigresample: error:") and message in err, err
        assert not (tmp_path / "out.nii").exists()


def test_a_float16_ome_zarr_is_written_as_float32_nifti(tmp_path):
    data = (np.random.default_rng(4).random((6, 7, 8)) * 100).astype(np.float16)
    write_ome(tmp_path / "in.zarr", data, (0.2, 0.1, 0.1), units="millimeter")
    resample(tmp_path / "in.zarr", tmp_path / "out.nii", spacing=(0.1, 0.1, 0.1), order=1)
    img = nib.load(tmp_path / "out.nii")
    assert img.get_data_dtype() == np.float32
    g = make_grid((8, 7, 6), (0.1, 0.1, 0.2), (0.1, 0.1, 0.1), "center")
    values = data.T.astype(np.float32)  # scipy has no float16: its values as float32
    expected = scipy_reference(values, g, 1, "nearest", dtype=np.float32)
    assert_matches_reference(np.asanyarray(img.dataobj), expected, values, 1)
    # the general path too (scipy's map_coordinates underneath)
    a_ref = rotation(2, 30) @ np.diag([0.15, 0.15, 0.15, 1.0])
    nib.save(nib.Nifti1Image(np.zeros((5, 5, 4), np.uint8), a_ref), tmp_path / "ref.nii")
    resample(tmp_path / "in.zarr", tmp_path / "rot.nii", reference=tmp_path / "ref.nii", order=1)
    m = np.linalg.solve(np.diag([0.1, 0.1, 0.2, 1.0]), nib.load(tmp_path / "ref.nii").affine)
    # a reference run's default, ITK's rule: scipy's 'nearest' with cval (0) beyond half a voxel of the input
    expected = itk_reference(values, m[:3, :3], m[:3, 3], (5, 5, 4), 1)
    assert (expected == 0).any() and (expected != 0).any()
    np.testing.assert_array_equal(np.asanyarray(nib.load(tmp_path / "rot.nii").dataobj), expected)
