"""1 vs 2 dask.distributed workers on the same volume, beside the threaded run.

    python benchmarks/bench_cluster.py [--shape 512 512 300] [--order 3] [--spacing 0.1 0.1 0.15] [--repeats 3]

Runs the bigresample command on one input with ``--workers 1`` and ``--workers
2`` (threads, no cluster), and with ``--local-cluster 1`` and ``--local-cluster
2`` (worker processes writing blocks into a zarr store, then streamed out),
and against running clusters (a ``dask scheduler`` with one, and one with two,
``dask worker`` processes started before the timing, as on a real cluster:
``--scheduler ADDRESS``), alternating, and prints median wall time, peak RSS
and the speed-up from 1 to 2 workers.  ``--local-cluster`` pays for starting
its worker processes in every run; ``--scheduler`` does not, and shows what
the workers themselves gain.  Peak RSS is the command's process tree: for
``--scheduler`` runs that is the client only (the workers are not its
children).
"""

from __future__ import annotations

import argparse
import socket
import statistics
import subprocess
import sys
import tempfile
from contextlib import ExitStack, contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_speed import header_lines, measure, remove  # noqa: E402

from bigresample.demo import make_phantom  # noqa: E402


@contextmanager
def running_cluster(n_workers: int, work: Path):
    """A `dask scheduler` and ``n_workers`` single-threaded `dask worker`
    processes on loopback; yields the scheduler's address."""
    import distributed

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    address = f"tcp://127.0.0.1:{port}"
    procs = [subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1",
                               "--port", str(port), "--dashboard-address", ":0"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    for i in range(n_workers):
        procs.append(subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_worker", address,
                                       "--nthreads", "1", "--no-nanny", "--dashboard-address", ":0",
                                       "--local-directory", str(work / f"worker{n_workers}-{i}")],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    try:
        with distributed.Client(address, timeout="60s") as client:
            client.wait_for_workers(n_workers, timeout=120)
        yield address
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shape", nargs=3, type=int, default=[512, 512, 300])
    p.add_argument("--order", type=int, default=3)
    p.add_argument("--spacing", nargs=3, type=float, default=[0.1, 0.1, 0.15],
                   help="target spacing in mm (default 0.1 0.1 0.15: only z changes)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--workdir", default=None)
    args = p.parse_args(argv)
    work = Path(args.workdir or tempfile.mkdtemp(prefix="bench_cluster_"))
    work.mkdir(parents=True, exist_ok=True)
    src = work / "in.nii"
    make_phantom(src, shape=tuple(args.shape))
    with ExitStack() as stack:
        one, two = (stack.enter_context(running_cluster(n, work)) for n in (1, 2))
        runs = {
            "threads, 1 worker": ["--workers", "1"],
            "threads, 2 workers": ["--workers", "2"],
            "local cluster, 1 worker": ["--local-cluster", "1", "--tmp-dir", str(work)],
            "local cluster, 2 workers": ["--local-cluster", "2", "--tmp-dir", str(work)],
            "running scheduler, 1 worker": ["--scheduler", one, "--tmp-dir", str(work)],
            "running scheduler, 2 workers": ["--scheduler", two, "--tmp-dir", str(work)],
        }
        status = _time_runs(runs, src, work, args)
    if status:
        return status
    remove(src)
    return 0


def _time_runs(runs, src, work, args) -> int:
    times = {k: [] for k in runs}
    peaks = {k: [] for k in runs}
    for rep in range(args.repeats + 1):  # the first round warms the page cache
        for label, extra in runs.items():
            out = work / "out.nii"
            cmd = [sys.executable, "-m", "bigresample", str(src), str(out), "--spacing", *map(str, args.spacing),
                   "--order", str(args.order), "--quiet", *extra]
            run = measure(cmd, work)
            if not run.ok:
                print(run.stderr, file=sys.stderr)
                return 1
            if rep:
                times[label].append(run.seconds)
                peaks[label].append(run.peak_rss)
            remove(out)
    for line in header_lines("bench_cluster"):
        print(line)
    print(f"Input {'x'.join(map(str, args.shape))} float32 at 0.1 mm -> {' x '.join(map(str, args.spacing))} mm, "
          f"order {args.order}; "
          f"median of {args.repeats}")
    print()
    print("| run | median wall (s) | median peak RSS (MiB) | speed-up 1 -> 2 workers |")
    print("|---|---:|---:|---:|")
    for label in runs:
        med = statistics.median(times[label])
        speed = ""
        if label.endswith("2 workers"):
            one = statistics.median(times[label.replace("2 workers", "1 worker")])
            speed = f"{one / med:.2f}x"
        print(f"| {label} | {med:.2f} | {statistics.median(peaks[label]) / 2**20:.0f} | {speed} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
