"""The seed's command line and API on real files, checked with nibabel and scipy."""

import importlib.util
import os
import re
import subprocess
import sys

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from bigresample import make_grid, resample, resample_nifti_spacing, voxel_spacing
from bigresample.cli import main
from bigresample.nifti import NiftiWriter
from bigresample.request import UsageError

from .helpers import assert_matches_reference, check_output, make_volume, same_but_provenance, scipy_reference

SEED_BASIC = [
    ["--z-spacing", "0.15"],
    ["--x-spacing", "0.2", "--z-spacing", "0.15"],
    ["--spacing", "0.1", "0.1", "0.15"],
    ["--z-spacing", "0.05", "--order", "3"],
    ["--spacing", "0.2", "0.2", "0.2"],
    ["--z-spacing", "0.15", "--compare"],
]
SEED_ADVANCED = [
    ["--x-spacing", "0.5", "--y-spacing", "0.5", "--z-spacing", "0.05"],
    ["--xyz-spacing", "0.15", "0.15", "0.15", "--order", "1"],
]


@pytest.fixture(params=[".nii", ".nii.gz"])
def suffix(request):
    return request.param


@pytest.mark.parametrize("args", SEED_BASIC + SEED_ADVANCED, ids=lambda a: " ".join(a))
def test_every_seed_example_command_works_on_real_files(tmp_path, suffix, args, capsys):
    src = tmp_path / f"input{suffix}"
    spacing = (0.1, 0.1, 0.1) if "--xyz-spacing" not in args else (0.1, 0.1, 0.3)
    make_volume(src, spacing=spacing)
    out = tmp_path / f"output{suffix}"
    assert main([str(src), str(out), "--no-progress", *args]) == 0
    report = capsys.readouterr().out
    target = list(spacing)
    if "--spacing" in args or "--xyz-spacing" in args:
        i = args.index("--spacing" if "--spacing" in args else "--xyz-spacing")
        target = [float(v) for v in args[i + 1 : i + 4]]
    for k, opt in enumerate(("--x-spacing", "--y-spacing", "--z-spacing")):
        if opt in args:
            target[k] = float(args[args.index(opt) + 1])
    order = int(args[args.index("--order") + 1]) if "--order" in args else 1
    check_output(src, out, target, order)
    for line in ("Original volume shape", "Zoom factors", "Interpolation method", "Verified new spacing (mm)",
                 "Verified new spacing (μm)", "Done!"):
        assert line in report
    if "--compare" in args:
        assert "min" in report and "std" in report and "input" in report and "output" in report


def test_the_report_says_up_down_or_no_change_per_axis(tmp_path, capsys):
    src = tmp_path / "in.nii"
    make_volume(src)
    main([str(src), str(tmp_path / "out.nii"), "--x-spacing", "0.05", "--z-spacing", "0.2", "--no-progress"])
    report = capsys.readouterr().out
    assert "x-axis: Upsampling (2.0000x)" in report
    assert "y-axis: No change" in report
    assert "z-axis: Downsampling (0.5000x)" in report
    assert "Z: 14 → 7 (-50.0%)" in report
    assert "Elapsed" in report and "Mvoxel/s" in report and "Block plan" in report and "Memory budget" in report


def test_python_api_method_1_and_2_of_the_seed(tmp_path):
    src = tmp_path / "input.nii.gz"
    make_volume(src)
    resample_nifti_spacing(str(src), str(tmp_path / "a.nii.gz"), new_z_spacing=0.15, verbose=False)
    check_output(src, tmp_path / "a.nii.gz", [0.1, 0.1, 0.15])
    resample_nifti_spacing(str(src), str(tmp_path / "b.nii.gz"), new_x_spacing=0.2, new_z_spacing=0.15,
                           verbose=False)
    check_output(src, tmp_path / "b.nii.gz", [0.2, 0.1, 0.15])
    resample_nifti_spacing(str(src), str(tmp_path / "c.nii.gz"), new_x_spacing=0.15, new_y_spacing=0.15,
                           new_z_spacing=0.2, verbose=False)
    check_output(src, tmp_path / "c.nii.gz", [0.15, 0.15, 0.2])
    r = resample_nifti_spacing(str(src), str(tmp_path / "d.nii.gz"), new_spacing=(0.1, 0.1, 0.15), verbose=False)
    check_output(src, tmp_path / "d.nii.gz", [0.1, 0.1, 0.15])
    assert r.out_shape == (24, 20, 9)


def test_general_api_returns_shapes_spacings_affine_and_timings(tmp_path):
    src = tmp_path / "in.nii"
    make_volume(src)
    r = resample(src, tmp_path / "out.nii", spacing=(None, 0.05, 0.2), order=3, grid="zoom")
    assert r.in_shape == (24, 20, 14) and r.out_shape == (24, 40, 7)
    assert r.out_spacing_mm[1] == pytest.approx(0.1 * 19 / 39)  # the zoom grid's true spacing
    np.testing.assert_allclose(r.verified_spacing_mm, r.out_spacing_mm, rtol=1e-6)
    assert {"compute", "write", "total"} <= set(r.timings)
    check_output(src, tmp_path / "out.nii", [0.1, 0.05, 0.2], order=3, grid="zoom")


def test_the_command_runs_as_a_subprocess(tmp_path):
    src = tmp_path / "in.nii.gz"
    make_volume(src)
    out = tmp_path / "out.nii.gz"
    proc = subprocess.run(
        [sys.executable, "-m", "bigresample", str(src), str(out), "--z-spacing", "0.15"],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "Done!" in proc.stdout
    assert proc.stderr == ""  # no progress bar when stderr is not a terminal
    check_output(src, out, [0.1, 0.1, 0.15])


def test_header_fields_are_kept(tmp_path):
    src = tmp_path / "in.nii"
    hdr = nib.Nifti1Header()
    hdr["descrip"] = b"seed phantom"
    hdr["intent_code"] = 1002  # NIFTI_INTENT_LABEL
    hdr["intent_name"] = b"labels"
    hdr.extensions.append(nib.nifti1.Nifti1Extension("comment", b"kept through resampling"))
    make_volume(src, header=hdr)
    out = tmp_path / "out.nii"
    resample(src, out, spacing=(0.2, None, None))
    h = nib.load(out).header
    assert h["descrip"] == b"seed phantom"
    assert h["intent_code"] == 1002 and h["intent_name"] == b"labels"
    assert h.get_qform(coded=True)[1] == 1 and h.get_sform(coded=True)[1] == 2
    assert h.get_xyzt_units() == ("mm", "sec")
    # the input's extension, then the provenance record (bigresample.provenance)
    assert [e.get_content() for e in h.extensions][:1] == [b"kept through resampling"]
    assert [e.get_code() for e in h.extensions] == [6, 6] and b"bigresample_provenance" in h.extensions[1].get_content()


def test_4d_keeps_the_time_axis_and_time_step(tmp_path):
    src = tmp_path / "in4d.nii.gz"
    data = np.random.default_rng(3).random((12, 10, 8, 3)).astype(np.float32)
    img = nib.Nifti1Image(data, np.diag([0.1, 0.1, 0.1, 1]))
    img.header.set_zooms((0.1, 0.1, 0.1, 2.5))
    img.header.set_xyzt_units("mm", "sec")
    nib.save(img, src)
    out = tmp_path / "out4d.nii.gz"
    resample(src, out, spacing=(None, None, 0.15), order=3)
    o = nib.load(out)
    assert o.shape == (12, 10, 5, 3)
    assert o.header.get_zooms()[3] == pytest.approx(2.5)
    check_output(src, out, [0.1, 0.1, 0.15], order=3)


def test_int16_with_scl_slope_resamples_raw_values_and_keeps_the_scaling(tmp_path):
    src = tmp_path / "scaled.nii"
    data = np.random.default_rng(4).integers(-3000, 3000, size=(16, 14, 12)).astype(np.int16)
    hdr = nib.Nifti1Header()
    hdr.set_data_shape(data.shape)
    hdr.set_data_dtype(np.int16)
    hdr.set_qform(np.diag([0.1, 0.1, 0.1, 1]), 1)
    hdr.set_slope_inter(0.5, -10.0)
    with NiftiWriter(src, hdr) as w:  # nibabel's own writer would choose its own scaling
        w.write(data)
    assert (nib.load(src).dataobj.slope, nib.load(src).dataobj.inter) == (0.5, -10.0)
    out = tmp_path / "out.nii"
    resample(src, out, spacing=(0.07, 0.13, 0.1), order=3)
    o = nib.load(out)
    assert o.get_data_dtype() == np.int16
    assert (o.dataobj.slope, o.dataobj.inter) == (0.5, -10.0)
    check_output(src, out, [0.07, 0.13, 0.1], order=3)


def test_a_header_in_microns_stays_in_microns_and_spacing_is_read_in_mm(tmp_path):
    src = tmp_path / "um.nii"
    data = np.random.default_rng(5).random((16, 16, 12)).astype(np.float32)
    img = nib.Nifti1Image(data, np.diag([100.0, 100.0, 100.0, 1]))  # 100 um voxels
    img.header.set_xyzt_units("micron")
    nib.save(img, src)
    out = tmp_path / "out.nii"
    r = resample(src, out, spacing=(None, None, 0.15))
    o = nib.load(out)
    assert o.header.get_xyzt_units()[0] == "micron"
    np.testing.assert_allclose(o.header.get_zooms()[:3], [100, 100, 150], rtol=1e-6)
    assert r.out_shape == (16, 16, 8)
    r2 = resample(src, tmp_path / "out2.nii", spacing=(None, None, 150), units="um")
    assert r2.out_shape == (16, 16, 8)


def test_nifti2_is_written_when_a_dimension_exceeds_32767(tmp_path):
    src = tmp_path / "thin.nii"
    data = (np.arange(20000 * 2 * 2) % 251).reshape(20000, 2, 2).astype(np.uint8)
    nib.save(nib.Nifti1Image(data, np.diag([0.1, 0.1, 0.1, 1])), src)
    out = tmp_path / "long.nii"
    r = resample(src, out, spacing=(0.05, None, None), order=1)
    assert r.nifti2
    o = nib.load(out)
    assert isinstance(o.header, nib.Nifti2Header)
    assert o.shape == (40000, 2, 2)
    check_output(src, out, [0.05, 0.1, 0.1])


@pytest.mark.parametrize(
    "args, message",
    [
        (["--spacing", "0.1", "0.1"], "--spacing needs 3 values"),
        (["--spacing", "0.1", "0.1", "0.1", "--z-spacing", "0.2"], "not both"),
        ([], "no spacing given"),
        (["--z-spacing", "0"], "z-spacing must be finite and > 0; got '0'"),
        (["--z-spacing", "abc"], "z-spacing must be a number; got 'abc'"),
        (["--z-spacing", "0.2", "--order", "7"], "--order must be 0-5; got 7"),
        (["--z-spacing", "0.2", "--tmp-dir", "/no/such/dir"],
         "--tmp-dir folder cannot be used: /no/such/dir: no such folder"),
        (["--z-spacing", "0.2", "--tmp-dir", "nosuchproto://bucket/x"],
         "--tmp-dir URL cannot be used: nosuchproto://bucket/x: Protocol not known: nosuchproto"),
        pytest.param(["--z-spacing", "0.2", "--tmp-dir", "gs://bucket/x"],
                     "--tmp-dir URL cannot be used: gs://bucket/x: the gs:// protocol needs gcsfs: pip install gcsfs",
                     marks=pytest.mark.skipif(importlib.util.find_spec("gcsfs") is not None, reason="gcsfs installed")),
    ],
)
def test_bad_arguments_give_one_line_and_exit_status_2(tmp_path, args, message, capsys):
    src = tmp_path / "in.nii"
    make_volume(src)
    out = tmp_path / "out.nii"
    assert main([str(src), str(out), *args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir()] == ["in.nii"]


def test_the_phantom_is_brain_like_and_written_slab_by_slab(tmp_path):
    from bigresample.demo import make_phantom

    path = make_phantom(tmp_path / "p.nii.gz", shape=(64, 64, 40), slab=7)
    img = nib.load(path)
    data = np.asanyarray(img.dataobj)
    assert img.shape == (64, 64, 40)
    np.testing.assert_allclose(voxel_spacing(img.affine), [0.1] * 3)
    # background, CSF/ventricles, white matter, grey matter, skull: distinct tissue levels
    levels = np.histogram(data, bins=[-100, 50, 200, 400, 650, 800, 950, 2000])[0]
    assert (levels > 0).sum() >= 6


@pytest.mark.slow
def test_the_demo_runs_the_main_job(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["--demo", "--no-progress"]) == 0
    report = capsys.readouterr().out
    assert "Resampled volume shape: (512, 512, 200)" in report and "Done!" in report
    assert "Making a brain phantom (512, 512, 300) at 100 um (300.0 MiB): bigresample-demo/phantom_100um.nii" in report
    assert report.splitlines()[-1] == (
        f"The demo left 500.0 MiB in {tmp_path / 'bigresample-demo'}: the phantom (300.0 MiB) and its resampled "
        "copy (200.0 MiB); remove them with: rm -r bigresample-demo")
    assert sorted(p.name for p in (tmp_path / "bigresample-demo").iterdir()) == [
        "phantom_100um.nii", "phantom_100x100x150um.nii"]
    out = nib.load(tmp_path / "bigresample-demo" / "phantom_100x100x150um.nii")
    np.testing.assert_allclose(voxel_spacing(out.affine), [0.1, 0.1, 0.15], rtol=1e-6)


@pytest.mark.parametrize("chunks", [(24, 20, 3), (24, 5, 4), (7, 6, 5), (24, 1, 1), (5, 1, 1)],
                         ids=["planes", "split-y", "split-xy", "rows", "row-pieces"])
def test_any_block_shape_writes_the_same_file(tmp_path, suffix, chunks):
    """Blocks that are not stretches of the file: written in pieces (.nii) or
    assembled into slabs before compression (.nii.gz)."""
    src = tmp_path / f"in{suffix}"
    make_volume(src)
    out = tmp_path / f"out{suffix}"
    resample(src, out, spacing=(0.13, None, 0.07), order=3, chunks=chunks, workers=2)
    check_output(src, out, [0.13, 0.1, 0.07], order=3)


def test_dry_run_prints_the_plan_and_touches_nothing(tmp_path, capsys):
    src = tmp_path / "in.nii.gz"
    make_volume(src)
    before = sorted(p.name for p in tmp_path.iterdir())
    assert main([str(src), str(tmp_path / "out.nii"), "--z-spacing", "0.05", "--dry-run"]) == 0
    report = capsys.readouterr().out
    assert "Dry run" in report and "Output shape: (24, 20, 28)" in report
    assert "Blocks:" in report and "Memory:" in report and "the input inflated into memory" in report
    assert sorted(p.name for p in tmp_path.iterdir()) == before


@pytest.mark.parametrize("url", [False, True], ids=["folder", "file-url"])
def test_keep_zarr_keeps_a_file_order_store_holding_the_output(tmp_path, url):
    """--keep-zarr goes through the zarr store (as cluster runs do); --tmp-dir
    may be a URL that zarr opens through fsspec."""
    import zarr

    src = tmp_path / "in.nii"
    make_volume(src)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    out = tmp_path / "out.nii"
    resample(src, out, spacing=(0.13, None, 0.07), order=3, chunks=(8, 7, 5), keep_zarr=True,
             tmp_dir=scratch.as_uri() if url else scratch)
    check_output(src, out, [0.13, 0.1, 0.07], order=3)
    store = zarr.open_array(str(scratch / ".out.nii.bigresample.zarr"), mode="r")
    assert store.chunks == (5, 7, 8)  # file order: z, y, x
    np.testing.assert_array_equal(store[:], np.asanyarray(nib.load(out).dataobj).T)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.nii", "out.nii", "scratch"]


def test_dry_run_counts_the_zarr_store_when_there_is_one(tmp_path, capsys):
    src = tmp_path / "in.nii"
    make_volume(src)
    assert main([str(src), str(tmp_path / "out.nii"), "--z-spacing", "0.05", "--dry-run", "--keep-zarr",
                 "--tmp-dir", tmp_path.as_uri()]) == 0
    # 24 x 20 x 28 float32 = 53760 bytes
    assert f"zarr store 52.5 KiB in {tmp_path.as_uri()}" in capsys.readouterr().out


def test_4d_through_the_zarr_store_equals_the_direct_path(tmp_path):
    src = tmp_path / "in.nii"
    data = (np.random.default_rng(0).random((20, 18, 12, 3)) * 100).astype(np.float32)
    nib.save(nib.Nifti1Image(data, np.diag([0.1, 0.1, 0.1, 1.0])), src)
    kw = dict(spacing=(0.13, None, 0.07), order=3, chunks=(8, 18, 5))
    resample(src, tmp_path / "direct.nii", **kw)
    resample(src, tmp_path / "store.nii", **kw, keep_zarr=True)
    assert same_but_provenance(tmp_path / "store.nii") == same_but_provenance(tmp_path / "direct.nii")
    # and both equal the whole-array scipy call, every volume of the time axis
    g = make_grid(data.shape[:3], voxel_spacing(nib.load(src).affine), (0.13, 0.1, 0.07), "center")
    assert_matches_reference(np.asanyarray(nib.load(tmp_path / "store.nii").dataobj),
                             scipy_reference(data, g, 3, "nearest"), data, 3)


def test_a_requested_spacing_equal_to_the_stored_one_changes_nothing(tmp_path, capsys):
    """0.1 on a 0.1 mm volume (stored as float32 0.10000000149) keeps the axis
    as it is, as --z-spacing alone does."""
    src = tmp_path / "in.nii"
    make_volume(src, shape=(24, 20, 14))
    assert main([str(src), str(tmp_path / "all.nii"), "--spacing", "0.1", "0.1", "0.15", "--order", "3"]) == 0
    report = capsys.readouterr().out
    assert "x-axis: No change" in report and "y-axis: No change" in report
    assert main([str(src), str(tmp_path / "z.nii"), "--z-spacing", "0.15", "--order", "3", "--quiet"]) == 0
    assert same_but_provenance(tmp_path / "all.nii") == same_but_provenance(tmp_path / "z.nii")
    # and the unchanged axes are the input's samples
    a = np.asanyarray(nib.load(tmp_path / "all.nii").dataobj)
    assert a.shape[:2] == (24, 20)


def test_batch_resamples_every_input_into_the_output_dir_and_goes_on_after_a_failure(tmp_path, capsys):
    a, b = tmp_path / "a.nii", tmp_path / "b.nii.gz"
    make_volume(a)
    make_volume(b, seed=1)
    bad = tmp_path / "bad.nii.gz"
    bad.write_text("not an image")
    out = tmp_path / "out"
    out.mkdir()
    code = main([str(a), str(bad), str(b), "--output-dir", str(out), "--suffix", "_150um",
                 "--z-spacing", "0.15", "--quiet"])
    assert code == 2  # one failed
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 4
    assert lines[0].startswith(f"bigresample: ok {a} -> {out / 'a_150um.nii'} (24x20x14 -> 24x20x9")
    assert lines[1].startswith(f"bigresample: FAILED {bad}: ")
    assert lines[2].startswith(f"bigresample: ok {b} -> {out / 'b_150um.nii.gz'}")
    assert lines[3] == "bigresample: 2 of 3 done, 1 failed"
    assert sorted(p.name for p in out.iterdir()) == ["a_150um.nii", "b_150um.nii.gz"]
    for src, dst in ((a, out / "a_150um.nii"), (b, out / "b_150um.nii.gz")):
        check_output(src, dst, [0.1, 0.1, 0.15], order=1)


def test_batch_exit_status_is_0_when_all_succeed_and_names_are_kept(tmp_path, capsys):
    a = tmp_path / "a.nii"
    make_volume(a)
    out = tmp_path / "out"
    out.mkdir()
    assert main([str(a), "--output-dir", str(out), "--z-spacing", "0.15", "--quiet"]) == 0
    assert [p.name for p in out.iterdir()] == ["a.nii"]
    assert capsys.readouterr().out.splitlines()[-1] == "bigresample: 1 of 1 done"


def test_batch_prints_one_line_per_file_by_default_and_the_reports_with_verbose(tmp_path, capsys):
    a, b = tmp_path / "a.nii", tmp_path / "b.nii"
    make_volume(a)
    make_volume(b, seed=1)
    out = tmp_path / "out"
    out.mkdir()
    assert main([str(a), str(b), "--output-dir", str(out), "--z-spacing", "0.15", "--no-progress"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [ln.split(" (")[0] for ln in lines] == [f"bigresample: ok {a} -> {out / 'a.nii'}",
                                                   f"bigresample: ok {b} -> {out / 'b.nii'}",
                                                   "bigresample: 2 of 2 done"]
    assert main([str(a), str(b), "--output-dir", str(out), "--z-spacing", "0.15", "--no-progress",
                 "--verbose"]) == 0
    text = capsys.readouterr().out
    assert text.count("Done!") == 2 and text.count("Original volume shape") == 2
    assert text.splitlines()[-1] == "bigresample: 2 of 2 done"
    assert f"Done!\nbigresample: ok {a} -> {out / 'a.nii'}" in text


@pytest.mark.parametrize("args, message", [
    (["--output-dir", "OUT", "--verbose", "--quiet"], "give --verbose or --quiet, not both"),
    (["OUTFILE", "--verbose"], "--verbose is for --output-dir (a single run prints its full report already)"),
])
def test_verbose_is_for_batches(tmp_path, capsys, args, message):
    a = tmp_path / "a.nii"
    make_volume(a)
    (tmp_path / "out").mkdir()
    args = [str(tmp_path / "out") if v == "OUT" else str(tmp_path / "o.nii") if v == "OUTFILE" else v for v in args]
    assert main([str(a), *args, "--z-spacing", "0.15"]) == 2
    assert capsys.readouterr().err == f"bigresample: error: {message}\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.nii", "out"] and not any((tmp_path / "out").iterdir())


@pytest.mark.parametrize("name, expected", [("x.nii", "x_s.nii"), ("x.NII.GZ", "x_s.NII.GZ"),
                                            ("x.mgz", "x_s.nii.gz"), ("x.img", "x_s.nii.gz")])
def test_batch_output_names(name, expected):
    from bigresample.cli import batch_output

    assert batch_output(f"/data/{name}", "/out", "_s").name == expected


def _label_volume(path, shape=(24, 20, 14)):
    rng = np.random.default_rng(3)
    labels = np.array([0, 2, 7, 40, 1000], dtype=np.int16)
    data = labels[rng.integers(0, len(labels), size=shape)]
    nib.save(nib.Nifti1Image(data, np.diag([0.1, 0.1, 0.1, 1.0])), path)
    return data, labels


def test_labels_forces_nearest_neighbour_so_every_value_is_a_label(tmp_path, capsys):
    src = tmp_path / "seg.nii.gz"
    data, labels = _label_volume(src)
    out = tmp_path / "out.nii.gz"
    assert main([str(src), str(out), "--spacing", "0.13", "0.07", "0.15", "--order", "3", "--labels"]) == 0
    captured = capsys.readouterr()
    assert "Interpolation method: Nearest Neighbor\nLabels: a label map is resampled by nearest neighbour, every " \
           "output value an input label (--order 3 is not used)\n" in captured.out
    assert "warning" not in captured.err
    got = np.asanyarray(nib.load(out).dataobj)
    assert got.dtype == np.int16 and set(np.unique(got)) <= set(labels.tolist())
    check_output(src, out, [0.13, 0.07, 0.15], order=0)  # identical to scipy at order 0


@pytest.mark.parametrize("target", [["--spacing", "0.3", "0.3", "0.3"], ["--reference", "REF"]])
def test_labels_with_antialias_is_refused_in_one_line(tmp_path, capsys, target):
    """Smoothing a label map invents values between labels (3-10 in a {0, 1, 2, 11, 12} map)."""
    src = tmp_path / "seg.nii"
    _label_volume(src)
    if "REF" in target:
        a = np.diag([0.3, 0.3, 0.3, 1.0])
        a[:3, :3] = a[:3, :3] @ np.array([[0.96, -0.28, 0], [0.28, 0.96, 0], [0, 0, 1.0]])
        nib.save(nib.Nifti1Image(np.zeros((8, 7, 5), np.float32), a), tmp_path / "ref.nii")
        target = ["--reference", str(tmp_path / "ref.nii")]
    out = tmp_path / "out.nii"
    before = sorted(p.name for p in tmp_path.iterdir())
    assert main([str(src), str(out), *target, "--labels", "--antialias"]) == 2
    err = capsys.readouterr().err
    assert err == ("bigresample: error: --labels cannot be combined with --antialias: smoothing a label map blends "
                   "neighbouring labels into values that are not labels\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    with pytest.raises(UsageError, match="--labels cannot be combined with --antialias"):
        resample(src, out, spacing=(0.3, 0.3, 0.3), labels=True, antialias=True)


def test_a_label_map_resampled_with_order_above_0_gets_a_one_line_warning(tmp_path, capsys):
    src = tmp_path / "seg.nii"
    _label_volume(src)
    assert main([str(src), str(tmp_path / "o.nii"), "--z-spacing", "0.15", "--quiet"]) == 0
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("bigresample: warning: ") and "looks like a label map (int16, 5 distinct values" in err
    assert "use --labels" in err
    # an intensity image does not
    make_volume(tmp_path / "t1.nii", dtype=np.int16)
    assert main([str(tmp_path / "t1.nii"), str(tmp_path / "o2.nii"), "--z-spacing", "0.15", "--quiet"]) == 0
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("values, expected", [
    ([0, 1], True),                              # a mask
    (list(range(0, 2000, 7)), True),             # 286 sparse atlas labels
    (list(range(256)), False),                   # 8-bit intensities fill their range
    ([5], False),                                # an empty slice tells nothing
])
def test_what_looks_like_a_label_map(tmp_path, values, expected):
    from bigresample.inputs import open_input
    from bigresample.pipeline import looks_like_labels

    rng = np.random.default_rng(0)
    data = rng.choice(np.array(values, dtype=np.int16), size=(200, 200, 3))
    nib.save(nib.Nifti1Image(data, np.eye(4)), tmp_path / "v.nii")
    vol = open_input(tmp_path / "v.nii")
    try:
        assert bool(looks_like_labels(vol)) is expected
    finally:
        vol.close()


def test_qc_draws_input_and_output_slices_into_a_png(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    from matplotlib.image import imread

    src = tmp_path / "in.nii.gz"
    make_volume(src, shape=(40, 36, 30))
    png = tmp_path / "qc.png"
    assert main([str(src), str(tmp_path / "out.nii"), "--spacing", "0.2", "0.1", "0.15", "--qc", str(png)]) == 0
    assert f"QC picture: {png}" in capsys.readouterr().out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    img = imread(png)
    assert img.shape[:2] == (900, 1200) and img[..., :3].std() > 0.05


def test_qc_without_matplotlib_says_what_to_install(tmp_path, capsys, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "matplotlib" else real(name, *a))
    src = tmp_path / "in.nii"
    make_volume(src)
    assert main([str(src), str(tmp_path / "out.nii"), "--z-spacing", "0.15", "--qc", str(tmp_path / "q.png")]) == 2
    assert "--qc needs matplotlib: pip install 'bigresample[qc]'" in capsys.readouterr().err
    assert not (tmp_path / "out.nii").exists()


@pytest.mark.parametrize("mode", ["constant", "grid-constant"])
def test_nan_as_cval_marks_outside_voxels_in_a_float_output(tmp_path, mode):
    src = tmp_path / "in.nii"
    make_volume(src, shape=(20, 18, 12))
    out = tmp_path / "out.nii"
    assert main([str(src), str(out), "--spacing", "0.13", "0.07", "0.15", "--order", "3", "--mode", mode,
                 "--cval", "nan", "--quiet"]) == 0
    img = nib.load(src)
    raw = np.asanyarray(img.dataobj)
    g = make_grid(raw.shape, voxel_spacing(img.affine), (0.13, 0.07, 0.15), "center")
    ref = scipy_reference(raw, g, 3, mode, cval=np.nan)
    got = np.asanyarray(nib.load(out).dataobj)
    assert np.isnan(got).any()
    np.testing.assert_array_equal(np.isnan(got), np.isnan(ref))
    assert_matches_reference(got, ref, raw, 3)  # NaN where scipy has NaN, checked too


def test_nan_as_cval_with_an_integer_output_is_refused(tmp_path, capsys):
    src = tmp_path / "in.nii"
    make_volume(src, dtype=np.int16)
    out = tmp_path / "out.nii"
    assert main([str(src), str(out), "--z-spacing", "0.15", "--mode", "constant", "--cval", "nan"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--cval nan needs a float output" in err and "int16" in err
    assert not out.exists()


@pytest.mark.parametrize("grid", ["center", "zoom"])
def test_shape_gives_the_target_as_output_voxels(tmp_path, grid, capsys):
    src = tmp_path / "in.nii.gz"
    make_volume(src, shape=(24, 20, 14))
    out = tmp_path / "out.nii"
    assert main([str(src), str(out), "--shape", "17", "31", "9", "--order", "3", "--grid", grid]) == 0
    assert "Changing spacing: shape=17x31x9" in capsys.readouterr().out
    assert nib.load(out).shape == (17, 31, 9)
    s = voxel_spacing(nib.load(src).affine)
    check_output(src, out, s * np.array([24, 20, 14]) / np.array([17, 31, 9]), order=3, grid=grid)


@pytest.mark.parametrize("args, message", [
    (["--shape", "10", "10"], "--shape needs 3 values (x y z); got 2"),
    (["--shape", "10", "0", "10"], "--shape y must be a whole number >= 1; got '0'"),
    (["--shape", "10", "1.5", "10"], "--shape y must be a whole number >= 1; got '1.5'"),
    (["--shape", "10", "abc", "10"], "--shape y must be a whole number; got 'abc'"),
    (["--shape", "10", "10", "10", "--z-spacing", "0.2"], "give either a spacing or --shape, not both"),
])
def test_bad_shapes_give_one_line(tmp_path, args, message, capsys):
    src = tmp_path / "in.nii"
    make_volume(src)
    assert main([str(src), str(tmp_path / "out.nii"), *args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err
    assert [p.name for p in tmp_path.iterdir()] == ["in.nii"]


def test_antialias_sigma_rule():
    from bigresample.antialias import sigmas

    assert sigmas([2.0, 1.0, 0.5]) == (0.5, 0.0, 0.0)  # only downsampled axes: (r - 1) / 2
    assert sigmas([5.0, 1.5, 1.0])[:2] == (2.0, 0.25)


@pytest.mark.parametrize("grid, order, chunks", [("center", 1, ["5", "4", "3"]), ("zoom", 3, ["7", "20", "2"]),
                                                 ("origin", 0, ["24", "1", "1"])])
def test_antialias_blocks_equal_the_whole_array_filter_then_resampling(tmp_path, grid, order, chunks, capsys):
    from scipy.ndimage import gaussian_filter1d

    src = tmp_path / "in.nii"
    make_volume(src, shape=(48, 40, 30))
    out = tmp_path / "out.nii"
    assert main([str(src), str(out), "--spacing", "0.3", "0.1", "0.25", "--order", str(order), "--grid", grid,
                 "--antialias", "--chunks", *chunks, "--workers", "2"]) == 0
    assert "Anti-aliasing: Gaussian sigma (input voxels) x=1, y=0, z=0.75" in capsys.readouterr().out
    img = nib.load(src)
    raw = np.asanyarray(img.dataobj)
    s = voxel_spacing(img.affine)
    g = make_grid(raw.shape, s, (0.3, s[1], 0.25), grid)
    from bigresample.antialias import sigmas

    smooth = raw.astype(np.float64)
    for ax, sigma in enumerate(sigmas(g.ratios)):  # (r - 1) / 2 with r from the stored spacing
        if sigma > 0:
            smooth = gaussian_filter1d(smooth, sigma, axis=ax, mode="nearest", truncate=4.0)
    expected = scipy_reference(smooth, g, order, "nearest", dtype=np.float32)
    got = np.asanyarray(nib.load(out).dataobj)
    assert_matches_reference(got, expected, raw, order)
    # and it did smooth: without --antialias the result differs
    assert main([str(src), str(tmp_path / "plain.nii"), "--spacing", "0.3", "0.1", "0.25", "--order", str(order),
                 "--grid", grid, "--quiet"]) == 0
    assert not np.allclose(np.asanyarray(nib.load(tmp_path / "plain.nii").dataobj), got)


def test_antialias_through_the_zarr_store_equals_the_direct_path(tmp_path):
    src = tmp_path / "in.nii.gz"
    make_volume(src, shape=(40, 30, 20))
    kw = dict(spacing=(0.25, None, 0.3), order=3, chunks=(9, 30, 4), antialias=True)
    resample(src, tmp_path / "direct.nii", **kw)
    resample(src, tmp_path / "store.nii", **kw, keep_zarr=True)
    assert same_but_provenance(tmp_path / "store.nii") == same_but_provenance(tmp_path / "direct.nii")
    # and both equal scipy: gaussian_filter1d per downsampled axis, then the whole-array resampling
    img = nib.load(src)
    raw, spacing = np.asanyarray(img.dataobj), voxel_spacing(img.affine)
    smooth = raw.astype(np.float64)
    for axis, t in enumerate((0.25, spacing[1], 0.3)):
        if t / spacing[axis] > 1:
            smooth = ndimage.gaussian_filter1d(smooth, (t / spacing[axis] - 1) / 2, axis=axis, mode="nearest",
                                               truncate=4.0)
    g = make_grid(raw.shape, spacing, (0.25, spacing[1], 0.3), "center")
    assert_matches_reference(np.asanyarray(nib.load(tmp_path / "store.nii").dataobj),
                             scipy_reference(smooth, g, 3, "nearest", dtype=np.float32), raw, 3)


def test_a_reader_that_goes_away_stops_the_report_not_the_run(tmp_path):
    src = tmp_path / "in.nii"
    make_volume(src)
    out = tmp_path / "out.nii"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}  # every report line is written as it comes
    proc = subprocess.Popen([sys.executable, "-m", "bigresample", str(src), str(out), "--z-spacing", "0.15"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    proc.stdout.readline()  # like `| head -1`
    proc.stdout.close()
    assert proc.wait(timeout=120) == 0
    assert "Traceback" not in proc.stderr.read().decode()
    assert nib.load(out).shape == (24, 20, 9)


@pytest.mark.parametrize("labels", [["--labels"], ["--labels", "mode"], ["--labels", "linear"]])
def test_labels_without_order_say_nothing_about_an_order_never_given(tmp_path, capsys, labels):
    src = tmp_path / "seg.nii"
    _label_volume(src)
    assert main([str(src), str(tmp_path / "out.nii"), "--spacing", "0.2", "0.2", "0.2", *labels]) == 0
    out = capsys.readouterr().out
    assert "Labels: " in out and "--order" not in out
    assert main([str(src), str(tmp_path / "o3.nii"), "--spacing", "0.2", "0.2", "0.2", *labels, "--order", "3"]) == 0
    assert "(--order 3 is not used)" in capsys.readouterr().out


def test_a_missing_output_path_is_named_as_such(tmp_path, capsys):
    make_volume(tmp_path / "in.nii")
    assert main([str(tmp_path / "in.nii"), "--z-spacing", "0.2"]) == 2
    err = capsys.readouterr().err
    assert err == "bigresample: error: no OUTPUT given: bigresample INPUT OUTPUT (or --output-dir DIR, or --demo)\n"
    assert main(["--z-spacing", "0.2"]) == 2
    assert capsys.readouterr().err == ("bigresample: error: no INPUT and OUTPUT given: bigresample INPUT OUTPUT "
                                       "(or --output-dir DIR, or --demo)\n")
    assert main(["a.nii", "b.nii", "c.nii", "--z-spacing", "0.2"]) == 2
    assert "3 paths given: one INPUT and one OUTPUT" in capsys.readouterr().err


def test_a_text_file_named_nii_gz_as_reference_is_called_not_gzip(tmp_path, capsys):
    make_volume(tmp_path / "in.nii")
    (tmp_path / "ref.nii.gz").write_text("hello\n")
    assert main([str(tmp_path / "in.nii"), str(tmp_path / "out.nii"), "--reference", str(tmp_path / "ref.nii.gz")]) == 2
    err = capsys.readouterr().err
    assert err == (f"bigresample: error: {tmp_path / 'ref.nii.gz'}: not a gzip file (a .nii.gz must be "
                   "gzip-compressed)\n")


def test_a_reference_report_says_only_its_header_is_read(tmp_path, capsys):
    """A corrupted .nii.gz reference is not refused (its voxels are never
    read: checking its CRC would mean decompressing it whole); the report says
    its header alone is used."""
    make_volume(tmp_path / "in.nii")
    make_volume(tmp_path / "ref.nii.gz", shape=(60, 60, 40))
    data = bytearray((tmp_path / "ref.nii.gz").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (tmp_path / "ref.nii.gz").write_bytes(bytes(data))
    assert main([str(tmp_path / "in.nii"), str(tmp_path / "out.nii"), "--reference", str(tmp_path / "ref.nii.gz")]) == 0
    out = capsys.readouterr().out
    assert (f"Reference grid: {tmp_path / 'ref.nii.gz'}, shape (60, 60, 40), axes aligned with the input's "
            "(its header only: the reference's voxels are neither read nor checked)\n") in out


def test_the_throughput_does_not_count_the_qc_picture():
    from bigresample.report import Finished, TextReport

    lines = []
    one = np.ones(3)
    TextReport(lines.append)(Finished((10, 10, 10), (100, 100, 100), "center", one, one, one, False, None, None,
                                      "qc.png", {"total": 10.0, "compute": 1.5, "write": 0.5, "qc": 8.0}))
    assert ("Elapsed: 10.00 s (resampling 1.50 s, writing 0.50 s, QC picture 8.00 s); throughput 0.5 Mvoxel/s "
            "(the QC picture not counted)") in lines


def test_the_demo_says_how_long_making_the_phantom_took_and_the_whole_command(tmp_path, monkeypatch, capsys):
    from bigresample import demo

    real = demo.make_phantom
    monkeypatch.setattr(demo, "make_phantom", lambda path: real(path, shape=(64, 64, 40)))  # small and quick
    monkeypatch.chdir(tmp_path)
    assert main(["--demo", "--no-progress"]) == 0
    lines = capsys.readouterr().out.splitlines()
    made = [ln for ln in lines if ln.startswith("Phantom made in ")]
    assert len(made) == 1 and re.fullmatch(r"Phantom made in \d+\.\d\d s", made[0]), made
    took = [ln for ln in lines if ln.startswith("The demo took ")]
    assert len(took) == 1 and re.fullmatch(
        r"The demo took \d+\.\d\d s: making the phantom \d+\.\d\d s, the run above \d+\.\d\d s", took[0]), took
    assert lines.index(made[0]) < lines.index("Resampling volume...") < lines.index(took[0])
