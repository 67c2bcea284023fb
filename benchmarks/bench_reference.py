"""The general (non-separable) path and an every-axis spacing change: bigresample
against a whole-array scipy call, SimpleITK and ngff-zarr, file in to file out.

What it measures
----------------
A smooth float32 volume at 0.1 mm isotropic, origin away from zero (a sum of
products of 1-D cosines with wavelengths of 2.6-9 mm, written slab by slab as
``in.nii``), is resampled onto a new grid, spline orders 0, 1 and 3.  The grid
is chosen by ``--case``:

* ``default``    -- 384x384x256 onto a reference ``ref.nii`` whose axes are
                    rotated by 15 degrees about z, then 7 degrees about x,
                    around the input's centre, spacing 0.12 x 0.12 x 0.15 mm,
                    the shape that spans the input's field of view (320x320x171);
* ``rotated``    -- 512x512x300 onto a reference of the SAME shape and spacing
                    rotated the same way (issue 16's case);
* ``pil``        -- 512x512x300 onto a P-I-L reference at 0.2 mm (x, y, z flipped,
                    axes permuted (y, z, x): reference axis j along input axis
                    (1, 2, 0)[j], reversed), 256x256x150 (the aligned grid's
                    voxel count), centred on the input (issue 34's case);
* ``pil-extent`` -- the same reference with the input's extent, 256x150x256;
* ``aligned-0.2``-- the aligned 0.2 mm reference, 256x256x150, they are
                    measured against;
* ``every-axis`` -- 512x512x300 to 0.13 x 0.07 x 0.15 mm (every axis changes;
                    bigresample's ``--spacing``, default ``center`` grid:
                    output size ``round(n * s / t)``, voxel ``o`` samples input
                    index ``(o - (m-1)/2) * t/s + (n-1)/2``; the peers are given
                    exactly that grid).

The reference holds zeros (uint8); only its header matters.  The tools:

* ``bigresample`` -- ``python -m bigresample in.nii OUT (--reference ref.nii | --spacing X Y Z --grid center)
                     --order K --quiet`` (block by block, its default threads: one per core;
                     its package byte-compiled first, as ``pip install`` leaves it)
* ``scipy``       -- nibabel ``np.asanyarray(img.dataobj)`` + one
                     ``scipy.ndimage.affine_transform(data, matrix, offset, output_shape,
                     order=K, mode="nearest", output=float32)`` on the whole array
                     (one core) + nibabel save: the result bigresample promises
                     to equal.  ``matrix, offset`` map an output index to an
                     input index: ``np.linalg.solve(A_in, A_ref)`` from the
                     affines as stored, or the ``center`` grid's diagonal.
* ``simpleitk``   -- ``sitk.ReadImage`` + ``sitk.Resample`` onto the reference
                     image (or onto size, spacing, origin and direction of the
                     ``center`` grid) with the identity transform (nearest
                     neighbour, linear, cubic B-spline), 2 threads
                     (``ProcessObject_SetGlobalDefaultNumberOfThreads(2)``) +
                     ``sitk.WriteImage``
* ``ngff-zarr``   -- ``ngff_zarr.resample`` (ITK's interpolators compiled to
                     WebAssembly, run by ``itkwasm-downsample`` on dask blocks):
                     the ``.nii`` is read through nibabel's memory map (as
                     ``ngff_zarr.nibabel_image_to_ngff_image`` reads it) into a
                     dask array of ``--ngff-chunks`` chunks (128: OME-Zarr's
                     default for 3D), the moving and fixed images are
                     ``NgffImage`` s in (z, y, x) order without orientation, the
                     transform an RFC-5 ``Affine`` (rotated) or ``Identity``
                     (spacing change, the fixed grid placed on the ``center``
                     grid), interpolators ``nearest_neighbor`` / ``linear`` /
                     ``b_spline``; the result is ``dask.array.store``-d with 2
                     threads into a memory-mapped ``.nii`` (no OME-Zarr
                     conversion: file in to file out like the others).

Every tool runs as a separate subprocess, timed and memory-polled by
``bench_speed.measure``: wall time is ``time.perf_counter()`` around the whole
subprocess (interpreter start-up, imports, JIT or WebAssembly compilation
count); peak RSS is the largest sum of RSS over the process tree, polled every
~10 ms with psutil and raised to any one process's VmHWM.  RSS counts
file-backed pages a process maps (nibabel memory-maps the uncompressed input).

Each order gets one warm-up run per tool first (so the page cache holds the
input); the warm-up outputs are then compared, read back with nibabel, with
scipy's as ``max |a - b| / (max - min of the input)``, over all voxels and over
the "interior": output voxels whose sample point lies at least 8 input voxels
inside every face of the input.  For bigresample this is the correctness check
(~1e-7 at most, float32 rounding; orders 0 and 1 exact by construction).  For
SimpleITK and ngff-zarr only for information: they are not the same
computation -- outside the input they write 0 where scipy's ``mode="nearest"``
repeats the edge (so over all voxels the difference is about the whole value
range on a rotated grid), ITK prefilters B-splines with mirror boundaries
(ngff-zarr on a block padded by 16 voxels), and ITK computes sample points in
its own arithmetic and rounds nearest-neighbour half-way ties its own way.

Then ``--repeats`` timed rounds run, the tool order rotated each round so that
noise on a shared machine hits every tool alike.  Tools named in ``--once``
are not repeated: their warm-up run, made after the earlier tools' warm-ups
(input in the page cache), is their one timed run; the table's ``runs`` column
says so (``--once scipy ngff-zarr`` saves most of the time at full size and
keeps the exactness check).  ``--baseline DIR`` adds ``bigresample-base``: the
same command run from another source tree (``PYTHONPATH=DIR``), so that two
versions are timed side by side in one run.  ``--workers 1 2`` runs each
bigresample tool once per value (``bigresample@1``, ``bigresample@2``, with
``--workers N``; the ratio to the base is to the base on as many workers).  Speed is reported as ratios to
SimpleITK and to scipy measured in the same run; absolute times are for
orientation only.

How to run
----------
From the repository root, with the ``bench`` extra installed::

    python benchmarks/bench_reference.py                        # default case, 3 repeats
    python benchmarks/bench_reference.py --case rotated         # 512x512x300 onto the same grid rotated 15/7 deg
    python benchmarks/bench_reference.py --case every-axis --once scipy ngff-zarr
    git archive main | tar -x -C /tmp/base && \
        python benchmarks/bench_reference.py --case rotated --baseline /tmp/base --tools bigresample simpleitk scipy
    python benchmarks/bench_reference.py --case rotated --shape 96 96 64 --repeats 1   # a quick try
    python benchmarks/bench_reference.py --case rotated --fallback --tools bigresample scipy   # the fallback beside
    python benchmarks/bench_reference.py --case pil --workers 1 2 --baseline /tmp/base --tools bigresample --orders 1

The report (markdown) goes to stdout, progress to stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # the shared measuring helpers live beside this file
    sys.path.insert(0, str(HERE))

from bench_speed import (  # noqa: E402  (puts the repo on sys.path)
    Cell, Run, _version, header_lines, log, measure, remove, report_run, subprocess_env,
)

SPACING = 0.1  # mm, isotropic input
ORIGIN = (-17.35, 4.8, 22.6)  # mm, world position of input voxel (0, 0, 0)
ROTATION = ((2, 15.0), (0, 7.0))  # (axis, degrees): about z, then about x
MARGIN = 8  # input voxels from every face: the "interior" of the comparisons
TOOLS = ("bigresample", "scipy", "simpleitk", "ngff-zarr")
BASE = "bigresample-base"  # another version of bigresample (--baseline), run side by side
FALLBACK = "bigresample-fallback"  # bigresample on its pure-Python fallback (--fallback): BIGRESAMPLE_KERNEL=python
SLAB = 16  # z planes per slab when writing the input and comparing outputs


@dataclass(frozen=True)
class Case:
    """One job: input shape and either a rotated reference (``ref_spacing``) or a spacing change (``spacing``);
    with ``axes``, the reference is not rotated but the input's axes permuted and flipped: reference axis ``j``
    along input axis ``axes[j]``, the other way where ``flips[j]``, ``ref_shape`` voxels, centred on the input."""

    shape: tuple[int, int, int]
    ref_spacing: tuple[float, float, float] | None = None  # mm: onto a rotated reference grid
    spacing: tuple[float, float, float] | None = None  # mm: bigresample --spacing, center grid
    axes: tuple[int, int, int] | None = None
    flips: tuple[bool, bool, bool] = (False, False, False)
    ref_shape: tuple[int, int, int] | None = None


CASES = {
    "default": Case((384, 384, 256), ref_spacing=(0.12, 0.12, 0.15)),
    "rotated": Case((512, 512, 300), ref_spacing=(SPACING,) * 3),
    "every-axis": Case((512, 512, 300), spacing=(0.13, 0.07, 0.15)),
    # issue 34: a P-I-L reference (x, y, z flipped, axes permuted (y, z, x)) at 0.2 mm, the aligned
    # grid's voxel count; the same with the input's extent; the aligned 0.2 mm grid they are measured against
    "pil": Case((512, 512, 300), ref_spacing=(0.2,) * 3, axes=(1, 2, 0), flips=(True,) * 3, ref_shape=(256, 256, 150)),
    "pil-extent": Case((512, 512, 300), ref_spacing=(0.2,) * 3, axes=(1, 2, 0), flips=(True,) * 3,
                       ref_shape=(256, 150, 256)),
    "aligned-0.2": Case((512, 512, 300), ref_spacing=(0.2,) * 3, axes=(0, 1, 2), ref_shape=(256, 256, 150)),
}

# --------------------------------------------------------------------------- #
# The peers, as small scripts run by the same interpreter:                    #
#   python SCRIPT IN GRID_JSON OUT ORDER                                      #
# GRID_JSON: {"shape", "matrix", "offset", "affine", "reference"}: output      #
# index o samples input index matrix @ o + offset; "reference" is the          #
# reference image's path or null (a spacing change).                           #
# --------------------------------------------------------------------------- #

SCIPY_SCRIPT = '''\
"""scipy whole-array: one affine_transform on the whole volume (one core)."""
import json
import sys
import nibabel as nib
import numpy as np
from scipy import ndimage

src, grid, dst, order = sys.argv[1], json.load(open(sys.argv[2])), sys.argv[3], int(sys.argv[4])
data = np.asanyarray(nib.load(src).dataobj)
out = ndimage.affine_transform(data, np.array(grid["matrix"]), np.array(grid["offset"]),
                               output_shape=tuple(grid["shape"]), order=order, mode="nearest", output=np.float32)
nib.save(nib.Nifti1Image(out, np.array(grid["affine"])), dst)
'''

SITK_SCRIPT = '''\
"""SimpleITK, 2 threads: ReadImage, Resample onto the reference (or the center grid), WriteImage."""
import json
import sys
import SimpleITK as sitk

src, grid, dst, order = sys.argv[1], json.load(open(sys.argv[2])), sys.argv[3], int(sys.argv[4])
sitk.ProcessObject_SetGlobalDefaultNumberOfThreads(2)
interpolator = {0: sitk.sitkNearestNeighbor, 1: sitk.sitkLinear, 3: sitk.sitkBSpline}[order]  # cubic B-spline
img = sitk.ReadImage(src)
if grid["reference"]:
    out = sitk.Resample(img, sitk.ReadImage(grid["reference"]), sitk.Transform(), interpolator, 0.0,
                        sitk.sitkFloat32)
else:  # the center grid: spacing s * t/s, first voxel at input index offset, the input's direction
    ratios = [grid["matrix"][k][k] for k in range(3)]
    out = sitk.Resample(img, grid["shape"], sitk.Transform(), interpolator,
                        img.TransformContinuousIndexToPhysicalPoint(grid["offset"]),
                        [s * r for s, r in zip(img.GetSpacing(), ratios)], img.GetDirection(), 0.0,
                        sitk.sitkFloat32)
sitk.WriteImage(out, dst)
'''

NGFF_SCRIPT = '''\
"""ngff-zarr: resample (ITK in WebAssembly on dask blocks), nibabel memory map in, memory-mapped .nii out."""
import json
import sys
import dask
import dask.array as da
import nibabel as nib
import numpy as np
from ngff_zarr import NgffImage, resample
from ngff_zarr.v06.zarr_metadata import Affine, Identity

src, grid, dst, order = sys.argv[1], json.load(open(sys.argv[2])), sys.argv[3], int(sys.argv[4])
chunks = int(sys.argv[5])
DIMS = ("z", "y", "x")  # OME-Zarr order: the C-order view of a NIfTI's (x, y, z) Fortran-order data


def zyx(v):
    return {d: float(x) for d, x in zip(DIMS, list(v)[::-1])}


img = nib.load(src)
a_in = img.affine
s_in = np.linalg.norm(a_in[:3, :3], axis=0)
moving = NgffImage(data=da.from_array(np.asanyarray(img.dataobj).T, chunks=chunks), dims=DIMS,
                   scale=zyx(s_in), translation=zyx(a_in[:3, 3]))
shape, m, off = tuple(grid["shape"]), np.array(grid["matrix"]), np.array(grid["offset"])
target = da.zeros(shape[::-1], chunks=chunks, dtype=np.float32)  # geometry only: never computed
if grid["reference"]:  # fixed point p = output index; moving point = A_in(m @ p + offset), in (z, y, x)
    fixed = NgffImage(data=target, dims=DIMS, scale=zyx(np.ones(3)), translation=zyx(np.zeros(3)))
    matrix, shift = np.diag(s_in) @ m, a_in[:3, 3] + s_in * off  # (x, y, z)
    transform = Affine(affine=np.hstack([matrix[::-1, ::-1], shift[::-1, None]]).tolist())
else:  # the center grid itself, identity transform
    fixed = NgffImage(data=target, dims=DIMS, scale=zyx(s_in * np.diag(m)), translation=zyx(a_in[:3, 3] + s_in * off))
    transform = Identity()
out = resample(transform, fixed, moving, interpolator={0: "nearest_neighbor", 1: "linear", 3: "b_spline"}[order])

hdr = nib.Nifti1Header()
hdr.set_data_shape(shape)
hdr.set_data_dtype(np.float32)
hdr.set_qform(np.array(grid["affine"]), 1)
hdr.set_sform(np.array(grid["affine"]), 1)
hdr.set_data_offset(352)
with open(dst, "wb") as f:
    f.write(hdr.binaryblock + bytes(4))
    f.truncate(352 + 4 * int(np.prod(shape)))
mm = np.memmap(dst, dtype=np.float32, mode="r+", offset=352, shape=shape, order="F")
with dask.config.set(scheduler="threads", num_workers=2):
    da.store(out.data, mm.T, lock=False)
mm.flush()
'''

SCRIPTS = {"scipy": ("scipy_affine.py", SCIPY_SCRIPT), "simpleitk": ("sitk_resample.py", SITK_SCRIPT),
           "ngff-zarr": ("ngff_zarr_resample.py", NGFF_SCRIPT)}


# --------------------------------------------------------------------------- #
# Input, grids and commands                                                   #
# --------------------------------------------------------------------------- #


def rotation(axis: int, degrees: float) -> np.ndarray:
    """3x3 rotation by ``degrees`` about world axis ``axis`` (0 x, 1 y, 2 z)."""
    t = np.radians(degrees)
    c, s = np.cos(t), np.sin(t)
    r = np.eye(3)
    i, j = [k for k in range(3) if k != axis]
    r[i, i], r[i, j], r[j, i], r[j, j] = c, -s, s, c
    return r


def input_affine() -> np.ndarray:
    a = np.diag([SPACING, SPACING, SPACING, 1.0])
    a[:3, 3] = ORIGIN
    return a


def reference_geometry(shape, a_in, ref_spacing) -> tuple[tuple[int, ...], np.ndarray]:
    """(shape, affine) of the reference: the input's axes rotated about its centre,
    ``ref_spacing``, as many voxels as span the input's extent along each axis."""
    rot = np.eye(3)
    for axis, degrees in ROTATION:
        rot = rotation(axis, degrees) @ rot
    centre = a_in[:3, :3] @ ((np.array(shape) - 1) / 2) + a_in[:3, 3]
    ref_shape = tuple(max(1, int(round(n * SPACING / s))) for n, s in zip(shape, ref_spacing))
    a_ref = np.eye(4)
    a_ref[:3, :3] = rot @ np.diag(ref_spacing)
    a_ref[:3, 3] = centre - a_ref[:3, :3] @ ((np.array(ref_shape) - 1) / 2)
    return ref_shape, a_ref


def permuted_geometry(shape, a_in, case: Case) -> tuple[tuple[int, ...], np.ndarray]:
    """(shape, affine) of a reference whose axes permute and flip the input's (``Case.axes``, ``flips``),
    ``ref_spacing``, ``ref_shape`` voxels (or the input's extent), centred on the input's centre."""
    centre = a_in[:3, :3] @ ((np.array(shape) - 1) / 2) + a_in[:3, 3]
    ref_shape = case.ref_shape or tuple(max(1, int(round(shape[i] * SPACING / s)))
                                        for i, s in zip(case.axes, case.ref_spacing))
    a_ref = np.zeros((4, 4))
    a_ref[3, 3] = 1.0
    for j, (i, flip, s) in enumerate(zip(case.axes, case.flips, case.ref_spacing)):
        a_ref[i, j] = -s if flip else s
    a_ref[:3, 3] = centre - a_ref[:3, :3] @ ((np.array(ref_shape) - 1) / 2)
    return tuple(ref_shape), a_ref


def center_grid(in_shape, a_in, spacing) -> dict:
    """bigresample's ``center`` grid for ``--spacing`` (docs/grids-and-exactness.md), from the stored affine."""
    n = np.array(in_shape, dtype=float)
    s = np.linalg.norm(a_in[:3, :3], axis=0)
    r = np.array(spacing) / s
    m = np.array([max(1, int(round(k * (si / ti)))) for k, si, ti in zip(in_shape, s, spacing)])
    offset = -(m - 1) / 2 * r + (n - 1) / 2
    affine = a_in.copy()
    affine[:3, :3] = a_in[:3, :3] * r
    affine[:3, 3] = a_in[:3, :3] @ offset + a_in[:3, 3]
    return {"shape": m.tolist(), "matrix": np.diag(r).tolist(), "offset": offset.tolist(),
            "affine": affine.tolist(), "reference": None}


def smooth_slab(shape, a_in, z0: int, z1: int) -> np.ndarray:
    """Planes ``z0:z1`` of the smooth test volume, float32 (X, Y, dz), values ~0-1000."""
    x, y, z = (a_in[k, k] * np.arange(lo, hi) + a_in[k, 3]
               for k, (lo, hi) in enumerate(((0, shape[0]), (0, shape[1]), (z0, z1))))
    X, Y, Z = x[:, None, None], y[None, :, None], z[None, None, :]
    tau = 2 * np.pi
    v = (500
         + 250 * np.cos(tau * X / 7.3 + 0.4) * np.cos(tau * Y / 9.1)
         + 150 * np.sin(tau * Y / 4.7 + 1.1) * np.cos(tau * Z / 6.2)
         + 60 * np.cos(tau * X / 3.9 - 0.7) * np.sin(tau * Z / 5.3 + 0.2)
         + 40 * np.sin(tau * X / 2.6) * np.sin(tau * Y / 3.1) * np.cos(tau * Z / 2.9))
    return np.broadcast_to(v, (len(x), len(y), len(z))).astype(np.float32)


def nifti_header(shape, affine, dtype) -> nib.Nifti1Header:
    hdr = nib.Nifti1Header()
    hdr.set_data_shape(shape)
    hdr.set_data_dtype(dtype)
    hdr.set_qform(affine, 1)
    hdr.set_sform(affine, 1)
    hdr.set_xyzt_units("mm")
    return hdr


def make_inputs(workdir: Path, case: Case, shape) -> tuple[Path, Path, float]:
    """Write ``in.nii`` (slab by slab, never whole) and ``grid.json`` (and ``ref.nii`` for a reference case);
    (input, grid, input value range).  The grid is computed from the affines as stored in the files."""
    from bigresample.nifti import NiftiWriter

    t0 = time.perf_counter()
    a_in = input_affine()
    src = workdir / "in.nii"
    lo, hi = np.inf, -np.inf
    with NiftiWriter(src, nifti_header(shape, a_in, np.float32)) as w:
        for z0 in range(0, shape[2], SLAB):
            slab = smooth_slab(shape, a_in, z0, min(z0 + SLAB, shape[2]))
            lo, hi = min(lo, float(slab.min())), max(hi, float(slab.max()))
            w.write(slab)
    a_stored = nib.load(src).affine
    if case.ref_spacing is not None:
        ref_shape, a_ref = (permuted_geometry(shape, a_in, case) if case.axes is not None
                            else reference_geometry(shape, a_in, case.ref_spacing))
        ref = workdir / "ref.nii"
        nib.save(nib.Nifti1Image(np.zeros(ref_shape, np.uint8), None, nifti_header(ref_shape, a_ref, np.uint8)), ref)
        m = np.linalg.solve(a_stored, nib.load(ref).affine)  # output index -> input index, as every tool reads it
        grid = {"shape": list(ref_shape), "matrix": m[:3, :3].tolist(), "offset": m[:3, 3].tolist(),
                "affine": nib.load(ref).affine.tolist(), "reference": str(ref)}
    else:
        grid = center_grid(shape, a_stored, case.spacing)
    grid_path = workdir / "grid.json"
    grid_path.write_text(json.dumps(grid))
    log(f"made {src} ({src.stat().st_size / 1e6:.1f} MB) and {grid_path} in {time.perf_counter() - t0:.1f} s")
    return src, grid_path, hi - lo


def write_scripts(workdir: Path) -> dict[str, Path]:
    paths = {}
    for tool, (name, text) in SCRIPTS.items():
        paths[tool] = workdir / name
        paths[tool].write_text(text)
    return paths


def tool_command(tool: str, src: Path, grid_path: Path, dst: Path, order: int, scripts: dict[str, Path],
                 case: Case, ngff_chunks: int) -> list[str]:
    tool, _, workers = tool.partition("@")
    if tool in ("bigresample", BASE, FALLBACK):
        grid = json.loads(grid_path.read_text())
        target = (["--reference", grid["reference"]] if grid["reference"]
                  else ["--spacing", *map(str, case.spacing), "--grid", "center"])
        # -P: no current folder first on sys.path, so that PYTHONPATH chooses the version (a checkout runs from it)
        return [sys.executable, "-P", "-m", "bigresample", str(src), str(dst), *target, "--order", str(order),
                "--quiet", *(["--workers", workers] if workers else [])]
    extra = [str(ngff_chunks)] if tool == "ngff-zarr" else []
    return [sys.executable, str(scripts[tool]), str(src), str(grid_path), str(dst), str(order), *extra]


# --------------------------------------------------------------------------- #
# Comparing outputs                                                            #
# --------------------------------------------------------------------------- #


def sample_points(src: Path, grid_path: Path):
    """(input shape, 3x3 matrix, offset): output index ``o`` samples input index ``matrix @ o + offset``."""
    grid = json.loads(grid_path.read_text())
    return nib.load(src).shape[:3], np.array(grid["matrix"]), np.array(grid["offset"])


def interior(points, out_shape, z0: int, z1: int, margin: int = MARGIN) -> np.ndarray:
    """Mask of the output planes ``z0:z1`` whose sample point is >= ``margin`` voxels inside the input."""
    in_shape, m, off = points
    i, j, k = (np.arange(n, dtype=np.float64) for n in (out_shape[0], out_shape[1], z1 - z0))
    i, j, k = i[:, None, None], j[None, :, None], (k + z0)[None, None, :]
    inside = np.ones((len(i), j.shape[1], k.shape[2]), dtype=bool)
    for a in range(3):
        c = m[a, 0] * i + m[a, 1] * j + m[a, 2] * k + off[a]
        inside &= (c >= margin) & (c <= in_shape[a] - 1 - margin)
    return inside


def interior_fraction(points, out_shape, margin: int = MARGIN) -> float:
    """Fraction of the output voxels whose sample point is >= ``margin`` voxels inside the input."""
    n = sum(int(interior(points, out_shape, z0, min(z0 + SLAB, out_shape[2]), margin).sum())
            for z0 in range(0, out_shape[2], SLAB))
    return n / float(np.prod(out_shape))


def compare(a: Path, b: Path, points, value_range: float) -> tuple[float, float, str]:
    """(max |a - b| / range over all voxels, the same over the interior, a note if the grids differ)."""
    img_a, img_b = nib.load(a), nib.load(b)
    if img_a.shape != img_b.shape:
        return np.nan, np.nan, f"shapes differ: {img_a.shape} vs {img_b.shape}"
    note = "" if np.allclose(img_a.affine, img_b.affine, atol=1e-4) else "affines differ by > 1e-4"
    shape = img_a.shape[:3]
    worst = worst_inside = 0.0
    for z0 in range(0, shape[2], SLAB):
        z1 = min(z0 + SLAB, shape[2])
        a_slab, b_slab = (np.asarray(img.dataobj[..., z0:z1], np.float64) for img in (img_a, img_b))
        d = np.abs(a_slab - b_slab)
        worst = float(np.maximum(worst, d.max()))  # np.maximum, unlike max(), keeps a NaN
        inside = d[interior(points, shape, z0, z1)]
        if inside.size:
            worst_inside = float(np.maximum(worst_inside, inside.max()))
    return worst / value_range, worst_inside / value_range, note


def compare_outputs(outputs: dict[str, Path], points, value_range: float) -> dict:
    """{tool: (all, interior, note)}: every tool's output against scipy's."""
    diffs = {}
    if "scipy" not in outputs:
        return diffs
    for tool, path in outputs.items():
        if tool != "scipy":
            whole, inside, note = compare(path, outputs["scipy"], points, value_range)
            diffs[tool] = (whole, inside, note)
            log(f"    {tool} vs scipy: max |diff| / range {whole:.1e} (interior {inside:.1e})"
                + (f" -- {note}" if note else ""))
    return diffs


# --------------------------------------------------------------------------- #
# Report                                                                       #
# --------------------------------------------------------------------------- #


def _diff_text(d, which: int) -> str:
    if d is None:
        return "-"
    return f"{d[which]:.1e}" + (f" ({d[2]})" if d[2] and which == 0 else "")


def results_table(cells: dict, diffs: dict, orders, tools, skipped: dict) -> list[str]:
    kinds = {t.partition("@")[0] for t in tools}
    peers = ([("simpleitk", "SimpleITK"), ("scipy", "scipy")] + ([(BASE, "base")] if BASE in kinds else [])
             + ([("bigresample", "bigresample")] if FALLBACK in kinds else []))
    rows = [
        "| order | tool | runs | median wall (s) | min wall (s) | median peak RSS (MiB) | "
        + "".join(f"time / {name} | " for _, name in peers)
        + "max\\|Δ\\|/range vs scipy | vs scipy: interior |",
        "|---:|---|---:|---:|---:|---:|" + "---:|" * (len(peers) + 2),
    ]
    dashes = " - |" * (len(peers) + 2)

    def ratio(t, peer):
        if "@" in tool and peer in ("bigresample", BASE):  # the same number of workers
            peer += tool[tool.index("@"):]
        ref = cells[order].get(peer)
        ref_t = ref.median_time() if ref else None
        return f"{t / ref_t:.2f}" if ref_t else "-"

    for order in orders:
        for tool in tools:
            if tool in skipped:
                rows.append(f"| {order} | {tool} | n/a | n/a ({skipped[tool]}) | - | - |{dashes}")
                continue
            cell = cells[order][tool]
            t = cell.median_time()
            if t is None:
                rows.append(f"| {order} | {tool} | {len(cell.runs)} | error | error | error |{dashes}")
                continue
            d = diffs[order].get(tool)
            rows.append(f"| {order} | {tool} | {len(cell.good)} | {t:.2f} | {cell.min_time():.2f} "
                        f"| {cell.median_rss():.0f} | " + "".join(f"{ratio(t, peer)} | " for peer, _ in peers)
                        + f"{_diff_text(d, 0)} | {_diff_text(d, 1)} |")
    return rows


# --------------------------------------------------------------------------- #
# The benchmark                                                               #
# --------------------------------------------------------------------------- #


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--case", choices=sorted(CASES), default="default",
                   help="the job (default: default; see above)")
    p.add_argument("--workdir", type=Path,
                   help="folder for the input, grid, outputs and tool scripts (default: a fresh folder "
                        "under /tmp, deleted at the end)")
    p.add_argument("--shape", nargs=3, type=int, metavar=("X", "Y", "Z"),
                   help="input shape in voxels at 0.1 mm (default: the case's)")
    p.add_argument("--orders", nargs="+", type=int, default=[0, 1, 3], choices=(0, 1, 3),
                   help="spline orders (default 0 1 3)")
    p.add_argument("--tools", nargs="+", choices=TOOLS, default=list(TOOLS),
                   help="tools to run (default: all; scipy is the reference the others are compared with)")
    p.add_argument("--once", nargs="*", choices=(*TOOLS, BASE, FALLBACK), default=[],
                   help="tools timed by their warm-up run only, not repeated (default: none)")
    p.add_argument("--fallback", action="store_true",
                   help="adds the tool bigresample-fallback: the same command with BIGRESAMPLE_KERNEL=python (the "
                        "pure-Python fallback that runs without the compiled kernel)")
    p.add_argument("--baseline", type=Path, metavar="DIR",
                   help="a source tree of another bigresample version (e.g. git archive COMMIT | tar -x -C DIR): "
                        "adds the tool bigresample-base, the same command with PYTHONPATH=DIR")
    p.add_argument("--workers", type=int, nargs="+", default=None,
                   help="run bigresample (and the baseline) once per value, with --workers N (tools NAME@N)")
    p.add_argument("--repeats", type=int, default=3, help="timed rounds (default 3)")
    p.add_argument("--ngff-chunks", type=int, default=128, help="ngff-zarr's dask chunk edge (default 128)")
    p.add_argument("--timeout", type=float, default=3600.0, help="seconds before a run is killed (default 3600)")
    p.add_argument("--keep", action="store_true", help="keep the work folder (input, reference, scripts)")
    args = p.parse_args(argv)
    if args.repeats < 1:
        p.error("--repeats must be >= 1")
    if args.shape is not None and min(args.shape) < 1:
        p.error("--shape values must be >= 1")
    return args


def base_env(args) -> dict:
    return dict(subprocess_env(), PYTHONPATH=str(args.baseline.resolve()))


def imported_from(env: dict | None) -> str:
    """The bigresample package (folder and git commit if known) a tool's subprocess imports."""
    code = "import bigresample, pathlib; print(pathlib.Path(bigresample.__file__).parent.parent)"
    folder = subprocess.run([sys.executable, "-P", "-c", code], env=env or subprocess_env(), capture_output=True,
                            text=True).stdout.strip()
    commit = subprocess.run(["git", "-C", folder, "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    return f"{folder}" + (f" (git {commit})" if commit else "")


def byte_compile(env: dict | None) -> None:
    """Byte-compile the bigresample package a tool's subprocess imports, as
    ``pip install`` does for an installed package (a checkout's stale or
    missing ``.pyc`` files cost each run ~0.07 s of compiling where
    ``PYTHONDONTWRITEBYTECODE`` is set, as on the machine of the README's
    figures)."""
    code = "import bigresample, compileall, pathlib; compileall.compile_dir(pathlib.Path(bigresample.__file__).parent, quiet=1)"
    subprocess.run([sys.executable, "-P", "-c", code], env=env or subprocess_env(), check=True)


def load_text() -> str:
    return ", ".join(f"{x:.1f}" for x in os.getloadavg())


def unavailable(tools) -> dict[str, str]:
    """{tool: why it cannot run here} for peers that do not import."""
    skipped = {}
    for tool, module in (("simpleitk", "SimpleITK"), ("ngff-zarr", "ngff_zarr")):
        if tool in tools:
            try:
                __import__(module)
            except ImportError as exc:
                skipped[tool] = f"not installed: {exc}"
    return skipped


def warm_up(cells, orders, tools, once, run_tool, workdir, points, value_range) -> dict:
    """One run per tool and order (the timed run of ``--once`` tools); compare the outputs with scipy's.
    {order: {tool: (all, interior, note)}}."""
    diffs = {}
    for order in orders:
        outputs = {}
        for tool in tools:
            dst = workdir / f"out_{tool}.nii"
            run = run_tool(tool, dst, order)
            report_run(f"[warm-up] order {order} {tool}", run)
            if run.ok:
                outputs[tool] = dst
            if not run.ok or tool in once:
                cells[order][tool].runs.append(run)  # a failure is reported as such; a --once tool's only run
            if not run.ok:
                remove(dst)
        diffs[order] = compare_outputs(outputs, points, value_range)
        for dst in outputs.values():
            remove(dst)
    return diffs


def describe(case_name: str, case: Case, shape, grid: dict, points, args, tools) -> str:
    out_shape = grid["shape"]
    once = [t for t in args.once if t in tools]
    if case.axes is not None:
        target = (f"reference {'x'.join(map(str, out_shape))} at {' x '.join(map(str, case.ref_spacing))} mm, "
                  f"its axis j along input axis {case.axes}[j], flipped {case.flips}")
    elif case.ref_spacing is not None:
        rotation_text = ", then ".join(f"{deg:g} deg about {'xyz'[axis]}" for axis, deg in ROTATION)
        target = (f"reference {'x'.join(map(str, out_shape))} at {' x '.join(map(str, case.ref_spacing))} mm, "
                  f"rotated {rotation_text} around the input's centre")
    else:
        target = (f"{' x '.join(map(str, case.spacing))} mm (--spacing, center grid), "
                  f"{'x'.join(map(str, out_shape))}")
    return (f"Case {case_name}: input {'x'.join(map(str, shape))} float32 at {SPACING} mm, origin {ORIGIN} mm "
            f"-> {target}; of the output voxels, {1 - interior_fraction(points, out_shape, 0):.0%} sample outside "
            f"the input and {interior_fraction(points, out_shape):.0%} >= {MARGIN} input voxels inside every "
            f"face (the interior); {args.repeats} timed repeat(s) after 1 warm-up"
            + (f" ({', '.join(once)}: the warm-up only)" if once else "")
            + f"; ngff-zarr {_version('ngff-zarr')}, itkwasm-downsample {_version('itkwasm-downsample')}, "
            f"chunks {args.ngff_chunks}; work folder {args.workdir}\n")


def timed_rounds(cells, orders, tools, once, run_tool, workdir, repeats: int) -> None:
    repeated = [t for t in tools if t not in once]
    dst = workdir / "out.nii"
    for rep in range(repeats):
        for order in orders:
            k = rep % max(1, len(repeated))
            for tool in repeated[k:] + repeated[:k]:
                run = run_tool(tool, dst, order)
                remove(dst)
                report_run(f"[{rep + 1}/{repeats}] order {order} {tool}", run)
                cells[order][tool].runs.append(run)


def main(argv=None) -> int:
    args = parse_args(argv)
    case = CASES[args.case]
    orders = list(dict.fromkeys(args.orders))
    skipped = unavailable(args.tools)
    tools = [t for t in TOOLS if t in args.tools and t not in skipped]
    if args.baseline is not None:
        tools.insert(1, BASE)
    if args.fallback:
        tools.insert(1, FALLBACK)
    if args.workers:  # each bigresample tool once per --workers value, side by side
        tools = [f"{t}@{w}" if t in ("bigresample", BASE, FALLBACK) else t
                 for t in tools for w in (args.workers if t in ("bigresample", BASE, FALLBACK) else [None])]
    created = args.workdir is None
    workdir = Path(tempfile.mkdtemp(prefix="bench_reference_", dir="/tmp")) if created else args.workdir
    workdir.mkdir(parents=True, exist_ok=True)
    args.workdir = workdir

    print("\n".join(header_lines("bench_reference")[:-1]), flush=True)
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    print(f"- load average at start (1, 5, 15 min): {load_text()}; {when}\n", flush=True)
    shape = tuple(args.shape or case.shape)
    try:
        src, grid_path, value_range = make_inputs(workdir, case, shape)
        scripts = write_scripts(workdir)
        points = sample_points(src, grid_path)
        print(describe(args.case, case, shape, json.loads(grid_path.read_text()), points, args, tools), flush=True)

        for tool in dict.fromkeys(t.partition("@")[0] for t in tools if t.partition("@")[0] in ("bigresample", BASE)):
            env = base_env(args) if tool == BASE else None
            byte_compile(env)
            print(f"- {tool} runs {imported_from(env)}, byte-compiled", flush=True)
        print(flush=True)

        def run_tool(tool: str, dst: Path, order: int) -> Run:
            cmd = tool_command(tool, src, grid_path, dst, order, scripts, case, args.ngff_chunks)
            tool = tool.partition("@")[0]
            env = base_env(args) if tool == BASE else dict(subprocess_env(), BIGRESAMPLE_KERNEL="python") \
                if tool == FALLBACK else None
            return measure(cmd, workdir, args.timeout, env)

        cells = {order: {t: Cell() for t in tools} for order in orders}
        once = set(args.once)
        diffs = warm_up(cells, orders, tools, once, run_tool, workdir, points, value_range)
        timed_rounds(cells, orders, tools, once, run_tool, workdir, args.repeats)

        print("## Wall time, peak RSS (median of the runs) and agreement with scipy (warm-up outputs)\n")
        print("\n".join(results_table(cells, diffs, orders, [*tools, *skipped], skipped)))
        print(f"\nmax|Δ|/range: largest absolute difference from scipy's output over the input's value range "
              f"({value_range:.1f}); bigresample should equal scipy.  SimpleITK and ngff-zarr (ITK) are a "
              "different computation (0 outside the input, mirror-boundary B-spline prefilter, near-ties of "
              f"nearest neighbour rounded their own way); the interior is the output voxels sampled >= {MARGIN} "
              "input voxels inside every face.")
        print(f"\nLoad average at the end (1, 5, 15 min): {load_text()} on {os.cpu_count()} cores: the machine is "
              "shared; ratios within a run are the figures to read.")
        failures = [(order, tool) for order in orders for tool, cell in cells[order].items() if cell.failed]
        if failures:
            print("\nFailed runs: " + ", ".join(f"{tool} order {order}" for order, tool in failures))
        return 1 if failures else 0
    finally:
        if created and not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
        elif created:
            log(f"kept {workdir}")


if __name__ == "__main__":
    sys.exit(main())
