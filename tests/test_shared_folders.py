"""Hostile files and shared folders: no writing through planted links, no decompression bombs.

Tests run as root (as CI does), so "another user" is made with chown."""

import gzip
import os
import zlib
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from bigresample import resample
from bigresample.cli import main
from bigresample.codec import decompress
from bigresample.errors import InputError

from .conftest import make_volume

THESIS = b"\\chapter{Results} six years of work\n"


@pytest.fixture
def shared(tmp_path):
    """A shared folder with an input, and a file of the user's elsewhere (the attacker's target)."""
    folder = tmp_path / "shared"
    folder.mkdir()
    make_volume(folder / "in.nii", shape=(24, 20, 14))
    thesis = tmp_path / "home" / "thesis.tex"
    thesis.parent.mkdir()
    thesis.write_bytes(THESIS)
    return folder, thesis


def _refused(capsys, args, name):
    rc = main([*map(str, args), "--no-progress", "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2, err
    assert err.count("\n") == 1 and err.startswith("bigresample: error: ") and name in err
    return err


@pytest.mark.parametrize("out, planted", [
    ("out.nii", ".out.bigresample-partial.nii"),
    ("out.nii.gz", ".out.bigresample-partial.nii.gz"),
    ("out.nii", ".out.nii.bigresample-journal"),
    ("out.nii.gz", ".out.nii.gz.bigresample-journal"),
])
def test_a_link_planted_at_a_partial_output_or_journal_is_never_written_through(shared, capsys, out, planted):
    folder, thesis = shared
    (folder / planted).symlink_to(thesis)
    err = _refused(capsys, [folder / "in.nii", folder / out, "--z-spacing", "0.2"], planted)
    assert "symbolic link" in err
    assert thesis.read_bytes() == THESIS
    assert not (folder / out).exists()
    assert (folder / planted).is_symlink()  # someone else's: not removed either


@pytest.mark.parametrize("planted, args", [
    (".out.nii.bigresample.zarr", ["out.nii", "--keep-zarr"]),
    (".out.bigresample-partial.zarr", ["out.zarr"]),
    (".out.zarr.bigresample-journal-level1", ["out.zarr", "--levels", "2"]),
])
def test_a_link_planted_at_a_store_or_a_pyramid_level_is_never_written_through(shared, capsys, planted, args):
    folder, thesis = shared
    victim = thesis.parent / "results"
    victim.mkdir()
    (victim / "data.csv").write_text("1,2,3\n")
    (folder / planted).symlink_to(victim if "journal" not in planted else thesis)
    _refused(capsys, [folder / "in.nii", folder / args[0], "--spacing", "0.2", "0.2", "0.2", *args[1:]], planted)
    assert sorted(p.name for p in victim.iterdir()) == ["data.csv"]
    assert (victim / "data.csv").read_text() == "1,2,3\n" and thesis.read_bytes() == THESIS


def test_another_users_file_at_the_partial_name_is_not_reused_or_removed(shared, capsys):
    folder, _ = shared
    theirs = folder / ".out.bigresample-partial.nii"
    theirs.write_bytes(b"their data")
    os.chown(theirs, 12345, 12345)
    err = _refused(capsys, [folder / "in.nii", folder / "out.nii", "--z-spacing", "0.2"], theirs.name)
    assert "another user" in err
    assert theirs.read_bytes() == b"their data"


def test_a_leftover_of_ones_own_is_replaced_and_resume_still_works(shared, capsys):
    """An earlier run's own partial output and journal (regular files, this
    user's) are still reused or replaced as before."""
    folder, _ = shared
    (folder / ".out.bigresample-partial.nii").write_bytes(b"x" * 100)
    (folder / ".out.nii.bigresample-journal").write_text('{"format": 1, "order": 5}\n0\n')
    assert main([str(folder / "in.nii"), str(folder / "out.nii"), "--z-spacing", "0.2", "--no-progress"]) == 0
    assert "not resuming" in capsys.readouterr().out
    assert sorted(p.name for p in folder.iterdir()) == ["in.nii", "out.nii"]


def test_the_decompressed_input_gets_a_random_name_so_a_planted_link_is_never_used(shared):
    folder, thesis = shared
    src = folder / "in.nii.gz"
    src.write_bytes(gzip.compress((folder / "in.nii").read_bytes()))
    predictable = folder / f".bigresample-{os.getpid()}-in.nii"  # the name used before
    predictable.symlink_to(thesis)
    resample(src, folder / "out.nii", spacing=(None, None, 0.2), tmp_dir=folder)
    assert thesis.read_bytes() == THESIS
    assert sorted(p.name for p in folder.iterdir()) == sorted(["in.nii", "in.nii.gz", "out.nii", predictable.name])


def test_the_old_folder_of_a_replaced_ome_zarr_is_not_a_predictable_name(shared):
    folder, thesis = shared
    victim = thesis.parent / "results"
    victim.mkdir()
    (victim / "data.csv").write_text("1,2,3\n")
    (folder / ".out.zarr.bigresample-old").symlink_to(victim)  # the name used before
    resample(folder / "in.nii", folder / "out.zarr", spacing=(0.2, 0.2, 0.2))
    resample(folder / "in.nii", folder / "out.zarr", spacing=(0.3, 0.3, 0.3))  # replaces the first
    assert sorted(p.name for p in victim.iterdir()) == ["data.csv"]
    assert not [p for p in folder.iterdir() if "bigresample-old-" in p.name]


def test_a_link_at_the_output_or_qc_path_is_replaced_not_followed(shared):
    pytest.importorskip("matplotlib")
    folder, thesis = shared
    (folder / "out.nii").symlink_to(thesis)
    (folder / "qc.png").symlink_to(thesis)
    resample(folder / "in.nii", folder / "out.nii", spacing=(0.2, 0.2, 0.2), qc=folder / "qc.png")
    assert thesis.read_bytes() == THESIS
    assert not (folder / "out.nii").is_symlink() and nib.load(folder / "out.nii").shape == (12, 10, 7)
    assert not (folder / "qc.png").is_symlink() and (folder / "qc.png").read_bytes()[:4] == b"\x89PNG"


# --------------------------------------------------------------------------
# decompression bombs
# --------------------------------------------------------------------------


def _nifti_bytes(shape=(64, 64, 32)):
    data = np.random.default_rng(0).random(shape).astype(np.float32)
    hdr = nib.Nifti1Image(data, np.eye(4)).header
    hdr.set_data_offset(352)
    return hdr.binaryblock + b"\0" * 4 + data.tobytes(order="F")


def _member(data: bytes) -> bytes:
    c = zlib.compressobj(1, zlib.DEFLATED, 31)
    return c.compress(data) + c.flush()


def _zeros_member(n: int) -> bytes:
    c = zlib.compressobj(9, zlib.DEFLATED, 31)
    chunk = b"\0" * 2**20
    return b"".join(c.compress(chunk) for _ in range(n // 2**20)) + c.flush()


@pytest.mark.parametrize("where", ["same member", "second member"])
def test_a_decompression_bomb_is_refused_before_it_fills_the_scratch_folder(tmp_path, capsys, where):
    """The header describes 512 KiB of voxels; the stream holds 256 MiB more zeros."""
    raw = _nifti_bytes()
    bomb = b"\0" * (256 * 2**20)
    blob = _member(raw + bomb) if where == "same member" else _member(raw) + _zeros_member(len(bomb))
    assert len(blob) < 2 * 2**20
    src = tmp_path / "bomb.nii.gz"
    src.write_bytes(blob)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    err = _refused(capsys, [src, tmp_path / "out.nii", "--z-spacing", "2", "--tmp-dir", scratch],
                   "decompression bomb")
    assert f"bytes past the {len(raw)} bytes its header describes" in err
    assert list(scratch.iterdir()) == [] and not (tmp_path / "out.nii").exists()
    assert src.read_bytes() == blob  # the input is never modified


@pytest.mark.parametrize("where", ["same member", "second member"])
def test_nothing_past_the_described_size_is_ever_written(tmp_path, where):
    raw = _nifti_bytes()
    blob = _member(raw + b"\0" * 2**24) if where == "same member" else _member(raw) + _zeros_member(2**24)
    src = tmp_path / "bomb.nii.gz"
    src.write_bytes(blob)
    dst = tmp_path / "copy"
    fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
    with pytest.raises(InputError, match="bytes past the"):
        decompress(src, fd, len(raw))
    assert dst.read_bytes() == raw


def test_a_few_bytes_after_the_voxels_are_not_a_bomb(tmp_path):
    """Some writers pad; nibabel reads such files: up to 1 MiB after the voxels
    is read (to check the CRC) but never written out."""
    raw = _nifti_bytes()
    src = tmp_path / "padded.nii.gz"
    src.write_bytes(_member(raw + b"\x07" * 1000))
    resample(src, tmp_path / "out.nii", spacing=(None, None, 2.0))
    assert nib.load(tmp_path / "out.nii").shape == (64, 64, 16)
    fd = os.open(tmp_path / "copy", os.O_WRONLY | os.O_CREAT | os.O_EXCL)
    decompress(src, fd, len(raw))
    assert (tmp_path / "copy").read_bytes() == raw


def test_a_fifo_planted_at_the_journal_after_the_checks_is_refused_not_waited_on(tmp_path):
    from bigresample.journal import Journal
    from bigresample.safefs import UnsafePathError

    fifo = tmp_path / ".out.nii.bigresample-journal"
    os.mkfifo(fifo)
    with pytest.raises(UnsafePathError, match="not a regular file"):
        Journal(fifo, {"a": 1}).load()  # returns at once: no writer will ever come


def test_a_hard_link_at_the_partial_output_is_never_resumed_into(shared, capsys):
    """Resuming would truncate and append to the other name's file."""
    folder, thesis = shared
    os.link(thesis, folder / ".out.bigresample-partial.nii.gz")
    err = _refused(capsys, [folder / "in.nii", folder / "out.nii.gz", "--z-spacing", "0.2"],
                   ".out.bigresample-partial.nii.gz")
    assert "hard links" in err
    assert thesis.read_bytes() == THESIS


def test_a_stream_of_exactly_the_described_size_is_read_to_its_end_and_its_crc_checked(tmp_path):
    raw = _nifti_bytes()
    good = _member(raw[:1000]) + _member(raw[1000:])  # two members, as bigresample writes them
    src = tmp_path / "ok.nii.gz"
    src.write_bytes(good)
    fd = os.open(tmp_path / "copy", os.O_WRONLY | os.O_CREAT | os.O_EXCL)
    decompress(src, fd, len(raw))
    assert (tmp_path / "copy").read_bytes() == raw
    bad = bytearray(good)
    bad[-6] ^= 0xFF  # the last member's CRC-32
    src.write_bytes(bytes(bad))
    fd = os.open(tmp_path / "copy2", os.O_WRONLY | os.O_CREAT | os.O_EXCL)
    with pytest.raises(InputError, match="corrupted or truncated gzip stream"):
        decompress(src, fd, len(raw))


def test_an_mgz_may_carry_its_footer_after_the_voxels(tmp_path):
    data = np.random.default_rng(1).random((20, 18, 16)).astype(np.float32)
    img = nib.MGHImage(data, np.diag([1.0, 1.0, 1.0, 1.0]))
    path = tmp_path / "in.mgz"
    nib.save(img, path)
    resample(path, tmp_path / "out.nii", spacing=(None, None, 2.0))
    assert nib.load(tmp_path / "out.nii").shape == (20, 18, 8)
    assert not [p for p in Path(tmp_path).iterdir() if p.name.startswith(".bigresample-")]
