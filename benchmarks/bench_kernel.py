"""The general path's kernel, per output voxel, against its candidates and peers.

    python benchmarks/bench_kernel.py [--shape 256 256 192] [--orders 0 1 3] [--repeats 3]
    python benchmarks/bench_kernel.py --baseline DIR [--orders 0 1 3] [--repeats 16]

A smooth float32 volume (``--shape``, x y z) is resampled onto the same grid
rotated 15 degrees about z and 7 about x around its centre, mode 'nearest'
(bigresample's default), all in memory:

* ``scipy affine_transform``      -- one whole-array call (the reference);
* ``scipy map_coordinates``       -- the previous general path: float64
                                     coordinate arrays (24 B per output voxel)
                                     computed as scipy's loop does, then
                                     ``map_coordinates`` (B-spline coefficients
                                     by ``spline_filter`` for orders >= 2);
* ``bigresample kernel``          -- ``AffineResampler.compute_into`` with the
                                     compiled kernel (bigresample/kernel.py,
                                     _kernel.c), window read and prefilter
                                     included;
* ``simpleitk``                   -- ``sitk.Resample`` with the same affine
                                     (nearest / linear / B-spline 3).

One thread: each on the whole output.  Two threads: the output cut in two
slabs along z, one per thread (SimpleITK: its own 2 threads).  Figures:
nanoseconds per output voxel of wall time and of CPU time (the process's, so
that a busy shared machine shows less in it than in the wall time); the
median of ``--repeats``, the candidates alternating.  Also max |difference| /
range against the whole-array scipy call, and the kernel's start-up cost: a
fresh process importing it and making its first call.

``--baseline DIR`` measures only this kernel against another build of it:
``DIR`` is a source tree of bigresample with its extension built in place
(``git archive`` of a commit, then ``python setup.py build_ext --inplace``).
Both extensions are loaded into one process (as ``_base._kernel`` and
``_this._kernel``) and ``AffineResampler.compute_into`` runs with one and
then the other, alternating, ``--repeats`` times each on the whole output on
one thread: the median CPU ns per voxel of each and the median of the
per-pair ratios (this / baseline), the spread of those ratios, and whether
the two outputs are identical bit for bit.  On a shared machine whose load
moves single runs by +-20%, pairs taken a second apart are what show a 10%
change.

Then the window prefilter of orders >= 2 (``transform._prefilter``, compiled)
against what it replaced (``splines.prefilter_planes`` along z and y, scipy's
``spline_filter1d`` along x), order 3, on a float64 window of ``--window``
samples (z y x; default the largest window of ``bench_reference.py --case
rotated``'s blocks at order 3, pre-pad included): ns per window sample and
axis, one thread, median of ``--repeats``.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from scipy import ndimage

from bigresample.engine import Workspace
from bigresample.geometry import ReferenceGrid
from bigresample.transform import AffineResampler


def rotation(axis, degrees):
    t = np.radians(degrees)
    c, s = np.cos(t), np.sin(t)
    r = np.eye(3)
    i, j = [k for k in range(3) if k != axis]
    r[i, i], r[i, j], r[j, i], r[j, j] = c, -s, s, c
    return r


def setup(shape):
    rng = np.random.default_rng(0)
    xyz = ndimage.gaussian_filter(rng.standard_normal(shape, dtype=np.float32), 2.0) * 1000
    matrix = rotation(2, 15) @ rotation(0, 7)
    centre = (np.array(shape) - 1) / 2
    offset = centre - matrix @ centre
    grid = ReferenceGrid(tuple(shape), tuple(shape), matrix, offset, np.eye(4))
    return np.ascontiguousarray(xyz.T), grid  # file order (z, y, x), as a NIfTI holds it


class FileOrder:
    """A source in file order, read without transposing (as ``rawio.RawReader``)."""

    def __init__(self, zyx):
        self.zyx, self.shape, self.dtype = zyx, zyx.shape[::-1], zyx.dtype

    def read_into(self, slices, out):
        np.copyto(out, self.zyx[tuple(slices[::-1])])


def slabs(grid, parts):
    """Output regions (spatial-first slices) cutting z into ``parts``."""
    nz = grid.out_shape[2]
    cuts = np.linspace(0, nz, parts + 1).astype(int)
    return [(slice(0, grid.out_shape[0]), slice(0, grid.out_shape[1]), slice(a, b))
            for a, b in zip(cuts[:-1], cuts[1:])]


def scipy_affine(zyx, grid, order, region):
    """The whole-array call on the file-order array (the matrix reversed): a (z, y, x) result."""
    o = np.array([s.start for s in region], dtype=np.float64)
    shape = tuple(s.stop - s.start for s in region)[::-1]
    return ndimage.affine_transform(zyx, grid.matrix[::-1, ::-1], offset=(grid.offset + grid.matrix @ o)[::-1],
                                    output_shape=shape, order=order, mode="nearest")


def scipy_coords(xyz, grid, order, region, coef, pad):
    o = [np.arange(s.start, s.stop, dtype=np.float64) for s in region]
    coords = np.empty((3,) + tuple(len(v) for v in o))
    m, off = grid.matrix, grid.offset
    for i in range(3):
        coords[i] = (off[i] + o[0] * m[i, 0])[:, None, None]
        coords[i] += (o[1] * m[i, 1])[None, :, None]
        coords[i] += (o[2] * m[i, 2])[None, None, :]
    coords += pad  # scipy's pre-pad for 'nearest' at orders >= 2
    return ndimage.map_coordinates(coef, coords, order=order, mode="nearest", prefilter=False)


def kernel(source, grid, order, region, ws):
    return AffineResampler(grid, order, "nearest").compute_into(source, region, np.float32, ws)


def sitk_resample(img, grid, order, threads):
    import SimpleITK as sitk

    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(threads)
    tr = sitk.AffineTransform(3)
    tr.SetMatrix(grid.matrix.ravel().tolist())
    tr.SetTranslation(grid.offset.tolist())
    interp = {0: sitk.sitkNearestNeighbor, 1: sitk.sitkLinear, 3: sitk.sitkBSpline}[order]
    return sitk.Resample(img, img, tr, interp, 0.0)


def timed(fn):
    w, c = time.perf_counter(), time.process_time()
    out = fn()
    return time.perf_counter() - w, time.process_time() - c, out


def candidates(zyx, grid, order, threads):
    """name -> a function computing the whole output with ``threads`` threads."""
    pool = ThreadPoolExecutor(threads)
    regions = slabs(grid, threads)
    workspaces = [Workspace() for _ in regions]

    def split(fn):
        return lambda: list(pool.map(fn, regions, workspaces))

    xyz = zyx.T  # spatial-first, x fastest in memory: what the previous path gave scipy
    pad = 12 if order > 1 else 0
    coef = xyz if order < 2 else ndimage.spline_filter(np.pad(xyz, pad, mode="edge"), order, mode="nearest")
    out = {
        "scipy affine_transform": split(lambda r, ws: scipy_affine(zyx, grid, order, r)),
        "scipy map_coordinates": split(lambda r, ws: scipy_coords(xyz, grid, order, r, coef, pad).T),
        "bigresample kernel": split(lambda r, ws: kernel(FileOrder(zyx), grid, order, r, ws).copy()),
    }
    try:
        import SimpleITK as sitk

        img = sitk.GetImageFromArray(zyx)  # x fastest
        out["simpleitk"] = lambda: [sitk.GetArrayFromImage(sitk_resample(img, grid, order, threads))]
    except ImportError:
        pass
    return out


def against_baseline(zyx, grid, orders, repeats, baseline) -> None:
    """``--baseline``: this build's kernel against ``baseline``'s, in one process."""
    import glob
    import importlib
    import shutil
    import tempfile

    import bigresample.kernel as kn

    here = Path(kn.__file__).parent
    tmp = Path(tempfile.mkdtemp(prefix="bench_kernel_"))
    try:
        modules = {}
        for tag, tree in (("_base", Path(baseline) / "bigresample"), ("_this", here)):
            built = glob.glob(str(tree / "_kernel*.so")) + glob.glob(str(tree / "_kernel*.pyd"))
            if not built:
                raise SystemExit(f"--baseline: no built _kernel extension in {tree}")
            (tmp / tag).mkdir()
            (tmp / tag / "__init__.py").write_text("")
            shutil.copy(built[0], tmp / tag / Path(built[0]).name)
        sys.path.insert(0, str(tmp))
        for tag in ("_base", "_this"):
            modules[tag] = importlib.import_module(f"{tag}._kernel")
        region = slabs(grid, 1)[0]
        n = zyx.size
        print(f"kernel against {baseline}: one process, one thread, alternating, {repeats} calls each\n")
        print("| order | baseline CPU ns/voxel | this CPU ns/voxel | this / baseline (median of pairs) | range | identical |")
        print("|---:|---:|---:|---:|---|---|")
        saved = kn._kernel
        try:
            for order in orders:
                ws = {tag: Workspace() for tag in modules}
                outs, cpu = {}, {tag: [] for tag in modules}
                for tag, mod in modules.items():
                    kn._kernel = mod
                    outs[tag] = kernel(FileOrder(zyx), grid, order, region, ws[tag]).copy()
                for rep in range(repeats):
                    for tag in (("_base", "_this") if rep % 2 == 0 else ("_this", "_base")):
                        kn._kernel = modules[tag]
                        _, c, _ = timed(lambda: kernel(FileOrder(zyx), grid, order, region, ws[tag]))
                        cpu[tag].append(c / n * 1e9)
                ratios = [b / a for a, b in zip(cpu["_base"], cpu["_this"])]
                same = outs["_base"].tobytes() == outs["_this"].tobytes()
                print(f"| {order} | {statistics.median(cpu['_base']):.2f} | {statistics.median(cpu['_this']):.2f} | "
                      f"{statistics.median(ratios):.3f} | {min(ratios):.2f}-{max(ratios):.2f} | {'yes' if same else 'NO'} |")
                sys.stdout.flush()
        finally:
            kn._kernel = saved
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def first_call_cost() -> tuple[float, float]:
    """(wall, CPU) seconds of a fresh process importing the kernel and making
    its first call (the whole process's CPU)."""
    code = ("import time; t = time.perf_counter(); import numpy as np; from bigresample.geometry import ReferenceGrid; "
            "from bigresample.transform import AffineResampler; from bigresample.engine import Workspace; "
            "g = ReferenceGrid((8, 8, 8), (8, 8, 8), np.eye(3) * 0.9, np.ones(3), np.eye(4)); "
            "d = np.ones((8, 8, 8), np.float32); s = time.perf_counter(); "
            "AffineResampler(g, 1).compute_into(d, (slice(0, 8),) * 3, np.float32, Workspace()); "
            "print(time.perf_counter() - s)")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    wall = float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime


def prefilter_table(window, repeats) -> None:
    from bigresample import splines
    from bigresample.engine import Workspace
    from bigresample.transform import _prefilter

    data = np.random.default_rng(1).standard_normal(window) * 1000
    work, ws = np.empty_like(data), Workspace()

    def before(axis):
        if axis < 2:
            splines.prefilter_planes(work, work, 3, "nearest", axis)
        else:
            ndimage.spline_filter1d(work, 3, axis=axis, output=work, mode="nearest")

    print(f"\nwindow prefilter, order 3, mode nearest, float64 window {window[0]}x{window[1]}x{window[2]} (z y x)\n")
    print("| axis | before (numpy planes / scipy) ns/sample | compiled ns/sample | max abs diff / range |")
    print("|---|---:|---:|---:|")
    for axis, name in enumerate("zyx"):
        times, outs = {"before": [], "compiled": []}, {}
        for rep in range(repeats + 1):
            for label, fn in (("before", before), ("compiled", lambda a: _prefilter(work, 3, "nearest", a, ws))):
                np.copyto(work, data)
                t = time.perf_counter()
                fn(axis)
                if rep:
                    times[label].append(time.perf_counter() - t)
                outs[label] = work.copy()
        diff = float(np.max(np.abs(outs["before"] - outs["compiled"]))) / float(np.ptp(data))
        b, c = (statistics.median(times[k]) / data.size * 1e9 for k in ("before", "compiled"))
        print(f"| {name} | {b:.2f} | {c:.2f} | {diff:.1e} |")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shape", type=int, nargs=3, default=[256, 256, 192])
    ap.add_argument("--orders", type=int, nargs="+", default=[0, 1, 3])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--window", type=int, nargs=3, default=[163, 267, 536])
    ap.add_argument("--baseline", metavar="DIR", help="only this kernel against DIR's build of it, in one process")
    args = ap.parse_args(argv)
    zyx, grid = setup(args.shape)
    if args.baseline:
        return against_baseline(zyx, grid, args.orders, args.repeats, args.baseline)
    n = zyx.size
    first, process_cpu = first_call_cost()
    print(f"kernel's first call in a fresh process (order 1, float32): {first * 1e3:.1f} ms "
          f"(the whole process, imports included: {process_cpu:.2f} s CPU)\n")
    print("| order | threads | candidate | wall ns/voxel | CPU ns/voxel | max abs diff / range vs scipy |")
    print("|---:|---:|---|---:|---:|---:|")
    for order in args.orders:
        reference = scipy_affine(zyx, grid, order, slabs(grid, 1)[0])
        span = float(np.ptp(zyx))
        for threads in (1, 2):
            cands = candidates(zyx, grid, order, threads)
            times = {k: [] for k in cands}
            diffs = {}
            for name, fn in cands.items():  # warm-up, and the agreement
                parts = fn()
                got = np.concatenate([np.asarray(p) for p in parts], axis=0)  # (z, y, x) slabs
                diffs[name] = float(np.max(np.abs(got.astype(np.float64) - reference))) / span
            for rep in range(args.repeats):
                names = list(cands)
                for name in names[rep % len(names):] + names[:rep % len(names)]:
                    wall, cpu, _ = timed(cands[name])
                    times[name].append((wall, cpu))
            for name, ts in times.items():
                wall = statistics.median(t[0] for t in ts) / n * 1e9
                cpu = statistics.median(t[1] for t in ts) / n * 1e9
                print(f"| {order} | {threads} | {name} | {wall:.1f} | {cpu:.1f} | {diffs[name]:.1e} |")
            sys.stdout.flush()
    prefilter_table(tuple(args.window), args.repeats)


if __name__ == "__main__":
    main()
