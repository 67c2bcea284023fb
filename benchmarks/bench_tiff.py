"""A TIFF slice stack larger than the memory budget, resampled; against reading it with tifffile alone.

Writes a folder of 2-D uint16 slices (a smooth pattern, slice by slice, never the whole stack in memory) in a
scratch folder, then, in the same run and alternately (the machine may be shared: compare the ratios):

- the floor: every slice read with ``tifffile.imread`` in a subprocess, one after the other;
- bigresample: the folder resampled by the command line with ``--memory-limit`` (``--input-spacing``,
  since slices carry no spacing), to a .nii, its peak RSS polled over the process tree (bench_speed.measure).

    python benchmarks/bench_tiff.py --slices 256 --plane 2048 --memory-limit 1GB --spacing 2 2 2 --repeat 2

The scratch folder (under --tmp, default /tmp) is removed afterwards.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_speed import measure  # noqa: E402

from bigresample.plan import format_bytes, parse_memory  # noqa: E402

FLOOR = """
import sys, tifffile
from pathlib import Path
from bigresample.tiff import slice_files
total = 0
for f in slice_files(sys.argv[1]):
    total += int(tifffile.imread(f)[0, 0])
"""


def make_stack(folder: Path, n: int, plane: int, rows_per_strip: int = 64) -> int:
    import tifffile

    folder.mkdir()
    y = np.arange(plane, dtype=np.float32)[:, None] * 0.37
    x = np.arange(plane, dtype=np.float32)[None, :] * 0.11
    base = x + y
    for z in range(n):
        tifffile.imwrite(folder / f"slice_{z:05d}.tif", ((base + z * 0.5) % 4000).astype(np.uint16),
                         rowsperstrip=rows_per_strip, photometric="minisblack")
    return n * plane * plane * 2


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--slices", type=int, default=256)
    p.add_argument("--plane", type=int, default=2048, help="slices are PLANE x PLANE uint16")
    p.add_argument("--memory-limit", default="1GB")
    p.add_argument("--spacing", nargs=3, default=["2", "2", "2"], help="target, in um (input: 1 um)")
    p.add_argument("--order", default="1")
    p.add_argument("--workers", default="2")
    p.add_argument("--repeat", type=int, default=2)
    p.add_argument("--tmp", default="/tmp")
    a = p.parse_args(argv)
    scratch = Path(tempfile.mkdtemp(prefix="bench-tiff-", dir=a.tmp))
    try:
        stack = scratch / "stack"
        size = make_stack(stack, a.slices, a.plane)
        limit = parse_memory(a.memory_limit)
        print(f"stack: {a.slices} slices of {a.plane}x{a.plane} uint16, {format_bytes(size)}; budget "
              f"{format_bytes(limit)}; order {a.order}, {a.workers} workers, 1 um -> {' '.join(a.spacing)} um")
        floor_cmd = [sys.executable, "-c", FLOOR, str(stack)]
        out = scratch / "out.nii"
        cmd = [sys.executable, "-m", "bigresample", str(stack), str(out), "--input-spacing", "1", "1", "1",
               "--units", "um", "--spacing", *a.spacing, "--order", a.order, "--memory-limit", a.memory_limit,
               "--workers", a.workers, "--quiet"]
        print(f"{'run':>4} {'floor s':>8} {'floor MiB':>10} {'resample s':>11} {'peak MiB':>9} {'ratio':>6}")
        for k in range(a.repeat):
            floor = measure(floor_cmd, scratch)
            run = measure(cmd, scratch)
            if run.returncode or floor.returncode:
                print(run.stderr or floor.stderr)
                return 1
            out.unlink()
            ok = "under" if run.peak_rss < limit else "OVER"
            print(f"{k + 1:>4} {floor.seconds:8.2f} {floor.peak_rss / 2**20:10.0f} {run.seconds:11.2f} "
                  f"{run.peak_rss / 2**20:9.0f} {run.seconds / floor.seconds:6.2f}  ({ok} the budget)")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
