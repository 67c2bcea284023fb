"""Resampling onto a rotated reference grid (``--reference``): bigresample against
a whole-array scipy call and SimpleITK, file in to file out.

What it measures
----------------
A smooth float32 volume (default 384x384x256 at 0.1 mm isotropic, origin away
from zero; a sum of products of 1-D cosines with wavelengths of 2.6-9 mm,
written slab by slab as ``in.nii``) is resampled onto the grid of a reference
image ``ref.nii``: the input's axes rotated by 15 degrees about z, then 7
degrees about x, around the input's centre, spacing 0.12 x 0.12 x 0.15 mm, and
the shape that spans the input's field of view (default 320x320x171).  The
reference holds zeros (uint8); only its header matters.  Spline orders 0, 1
and 3, by

* ``bigresample`` -- ``python -m bigresample in.nii OUT --reference ref.nii --order K --quiet``
                     (block by block, all cores)
* ``scipy``       -- nibabel ``np.asanyarray(img.dataobj)`` + one
                     ``scipy.ndimage.affine_transform(data, np.linalg.solve(A_in, A_ref),
                     output_shape=ref_shape, order=K, mode="nearest", output=float32)``
                     on the whole array (one core) + nibabel save: the result
                     bigresample promises to equal
* ``simpleitk``   -- ``sitk.ReadImage`` of input and reference +
                     ``sitk.Resample(img, ref, sitk.Transform(), interpolator, 0.0, sitk.sitkFloat32)``
                     (nearest neighbour, linear, cubic B-spline; all cores) + ``sitk.WriteImage``

Every tool runs as a separate subprocess, timed and memory-polled by
``bench_speed.measure``: wall time is ``time.perf_counter()`` around the whole
subprocess (interpreter start-up and imports count); peak RSS is the largest
sum of RSS over the process tree, polled every ~10 ms with psutil and raised to
any one process's VmHWM.  RSS counts file-backed pages a process maps (nibabel
memory-maps the uncompressed input).

Each order gets one untimed warm-up run per tool first (so the page cache
holds the input); the warm-up outputs are then compared, read back with
nibabel, as ``max |a - b| / (max - min of the input)``:

* bigresample against scipy: the correctness check (it should be ~1e-7, float32
  rounding; order 0 and 1 are exact by construction);
* bigresample and scipy against SimpleITK, only for information.  SimpleITK is
  not the same computation: outside the input it writes the default value 0
  where scipy's ``mode="nearest"`` repeats the edge (so over all voxels the
  difference is about the whole value range), its B-spline prefilter uses
  mirror boundaries, and it computes the sample points in its own arithmetic,
  so a nearest-neighbour sample point within ~1e-6 voxel of a half-way tie may
  round to the other neighbour.  So the difference is given over all voxels and
  over the "interior": output voxels whose sample point lies at least 8 input
  voxels inside every face of the input, where only interpolation differs.

Then ``--repeats`` timed rounds run, the tool order rotated each round so that
noise on a shared machine hits every tool alike.  Speed is reported as ratios to
SimpleITK and to scipy measured in the same run; absolute times are for
orientation only.

How to run
----------
From the repository root, with the ``bench`` extra installed::

    python benchmarks/bench_reference.py                        # default 384x384x256, 3 repeats
    python benchmarks/bench_reference.py --orders 1 3 --repeats 5
    python benchmarks/bench_reference.py --shape 96 96 64 --repeats 1   # a quick try

The report (markdown) goes to stdout, progress to stderr.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # the shared measuring helpers live beside this file
    sys.path.insert(0, str(HERE))

from bench_speed import Cell, header_lines, log, measure, remove, report_run  # noqa: E402  (puts the repo on sys.path)

SPACING = 0.1  # mm, isotropic input
ORIGIN = (-17.35, 4.8, 22.6)  # mm, world position of input voxel (0, 0, 0)
REF_SPACING = (0.12, 0.12, 0.15)  # mm
ROTATION = ((2, 15.0), (0, 7.0))  # (axis, degrees): about z, then about x
MARGIN = 8  # input voxels from every face: the "interior" of the SimpleITK comparison
TOOLS = ("bigresample", "scipy", "simpleitk")
SLAB = 16  # z planes per slab when writing the input and comparing outputs

# --------------------------------------------------------------------------- #
# The peers, as small scripts run by the same interpreter:                    #
#   python SCRIPT IN REF OUT ORDER                                            #
# --------------------------------------------------------------------------- #

SCIPY_SCRIPT = '''\
"""scipy whole-array: one affine_transform on the whole volume (one core)."""
import sys
import nibabel as nib
import numpy as np
from scipy import ndimage

src, ref, dst, order = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
img, ref_img = nib.load(src), nib.load(ref)
data = np.asanyarray(img.dataobj)
matrix = np.linalg.solve(img.affine, ref_img.affine)  # 4x4: output index -> input index
out = ndimage.affine_transform(data, matrix, output_shape=ref_img.shape[:3], order=order, mode="nearest",
                               output=np.float32)
nib.save(nib.Nifti1Image(out, ref_img.affine), dst)
'''

SITK_SCRIPT = '''\
"""SimpleITK: ReadImage input and reference, Resample onto the reference, WriteImage (all cores)."""
import sys
import SimpleITK as sitk

src, ref, dst, order = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
interpolators = {0: sitk.sitkNearestNeighbor, 1: sitk.sitkLinear, 3: sitk.sitkBSpline}  # cubic B-spline
img = sitk.ReadImage(src)
ref_img = sitk.ReadImage(ref)
out = sitk.Resample(img, ref_img, sitk.Transform(), interpolators[order], 0.0, sitk.sitkFloat32)
sitk.WriteImage(out, dst)
'''

SCRIPTS = {"scipy": ("scipy_affine.py", SCIPY_SCRIPT), "simpleitk": ("sitk_reference.py", SITK_SCRIPT)}


# --------------------------------------------------------------------------- #
# Input, reference and commands                                               #
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


def reference_geometry(shape, a_in) -> tuple[tuple[int, ...], np.ndarray]:
    """(shape, affine) of the reference: the input's axes rotated about its centre,
    ``REF_SPACING``, as many voxels as span the input's extent along each axis."""
    rot = np.eye(3)
    for axis, degrees in ROTATION:
        rot = rotation(axis, degrees) @ rot
    centre = a_in[:3, :3] @ ((np.array(shape) - 1) / 2) + a_in[:3, 3]
    ref_shape = tuple(max(1, int(round(n * SPACING / s))) for n, s in zip(shape, REF_SPACING))
    a_ref = np.eye(4)
    a_ref[:3, :3] = rot @ np.diag(REF_SPACING)
    a_ref[:3, 3] = centre - a_ref[:3, :3] @ ((np.array(ref_shape) - 1) / 2)
    return ref_shape, a_ref


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


def make_inputs(workdir: Path, shape) -> tuple[Path, Path, float]:
    """Write ``in.nii`` (slab by slab, never whole) and ``ref.nii``; (input, reference, input value range)."""
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
    ref_shape, a_ref = reference_geometry(shape, a_in)
    ref = workdir / "ref.nii"
    nib.save(nib.Nifti1Image(np.zeros(ref_shape, np.uint8), None, nifti_header(ref_shape, a_ref, np.uint8)), ref)
    log(f"made {src} ({src.stat().st_size / 1e6:.1f} MB) and {ref} ({ref.stat().st_size / 1e6:.1f} MB) "
        f"in {time.perf_counter() - t0:.1f} s")
    return src, ref, hi - lo


def write_scripts(workdir: Path) -> dict[str, Path]:
    paths = {}
    for tool, (name, text) in SCRIPTS.items():
        paths[tool] = workdir / name
        paths[tool].write_text(text)
    return paths


def tool_command(tool: str, src: Path, ref: Path, dst: Path, order: int, scripts: dict[str, Path]) -> list[str]:
    if tool == "bigresample":
        return [sys.executable, "-m", "bigresample", str(src), str(dst), "--reference", str(ref),
                "--order", str(order), "--quiet"]
    return [sys.executable, str(scripts[tool]), str(src), str(ref), str(dst), str(order)]


# --------------------------------------------------------------------------- #
# Comparing outputs                                                            #
# --------------------------------------------------------------------------- #


def sample_points(src: Path, ref: Path):
    """(input shape, 3x3 matrix, offset): output index ``o`` samples input index ``matrix @ o + offset``,
    from the affines as stored in the files (what every tool reads)."""
    a_in, a_ref = nib.load(src).affine, nib.load(ref).affine
    m = np.linalg.solve(a_in, a_ref)
    return nib.load(src).shape[:3], m[:3, :3], m[:3, 3]


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
    """{(tool, peer): (all, interior)} for bigresample vs scipy / SimpleITK and scipy vs SimpleITK."""
    diffs = {}
    for tool, peer in (("bigresample", "scipy"), ("bigresample", "simpleitk"), ("scipy", "simpleitk")):
        if tool in outputs and peer in outputs:
            whole, inside, note = compare(outputs[tool], outputs[peer], points, value_range)
            diffs[tool, peer] = (whole, inside)
            log(f"    {tool} vs {peer}: max |diff| / range {whole:.1e} (interior {inside:.1e})"
                + (f" -- {note}" if note else ""))
    return diffs


# --------------------------------------------------------------------------- #
# Report                                                                       #
# --------------------------------------------------------------------------- #


def results_table(cells: dict, diffs: dict, orders, tools) -> list[str]:
    rows = [
        "| order | tool | median wall (s) | min wall (s) | median peak RSS (MiB) | time / SimpleITK "
        "| time / scipy | max\\|Δ\\|/range vs scipy | vs SimpleITK: all | vs SimpleITK: interior |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]

    def ratio(t, peer):
        ref = cells[order].get(peer)
        ref_t = ref.median_time() if ref else None
        return f"{t / ref_t:.2f}" if ref_t else "-"

    def diff(tool, peer, which):
        d = diffs[order].get((tool, peer))
        return "-" if d is None else f"{d[which]:.1e}"

    for order in orders:
        for tool in tools:
            cell = cells[order][tool]
            t = cell.median_time()
            if t is None:
                rows.append(f"| {order} | {tool} | error | error | error | - | - | - | - | - |")
                continue
            rows.append(f"| {order} | {tool} | {t:.2f} | {cell.min_time():.2f} | {cell.median_rss():.0f} "
                        f"| {ratio(t, 'simpleitk')} | {ratio(t, 'scipy')} | {diff(tool, 'scipy', 0)} "
                        f"| {diff(tool, 'simpleitk', 0)} | {diff(tool, 'simpleitk', 1)} |")
    return rows


# --------------------------------------------------------------------------- #
# The benchmark                                                               #
# --------------------------------------------------------------------------- #


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workdir", type=Path,
                   help="folder for the input, reference, outputs and tool scripts (default: a fresh folder "
                        "under /tmp, deleted at the end)")
    p.add_argument("--shape", nargs=3, type=int, default=(384, 384, 256), metavar=("X", "Y", "Z"),
                   help="input shape in voxels at 0.1 mm (default 384 384 256)")
    p.add_argument("--orders", nargs="+", type=int, default=[0, 1, 3], choices=(0, 1, 3),
                   help="spline orders (default 0 1 3)")
    p.add_argument("--repeats", type=int, default=3, help="timed rounds (default 3)")
    p.add_argument("--timeout", type=float, default=3600.0, help="seconds before a run is killed (default 3600)")
    p.add_argument("--keep", action="store_true", help="keep the work folder (input, reference, scripts)")
    args = p.parse_args(argv)
    if args.repeats < 1:
        p.error("--repeats must be >= 1")
    if min(args.shape) < 1:
        p.error("--shape values must be >= 1")
    return args


def warm_up(cells, orders, tools, src, ref, scripts, workdir, points, value_range, timeout) -> dict:
    """One untimed run per tool and order; compare the outputs. {order: {(tool, peer): (all, interior)}}."""
    diffs = {}
    for order in orders:
        outputs = {}
        for tool in tools:
            dst = workdir / f"out_{tool}.nii"
            run = measure(tool_command(tool, src, ref, dst, order, scripts), workdir, timeout)
            report_run(f"[warm-up] order {order} {tool}", run)
            if run.ok:
                outputs[tool] = dst
            else:
                cells[order][tool].runs.append(run)  # a tool that fails here is reported as failed
                remove(dst)
        diffs[order] = compare_outputs(outputs, points, value_range)
        for dst in outputs.values():
            remove(dst)
    return diffs


def main(argv=None) -> int:
    args = parse_args(argv)
    orders = list(dict.fromkeys(args.orders))
    tools = list(TOOLS)
    created = args.workdir is None
    workdir = Path(tempfile.mkdtemp(prefix="bench_reference_", dir="/tmp")) if created else args.workdir
    workdir.mkdir(parents=True, exist_ok=True)

    print("\n".join(header_lines("bench_reference")), flush=True)
    shape = tuple(args.shape)
    try:
        src, ref, value_range = make_inputs(workdir, shape)
        scripts = write_scripts(workdir)
        ref_shape = nib.load(ref).shape
        points = sample_points(src, ref)
        rotation_text = ", then ".join(f"{deg:g} deg about {'xyz'[axis]}" for axis, deg in ROTATION)
        print(f"Input {'x'.join(map(str, shape))} float32 at {SPACING} mm, origin {ORIGIN} mm -> reference "
              f"{'x'.join(map(str, ref_shape))} at {' x '.join(map(str, REF_SPACING))} mm, rotated "
              f"{rotation_text} around the input's centre; of the output voxels, "
              f"{1 - interior_fraction(points, ref_shape, 0):.0%} sample outside the input and "
              f"{interior_fraction(points, ref_shape):.0%} >= {MARGIN} input voxels inside every face "
              f"(the interior); "
              f"{args.repeats} timed repeat(s) after 1 warm-up; work folder {workdir}\n", flush=True)

        cells = {order: {t: Cell() for t in tools} for order in orders}
        diffs = warm_up(cells, orders, tools, src, ref, scripts, workdir, points, value_range, args.timeout)
        dst = workdir / "out.nii"
        for rep in range(args.repeats):
            for order in orders:
                k = rep % len(tools)
                for tool in tools[k:] + tools[:k]:
                    run = measure(tool_command(tool, src, ref, dst, order, scripts), workdir, args.timeout)
                    remove(dst)
                    report_run(f"[{rep + 1}/{args.repeats}] order {order} {tool}", run)
                    cells[order][tool].runs.append(run)

        print(f"## Wall time, peak RSS (median of {args.repeats} run{'s' if args.repeats > 1 else ''}) "
              "and agreement (warm-up outputs)\n")
        print("\n".join(results_table(cells, diffs, orders, tools)))
        print(f"\nmax|Δ|/range: largest absolute difference from the peer's output over the input's value "
              f"range ({value_range:.1f}); bigresample should equal scipy.  SimpleITK is a different "
              "computation (0 outside the input, mirror-boundary B-spline prefilter, near-ties of nearest "
              f"neighbour rounded its own way); its interior is the output voxels sampled >= {MARGIN} input "
              "voxels inside every face.")
        failures = [(order, tool) for order, row in cells.items() for tool, cell in row.items() if cell.failed]
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
