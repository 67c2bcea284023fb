"""``--transform`` against SimpleITK on files SimpleITK writes: the whole run, file to file.

SimpleITK writes the affine (``.txt``, ``.mat``) and the displacement field (a vector image, as ITK
writes them); bigresample applies them onto a fixed image's grid; ``sitk.Resample`` with the same
transforms (``CompositeTransform([T2, T1])``: T1 applied first, as ``--transform T1 --transform T2`` and
antsApplyTransforms' ``-t T1 -t T2``)
gives the expected output.  Compared on the voxels whose input point (as SimpleITK maps it) lies 3
voxels inside the input: order 1 within 1e-4 of the range, order 0 equal on >= 99.5%, order 3 within
2e-3 (ITK's B-spline is not scipy's at the edges, nor its prefilter's tail: the issue's bounds).
"""

import nibabel as nib
import numpy as np
import pytest

import bigresample

from .helpers import smooth_volume, write_nifti

sitk = pytest.importorskip("SimpleITK")

IN_AFFINE = np.array([[0.5, 0.02, 0, -9.0], [-0.02, 0.5, 0, -8.0], [0, 0, 0.6, -7.0], [0, 0, 0, 1]])
FIXED_AFFINE = np.array([[0.55, 0.05, 0, -8.0], [-0.05, 0.55, 0, -7.5], [0, 0, 0.65, -6.0], [0, 0, 0, 1]])
IN_SHAPE, FIXED_SHAPE = (36, 32, 24), (30, 28, 20)
INTERP = {0: "sitkNearestNeighbor", 1: "sitkLinear", 3: "sitkBSpline"}
MARGIN = 3


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("sitk")
    data = (smooth_volume(IN_SHAPE, seed=5) * 100).astype(np.float32)
    moving = write_nifti(tmp / "moving.nii", data, IN_AFFINE)
    fixed = write_nifti(tmp / "fixed.nii", np.zeros(FIXED_SHAPE, np.float32), FIXED_AFFINE)
    return tmp, data, moving, fixed


def _affine_transform(seed=0):
    rng = np.random.default_rng(seed)
    t = sitk.AffineTransform(3)
    m = np.eye(3) + 0.04 * rng.standard_normal((3, 3))
    t.SetMatrix(tuple(m.ravel()))
    t.SetCenter(tuple(rng.uniform(-3, 3, 3)))
    t.SetTranslation(tuple(rng.uniform(-0.8, 0.8, 3)))
    return t


def _field_image(seed=0, spacing=1.5):
    """A smooth displacement field (LPS mm) covering the fixed image's field of view with room to spare."""
    shape = (18, 17, 14)
    g = np.meshgrid(*[np.linspace(0, np.pi, n) for n in shape], indexing="ij")
    rng = np.random.default_rng(seed)
    a = rng.uniform(0.3, 0.9, 3)
    d = np.stack([a[0] * np.sin(g[1] + 0.3) * np.cos(g[2]), a[1] * np.cos(g[0]) * np.sin(g[2] + 0.2),
                  a[2] * np.sin(g[0] + g[1])], axis=-1)
    img = sitk.GetImageFromArray(np.ascontiguousarray(d.transpose(2, 1, 0, 3)), isVector=True)
    img.SetSpacing((spacing,) * 3)
    img.SetOrigin((12.0, 11.0, -9.0))  # LPS: x and y run towards the left and back from here
    direction = np.diag([-1.0, -1.0, 1.0])  # the field's axes run the fixed image's way (RAS in LPS terms)
    img.SetDirection(tuple(direction.ravel()))
    return img


def _run(images, paths, sitk_transforms, order, tmp_name):
    tmp, data, moving, fixed = images
    out = tmp / f"{tmp_name}_{order}.nii"
    out.unlink(missing_ok=True)
    bigresample.resample(moving, out, reference=fixed, transforms=[str(p) for p in paths], order=order)
    got = np.asarray(nib.load(out).dataobj, dtype=np.float64)
    m, f = sitk.ReadImage(str(moving)), sitk.ReadImage(str(fixed))
    chain = sitk.CompositeTransform(list(sitk_transforms)[::-1])  # ITK's order: the last applied first
    expected = sitk.GetArrayFromImage(sitk.Resample(m, f, chain, getattr(sitk, INTERP[order]), 0.0,
                                                    sitk.sitkFloat64)).T
    # each output voxel's input index as SimpleITK maps it: the chain as a displacement field on the fixed
    # grid (ITK's TransformToDisplacementField), then the moving image's index of the point (LPS)
    disp = sitk.GetArrayFromImage(sitk.TransformToDisplacementField(
        chain, sitk.sitkVectorFloat64, f.GetSize(), f.GetOrigin(), f.GetSpacing(), f.GetDirection()))
    idx = np.stack(np.meshgrid(*[np.arange(n, dtype=np.float64) for n in FIXED_SHAPE], indexing="ij"), -1)
    f_dir = np.array(f.GetDirection()).reshape(3, 3) * np.array(f.GetSpacing())
    points = idx @ f_dir.T + np.array(f.GetOrigin()) + disp.transpose(2, 1, 0, 3)
    m_dir = np.array(m.GetDirection()).reshape(3, 3) * np.array(m.GetSpacing())
    x = (points - np.array(m.GetOrigin())) @ np.linalg.inv(m_dir).T
    inside = np.all((x >= MARGIN) & (x <= np.array(IN_SHAPE) - 1 - MARGIN), axis=-1)
    assert inside.mean() > 0.3, "the interior must be a good part of the output"
    span = float(np.ptp(data))
    a, b = got[inside], expected[inside]
    if order == 0:
        assert np.mean(a == b) >= 0.995, np.mean(a == b)
    else:
        worst = float(np.abs(a - b).max()) / span
        assert worst <= (1e-4 if order == 1 else 2e-3), worst


@pytest.mark.parametrize("suffix", [".txt", ".mat"])
@pytest.mark.parametrize("order", [0, 1, 3])
def test_an_affine_simpleitk_wrote(images, suffix, order):
    tmp = images[0]
    t = _affine_transform(1)
    path = tmp / f"affine{suffix}"
    sitk.WriteTransform(t, str(path))
    _run(images, [path], [t], order, f"affine{suffix[1:]}")


@pytest.mark.parametrize("order", [0, 1, 3])
def test_a_field_and_an_affine_as_ants_lists_them(images, order):
    """``--transform warp --transform affine``, ANTs' ``-t 1Warp -t 0GenericAffine``: the field applied first."""
    tmp = images[0]
    field_img = _field_image(2)
    warp = tmp / "warp.nii.gz"
    sitk.WriteImage(field_img, str(warp))
    field = sitk.DisplacementFieldTransform(sitk.Cast(sitk.ReadImage(str(warp)), sitk.sitkVectorFloat64))
    t = _affine_transform(3)
    path = tmp / "affine.txt"
    sitk.WriteTransform(t, str(path))
    _run(images, [warp, path], [field, t], order, "field_affine")
    _run(images, [warp], [sitk.DisplacementFieldTransform(
        sitk.Cast(sitk.ReadImage(str(warp)), sitk.sitkVectorFloat64))], 1, "field")
