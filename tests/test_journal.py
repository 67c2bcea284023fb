"""journal: the identity of an input, the journal's lines, and what a rerun may reuse (read with json and os)."""

import json
import os

import pytest

from bigresample import safefs
from bigresample.journal import FORMAT, Journal, input_identity


def _write(path, data: bytes, mtime_ns=None):
    path.write_bytes(data)
    if mtime_ns is not None:
        os.utime(path, ns=(mtime_ns, mtime_ns))


def test_a_file_input_is_identified_by_path_size_mtime_and_inode(tmp_path):
    src = tmp_path / "in.nii"
    _write(src, b"x" * 352, mtime_ns=1_700_000_000_123_456_789)
    st = os.stat(src)
    assert input_identity(src) == {"path": str(src.resolve()), "size": 352,
                                   "mtime_ns": 1_700_000_000_123_456_789, "inode": st.st_ino}


def test_a_folder_input_counts_every_file_below_it(tmp_path):
    root = tmp_path / "in.zarr"
    (root / "0" / "c").mkdir(parents=True)
    _write(root / "zarr.json", b"{}", mtime_ns=5_000)
    _write(root / "0" / "zarr.json", b"{ }", mtime_ns=9_000)
    _write(root / "0" / "c" / "0", b"1234567", mtime_ns=7_000)
    ident = input_identity(root)
    assert ident["files"] == 3
    assert ident["bytes"] == 2 + 3 + 7
    assert ident["newest_mtime_ns"] == 9_000
    assert ident["path"] == str(root.resolve()) and ident["inode"] == os.stat(root).st_ino
    # a chunk rewritten in place, same size: no folder's stat changes, the identity does
    _write(root / "0" / "c" / "0", b"7654321", mtime_ns=12_000)
    assert input_identity(root)["newest_mtime_ns"] == 12_000


def test_an_empty_folder_input_counts_nothing(tmp_path):
    (tmp_path / "empty.zarr").mkdir()
    ident = input_identity(tmp_path / "empty.zarr")
    assert (ident["files"], ident["bytes"], ident["newest_mtime_ns"]) == (0, 0, 0)


@pytest.mark.parametrize("change", ["content, same size", "replaced, same size and time"])
def test_an_input_changed_at_the_same_path_is_not_resumed(tmp_path, change):
    """The journal of a killed run is not reused once the input at the same path has changed."""
    src = tmp_path / "in.nii"
    _write(src, b"a" * 400, mtime_ns=1_000_000_000)
    journal = Journal(tmp_path / ".out.nii.bigresample-journal", {"input": input_identity(src), "order": 1})
    journal.start(keep=False)
    journal.record(0)
    journal.close()
    if change == "content, same size":
        _write(src, b"b" * 400, mtime_ns=2_000_000_000)
    else:  # a new file renamed onto the path: only the inode tells
        _write(tmp_path / "new", b"a" * 400, mtime_ns=1_000_000_000)
        keep = tmp_path / "old"  # held, so that the new file cannot get the old inode back
        os.link(src, keep)
        os.replace(tmp_path / "new", src)
    again = Journal(journal.path, {"input": input_identity(src), "order": 1})
    assert again.load() == ({}, "it was made for another input file or other parameters")
    # the same input and parameters: the block is reused
    same = Journal(journal.path, journal.identity)
    assert same.load() == ({0: None}, None)


def test_the_first_line_is_the_identity_then_one_line_per_block(tmp_path):
    path = tmp_path / ".o.nii.gz.bigresample-journal"
    journal = Journal(path, {"order": 3, "input": {"path": "/x"}})
    journal.start(keep=False)
    journal.record(0, 1234)
    journal.record(1)
    lines = path.read_text().split("\n")  # readable as soon as recorded: flushed per line
    journal.close()
    assert lines[0] == json.dumps({"format": FORMAT, "input": {"path": "/x"}, "order": 3}, sort_keys=True)
    assert FORMAT == 1  # older journals must keep resuming
    assert lines[1:] == ["0 1234", "1", ""]
    assert Journal(path, {"order": 3, "input": {"path": "/x"}}).load() == ({0: 1234, 1: None}, None)


def test_a_rerun_appends_to_the_kept_journal(tmp_path):
    path = tmp_path / "j"
    ident = {"order": 1}
    first = Journal(path, ident)
    first.start(keep=False)
    first.record(0, 10)
    first.close()
    second = Journal(path, ident)
    assert second.load() == ({0: 10}, None)
    second.start(keep=True)
    second.record(1, 20)
    second.close()
    assert path.read_text().splitlines()[1:] == ["0 10", "1 20"]
    assert Journal(path, ident).load() == ({0: 10, 1: 20}, None)


def test_a_fresh_start_replaces_an_old_journal(tmp_path):
    path = tmp_path / "j"
    path.write_text('{"format": 1, "order": 2}\n0\n1\n')
    journal = Journal(path, {"order": 1})
    journal.start(keep=False)
    journal.close()
    assert path.read_text() == json.dumps({"format": 1, "order": 1}) + "\n"


def test_a_torn_last_line_is_ignored_and_odd_lines_skipped(tmp_path):
    path = tmp_path / "j"
    head = json.dumps({"format": 1, "order": 1}, sort_keys=True)
    path.write_text(head + "\n0 100\n\n1\n2 300 9\n3 40")
    assert Journal(path, {"order": 1}).load() == ({0: 100, 1: None, 3: 40}, None)
    path.write_text(head + "\n0 100\n1 2x\n2 300\n")  # torn: nothing after it is trusted
    assert Journal(path, {"order": 1}).load() == ({0: 100}, None)
    path.write_text(head + "\n0\n1\n")
    assert Journal(path, {"order": 1}).load() == ({0: None, 1: None}, None)


@pytest.mark.parametrize("content, note", [
    (None, None),
    (b"", "it was made for another input file or other parameters"),
    (b'{"format": 1, "order": 1', "its journal is unreadable"),
    (b"\xff\xfe\x00", "its journal is unreadable"),
    (b'{"format": 2, "order": 1}\n0\n', "it was made for another input file or other parameters"),
    (b'{"order": 1}\n0\n', "it was made for another input file or other parameters"),
])
def test_a_journal_that_cannot_be_used_says_why(tmp_path, content, note):
    path = tmp_path / "j"
    if content is not None:
        path.write_bytes(content)
    assert Journal(path, {"order": 1}).load() == ({}, note)


def test_a_journal_path_that_is_a_link_is_refused(tmp_path):
    target = tmp_path / "elsewhere"
    target.write_text('{"format": 1}\n')
    (tmp_path / "j").symlink_to(target)
    with pytest.raises(safefs.UnsafePathError):
        Journal(tmp_path / "j", {}).load()


def test_close_is_safe_twice_and_before_anything_is_opened(tmp_path):
    path = tmp_path / "j"
    journal = Journal(path, {})
    journal.close()  # nothing opened yet
    journal.start(keep=False)
    journal.close()
    journal.close()
    assert path.exists() and journal._f is None


@pytest.mark.parametrize("out, chunks", [("out.nii", (40, 30, 2)), ("out.nii.gz", (40, 30, 2)),
                                         ("out.nii.gz", (20, 9, 3))])
def test_a_block_is_journaled_only_once_its_bytes_are_in_the_partial_output(tmp_path, monkeypatch, out, chunks):
    """At every journal line the partial output file already holds that block's final values
    (whole-array scipy): a process killed right after the line loses nothing journaled.  For a
    .nii.gz, the journaled length covers every member up to the block's (or its slab's)."""
    import gzip

    import numpy as np

    from bigresample.executors import Threads
    from bigresample.nifti import header_bytes
    from bigresample.report import Report
    from bigresample.runner import resume, run_stage
    from .helpers import make_volume, planned, scipy_reference

    src = tmp_path / "in.nii"
    data, _ = make_volume(src, shape=(40, 30, 24))
    job = planned(src, tmp_path / out, spacing=(0.1, 0.13, 0.07), order=0, chunks=chunks, workers=2)
    stage = job.stages[0]
    expected = scipy_reference(data, job.grid, 0, "nearest")
    full = np.ascontiguousarray(expected.T).tobytes()  # the data in file order
    plane = expected.shape[0] * expected.shape[1] * expected.itemsize
    head = len(header_bytes(job.header))  # the header, its extensions and the provenance record
    checked = []
    record = Journal.record

    def checked_record(self, index, length=None):
        z = stage.blocks.region(index)[2]
        raw = job.sink.partial.read_bytes()  # what a killed process would leave
        if out.endswith(".gz"):
            body = gzip.decompress(raw[:length])[head:]  # every member up to the journaled length
            assert len(body) >= z.stop * plane and body == full[:len(body)], index
        else:
            assert raw[head + z.start * plane:head + z.stop * plane] == full[z.start * plane:z.stop * plane], index
        checked.append(index)
        record(self, index, length)

    monkeypatch.setattr(Journal, "record", checked_record)
    journal, done = resume(job, stage, Report())
    run_stage(job, stage, journal, done, Threads(2), job.volume.source, Report())
    assert checked == list(range(len(stage.blocks)))
