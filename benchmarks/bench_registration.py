"""Applying a registration: a displacement field plus an affine, file to file, against SimpleITK and ANTs.

What it measures
----------------
A smooth float32 volume (``--shape``, default 512x512x300, 0.1 mm, written slab by slab as
``moving.nii``) is resampled onto its own grid (``fixed.nii``: zeros, only the header matters)
through the chain ANTs writes for a registration: ``-t warp.nii.gz -t affine.txt`` (the field
applied first to each output point, then the affine: antsApplyTransforms' order).  The field is a smooth vector image at a
quarter of the volume's resolution on the same field of view (displacements up to ~0.8 mm, LPS,
written by ``SimpleITK.WriteImage`` as ITK writes them: a 5-D NIfTI, intent vector); the affine a
rotation of 3 degrees about z and a shift, written by ``SimpleITK.WriteTransform`` (ITK text).

The tools, each a separate subprocess timed and memory-polled by ``bench_speed.measure`` (wall
time around the whole process; peak RSS of the process tree), median of ``--repeats``:

* ``bigresample`` -- ``python -m bigresample moving.nii OUT --reference fixed.nii --transform
                     warp.nii.gz --transform affine.txt --order K --quiet`` (its default threads)
* ``simpleitk``   -- ``sitk.ReadImage`` + ``sitk.Resample(moving, fixed, CompositeTransform([affine,
                     field]), interpolator, 0.0)`` (ITK's order: the last applied first) + ``sitk.WriteImage``, 2 threads
* ``antspyx``     -- ``ants.image_read`` + ``ants.apply_transforms(fixed, moving, [warp, affine],
                     interpolator)`` + ``ants.image_write`` (ITK underneath; 2 threads through
                     ``ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS``)

Orders 0, 1, 3 (nearest, linear, B-spline).  After the runs of an order, bigresample's output is
compared with SimpleITK's on the voxels whose input point lies 3 voxels inside the input
(``interior``): the largest difference relative to the input's range (order 0: the fraction of
voxels equal).

    python benchmarks/bench_registration.py --workdir /tmp/reg --repeats 3
    python benchmarks/bench_registration.py --shape 128 128 80 --repeats 1   # a quick look
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path

import nibabel as nib
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_speed import MIB, machine_info, measure, subprocess_env  # noqa: E402

SPACING = 0.1
ORDERS = (0, 1, 3)
TOOLS = ("bigresample", "simpleitk", "antspyx")
SITK_INTERP = {0: "sitkNearestNeighbor", 1: "sitkLinear", 3: "sitkBSpline"}
ANTS_INTERP = {0: "nearestNeighbor", 1: "linear", 3: "bSpline"}
MARGIN = 3  # input voxels: the interior the agreement is measured on

SITK_SCRIPT = '''\
import sys
import SimpleITK as sitk
moving, fixed, warp, affine, out, interp = sys.argv[1:7]
sitk.ProcessObject_SetGlobalDefaultNumberOfThreads(2)
m = sitk.ReadImage(moving)
f = sitk.ReadImage(fixed)
field = sitk.DisplacementFieldTransform(sitk.Cast(sitk.ReadImage(warp), sitk.sitkVectorFloat64))
chain = sitk.CompositeTransform([sitk.ReadTransform(affine), field])  # ITK's order: the field applied first
sitk.WriteImage(sitk.Resample(m, f, chain, getattr(sitk, interp), 0.0, sitk.sitkFloat32), out)
'''

ANTS_SCRIPT = '''\
import sys
import ants
moving, fixed, warp, affine, out, interp = sys.argv[1:7]
m, f = ants.image_read(moving), ants.image_read(fixed)
ants.image_write(ants.apply_transforms(f, m, transformlist=[warp, affine], interpolator=interp), out)
'''


def smooth_slab(shape, z0, z1):
    x, y, z = (np.arange(n, dtype=np.float32) * SPACING for n in shape)
    z = z[z0:z1]
    return (np.cos(x / 0.9)[:, None, None] * np.sin(y / 0.6)[None, :, None] * np.cos(z / 0.45)[None, None, :]
            + 0.5 * np.sin((x / 1.3)[:, None, None] + (z / 0.7)[None, None, :])).astype(np.float32) * 100


def write_inputs(work: Path, shape) -> dict[str, Path]:
    import SimpleITK as sitk

    affine = np.diag([SPACING] * 3 + [1.0])
    affine[:3, 3] = (-12.0, 8.5, 20.0)
    paths = {k: work / v for k, v in (("moving", "moving.nii"), ("fixed", "fixed.nii"),
                                       ("warp", "warp.nii.gz"), ("affine", "affine.txt"))}
    hdr = nib.Nifti1Header()
    hdr.set_data_shape(shape)
    hdr.set_data_dtype(np.float32)
    hdr.set_qform(affine, 1)
    hdr.set_sform(affine, 1)
    hdr.set_xyzt_units("mm")
    hdr["vox_offset"] = 352
    with open(paths["moving"], "wb") as f:
        f.write(hdr.binaryblock + b"\0" * (int(hdr["vox_offset"]) - hdr.sizeof_hdr))
        for z0 in range(0, shape[2], 16):  # Fortran order: whole z planes, one after another
            f.write(np.asfortranarray(smooth_slab(shape, z0, min(shape[2], z0 + 16))).tobytes(order="F"))
    nib.save(nib.Nifti1Image(np.zeros(shape, np.uint8), affine), paths["fixed"])
    # the field: a quarter of the resolution, the same field of view (ITK's image geometry, LPS)
    fshape = tuple(max(2, n // 4) for n in shape)
    fspacing = [SPACING * n / m for n, m in zip(shape, fshape)]
    origin_ras = affine[:3, 3] + (np.array(fspacing) - SPACING) / 2
    g = np.meshgrid(*[np.linspace(0, 2 * np.pi, m) for m in fshape], indexing="ij")
    disp = np.stack([0.8 * np.sin(g[1]) * np.cos(g[2]), 0.6 * np.cos(g[0]) * np.sin(g[2]),
                     0.5 * np.sin(g[0] + g[1])], axis=-1)
    img = sitk.GetImageFromArray(disp.transpose(2, 1, 0, 3).astype(np.float64), isVector=True)
    img.SetSpacing(fspacing)
    img.SetOrigin((-origin_ras[0], -origin_ras[1], origin_ras[2]))
    sitk.WriteImage(img, str(paths["warp"]))
    centre = affine[:3, :3] @ ((np.array(shape) - 1) / 2) + affine[:3, 3]
    t = sitk.AffineTransform(3)
    c, s = np.cos(np.radians(3)), np.sin(np.radians(3))
    t.SetMatrix((c, -s, 0, s, c, 0, 0, 0, 1))
    t.SetCenter((-centre[0], -centre[1], centre[2]))
    t.SetTranslation((0.3, -0.2, 0.15))
    sitk.WriteTransform(t, str(paths["affine"]))
    return paths


def command(tool, paths, out, order, work):
    py = sys.executable
    if tool == "bigresample":
        return [py, "-m", "bigresample", str(paths["moving"]), str(out), "--reference", str(paths["fixed"]),
                "--transform", str(paths["warp"]), "--transform", str(paths["affine"]), "--order", str(order),
                "--quiet"]
    script = work / f"{tool}.py"
    script.write_text(SITK_SCRIPT if tool == "simpleitk" else ANTS_SCRIPT)
    interp = SITK_INTERP[order] if tool == "simpleitk" else ANTS_INTERP[order]
    return [py, str(script), str(paths["moving"]), str(paths["fixed"]), str(paths["warp"]), str(paths["affine"]),
            str(out), interp]


def agreement(ours: Path, theirs: Path, order: int, shape, margin: int = MARGIN) -> str:
    """bigresample against SimpleITK on the voxels whose input point lies ``margin`` voxels inside:
    the output grid is the input's, the chain moves points by < 2.5 mm (25 voxels) here, so the
    interior box shrunk by that much more is inside."""
    a = np.asarray(nib.load(ours).dataobj, dtype=np.float64)
    b = np.asarray(nib.load(theirs).dataobj, dtype=np.float64).reshape(a.shape)
    inner = tuple(slice(margin + 30, n - margin - 30) for n in shape)
    a, b = a[inner], b[inner]
    span = float(np.ptp(b)) or 1.0
    if order == 0:
        return f"{100 * np.mean(a == b):.3f}% equal"
    return f"max |diff| {np.abs(a - b).max() / span:.2e} of the range"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workdir", type=Path, default=Path("/tmp/bench_registration"))
    p.add_argument("--shape", nargs=3, type=int, default=(512, 512, 300))
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--orders", nargs="+", type=int, default=list(ORDERS))
    p.add_argument("--tools", nargs="+", default=list(TOOLS))
    p.add_argument("--memory-limit", default=None, help="also give bigresample this --memory-limit")
    args = p.parse_args(argv)
    work = args.workdir
    work.mkdir(parents=True, exist_ok=True)
    shape = tuple(args.shape)
    paths = write_inputs(work, shape)
    env = {**subprocess_env(), "ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS": "2"}
    print("\n".join(machine_info()))
    print(f"load before: {os.getloadavg()}")
    print(f"shape {shape}, field {tuple(max(2, n // 4) for n in shape)}x3, repeats {args.repeats}")
    rows = []
    for order in args.orders:
        times = {t: [] for t in args.tools}
        peaks = {t: [] for t in args.tools}
        outs = {}
        for rep in range(args.repeats):
            for tool in (args.tools if rep % 2 == 0 else args.tools[::-1]):  # alternating
                out = work / f"out_{tool}_{order}.nii"
                out.unlink(missing_ok=True)
                cmd = command(tool, paths, out, order, work)
                if tool == "bigresample" and args.memory_limit:
                    cmd += ["--memory-limit", args.memory_limit]
                run = measure(cmd, work, env=env)
                if run.returncode != 0:
                    print(f"{tool} order {order} failed: {run.stderr.strip()[-400:]}")
                    continue
                times[tool].append(run.seconds)
                peaks[tool].append(run.peak_rss)
                outs[tool] = out
        med = {t: statistics.median(v) for t, v in times.items() if v}
        agree = agreement(outs["bigresample"], outs["simpleitk"], order, shape) \
            if "bigresample" in outs and "simpleitk" in outs else "-"
        for t in args.tools:
            if t in med:
                ratio = med["bigresample"] / med[t] if "bigresample" in med else float("nan")
                rows.append(f"| {order} | {t} | {min(times[t]):.2f}-{max(times[t]):.2f} s (median {med[t]:.2f}) | "
                            f"{max(peaks[t]) / MIB:.0f} MiB | {ratio:.2f} | {agree if t == 'simpleitk' else ''} |")
    print(f"load after: {os.getloadavg()}")
    print("| order | tool | wall | peak RSS | bigresample / tool | bigresample vs SimpleITK (interior) |")
    print("|---|---|---:|---:|---:|---|")
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
