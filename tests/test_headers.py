"""Header fidelity over the variants found in the wild, each checked with nibabel."""

import json

import nibabel as nib
import numpy as np
import pytest

from bigresample import make_grid, resample, voxel_spacing
from bigresample.nifti import NiftiWriter

from .helpers import assert_matches_reference, scipy_reference

AFFINE = np.array([[-0.1, 0.0, 0.0, 12.0], [0.0, 0.1, 0.01, -8.0], [0.0, -0.01, 0.1, 3.0], [0, 0, 0, 1]])


def _data(shape=(14, 12, 10), dtype=np.float32):
    rng = np.random.default_rng(11)
    return (rng.random(shape) * 500).astype(dtype)


def _check(src_path, out_path, order=1):
    """Output of ``spacing=(None, None, 0.07)`` (in mm) against the reference."""
    src, out = nib.load(src_path), nib.load(out_path)
    raw = np.asanyarray(src.dataobj.get_unscaled())
    raw = raw.astype(raw.dtype.newbyteorder("="))  # outputs are written in native order
    spacing = voxel_spacing(src.affine)
    g = make_grid(src.shape[:3], spacing, (spacing[0], spacing[1], 0.07), "center")
    assert out.shape == g.out_shape + src.shape[3:]
    np.testing.assert_allclose(out.affine, g.output_affine(src.affine), atol=1e-5)
    assert_matches_reference(np.asanyarray(out.dataobj.get_unscaled()), scipy_reference(raw, g, order, "nearest"),
                             raw, order)
    return src, out


def test_big_endian_input(tmp_path):
    data = _data()
    hdr = nib.Nifti1Header(endianness=">")
    hdr.set_data_shape(data.shape)
    hdr.set_data_dtype(">f4")
    hdr.set_qform(AFFINE, 1)
    hdr.set_sform(AFFINE, 1)
    with NiftiWriter(tmp_path / "be.nii", hdr) as w:
        w.write(data.astype(">f4"))
    assert nib.load(tmp_path / "be.nii").header.endianness == ">"
    resample(tmp_path / "be.nii", tmp_path / "out.nii", spacing=(None, None, 0.07))
    src, out = _check(tmp_path / "be.nii", tmp_path / "out.nii")
    assert out.header.endianness == "<" and out.get_data_dtype() == np.float32


@pytest.mark.parametrize("cls", [nib.Nifti1Pair, nib.AnalyzeImage], ids=["nifti-pair", "analyze"])
def test_hdr_img_pairs(tmp_path, cls):
    img = cls(_data(), np.diag([0.1, 0.1, 0.1, 1]))
    nib.save(img, tmp_path / "pair.img")
    assert (tmp_path / "pair.hdr").exists()
    resample(tmp_path / "pair.hdr", tmp_path / "out.nii.gz", spacing=(None, None, 0.07))
    _check(tmp_path / "pair.hdr", tmp_path / "out.nii.gz")


def test_nifti2_input(tmp_path):
    img = nib.Nifti2Image(_data(), AFFINE)
    img.header["descrip"] = b"nifti2 in"
    nib.save(img, tmp_path / "n2.nii")
    resample(tmp_path / "n2.nii", tmp_path / "out.nii", spacing=(None, None, 0.07))
    _, out = _check(tmp_path / "n2.nii", tmp_path / "out.nii")
    assert out.header["descrip"] == b"nifti2 in"


@pytest.mark.parametrize("qcode, scode", [(1, 0), (0, 2), (0, 0), (1, 4)])
def test_qform_sform_codes_are_kept(tmp_path, qcode, scode):
    data = _data()
    hdr = nib.Nifti1Header()
    hdr.set_data_shape(data.shape)
    hdr.set_data_dtype(np.float32)
    hdr.set_zooms((0.1, 0.1, 0.1))
    hdr.set_qform(AFFINE if qcode else None, qcode)
    hdr.set_sform(AFFINE if scode else None, scode)
    with NiftiWriter(tmp_path / "codes.nii", hdr) as w:  # nibabel's saver would add an sform
        w.write(data)
    resample(tmp_path / "codes.nii", tmp_path / "out.nii", spacing=(None, None, 0.07))
    out = nib.load(tmp_path / "out.nii")
    assert int(out.header["qform_code"]) == qcode and int(out.header["sform_code"]) == scode
    if qcode or scode:
        _check(tmp_path / "codes.nii", tmp_path / "out.nii")
    else:  # neither: only the spacing is meaningful
        np.testing.assert_allclose(out.header.get_zooms()[:3], [0.1, 0.1, 0.07], rtol=1e-5)


def test_scaled_integers(tmp_path):
    data = np.random.default_rng(2).integers(-2000, 2000, size=(14, 12, 10)).astype(np.int16)
    hdr = nib.Nifti1Header()
    hdr.set_data_shape(data.shape)
    hdr.set_data_dtype(np.int16)
    hdr.set_qform(AFFINE, 1)
    hdr.set_slope_inter(0.25, 100.0)
    with NiftiWriter(tmp_path / "scaled.nii", hdr) as w:
        w.write(data)
    resample(tmp_path / "scaled.nii", tmp_path / "out.nii", spacing=(None, None, 0.07), order=3)
    _, out = _check(tmp_path / "scaled.nii", tmp_path / "out.nii", order=3)
    assert (out.dataobj.slope, out.dataobj.inter) == (0.25, 100.0)


def test_microns_units(tmp_path):
    aff = AFFINE.copy()
    aff[:3, :3] *= 1000
    img = nib.Nifti1Image(_data(), aff)
    img.header.set_xyzt_units("micron", "sec")
    nib.save(img, tmp_path / "um.nii")
    resample(tmp_path / "um.nii", tmp_path / "out.nii", spacing=(None, None, 0.07))
    out = nib.load(tmp_path / "out.nii")
    assert out.header.get_xyzt_units() == ("micron", "sec")
    np.testing.assert_allclose(voxel_spacing(out.affine), [100, 100.49876, 70], rtol=1e-5)


def test_4d_with_a_time_step(tmp_path):
    img = nib.Nifti1Image(_data((10, 9, 8, 4)), AFFINE)
    img.header.set_xyzt_units("mm", "msec")
    zooms = list(img.header.get_zooms())
    zooms[3] = 750.0
    img.header.set_zooms(zooms)
    img.header["toffset"] = 12.5
    nib.save(img, tmp_path / "t.nii.gz")
    resample(tmp_path / "t.nii.gz", tmp_path / "out.nii.gz", spacing=(None, None, 0.07))
    _, out = _check(tmp_path / "t.nii.gz", tmp_path / "out.nii.gz")
    assert out.header.get_zooms()[3] == pytest.approx(750.0)
    assert out.header.get_xyzt_units() == ("mm", "msec")
    assert float(out.header["toffset"]) == pytest.approx(12.5)


def test_header_extensions_are_kept(tmp_path):
    img = nib.Nifti1Image(_data(), AFFINE)
    img.header.extensions.append(nib.nifti1.Nifti1Extension("comment", b"first"))
    img.header.extensions.append(nib.nifti1.Nifti1Extension("afni", b"<AFNI_attributes/>"))
    nib.save(img, tmp_path / "ext.nii.gz")
    resample(tmp_path / "ext.nii.gz", tmp_path / "out.nii.gz", spacing=(None, None, 0.07))
    _, out = _check(tmp_path / "ext.nii.gz", tmp_path / "out.nii.gz")
    # the input's, in their order, then the provenance record (bigresample.provenance)
    assert [e.get_code() for e in out.header.extensions] == [6, 4, 6]
    assert out.header.extensions[0].get_content() == b"first"
    assert json.loads(out.header.extensions[2].get_content())["steps"][-1]["input"]["name"] == "ext.nii.gz"
