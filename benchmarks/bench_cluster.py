"""1 vs 2 dask.distributed workers on the same volume, beside the threaded run.

    python benchmarks/bench_cluster.py [--shape 512 512 300] [--order 3] [--repeats 3]

Runs the bigresample command on one input with ``--workers 1`` and ``--workers
2`` (threads, no cluster), and with ``--local-cluster 1`` and ``--local-cluster
2`` (worker processes writing blocks into a zarr store, then streamed out),
alternating, and prints median wall time and peak RSS of the process tree and
the speed-up from 1 to 2 workers.  A LocalCluster on one machine stands in for
a cluster: the same graph runs on remote workers with ``--scheduler``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_speed import header_lines, measure, remove  # noqa: E402

from bigresample.demo import make_phantom  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shape", nargs=3, type=int, default=[512, 512, 300])
    p.add_argument("--order", type=int, default=3)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--workdir", default=None)
    args = p.parse_args(argv)
    work = Path(args.workdir or tempfile.mkdtemp(prefix="bench_cluster_"))
    work.mkdir(parents=True, exist_ok=True)
    src = work / "in.nii"
    make_phantom(src, shape=tuple(args.shape))
    runs = {
        "threads, 1 worker": ["--workers", "1"],
        "threads, 2 workers": ["--workers", "2"],
        "local cluster, 1 worker": ["--local-cluster", "1", "--tmp-dir", str(work)],
        "local cluster, 2 workers": ["--local-cluster", "2", "--tmp-dir", str(work)],
    }
    times = {k: [] for k in runs}
    peaks = {k: [] for k in runs}
    for rep in range(args.repeats + 1):  # the first round warms the page cache
        for label, extra in runs.items():
            out = work / "out.nii"
            cmd = [sys.executable, "-m", "bigresample", str(src), str(out), "--z-spacing", "0.15",
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
    print(f"Input {'x'.join(map(str, args.shape))} float32 at 0.1 mm -> z 0.15 mm, order {args.order}; "
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
    remove(src)
    return 0


if __name__ == "__main__":
    sys.exit(main())
