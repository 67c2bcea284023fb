"""``bigresample info FILE [--json]``: a file's geometry and provenance, checked against nibabel's own
reading of nibabel's test images; a file named ``info`` is still resampled."""

import json
import os

import nibabel as nib
import numpy as np
import pytest
from nibabel.testing import data_path

from bigresample.cli import is_info, main
from bigresample.fileinfo import describe

from .helpers import make_volume

NIBABEL_IMAGES = ["example4d.nii.gz", "anatomical.nii", "example_nifti2.nii.gz", "functional.nii", "test.mgz",
                  "reoriented_anat_moved.nii", "small.mnc"]


def _json(capsys, *argv):
    assert main(["info", *map(str, argv), "--json"]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.mark.parametrize("name", NIBABEL_IMAGES)
def test_info_on_nibabels_test_images_gives_nibabels_header_values(name, capsys):
    path = os.path.join(data_path, name)
    img = nib.load(path)
    d = _json(capsys, path)
    hdr = img.header
    assert d["shape"] == list(img.shape)
    assert d["dtype"] == np.dtype(img.get_data_dtype()).name
    np.testing.assert_allclose(d["affine"], img.affine, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(d["zooms"], hdr.get_zooms(), rtol=1e-6)
    np.testing.assert_allclose(d["spacing"], np.sqrt((img.affine[:3, :3] ** 2).sum(axis=0)), rtol=1e-6)
    assert d["provenance"] is None
    if isinstance(hdr, nib.Nifti1Header):  # NIfTI-2's header class derives from NIfTI-1's
        assert d["nifti_version"] == (2 if isinstance(hdr, nib.Nifti2Header) else 1)
        assert (d["qform_code"], d["sform_code"]) == (int(hdr["qform_code"]), int(hdr["sform_code"]))
        np.testing.assert_allclose(d["sform"], hdr.get_sform(), atol=1e-6)
        assert (d["units"], d["time_units"]) == hdr.get_xyzt_units()
        slope, inter = hdr.get_slope_inter()
        assert (d["scl_slope"], d["scl_inter"]) == (slope, inter)
        assert d["vox_offset"] == int(img.dataobj.offset)
        assert [e["code"] for e in d["extensions"]] == [e.get_code() for e in hdr.extensions]
    else:
        assert d["nifti_version"] is None and d["qform_code"] is None


def test_info_text_says_the_same_as_the_json(capsys):
    path = os.path.join(data_path, "example4d.nii.gz")
    assert main(["info", path]) == 0
    text = capsys.readouterr().out
    assert text.splitlines()[0] == f"{path}: NIfTI-1 image (gzip-compressed)"
    assert "Shape: 128x96x24x2 (x y z t), int16" in text and "qform code: 1, sform code: 1" in text
    assert "Description: FSL3.3" in text and "Provenance: none recorded" in text


def test_info_shows_a_chain_of_steps_and_an_ome_zarrs_geometry(tmp_path, capsys):
    src = tmp_path / "in.nii.gz"
    make_volume(src, shape=(24, 20, 14))
    assert main([str(src), str(tmp_path / "a.zarr"), "--z-spacing", "0.2", "--quiet"]) == 0
    assert main([str(tmp_path / "a.zarr"), str(tmp_path / "b.nii"), "--x-spacing", "0.3", "--quiet"]) == 0
    capsys.readouterr()
    ome = _json(capsys, tmp_path / "a.zarr")
    assert ome["format"] == "OME-Zarr image" and ome["ome"]["levels"] == 1 and ome["nifti_version"] is None
    assert ome["shape"] == [24, 20, 7] and len(ome["provenance"]["steps"]) == 1
    d = _json(capsys, tmp_path / "b.nii")
    img = nib.load(tmp_path / "b.nii")
    assert d["shape"] == list(img.shape) and d["vox_offset"] == int(img.dataobj.offset)
    assert [s["output"]["name"] for s in d["provenance"]["steps"]] == ["a.zarr", "b.nii"]
    assert main(["info", str(tmp_path / "b.nii")]) == 0
    text = capsys.readouterr().out
    assert "Provenance: 2 steps" in text and f"command: bigresample {tmp_path / 'a.zarr'} {tmp_path / 'b.nii'}" in text


@pytest.mark.parametrize("content", [b"", b"not an image at all", None])
def test_info_on_a_bad_file_is_one_line_and_status_2(tmp_path, capsys, content):
    path = tmp_path / "bad.nii"
    if content is not None:
        path.write_bytes(content)
    assert main(["info", str(path), "--json"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and err.startswith("bigresample: error: ") and "bad.nii" in err


def test_info_is_the_word_info_then_one_file_and_info_options_only():
    assert is_info(["info", "x.nii"]) and is_info(["info", "x.nii", "--json"])
    assert is_info(["info", "s3://b/x.zarr", "--storage-option", "anon=true", "--json"])
    assert not is_info(["info", "out.nii", "--spacing", "1", "1", "1"])
    assert not is_info(["./info", "x.nii"]) and not is_info(["x.nii", "info"]) and not is_info([])


def test_an_input_named_info_is_resampled_as_before(tmp_path, monkeypatch):
    """(nibabel needs a file's extension: an input named ``info`` is an OME-Zarr folder)"""
    monkeypatch.chdir(tmp_path)
    make_volume(tmp_path / "input.nii", shape=(12, 10, 8))
    assert main(["input.nii", "input.zarr", "--quiet", "--z-spacing", "0.1"]) == 0
    os.rename(tmp_path / "input.zarr", tmp_path / "info")
    assert main(["info", "out.nii", "--z-spacing", "0.2", "--quiet"]) == 0
    assert nib.load(tmp_path / "out.nii").shape == (12, 10, 4)


def test_describe_is_json_safe_for_a_4d_nifti2(tmp_path):
    path = tmp_path / "big.nii"
    nib.save(nib.Nifti2Image(np.zeros((4, 3, 2, 5), np.uint16), np.diag([0.1, 0.2, 0.3, 1.0])), path)
    d = describe(path)
    assert json.loads(json.dumps(d, allow_nan=False)) == d
    assert d["nifti_version"] == 2 and d["axes"] == ["x", "y", "z", "t"]


def _unknown_units(path):
    img = nib.Nifti1Image(np.random.default_rng(0).random((20, 20, 10)).astype(np.float32),
                          np.diag([0.5, 0.5, 1.0, 1.0]))
    img.header.set_xyzt_units(0, 0)  # the header does not say
    nib.save(img, path)
    return path


def test_unknown_units_are_reported_as_unknown_not_silently_as_mm(tmp_path, capsys):
    src = _unknown_units(tmp_path / "in.nii")
    assert main([str(src), str(tmp_path / "out.nii"), "--z-spacing", "2"]) == 0
    out = capsys.readouterr().out
    assert "Original spacing (mm): x=0.5000, y=0.5000, z=1.0000\n" in out
    assert "Header units: unknown (the header does not say; its numbers are read as mm)\n" in out


def test_an_ome_zarr_of_unknown_units_reads_the_same_unit_in_its_geometry_and_its_provenance(tmp_path, capsys):
    src = _unknown_units(tmp_path / "in.nii")
    assert main([str(src), str(tmp_path / "out.zarr"), "--z-spacing", "2", "--quiet"]) == 0
    capsys.readouterr()
    assert main(["info", str(tmp_path / "out.zarr")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "  Spacing: x=0.5, y=0.5, z=2 unknown units (from the OME-Zarr multiscales scale)" in lines
    assert [ln for ln in lines if ln.strip().startswith("output:")] == [
        "     output: out.zarr, 20x20x5 at 0.5 x 0.5 x 2 unknown, float32"]
    # and back to NIfTI: still unknown (code 0), as the input was
    assert main([str(tmp_path / "out.zarr"), str(tmp_path / "back.nii"), "--z-spacing", "2", "--quiet"]) == 0
    assert nib.load(tmp_path / "back.nii").header.get_xyzt_units()[0] == "unknown"
