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
from bigresample.job import plan_job
from bigresample.report import Report
from bigresample.request import Request
from bigresample.runner import Interrupted, resume, run_stage

from .conftest import assert_matches_reference, make_volume, same_but_provenance, scipy_reference


class InterruptAfter:
    """An executor (threads by default) that stops, as Ctrl-C would, after ``k`` commits."""

    def __init__(self, k, inner=None):
        self.inner, self.k, self.n = inner or Threads(2), k, 0
        self.remote = self.inner.remote

    def run(self, task, todo, commit):
        def counted(i, payload):
            commit(i, payload)
            self.n += 1
            if self.n == self.k:
                raise KeyboardInterrupt

        self.inner.run(task, todo, counted)

    def after_running(self, fn):
        self.inner.after_running(fn)


def run_job_stages(job, executor):
    """Every stage of ``job`` through ``executor``; returns the blocks each stage reused."""
    reused = []
    for stage in job.stages:
        journal, done = resume(job, stage, Report())
        reused.append(run_stage(job, stage, journal, done, executor, job.volume.source, Report()))
    return reused


def planned(src, out, **kw):
    job = plan_job(Request.make(src, out, **kw))
    job.volume.attach_data()
    return job


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
    started, release = threading.Event(), threading.Event()

    def task(i):
        started.set()
        release.wait(10)  # a long block
        return i

    def commit(i, payload):
        raise KeyboardInterrupt  # Ctrl-C while committing block 0

    executor, ended = Threads(2), []
    t0 = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        executor.run(lambda i: task(i) if i else i, range(10), commit)
    assert time.monotonic() - t0 < 1.0  # the running blocks are not waited for
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


def test_a_dask_executor_connects_nothing_until_a_run_enters_it():
    from bigresample.cluster import ClusterError

    executor = Dask(scheduler="tcp://127.0.0.1:9")  # nothing listens there
    assert executor.client is None
    pytest.importorskip("distributed")
    with pytest.raises(ClusterError, match="cannot reach the dask scheduler"):
        with executor:
            pass


@pytest.mark.cluster
def test_a_dask_executor_runs_each_block_once_on_a_cluster_and_writes_the_store(tmp_path):
    distributed = pytest.importorskip("distributed")
    import zarr

    from bigresample.engine import Resampler
    from bigresample.geometry import make_grid
    from bigresample.nifti import open_input
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
