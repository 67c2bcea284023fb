"""``--transform``: registrations applied to each output point, through the command line and ``resample``.

Checked against the whole-array reference (``helpers.registered_reference``: ``map_coordinates`` at the
coordinates the chain gives, ITK's rule outside), not against another bigresample run.  The file
formats themselves are tests/test_transform_files.py's.
"""

import hashlib

import nibabel as nib
import numpy as np
import pytest

import bigresample
from bigresample import cli
from bigresample.job import plan_job
from bigresample.request import Request

from .helpers import assert_matches_reference, registered_reference, rotation, smooth_volume, write_nifti

IN_AFFINE = np.array([[0.5, 0, 0, -6.0], [0, 0.6, 0, -5.0], [0, 0, 0.8, -4.0], [0, 0, 0, 1]])


def _matrix(degrees=(8.0, -5.0, 12.0), shift=(0.7, -0.4, 0.3), scale=1.05):
    m = np.eye(4)
    m[:3, :3] = scale * rotation(0, degrees[0])[:3, :3] @ rotation(1, degrees[1])[:3, :3] @ rotation(2, degrees[2])[:3, :3]
    m[:3, 3] = shift
    return m


@pytest.fixture
def scene(tmp_path):
    data = smooth_volume((24, 20, 14), seed=3).astype(np.float32) * 100
    src = write_nifti(tmp_path / "moving.nii", data, IN_AFFINE)
    ref_affine = np.array([[0.7, 0.1, 0, -5.5], [-0.1, 0.7, 0, -4.0], [0, 0, 0.9, -3.0], [0, 0, 0, 1]])
    ref = write_nifti(tmp_path / "fixed.nii", np.zeros((18, 16, 12), np.float32), ref_affine)
    return tmp_path, data, src, ref, ref_affine


def _save(path, m):
    np.savetxt(path, m)
    return path


@pytest.mark.parametrize("order", [0, 1, 3])
def test_a_matrix_onto_a_reference_equals_map_coordinates_at_the_chain(scene, order):
    tmp, data, src, ref, ref_affine = scene
    m = _matrix()
    t = _save(tmp / "m.txt", m)
    out = tmp / "out.nii"
    assert cli.main([str(src), str(out), "--reference", str(ref), "--transform", str(t), "--order", str(order)]) == 0
    got = np.asarray(nib.load(out).dataobj)
    expected = registered_reference(data, IN_AFFINE, (18, 16, 12), ref_affine, [m], order)
    assert_matches_reference(got, expected, data, order, cval=0.0)
    assert np.allclose(nib.load(out).affine, ref_affine)


def test_a_chain_applies_the_first_listed_first_as_ants_and_brackets_invert(scene):
    """``--transform A --transform B`` samples at ``B(A(p))``: antsApplyTransforms' order (the transform
    files' tests measure it with antspyx)."""
    tmp, data, src, ref, ref_affine = scene
    a, b = _matrix(), _matrix((0, 10, -4), (1.5, 0.2, -0.8), 0.95)
    ta, tb = _save(tmp / "a.txt", a), _save(tmp / "b.txt", np.linalg.inv(b))
    out = tmp / "out.nii"
    bigresample.resample(src, out, reference=ref, transforms=[ta, f"[{tb},1]"], order=1)
    got = np.asarray(nib.load(out).dataobj)
    expected = registered_reference(data, IN_AFFINE, (18, 16, 12), ref_affine, [b, a], 1)  # b(a(p))
    assert_matches_reference(got, expected, data, 1, cval=0.0)
    swapped = registered_reference(data, IN_AFFINE, (18, 16, 12), ref_affine, [a, b], 1)
    assert np.abs(swapped - expected).max() > 1.0  # the order matters on this chain


def test_a_spacing_target_keeps_its_grid_and_header(scene, tmp_path):
    tmp, data, src, _, _ = scene
    m = _matrix((3, 0, 0), (0.2, 0.1, 0))
    t = _save(tmp / "m.txt", m)
    plain, moved = tmp / "plain.nii", tmp / "moved.nii"
    bigresample.resample(src, plain, spacing=(0.4, 0.4, 0.5))
    bigresample.resample(src, moved, spacing=(0.4, 0.4, 0.5), transforms=[t], mode="nearest", order=1)
    hp, hm = nib.load(plain).header, nib.load(moved).header
    assert hp.get_data_shape() == hm.get_data_shape()
    assert np.array_equal(hp.get_sform(), hm.get_sform()) and np.array_equal(hp.get_qform(), hm.get_qform())
    expected = registered_reference(data, IN_AFFINE, hm.get_data_shape(), nib.load(moved).affine, [m], 1,
                                    mode="nearest")
    assert_matches_reference(np.asarray(nib.load(moved).dataobj), expected, data, 1)


def test_the_identity_and_provenance_carry_each_file_digest(scene, capsys):
    tmp, data, src, ref, _ = scene
    t = _save(tmp / "m.txt", _matrix())
    job = plan_job(Request.make(src, tmp / "o.nii", reference=ref, transforms=[t]))
    try:
        (desc,) = job.identity(job.stages[0])["transforms"]
    finally:
        job.volume.close()
    assert desc["sha256"] == hashlib.sha256(t.read_bytes()).hexdigest() and desc["inverse"] is False
    _save(t, _matrix((1, 2, 3)))  # another file: another output, never resumed from the first
    job2 = plan_job(Request.make(src, tmp / "o.nii", reference=ref, transforms=[t]))
    job2.volume.close()
    assert job2.identity(job2.stages[0]) != job.identity(job.stages[0])
    out = tmp / "o.nii"
    assert cli.main([str(src), str(out), "--reference", str(ref), "--transform", str(t)]) == 0
    assert "Registration: 1 transform" in capsys.readouterr().out
    assert cli.main(["info", str(out)]) == 0
    assert f"transform: {t} (4x4 matrix), sha256 {hashlib.sha256(t.read_bytes()).hexdigest()}" in capsys.readouterr().out


@pytest.mark.parametrize("extra, message", [
    (["--transform", "missing.txt"], "transform file not found: missing.txt"),
    (["--transform", "[m.txt,2]"], "[PATH,0] or [PATH,1]"),
    (["--transform", "m.txt", "--antialias"], "--antialias cannot be combined with --transform"),
    (["--transform", "junk.bin"], "not a transform file bigresample reads"),
])
def test_bad_transforms_are_refused_in_one_line(scene, capsys, monkeypatch, extra, message):
    tmp, data, src, ref, _ = scene
    monkeypatch.chdir(tmp)
    _save(tmp / "m.txt", _matrix())
    (tmp / "junk.bin").write_bytes(b"\x00\x01garbage" * 10)
    out = tmp / "o.nii"
    assert cli.main([str(src), str(out), "--reference", str(ref), *extra]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    assert not out.exists() and not list(tmp.glob(".o.nii*"))


def test_dry_run_reads_the_transform_not_the_voxels(scene, capsys):
    tmp, data, src, ref, _ = scene
    t = _save(tmp / "m.txt", _matrix())
    assert cli.main([str(src), str(tmp / "o.nii"), "--reference", str(ref), "--transform", str(t), "--dry-run"]) == 0
    assert "Registration: 1 transform" in capsys.readouterr().out
    assert not (tmp / "o.nii").exists()


@pytest.mark.slow
def test_everything_else_composes_4d_labels_and_pyramids(scene):
    """Each volume of a 4-D input through the same transform; a label map's linear method on the
    registered grid equals its whole-array definition; each pyramid level of an OME-Zarr output is
    the input through the transform onto that level's grid."""
    from bigresample.job import plan_job

    from .helpers import interpolated_reference, ome_array

    tmp, data, src, ref, ref_affine = scene
    m = _matrix((0, 0, 9), (0.3, -0.2, 0.1))
    t = _save(tmp / "m.txt", m)
    chain = [m]
    four = np.stack([data, 2 * data + 1], axis=-1)
    src4 = write_nifti(tmp / "four.nii", four, IN_AFFINE)
    out4 = tmp / "four_out.nii"
    bigresample.resample(src4, out4, reference=ref, transforms=[t], chunks=(7, 16, 5))
    got = np.asarray(nib.load(out4).dataobj)
    for k in range(2):
        expected = registered_reference(four[..., k], IN_AFFINE, (18, 16, 12), ref_affine, chain, 1)
        assert_matches_reference(got[..., k], expected, four[..., k], 1, cval=0.0)

    labels = (data // 25).astype(np.int16)
    lab = write_nifti(tmp / "labels.nii", labels, IN_AFFINE)
    out = tmp / "labels_out.nii"
    bigresample.resample(lab, out, reference=ref, transforms=[t], labels="linear", mode="nearest")
    job = plan_job(Request.make(lab, tmp / "x.nii", reference=ref, transforms=[t], labels="linear", mode="nearest"))
    job.volume.close()
    want, gap = interpolated_reference(labels, job.grid, 1, "nearest", 0.0)
    got = np.asarray(nib.load(out).dataobj)
    assert np.array_equal(got[gap > 1e-9], want[gap > 1e-9])

    zarr_out = tmp / "pyramid.zarr"
    bigresample.resample(src, zarr_out, spacing=(0.6, 0.6, 0.8), transforms=[t], levels=2, mode="nearest")
    for level, spacing in ((0, (0.6, 0.6, 0.8)), (1, (1.2, 1.2, 1.6))):
        plain = tmp / f"plain{level}.nii"
        bigresample.resample(src, plain, spacing=spacing)  # the level's grid, unregistered
        expected = registered_reference(data, IN_AFFINE, nib.load(plain).shape, nib.load(plain).affine, chain, 1,
                                        mode="nearest")
        got = np.asarray(ome_array(zarr_out, level)[0])
        assert_matches_reference(got, expected, data, 1)


def test_an_fsl_matrix_needs_the_reference_it_was_computed_against(scene, capsys):
    """FLIRT's matrix is in the scaled voxels of its -in and -ref images: with a --spacing target there is
    no -ref image to read it against, so it is refused rather than read against the wrong grid."""
    tmp, data, src, ref, _ = scene
    flirt = tmp / "flirt.mat"
    np.savetxt(flirt, np.eye(4), fmt="%.6f")
    out = tmp / "o.nii"
    assert cli.main([str(src), str(out), "--spacing", "0.6", "0.6", "0.8", "--transform", str(flirt)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "flirt.mat: an FSL matrix needs --reference" in err[0], err
    assert not out.exists()
    assert cli.main([str(src), str(out), "--reference", str(ref), "--transform", str(flirt)]) == 0
