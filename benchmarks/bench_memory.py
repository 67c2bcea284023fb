"""Memory and time on volumes up to larger than RAM, with a memory budget.

Builds each input on disk slab by slab (never held in memory), runs the
bigresample command on it in a subprocess with ``--memory-limit``, and prints
a table: shape, input size, wall time, time per output voxel, peak RSS of the
process tree (polled) (bench_speed.measure: polled sums, and each process's VmHWM, the
kernel's own high-water mark).

    python benchmarks/bench_memory.py --shapes 512x512x300 2048x2048x1600 \\
        --memory-limit 1GB --order 1 --format .nii

The largest default input (2048x2048x1600 float32) is 26.8 GB, more than this
machine's 24 GiB of RAM; it needs about 45 GB of free disk.  Inputs are
deleted after their run unless --keep.

Beside each run, the I/O floor on the same input in the same run (issue 34):
read the input file sequentially from start to end (16 MiB ``readinto`` a
reused buffer), then write a file of the output's size and ``fsync`` it; the
floor is the sum, and each run's ratio to it is printed.  Before every measured
command (bigresample's runs and the floor alike) the input's pages are dropped
from the page cache (``fsync``, then ``posix_fadvise(POSIX_FADV_DONTNEED)`` on
the whole file), so that each reads it from the disk; a file larger than RAM
could not be held anyway.  With ``--baseline DIR`` (another checkout of
bigresample) it runs in turn with this one, and ``--repeats N`` repeats the
round (floor, this, baseline), so that ratios come from the same minutes of a
shared machine.  Each row gives the time (UTC) and the load average.  The
floor writes the output's raw data size: it is meant for ``--format .nii``
(for ``.nii.gz`` it is not a floor of anything and is skipped).  ``--keep``
also reuses an input kept by an earlier run of the same shape and format.
Linux (``posix_fadvise``).

    python benchmarks/bench_memory.py --shapes 2048x2048x1600 --memory-limit 2GB \\
        --content gradient --workdir /work/bench/big --baseline /work/main --repeats 1
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_speed import measure  # noqa: E402

from bigresample.demo import make_phantom
from bigresample.nifti import NiftiWriter
from bigresample.plan import parse_memory


def make_gradient(path, shape, dtype, slab=32):
    """A cheap smooth volume, written slab by slab at disk speed (for sizes
    where the phantom's 30 MB/s would take a quarter of an hour)."""
    import nibabel as nib

    hdr = nib.Nifti1Header()
    hdr.set_data_shape(shape)
    hdr.set_data_dtype(dtype)
    hdr.set_qform(np.diag([0.1, 0.1, 0.1, 1.0]), 1)
    x = (np.arange(shape[0], dtype=np.float32) * 0.37)[:, None, None]
    y = (np.arange(shape[1], dtype=np.float32) * 0.11)[None, :, None]
    base = x + y
    with NiftiWriter(path, hdr) as w:
        for z0 in range(0, shape[2], slab):
            z = np.arange(z0, min(z0 + slab, shape[2]), dtype=np.float32)[None, None, :]
            w.write(((base + z * 0.5) % 1000).astype(dtype))


def run_measured(cmd, log_dir: Path, env: dict | None = None) -> tuple[float, int, float]:
    """Wall time, peak RSS of the process tree (bench_speed.measure: polled
    sums and each process's VmHWM) and CPU seconds (user + system, of the children waited for)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    run = measure(cmd, log_dir, env=env)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if run.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, cmd))} failed:\n{run.stderr}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return run.seconds, run.peak_rss, cpu


def drop_pages(path: Path) -> None:
    """Evict ``path``'s pages from the page cache, so that the next reader reads the disk:
    ``fsync`` first (dirty pages are not dropped), then ``POSIX_FADV_DONTNEED`` on all of it."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def io_floor(src: Path, dst: Path, nbytes: int, chunk: int = 16 * 2**20) -> tuple[float, float]:
    """Seconds to read ``src`` sequentially from the disk (its pages dropped first) into a reused
    buffer, and to write ``nbytes`` to ``dst`` and ``fsync`` it; ``dst`` is deleted after."""
    drop_pages(src)
    buf = bytearray(chunk)
    view = memoryview(buf)
    t0 = time.perf_counter()
    with open(src, "rb", buffering=0) as f:
        os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_SEQUENTIAL)
        while f.readinto(view):
            pass
    t1 = time.perf_counter()
    try:
        with open(dst, "wb", buffering=0) as f:
            left = nbytes
            while left > 0:
                left -= f.write(view[: min(chunk, left)])
            os.fsync(f.fileno())
        t2 = time.perf_counter()
    finally:
        dst.unlink(missing_ok=True)
    return t1 - t0, t2 - t1


def stamp() -> str:
    """The time (UTC) and the 1-minute load average, for each row."""
    return f"{time.strftime('%H:%M:%S', time.gmtime())} load {os.getloadavg()[0]:.1f}"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shapes", nargs="+", default=["512x512x300", "1024x1024x600", "2048x2048x1600"])
    p.add_argument("--dtype", default="float32", choices=["float32", "int16"])
    p.add_argument("--format", default=".nii", choices=[".nii", ".nii.gz"], help="input and output format")
    p.add_argument("--memory-limit", default="1GB")
    p.add_argument("--order", type=int, default=1)
    p.add_argument("--workdir", default=None)
    p.add_argument("--keep", action="store_true", help="keep the generated inputs (and reuse one kept before)")
    p.add_argument("--content", default="phantom", choices=["phantom", "gradient"],
                   help="brain phantom (30 MB/s to make) or a cheap gradient (disk speed)")
    p.add_argument("--baseline", type=Path, help="another checkout of bigresample, run in turn with this one")
    p.add_argument("--repeats", type=int, default=1, help="rounds of (floor, this[, baseline]) per shape")
    p.add_argument("--no-floor", action="store_true", help="skip the I/O floor")
    p.add_argument("--timeline", type=Path, help="a folder: each run's BIGRESAMPLE_TIMELINE (bigresample/timeline.py) "
                   "saved there as timeline-SHAPE-TREE-ROUND.json")
    args = p.parse_args(argv)
    if not hasattr(os, "posix_fadvise"):
        p.error("this system has no posix_fadvise: the input's pages cannot be dropped between runs")
    args.no_floor = args.no_floor or args.format != ".nii"
    work = Path(args.workdir or tempfile.mkdtemp(prefix="bigresample-mem-"))
    work.mkdir(parents=True, exist_ok=True)
    limit = parse_memory(args.memory_limit)
    trees = {"this": None} | ({"baseline": args.baseline.resolve()} if args.baseline else {})
    print(f"# {' '.join([sys.executable] + sys.argv)}")
    print(f"# {os.cpu_count()} CPUs, {psutil.virtual_memory().total / 2**30:.1f} GiB RAM; "
          f"budget {args.memory_limit}; order {args.order}; {args.dtype} {args.format}; work dir {work}")
    print()
    print("| shape | input GB | make s | what | wall s | ns / output voxel | / floor | peak RSS MiB "
          "| under budget | when |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for text in args.shapes:
        shape = tuple(int(v) for v in text.lower().split("x"))
        src = work / f"in_{text}{args.format}"
        out = work / f"out_{text}{args.format}"
        t0 = time.perf_counter()
        if args.keep and src.exists():
            pass  # kept from an earlier run (--keep): reused
        elif args.content == "phantom":
            make_phantom(src, shape=shape, slab=32, dtype=np.dtype(args.dtype))
        else:
            make_gradient(src, shape, np.dtype(args.dtype))
        made = time.perf_counter() - t0
        try:
            run_shape(args, trees, shape, text, src, out, made, limit, work)
        finally:
            out.unlink(missing_ok=True)
            if not args.keep:
                src.unlink(missing_ok=True)
    return 0


def run_shape(args, trees, shape, text, src, out, made, limit, work) -> None:
    """The rounds of one shape: the floor, then each tree's run, each after the input's pages are dropped."""
    n_in = int(np.prod(shape)) * np.dtype(args.dtype).itemsize
    m = shape[0] * shape[1] * int(round(shape[2] / 1.5))
    n_out = m * np.dtype(args.dtype).itemsize  # the output's data (the floor's write)
    head = f"| {text} | {n_in / 1e9:.2f} | {made:.0f} |"
    cmd = [sys.executable, "-P", "-m", "bigresample", str(src), str(out), "--z-spacing", "0.15", "--order",
           str(args.order), "--memory-limit", args.memory_limit, "--quiet"]
    floor = None
    for rnd in range(args.repeats):
        if not args.no_floor:
            when = stamp()
            read_s, write_s = io_floor(src, out, n_out)
            floor = read_s + write_s
            print(f"{head} I/O floor: read {read_s:.1f} s ({n_in / read_s / 1e9:.2f} GB/s) + write and fsync "
                  f"{write_s:.1f} s ({n_out / write_s / 1e9:.2f} GB/s) | {floor:.1f} | | 1.00 | | | {when} |",
                  flush=True)
        for tree, root in trees.items():
            env = dict(os.environ) if root is None else dict(os.environ, PYTHONPATH=str(root))
            if args.timeline:
                args.timeline.mkdir(parents=True, exist_ok=True)
                env["BIGRESAMPLE_TIMELINE"] = str(args.timeline.resolve() / f"timeline-{text}-{tree}-{rnd}.json")
            if root is None:
                env["PYTHONPATH"] = os.pathsep.join(p for p in (str(Path(__file__).resolve().parents[1]),
                                                                env.get("PYTHONPATH")) if p)
            drop_pages(src)
            when = stamp()
            wall, peak, cpu = run_measured(cmd, work, env)
            out.unlink(missing_ok=True)
            ratio = f"{wall / floor:.2f}" if floor else ""
            print(f"{head} bigresample ({tree}), CPU {cpu:.1f} s | {wall:.1f} | {wall / m * 1e9:.2f} | {ratio} | "
                  f"{peak / 2**20:.0f} | {'yes' if peak <= limit else 'NO'} | {when} |", flush=True)


if __name__ == "__main__":
    sys.exit(main())
