"""How bigresample's wall time and peak memory grow with the volume size.

What it measures
----------------
For each shape of a series (default 256x256x150 ... 1024x1024x300, 9.8 M to
315 M voxels, a 32x range) a brain phantom at 0.1 mm isotropic is written as
``.nii`` (``bigresample.demo.make_phantom``, slab by slab), then
``python -m bigresample IN OUT --z-spacing 0.15 --order K --quiet`` runs as a
subprocess: one untimed warm-up (input in the page cache, imports warm), then
``--repeats`` timed runs.  Wall time is ``time.perf_counter()`` around the
subprocess; peak RSS is measured as in ``bench_speed.py`` (10 ms polling of the
process tree, backed by the kernel's VmHWM).  Each input is deleted after its
runs to save disk.

Linear scaling shows as a constant time per output voxel; bounded memory as a
peak RSS that stops growing with the volume.

How to run
----------
From the repository root::

    python benchmarks/bench_scaling.py                               # default series, order 1
    python benchmarks/bench_scaling.py --order 3 --repeats 3
    python benchmarks/bench_scaling.py --shapes 64x64x40 128x64x40 --repeats 1   # a quick try

The report (markdown) goes to stdout, progress to stderr.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench_speed import (  # same folder: the measuring code is shared
    MIB,
    SPACING,
    TARGET,
    header_lines,
    log,
    measure,
    output_shape,
    remove,
    report_run,
    tool_command,
)

DEFAULT_SHAPES = ["256x256x150", "512x256x150", "512x512x150", "512x512x300", "1024x512x300", "1024x1024x300"]


def parse_shape(text: str) -> tuple[int, int, int]:
    try:
        shape = tuple(int(v) for v in text.lower().split("x"))
    except ValueError:
        shape = ()
    if len(shape) != 3 or min(shape) < 1:
        raise argparse.ArgumentTypeError(f"a shape is XxYxZ with positive integers, e.g. 512x512x300; got {text!r}")
    return shape


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shapes", nargs="+", type=parse_shape, default=[parse_shape(s) for s in DEFAULT_SHAPES],
                   metavar="XxYxZ", help=f"input shapes at 0.1 mm (default {' '.join(DEFAULT_SHAPES)})")
    p.add_argument("--order", type=int, default=1, choices=range(6), metavar="{0..5}",
                   help="spline order (default 1)")
    p.add_argument("--repeats", type=int, default=2, help="timed runs per shape (default 2)")
    p.add_argument("--no-warmup", action="store_true", help="skip the untimed warm-up run per shape")
    p.add_argument("--workdir", type=Path,
                   help="folder for inputs and outputs (default: a fresh folder under /tmp, deleted at the end)")
    p.add_argument("--timeout", type=float, default=3600.0, help="seconds before a run is killed (default 3600)")
    args = p.parse_args(argv)
    if args.repeats < 1:
        p.error("--repeats must be >= 1")
    return args


def run_shape(shape, order: int, repeats: int, warmup: bool, workdir: Path, timeout: float) -> dict:
    """Make the input, run bigresample on it, delete it; one table row as a dict."""
    from bigresample.demo import make_phantom

    name = "x".join(map(str, shape))
    src = workdir / f"in_{name}.nii"
    dst = workdir / f"out_{name}.nii"
    t0 = time.perf_counter()
    make_phantom(src, shape=shape, spacing=SPACING)
    in_bytes = src.stat().st_size
    log(f"made {src} ({in_bytes / 1e6:.1f} MB) in {time.perf_counter() - t0:.1f} s")
    runs = []
    try:
        for i in range(-1 if warmup else 0, repeats):
            run = measure(tool_command("bigresample", src, dst, order, {}), workdir, timeout)
            remove(dst)
            report_run(f"[{name} {'warm-up' if i < 0 else f'{i + 1}/{repeats}'}] bigresample order {order}", run)
            if i >= 0:
                runs.append(run)
            if not run.ok:
                break
    finally:
        remove(src)
        remove(dst)
    ok = bool(runs) and all(r.ok for r in runs)
    out_voxels = int(np.prod(output_shape(shape)))
    wall = statistics.median(r.seconds for r in runs) if ok else None
    return {
        "shape": name,
        "voxels": int(np.prod(shape)),
        "out_voxels": out_voxels,
        "in_mb": in_bytes / 1e6,
        "wall": wall,
        "ns_per_voxel": wall / out_voxels * 1e9 if ok else None,
        "rss": statistics.median(r.peak_rss for r in runs) / MIB if ok else None,
    }


def table(rows) -> list[str]:
    lines = [
        "| shape | voxels | output voxels | input size (MB) | median wall (s) | time per output voxel (ns) "
        "| median peak RSS (MiB) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        if r["wall"] is None:
            tail = "error | error | error"
        else:
            tail = f"{r['wall']:.2f} | {r['ns_per_voxel']:.1f} | {r['rss']:.0f}"
        lines.append(f"| {r['shape']} | {r['voxels'] / 1e6:.1f} M | {r['out_voxels'] / 1e6:.1f} M "
                     f"| {r['in_mb']:.1f} | {tail} |")
    return lines


def summary(rows) -> list[str]:
    done = [r for r in rows if r["wall"] is not None]
    if len(done) < 2:
        return []
    small, big = min(done, key=lambda r: r["voxels"]), max(done, key=lambda r: r["voxels"])
    v = big["voxels"] / small["voxels"]
    t = big["wall"] / small["wall"]
    m = big["rss"] / small["rss"]
    lines = [f"Smallest to largest: {v:.1f}x the voxels, {t:.1f}x the wall time, {m:.2f}x the peak RSS."]
    if len(done) >= 3:  # log-log slope: 1.0 is linear in the voxel count
        slope = np.polyfit(np.log([r["out_voxels"] for r in done]), np.log([r["wall"] for r in done]), 1)[0]
        lines.append(f"Fitted exponent of wall time vs output voxels (log-log): {slope:.2f} (1.00 = linear).")
    return lines


def main(argv=None) -> int:
    args = parse_args(argv)
    created = args.workdir is None
    workdir = Path(tempfile.mkdtemp(prefix="bench_scaling_", dir="/tmp")) if created else args.workdir
    workdir.mkdir(parents=True, exist_ok=True)
    print("\n".join(header_lines("bench_scaling")), flush=True)
    counts = [int(np.prod(s)) for s in args.shapes]
    print(f"bigresample order {args.order}, .nii, float32 at {SPACING} mm -> spacing "
          f"{' x '.join(map(str, TARGET))} mm; {args.repeats} timed run(s) per shape"
          f"{'' if args.no_warmup else ' after 1 warm-up'}; voxel counts span "
          f"{max(counts) / min(counts):.1f}x; work folder {workdir}\n", flush=True)
    rows = []
    try:
        for shape in args.shapes:
            rows.append(run_shape(shape, args.order, args.repeats, not args.no_warmup, workdir, args.timeout))
    finally:
        if created:
            shutil.rmtree(workdir, ignore_errors=True)
    print("\n".join(table(rows)))
    extra = summary(rows)
    if extra:
        print("\n" + "\n".join(extra))
    failed = [r["shape"] for r in rows if r["wall"] is None]
    if failed:
        print("\nFailed: " + ", ".join(failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
