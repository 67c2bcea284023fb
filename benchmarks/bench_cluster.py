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

    python benchmarks/bench_cluster.py --write-heavy [--shape 1024 1024 600] [--repeats 3]

A write-heavy job instead (an int16 volume, 0.1 -> 0.13 mm on z, order 1,
``.nii.gz`` out) on running clusters of 1 and 2 ``dask worker`` processes,
through the two output routes: the workers writing the output themselves
(gzip members the client concatenates; the default) and the zarr store that
the client then streams into the NIfTI alone (forced with a ``file://``
scratch URL; what every cluster run did before).  For each: median wall time,
the client's own CPU time beyond start-up and planning (its CPU minus that of
a ``--dry-run`` of the same command and of a process that only connects a
``distributed.Client`` to the scheduler: a dry run connects nothing), the
workers' CPU time (from their processes' counters), and the client's peak RSS
beside the planned block size.
"""

from __future__ import annotations

import argparse
import socket
import statistics
import subprocess
import sys
import tempfile
import time
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
    p.add_argument("--write-heavy", action="store_true", help="the write-heavy job on running clusters (see above)")
    args = p.parse_args(argv)
    if args.write_heavy:
        return write_heavy(args)
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


def _client_run(cmd, work) -> tuple[float, float, int, str]:
    """Run the client ``cmd``: (wall s, its CPU s, its peak RSS bytes, stdout)."""
    out_path = work / "client.out"
    with open(out_path, "wb") as out:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.PIPE)
        peak = 0
        while proc.poll() is None:
            try:
                with open(f"/proc/{proc.pid}/status") as f:
                    hwm = [ln for ln in f if ln.startswith("VmHWM:")]
                peak = max(peak, int(hwm[0].split()[1]) * 1024) if hwm else peak
            except OSError:
                pass
            time.sleep(0.02)
        wall = time.perf_counter() - t0
    # the child is reaped by poll(); its CPU comes from RUSAGE_CHILDREN deltas
    return wall, 0.0, peak, out_path.read_text() + proc.stderr.read().decode()


def write_heavy(args) -> int:
    import numpy as np
    import psutil

    shape = tuple(args.shape) if args.shape != [512, 512, 300] else (1024, 1024, 600)
    work = Path(args.workdir or tempfile.mkdtemp(prefix="bench_cluster_"))
    work.mkdir(parents=True, exist_ok=True)
    src = work / "in.nii"
    make_phantom(src, shape=shape, dtype=np.int16)
    out = work / "out.nii.gz"
    base = [sys.executable, "-m", "bigresample", str(src), str(out), "--z-spacing", "0.13", "--order", "1",
            "--no-progress"]
    routes = {"workers write (after)": [], "zarr store, client streams (before)": ["--tmp-dir", work.as_uri()]}
    rows = {}
    with ExitStack() as stack:
        clusters = {n: stack.enter_context(running_cluster(n, work)) for n in (1, 2)}
        workers = {n: [c for c in psutil.Process().children() if "dask_worker" in " ".join(c.cmdline())
                       and f"worker{n}-" in " ".join(c.cmdline())] for n in clusters}
        for rep in range(args.repeats + 1):  # the first round warms the page cache
            for n, address in clusters.items():
                for route, extra in routes.items():
                    cmd = base + ["--scheduler", address, *extra]
                    _, dry, dry_peak, _ = _cpu_of(cmd + ["--dry-run"], work)
                    _, conn, conn_peak, _ = _cpu_of([sys.executable, "-c", CONNECT, address], work)
                    dry, dry_peak = dry + conn, max(dry_peak, conn_peak)
                    w0 = sum(sum(p.cpu_times()[:2]) for p in workers[n])
                    wall, cpu, peak, text = _cpu_of(cmd, work)
                    w1 = sum(sum(p.cpu_times()[:2]) for p in workers[n])
                    block = next((ln.split("~")[-1].split(" per block")[0] for ln in text.splitlines()
                                  if ln.startswith("Block plan:")), "?")
                    if rep:
                        rows.setdefault((route, n), []).append((wall, cpu - dry, w1 - w0, peak, block, dry_peak))
                    remove(out)
    for line in header_lines("bench_cluster --write-heavy"):
        print(line)
    print(f"Input {'x'.join(map(str, shape))} int16 .nii at 0.1 mm -> z 0.13 mm, order 1, .nii.gz out, "
          f"running dask scheduler + N `dask worker` processes (1 thread each); median of {args.repeats}")
    print()
    print("| route | workers | wall (s) | client CPU beyond start-up (s) | workers' CPU (s) | client / workers "
          "| client peak RSS (MiB) | start-up peak RSS (MiB) | planned block |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---|")
    for (route, n), runs in rows.items():
        wall, cpu, wcpu = (statistics.median(r[i] for r in runs) for i in range(3))
        peak = statistics.median(r[3] for r in runs)
        print(f"| {route} | {n} | {wall:.2f} | {cpu:.2f} | {wcpu:.2f} | {cpu / max(wcpu, 1e-9):.0%} "
              f"| {peak / 2**20:.0f} | {statistics.median(r[5] for r in runs) / 2**20:.0f} | {runs[0][4]} |")
    remove(src)
    return 0


CONNECT = "import sys, distributed; distributed.Client(sys.argv[1], timeout='60s').close()"


def _cpu_of(cmd, work) -> tuple[float, float, int, str]:
    """(wall s, CPU s, peak RSS bytes, output) of one client run, its CPU from
    this process's RUSAGE_CHILDREN before and after."""
    import resource

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    wall, _, peak, text = _client_run(cmd, work)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if "Traceback" in text or "error:" in text:
        raise SystemExit(text)
    return wall, cpu, peak, text


if __name__ == "__main__":
    sys.exit(main())
