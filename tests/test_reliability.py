"""Atomic outputs, resume after a kill, and one clear line for every bad input."""

import gzip
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from bigresample import resample
from bigresample.cli import main

from .conftest import same_but_provenance
from .test_cli import make_volume


def run_cli(*args, **kw):
    return subprocess.Popen(
        [sys.executable, "-m", "bigresample", *map(str, args)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw,
    )


def _fail(tmp_path, capsys, args, message):
    """Exit status 2, one line naming the problem, nothing at or beside the output."""
    before = set(os.listdir(tmp_path))
    out = tmp_path / "out.nii.gz"
    code = main([*map(str, args[:1]), str(out), *map(str, args[1:]), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("bigresample: error: "), err
    assert message in err, err
    assert "Traceback" not in err
    assert set(os.listdir(tmp_path)) == before
    return err


def _nifti_bytes(data=None, **hdr_fields):
    data = np.zeros((4, 4, 4), np.int16) if data is None else data
    img = nib.Nifti1Image(data, np.eye(4))
    for k, v in hdr_fields.items():
        img.header[k] = v
    return img.to_bytes()


@pytest.fixture
def good(tmp_path):
    path = tmp_path / "in.nii"
    make_volume(path)
    return path


def test_missing_input(tmp_path, capsys):
    _fail(tmp_path, capsys, [tmp_path / "nope.nii", "--z-spacing", "0.2"], "input file not found")


def test_a_folder_as_input(tmp_path, capsys):
    (tmp_path / "dir.nii").mkdir()
    _fail(tmp_path, capsys, [tmp_path / "dir.nii", "--z-spacing", "0.2"], "is a folder")


def test_an_empty_file(tmp_path, capsys):
    (tmp_path / "empty.nii").write_bytes(b"")
    _fail(tmp_path, capsys, [tmp_path / "empty.nii", "--z-spacing", "0.2"], "input file is empty")


def test_bytes_that_are_not_an_image(tmp_path, capsys):
    (tmp_path / "junk.nii").write_bytes(os.urandom(1000))
    _fail(tmp_path, capsys, [tmp_path / "junk.nii", "--z-spacing", "0.2"], "not an image nibabel can read")


def test_a_text_file_named_nii_gz(tmp_path, capsys):
    (tmp_path / "notes.nii.gz").write_text("this is not gzip\n" * 20)
    _fail(tmp_path, capsys, [tmp_path / "notes.nii.gz", "--z-spacing", "0.2"], "notes.nii.gz")


def test_a_truncated_nii(tmp_path, capsys, good):
    data = good.read_bytes()
    (tmp_path / "cut.nii").write_bytes(data[: len(data) // 2])
    _fail(tmp_path, capsys, [tmp_path / "cut.nii", "--z-spacing", "0.2"], "truncated")


def test_a_truncated_nii_gz(tmp_path, capsys, good):
    gz = gzip.compress(good.read_bytes())
    (tmp_path / "cut.nii.gz").write_bytes(gz[: len(gz) * 2 // 3])
    _fail(tmp_path, capsys, [tmp_path / "cut.nii.gz", "--z-spacing", "0.2"], "cut.nii.gz")


def test_a_corrupted_gzip_stream_is_caught_by_its_crc(tmp_path, capsys, good):
    gz = bytearray(gzip.compress(good.read_bytes(), compresslevel=0))  # stored blocks: flip a data byte
    gz[len(gz) // 2] ^= 0xFF
    (tmp_path / "bad.nii.gz").write_bytes(bytes(gz))
    _fail(tmp_path, capsys, [tmp_path / "bad.nii.gz", "--z-spacing", "0.2"], "corrupted or truncated gzip")


def test_zero_or_negative_dimensions(tmp_path, capsys):
    raw = bytearray(_nifti_bytes())
    np.frombuffer(raw, dtype=np.int16, count=8, offset=40)  # dim[0..7]
    raw[40 + 2 * 2 : 40 + 2 * 3] = np.int16(0).tobytes()  # dim[2] = 0
    (tmp_path / "zero.nii").write_bytes(bytes(raw))
    _fail(tmp_path, capsys, [tmp_path / "zero.nii", "--z-spacing", "0.2"], "zero.nii")
    raw[40 + 2 * 2 : 40 + 2 * 3] = np.int16(-4).tobytes()
    (tmp_path / "neg.nii").write_bytes(bytes(raw))
    _fail(tmp_path, capsys, [tmp_path / "neg.nii", "--z-spacing", "0.2"], "neg.nii")


def test_an_unknown_datatype(tmp_path, capsys):
    raw = bytearray(_nifti_bytes())
    raw[70:72] = np.int16(1234).tobytes()  # datatype code
    (tmp_path / "dtype.nii").write_bytes(bytes(raw))
    _fail(tmp_path, capsys, [tmp_path / "dtype.nii", "--z-spacing", "0.2"], "1234")


@pytest.mark.parametrize("affine", [np.diag([1.0, 0.0, 1.0, 1.0]), np.diag([1.0, np.nan, 1.0, 1.0])],
                         ids=["singular", "nan"])
def test_a_singular_or_non_finite_affine(tmp_path, capsys, affine):
    raw = bytearray(_nifti_bytes())
    raw[252:254] = np.int16(0).tobytes()  # qform_code
    raw[254:256] = np.int16(1).tobytes()  # sform_code
    raw[280:328] = affine[:3].astype(np.float32).tobytes()  # srow_x, srow_y, srow_z
    (tmp_path / "aff.nii").write_bytes(bytes(raw))
    _fail(tmp_path, capsys, [tmp_path / "aff.nii", "--z-spacing", "0.2"], "affine is singular or not finite")


def test_a_2d_image(tmp_path, capsys):
    nib.save(nib.Nifti1Image(np.zeros((8, 8), np.float32), np.eye(4)), tmp_path / "flat.nii")
    _fail(tmp_path, capsys, [tmp_path / "flat.nii", "--z-spacing", "0.2"], "need a 3D or 4D image; got shape (8, 8)")


@pytest.mark.parametrize(
    "args, message",
    [
        (["--z-spacing", "0"], "z-spacing must be finite and > 0; got '0'"),
        (["--z-spacing", "-0.1"], "got '-0.1'"),
        (["--z-spacing", "nan"], "got 'nan'"),
        (["--x-spacing", "inf"], "got 'inf'"),
        (["--y-spacing", "fast"], "y-spacing must be a number; got 'fast'"),
        (["--spacing", "0.1", "0.2"], "--spacing needs 3 values (x y z); got 2"),
        (["--spacing", "0.1", "0.1", "0.1", "--x-spacing", "0.2"], "not both"),
        ([], "no spacing given"),
        (["--z-spacing", "0.2", "--order", "6"], "--order must be 0-5; got 6"),
        (["--z-spacing", "0.2", "--order", "-1"], "--order must be 0-5; got -1"),
        (["--z-spacing", "0.2", "--mode", "edge"], "mode must be one of"),
        (["--z-spacing", "0.2", "--memory-limit", "lots"], "memory limit must look like"),
        (["--reference", "nosuchproto://bucket/ref.nii"],
         "reference URL cannot be used: nosuchproto://bucket/ref.nii: Protocol not known: nosuchproto"),
    ],
)
def test_bad_arguments(tmp_path, capsys, good, args, message):
    _fail(tmp_path, capsys, [good, *args], message)


def test_an_output_folder_that_does_not_exist(tmp_path, capsys, good):
    assert main([str(good), str(tmp_path / "no" / "out.nii"), "--z-spacing", "0.2"]) == 2
    assert "output folder does not exist" in capsys.readouterr().err


@pytest.fixture
def read_only_folder(tmp_path):
    """A folder nobody can create a file in, root included: immutable (chattr +i) as root, mode 0500 otherwise."""
    ro = tmp_path / "ro"
    ro.mkdir()
    if os.geteuid() != 0:
        ro.chmod(0o500)
        yield ro
        ro.chmod(0o700)
        return
    if subprocess.run(["chattr", "+i", str(ro)], capture_output=True).returncode != 0:
        pytest.skip("chattr +i is not supported on this file system")
    try:
        yield ro
    finally:
        subprocess.run(["chattr", "-i", str(ro)], check=True)


def _refused_in_one_line(tmp_path, capsys, args, message):
    before = sorted(str(p) for p in tmp_path.rglob("*"))
    code = main([*map(str, args), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("bigresample: error: ") and "Traceback" not in err, err
    assert message in err, err
    assert sorted(str(p) for p in tmp_path.rglob("*")) == before
    return err


@pytest.mark.parametrize("out", ["out.nii", "out.nii.gz", "out.zarr"])
def test_an_output_folder_that_is_not_writable(tmp_path, capsys, good, read_only_folder, out):
    with pytest.raises(OSError):  # not even root can write there
        (read_only_folder / "probe").write_bytes(b"")
    _refused_in_one_line(tmp_path, capsys, [good, read_only_folder / out, "--z-spacing", "0.2"],
                         f"output folder is not writable: {read_only_folder}")


def test_an_output_whose_folder_is_a_regular_file(tmp_path, capsys, good):
    """ENOTDIR, which root cannot bypass either."""
    not_a_folder = tmp_path / "file"
    not_a_folder.write_bytes(b"x")
    _refused_in_one_line(tmp_path, capsys, [good, not_a_folder / "out.nii", "--z-spacing", "0.2"],
                         f"output folder is not a folder: {not_a_folder}")
    assert not_a_folder.read_bytes() == b"x"


def test_an_output_extension_that_is_not_supported(tmp_path, capsys, good):
    assert main([str(good), str(tmp_path / "out.mha"), "--z-spacing", "0.2"]) == 2
    err = capsys.readouterr().err
    assert "output must end in .nii, .nii.gz or .zarr; got 'out.mha'" in err


def test_an_output_so_large_it_cannot_be_meant_needs_force(tmp_path, capsys, good):
    _fail(tmp_path, capsys, [good, "--spacing", "0.001", "0.001", "0.001"], "add --force")


def test_not_enough_disk(tmp_path, capsys, good, monkeypatch):
    import bigresample.safefs as safefs  # check_free_space asks os.statvfs there

    class Tiny:
        f_bavail, f_frsize = 1, 4096

    monkeypatch.setattr(safefs.os, "statvfs", lambda p: Tiny)
    _fail(tmp_path, capsys, [good, "--z-spacing", "0.05"], "not enough disk space")


@pytest.mark.parametrize("how", ["same", "symlink", "hardlink"])
def test_output_equal_to_input_is_refused(tmp_path, capsys, good, how):
    target = good
    if how == "symlink":
        target = tmp_path / "link.nii"
        target.symlink_to(good)
    elif how == "hardlink":
        target = tmp_path / "hard.nii"
        os.link(good, target)
    before = good.read_bytes()
    assert main([str(good), str(target), "--z-spacing", "0.2"]) == 2
    assert "overwrite the input" in capsys.readouterr().err
    assert good.read_bytes() == before


def test_debug_shows_the_traceback(tmp_path, good):
    with pytest.raises(Exception, match="no spacing given"):
        main([str(good), str(tmp_path / "o.nii"), "--debug"])


# --------------------------------------------------------------------------
# interruptions
# --------------------------------------------------------------------------


def _journal_blocks(journal: Path) -> int:
    try:
        return max(0, len(journal.read_text().splitlines()) - 1)
    except OSError:
        return 0


@pytest.fixture(scope="module")
def slow_case(tmp_path_factory):
    """A volume and a command with many small blocks, and an uninterrupted result."""
    folder = tmp_path_factory.mktemp("kill")
    src = folder / "in.nii"
    make_volume(src, shape=(64, 64, 240), seed=7)
    args = ["--z-spacing", "0.13", "--order", "3", "--workers", "1", "--chunks", "64", "64", "2", "--quiet"]
    refs = {}
    for kind in (".nii", ".nii.gz"):
        ref = folder / f"ref{kind}"
        assert main([str(src), str(ref), *args]) == 0
        refs[kind] = ref
    return src, args, refs


@pytest.mark.slow
@pytest.mark.parametrize("kind", [".nii", ".nii.gz"])
@pytest.mark.parametrize("when", ["early", "middle", "late"])
def test_a_kill_at_any_moment_then_a_rerun_gives_the_uninterrupted_output(tmp_path, slow_case, kind, when):
    src, args, refs = slow_case
    out = tmp_path / f"out{kind}"
    out.write_bytes(b"previous result")  # an existing output stays intact until replaced
    journal = tmp_path / f".{out.name}.bigresample-journal"
    total = -(-int(round(240 * 0.1 / 0.13)) // 2)
    target = {"early": 1, "middle": total // 2, "late": total - 1}[when]
    proc = run_cli(src, out, *args)
    deadline = time.time() + 60
    while _journal_blocks(journal) < target and proc.poll() is None and time.time() < deadline:
        time.sleep(0.002)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert out.read_bytes() == b"previous result"
    partial = tmp_path / f".out.bigresample-partial{kind}"
    assert partial.exists() and journal.exists()
    rerun = run_cli(src, out, *[a for a in args if a != "--quiet"])
    stdout, stderr = rerun.communicate(timeout=120)
    assert rerun.returncode == 0, stderr
    assert "Resumed:" in stdout
    assert same_but_provenance(out) == same_but_provenance(refs[kind])
    assert not partial.exists() and not journal.exists()


@pytest.mark.slow
@pytest.mark.parametrize("rerun_on", ["threads", "cluster"])
def test_a_run_through_the_zarr_store_resumes_after_a_kill(tmp_path, slow_case, rerun_on):
    """--keep-zarr and cluster runs write blocks into the zarr store; the
    journal lists the finished ones, so a rerun (on threads or on a cluster)
    computes only the others."""
    src, args, refs = slow_case
    out = tmp_path / "out.nii"
    journal = tmp_path / f".{out.name}.bigresample-journal"
    proc = run_cli(src, out, *args, "--keep-zarr")
    while _journal_blocks(journal) < 20 and proc.poll() is None:
        time.sleep(0.002)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not out.exists() and (tmp_path / ".out.nii.bigresample.zarr").is_dir()
    if rerun_on == "threads":
        rerun = run_cli(src, out, *[a for a in args if a != "--quiet"], "--keep-zarr")
        stdout, stderr = rerun.communicate(timeout=120)
        assert rerun.returncode == 0, stderr
    else:
        distributed = pytest.importorskip("distributed")
        lines = []
        with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                                      dashboard_address=None) as cluster, distributed.Client(cluster) as client:
            resample(src, out, spacing=(None, None, 0.13), order=3, workers=1, chunks=(64, 64, 2),
                     keep_zarr=True, client=client, log=lines.append)
        stdout = "\n".join(lines)
    assert "Resumed:" in stdout and "already in the zarr store" in stdout
    assert same_but_provenance(out) == same_but_provenance(refs[".nii"])
    assert not journal.exists()


@pytest.mark.slow
def test_ctrl_c_stops_keeps_finished_blocks_and_says_how_to_resume(tmp_path, slow_case):
    src, args, refs = slow_case
    out = tmp_path / "out.nii"
    journal = tmp_path / f".{out.name}.bigresample-journal"
    proc = run_cli(src, out, *args)
    while _journal_blocks(journal) < 5 and proc.poll() is None:
        time.sleep(0.002)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert "run the same command again to resume" in stderr and stderr.count("\n") == 1
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".bigresample-")] == []  # no other temporaries
    assert main([str(src), str(out), *args]) == 0
    assert same_but_provenance(out) == same_but_provenance(refs[".nii"])


@pytest.mark.slow
def test_sigterm_is_an_interruption_too(tmp_path, slow_case):
    src, args, _ = slow_case
    out = tmp_path / "out.nii.gz"
    journal = tmp_path / f".{out.name}.bigresample-journal"
    proc = run_cli(src, out, *args)
    while _journal_blocks(journal) < 3 and proc.poll() is None:
        time.sleep(0.002)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 143 and "resume" in stderr  # 128 + SIGTERM, as shells report it


def test_a_partial_output_made_with_other_parameters_is_never_reused(tmp_path, good, capsys):
    out = tmp_path / "out.nii"
    partial = tmp_path / ".out.bigresample-partial.nii"
    journal = tmp_path / ".out.nii.bigresample-journal"
    partial.write_bytes(b"x" * 100)
    journal.write_text('{"format": 1, "order": 5}\n0\n1\n')
    assert main([str(good), str(out), "--z-spacing", "0.2", "--no-progress"]) == 0
    assert "not resuming" in capsys.readouterr().out
    ref = tmp_path / "ref.nii"
    assert main([str(good), str(ref), "--z-spacing", "0.2", "--quiet"]) == 0
    assert nib.load(out).get_fdata().tobytes() == nib.load(ref).get_fdata().tobytes()


def test_the_input_is_never_modified(tmp_path, good):
    before = (good.read_bytes(), good.stat().st_mtime_ns)
    assert main([str(good), str(tmp_path / "o.nii.gz"), "--spacing", "0.2", "0.07", "0.1", "--order", "3",
                 "--quiet"]) == 0
    assert (good.read_bytes(), good.stat().st_mtime_ns) == before


def test_complex_data_is_refused_in_one_line(tmp_path, capsys):
    src = tmp_path / "c.nii"
    nib.save(nib.Nifti1Image(np.zeros((5, 5, 5), np.complex64), np.eye(4)), src)
    _fail(tmp_path, capsys, [src, "--z-spacing", "2"], "complex data (complex64) is not supported")


def test_an_output_that_would_overwrite_the_reference_is_refused(tmp_path, capsys, good):
    ref = tmp_path / "ref.nii"
    nib.save(nib.Nifti1Image(np.zeros((5, 5, 5), np.uint8), np.eye(4)), ref)
    assert main([str(good), str(ref), "--reference", str(ref)]) == 2
    assert "output would overwrite the reference" in capsys.readouterr().err
    assert nib.load(ref).shape == (5, 5, 5)
