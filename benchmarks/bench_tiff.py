"""A TIFF slice stack larger than the memory budget, resampled; against reading it with tifffile alone.

Writes a folder of 2-D uint16 slices (a smooth pattern, slice by slice, never the whole stack in memory) in a
scratch folder, then, in the same run and alternately (the machine may be shared: compare the ratios):

- the floor: every slice read with ``tifffile.imread`` in a subprocess, one after the other;
- bigresample: the folder resampled by the command line with ``--memory-limit`` (``--input-spacing``,
  since slices carry no spacing), to a .nii, its peak RSS polled over the process tree (bench_speed.measure);
- the same voxels as a .nii input, resampled the same way: what the TIFF reading adds to the run.

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


def make_stack(folder: Path, nifti: Path, n: int, plane: int, rows_per_strip: int = 64) -> int:
    """The slices, and the same voxels as a NIfTI at 1 um (written plane by plane)."""
    import nibabel as nib
    import tifffile

    from bigresample.nifti import NiftiWriter

    folder.mkdir()
    y = np.arange(plane, dtype=np.float32)[:, None] * 0.37
    x = np.arange(plane, dtype=np.float32)[None, :] * 0.11
    base = x + y
    hdr = nib.Nifti1Header()
    hdr.set_data_shape((plane, plane, n))
    hdr.set_data_dtype(np.uint16)
    hdr.set_qform(np.diag([0.001, 0.001, 0.001, 1.0]), 1)
    hdr.set_xyzt_units("mm")
    with NiftiWriter(nifti, hdr) as w:
        for z in range(n):
            values = ((base + z * 0.5) % 4000).astype(np.uint16)
            tifffile.imwrite(folder / f"slice_{z:05d}.tif", values, rowsperstrip=rows_per_strip,
                             photometric="minisblack")
            w.write(values.T[:, :, None])
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
        nifti = scratch / "same.nii"
        size = make_stack(stack, nifti, a.slices, a.plane)
        limit = parse_memory(a.memory_limit)
        print(f"stack: {a.slices} slices of {a.plane}x{a.plane} uint16, {format_bytes(size)}; budget "
              f"{format_bytes(limit)}; order {a.order}, {a.workers} workers, 1 um -> {' '.join(a.spacing)} um")
        floor_cmd = [sys.executable, "-c", FLOOR, str(stack)]
        out = scratch / "out.nii"
        cmd = [sys.executable, "-m", "bigresample", str(stack), str(out), "--input-spacing", "1", "1", "1",
               "--units", "um", "--spacing", *a.spacing, "--order", a.order, "--memory-limit", a.memory_limit,
               "--workers", a.workers, "--quiet"]
        same = [sys.executable, "-m", "bigresample", str(nifti), str(out), "--units", "um", "--spacing", *a.spacing,
                "--order", a.order, "--memory-limit", a.memory_limit, "--workers", a.workers, "--quiet"]
        print(f"{'run':>4} {'floor s':>8} {'TIFF s':>7} {'peak MiB':>9} {'TIFF/floor':>10} {'NIfTI s':>8} "
              f"{'peak MiB':>9} {'TIFF/NIfTI':>10}")
        for k in range(a.repeat):
            runs = []
            for c in (floor_cmd, cmd, same):
                runs.append(measure(c, scratch))
                if runs[-1].returncode:
                    print(runs[-1].stderr)
                    return 1
                out.unlink(missing_ok=True)
            floor, run, nii = runs
            ok = "under" if max(run.peak_rss, nii.peak_rss) < limit else "OVER"
            print(f"{k + 1:>4} {floor.seconds:8.2f} {run.seconds:7.2f} {run.peak_rss / 2**20:9.0f} "
                  f"{run.seconds / floor.seconds:10.2f} {nii.seconds:8.2f} {nii.peak_rss / 2**20:9.0f} "
                  f"{run.seconds / nii.seconds:10.2f}  ({ok} the budget)")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
