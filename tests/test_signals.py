"""Ctrl-C and SIGTERM end a run in every phase, keeping what resume needs.

How soon (within a second) is measured by benchmarks/bench_responsiveness.py, not
asserted here: a shared machine's load makes seconds fail a test that is right."""

import gzip
import signal
import subprocess
import sys
import time

import nibabel as nib
import numpy as np
import pytest

from .helpers import make_volume


def start(*args):
    return subprocess.Popen([sys.executable, "-m", "bigresample", *map(str, args), "--quiet"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for(check, proc, timeout=60):
    deadline = time.monotonic() + timeout
    while not check():
        if proc.poll() is not None or time.monotonic() > deadline:
            out, err = proc.communicate()
            pytest.fail(f"the moment never came (exit {proc.returncode}): {err}")
        time.sleep(0.001)


def stop(proc, sig):
    """Send ``sig``; returns (seconds until the process ended, exit status, stderr)."""
    t0 = time.monotonic()
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=30)
    return time.monotonic() - t0, proc.returncode, err


@pytest.fixture(scope="module")
def big_gz(tmp_path_factory):
    """A .nii.gz of ~100 MB that barely compresses (decompressing it takes a while)."""
    folder = tmp_path_factory.mktemp("big")
    path = folder / "in.nii.gz"
    rng = np.random.default_rng(0)
    data = rng.integers(0, 2**31, size=(320, 320, 240), dtype=np.int32)
    img = nib.Nifti1Image(data, np.diag([0.1, 0.1, 0.1, 1.0]))
    raw = img.header.binaryblock + b"\0" * 4 + data.tobytes(order="F")
    path.write_bytes(gzip.compress(raw, compresslevel=1))
    return path


def scratch_files(folder):
    return [p for p in folder.iterdir() if p.name.startswith(".bigresample-")]


def rss(proc) -> int:
    """The process's resident memory (bytes), 0 once it is gone."""
    try:
        with open(f"/proc/{proc.pid}/status") as f:
            return next(int(ln.split()[1]) * 1024 for ln in f if ln.startswith("VmRSS:"))
    except (OSError, StopIteration):
        return 0


@pytest.mark.slow
@pytest.mark.parametrize("sig, status", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
@pytest.mark.parametrize("route", ["scratch", "memory"])
def test_a_signal_while_decompressing_ends_the_run_at_once_and_leaves_nothing(tmp_path, big_gz, sig, status, route):
    """Into a scratch file (a budget too small to hold the ~100 MB inflated beside the blocks), or
    into memory (the default budget; caught while the resident memory grows past the interpreter's)."""
    out = tmp_path / "out.nii"
    if route == "scratch":
        proc = start(big_gz, out, "--z-spacing", "0.2", "--tmp-dir", tmp_path, "--memory-limit", "200MB")
        wait_for(lambda: any(p.stat().st_size > 0 for p in scratch_files(tmp_path)), proc)
    else:
        proc = start(big_gz, out, "--z-spacing", "0.2", "--tmp-dir", tmp_path)
        wait_for(lambda: rss(proc) > 150 * 2**20, proc)
    _, rc, err = stop(proc, sig)
    assert rc == status, err
    assert err.count("\n") == 1 and "interrupted" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no scratch copy, no partial output


@pytest.mark.slow
def test_a_signal_while_computing_keeps_the_finished_blocks_and_the_rerun_resumes(tmp_path):
    src = tmp_path / "in.nii"
    make_volume(src, shape=(256, 256, 120))
    out = tmp_path / "out.nii.gz"
    journal = tmp_path / ".out.nii.gz.bigresample-journal"
    args = ["--z-spacing", "0.05", "--order", "3", "--chunks", "256", "256", "4", "--workers", "2"]
    proc = start(src, out, *args)
    wait_for(lambda: journal.exists() and len(journal.read_text().splitlines()) > 3, proc)
    _, rc, err = stop(proc, signal.SIGTERM)
    assert rc == 143 and "run the same command again to resume" in err
    assert len(journal.read_text().splitlines()) - 1 < 60  # stopped: not every block of 240 planes / 4 done
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        ".out.bigresample-partial.nii.gz", ".out.nii.gz.bigresample-journal", "in.nii"]
    rerun = subprocess.run([sys.executable, "-m", "bigresample", src, out, *args, "--no-progress"],
                           capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert "Resumed:" in rerun.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.nii", "out.nii.gz"]


@pytest.mark.slow
def test_a_signal_while_streaming_the_store_keeps_the_store_for_the_rerun(tmp_path):
    src = tmp_path / "in.nii"
    make_volume(src, shape=(256, 256, 160))
    out = tmp_path / "out.nii.gz"
    partial = tmp_path / ".out.bigresample-partial.nii.gz"
    args = ["--z-spacing", "0.05", "--keep-zarr", "--chunks", "256", "256", "8"]
    proc = start(src, out, *args)
    wait_for(lambda: partial.exists() and partial.stat().st_size > 10**6, proc)
    _, rc, err = stop(proc, signal.SIGTERM)
    assert rc == 143, err
    assert not out.exists() and not partial.exists()
    assert (tmp_path / ".out.nii.gz.bigresample.zarr").is_dir()  # every block is still in the store
    rerun = subprocess.run([sys.executable, "-m", "bigresample", src, out, *args, "--no-progress"],
                           capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert "already in the zarr store" in rerun.stdout
