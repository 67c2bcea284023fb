"""transform_files: each format means what it means to the tool that wrote it.

ITK/ANTs files are written by SimpleITK (``sitk.WriteTransform``, a vector
image through ``sitk.WriteImage``) and our map of random RAS points is
compared with SimpleITK's ``TransformPoint`` (LPS) on the same file; FSL and
LTA files with nitransforms' own mapping on small grids, and FLIRT on a case
whose answer is known by hand.  Every refusal is one line naming the file.
"""

import pickle
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from bigresample.registration import AffineMap, DisplacementField
from bigresample.transform_files import (FORMATS, Space, TransformError, describe, format_of, parse_spec,
                                         read_chain, read_map)

from .helpers import write_ome

LPS = np.array([-1.0, -1.0, 1.0])
MOVING = Space((20, 24, 18), np.array([[-1.2, 0, 0, 10], [0, 1.1, 0.1, -12], [0, -0.1, 1.3, -8], [0, 0, 0, 1]]))
REFERENCE = Space((16, 18, 14), np.array([[1.5, 0.1, 0, -11], [0, 1.4, 0, -13], [0.05, 0, 1.6, -10], [0, 0, 0, 1]]))


def _points(seed=0, n=50, scale=30.0):
    return np.random.default_rng(seed).uniform(-scale, scale, (n, 3))


def _sitk_map(t, ras):
    """SimpleITK's transform of RAS points (it works in LPS)."""
    return np.array([t.TransformPoint(tuple(float(v) for v in p * LPS)) for p in ras]) * LPS


def _chain(*specs, moving=MOVING, reference=REFERENCE):
    return read_chain(specs, moving=moving, reference=reference)


def _sitk_transforms(sitk):
    """One of each linear kind ITK writes, with a centre."""
    affine = sitk.AffineTransform(3)
    affine.SetMatrix([1.1, 0.1, -0.05, 0.02, 0.9, 0.1, 0.03, -0.1, 1.2])
    affine.SetTranslation([1.5, -2.0, 3.0])
    affine.SetCenter([4.0, -5.0, 6.0])
    euler = sitk.Euler3DTransform((1.0, 2.0, -3.0), 0.1, -0.2, 0.3, (4.0, 5.0, -6.0))
    euler_zyx = sitk.Euler3DTransform((1.0, 2.0, -3.0), 0.1, -0.2, 0.3, (4.0, 5.0, -6.0))
    euler_zyx.SetComputeZYX(True)
    versor = sitk.VersorRigid3DTransform((0.2, -0.1, 0.3, np.sqrt(1 - 0.14)), (2.0, -1.0, 0.5), (3.0, 1.0, -2.0))
    similarity = sitk.Similarity3DTransform(1.3, (0.3, 0.2, 0.9), 0.4, (1.0, 2.0, 3.0), (-1.0, 0.5, 2.0))
    return {"affine": affine, "euler": euler, "euler_zyx": euler_zyx, "versor": versor,
            "similarity": similarity, "translation": sitk.TranslationTransform(3, (1.0, -2.0, 4.0))}


KINDS = ["affine", "euler", "euler_zyx", "versor", "similarity", "translation"]


@pytest.mark.parametrize("suffix", [".txt", ".mat", ".tfm"])
@pytest.mark.parametrize("kind", KINDS)
def test_an_itk_linear_file_maps_points_as_simpleitk_does(tmp_path, kind, suffix):
    sitk = pytest.importorskip("SimpleITK")
    t = _sitk_transforms(sitk)[kind]
    path = tmp_path / f"{kind}{suffix}"
    sitk.WriteTransform(t, str(path))
    p = _points()
    np.testing.assert_allclose(_chain(path).apply(p), _sitk_map(t, p), atol=1e-9)
    np.testing.assert_allclose(_chain(f"[{path},1]").apply(_sitk_map(t, p)), p, atol=1e-9)


@pytest.mark.parametrize("order, mopt", [("<", 10), (">", 1010)])
def test_an_ants_float_mat_is_read_as_its_double_twin(tmp_path, order, mopt):
    """antsRegistration writes ``AffineTransform_float_3_3`` records of type 10 (MATLAB v4: little-endian
    single precision; the bytes antspyx's ``0GenericAffine.mat`` starts with; 1010 on a big-endian
    machine): SimpleITK's double file rewritten so, read to float32's precision."""
    sitk = pytest.importorskip("SimpleITK")
    t = _sitk_transforms(sitk)["affine"]
    sitk.WriteTransform(t, str(tmp_path / "double.mat"))
    params, fixed = list(t.GetParameters()), list(t.GetFixedParameters())

    def record(name, values):
        return np.array([mopt, len(values), 1, 0, len(name) + 1], order + "i4").tobytes() + name.encode() + \
            b"\0" + np.asarray(values, order + "f4").tobytes()

    (tmp_path / "0GenericAffine.mat").write_bytes(record("AffineTransform_float_3_3", params) + record("fixed", fixed))
    p = _points(3)
    np.testing.assert_allclose(_chain(tmp_path / "0GenericAffine.mat").apply(p), _sitk_map(t, p), atol=1e-4)
    assert "AffineTransform_float_3_3" in _chain(tmp_path / "0GenericAffine.mat").maps[0].source


def test_a_composite_file_applies_its_last_first_and_a_list_its_first_first(tmp_path):
    """An ITK composite file, as SimpleITK's CompositeTransform, applies its last transform first; a
    --transform list, as antsApplyTransforms' -t list, its first listed first."""
    sitk = pytest.importorskip("SimpleITK")
    ts = _sitk_transforms(sitk)
    composite = sitk.CompositeTransform([ts["affine"], ts["euler"], ts["similarity"]])
    sitk.WriteTransform(composite, str(tmp_path / "composite.txt"))
    for k in ("affine", "euler", "similarity"):
        sitk.WriteTransform(ts[k], str(tmp_path / f"{k}.mat"))
    p = _points(1)
    expected = _sitk_map(composite, p)
    np.testing.assert_allclose(_chain(tmp_path / "composite.txt").apply(p), expected, atol=1e-9)
    listed = _chain(*(tmp_path / f"{k}.mat" for k in ("similarity", "euler", "affine")))
    np.testing.assert_allclose(listed.apply(p), expected, atol=1e-9)


def _write_field(sitk, path, seed=0, shape=(9, 8, 7), oblique=False):
    """An LPS displacement field written by SimpleITK; its transform.  Its grid is exact in float32
    (NIfTI's header) unless ``oblique``: a rotated grid is stored rounded, and ITK takes a rotation
    out of the rounded sform where nibabel takes the sform as stored (a few 1e-7 apart)."""
    rng = np.random.default_rng(seed)
    d = rng.normal(0, 2.0, shape[::-1] + (3,))  # sitk's array order: z, y, x
    img = sitk.GetImageFromArray(d, isVector=True)
    img.SetSpacing((2.0, 2.5, 3.0))
    img.SetOrigin((-8.0, 6.0, -9.0))
    direction = np.linalg.qr(np.eye(3) + 0.1 * rng.standard_normal((3, 3)))[0] if oblique else \
        np.array([[0.0, -1, 0], [1, 0, 0], [0, 0, 1]])
    img.SetDirection(tuple(direction.ravel()))
    sitk.WriteImage(img, str(path))
    img = sitk.ReadImage(str(path))  # as the file holds it (NIfTI keeps the grid in float32)
    return sitk.DisplacementFieldTransform(sitk.Cast(img, sitk.sitkVectorFloat64)), img


def _inside_field(img, n=60, seed=2):
    """RAS points whose field index lies within half a voxel of the samples: there ITK's interpolator takes
    the edge samples (beyond, it gives no displacement, and bigresample refuses an output the field misses)."""
    shape = np.array(img.GetSize())
    idx = np.random.default_rng(seed).uniform(0, 1, (n, 3)) * shape - 0.5
    idx[: n // 4] = np.clip(np.round(idx[: n // 4]), -0.49, shape - 0.51)  # at the edges
    return np.array([img.TransformContinuousIndexToPhysicalPoint(tuple(v)) for v in idx]) * LPS


def test_an_itk_displacement_field_maps_points_as_simpleitk_does(tmp_path):
    sitk = pytest.importorskip("SimpleITK")
    t, img = _write_field(sitk, tmp_path / "warp.nii.gz")
    hdr = nib.load(tmp_path / "warp.nii.gz").header
    assert hdr.get_data_shape() == (9, 8, 7, 1, 3) and hdr["intent_code"] == 1007  # what ITK writes
    chain = _chain(tmp_path / "warp.nii.gz")
    assert isinstance(chain.maps[0], DisplacementField)
    p = _inside_field(img)
    np.testing.assert_allclose(chain.apply(p), _sitk_map(t, p), atol=1e-9)


def test_an_oblique_field_agrees_with_simpleitk_to_the_headers_float32(tmp_path):
    sitk = pytest.importorskip("SimpleITK")
    t, img = _write_field(sitk, tmp_path / "warp.nii.gz", oblique=True)
    p = _inside_field(img)
    np.testing.assert_allclose(_chain(tmp_path / "warp.nii.gz").apply(p), _sitk_map(t, p), atol=2e-5)


def test_a_field_then_an_affine_maps_points_as_simpleitk_does(tmp_path):
    sitk = pytest.importorskip("SimpleITK")
    field, img = _write_field(sitk, tmp_path / "warp.nii", seed=3)
    affine = sitk.AffineTransform(3)
    affine.SetMatrix([1.0, 0.02, 0.0, -0.01, 1.0, 0.03, 0.0, 0.0, 1.0])
    affine.SetTranslation([0.3, -0.2, 0.1])
    sitk.WriteTransform(affine, str(tmp_path / "affine.mat"))
    p = _inside_field(img)  # the field first, as antsApplyTransforms -t warp.nii -t affine.mat
    expected = _sitk_map(sitk.CompositeTransform([affine, field]), p)
    np.testing.assert_allclose(_chain(tmp_path / "warp.nii", tmp_path / "affine.mat").apply(p), expected, atol=1e-9)


def test_a_field_is_read_region_by_region_and_its_reader_pickles_without_data(tmp_path):
    sitk = pytest.importorskip("SimpleITK")
    _write_field(sitk, tmp_path / "warp.nii", seed=4)
    field = _chain(tmp_path / "warp.nii").maps[0]
    whole = np.asarray(nib.load(tmp_path / "warp.nii").dataobj)[:, :, :, 0, :] * LPS
    region = (slice(2, 5), slice(1, 3), slice(4, 7))
    np.testing.assert_array_equal(field.read(region), whole[region])
    reader = pickle.loads(pickle.dumps(field.read))
    assert reader._data is None
    np.testing.assert_array_equal(reader(region), whole[region])
    assert not isinstance(field.read._data, np.ndarray)  # a .nii: read at its offsets, never held whole


def test_a_small_gzipped_field_is_inflated_once(tmp_path, monkeypatch):
    sitk = pytest.importorskip("SimpleITK")
    _write_field(sitk, tmp_path / "warp.nii.gz", seed=4)
    loads = []
    real = nib.load
    monkeypatch.setattr(nib, "load", lambda *a, **k: loads.append(a) or real(*a, **k))
    field = _chain(tmp_path / "warp.nii.gz").maps[0]
    whole = np.asarray(real(tmp_path / "warp.nii.gz").dataobj)[:, :, :, 0, :] * LPS
    for z in range(7):
        np.testing.assert_array_equal(field.read((slice(0, 9), slice(0, 8), slice(z, z + 1))), whole[:, :, z:z + 1])
    assert len(loads) == 2 and isinstance(field.read._data, np.ndarray)  # the header, then the data once


def _ome_field(tmp_path, d_ras_xyz, affine, frame="RAS", units="micrometer"):
    """An OME-Zarr field (docs/registration.md): axes c z y x, the frame attribute; spacing in ``units``."""
    import zarr

    factor = {"micrometer": 1e3, "millimeter": 1.0}[units]
    d = d_ras_xyz * (LPS if frame == "LPS" else 1.0) * factor
    path = tmp_path / "field.ome.zarr"
    write_ome(path, np.ascontiguousarray(d.transpose(3, 2, 1, 0)), (1.0,) + tuple(np.diag(affine)[:3][::-1] * factor),
              units=units, axes="czyx")
    group = zarr.open_group(str(path), mode="r+")
    ms = group.attrs["ome"]
    transforms = ms["multiscales"][0]["datasets"][0]["coordinateTransformations"]
    transforms[1:] = [{"type": "translation", "translation": [0.0] + list(affine[:3, 3][::-1] * factor)}]
    group.attrs.update({"ome": ms, "bigresample": {"displacement_field": {"frame": frame}}})
    return path


@pytest.mark.parametrize("frame", ["RAS", "LPS"])
def test_an_ome_zarr_field_means_its_ras_displacements_in_mm(tmp_path, frame):
    rng = np.random.default_rng(5)
    d = rng.normal(0, 1.0, (6, 5, 4, 3))
    affine = np.diag([0.5, 0.4, 0.3, 1.0])
    affine[:3, 3] = (1.0, -2.0, 0.5)
    path = _ome_field(tmp_path, d, affine, frame=frame)
    field = _chain(path).maps[0]
    np.testing.assert_allclose(field.affine, affine, atol=1e-12)
    idx = np.array([[1.5, 2.25, 0.5], [0, 0, 0], [5, 4, 3]])
    world = idx @ affine[:3, :3].T + affine[:3, 3]
    expected = [_trilinear(d, v) for v in idx]
    np.testing.assert_allclose(field.apply(world) - world, expected, atol=1e-9)
    assert describe(path)["format"] == "OME-Zarr displacement field"


def _trilinear(d, v):
    i = np.floor(v).astype(int)
    t = v - i
    out = np.zeros(3)
    for c in np.ndindex(2, 2, 2):
        j = np.minimum(i + c, np.array(d.shape[:3]) - 1)
        out += d[tuple(j)] * np.prod(np.where(c, t, 1 - t))
    return out


def test_an_ome_zarr_image_without_the_field_attribute_is_refused(tmp_path):
    write_ome(tmp_path / "img.ome.zarr", np.zeros((3, 4, 4, 4), np.float32), (1, 1, 1, 1), axes="czyx")
    with pytest.raises(TransformError, match=r"img.ome.zarr: .*bigresample.displacement_field"):
        _chain(tmp_path / "img.ome.zarr")


def _fsl_scaled(space):
    a = space.affine
    zooms = np.sqrt((a[:3, :3] ** 2).sum(axis=0))
    s = np.diag(list(zooms) + [1])
    if np.linalg.det(a[:3, :3]) > 0:
        s[0, 0], s[0, 3] = -zooms[0], (space.shape[0] - 1) * zooms[0]
    return s


def test_a_flirt_translation_with_a_flipped_x_reference_is_known_by_hand(tmp_path):
    """Reference 10 voxels of 2 mm along x, stored neurological (positive determinant): FSL's x is
    ``(9 - i) * 2``; the input radiological (x = i * 2).  FLIRT's matrix moves input to reference by +4 mm
    in FSL's x, so reference voxel i samples the input at FSL x ``(9 - i) * 2 - 4``: input index
    ``7 - i``, world ``(7 - i) * 2`` for reference world ``i * 2``."""
    reference = Space((10, 4, 4), np.diag([2.0, 2.0, 2.0, 1.0]))
    moving = Space((10, 4, 4), np.diag([-2.0, 2.0, 2.0, 1.0]))
    (tmp_path / "flirt.mat").write_text("1 0 0 4\n0 1 0 0\n0 0 1 0\n0 0 0 1\n")
    chain = _chain(tmp_path / "flirt.mat", moving=moving, reference=reference)
    i = np.arange(10.0)
    p = np.c_[i * 2, np.zeros(10), np.zeros(10)]
    in_index = np.c_[7 - i, np.zeros(10), np.zeros(10)]
    np.testing.assert_allclose(chain.apply(p), in_index * (-2, 2, 2), atol=1e-12)
    assert format_of(tmp_path / "flirt.mat").name == "FSL FLIRT"


def _nib_image(space):
    return nib.Nifti1Image(np.zeros(space.shape, np.float32), space.affine)


def test_a_flirt_matrix_maps_points_as_nitransforms_does(tmp_path):
    fsl = pytest.importorskip("nitransforms.io.fsl")
    m = np.eye(4)
    m[:3, :3] += 0.05 * np.random.default_rng(6).standard_normal((3, 3))
    m[:3, 3] = (2.0, -1.0, 3.0)
    np.savetxt(tmp_path / "flirt.mat", m)
    for moving, reference in ((MOVING, REFERENCE), (REFERENCE, MOVING)):
        ras = fsl.FSLLinearTransform.from_filename(str(tmp_path / "flirt.mat")).to_ras(
            moving=_nib_image(moving), reference=_nib_image(reference))
        got = _chain(tmp_path / "flirt.mat", moving=moving, reference=reference).affine
        np.testing.assert_allclose(got, ras, atol=1e-9)


def test_an_inverted_flirt_matrix_takes_the_grids_in_the_roles_flirt_gave_them(tmp_path):
    """``[moving2ref.mat,1]`` brings an image of FLIRT's reference onto FLIRT's input grid: the run's input
    is then the matrix's reference, as ``convert_xfm -inverse`` and ``flirt -applyxfm`` would use it."""
    m = np.eye(4)
    m[:3, :3] += 0.05 * np.random.default_rng(8).standard_normal((3, 3))
    m[:3, 3] = (2.0, -1.0, 3.0)
    np.savetxt(tmp_path / "moving2ref.mat", m)
    np.savetxt(tmp_path / "ref2moving.mat", np.linalg.inv(m))  # what convert_xfm -inverse writes
    forward = _chain(tmp_path / "moving2ref.mat", moving=MOVING, reference=REFERENCE).affine
    back = _chain(f"[{tmp_path / 'moving2ref.mat'},1]", moving=REFERENCE, reference=MOVING).affine
    converted = _chain(tmp_path / "ref2moving.mat", moving=REFERENCE, reference=MOVING).affine
    np.testing.assert_allclose(back, np.linalg.inv(forward), atol=1e-9)
    np.testing.assert_allclose(back, converted, atol=1e-9)


def test_an_fsl_matrix_needs_both_grids(tmp_path):
    np.savetxt(tmp_path / "flirt.mat", np.eye(4))
    with pytest.raises(TransformError, match="flirt.mat: an FSL matrix needs"):
        read_chain([tmp_path / "flirt.mat"], moving=None, reference=REFERENCE)


def _lta_text(kind, matrix, src, dst):
    def geometry(space):
        a = space.affine[:3, :3]
        sizes = np.sqrt((a ** 2).sum(axis=0))
        cols = a / sizes
        cras = space.affine[:3, 3] + a @ (np.array(space.shape) / 2)
        return "\n".join(["valid = 1  # volume info valid", "filename = x.nii.gz",
                          "volume = {} {} {}".format(*space.shape), "voxelsize = {:.17g} {:.17g} {:.17g}".format(*sizes),
                          *(f"{n}ras   = {c[0]:.17g} {c[1]:.17g} {c[2]:.17g}" for n, c in zip("xyz", cols.T)),
                          "cras   = {:.17g} {:.17g} {:.17g}".format(*cras)])
    rows = "\n".join(" ".join(f"{v:.17g}" for v in r) for r in matrix)
    return (f"# transform file\ntype      = {kind} # {'LINEAR_RAS_TO_RAS' if kind else 'LINEAR_VOX_TO_VOX'}\n"
            f"nxforms   = 1\nmean      = 0.0000 0.0000 0.0000\nsigma     = 1.0000\n1 4 4\n{rows}\n"
            f"src volume info\n{geometry(src)}\ndst volume info\n{geometry(dst)}\n"
            "subject unknown\nfscale 0.100000\n")


@pytest.mark.parametrize("kind", [0, 1])
def test_an_lta_maps_points_as_nitransforms_does(tmp_path, kind):
    lta = pytest.importorskip("nitransforms.io.lta")
    ras = np.eye(4)
    ras[:3, :3] += 0.05 * np.random.default_rng(7).standard_normal((3, 3))
    ras[:3, 3] = (1.0, 2.0, -3.0)  # src (moving) RAS -> dst (reference) RAS
    # written as the tools write them: src, dst, and the matrix of its type
    matrix = ras if kind == 1 else np.linalg.inv(REFERENCE.affine) @ ras @ MOVING.affine
    (tmp_path / "reg.lta").write_text(_lta_text(kind, matrix, MOVING, REFERENCE))
    theirs = lta.FSLinearTransformArray.from_filename(str(tmp_path / "reg.lta")).to_ras()[0]
    got = read_chain([tmp_path / "reg.lta"], moving=None, reference=None).affine
    np.testing.assert_allclose(got, theirs, atol=1e-6)  # the LTA's geometry holds float32 voxel sizes
    np.testing.assert_allclose(got, np.linalg.inv(ras), atol=1e-6)


def test_a_voxel_to_voxel_lta_without_its_geometry_is_refused(tmp_path):
    text = _lta_text(0, np.eye(4), MOVING, REFERENCE).replace("valid = 1", "valid = 0")
    (tmp_path / "reg.lta").write_text(text)
    _refused(tmp_path / "reg.lta", "LINEAR_VOX_TO_VOX LTA without valid src and dst")
    (tmp_path / "tk.lta").write_text(text.replace("type      = 0", "type      = 14"))
    _refused(tmp_path / "tk.lta", "LTA type 14 is not read")


def test_a_plain_matrix_is_output_to_input_ras(tmp_path):
    m = np.eye(4)
    m[:3, 3] = (1, 2, 3)
    np.save(tmp_path / "m.npy", m)
    np.savetxt(tmp_path / "m.txt", m)
    for name in ("m.npy", "m.txt"):
        np.testing.assert_array_equal(_chain(tmp_path / name).affine, m)


def test_parse_spec_takes_ants_spelling_for_an_inverse():
    assert parse_spec("[a.mat,1]").inverse and not parse_spec("[ a.mat , 0 ]").inverse
    assert parse_spec("a.mat").path.name == "a.mat" and parse_spec(("a.mat", True)).inverse
    with pytest.raises(TransformError, match=r"\[PATH,0\] or \[PATH,1\]"):
        parse_spec("[a.mat,2]")


# ---------------------------------------------------------------- refusals: one line naming the file


def _refused(path, match, **kw):
    with pytest.raises(TransformError, match=match) as info:
        read_chain([path], moving=MOVING, reference=REFERENCE, **kw)
    assert str(path).split("[")[-1].split(",")[0] in str(info.value) and "\n" not in str(info.value)


def test_a_file_that_is_no_transform_is_refused(tmp_path):
    (tmp_path / "notes.txt").write_text("hello, world\n")
    _refused(tmp_path / "notes.txt", "not a transform file")
    (tmp_path / "anat.nii").write_bytes(b"")
    nib.save(nib.Nifti1Image(np.zeros((3, 3, 3), np.float32), np.eye(4)), tmp_path / "anat.nii")
    _refused(tmp_path / "anat.nii", r"shape \(3, 3, 3\), not a displacement field")
    (tmp_path / "t.h5").write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(100))
    _refused(tmp_path / "t.h5", "HDF5 transform files are not read")
    _refused(tmp_path / "missing.mat", "cannot read transform")


def test_an_inverse_asked_of_a_field_is_refused(tmp_path):
    nib.save(nib.Nifti1Image(np.zeros((3, 3, 3, 1, 3), np.float32), np.eye(4)), tmp_path / "warp.nii.gz")
    with pytest.raises(TransformError, match=r"warp.nii.gz.*cannot be inverted.*InverseWarp"):
        read_chain([f"[{tmp_path / 'warp.nii.gz'},1]"], moving=MOVING, reference=REFERENCE)


def test_a_field_that_is_not_3_components_is_refused(tmp_path):
    nib.save(nib.Nifti1Image(np.zeros((3, 3, 3, 1, 2), np.float32), np.eye(4)), tmp_path / "warp.nii.gz")
    _refused(tmp_path / "warp.nii.gz", "needs 3 components; got 2")


def test_a_truncated_field_is_refused_when_named(tmp_path):
    nib.save(nib.Nifti1Image(np.zeros((4, 4, 4, 1, 3), np.float32), np.eye(4)), tmp_path / "warp.nii")
    data = (tmp_path / "warp.nii").read_bytes()
    (tmp_path / "warp.nii").write_bytes(data[:-50])
    _refused(tmp_path / "warp.nii", "truncated")


def test_a_truncated_or_corrupt_itk_file_is_refused(tmp_path):
    sitk = pytest.importorskip("SimpleITK")
    t = _sitk_transforms(sitk)["affine"]
    sitk.WriteTransform(t, str(tmp_path / "a.mat"))
    sitk.WriteTransform(t, str(tmp_path / "a.txt"))
    data = (tmp_path / "a.mat").read_bytes()
    for cut in (len(data) - 5, 60, 21):
        (tmp_path / "cut.mat").write_bytes(data[:cut])
        _refused(tmp_path / "cut.mat", "truncated")
    text = (tmp_path / "a.txt").read_text()
    lines = text.splitlines()
    (tmp_path / "short.txt").write_text("\n".join(lines[:3] + [" ".join(lines[3].split()[:8])] + lines[4:]) + "\n")
    _refused(tmp_path / "short.txt", "needs 12 parameters; got 7")
    (tmp_path / "head.txt").write_text("\n".join(lines[:3]) + "\n")
    _refused(tmp_path / "head.txt", "no Parameters line")
    (tmp_path / "bspline.txt").write_text(text.replace("AffineTransform", "BSplineTransform"))
    _refused(tmp_path / "bspline.txt", "'BSplineTransform_double_3_3' is not read")


@pytest.mark.parametrize("name, text", [
    ("nan.txt", "#Insight Transform File V1.0\nTransform: AffineTransform_double_3_3\n"
                "Parameters: 1 0 0 0 1 0 0 0 nan 0 0 0\nFixedParameters: 0 0 0\n"),
    ("inf.mat", "1 0 0 inf\n0 1 0 0\n0 0 1 0\n0 0 0 1\n"),
    ("nan.txt", " ".join(["nan"] * 16)),
])
def test_an_affine_holding_nan_or_inf_is_refused(tmp_path, name, text):
    (tmp_path / name).write_text(text)
    _refused(tmp_path / name, "not finite")


def test_the_built_in_formats_are_asked_in_order_and_describe_names_them(tmp_path):
    names = [f.name for f in FORMATS]
    assert names.index("FSL FLIRT") < names.index("4x4 matrix")  # a text .mat is FLIRT's
    np.save(tmp_path / "m.npy", np.eye(4))
    d = describe("[" + str(tmp_path / "m.npy") + ",1]")
    assert d["format"] == "4x4 matrix" and d["inverse"] and len(d["sha256"]) == 64
    assert isinstance(read_map(parse_spec(tmp_path / "m.npy"), moving=None, reference=None), AffineMap)


@pytest.mark.slow  # a registration: about 7 s on the loaded 2-core machine; skipped without antspyx
def test_antspyx_files_in_ants_order_map_points_as_ants_apply_transforms_does(tmp_path):
    """A registration antspyx computes (an affine .mat in float, a warp .nii.gz): the input point each output
    voxel samples, read off ``ants.apply_transforms`` of images holding their own LPS coordinates (linear
    interpolation of a linear function is exact).  antsApplyTransforms' ``-t W -t A`` samples at ``A(W(p))``:
    its first listed is applied first to the output point, and so is --transform's (read_chain)."""
    ants = pytest.importorskip("ants")
    from scipy import ndimage

    x = np.zeros((16, 16, 16), np.float32)
    x[4:12, 5:11, 3:13] = 1
    x = ndimage.gaussian_filter(x, 1.5)
    fixed = ants.from_numpy(x, spacing=(1.0, 1.0, 1.0), origin=(2.0, -3.0, 1.0))
    moving = ants.from_numpy(ndimage.shift(x, (1.0, -0.5, 0.5)), spacing=(1.0, 1.0, 1.0), origin=(2.0, -3.0, 1.0))
    reg = ants.registration(fixed, moving, type_of_transform="SyN", outprefix=str(tmp_path / "reg_"))
    forward = reg["fwdtransforms"]  # [1Warp.nii.gz, 0GenericAffine.mat]
    assert forward[0].endswith("Warp.nii.gz") and format_of(Path(forward[1])).name == "ITK binary .mat"
    origin = np.array([-10.0, -15.0, -11.0])
    grid = np.indices((40, 40, 40)).astype(np.float64)
    sampled = np.stack([ants.apply_transforms(fixed, ants.from_numpy(grid[c] + origin[c], origin=tuple(origin)),
                                              forward, interpolator="linear").numpy() for c in range(3)], axis=-1)
    p = (np.indices(x.shape).reshape(3, -1).T + (2.0, -3.0, 1.0)) * LPS
    ours = _chain(*forward).apply(p) * LPS
    np.testing.assert_allclose(ours, sampled.reshape(-1, 3), atol=1e-5)  # ANTs resamples in float32 here
    assert np.abs(_chain(*forward[::-1]).apply(p) * LPS - sampled.reshape(-1, 3)).max() > 1e-3
