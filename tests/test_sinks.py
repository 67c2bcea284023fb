"""Each sink and each executor on its own: resume from the journal, atomic finish, commit order."""

import os
import threading
import time

import nibabel as nib
import numpy as np
import pytest

from bigresample import ome
from bigresample.blocks import BlockSet
from bigresample.executors import BlockTask, Dask, Threads
from bigresample.report import Report
from bigresample.runner import Interrupted, resume

from .helpers import (
    InterruptAfter,
    assert_matches_reference,
    make_volume,
    planned,
    run_job_stages,
    same_but_provenance,
    scipy_reference,
)


def read_output(path):
    if str(path).endswith(".zarr"):
        view = ome.open_image(path)
        return np.asarray(view[tuple(slice(None) for _ in view.shape)])
    return np.asanyarray(nib.load(path).dataobj)


ROUTES = [
    pytest.param("out.nii", {}, id="nii-at-offsets"),
    pytest.param("out.nii.gz", {}, id="gzip-members"),
    pytest.param("out.nii.gz", {"chunks": (20, 9, 3)}, id="gzip-assembled-slabs"),
    pytest.param("out.nii", {"keep_zarr": True}, id="zarr-store-then-nifti"),
    pytest.param("out.zarr", {}, id="ome-zarr"),
    pytest.param("out.zarr", {"levels": 2}, id="ome-zarr-pyramid"),
]


@pytest.mark.parametrize("out, kw", ROUTES)
def test_an_interrupted_sink_resumes_from_its_journal_and_finishes_atomically(tmp_path, out, kw):
    src = tmp_path / "in.nii"
    data, _ = make_volume(src, shape=(40, 30, 24))
    out = tmp_path / out
    out.write_bytes(b"an older output") if not str(out).endswith(".zarr") else None
    kw = dict(kw)  # the parametrization's own dict stays whole (mutation runs repeat a test in one process)
    args = dict(spacing=(0.1, 0.13, 0.07), order=3, chunks=kw.pop("chunks", (40, 23, 2)), **kw)

    job = planned(src, out, **args)
    with pytest.raises(Interrupted) as stop:
        run_job_stages(job, InterruptAfter(7))
    # the finished blocks are kept where the error says (as many as it says), the output is untouched
    lines = job.stages[0].journal.read_text().splitlines()
    journaled = len(lines) - 1
    assert 0 < journaled <= 7
    assert stop.value.done == journaled and stop.value.total == len(job.blocks)
    assert str(stop.value.partial) == job.sink.where(job.stages[0])
    if not str(out).endswith(".zarr"):
        assert out.read_bytes() == b"an older output"
    else:
        assert not out.exists()

    job = planned(src, out, **args)
    reused = run_job_stages(job, Threads(2))
    assert reused[0] == journaled  # every journaled block is reused, none is lost
    assert not out.exists() or not str(out).endswith(".zarr")
    job.sink.finish(Report().bar)
    assert not job.sink.partial.exists()
    expected = scipy_reference(data, job.grid, 3, "nearest")
    assert_matches_reference(read_output(out), expected, data, 3)
    job.sink.cleanup()


def test_a_journal_for_other_parameters_is_not_resumed(tmp_path):
    src = tmp_path / "in.nii"
    make_volume(src, shape=(40, 30, 24))
    job = planned(src, tmp_path / "out.nii", spacing=(0.1, 0.1, 0.07), chunks=(40, 30, 2))
    with pytest.raises(Interrupted):
        run_job_stages(job, InterruptAfter(3))
    notes = []

    class Notes(Report):
        def __call__(self, event):
            notes.append(event)

    job = planned(src, tmp_path / "out.nii", spacing=(0.1, 0.1, 0.07), chunks=(40, 30, 2), order=3)
    journal, done = resume(job, job.stages[0], Notes())
    assert done == {}
    assert [type(e).__name__ for e in notes] == ["NotResuming"]
    assert "other parameters" in notes[0].why


def test_a_gzip_partial_shorter_than_its_journal_starts_over(tmp_path):
    src = tmp_path / "in.nii"
    make_volume(src, shape=(40, 30, 24))
    kw = dict(spacing=(0.1, 0.1, 0.07), chunks=(40, 30, 2))
    job = planned(src, tmp_path / "out.nii.gz", **kw)
    with pytest.raises(Interrupted):
        run_job_stages(job, InterruptAfter(5))
    with open(job.sink.partial, "r+b") as f:
        f.truncate(100)  # the members the journal names are gone
    job = planned(src, tmp_path / "out.nii.gz", **kw)
    assert run_job_stages(job, Threads(2)) == [0]


def test_threads_commit_in_block_order_with_a_bounded_number_in_flight():
    blocks = BlockSet((64, 1, 1), (1, 1, 1))
    in_flight, most, lock = [0], [0], threading.Lock()

    class Task:
        def __call__(self, i):
            with lock:
                in_flight[0] += 1
                most[0] = max(most[0], in_flight[0])
            time.sleep(0.004 * ((i * 7) % 5))  # finish out of order
            with lock:
                in_flight[0] -= 1
            return i * 10

    committed = []
    Threads(3).run(Task(), (i for i in range(len(blocks)) if i % 9), lambda i, p: committed.append((i, p)))
    assert committed == [(i, i * 10) for i in range(64) if i % 9]
    assert most[0] <= 3


def test_an_interrupted_run_returns_at_once_and_closes_the_sink_after_its_last_block():
    started, release, finished = threading.Event(), threading.Event(), threading.Event()

    def task(i):
        started.set()
        release.wait(60)  # a long block: it ends when the test says so
        finished.set()
        return i

    def commit(i, payload):
        raise KeyboardInterrupt  # Ctrl-C while committing block 0

    executor, ended = Threads(2), []
    with pytest.raises(KeyboardInterrupt):
        executor.run(lambda i: task(i) if i else i, range(10), commit)
    assert not finished.is_set()  # the running blocks were not waited for (counted, not timed)
    started.wait(5)
    executor.after_running(lambda: ended.append(True))
    assert ended == []  # a block is still being computed: the sink stays open for it
    release.set()
    deadline = time.monotonic() + 5
    while not ended and time.monotonic() < deadline:
        time.sleep(0.01)
    assert ended == [True]


def test_threads_stop_at_the_first_error_and_raise_it():
    def task(i):
        if i == 5:
            raise OSError("disk full")
        return i

    committed = []
    with pytest.raises(OSError, match="disk full"):
        Threads(2).run(task, range(100), lambda i, p: committed.append(i))
    assert committed == [0, 1, 2, 3, 4]


@pytest.mark.slow
def test_a_dask_executor_connects_nothing_until_a_run_enters_it(monkeypatch):
    from bigresample.cluster import ClusterError

    executor = Dask(scheduler="tcp://127.0.0.1:9")  # nothing listens there
    assert executor.client is None
    distributed = pytest.importorskip("distributed")
    # the client's 10 s connect timeout (bigresample.cluster.connect) cut to 1 s: what is checked is
    # that entering the run connects (and refuses in one line), not how long distributed retries
    client = distributed.Client
    monkeypatch.setattr(distributed, "Client", lambda *a, **kw: client(*a, **{**kw, "timeout": "1s"}))
    with pytest.raises(ClusterError, match="cannot reach the dask scheduler"):
        with executor:
            pass


@pytest.mark.cluster
def test_a_dask_executor_runs_each_block_once_on_a_cluster_and_writes_the_store(tmp_path):
    distributed = pytest.importorskip("distributed")
    import zarr

    from bigresample.engine import Resampler
    from bigresample.geometry import make_grid
    from bigresample.inputs import open_input
    from bigresample.sinks import StoreWriter, store_layout

    src = tmp_path / "in.nii"
    data, _ = make_volume(src, shape=(30, 20, 16))
    vol = open_input(src)
    g = make_grid(vol.shape, vol.spacing, (0.1, 0.1, 0.07))
    blocks = BlockSet(g.out_shape, (30, 20, 3))
    array = zarr.create_array(store=str(tmp_path / "s.zarr"), compressors=None,
                              **store_layout(blocks.shape, blocks.block, np.float32))
    task = BlockTask(Resampler(g, 1), vol.source, np.dtype(np.float32), blocks, StoreWriter(array))
    committed = []
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                                  dashboard_address=None) as cluster, distributed.Client(cluster) as client:
        with Dask(client=client) as executor:
            executor.run(task, range(len(blocks)), lambda i, p: committed.append(i))
    assert sorted(committed) == list(range(len(blocks)))
    expected = scipy_reference(data, g, 1, "nearest")
    assert_matches_reference(np.asarray(array[...]).T, expected, data, 1)


@pytest.mark.cluster
@pytest.mark.parametrize("out", ["out.nii", "out.nii.gz"])
def test_on_a_cluster_the_workers_write_the_output_and_an_interrupted_run_resumes(tmp_path, out):
    """.nii: each worker writes its blocks at their offsets; .nii.gz: each
    compresses its blocks into member files that the client concatenates.
    The result is the threads' file byte for byte, and equals scipy."""
    distributed = pytest.importorskip("distributed")
    from bigresample.sinks import GzipMembers

    src = tmp_path / "in.nii"
    data, _ = make_volume(src, shape=(40, 30, 24))
    kw = dict(spacing=(0.1, 0.13, 0.07), order=3, chunks=(40, 30, 2))
    local = planned(src, tmp_path / f"threads{out[3:]}", **kw)
    run_job_stages(local, Threads(2))
    local.sink.finish(Report().bar)

    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                                  dashboard_address=None) as cluster, distributed.Client(cluster) as client:
        job = planned(src, tmp_path / out, client=client, **kw)
        assert job.sink.remote and (out.endswith(".nii") or isinstance(job.sink, GzipMembers))
        executor = Dask(client=client)
        executor.client = client  # entered: the test holds the client
        with pytest.raises(Interrupted):
            run_job_stages(job, InterruptAfter(5, executor))
        journaled = len(job.stages[0].journal.read_text().splitlines()) - 1
        assert journaled >= 5
        job = planned(src, tmp_path / out, client=client, **kw)
        assert run_job_stages(job, executor) == [journaled]
    job.sink.finish(Report().bar)
    job.sink.cleanup()
    assert same_but_provenance(tmp_path / out) == same_but_provenance(tmp_path / f"threads{out[3:]}")
    assert_matches_reference(read_output(tmp_path / out), scipy_reference(data, job.grid, 3, "nearest"), data, 3)
    # no partial output, no members folder (the journals are the run loop's to remove)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".") and not p.name.endswith("-journal")] == []


def test_a_run_leaves_no_descriptor_open(tmp_path):
    """The worker threads' input readers close with the threads (a batch of
    hundreds of files in one process must not run out of descriptors)."""
    import gc

    from bigresample import resample

    src = tmp_path / "in.nii"
    make_volume(src, shape=(40, 30, 24))
    resample(src, tmp_path / "warm.nii", spacing=(0.2, 0.2, 0.2), workers=2)
    gc.collect()
    before = len(os.listdir("/proc/self/fd"))
    for k in range(5):
        resample(src, tmp_path / f"o{k}.nii", spacing=(0.2, 0.2, 0.2), workers=2)
    gc.collect()
    assert len(os.listdir("/proc/self/fd")) == before


# --- each sink's pieces on their own, read back with nibabel, gzip and zarr ---

def _header(shape, dtype=np.float32):
    hdr = nib.Nifti1Header()
    hdr.set_data_shape(shape)
    hdr.set_data_dtype(dtype)
    from bigresample.nifti import header_bytes
    header_bytes(hdr)  # sets the data offset, as for a run's output header
    return hdr


def _stage(shape, block):
    from types import SimpleNamespace
    return SimpleNamespace(blocks=BlockSet(shape, block), level=0)


def _file_order_block(vol, region):
    return np.ascontiguousarray(vol[region].T)


def test_partial_paths_sit_beside_the_output():
    from pathlib import Path

    from bigresample.sinks import partial_path
    assert partial_path(Path("/d/out.nii"), ".nii") == Path("/d/.out.bigresample-partial.nii")
    assert partial_path(Path("/d/a.b.nii.gz"), ".nii.gz") == Path("/d/.a.b.bigresample-partial.nii.gz")
    assert partial_path(Path("o.zarr"), ".zarr") == Path(".o.bigresample-partial.zarr")


def test_store_layouts_in_file_and_ngff_order():
    from bigresample.sinks import store_layout
    f4 = np.dtype("float32")
    assert store_layout((10, 20, 30), (5, 4, 3), "float32") == dict(shape=(30, 20, 10), chunks=(3, 4, 5), dtype=f4)
    assert store_layout((10, 20, 30, 2), (5, 4, 3), np.int16) == dict(
        shape=(2, 30, 20, 10), chunks=(1, 3, 4, 5), dtype=np.dtype("int16"))
    assert store_layout((10, 20, 30, 2, 3), (5, 4, 3), "float32") == dict(
        shape=(3, 2, 30, 20, 10), chunks=(1, 1, 3, 4, 5), dtype=f4)  # file order: every axis reversed
    assert store_layout((10, 20, 30, 2, 3), (5, 4, 3), "float32", ngff=True) == dict(
        shape=(2, 3, 30, 20, 10), chunks=(1, 1, 3, 4, 5), dtype=f4)


def test_a_raw_nifti_is_written_at_its_offsets_in_any_order_and_resumed(tmp_path):
    from bigresample.sinks import RawNifti
    shape = (10, 6, 5)
    vol = np.random.default_rng(3).random(shape, dtype=np.float32)
    out = tmp_path / "o.nii"
    sink = RawNifti(out, _header(shape), ".nii")
    stage = _stage(shape, (10, 6, 2))
    assert not sink.has_leftover()
    write, done = sink.begin(stage, {})
    assert done == {} and sink.has_leftover()
    size = 352 + vol.nbytes
    assert sink.partial.stat().st_size == size  # full size from the start
    regions = list(stage.blocks)
    write(regions[2], _file_order_block(vol, regions[2]))
    write(regions[0], _file_order_block(vol, regions[0]))
    sink.end(False)
    # resumed: the blocks written are kept, the file is not recreated
    resumed = RawNifti(out, _header(shape), ".nii")
    write, done = resumed.begin(stage, {0: None, 2: None})
    assert done == {0: None, 2: None}
    write(regions[1], _file_order_block(vol, regions[1]))
    resumed.end(True)
    sink = RawNifti(out, _header(shape), ".nii")
    sink._fd = None
    sink.finish(Report().bar)
    np.testing.assert_array_equal(np.asanyarray(nib.load(out).dataobj), vol)
    assert not sink.partial.exists()


def test_a_raw_output_is_flushed_while_it_is_written_and_a_flush_error_fails_its_end(tmp_path, monkeypatch):
    """The local .nii sink flushes the partial file in the background while blocks are
    written; the background thread stops with the run, and an error it met (which the
    final fsync may not see again) makes ``end`` fail, the descriptor closed all the same."""
    import errno

    from bigresample import rawio
    from bigresample.sinks import RawNifti

    calls, failing = [], {}

    def datasync(fd):
        calls.append(fd)
        if calls.count(fd) == 3 and fd in failing:
            raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(rawio, "_datasync", datasync)
    shape = (10, 6, 5)
    sink = RawNifti(tmp_path / "o.nii", _header(shape), ".nii")
    sink.begin(_stage(shape, (10, 6, 2)), {})
    fd, thread = sink._fd, sink._sync._thread
    failing[fd] = True
    deadline = time.monotonic() + 10
    while calls.count(fd) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.2)
    assert calls.count(fd) == 3  # flushed again and again, until the error
    with pytest.raises(OSError, match="Input/output error"):
        sink.end(True)
    assert sink._fd is None and not thread.is_alive()
    # no error: the run's end stops the thread and succeeds; a failed run's end raises nothing
    failing.clear()
    for ok in (True, False):
        calls.clear()
        sink = RawNifti(tmp_path / f"{ok}.nii", _header(shape), ".nii")
        sink.begin(_stage(shape, (10, 6, 2)), {})
        fd, thread = sink._fd, sink._sync._thread
        time.sleep(0.12)
        sink.end(ok)
        assert fd in calls and not thread.is_alive()


def test_a_raw_partial_of_the_wrong_size_is_not_resumed(tmp_path):
    from bigresample.sinks import RawNifti
    shape = (10, 6, 5)
    out = tmp_path / "o.nii"
    sink = RawNifti(out, _header(shape), ".nii")
    sink.partial.write_bytes(b"\x01" * 500)
    write, done = sink.begin(_stage(shape, (10, 6, 2)), {0: None})
    sink.end(True)
    assert done == {}
    data = sink.partial.read_bytes()
    assert len(data) == 352 + 4 * 300 and data[352:] == bytes(1200)  # recreated: zeros until written


def test_a_remote_raw_sink_hands_out_a_path_writer(tmp_path):
    import pickle

    from bigresample.rawio import PathWriter
    from bigresample.sinks import RawNifti
    shape = (10, 6, 5)
    vol = np.arange(300, dtype=np.float32).reshape(shape, order="F")
    sink = RawNifti(tmp_path / "o.nii", _header(shape), ".nii", remote=True)
    write, _ = sink.begin(_stage(shape, (10, 6, 5)), {})
    assert isinstance(write, PathWriter) and sink.remote
    write = pickle.loads(pickle.dumps(write))
    write((slice(0, 10), slice(0, 6), slice(0, 5)), _file_order_block(vol, np.s_[:, :, :]))
    sink.end(True)
    sink.finish(Report().bar)
    np.testing.assert_array_equal(np.asanyarray(nib.load(tmp_path / "o.nii").dataobj), vol)


def _members(data: bytes) -> list[bytes]:
    """Each gzip member's data, with zlib (which stops at a member's end)."""
    import zlib
    out = []
    while data:
        d = zlib.decompressobj(zlib.MAX_WBITS | 16)
        out.append(d.decompress(data) + d.flush())
        assert d.eof
        data = d.unused_data
    return out


def test_a_gzip_nifti_is_a_member_per_block_and_resumes_after_the_last_unbroken_one(tmp_path):
    from bigresample.nifti import header_bytes
    from bigresample.sinks import GzipNifti, _compress
    shape = (10, 6, 5)
    vol = np.random.default_rng(4).random(shape, dtype=np.float32)
    out = tmp_path / "o.nii.gz"
    stage = _stage(shape, (10, 6, 2))
    regions = list(stage.blocks)
    sink = GzipNifti(out, _header(shape), ".nii.gz")
    write, done = sink.begin(stage, {})
    assert write is _compress and done == {}
    lengths = {}
    for i in (0, 1):
        [(j, length)] = sink.commit(i, write(regions[i], _file_order_block(vol, regions[i])))
        sink._f.flush()
        assert j == i and length == sink.partial.stat().st_size
        lengths[i] = length
    sink.end(False)
    head = header_bytes(_header(shape))
    got = _members(sink.partial.read_bytes())
    assert got == [head] + [_file_order_block(vol, regions[i]).tobytes() for i in (0, 1)]
    # journaled 0, 1 and 3 (2 lost): the partial is cut after 1's member and 2 is computed again
    with open(sink.partial, "ab") as f:
        f.write(b"a torn member")
    sink = GzipNifti(out, _header(shape), ".nii.gz")
    write, done = sink.begin(stage, {0: lengths[0], 1: lengths[1], 3: lengths[1] + 99})
    assert done == {0: lengths[0], 1: lengths[1]}
    assert sink.partial.stat().st_size == lengths[1]
    sink.commit(2, write(regions[2], _file_order_block(vol, regions[2])))
    f = sink._f
    sink.end(True)
    assert sink._f is None and f.closed
    sink.end(True)  # closed once
    sink.finish(Report().bar)
    np.testing.assert_array_equal(np.asanyarray(nib.load(out).dataobj), vol)


@pytest.mark.parametrize("done", [{}, {1: 500}, {0: 10**6}])
def test_a_gzip_partial_that_cannot_be_resumed_starts_with_the_header_alone(tmp_path, done):
    from bigresample.nifti import header_bytes
    from bigresample.sinks import GzipNifti
    shape = (10, 6, 5)
    sink = GzipNifti(tmp_path / "o.nii.gz", _header(shape), ".nii.gz")
    sink.partial.write_bytes(b"x" * 2000)
    _, got = sink.begin(_stage(shape, (10, 6, 2)), done)
    sink.end(True)
    assert got == {}
    assert _members(sink.partial.read_bytes()) == [header_bytes(_header(shape))]


@pytest.mark.parametrize("shape", [(10, 6, 5), (10, 6, 5, 2)])
def test_slabs_are_assembled_from_blocks_in_any_order_and_compressed_once_complete(shape):
    """Blocks that are not stretches of the file: a member per slab of whole planes, written once its
    last block is committed, all its blocks journaled with the file length after it; buffers reused."""
    import io

    from bigresample.sinks import _SlabAssembler
    vol = np.random.default_rng(5).integers(-3000, 3000, shape).astype(np.int16)
    blocks = BlockSet(shape, (4, 3, 2))
    f = io.BytesIO()
    asm = _SlabAssembler(blocks, np.int16, f)
    per_slab = 3 * 2
    journal, worked, committed, buffers = [], set(), 0, set()
    for s in range(len(blocks) // per_slab):
        first = s * per_slab
        for k in (1, 0, 3, 2, 4, 5):  # computed out of order; each committed once it and all before it are done
            i = first + k
            region = blocks.region(i)
            asm.work(region, _file_order_block(vol, region))
            buffers.add(asm.open[s].__array_interface__["data"][0])
            worked.add(i)
            while committed in worked:
                journal += asm.commit(committed)
                committed += 1
        assert len(asm.open) == 0 and len(asm.free) == 1
        slab_bytes = 10 * 6 * min(2, 5 - 2 * (s % 3)) * 2
        assert isinstance(asm.free[0], np.ndarray) and asm.free[0].nbytes >= slab_bytes
    # one buffer for the slabs of a volume (its thinner last slab reuses it too); what is freed after a
    # thinner slab is that slab's view, so the next volume's first slab takes a new buffer
    assert len(buffers) == (1 if len(shape) == 3 else 2)
    assert [j for j, _ in journal] == list(range(len(blocks)))
    members = _members(f.getvalue())
    expected = [np.ascontiguousarray(vol[:, :, z0:z0 + 2, ...].T if len(shape) == 3 else vol[:, :, z0:z0 + 2, t].T
                                     ).tobytes() for t in range(shape[3] if len(shape) > 3 else 1)
                for z0 in range(0, 5, 2)]
    assert members == expected
    ends = np.cumsum([len(m) for m in _split_members(f.getvalue())])
    assert [length for _, length in journal] == [int(e) for e in ends for _ in range(per_slab)]


def _split_members(data: bytes) -> list[bytes]:
    import zlib
    out = []
    while data:
        d = zlib.decompressobj(zlib.MAX_WBITS | 16)
        d.decompress(data)
        out.append(data[: len(data) - len(d.unused_data)])
        data = d.unused_data
    return out


def test_a_nifti_partial_changed_behind_the_runs_back_is_removed(tmp_path):
    from bigresample.sinks import OutputError, _check_nifti
    shape = (10, 6, 5)
    path = tmp_path / "p.nii"
    nib.save(nib.Nifti1Image(np.zeros(shape, np.float32), np.eye(4)), path)
    _check_nifti(path, _header(shape), ".nii")  # right: kept
    assert path.exists()
    with open(path, "ab") as f:
        f.write(b"\0")
    with pytest.raises(OutputError, match=rf"p\.nii was changed while the run wrote it: it has {352 + 1201} bytes, "
                                          rf"expected {352 + 1200}; it is removed, run the same command again"):
        _check_nifti(path, _header(shape), ".nii")
    assert not path.exists()
    nib.save(nib.Nifti1Image(np.zeros((10, 6, 4), np.float32), np.eye(4)), path)
    with pytest.raises(OutputError, match=r"it has shape \(10, 6, 4\), expected \(10, 6, 5\)"):
        _check_nifti(path, _header(shape), ".nii")
    assert not path.exists()
    path.write_bytes(b"not a nifti")
    with pytest.raises(OutputError, match="it cannot be read back"):
        _check_nifti(path, _header(shape), ".nii")
    assert not path.exists()
    with pytest.raises(OutputError, match="it cannot be read back"):  # removed behind the run's back
        _check_nifti(path, _header(shape), ".nii")
    gz = tmp_path / "p.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros(shape, np.float32), np.eye(4)), gz)
    _check_nifti(gz, _header(shape), ".nii.gz")  # a .nii.gz has no fixed size
    assert gz.exists()


@pytest.mark.parametrize("ok", [True, False])
def test_a_member_file_appears_whole_or_not_at_all(tmp_path, monkeypatch, ok):
    import gzip

    from bigresample import sinks
    from bigresample.sinks import MemberWriter
    blocks = BlockSet((10, 6, 5), (10, 6, 2))
    vol = np.random.default_rng(7).random((10, 6, 5), dtype=np.float32)
    writer = MemberWriter(tmp_path, blocks)
    region = blocks.region(1)
    if not ok:
        monkeypatch.setattr(sinks, "gzip_member", lambda block: (_ for _ in ()).throw(MemoryError("full")))
        with pytest.raises(MemoryError):
            writer(region, _file_order_block(vol, region))
        assert os.listdir(tmp_path) == []
        return
    writer(region, _file_order_block(vol, region))
    assert os.listdir(tmp_path) == ["1.gz"]
    assert gzip.decompress((tmp_path / "1.gz").read_bytes()) == _file_order_block(vol, region).tobytes()


@pytest.mark.parametrize("fail_after", [None, 0, 100])
def test_appending_a_file_copies_all_of_it(tmp_path, monkeypatch, fail_after):
    """In the kernel, or by a copy from where the kernel stopped (another filesystem)."""
    from bigresample.sinks import _append
    payload = os.urandom(300_000)
    (tmp_path / "src").write_bytes(payload)
    if fail_after is not None:
        real, calls = os.copy_file_range, []

        def partial(src, dst, count, *a):
            calls.append(count)
            if len(calls) > 1 or not fail_after:
                raise OSError(18, "Invalid cross-device link")
            return real(src, dst, fail_after)
        monkeypatch.setattr(os, "copy_file_range", partial)
    with open(tmp_path / "src", "rb", buffering=0) as src, open(tmp_path / "dst", "wb", buffering=0) as dst:
        dst.write(b"head")
        _append(src, dst)
    assert (tmp_path / "dst").read_bytes() == b"head" + payload


def test_a_store_is_streamed_into_a_nifti(tmp_path):
    import zarr

    from bigresample.sinks import StoreWriter, store_layout, stream_store
    shape = (10, 6, 5, 2)
    vol = np.random.default_rng(8).random(shape, dtype=np.float32)
    blocks = BlockSet(shape, (10, 3, 2))
    array = zarr.create_array(store=str(tmp_path / "s.zarr"), **store_layout(shape, blocks.block, np.float32),
                              fill_value=0, zarr_format=3)
    writer = StoreWriter(array)
    for region in blocks:
        writer(region, _file_order_block(vol, region))
    stream_store(array, tmp_path / "o.nii", _header(shape), Report().bar)
    np.testing.assert_array_equal(np.asanyarray(nib.load(tmp_path / "o.nii").dataobj), vol)


@pytest.mark.parametrize("existing", [False, True])
def test_a_finished_folder_replaces_the_output_whole(tmp_path, existing):
    from bigresample.sinks import _replace_folder
    new, target = tmp_path / "new", tmp_path / "out.zarr"
    new.mkdir()
    (new / "a").write_text("new")
    if existing:
        target.mkdir()
        (target / "b").write_text("old")
    _replace_folder(new, target)
    assert sorted(os.listdir(target)) == ["a"] and (target / "a").read_text() == "new"
    assert sorted(os.listdir(tmp_path)) == ["out.zarr"]


class Progress:
    """A ``Report.bar`` that records what each bar was for and how far it went."""

    def __init__(self):
        self.bars = []

    def __call__(self, total, desc, unit="block"):
        import contextlib
        bar = [total, desc, unit, 0]
        self.bars.append(bar)

        class Bar:
            def update(self, n=1):
                bar[3] += n

        return contextlib.nullcontext(Bar())


def test_a_cluster_gzip_is_the_header_member_then_each_block_member_in_file_order(tmp_path):
    from bigresample.nifti import header_bytes
    from bigresample.sinks import GzipMembers
    shape = (10, 6, 5)
    vol = np.random.default_rng(9).random(shape, dtype=np.float32)
    out = tmp_path / "o.nii.gz"
    stage = _stage(shape, (10, 6, 2))
    sink = GzipMembers(out, _header(shape), ".nii.gz")
    assert not sink.has_leftover()
    write, done = sink.begin(stage, {})
    assert done == {} and sink.has_leftover() and sink.remote
    assert sink.where(stage) == str(tmp_path / ".o.bigresample-members")
    assert sink.describe() == "the compressed blocks in .o.bigresample-members"
    regions = list(stage.blocks)
    for i in (2, 0):
        write(regions[i], _file_order_block(vol, regions[i]))
    # resumed: only the journaled blocks whose member file is there are kept
    sink = GzipMembers(out, _header(shape), ".nii.gz")
    write, done = sink.begin(stage, {0: None, 1: None, 2: None})
    assert done == {0: None, 2: None}
    write(regions[1], _file_order_block(vol, regions[1]))
    progress = Progress()
    sink.finish(progress)
    assert progress.bars == [[3, "concatenating", "block", 3]]
    assert _members(out.read_bytes()) == [header_bytes(_header(shape))] + [
        _file_order_block(vol, r).tobytes() for r in regions]
    np.testing.assert_array_equal(np.asanyarray(nib.load(out).dataobj), vol)
    sink.cleanup()
    assert sorted(os.listdir(tmp_path)) == ["o.nii.gz"]


def test_a_stream_out_of_a_store_keeps_every_bit_of_64_bit_integers(tmp_path):
    import zarr

    from bigresample.sinks import StoreWriter, store_layout, stream_store
    shape = (6, 4, 5)
    vol = (2**60 + np.arange(120, dtype=np.int64)).reshape(shape)  # not representable in float64
    blocks = BlockSet(shape, (6, 4, 2))
    array = zarr.create_array(store=str(tmp_path / "s.zarr"), **store_layout(shape, blocks.block, np.int64),
                              fill_value=0, zarr_format=3)
    for region in blocks:
        StoreWriter(array)(region, _file_order_block(vol, region))
    progress = Progress()
    stream_store(array, tmp_path / "o.nii", _header(shape, np.int64), progress)
    assert progress.bars == [[3, "writing", "slab", 3]]
    np.testing.assert_array_equal(np.asanyarray(nib.load(tmp_path / "o.nii").dataobj), vol)


def test_an_ome_zarr_output_at_a_url_appears_only_when_complete_and_resumes(tmp_path):
    """A file:// URL takes the object-store route: arrays written in place, the group's metadata last."""
    import zarr
    src = tmp_path / "in.nii"
    data, _ = make_volume(src, shape=(40, 30, 24))
    (tmp_path / "out.zarr").mkdir()
    (tmp_path / "out.zarr" / "zarr.json").write_text('{"zarr_format": 3, "node_type": "group"}')  # an older image
    (tmp_path / "out.zarr" / "old").write_text("old chunk")
    url = "file://" + str(tmp_path / "out.zarr")
    args = dict(spacing=(0.1, 0.13, 0.07), order=1, chunks=(40, 23, 2), levels=2, tmp_dir=tmp_path)  # journal here
    job = planned(src, url, **args)
    assert job.sink.describe() == f"the arrays at {url}"
    assert [job.sink.where(s) for s in job.stages] == [url + "/0", url + "/1"]
    with pytest.raises(Interrupted):
        run_job_stages(job, InterruptAfter(7))
    assert not (tmp_path / "out.zarr" / "zarr.json").exists()  # no reader finds the old image over new chunks
    assert not (tmp_path / "out.zarr" / "old").exists()
    job = planned(src, url, **args)
    assert run_job_stages(job, Threads(2))[0] == 7
    assert not (tmp_path / "out.zarr" / "zarr.json").exists()
    job.sink.finish(Report().bar)
    assert (tmp_path / "out.zarr" / "zarr.json").exists()
    level0 = np.asarray(zarr.open_array(str(tmp_path / "out.zarr" / "0"), mode="r")[...]).T  # NGFF z, y, x
    assert_matches_reference(level0, scipy_reference(data, job.grid, 1, "nearest"), data, 1)
    view, affine, spacing = job.sink.written()
    assert view.shape == level0.shape
    np.testing.assert_allclose(spacing, [0.1, 0.13, 0.07], rtol=1e-7)  # float32 header spacing


def test_a_store_is_reopened_only_for_finished_blocks_of_the_same_layout(tmp_path):
    import zarr

    from bigresample.sinks import _open_store, store_layout
    addr = str(tmp_path / "s.zarr")
    layout = store_layout((6, 4, 5), (6, 4, 2), np.float32)
    array, done = _open_store(addr, layout, {})
    assert done == {} and (array.shape, array.chunks) == ((5, 4, 6), (2, 4, 6))
    array[0:2] = 7.0
    array, done = _open_store(addr, layout, {0: None})  # resumed: the chunk written is there
    assert done == {0: None} and float(array[0, 0, 0]) == 7.0
    other = store_layout((6, 4, 5), (6, 4, 1), np.float32)
    array, done = _open_store(addr, other, {0: None})  # other chunks: made afresh
    assert done == {} and array.chunks == (1, 4, 6) and float(array[0, 0, 0]) == 0.0
    array[0:1] = 3.0
    array, done = _open_store(addr, other, {})  # nothing finished: afresh, whatever is there
    assert done == {} and float(array[0, 0, 0]) == 0.0
    assert zarr.open_array(addr, mode="r").chunks == (1, 4, 6)
    array, done = _open_store(str(tmp_path / "gone.zarr"), layout, {0: None})  # journal, but no store
    assert done == {} and array.shape == (5, 4, 6)


def test_what_each_sink_names_for_its_partial_output(tmp_path):
    from bigresample.sinks import GzipNifti, RawNifti, Sink, StoreThenNifti
    hdr = _header((10, 6, 5))
    raw = RawNifti(tmp_path / "o.nii", hdr, ".nii")
    assert raw.describe() == "the partial output .o.bigresample-partial.nii"
    assert raw.where(None) == str(tmp_path / ".o.bigresample-partial.nii")
    assert raw.commit(4, None) == [(4, None)] and not raw.in_store and not raw.remote
    gz = GzipNifti(tmp_path / "o.nii.gz", hdr, ".nii.gz")
    assert gz.describe() == "the partial output .o.bigresample-partial.nii.gz"
    store = StoreThenNifti(tmp_path / "o.nii", hdr, ".nii", str(tmp_path / "s.zarr"), keep=False)
    assert store.where(None) == str(tmp_path / "s.zarr") and store.in_store and store.remote
    assert store.describe() == f"the zarr store {tmp_path / 's.zarr'}"
    assert Sink(tmp_path / "o.nii", hdr, ".nii").has_leftover()  # a sink that cannot tell: worth a note


def test_a_store_then_nifti_leaves_no_partial_when_streaming_fails_and_removes_an_unkept_store(tmp_path):
    from bigresample.sinks import OutputError, StoreThenNifti
    shape = (6, 4, 5)
    vol = np.arange(120, dtype=np.float32).reshape(shape)
    for keep in (False, True):
        store = str(tmp_path / f"s{keep}.zarr")
        sink = StoreThenNifti(tmp_path / f"o{keep}.nii", _header(shape), ".nii", store, keep=keep)
        stage = _stage(shape, (6, 4, 2))
        write, done = sink.begin(stage, {})
        for region in stage.blocks:
            write(region, _file_order_block(vol, region))
        sink.finish(Report().bar)
        np.testing.assert_array_equal(np.asanyarray(nib.load(tmp_path / f"o{keep}.nii").dataobj), vol)
        sink.cleanup()
        assert os.path.exists(store) == keep
    sink = StoreThenNifti(tmp_path / "bad.nii", _header((6, 4, 6)), ".nii", str(tmp_path / "t.zarr"), keep=False)
    sink.begin(_stage(shape, (6, 4, 2)), {})  # a store of 5 planes for a header of 6
    with pytest.raises(OutputError):
        sink.finish(Report().bar)
    assert not sink.partial.exists() and not (tmp_path / "bad.nii").exists()


def test_appending_keeps_going_when_the_kernel_copies_a_little_at_a_time(tmp_path, monkeypatch):
    from bigresample.sinks import _append
    payload = os.urandom(1000)
    (tmp_path / "src").write_bytes(payload)
    real = os.copy_file_range
    monkeypatch.setattr(os, "copy_file_range", lambda src, dst, count, *a: real(src, dst, min(count, 1)))
    with open(tmp_path / "src", "rb", buffering=0) as src, open(tmp_path / "dst", "wb", buffering=0) as dst:
        _append(src, dst)
    assert (tmp_path / "dst").read_bytes() == payload


def test_a_folder_put_where_nothing_was_touches_nothing_else(tmp_path, monkeypatch):
    from bigresample.sinks import _replace_folder
    monkeypatch.chdir(tmp_path)
    (tmp_path / "keep").write_text("mine")
    (tmp_path / "new").mkdir()
    _replace_folder(tmp_path / "new", tmp_path / "out.zarr")
    assert sorted(os.listdir(tmp_path)) == ["keep", "out.zarr"]


def test_a_cluster_gzip_is_concatenated_by_copies_where_the_kernel_cannot(tmp_path, monkeypatch):
    from bigresample.sinks import GzipMembers

    def refuse(*a):
        raise OSError(18, "Invalid cross-device link")

    shape = (10, 6, 5)
    vol = np.random.default_rng(10).random(shape, dtype=np.float32)
    stage = _stage(shape, (10, 6, 2))
    sink = GzipMembers(tmp_path / "o.nii.gz", _header(shape), ".nii.gz")
    write, _ = sink.begin(stage, {})
    for region in stage.blocks:
        write(region, _file_order_block(vol, region))
    monkeypatch.setattr(os, "copy_file_range", refuse)
    sink.finish(Report().bar)
    np.testing.assert_array_equal(np.asanyarray(nib.load(tmp_path / "o.nii.gz").dataobj), vol)


def test_a_url_sinks_storage_options_reach_every_store_call(tmp_path, monkeypatch):
    """--storage-option values go with each call on the store (a spy on the store functions)."""
    from bigresample import sinks
    from bigresample.sinks import OmeZarr, StoreThenNifti
    seen = []

    def spy(name, result=None):
        return lambda *a, **k: seen.append((name, a[-1] if len(a) > 1 else k.get("given"))) or result

    opts = {"anon": False, "key": "k"}
    monkeypatch.setattr(sinks.location, "remove_image", spy("remove_image"))
    monkeypatch.setattr(sinks.location, "remove", spy("remove"))
    monkeypatch.setattr(sinks, "_open_store", lambda addr, layout, done, given=None: (
        seen.append(("open_store", given)) or (None, {})))
    monkeypatch.setattr(sinks.ome, "written_scale", spy("written_scale", [1.0, 2.0, 3.0]))
    monkeypatch.setattr(sinks.ome, "open_image", spy("open_image"))
    monkeypatch.setattr(sinks.ome, "NgffWriter", lambda array: array)
    stage = _stage((6, 4, 5), (6, 4, 2))
    ome_sink = OmeZarr("s3://b/o.zarr", _header((6, 4, 5)), ".zarr", {}, np.float32, np.eye(4), opts)
    ome_sink.begin(stage, {})
    ome_sink.written()
    nifti = StoreThenNifti(tmp_path / "o.nii", _header((6, 4, 5)), ".nii", "s3://b/s.zarr", keep=False,
                           options=opts)
    nifti.begin(stage, {})
    nifti.cleanup()
    assert seen == [("remove_image", opts), ("open_store", opts), ("written_scale", opts), ("open_image", opts),
                    ("open_store", opts), ("remove", opts)]


def test_a_store_then_nifti_store_has_the_output_type(tmp_path):
    from bigresample.sinks import StoreThenNifti
    sink = StoreThenNifti(tmp_path / "o.nii", _header((6, 4, 5), np.int16), ".nii", str(tmp_path / "s.zarr"),
                          keep=False)
    sink.begin(_stage((6, 4, 5), (6, 4, 2)), {})
    assert sink.array.dtype == np.int16


def test_a_4d_ome_zarr_output_is_in_ngff_order(tmp_path):
    import zarr
    src = tmp_path / "in.nii"
    data, _ = make_volume(src, shape=(20, 16, 12, 3))
    job = planned(src, tmp_path / "o.zarr", spacing=(0.15, 0.12, 0.2), order=1, chunks=(20, 9, 2))
    run_job_stages(job, Threads(2))
    job.sink.finish(Report().bar)
    level0 = zarr.open_array(str(tmp_path / "o.zarr" / "0"), mode="r")
    assert level0.shape == (3,) + job.grid.out_shape[::-1]  # t, z, y, x
    got = np.asarray(level0[...]).transpose(3, 2, 1, 0)
    assert_matches_reference(got, scipy_reference(data, job.grid, 1, "nearest"), data, 1)
    _, _, spacing = job.sink.written()
    np.testing.assert_allclose(spacing, [0.15, 0.12, 0.2], rtol=1e-6)


def test_a_leftover_ome_zarr_partial_of_other_parameters_is_made_afresh(tmp_path):
    from bigresample import ome
    src = tmp_path / "in.nii"
    data, _ = make_volume(src, shape=(40, 30, 24))
    out = tmp_path / "o.zarr"
    job = planned(src, out, spacing=(0.2, 0.2, 0.2), chunks=(40, 30, 2))
    ended, end = threading.Event(), job.sink.end
    job.sink.end = lambda ok: (end(ok), ended.set())  # called once the blocks still running have written
    with pytest.raises(Interrupted):
        run_job_stages(job, InterruptAfter(2))
    assert ended.wait(30)
    job = planned(src, out, spacing=(0.1, 0.13, 0.07), order=1, chunks=(40, 30, 2))  # its journal: not this run's
    assert run_job_stages(job, Threads(2)) == [0]
    job.sink.finish(Report().bar)
    np.testing.assert_allclose(ome.written_scale(out)[-3:], [0.07, 0.13, 0.1], rtol=1e-6)
    assert_matches_reference(read_output(out), scipy_reference(data, job.grid, 1, "nearest"), data, 1)


def test_a_gzip_partial_with_one_journaled_block_resumes_after_it(tmp_path):
    from bigresample.sinks import GzipNifti
    shape = (10, 6, 5)
    vol = np.random.default_rng(11).random(shape, dtype=np.float32)
    stage = _stage(shape, (10, 6, 2))
    regions = list(stage.blocks)
    sink = GzipNifti(tmp_path / "o.nii.gz", _header(shape), ".nii.gz")
    write, _ = sink.begin(stage, {})
    [(_, length)] = sink.commit(0, write(regions[0], _file_order_block(vol, regions[0])))
    sink.end(True)
    sink = GzipNifti(tmp_path / "o.nii.gz", _header(shape), ".nii.gz")
    write, done = sink.begin(stage, {0: length})
    assert done == {0: length}
    for i in (1, 2):
        sink.commit(i, write(regions[i], _file_order_block(vol, regions[i])))
    sink.end(True)
    sink.finish(Report().bar)
    np.testing.assert_array_equal(np.asanyarray(nib.load(tmp_path / "o.nii.gz").dataobj), vol)


def test_a_store_is_never_made_through_a_link_planted_at_its_name(tmp_path):
    from bigresample import safefs
    from bigresample.sinks import _open_store, store_layout
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "s.zarr").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(safefs.UnsafePathError):
        _open_store(str(tmp_path / "s.zarr"), store_layout((6, 4, 5), (6, 4, 2), np.float32), {})
    assert os.listdir(tmp_path / "elsewhere") == []
