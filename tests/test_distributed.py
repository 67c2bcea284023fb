"""Runs on dask.distributed: identical results, no voxels in the graph, workers may die."""

import pickle
import signal
import socket
import subprocess
import sys
import time

import nibabel as nib
import numpy as np
import pytest

distributed = pytest.importorskip("distributed")

from bigresample.cli import main  # noqa: E402
from bigresample.cluster import ClusterError, check_visible  # noqa: E402

from .helpers import check_output, make_volume, oblique_reference, same_but_provenance, write_nifti  # noqa: E402

pytestmark = pytest.mark.cluster


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _data(path):
    return np.asanyarray(nib.load(path).dataobj.get_unscaled()).tobytes()


@pytest.mark.slow
def test_local_cluster_gives_the_threaded_output_byte_for_byte(tmp_path, capsys):
    src = tmp_path / "in.nii.gz"
    make_volume(src, shape=(40, 36, 30))
    args = ["--spacing", "0.07", "0.1", "0.13", "--order", "3", "--chunks", "20", "36", "8", "--quiet"]
    assert main([str(src), str(tmp_path / "threads.nii"), *args]) == 0
    assert main([str(src), str(tmp_path / "cluster.nii"), *args, "--local-cluster", "2",
                 "--tmp-dir", str(tmp_path)]) == 0
    assert _data(tmp_path / "cluster.nii") == _data(tmp_path / "threads.nii")
    assert same_but_provenance(tmp_path / "cluster.nii") == same_but_provenance(tmp_path / "threads.nii")
    check_output(src, tmp_path / "cluster.nii", [0.07, 0.1, 0.13], order=3)
    assert not list(tmp_path.glob(".*zarr"))  # the store is removed on success


@pytest.fixture(scope="module")
def real_cluster(tmp_path_factory):
    """`dask scheduler` and two `dask worker` processes on loopback, started once for the module's
    two tests that use them (each run writes into its own tmp_path); the worker-killing test
    comes last in the file, so the first finds both workers."""
    tmp_path = tmp_path_factory.mktemp("workers")
    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    dask_cli = [sys.executable, "-m", "distributed.cli.dask_scheduler"]
    procs = [subprocess.Popen([*dask_cli, "--host", "127.0.0.1", "--port", str(port), "--dashboard-address", ":0"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    workers = []
    for i in range(2):
        w = subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_worker", address, "--nthreads", "1",
                              "--nworkers", "1", "--no-nanny", "--dashboard-address", ":0",
                              "--local-directory", str(tmp_path / f"w{i}")],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        workers.append(w)
    procs += workers
    client = distributed.Client(address, timeout="30s")
    try:
        client.wait_for_workers(2, timeout=60)
    finally:
        client.close()
    yield address, workers
    for p in procs:
        p.kill()
        p.wait()


@pytest.mark.slow
def test_the_cli_runs_against_a_real_scheduler_with_two_worker_processes(tmp_path, real_cluster):
    address, _ = real_cluster
    src = tmp_path / "in.nii"
    make_volume(src, shape=(40, 36, 30))
    out = tmp_path / "out.nii.gz"
    proc = subprocess.run([sys.executable, "-m", "bigresample", src, out, "--z-spacing", "0.13", "--order", "3",
                           "--chunks", "40", "36", "4", "--scheduler", address, "--tmp-dir", tmp_path],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "2 dask workers" in proc.stdout
    assert main([str(src), str(tmp_path / "ref.nii.gz"), "--z-spacing", "0.13", "--order", "3", "--chunks",
                 "40", "36", "4", "--quiet"]) == 0
    assert _data(out) == _data(tmp_path / "ref.nii.gz")
    check_output(src, out, [0.1, 0.1, 0.13], order=3)  # and both equal the whole-array scipy call


@pytest.mark.slow
def test_a_worker_that_dies_mid_run_does_not_change_the_output(tmp_path, real_cluster):
    address, workers = real_cluster
    src = tmp_path / "in.nii"
    make_volume(src, shape=(64, 64, 400), seed=3)
    args = ["--z-spacing", "0.13", "--order", "5", "--chunks", "64", "64", "2", "--tmp-dir", str(tmp_path)]
    out = tmp_path / "out.nii"
    proc = subprocess.Popen([sys.executable, "-m", "bigresample", src, out, *args, "--scheduler", address],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    journal = tmp_path / ".out.nii.bigresample-journal"  # the workers write the blocks into the file
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if journal.exists() and len(journal.read_text().splitlines()) > 10:
            break
        time.sleep(0.01)
    assert proc.poll() is None, "the run finished before a worker could be killed"
    workers[0].send_signal(signal.SIGKILL)
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr
    assert main([str(src), str(tmp_path / "ref.nii"), *args, "--quiet"]) == 0
    assert _data(out) == _data(tmp_path / "ref.nii")
    check_output(src, out, [0.1, 0.1, 0.13], order=5)


@pytest.mark.slow
def test_an_unreachable_scheduler_is_one_clear_line(tmp_path, capsys, good_volume, monkeypatch):
    address = f"tcp://127.0.0.1:{_free_port()}"
    # the client's 10 s connect timeout (bigresample.cluster.connect) cut to 1 s: what is checked is
    # the message and what is left behind, not how long distributed keeps retrying a refused port
    client = distributed.Client
    monkeypatch.setattr(distributed, "Client", lambda *a, **kw: client(*a, **{**kw, "timeout": "1s"}))
    assert main([str(good_volume), str(tmp_path / "o.nii"), "--z-spacing", "0.2", "--scheduler", address]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"cannot reach the dask scheduler at {address}" in err
    assert not (tmp_path / "o.nii").exists()


def test_the_store_may_live_at_a_url_every_worker_opens(tmp_path):
    """--tmp-dir as a URL zarr opens through fsspec (file:// here; s3:// and the
    like the same way with their fsspec library installed)."""
    from bigresample import resample

    src = tmp_path / "in.nii"
    make_volume(src, shape=(30, 26, 20))
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    kw = dict(spacing=(0.13, None, 0.07), order=3, chunks=(16, 26, 6))
    resample(src, tmp_path / "threads.nii", **kw)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                                  dashboard_address=None) as cluster, distributed.Client(cluster) as client:
        resample(src, tmp_path / "cluster.nii", **kw, tmp_dir=scratch.as_uri(), client=client)
        with pytest.raises(ClusterError, match=r"cannot see nosuchproto://b/x \(Protocol not known"):
            check_visible(client, ["nosuchproto://b/x"])
    assert _data(tmp_path / "cluster.nii") == _data(tmp_path / "threads.nii")
    check_output(src, tmp_path / "cluster.nii", [0.13, 0.1, 0.07], order=3)
    assert list(scratch.iterdir()) == []  # the store is removed on success


def test_a_worker_that_cannot_see_a_path_is_named():
    class FakeClient:
        def run(self, fn, paths):
            return {"tcp://10.0.0.7:4000": ([paths[1]], "node7"), "tcp://10.0.0.8:4000": ([], "node8")}

    with pytest.raises(ClusterError, match=r"worker tcp://10.0.0.7:4000 \(host node7\) cannot see /scratch/x"):
        check_visible(FakeClient(), ["/data/in.nii", "/scratch/x"])


def test_without_distributed_the_cluster_options_say_what_to_install(tmp_path, capsys, good_volume, monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)  # import fails
    assert main([str(good_volume), str(tmp_path / "o.nii"), "--z-spacing", "0.2", "--local-cluster", "2"]) == 2
    assert "pip install 'bigresample[distributed]'" in capsys.readouterr().err


def test_the_cluster_graph_carries_readers_not_voxels(tmp_path):
    """Pickled graph per block, as the cluster gets it: bounded, and the same
    for a volume 8x larger."""
    import dask
    import zarr

    from bigresample.blocks import BlockSet
    from bigresample.engine import Resampler
    from bigresample.executors import BlockTask, Dask
    from bigresample.geometry import make_grid
    from bigresample.inputs import open_input
    from bigresample.sinks import StoreWriter

    sizes = []
    for nz in (32, 256):
        src = tmp_path / f"v{nz}.nii"
        make_volume(src, shape=(64, 64, nz))
        vol = open_input(src)
        g = make_grid(vol.shape, vol.spacing, (0.1, 0.1, 0.15))
        out_shape = tuple(g.out_shape)
        store = zarr.create_array(store=str(tmp_path / f"s{nz}.zarr"), shape=out_shape[::-1],
                                  chunks=(8, 64, 64), dtype=vol.dtype, compressors=None)
        blocks = BlockSet(out_shape, (64, 64, 8))
        task = BlockTask(Resampler(g, 3), vol.source, vol.dtype, blocks, StoreWriter(store))
        tasks = Dask.tasks(task, list(range(len(blocks))))
        graph = {}
        for task in tasks:
            graph.update(task.__dask_graph__())
        size = len(pickle.dumps(graph))
        assert size < vol.data_bytes / 10
        sizes.append(size / len(tasks))
    assert sizes[1] <= sizes[0] * 1.2
    # and the tasks write the resampled volume (blocks equal the whole to the engine's tolerance)
    dask.compute(*tasks, scheduler="sync")
    expected = Resampler(g, 3).compute(vol.source, tuple(slice(0, n) for n in out_shape), vol.dtype)
    np.testing.assert_allclose(store[:], expected.T, rtol=0, atol=1e-5 * 1000)


@pytest.fixture
def good_volume(tmp_path):
    path = tmp_path / "in.nii"
    make_volume(path)
    return path


def test_a_rotated_reference_and_an_ome_zarr_input_run_on_a_cluster_as_with_threads(tmp_path):
    """The general path's resampler and the OME-Zarr reader travel to workers."""
    from bigresample import resample


    src = tmp_path / "in.nii"
    make_volume(src, shape=(40, 36, 30))
    ref_shape, a_ref = oblique_reference((20, 18, 16))
    a_ref[:3, 3] = [-2.0, 5.0, 6.0]  # inside make_volume's field of view
    ref = write_nifti(tmp_path / "ref.nii", np.zeros(ref_shape, np.uint8), a_ref)
    resample(src, tmp_path / "in.zarr", spacing=(None, None, 0.12))
    kw = dict(order=3, chunks=(20, 9, 5))
    resample(tmp_path / "in.zarr", tmp_path / "threads.nii", reference=ref, **kw)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                                  dashboard_address=None) as cluster, distributed.Client(cluster) as client:
        resample(tmp_path / "in.zarr", tmp_path / "cluster.nii", reference=ref, client=client, **kw)
    assert _data(tmp_path / "cluster.nii") == _data(tmp_path / "threads.nii")
    assert np.abs(np.asanyarray(nib.load(tmp_path / "threads.nii").dataobj)).max() > 0
