"""Damaged NIfTI headers: the fallback taken is the one the report states, and
a refusal names the field and its value (the corpus in test_corpus.py checks
that nothing ends in a traceback; these check what happens instead)."""

import gzip
import os

import nibabel as nib
import numpy as np
import pytest

from bigresample.cli import main
from bigresample.inputs import open_input

from .conftest import assert_matches_reference, scipy_reference
from .corpus import _with_field, base_bytes

QFORM = np.array([[2.0, 0, 0, -7], [0, 2.0, 0, -6], [0, 0, 2.0, -5], [0, 0, 0, 1]])


def _run(tmp_path, capsys, data: bytes, name="in.nii", *args):
    src = tmp_path / name
    src.write_bytes(data)
    out = tmp_path / "out.nii"
    code = main([str(src), str(out), "--spacing", "3", "3", "3", "--no-progress", *args])
    captured = capsys.readouterr()
    assert src.read_bytes() == data
    return code, captured.out, captured.err, out


@pytest.mark.parametrize("version", [1, 2])
def test_an_undefined_xyzt_units_code_is_unknown_units_and_said(tmp_path, capsys, version):
    code, out, err, path = _run(tmp_path, capsys, _with_field(base_bytes(version), version, "xyzt_units", 4))
    assert code == 0, err
    assert "Note: xyzt_units code 4 is undefined: spatial units treated as unknown" in out
    assert nib.load(path).header.get_xyzt_units() == ("unknown", "unknown")


def test_a_nan_sform_falls_back_to_the_qform(tmp_path, capsys):
    raw = base_bytes(1)
    for r in ("srow_x", "srow_y", "srow_z"):
        raw = _with_field(raw, 1, r, np.nan)
    code, out, err, path = _run(tmp_path, capsys, raw)
    assert code == 0, err
    assert "Note: sform unusable (srow_x=(nan, nan, nan, nan)" in out and "; using the qform" in out
    hdr = nib.load(path).header
    assert int(hdr["sform_code"]) == 0 and int(hdr["qform_code"]) == 1
    np.testing.assert_allclose(nib.load(path).affine[:3, :3], np.diag([3.0, 3, 3]))


def test_a_quaternion_that_is_not_a_rotation_is_dropped_when_the_sform_is_good(tmp_path, capsys):
    code, out, err, path = _run(tmp_path, capsys, _with_field(base_bytes(1), 1, "quatern_b", -1e6))
    assert code == 0, err
    assert "Note: qform unusable (quatern_b/c/d = (-1e+06, 0, 0) is not a rotation): not carried to the output; " \
           "using the sform" in out
    hdr = nib.load(path).header
    assert int(hdr["qform_code"]) == 0 and int(hdr["sform_code"]) == 2


@pytest.mark.parametrize("value, words", [(-1e6, "(-1e+06, 0, 0) is not a rotation"), (np.nan, "(nan, 0, 0) not finite")])
def test_a_bad_quaternion_without_an_sform_is_refused_naming_it(tmp_path, capsys, value, words):
    raw = _with_field(_with_field(base_bytes(1), 1, "quatern_b", value), 1, "sform_code", 0)
    code, out, err, path = _run(tmp_path, capsys, raw)
    assert code == 2 and err.count("\n") == 1, err
    assert f"the qform (qform_code 1) is unusable: quatern_b/c/d = {words}; and there is no sform" in err
    assert os.listdir(tmp_path) == ["in.nii"]


@pytest.mark.parametrize("field, value, words", [
    ("scl_slope", np.inf, "header field scl_slope is inf"),
    ("vox_offset", -1, "header field vox_offset is -1"),
    ("datatype", 1234, "header field datatype is 1234 (undefined)"),
    ("magic", b"abcd", "header field magic is b'abcd'"),
])
def test_refusals_name_the_field_and_value(tmp_path, capsys, field, value, words):
    code, out, err, _ = _run(tmp_path, capsys, _with_field(base_bytes(1), 1, field, value))
    assert code == 2 and err.count("\n") == 1 and words in err, err


def test_dim_index_named(tmp_path, capsys):
    code, out, err, _ = _run(tmp_path, capsys, _with_field(base_bytes(2), 2, "dim", -3, 2))
    assert code == 2 and "header field dim[2] is -3 (every dimension must be at least 1)" in err, err


def test_an_extension_claiming_a_gigabyte_in_a_small_gz_is_refused_before_reading(tmp_path, capsys):
    """nibabel would read the extension (the whole decompressed stream) into memory."""
    raw = bytearray(base_bytes(1, extension=True))
    raw[352:356] = np.int32(2**30).tobytes()
    raw = _with_field(bytes(raw), 1, "vox_offset", 2**30 + 352)
    code, out, err, _ = _run(tmp_path, capsys, gzip.compress(raw), "in.nii.gz")
    assert code == 2 and err.count("\n") == 1, err
    assert "extensions take more than 64 MiB (esize 1073741824 at byte 352)" in err
    assert os.listdir(tmp_path) == ["in.nii.gz"]


def test_an_extension_running_into_the_data_is_refused(tmp_path, capsys):
    raw = bytearray(base_bytes(1, extension=True))
    raw[352:356] = np.int32(4096).tobytes()
    code, out, err, _ = _run(tmp_path, capsys, bytes(raw))
    assert code == 2 and "extension at byte 352 (code 6) has esize 4096" in err, err


@pytest.mark.parametrize("klass", [nib.Nifti1Pair, nib.Nifti2Pair, nib.AnalyzeImage])
def test_pairs_and_analyze_are_read_exactly(tmp_path, klass):
    data = (np.arange(8 * 7 * 6) % 91).astype(np.int16).reshape(8, 7, 6)
    src = tmp_path / "pair.img"
    nib.save(klass(data, np.diag([2.0, 2, 2, 1])), src)
    out = tmp_path / "out.nii"
    assert main([str(src), str(out), "--spacing", "3", "3", "3", "--quiet"]) == 0
    vol = open_input(src, read_data=False)
    from bigresample.geometry import make_grid

    grid = make_grid(vol.shape, vol.spacing, np.array([3.0, 3, 3]), "center")
    expected = scipy_reference(data, grid, 1, "nearest")
    assert_matches_reference(np.asarray(nib.load(out).dataobj.get_unscaled()), expected, data, 1)


def test_a_pair_without_its_data_file(tmp_path, capsys):
    nib.save(nib.Nifti1Pair(np.zeros((4, 4, 4), np.int16), np.eye(4)), tmp_path / "p.img")
    os.unlink(tmp_path / "p.img")
    code = main([str(tmp_path / "p.hdr"), str(tmp_path / "o.nii"), "--z-spacing", "2", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and "its data file p.img is missing" in err and err.count("\n") == 1, err


@pytest.mark.parametrize("version", [1, 2])
def test_vox_offset_zero_in_a_nii_means_right_after_the_header(tmp_path, capsys, version):
    """nibabel would read the header's own bytes as voxels; the NIfTI C library reads from 352 (544)."""
    data = (np.arange(8 * 7 * 6) % 91).astype(np.int16).reshape(8, 7, 6)
    img = (nib.Nifti1Image if version == 1 else nib.Nifti2Image)(data, np.diag([2.0, 2, 2, 1]))
    raw = img.header.binaryblock + b"\0" * 4 + data.tobytes(order="F")  # vox_offset left 0
    code, out, err, path = _run(tmp_path, capsys, raw)
    assert code == 0, err
    assert f"data read from byte {352 if version == 1 else 544}, right after the header" in out
    vol = open_input(tmp_path / "in.nii")
    np.testing.assert_array_equal(vol.source[(slice(None),) * 3], data)
