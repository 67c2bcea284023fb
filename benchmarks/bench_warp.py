"""The point-by-point resampler (bigresample/warp.py, issue 31) beside SimpleITK's ``Resample``.

A 512x512x300 float32 phantom (1 mm voxels) through a displacement field at a
quarter of its resolution (4 mm samples, a smooth field of up to ``--amplitude``
mm) and then an affine (a 6-degree turn and a shift): bigresample's
``WarpResampler`` called block by block (the planner's blocks for
``--memory-limit``, ``--threads`` worker threads, each with its own
workspace) against SimpleITK's ``Resample`` with the same
``CompositeTransform([affine, field])`` on as many threads, in memory (no
file I/O on either side), the tools alternating, orders 0, 1 and 3.  Also
the field's ``bound()`` pre-pass, the share of one block's time spent on the
chain's coordinates, and the largest difference from SimpleITK on voxels
whose input point lies 3 voxels inside the input (a check that the two
computed the same transform, not a claim of exactness: that is
tests/test_warp.py's against scipy).

    python benchmarks/bench_warp.py [--shape 512 512 300] [--repeats 2] [--orders 0 1 3]
"""

import argparse
import os
import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone

import numpy as np
from scipy import ndimage

from bigresample import plan
from bigresample.engine import Workspace
from bigresample.registration import AffineMap, Chain, DisplacementField
from bigresample.warp import WarpGrid, WarpResampler


def phantom(shape, seed=0):
    """A smooth float32 volume (x, y, z), built a few planes at a time."""
    rng = np.random.default_rng(seed)
    small = ndimage.gaussian_filter(rng.standard_normal(tuple(s // 8 + 2 for s in shape)), 1.0)
    return ndimage.zoom(small, [s / (s // 8 + 2) for s in shape], order=1, output=np.float32)[
        : shape[0], : shape[1], : shape[2]]


def make_transform(shape, amplitude, seed=1):
    """The field (4 mm samples over the volume plus a sample each side) and the affine."""
    fshape = tuple(-(-s // 4) + 2 for s in shape)
    rng = np.random.default_rng(seed)
    d = ndimage.gaussian_filter(rng.standard_normal(fshape + (3,)), (2, 2, 2, 0))
    d *= amplitude / np.abs(d).max()
    faff = np.diag([4.0, 4.0, 4.0, 1.0])
    faff[:3, 3] = -4.0
    field = DisplacementField(fshape, faff, lambda region: d[region])
    a = np.deg2rad(6.0)
    m = np.eye(4)
    m[:2, :2] = [[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]]
    centre = (np.array(shape) - 1) / 2
    m[:3, 3] = centre - m[:3, :3] @ centre + [1.5, -2.0, 0.5]
    return d, faff, field, AffineMap(m)


def run_bigresample(vol, grid, order, threads, memory_limit):
    r = WarpResampler(grid, order, "itk", 0.0)
    p = plan.plan_blocks(r, 4, 4, memory_limit=memory_limit, workers=threads)
    out = np.empty(grid.out_shape, np.float32)
    regions = [tuple(slice(i * b, min((i + 1) * b, n)) for i, b, n in zip(start, p.block, grid.out_shape))
               for start in np.ndindex(*[-(-n // b) for n, b in zip(grid.out_shape, p.block)])]
    local = threading.local()

    def one(region):  # each worker thread reuses its own buffers, as executors.Threads' workers do
        if not hasattr(local, "ws"):
            local.ws = Workspace()
        out[region] = r.compute_into(vol, region, np.float32, local.ws).T

    t = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(one, regions))
    return time.perf_counter() - t, out, p.block


def sitk_transform(d, faff, affine):
    import SimpleITK as sitk

    img = sitk.GetImageFromArray(np.ascontiguousarray(d.transpose(2, 1, 0, 3)), isVector=True)
    img.SetSpacing([float(faff[0, 0])] * 3)
    img.SetOrigin([float(v) for v in faff[:3, 3]])
    field = sitk.DisplacementFieldTransform(sitk.Cast(img, sitk.sitkVectorFloat64))
    aff = sitk.AffineTransform(3)
    aff.SetMatrix([float(v) for v in affine.matrix[:3, :3].ravel()])
    aff.SetTranslation([float(v) for v in affine.matrix[:3, 3]])
    return sitk.CompositeTransform([aff, field])


def run_sitk(image, transform, order, threads):
    import SimpleITK as sitk

    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(threads)
    interp = {0: sitk.sitkNearestNeighbor, 1: sitk.sitkLinear, 3: sitk.sitkBSpline}[order]
    t = time.perf_counter()
    out = sitk.Resample(image, image, transform, interp, 0.0, sitk.sitkFloat32)
    elapsed = time.perf_counter() - t
    return elapsed, sitk.GetArrayFromImage(out).T


def load():
    return f"{os.getloadavg()[0]:.1f}"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shape", type=int, nargs=3, default=(512, 512, 300))
    ap.add_argument("--orders", type=int, nargs="+", default=(0, 1, 3))
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--amplitude", type=float, default=6.0)
    ap.add_argument("--memory-limit", type=int, default=2 * 2**30)
    args = ap.parse_args()
    import SimpleITK as sitk

    shape = tuple(args.shape)
    print(f"started {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, load {load()}")
    vol = phantom(shape)
    d, faff, field, affine = make_transform(shape, args.amplitude)
    t = time.perf_counter()
    field.bound()
    print(f"field {field.shape}: bound() pre-pass {time.perf_counter() - t:.3f} s, bound {field.bound()} mm")
    grid = WarpGrid(shape, shape, np.eye(4), np.eye(4), Chain((affine, field)))
    image = sitk.GetImageFromArray(np.ascontiguousarray(vol.T))
    tx = sitk_transform(d, faff, affine)
    coords = np.empty((np.prod(shape[:2]) * 8, 3))
    t = time.perf_counter()
    grid.coordinates((slice(0, shape[0]), slice(0, shape[1]), slice(0, 8)), coords)
    per_voxel = (time.perf_counter() - t) / len(coords)
    print(f"the chain's coordinates: {per_voxel * 1e9:.0f} ns per output voxel (one thread, 8 planes)")
    print()
    print("| order | tool | runs | median wall (s) | min wall (s) | time / SimpleITK | load at start | "
          "block | max|diff|/range vs SimpleITK, 3 voxels inside |")
    print("|---:|---|---:|---:|---:|---:|---:|---|---:|")
    lo = np.array([3, 3, 3])
    for order in args.orders:
        times = {"bigresample": [], "SimpleITK": []}
        loads = {}
        outs = {}
        for _ in range(args.repeats):
            loads.setdefault("bigresample", load())
            s, outs["bigresample"], block = run_bigresample(vol, grid, order, args.threads, args.memory_limit)
            times["bigresample"].append(s)
            loads.setdefault("SimpleITK", load())
            s, outs["SimpleITK"] = run_sitk(image, tx, order, args.threads)
            times["SimpleITK"].append(s)
        # voxels whose input point lies 3 voxels inside
        sl = (slice(0, shape[0]), slice(0, shape[1]), slice(0, shape[2]))
        c = np.empty((np.prod(shape), 3))
        grid.coordinates(sl, c)
        inside = np.all((c >= lo) & (c <= np.array(shape) - 1 - lo), axis=1).reshape(shape[::-1]).T
        diff = np.abs(outs["bigresample"].astype(np.float64) - outs["SimpleITK"])[inside]
        rng = float(vol.max() - vol.min())
        sitk_med = statistics.median(times["SimpleITK"])
        for tool in ("bigresample", "SimpleITK"):
            ts = times[tool]
            extra = ("x".join(map(str, block)), f"{diff.max() / rng:.1e}") if tool == "bigresample" else ("-", "-")
            print(f"| {order} | {tool} | {len(ts)} | {statistics.median(ts):.2f} | {min(ts):.2f} | "
                  f"{statistics.median(ts) / sitk_med:.2f} | {loads[tool]} | {extra[0]} | {extra[1]} |")
    print(f"\nended {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, load {load()}")


if __name__ == "__main__":
    main()
