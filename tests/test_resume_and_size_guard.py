"""Resume after a kill (OME-Zarr outputs, an input changed in between) and the size guard at its threshold."""

import os
import signal
import subprocess
import sys
import time

import nibabel as nib
import numpy as np
import pytest

from bigresample import make_grid
from bigresample.cli import main
from bigresample.job import plan_job
from bigresample.request import Request, UsageError

from .helpers import assert_matches_reference, make_volume, ome_array, scipy_reference

SPACING = 0.13
ARGS = ["--z-spacing", str(SPACING), "--order", "1", "--workers", "1", "--chunks", "40", "40", "1"]


def _run(src, out, *extra):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (os.getcwd(), os.environ.get("PYTHONPATH")) if p))
    return subprocess.Popen([sys.executable, "-m", "bigresample", str(src), str(out), *ARGS, *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def _journal_lines(journal):
    try:
        return len(journal.read_text().splitlines()) - 1
    except OSError:
        return 0


def _kill_after(proc, journal, blocks, timeout=60):
    deadline = time.time() + timeout
    while _journal_lines(journal) < blocks and proc.poll() is None and time.time() < deadline:
        time.sleep(0.002)
    assert proc.poll() is None, "the run ended before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert _journal_lines(journal) >= blocks


def _expected(data):
    stored = float(np.float32(0.1))  # make_volume's spacing as the header stores it
    g = make_grid(data.shape, (stored,) * 3, (stored, stored, SPACING), "center")
    return scipy_reference(data, g, 1, "nearest")


@pytest.mark.slow
def test_an_ome_zarr_output_resumes_after_a_kill(tmp_path):
    """docs/files.md: OME-Zarr outputs are resumed like the others; the result equals scipy."""
    pytest.importorskip("ome_zarr")

    src = tmp_path / "in.nii"
    data, _ = make_volume(src, shape=(40, 40, 120), seed=3)
    out = tmp_path / "out.zarr"
    journal = tmp_path / ".out.zarr.bigresample-journal"
    _kill_after(_run(src, out, "--quiet"), journal, 5)
    assert not out.exists()
    rerun = _run(src, out)
    stdout, stderr = rerun.communicate(timeout=120)
    assert rerun.returncode == 0, stderr
    assert "Resumed:" in stdout, stdout
    got, _ = ome_array(out)
    assert_matches_reference(got, _expected(data), data, 1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.nii", "out.zarr"]


@pytest.mark.slow
@pytest.mark.parametrize("how", ["rewritten in place, newer", "replaced, same size and time"])
def test_an_input_changed_between_a_kill_and_the_rerun_is_not_resumed(tmp_path, how):
    """The journal identifies the input by path, size, modification time and inode (docs/usage.md): new
    bytes of the same size under the same path start the run again, and the output is the new input's."""
    src = tmp_path / "in.nii"
    make_volume(src, shape=(40, 40, 120), seed=3)
    out = tmp_path / "out.nii"
    journal = tmp_path / ".out.nii.bigresample-journal"
    _kill_after(_run(src, out, "--quiet"), journal, 5)
    before = src.stat()
    other = tmp_path / "other.nii"
    new, _ = make_volume(other, shape=(40, 40, 120), seed=4)
    assert other.stat().st_size == before.st_size and other.read_bytes() != src.read_bytes()
    if how.startswith("rewritten"):
        with open(src, "r+b") as f:
            f.write(other.read_bytes())
        os.utime(src, ns=(before.st_atime_ns, before.st_mtime_ns + 5 * 10**9))
        assert src.stat().st_ino == before.st_ino
        other.unlink()
    else:
        os.utime(other, ns=(before.st_atime_ns, before.st_mtime_ns))
        other.replace(src)
        assert src.stat().st_mtime_ns == before.st_mtime_ns and src.stat().st_size == before.st_size
    rerun = _run(src, out)
    stdout, stderr = rerun.communicate(timeout=120)
    assert rerun.returncode == 0, stderr
    assert "Resumed:" not in stdout and "not resuming" in stdout, stdout
    assert_matches_reference(np.asanyarray(nib.load(out).dataobj), _expected(new), new, 1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.nii", "out.nii"]


def _sparse_input(path, shape, dtype=np.float32):
    """A NIfTI whose header says ``shape`` and whose data are a hole in the file (no disk used)."""
    hdr = nib.Nifti1Header()
    hdr.set_data_shape(shape)
    hdr.set_data_dtype(dtype)
    hdr.set_zooms((1.0, 1.0, 1.0))
    hdr.set_qform(np.eye(4), 1)
    hdr.set_sform(np.eye(4), 2)
    hdr.set_xyzt_units("mm")
    hdr["vox_offset"] = 352
    with open(path, "wb") as f:
        f.write(hdr.binaryblock + b"\0" * 4)
        f.truncate(352 + int(np.prod(shape)) * np.dtype(dtype).itemsize)


#: docs/usage.md, "Size rules": refused when more than 16 times the input's bytes and more than 1 GiB.
@pytest.mark.parametrize("m_z, refused", [(2047, False), (2048, False), (2049, True)])
def test_the_too_large_rule_at_its_threshold_with_and_without_force(tmp_path, capsys, m_z, refused):
    src = tmp_path / "in.nii"
    _sparse_input(src, (512, 512, 128))  # 128 MiB: 16 times is 2 GiB, over the 1 GiB floor
    t = 128 / m_z  # 128 voxels of 1 mm to m_z voxels
    assert max(1, round(128 * (1.0 / t))) == m_z
    out = tmp_path / "o.nii"
    assert (512 * 512 * m_z > 16 * 512 * 512 * 128) is refused
    if refused:
        with pytest.raises(UsageError, match="16x the input .* or add --force"):
            plan_job(Request.make(src, out, spacing=(None, None, t)))
        assert main([str(src), str(out), "--z-spacing", repr(t), "--dry-run"]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "check the spacing, or add --force" in err, err
    else:
        plan_job(Request.make(src, out, spacing=(None, None, t))).volume.close()
    job = plan_job(Request.make(src, out, spacing=(None, None, t), force=True))
    job.volume.close()
    assert job.out_shape == (512, 512, m_z)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.nii"]


def test_the_too_large_rule_needs_both_conditions(tmp_path):
    """More than 16 times but under 1 GiB runs; over 1 GiB but not 16 times runs too."""
    src = tmp_path / "in.nii"
    _sparse_input(src, (64, 64, 64))  # 1 MiB: 17 times is 17 MiB
    plan_job(Request.make(src, tmp_path / "o.nii", spacing=(None, None, 64 / (17 * 64)))).volume.close()
    big = tmp_path / "big.nii"
    _sparse_input(big, (1024, 1024, 128))  # 512 MiB: 2 GiB is 4 times
    plan_job(Request.make(big, tmp_path / "o.nii", spacing=(None, None, 0.25))).volume.close()
