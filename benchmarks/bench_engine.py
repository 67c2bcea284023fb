"""The engine's micro-choices: reused buffers, the plane-by-plane prefilter, the compiled per-axis sum.

    python benchmarks/bench_engine.py [--mib 128] [--block 64 256 256] [--repeats 7]

(a) Fresh memory against a reused buffer (``engine.Workspace``,
``rawio.RawReader.read_into``).  The same work is done into a buffer of
``--mib`` MiB that is either

* ``fresh``          -- a new ``np.empty`` every time (freed afterwards), as numpy
                        makes it: for large arrays numpy asks the kernel for
                        transparent huge pages (``madvise``), if the kernel allows;
* ``fresh, 4 KiB``   -- the same with numpy's huge-page ``madvise`` turned off
                        (``np._core.multiarray._set_madvise_hugepage(False)``), so
                        every 4 KiB page faults on first touch;
* ``reused``         -- one buffer allocated and touched before the clock starts.

The work: ``fill`` (``buf.fill(1.0)``), ``copy`` (``np.copyto(buf, src)``) and
``read`` (a slab of whole planes of a raw float32 ``.nii`` written by
``bigresample.demo.make_phantom`` into a temporary folder and read from the page
cache: ``RawReader[...]``, which allocates, against ``RawReader.read_into`` a
reused buffer; nibabel's ``dataobj[...]``, loaded with ``mmap=False``, for
reference).  Time per GB
(1e9 bytes) moved, minor page faults per 4 KiB of buffer (``getrusage``), and
fresh / reused from the same repeats.

(b) ``splines.prefilter_planes`` against ``scipy.ndimage.spline_filter1d``
along the two outer axes of a C-ordered float64 block (``--block``, file order:
z, y, x; a piece of the phantom), order 3, mode 'nearest', both into a
preallocated float64 output as the engine calls them; max |difference| / max
|scipy| is checked to be below 1e-12.

(c) The per-axis sum of the taps (``engine._eval_axis``): compiled
(``kernel.axis_sum`` / ``axis_take``) against the numpy sum it replaced
(``engine._eval_axis_numpy``), in one whole block through
``Resampler.compute_into``, window read included: the every-axis spacing change
of ``bench_reference.py`` (512x512x300 float32 at 0.1 mm to 0.13 x 0.07 x 0.15
mm, ``center`` grid), the block a run makes at order 1 (394x183x13 output
voxels, x y z), float32 out, orders 0, 1 and 3; ns per output voxel, one thread.
The two blocks must be equal bit for bit.

Medians of ``--repeats``; the candidates' order is rotated every repeat and
ratios are medians of the ratios within each repeat.
"""

from __future__ import annotations

import argparse
import gc
import platform
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import scipy
from scipy import ndimage

from bigresample import engine, splines
from bigresample.demo import make_phantom, phantom_slab
from bigresample.engine import Resampler, Workspace
from bigresample.geometry import make_grid
from bigresample.rawio import RawReader

PAGE = 4096


def _set_hugepage(on: bool) -> bool:
    """Turn numpy's huge-page madvise for large arrays on or off; the previous setting."""
    core = getattr(np, "_core", None) or np.core
    setter = getattr(core.multiarray, "_set_madvise_hugepage", None)
    return bool(setter(on)) if setter is not None else False


def minflt() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def rotate(seq, k):
    k %= len(seq)
    return seq[k:] + seq[:k]


def measure(candidates: dict, repeats: int):
    """{name: ([seconds], [minor faults])}; the order rotates every repeat."""
    names = list(candidates)
    res = {n: ([], []) for n in names}
    for n in names:  # warm-up
        candidates[n]()
    for r in range(repeats):
        for n in rotate(names, r):
            gc.collect()
            f0 = minflt()
            t0 = time.perf_counter()
            candidates[n]()
            dt = time.perf_counter() - t0
            res[n][0].append(dt)
            res[n][1].append(minflt() - f0)
    return res


def paired(a, b):
    return statistics.median(x / y for x, y in zip(a, b))


def part_a(mib: int, repeats: int, tmp: Path):
    n = mib * 2**20 // 8
    nbytes = n * 8
    src = np.random.default_rng(0).random(n)
    reused = np.empty(n)
    reused.fill(0.0)

    def fresh_fill():
        a = np.empty(n)
        a.fill(1.0)
        del a

    def fresh_copy():
        a = np.empty(n)
        np.copyto(a, src)
        del a

    def fresh4k(fn):
        def run():
            before = _set_hugepage(False)
            try:
                fn()
            finally:
                _set_hugepage(before)

        return run

    # a raw float32 .nii: 512 x 512 x planes, read as one slab of whole planes
    planes = max(1, mib * 2**20 // (512 * 512 * 4))
    path = make_phantom(tmp / "raw.nii", shape=(512, 512, planes), slab=16)
    proxy = nib.load(path, mmap=False).dataobj  # mmap=True would only map the pages, not read them
    reader = RawReader(path, proxy.offset, proxy.shape, proxy.dtype)
    region = (slice(None), slice(None), slice(0, planes))
    rbuf = np.empty(reader.shape[::-1], dtype=reader.dtype)
    rbuf.fill(0)
    rbytes = rbuf.nbytes

    def fresh_read():
        a = reader[region]
        del a

    def reused_read():
        reader.read_into(region, rbuf)

    def nibabel_read():
        a = proxy[region]
        del a

    assert np.array_equal(reader[region], proxy[region])
    rows = []
    for work, cands, size in (
        ("fill", {"fresh": fresh_fill, "fresh, 4 KiB": fresh4k(fresh_fill), "reused": lambda: reused.fill(1.0)},
         nbytes),
        ("copy", {"fresh": fresh_copy, "fresh, 4 KiB": fresh4k(fresh_copy), "reused": lambda: np.copyto(reused, src)},
         nbytes),
        ("read .nii slab", {"fresh (RawReader[...])": fresh_read,
                            "fresh, 4 KiB (RawReader[...])": fresh4k(fresh_read),
                            "reused (read_into)": reused_read,
                            "nibabel dataobj[...] (mmap=False)": nibabel_read}, rbytes),
    ):
        res = measure(cands, repeats)
        base = [k for k in cands if k.startswith("reused")][0]
        for k, (ts, fs) in res.items():
            t = statistics.median(ts)
            rows.append((work, k, size, t / size * 1e9, size / t / 1e9, statistics.median(fs) / (size / PAGE),
                         paired(ts, res[base][0])))
    del reader, proxy
    return rows, planes


def part_b(block, repeats: int):
    nz, ny, nx = block
    x = np.ascontiguousarray(phantom_slab((nx, ny, nz), 0, nz).T, dtype=np.float64)  # (z, y, x) C-ordered
    out_p = np.empty_like(x)
    out_s = np.empty_like(x)
    rows = []
    for axis in (0, 1):
        if x.shape[axis] < splines.PLANEWISE_MIN_LEN:
            continue
        cands = {
            "splines.prefilter_planes": lambda: splines.prefilter_planes(x, out_p, 3, "nearest", axis),
            "ndimage.spline_filter1d": lambda: ndimage.spline_filter1d(x, 3, axis=axis, output=out_s, mode="nearest"),
        }
        res = measure(cands, repeats)
        err = float(np.abs(out_p - out_s).max() / np.abs(out_s).max())
        if not err < 1e-12:
            raise SystemExit(f"axis {axis}: prefilter_planes differs from scipy by {err:.2e} x max")
        tp, ts = res["splines.prefilter_planes"][0], res["ndimage.spline_filter1d"][0]
        rows.append((axis, x.shape[axis], statistics.median(tp), statistics.median(ts), paired(ts, tp), err))
    return rows


def part_c(repeats: int):
    shape = (512, 512, 300)
    source = _FileOrder(np.ascontiguousarray(phantom_slab(shape, 0, shape[2]).T, dtype=np.float32))
    grid = make_grid(shape, (0.1,) * 3, (0.13, 0.07, 0.15))
    region = (slice(0, 394), slice(0, 183), slice(0, 13))
    rows = []
    for order in (0, 1, 3):
        r = Resampler(grid, order, "nearest")
        ws_c, ws_n = Workspace(), Workspace()

        def numpy_sum():
            saved, engine._eval_axis = engine._eval_axis, engine._eval_axis_numpy
            try:
                return r.compute_into(source, region, np.float32, ws_n)
            finally:
                engine._eval_axis = saved

        cands = {"compiled": lambda: r.compute_into(source, region, np.float32, ws_c), "numpy": numpy_sum}
        res = measure(cands, repeats)
        if cands["compiled"]().tobytes() != cands["numpy"]().tobytes():
            raise SystemExit(f"order {order}: the compiled sum differs from numpy's")
        n = 394 * 183 * 13
        tc, tn = res["compiled"][0], res["numpy"][0]
        rows.append((order, statistics.median(tc) / n * 1e9, statistics.median(tn) / n * 1e9, paired(tn, tc)))
    return rows


class _FileOrder:
    """A source in file order (z, y, x), read without transposing, as ``rawio.RawReader``."""

    def __init__(self, zyx):
        self.zyx, self.shape, self.dtype = zyx, zyx.shape[::-1], zyx.dtype

    def read_into(self, slices, out):
        np.copyto(out, self.zyx[tuple(slices[::-1])])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--mib", type=int, default=128, help="buffer size in MiB for part (a) (default 128)")
    p.add_argument("--block", nargs=3, type=int, default=[64, 256, 256], metavar=("NZ", "NY", "NX"),
                   help="C-ordered float64 block for part (b), file order (default 64 256 256)")
    p.add_argument("--repeats", type=int, default=7)
    args = p.parse_args(argv)
    print(f"# {' '.join([sys.executable] + sys.argv)}")
    print(f"# {cpu_name()}, Python {platform.python_version()}, numpy {np.__version__}, scipy {scipy.__version__}, "
          f"transparent huge pages: {thp()}")
    print(f"Median of {args.repeats}")
    print()

    with tempfile.TemporaryDirectory(prefix="bench_engine_") as tmp:
        rows, planes = part_a(args.mib, args.repeats, Path(tmp))
    print(f"(a) {args.mib} MiB buffers; the .nii slab is 512x512x{planes} float32, read from the page cache")
    print()
    print("| work | buffer | MiB | ms per GB | GB/s | minor faults per 4 KiB | time / reused |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for work, k, size, ms, gbs, flt, rel in rows:
        print(f"| {work} | {k} | {size / 2**20:.0f} | {ms * 1e3:.0f} | {gbs:.2f} | {flt:.3f} | {rel:.2f} |")
    print()
    sys.stdout.flush()

    rows = part_b(tuple(args.block), args.repeats)
    print(f"(b) spline prefilter, order 3, mode 'nearest', C-ordered float64 block {tuple(args.block)} (z, y, x)")
    print()
    print("| axis | line length | prefilter_planes (ms) | spline_filter1d (ms) | scipy / planes | max\\|Δ\\|/max\\|scipy\\| |")
    print("|---:|---:|---:|---:|---:|---:|")
    for axis, n, tp, ts, rel, err in rows:
        print(f"| {axis} | {n} | {tp * 1e3:.0f} | {ts * 1e3:.0f} | {rel:.1f} | {err:.1e} |")
    print()
    sys.stdout.flush()

    rows = part_c(args.repeats)
    print("(c) per-axis sum, one 394x183x13 block of the every-axis spacing change, float32, one thread")
    print()
    print("| order | compiled ns/voxel | numpy ns/voxel | numpy / compiled | values |")
    print("|---:|---:|---:|---:|---|")
    for order, tc, tn, rel in rows:
        print(f"| {order} | {tc:.1f} | {tn:.1f} | {rel:.1f} | identical |")
    return 0


def thp() -> str:
    try:
        return Path("/sys/kernel/mm/transparent_hugepage/enabled").read_text().strip()
    except OSError:
        return "?"


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            names = [ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")]
        return f"{len(names)} x {names[0]}"
    except (OSError, IndexError):
        return platform.processor() or platform.machine()


if __name__ == "__main__":
    sys.exit(main())
