"""``--mode itk`` (``bigresample.bounds``): outside the input, ITK's rule.

An output voxel whose continuous input index is more than half a voxel beyond
the input (``x < -0.5`` or ``x >= n - 0.5`` on some axis, ITK's
``IsInsideBuffer``) gets ``cval``; the others are scipy's ``mode='nearest'``
sample.  The reference is the whole-array scipy call with that mask
(``conftest.itk_reference``), and SimpleITK's own ``Resample``.  It is the
default of ``--reference`` runs, and only of those.
"""

import json
import pickle

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from bigresample import labels as label_methods
from bigresample import resample
from bigresample.cli import main
from bigresample.engine import Resampler, Workspace
from bigresample.geometry import make_grid, reference_grid
from bigresample.job import plan_job
from bigresample.lazy import resample_array
from bigresample.request import Request
from bigresample.splines import ORDERS
from bigresample.transform import AffineResampler

from .helpers import (assert_matches_reference, blockwise, interpolated_reference, itk_inside, itk_reference,
                      mode_reference, rotation, smooth_volume)
from .helpers import write_nifti as write


def label_blockwise(resampler, data, block):
    return blockwise(resampler, data, block, ws=Workspace())

A_IN = np.array([[1.0, 0, 0, -3.0], [0, 1.1, 0, 2.0], [0, 0, 1.3, 4.0], [0, 0, 0, 1]])


def larger_rotated_reference(shape=(30, 28, 22)):
    """A reference turned 17 and 9 degrees, with finer voxels, reaching beyond the input on every side."""
    a = rotation(2, 17) @ rotation(0, 9) @ np.diag([0.9, 1.0, 1.1, 1.0])
    a[:3, 3] = [-8.0, -5.0, -3.0]
    return shape, a


def itk_whole(data, g, order, cval=0.0, dtype=None):
    return itk_reference(data, g.matrix, g.offset, g.out_shape, order, cval, dtype)


def _the_mask_is_not_trivial(g, in_shape):
    """Some voxels outside, some inside, and some inside but beyond the edge voxel's centre
    (within half a voxel: 'nearest' there, not cval, where 'constant' would write cval)."""
    ok = itk_inside(in_shape, g.matrix, g.offset, g.out_shape)
    assert ok.any() and not ok.all()
    o = np.stack(np.meshgrid(*[np.arange(m) for m in g.out_shape], indexing="ij"), -1).astype(np.float64)
    x = o @ g.matrix.T + g.offset
    band = ok & np.any((x < 0) | (x > np.array(in_shape) - 1), axis=-1)
    assert band.any()


@pytest.mark.parametrize("order", ORDERS)
def test_blocks_on_a_larger_rotated_reference_equal_the_whole_array_rule(order):
    data = smooth_volume((24, 20, 16), seed=order)
    g = reference_grid(data.shape, A_IN, *larger_rotated_reference())
    _the_mask_is_not_trivial(g, data.shape)
    r = AffineResampler(g, order, "itk", cval=-300.0)
    assert (r.mode, r.itk, r.boundary) == ("nearest", True, "itk")
    expected = itk_whole(data, g, order, cval=-300.0)
    for block in ((7, 9, 5), (30, 28, 22), (1, 28, 3)):
        got = blockwise(r, data, block)
        assert_matches_reference(got, expected, data, order, cval=-300.0)
        if order == 0:
            np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("order", ORDERS)
def test_blocks_on_a_larger_axis_aligned_reference_take_the_separable_engine(order):
    data = smooth_volume((24, 20, 16), seed=order)
    m = np.diag([0.7, -1.2, 0.9, 1.0])  # y flipped
    m[:3, 3] = [-3.3, 24.1, -2.2]
    out_shape = (44, 24, 24)
    g = reference_grid(data.shape, A_IN, out_shape, A_IN @ m)
    assert g.separable() is not None
    _the_mask_is_not_trivial(g, data.shape)
    r = Resampler(g.separable(), order, "itk", cval=-300.0)
    expected = itk_whole(data, g, order, cval=-300.0)
    for block in ((7, 9, 5), (44, 24, 24), (3, 1, 24)):
        got = blockwise(r, data, block)
        assert_matches_reference(got, expected, data, order, cval=-300.0)
        if order == 0:
            np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("dtype", [np.uint8, np.int16])
def test_integer_outputs_store_cval_as_scipy_stores_values(dtype):
    data = smooth_volume((24, 20, 16))
    g = reference_grid(data.shape, A_IN, *larger_rotated_reference())
    got = blockwise(AffineResampler(g, 1, "itk", cval=-20.6), data, (9, 9, 9), dtype=dtype)
    expected = itk_whole(data, g, 1, cval=-20.6, dtype=dtype)
    assert_matches_reference(got, expected, data, 1, cval=-20.6)
    assert (got == (0 if dtype == np.uint8 else -21)).sum() >= (~itk_inside(data.shape, g.matrix, g.offset,
                                                                              g.out_shape)).sum()


def _slab(tmp_path):
    """A small 'EPI slab': 3 mm voxels, a head-shaped blob cut by the slab's top and bottom."""
    x, y, z = np.meshgrid(np.arange(24), np.arange(26), np.arange(8), indexing="ij")
    head = ((x - 11.5) / 10) ** 2 + ((y - 12.5) / 12) ** 2 + ((z - 3.5) / 9) ** 2 < 1
    data = np.where(head, 500 + 50 * np.sin(x / 3.0) * np.cos(y / 4.0), 0).astype(np.float32)
    a_in = np.diag([3.0, 3.0, 3.0, 1.0])
    a_in[:3, 3] = [-34.5, -37.5, -10.5]
    src = write(tmp_path / "slab.nii", data, a_in)
    a_ref = np.diag([2.0, 2.0, 2.0, 1.0])  # a '2 mm template': the whole head, far beyond the slab in z
    a_ref[:3, 3] = [-40.0, -44.0, -40.0]
    ref = write(tmp_path / "t_2mm.nii", np.zeros((41, 45, 41), np.uint8), a_ref)
    return data, a_in, src, a_ref, ref


def test_a_larger_reference_is_not_smeared_by_default(tmp_path, capsys):
    """The issue's case (35% of the output non-zero with --mode nearest, 9.8% with constant), small:
    the default is ITK's rule, whose non-zero fraction is constant's, not nearest's."""
    data, a_in, src, a_ref, ref = _slab(tmp_path)
    fractions = {}
    for mode in (None, "nearest", "constant", "itk"):
        out = tmp_path / f"out-{mode}.nii"
        assert main([str(src), str(out), "--reference", str(ref), "--quiet"]
                    + ([] if mode is None else ["--mode", mode])) == 0
        got = np.asanyarray(nib.load(out).dataobj)
        fractions[mode] = float((got != 0).mean())
        g = reference_grid(data.shape, a_in, got.shape, a_ref)
        if mode in (None, "itk"):
            assert_matches_reference(got, itk_whole(data, g, 1), data, 1)
        else:  # an explicit scipy mode is scipy's, exactly
            expected = ndimage.affine_transform(data, g.homogeneous, output_shape=g.out_shape, order=1, mode=mode)
            assert_matches_reference(got, expected, data, 1)
    print(f"non-zero output voxels: {fractions}")
    assert fractions[None] == fractions["itk"]
    assert fractions["constant"] <= fractions["itk"] < 1.3 * fractions["constant"]
    assert fractions["nearest"] > 2 * fractions["itk"]


@pytest.mark.parametrize("angles", [(17, 9), (-31, 4)])
def test_order_1_agrees_with_simpleitk_at_every_voxel_borders_included(angles):
    sitk = pytest.importorskip("SimpleITK")
    rng = np.random.default_rng(7)
    data = ndimage.gaussian_filter(rng.standard_normal((14, 12, 9)), 1.0) * 100 + 50  # no voxel is 0
    a_in = rotation(1, 5) @ np.diag([1.0, 1.1, 1.3, 1.0])
    a_in[:3, 3] = [-3.0, 2.0, 4.0]
    a_ref = rotation(2, angles[0]) @ rotation(0, angles[1]) @ np.diag([0.8, 0.9, 1.0, 1.0])
    a_ref[:3, 3] = [-9.0, -6.0, -4.0]
    ref_shape = (30, 27, 22)

    def image(array, affine):
        spacing = np.sqrt((affine[:3, :3] ** 2).sum(axis=0))
        img = sitk.GetImageFromArray(np.ascontiguousarray(array.T))  # sitk's arrays are z, y, x
        img.SetSpacing(spacing.tolist())
        img.SetDirection((affine[:3, :3] / spacing).ravel().tolist())
        img.SetOrigin(affine[:3, 3].tolist())
        return img

    target = image(np.zeros(ref_shape), a_ref)
    expected = sitk.GetArrayFromImage(
        sitk.Resample(image(data, a_in), target, sitk.Transform(), sitk.sitkLinear, 0.0, sitk.sitkFloat64)).T
    g = reference_grid(data.shape, a_in, ref_shape, a_ref)
    _the_mask_is_not_trivial(g, data.shape)
    got = blockwise(AffineResampler(g, 1, "itk", 0.0), data, (8, 7, 6))
    assert ((got == 0) == (expected == 0)).all(), "ITK's inside and outside voxels differ"
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-9 * np.ptp(data))
    assert (expected == 0).any() and (expected != 0).any()


@pytest.mark.parametrize("method", ["nearest", "linear", "cubic", "mode"])
@pytest.mark.parametrize("rotated", [False, True])
def test_every_label_method_takes_the_rule(method, rotated):
    if method == "mode" and rotated:
        pytest.skip("--labels mode needs an axis-aligned grid")
    rng = np.random.default_rng(3)
    labels = ndimage.zoom(rng.integers(0, 5, (5, 4, 3)), 4, order=0).astype(np.int16)[:18, :15, :11]
    if rotated:
        g = reference_grid(labels.shape, A_IN, *larger_rotated_reference((20, 18, 14)))
    else:  # downsampling by 2 (mode's), the grid shifted beyond the input on every side; x(0) = -0.8:
        # outside by ITK's rule, while its footprint [-1.8, 0.2) holds input voxels
        g = reference_grid(labels.shape, A_IN, (11, 10, 8), A_IN @ np.array(
            [[2.0, 0, 0, -0.8], [0, 2.0, 0, -1.9], [0, 0, 2.0, -2.3], [0, 0, 0, 1]]))
    grid = g if rotated else g.separable()
    _the_mask_is_not_trivial(g, labels.shape)
    ok = itk_inside(labels.shape, g.matrix, g.offset, g.out_shape)
    cval = 9
    if method == "nearest":
        got = blockwise(Resampler(grid, 0, "itk", cval) if not rotated else AffineResampler(grid, 0, "itk", cval),
                        labels, (5, 4, 3))
        expected = itk_whole(labels, g, 0, cval=cval)
    else:
        got = label_blockwise(label_methods.make(method, grid, "itk", cval), labels, (5, 4, 3))
        if method == "mode":
            expected = mode_reference(labels, grid, cval)
        else:
            expected, gap = interpolated_reference(labels, g, label_methods.ORDERS[method], "nearest", 0)
            differ = (got != expected) & ok
            assert not differ.any() or gap[differ].max() <= 1e-9
            expected = np.where(ok, got, expected)  # the tie-forgiving comparison above; the rule below
        expected = np.where(ok, expected, cval)
    np.testing.assert_array_equal(got, expected)
    assert (got == cval).any()


def test_a_4d_input_and_an_ome_zarr_output_take_the_rule(tmp_path):
    from bigresample import ome

    data = smooth_volume((24, 20, 16, 2))
    src = write(tmp_path / "in.nii", data, A_IN)
    ref_shape, a_ref = larger_rotated_reference()
    ref = write(tmp_path / "ref.nii", np.zeros(ref_shape, np.uint8), a_ref)
    g = reference_grid(data.shape[:3], A_IN, ref_shape, a_ref)
    expected = itk_whole(data, g, 3, cval=-5.0)
    resample(src, tmp_path / "out.nii", reference=ref, order=3, cval=-5.0, chunks=(11, 9, 7))
    assert_matches_reference(np.asanyarray(nib.load(tmp_path / "out.nii").dataobj), expected, data, 3, cval=-5.0)
    resample(src, tmp_path / "out.zarr", reference=ref, order=3, cval=-5.0, chunks=(11, 9, 7))
    got = ome.open_image(tmp_path / "out.zarr")[(slice(None),) * 4]
    assert_matches_reference(got, expected, data, 3, cval=-5.0)


def test_the_lazy_api_takes_the_rule_by_name_and_spacing_grids_keep_nearest():
    """The spacing grids' samples lie within half a voxel of the input, but for grid='origin'
    upsampling: its last samples (up to x = n - r/2) lie beyond, and ITK's rule cuts them."""
    data = smooth_volume((20, 14, 10))
    r = (0.4, 1.0, 2.0)
    got = resample_array(data, (1, 1, 1), r, grid="origin", mode="itk", chunks=(9, 5, 3)).compute()
    g = make_grid(data.shape, (1, 1, 1), r, "origin")
    expected = itk_reference(data, np.diag(r), np.zeros(3), g.out_shape, 1)
    assert_matches_reference(got, expected, data, 1)
    assert (got[-1] == 0).all() and (got[:-1] != 0).all()
    for grid in ("center", "zoom"):
        for spacing in ((0.4, 1.0, 2.0), (0.3, 0.7, 3.1), (1.9, 0.55, 0.45)):
            itk = resample_array(data, (1, 1, 1), spacing, grid=grid, mode="itk", chunks=(9, 5, 3)).compute()
            nearest = resample_array(data, (1, 1, 1), spacing, grid=grid, chunks=(9, 5, 3)).compute()
            np.testing.assert_array_equal(itk, nearest)


def test_the_default_is_itk_with_a_reference_only_and_shows_everywhere(tmp_path, capsys):
    data, a_in, src, a_ref, ref = _slab(tmp_path)
    assert main([str(src), str(tmp_path / "a.nii"), "--reference", str(ref), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert ("Boundary mode: itk (as ITK: scipy's nearest within half a voxel of the input, cval=0 beyond; "
            "--mode nearest repeats the edge instead)") in out
    assert main([str(src), str(tmp_path / "b.nii"), "--spacing", "2", "2", "2", "--dry-run"]) == 0
    assert "Boundary mode: nearest\n" in capsys.readouterr().out
    assert main([str(src), str(tmp_path / "c.nii"), "--reference", str(ref), "--cval", "-1", "--quiet"]) == 0
    assert main(["info", str(tmp_path / "c.nii")]) == 0
    assert "grid reference, order 1, mode itk, cval -1.0" in capsys.readouterr().out
    from bigresample import provenance

    step = provenance.from_header(nib.load(tmp_path / "c.nii").header)["steps"][-1]
    assert (step["resampling"]["mode"], step["resampling"]["cval"]) == ("itk", -1.0)


def test_the_rule_is_part_of_the_journal_identity(tmp_path):
    data, a_in, src, a_ref, ref = _slab(tmp_path)
    ids = {}
    for mode in (None, "itk", "nearest"):
        job = plan_job(Request.make(src, tmp_path / "out.nii", reference=ref, mode=mode))
        try:
            ids[mode] = json.dumps(job.identity(job.stages[0]), sort_keys=True)
            assert job.stages[0].resampler.boundary == ("nearest" if mode == "nearest" else "itk")
        finally:
            job.volume.close()
    assert ids[None] == ids["itk"] != ids["nearest"]


def test_an_itk_resampler_travels_to_workers_with_its_rule(tmp_path):
    data = smooth_volume((24, 20, 16))
    g = reference_grid(data.shape, A_IN, *larger_rotated_reference())
    for r in (AffineResampler(g, 1, "itk", 2.0), label_methods.make("linear", g, "itk", 2)):
        back = pickle.loads(pickle.dumps(r))
        assert back.itk and back.boundary == "itk" and back.cval == 2.0
        region = (slice(0, 30), slice(0, 28), slice(0, 22))
        np.testing.assert_array_equal(back.compute(data.astype(np.int16), region),
                                      r.compute(data.astype(np.int16), region))


@pytest.mark.cluster
def test_a_cluster_run_takes_the_rule(tmp_path):
    distributed = pytest.importorskip("distributed")
    data, a_in, src, a_ref, ref = _slab(tmp_path)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                                  dashboard_address=None) as cluster, distributed.Client(cluster) as client:
        resample(src, tmp_path / "cluster.nii", reference=ref, client=client, chunks=(20, 20, 20),
                 tmp_dir=tmp_path)
    got = np.asanyarray(nib.load(tmp_path / "cluster.nii").dataobj)
    g = reference_grid(data.shape, a_in, got.shape, a_ref)
    assert_matches_reference(got, itk_whole(data, g, 1), data, 1)


def test_refusals_name_the_rule(tmp_path, capsys):
    data, a_in, src, a_ref, ref = _slab(tmp_path)
    labels = write(tmp_path / "lab.nii", (data > 0).astype(np.int16), a_in)
    for argv, message in (
        ([str(src), "--mode", "itkk"], "mode must be one of nearest, "),
        ([str(labels), "--cval", "nan"], "--cval nan needs a float output (e.g. --dtype float32); the output type "
                                         "is int16"),
        ([str(labels), "--labels", "linear", "--cval", "0.5"], "--labels linear: --cval is the label outside the "
                                                               "volume and must be a whole number"),
    ):
        assert main([argv[0], str(tmp_path / "out.nii"), "--reference", str(ref), *argv[1:]]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and message in err, err
        assert not (tmp_path / "out.nii").exists()
    assert main([str(src), str(tmp_path / "out.nii"), "--reference", str(ref), "--mode", "itkk"]) == 2
    assert ", grid-constant, itk; got 'itkk'" in capsys.readouterr().err


@pytest.mark.parametrize("path", ["separable", "general"])
def test_the_comparisons_at_exactly_half_a_voxel_are_itks(path):
    """x = -0.5 is inside (the edge value), x = n - 0.5 is outside (cval): ITK's
    ``start - 0.5 <= x < end + 0.5``; and SimpleITK agrees on the same grid."""
    data = smooth_volume((6, 5, 4)).astype(np.float64) + 1000  # no voxel is 0
    out_shape = tuple(2 * n + 1 for n in data.shape)  # x(o) = -0.5 + o / 2: from -0.5 to n - 0.5
    g = reference_grid(data.shape, np.eye(4), out_shape, np.array(
        [[0.5, 0, 0, -0.5], [0, 0.5, 0, -0.5], [0, 0, 0.5, -0.5], [0, 0, 0, 1]]))
    r = Resampler(g.separable(), 1, "itk", 0.0) if path == "separable" else AffineResampler(g, 1, "itk", 0.0)
    got = blockwise(r, data, (4, 3, 5))
    np.testing.assert_array_equal(got[:-1, :-1, :-1], ndimage.affine_transform(
        data, g.homogeneous, output_shape=out_shape, order=1, mode="nearest")[:-1, :-1, :-1])
    assert got[0, 0, 0] == data[0, 0, 0]  # x = -0.5 on every axis: inside
    for a in range(3):
        last = [slice(None)] * 3
        last[a] = -1
        assert (got[tuple(last)] == 0).all()  # x = n - 0.5 on this axis: outside
    sitk = pytest.importorskip("SimpleITK")
    image = sitk.GetImageFromArray(np.ascontiguousarray(data.T))
    target = sitk.Image(list(out_shape), sitk.sitkFloat64)
    target.SetSpacing([0.5] * 3)
    target.SetOrigin([-0.5] * 3)
    expected = sitk.GetArrayFromImage(sitk.Resample(image, target, sitk.Transform(), sitk.sitkLinear, 0.0,
                                                    sitk.sitkFloat64)).T
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-9)


def test_the_report_of_a_label_map_on_a_reference_says_what_lies_beyond(tmp_path, capsys):
    data, a_in, src, a_ref, ref = _slab(tmp_path)
    a_fine = a_in.copy()
    a_fine[:3, :3] /= 2  # 1.5 mm voxels: the 2 mm reference downsamples them, as --labels mode needs
    labels = write(tmp_path / "lab.nii", (data > 0).astype(np.int16) * 4, a_fine)
    assert main([str(labels), str(tmp_path / "a.nii"), "--reference", str(ref), "--labels", "mode",
                 "--dry-run"]) == 0
    assert ("Boundary mode: itk (the label cval=0 where an output voxel's centre is more than half a voxel "
            "beyond the input, or its footprint is empty)\n") in capsys.readouterr().out
    assert main([str(labels), str(tmp_path / "b.nii"), "--reference", str(ref), "--labels", "mode", "--mode",
                 "nearest", "--dry-run"]) == 0
    assert "Boundary mode: not used by --labels mode (an empty footprint gets cval=0)\n" in capsys.readouterr().out
