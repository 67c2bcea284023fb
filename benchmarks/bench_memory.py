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
"""

from __future__ import annotations

import argparse
import os
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


def run_measured(cmd, log_dir: Path) -> tuple[float, int]:
    """Wall time and peak RSS of the process tree (bench_speed.measure: polled
    sums and each process's VmHWM)."""
    run = measure(cmd, log_dir)
    if run.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, cmd))} failed:\n{run.stderr}")
    return run.seconds, run.peak_rss


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shapes", nargs="+", default=["512x512x300", "1024x1024x600", "2048x2048x1600"])
    p.add_argument("--dtype", default="float32", choices=["float32", "int16"])
    p.add_argument("--format", default=".nii", choices=[".nii", ".nii.gz"], help="input and output format")
    p.add_argument("--memory-limit", default="1GB")
    p.add_argument("--order", type=int, default=1)
    p.add_argument("--workdir", default=None)
    p.add_argument("--keep", action="store_true", help="keep the generated inputs")
    p.add_argument("--content", default="phantom", choices=["phantom", "gradient"],
                   help="brain phantom (30 MB/s to make) or a cheap gradient (disk speed)")
    args = p.parse_args(argv)
    work = Path(args.workdir or tempfile.mkdtemp(prefix="bigresample-mem-"))
    work.mkdir(parents=True, exist_ok=True)
    limit = parse_memory(args.memory_limit)
    print(f"# {' '.join([sys.executable] + sys.argv)}")
    print(f"# {os.cpu_count()} CPUs, {psutil.virtual_memory().total / 2**30:.1f} GiB RAM; "
          f"budget {args.memory_limit}; order {args.order}; {args.dtype} {args.format}; work dir {work}")
    print()
    print("| shape | input GB | make s | wall s | ns / output voxel | peak RSS MiB | under budget |")
    print("|---|---|---|---|---|---|---|")
    for text in args.shapes:
        shape = tuple(int(v) for v in text.lower().split("x"))
        src = work / f"in_{text}{args.format}"
        out = work / f"out_{text}{args.format}"
        t0 = time.perf_counter()
        if args.content == "phantom":
            make_phantom(src, shape=shape, slab=32, dtype=np.dtype(args.dtype))
        else:
            make_gradient(src, shape, np.dtype(args.dtype))
        made = time.perf_counter() - t0
        n_in = int(np.prod(shape)) * np.dtype(args.dtype).itemsize
        cmd = [sys.executable, "-m", "bigresample", str(src), str(out), "--z-spacing", "0.15", "--order",
               str(args.order), "--memory-limit", args.memory_limit, "--quiet"]
        wall, peak = run_measured(cmd, work)
        m = shape[0] * shape[1] * int(round(shape[2] / 1.5))
        print(f"| {text} | {n_in / 1e9:.2f} | {made:.0f} | {wall:.1f} | {wall / m * 1e9:.2f} | "
              f"{peak / 2**20:.0f} | {'yes' if peak <= limit else 'NO'} |", flush=True)
        out.unlink(missing_ok=True)
        if not args.keep:
            src.unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
