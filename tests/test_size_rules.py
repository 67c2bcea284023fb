"""The size rules (docs/usage.md, "Size rules"): outputs too large or too small to be meant are
refused unless --force, and --dry-run runs every check the run would, ending with the verdict."""

import nibabel as nib
import numpy as np
import pytest

from bigresample.cli import main
from bigresample.job import MAX_GROWTH, MAX_SHRINK, MIN_KEPT_VOXELS, MIN_REFUSED_BYTES, plan_job, size_rules
from bigresample.request import Request, UsageError

from .conftest import make_volume


def _template(path, shape=(40, 48, 40)):
    """A small 1 mm image, as the MNI template is."""
    data = np.random.default_rng(0).random(shape).astype(np.float32)
    nib.save(nib.Nifti1Image(data, np.diag([1.0, 1.0, 1.0, 1.0])), path)
    return path


def _refused(tmp_path, capsys, args, message):
    names = sorted(p.name for p in tmp_path.iterdir())
    assert main([*map(str, args), "--no-progress"]) == 2
    captured = capsys.readouterr()
    assert captured.err.count("\n") == 1 and message in captured.err, captured.err
    assert sorted(p.name for p in tmp_path.iterdir()) == names  # nothing left behind
    return captured


def test_microns_typed_as_millimetres_are_refused_with_a_hint(tmp_path, capsys):
    src = _template(tmp_path / "mni.nii.gz")
    out = tmp_path / "out.nii.gz"
    err = _refused(tmp_path, capsys, [src, out, "--spacing", "100", "100", "150"],
                   "x-axis would shrink from 40 to 1 voxel (40x smaller, shape (1, 1, 1)): check the spacing "
                   "(100 100 150 looks like microns: add --units um), or add --force").err
    assert err.startswith("bigresample: error: ")
    # as the hint says, or as asked with --force
    assert main([str(src), str(tmp_path / "um.nii"), "--spacing", "1500", "1500", "1500", "--units", "um",
                 "--quiet"]) == 0
    assert nib.load(tmp_path / "um.nii").shape == (27, 32, 27)
    assert main([str(src), str(out), "--spacing", "100", "100", "150", "--force", "--quiet"]) == 0
    assert nib.load(out).shape == (1, 1, 1)


def test_no_microns_hint_when_the_numbers_are_not_microns_either(tmp_path, capsys):
    src = tmp_path / "in.nii"
    make_volume(src)  # 24x20x14 at 0.1 mm; 5 um would be 20x finer
    err = _refused(tmp_path, capsys, [src, tmp_path / "o.nii", "--spacing", "5", "5", "5"],
                   "x-axis would shrink from 24 to 1 voxel").err
    assert "microns" not in err and "add --force" in err


def test_a_shape_can_be_too_small_too(tmp_path, capsys):
    src = tmp_path / "in.nii"
    make_volume(src)
    _refused(tmp_path, capsys, [src, tmp_path / "o.nii", "--shape", "1", "20", "14"],
             "x-axis would shrink from 24 to 1 voxel (24x smaller, shape (1, 20, 14))")


@pytest.mark.parametrize("n, spacing, allowed", [
    (64, 16.0, True),    # 16x, to 4 voxels: neither more than 16x nor fewer than 4
    (64, 20.0, False),   # 21x to 3 voxels
    (48, 16.0, True),    # exactly 16x, to 3 voxels: not more than 16x
    (100, 20.0, True),   # 20x, but 5 voxels are kept
    (40, 12.0, True),    # 3 voxels, but only 13x
])
def test_the_too_small_rule_exactly(tmp_path, n, spacing, allowed):
    src = _template(tmp_path / "in.nii", shape=(n, 8, 8))
    job = plan_job(Request.make(src, tmp_path / "o.nii", spacing=(spacing, None, None), force=True))
    job.volume.close()
    m = job.out_shape[0]
    assert (n > MAX_SHRINK * m and m < MIN_KEPT_VOXELS) is (not allowed)
    if allowed:
        size_rules(job.volume, job.request, job.grid, job.out_dtype)
        plan_job(Request.make(src, tmp_path / "o.nii", spacing=(spacing, None, None))).volume.close()
    else:
        with pytest.raises(UsageError, match=f"x-axis would shrink from {n} to {m} voxels"):
            plan_job(Request.make(src, tmp_path / "o.nii", spacing=(spacing, None, None)))


@pytest.mark.parametrize("spacing, allowed", [
    ((0.0001, 0.0001, 0.0001), False),    # 4 PiB
    ((0.025, 0.025, 0.025), True),        # 64x the input, but 33 MiB: under the 1 GiB floor
])
def test_the_too_large_rule_exactly(tmp_path, spacing, allowed):
    src = tmp_path / "in.nii"
    make_volume(src, shape=(64, 64, 32))
    job = plan_job(Request.make(src, tmp_path / "o.nii", spacing=spacing, force=True))
    job.volume.close()
    in_bytes = 64 * 64 * 32 * 4
    assert (job.out_bytes > MAX_GROWTH * in_bytes and job.out_bytes > MIN_REFUSED_BYTES) is (not allowed)
    if allowed:
        size_rules(job.volume, job.request, job.grid, job.out_dtype)
    else:
        with pytest.raises(UsageError, match="output would be .* check the spacing, or add --force"):
            size_rules(job.volume, job.request, job.grid, job.out_dtype)


@pytest.mark.parametrize("args, message", [
    (["--spacing", "0.001", "0.001", "0.001"], "output would be 25.0 GiB, 1000000x the input"),
    (["--spacing", "5", "5", "5"], "x-axis would shrink from 24 to 1 voxel"),
])
def test_a_dry_run_refuses_as_the_run_does(tmp_path, capsys, args, message):
    src = tmp_path / "in.nii.gz"
    make_volume(src)
    out = tmp_path / "out.nii"
    run = _refused(tmp_path, capsys, [src, out, *args], message)
    dry = _refused(tmp_path, capsys, [src, out, *args, "--dry-run"], message)
    assert dry.err == run.err and dry.out == run.out  # refused as soon as the grid is known, before any plan


def test_an_extreme_downsampling_gets_the_size_rule_not_a_planning_error(tmp_path, capsys):
    """0.1 mm to 100 mm: the block planner cannot fit one block's window; the size rule speaks first."""
    src = tmp_path / "in.nii"
    make_volume(src, shape=(200, 40, 30))
    _refused(tmp_path, capsys, [src, tmp_path / "o.nii", "--spacing", "100", "100", "150", "--memory-limit", "300MB"],
             "x-axis would shrink from 200 to 1 voxel (200x smaller, shape (1, 1, 1)): check the spacing (100 100 150 "
             "looks like microns: add --units um), or add --force")


def test_a_dry_run_checks_the_disk_as_the_run_does(tmp_path, capsys, monkeypatch):
    import bigresample.safefs as safefs  # check_free_space asks os.statvfs there

    class Tiny:
        f_bavail, f_frsize = 1, 4096

    src = tmp_path / "in.nii.gz"
    make_volume(src)
    monkeypatch.setattr(safefs.os, "statvfs", lambda p: Tiny)
    args = [src, tmp_path / "out.nii", "--z-spacing", "0.05"]
    run = _refused(tmp_path, capsys, args, "not enough disk space in")
    dry = _refused(tmp_path, capsys, args + ["--dry-run"], "not enough disk space in")
    assert dry.err == run.err


def test_a_dry_run_that_would_run_ends_with_the_verdict(tmp_path, capsys):
    src = tmp_path / "in.nii.gz"
    make_volume(src)
    assert main([str(src), str(tmp_path / "out.nii"), "--z-spacing", "0.05", "--dry-run"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[-1].startswith("Verdict: every check passed") and "the run would go ahead" in lines[-1]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.nii.gz"]
