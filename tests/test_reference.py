"""Resampling onto a reference grid (any orientation) equals the whole-array
``scipy.ndimage.affine_transform`` with the composed affine ``A_in^-1 @ A_ref``."""

import itertools

import nibabel as nib
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy import ndimage

from bigresample import resample
from bigresample.cli import main
from bigresample.geometry import reference_grid
from bigresample.splines import MODES, ORDERS
from bigresample.transform import AffineResampler

from .helpers import (
    A_IN,
    assert_matches_reference,
    blockwise,
    journal_blocks,
    oblique_reference,
    rotation,
    run_cli,
    smooth_volume,
    whole,
    write_nifti,
)


@pytest.mark.slow
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("order", ORDERS)
def test_blocks_on_an_oblique_grid_equal_one_whole_affine_transform(order, mode):
    # large enough that a block's window (with the halo of orders 4 and 5) is inside the volume
    data = smooth_volume((90, 80, 70) if order < 4 else (130, 120, 100), seed=order)
    ref_shape, a_ref = oblique_reference((70, 75, 60) if order < 4 else (46, 57, 34))
    g = reference_grid(data.shape, A_IN, ref_shape, a_ref)
    r = AffineResampler(g, order, mode, cval=-300.0)
    # the blocks read windows, not the volume: the check is not trivially true
    # a small block around the output voxel that samples the input's centre
    o = np.linalg.solve(g.matrix, (np.array(data.shape) - 1) / 2 - g.offset)
    o = np.clip(np.rint(o).astype(int), 2, np.array(ref_shape) - 3)
    middle = tuple(slice(int(c) - 2, int(c) + 2) for c in o)
    assert np.prod([s.stop - s.start for s in r.input_region(middle)]) < data.size
    got = blockwise(r, data, (23, 19, 17))
    expected = whole(data, g, order, mode, cval=-300.0)
    assert_matches_reference(got, expected, data, order, cval=-300.0)
    if order == 0:  # same coordinates (scipy's arithmetic), same tap: identical
        np.testing.assert_array_equal(got, expected)


@pytest.mark.slow
@given(
    shape=st.tuples(st.integers(1, 9), st.integers(1, 80), st.integers(60, 90)),
    out_shape=st.tuples(st.integers(1, 40), st.integers(1, 12), st.integers(1, 50)),
    angles=st.tuples(*[st.floats(-180, 180)] * 3),
    scale=st.tuples(*[st.floats(0.3, 3.0)] * 3),
    shift=st.tuples(*[st.floats(-20, 20)] * 3),
    block=st.tuples(st.integers(1, 40), st.integers(1, 12), st.integers(1, 50)),
    order=st.sampled_from(ORDERS),
    mode=st.sampled_from(MODES),
)
def test_any_shapes_orientations_and_blocks_match_the_whole_array_call(shape, out_shape, angles, scale, shift,
                                                                       block, order, mode):
    data = smooth_volume(shape, seed=1)
    a_ref = rotation(0, angles[0]) @ rotation(1, angles[1]) @ rotation(2, angles[2]) @ np.diag(
        [0.1 * scale[0], 0.1 * scale[1], 0.12 * scale[2], 1.0])
    a_ref[:3, 3] = A_IN[:3, 3] + np.array(shift) * 0.1
    g = reference_grid(shape, A_IN, out_shape, a_ref)
    r = AffineResampler(g, order, mode, cval=5.0)
    got = blockwise(r, data, block)
    assert_matches_reference(got, whole(data, g, order, mode, cval=5.0), data, order, cval=5.0)


def test_nearest_neighbour_ties_fall_as_in_scipy():
    # twice the spacing, half a voxel off: every coordinate is k + 0.5
    data = smooth_volume((100, 90, 80))
    a_ref = A_IN @ np.array([[2, 0, 0, 0.5], [0, 2, 0, 0.5], [0, 0, 2, -0.5], [0, 0, 0, 1]])
    g = reference_grid(data.shape, A_IN, (50, 45, 41), a_ref)
    got = blockwise(AffineResampler(g, 0, "nearest"), data, (13, 45, 7))
    np.testing.assert_array_equal(got, whole(data, g, 0, "nearest"))


@pytest.mark.parametrize("dtype", [np.uint8, np.int16])
def test_integer_output_is_rounded_and_saturated_as_scipy(dtype):
    data = smooth_volume((80, 70, 66), dtype=np.float32) / 4 + 100
    g = reference_grid(data.shape, A_IN, *oblique_reference((40, 50, 30)))
    r = AffineResampler(g, 3, "constant", cval=0.0)
    got = blockwise(r, data, (17, 50, 9), dtype=dtype)
    assert_matches_reference(got, whole(data, g, 3, "constant", 0.0, dtype), data, 3)


def test_4d_volumes_and_nan_as_cval():
    data = smooth_volume((70, 66, 64, 3))
    g = reference_grid(data.shape[:3], A_IN, *oblique_reference((40, 50, 30)))
    r = AffineResampler(g, 3, "constant", cval=np.nan)
    got = blockwise(r, data, (20, 17, 30))
    expected = whole(data, g, 3, "constant", np.nan)
    assert np.isnan(expected).any()
    np.testing.assert_array_equal(np.isnan(got), np.isnan(expected))
    assert_matches_reference(got, expected, data, 3)  # NaN where scipy has NaN, checked too


def test_a_block_far_outside_the_input_is_the_edge_or_cval():
    data = smooth_volume((90, 80, 70))
    a_ref = A_IN.copy()
    a_ref[:3, 3] += [20.0, 0.0, 0.0]  # 200 voxels beyond x's end
    g = reference_grid(data.shape, A_IN, (30, 30, 30), a_ref)
    for mode in ("nearest", "grid-constant", "constant", "mirror"):
        got = blockwise(AffineResampler(g, 3, mode, 2.0), data, (10, 30, 30))
        assert_matches_reference(got, whole(data, g, 3, mode, 2.0), data, 3, cval=2.0)


def test_the_planned_window_bounds_every_block_window():
    data_shape = (400, 300, 200)
    g = reference_grid(data_shape, A_IN, *oblique_reference((120, 130, 90)))
    r = AffineResampler(g, 3, "nearest")
    for block in [(120, 130, 11), (30, 20, 90), (7, 130, 3)]:
        bound = r.window_shape(block)
        assert np.prod(bound) < np.prod(data_shape) / 2
        for start in itertools.product(*[range(0, m, b) for m, b in zip(g.out_shape, block)]):
            win = r.window(tuple(slice(i, min(i + b, m)) for i, b, m in zip(start, block, g.out_shape)))
            assert all(b - a <= w for (a, b), w in zip(win, bound))


# --------------------------------------------------------------------------
# files and command line
# --------------------------------------------------------------------------


def test_cli_reference_equals_affine_transform_and_takes_the_reference_header(tmp_path, capsys):
    data = smooth_volume((90, 80, 70))
    src = write_nifti(tmp_path / "in.nii", data, A_IN)
    ref_shape, a_ref = oblique_reference((40, 50, 30))
    ref = write_nifti(tmp_path / "ref.nii.gz", np.zeros(ref_shape, np.uint8), a_ref, qcode=1, scode=4)
    out = tmp_path / "out.nii.gz"
    assert main([str(src), str(out), "--reference", str(ref), "--order", "3", "--chunks", "40", "13", "8"]) == 0
    report = capsys.readouterr().out
    assert (f"Reference grid: {ref}, shape (40, 50, 30), rotated 19.22 degrees relative to the input "
            "(its header only: the reference's voxels are neither read nor checked)\n") in report
    assert "Grid: reference" in report
    img = nib.load(out)
    np.testing.assert_allclose(img.affine, a_ref, atol=1e-6)
    assert img.header.get_sform(coded=True)[1] == 4 and img.header.get_qform(coded=True)[1] == 1
    assert img.get_data_dtype() == np.float32
    g = reference_grid(data.shape, A_IN, ref_shape, a_ref)
    assert_matches_reference(np.asanyarray(img.dataobj), whole(data, g, 3, "itk"), data, 3)


def test_a_reference_in_microns_is_the_same_physical_grid(tmp_path):
    data = smooth_volume((70, 66, 64))
    src = write_nifti(tmp_path / "in.nii", data, A_IN)
    ref_shape, a_ref = oblique_reference((30, 20, 25))
    a_um = a_ref.copy()
    a_um[:3, :] *= 1000
    ref = write_nifti(tmp_path / "ref.nii", np.zeros(ref_shape, np.int16), a_um, units="micron")
    res = resample(src, tmp_path / "out.nii", reference=ref, order=1)
    img = nib.load(tmp_path / "out.nii")
    assert img.header.get_xyzt_units()[0] == "mm"  # the input's units are kept
    np.testing.assert_allclose(img.affine, a_ref, atol=1e-6)
    g = reference_grid(data.shape, A_IN, ref_shape, a_ref)
    assert_matches_reference(np.asanyarray(img.dataobj), whole(data, g, 1, "itk"), data, 1)
    assert res.grid == "reference"
    np.testing.assert_allclose(res.out_spacing_mm, [0.13, 0.11, 0.15])


def test_an_axis_aligned_reference_in_a_4d_run_with_antialias(tmp_path):
    data = smooth_volume((80, 70, 66, 2))
    src = write_nifti(tmp_path / "in.nii", data, A_IN)
    a_ref = A_IN @ np.array([[2.5, 0, 0, 3.2], [0, 1.0, 0, -0.5], [0, 0, 0.5, 0.25], [0, 0, 0, 1]])
    ref = write_nifti(tmp_path / "ref.nii", np.zeros((30, 70, 120), np.float32), a_ref)
    resample(src, tmp_path / "out.nii", reference=ref, order=3, antialias=True)
    got = np.asanyarray(nib.load(tmp_path / "out.nii").dataobj)
    assert got.shape == (30, 70, 120, 2)
    # the affines as stored (float32): the y offset is -0.5 give or take their rounding, on the
    # edge of ITK's rule (-0.5 <= x), where the stored values decide
    g = reference_grid(data.shape[:3], nib.load(src).affine, (30, 70, 120), nib.load(ref).affine)
    # scikit-image's rule, on x only (2.5x down): sigma (2.5 - 1) / 2
    smoothed = ndimage.gaussian_filter(data.astype(np.float64), (0.75, 0, 0, 0), mode="nearest", truncate=4.0)
    assert_matches_reference(got, whole(smoothed, g, 3, "itk", dtype=np.float32), data, 3)


def test_an_ome_zarr_output_on_a_rotated_reference_keeps_the_affine(tmp_path):
    from bigresample import ome

    data = smooth_volume((70, 66, 64))
    src = write_nifti(tmp_path / "in.nii", data, A_IN)
    ref_shape, a_ref = oblique_reference((30, 20, 25))
    ref = write_nifti(tmp_path / "ref.nii", np.zeros(ref_shape, np.int16), a_ref)
    import zarr

    assert main([str(src), str(tmp_path / "out.zarr"), "--reference", str(ref), "--quiet"]) == 0
    got = ome.open_image(tmp_path / "out.zarr")[(slice(None),) * 3]
    attrs = zarr.open_group(str(tmp_path / "out.zarr"), mode="r").attrs["bigresample"]
    np.testing.assert_allclose(attrs["nifti_affine"], a_ref, atol=1e-6)
    assert attrs["axis_aligned"] is False
    g = reference_grid(data.shape, A_IN, ref_shape, a_ref)
    assert_matches_reference(got, whole(data, g, 1, "itk"), data, 1)


@pytest.mark.parametrize("extra, message", [
    (["--z-spacing", "0.2"], "give either --reference or a spacing/--shape, not both"),
    (["--grid", "zoom"], "--grid zoom has no meaning with --reference"),
])
def test_reference_with_another_target_is_refused(tmp_path, capsys, extra, message):
    src = write_nifti(tmp_path / "in.nii", smooth_volume((10, 10, 10)), A_IN)
    assert main([str(src), str(tmp_path / "out.nii"), "--reference", str(src)] + extra) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err
    assert not (tmp_path / "out.nii").exists()


def test_a_missing_reference_is_named(tmp_path, capsys):
    src = write_nifti(tmp_path / "in.nii", smooth_volume((10, 10, 10)), A_IN)
    assert main([str(src), str(tmp_path / "out.nii"), "--reference", str(tmp_path / "nope.nii")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "reference file not found" in err and "nope.nii" in err


def test_levels_with_a_reference_is_refused(tmp_path):
    src = write_nifti(tmp_path / "in.nii", smooth_volume((10, 10, 10)), A_IN)
    with pytest.raises(ValueError, match="--levels needs a spacing or --shape"):
        resample(src, tmp_path / "out.zarr", reference=src, levels=2)


@pytest.mark.slow
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("order", ORDERS)
def test_an_axis_aligned_reference_takes_the_separable_engine_with_the_same_values(order, mode):
    from bigresample.engine import Resampler

    data = smooth_volume((50, 40, 30), seed=order)
    rng = np.random.default_rng(order)
    for _ in range(3):
        m = np.eye(4)
        m[:3, :3] = np.diag(rng.uniform(0.3, 3, 3) * rng.choice([-1, 1], 3))  # flips too
        m[:3, 3] = rng.uniform(-10, 60, 3)
        out_shape = tuple(int(v) for v in rng.integers(1, 40, 3))
        g = reference_grid(data.shape, A_IN, out_shape, A_IN @ m)
        separable = g.separable()
        assert separable is not None
        got = blockwise(Resampler(separable, order, mode, 3.0), data, (7, 9, 5))
        expected = whole(data, g, order, mode, cval=3.0)
        assert_matches_reference(got, expected, data, order, cval=3.0)
        if order == 0:  # order 1 sums per axis: equal to rounding (one float32 ulp seen)
            np.testing.assert_array_equal(got, expected)
    assert reference_grid(data.shape, A_IN, *oblique_reference()).separable() is None


def test_dry_run_with_a_reference_reports_its_plan_and_writes_nothing(tmp_path, capsys):
    src = write_nifti(tmp_path / "in.nii", smooth_volume((60, 50, 40)), A_IN)
    ref_shape, a_ref = oblique_reference((30, 20, 25))
    ref = write_nifti(tmp_path / "ref.nii", np.zeros(ref_shape, np.int16), a_ref)
    assert main([str(src), str(tmp_path / "out.nii"), "--reference", str(ref), "--order", "3", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "Output shape: (30, 20, 25) (float32)" in out and "rotated" in out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.nii", "ref.nii"]


def test_label_ties_on_a_decimal_oblique_grid_fall_as_in_scipy(tmp_path):
    """Coordinates that land on a voxel edge (exactly 0 here, -1.7e-16 summed in
    another order) decide between a label and cval: the sum must be scipy's."""
    rng = np.random.default_rng(11)
    a_in = np.diag([0.3, 0.7, 0.9, 1.0])
    labels = rng.integers(0, 40, (12, 11, 10)).astype(np.uint8)
    src = write_nifti(tmp_path / "in.nii", labels, a_in)
    a_ref = np.array([[-0.9, 0.7, -0.2, 4.5], [1.1, -1.2, -1.0, 1.7], [0.3, -0.6, -0.2, 0.3], [0, 0, 0, 1]])
    ref = write_nifti(tmp_path / "ref.nii", np.zeros((12, 11, 10), np.uint8), a_ref, qcode=0)
    assert main([str(src), str(tmp_path / "out.nii"), "--reference", str(ref), "--labels", "--mode", "constant",
                 "--quiet"]) == 0
    a_ref = nib.load(ref).affine  # as stored (float32)
    expected = ndimage.affine_transform(labels, np.linalg.solve(a_in, a_ref), output_shape=(12, 11, 10), order=0,
                                        mode="constant", output=np.uint8)
    np.testing.assert_array_equal(np.asanyarray(nib.load(tmp_path / "out.nii").dataobj), expected)


@pytest.mark.parametrize("order", [0, 1])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_order_0_is_identical_and_order_1_within_1e_6_in_float64_too(order, dtype):
    rng = np.random.default_rng(order)
    data = (rng.random((70, 66, 64)) * 1000).astype(dtype)
    for _ in range(5):
        m = np.eye(4)
        m[:3, :3] = np.round(rng.uniform(-1.3, 1.3, (3, 3)), 2) + np.eye(3)  # decimal, sheared, rotated
        m[:3, 3] = np.round(rng.uniform(-5, 30, 3), 2)
        g = reference_grid(data.shape, A_IN, (40, 30, 20), A_IN @ m)
        for out in (np.float32, np.float64):
            got = blockwise(AffineResampler(g, order, "nearest"), data, (17, 30, 6), dtype=out)
            # order 1 sums its 8 taps in another order than scipy: the last bits may differ
            assert_matches_reference(got, whole(data, g, order, "nearest", dtype=out), data, order)


@pytest.mark.slow
def test_a_partial_output_is_not_resumed_when_the_reference_header_changed(tmp_path):
    """Same grid, other qform/sform codes: the partial file's header is stale."""
    import signal
    import time


    src = write_nifti(tmp_path / "in.nii", smooth_volume((80, 70, 120)), A_IN)
    ref_shape, a_ref = oblique_reference((60, 50, 100))
    ref = write_nifti(tmp_path / "ref.nii", np.zeros(ref_shape, np.uint8), a_ref, qcode=1, scode=4)
    out = tmp_path / "out.nii"
    args = [src, out, "--reference", ref, "--order", "5", "--workers", "1", "--chunks", "60", "50", "2"]
    proc = run_cli(*args, "--quiet")
    journal = tmp_path / ".out.nii.bigresample-journal"
    deadline = time.time() + 60
    while journal_blocks(journal) < 2 and proc.poll() is None and time.time() < deadline:
        time.sleep(0.002)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert journal_blocks(journal) >= 2
    write_nifti(ref, np.zeros(ref_shape, np.uint8), a_ref, qcode=0, scode=2)
    rerun = run_cli(*args)
    report, _ = rerun.communicate(timeout=120)
    assert rerun.returncode == 0
    assert "Resumed" not in report and "not resuming" in report
    hdr = nib.load(out).header
    assert (int(hdr["qform_code"]), int(hdr["sform_code"])) == (0, 2)
