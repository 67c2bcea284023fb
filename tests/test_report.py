"""The report, line for line: what the command line prints is a contract (the seed's lines first).

The texts below are what the report printed before the run was split into
events and renderers; they pin it (timings masked)."""

import re
from pathlib import Path

import pytest

from bigresample import kernel
from bigresample.cli import main

from .helpers import make_volume

RUN = """\
Loading NIfTI-1 image (gzip-compressed): in.nii.gz

Original volume shape: (24, 20, 14)
Original spacing (mm): x=0.1000, y=0.1000, z=0.1000
Original spacing (μm): x=100.00, y=100.00, z=100.00

Changing spacing: x=0.2, z=0.15

Target spacing (mm): x=0.2000, y=0.1000, z=0.1500
Target spacing (μm): x=200.00, y=100.00, z=150.00

Zoom factors: x=0.5000, y=1.0000, z=0.6667
  x-axis: Downsampling (0.5000x)
  y-axis: No change
  z-axis: Downsampling (0.6667x)

Interpolation method: Linear (Trilinear)
Grid: center (field of view centred, spacing exact)
  nibabel's resample_to_output and SimpleITK keep the first voxel's centre instead (--grid origin matches them)
Boundary mode: nearest
Block plan: 12x20x1 output voxels per block, 9 blocks, 2 workers, ~54.4 KiB per block
Memory budget: 953.7 MiB
Kernel: KERNEL

Resampling volume...
Resampled volume shape: (12, 20, 9)
  X: 24 → 12 (-50.0%)
  Y: 20 → 20 (+0.0%)
  Z: 14 → 9 (-35.7%)

True output spacing (mm): x=0.2000, y=0.1000, z=0.1500
Verified new spacing (mm): x=0.2000, y=0.1000, z=0.1500
Verified new spacing (μm): x=200.00, y=100.00, z=150.00

Comparison (scaled values, computed block by block):
                      min            max           mean            std
  input          0.108007        999.997        497.007        289.307
  output          5.71787        995.452        497.045        173.676

Elapsed: T s (inflating input into memory T s, resampling T s, comparing T s); throughput R Mvoxel/s

Done!
"""

DRY_RUN = """\
Loading NIfTI-1 image (gzip-compressed): in.nii.gz

Original volume shape: (24, 20, 14)
Original spacing (mm): x=0.1000, y=0.1000, z=0.1000
Original spacing (μm): x=100.00, y=100.00, z=100.00

Changing spacing: x=0.05, y=0.05, z=0.05

Target spacing (mm): x=0.0500, y=0.0500, z=0.0500
Target spacing (μm): x=50.00, y=50.00, z=50.00

Zoom factors: x=2.0000, y=2.0000, z=2.0000
  x-axis: Upsampling (2.0000x)
  y-axis: Upsampling (2.0000x)
  z-axis: Upsampling (2.0000x)

Interpolation method: Linear (Trilinear)
Grid: center (field of view centred, spacing exact)
  nibabel's resample_to_output and SimpleITK keep the first voxel's centre instead (--grid origin matches them)
Boundary mode: nearest
Block plan: 48x40x2 output voxels per block, 14 blocks, 2 workers, ~155.6 KiB per block
Memory budget: 953.7 MiB
Kernel: KERNEL

Dry run: nothing is read or written.
  Output shape: (48, 40, 28) (float32), 210.0 KiB uncompressed
  Blocks: 14 of 48x40x2 voxels, 2 at a time
  Memory: ~155.6 KiB per block, ~100.3 MiB peak (budget 953.7 MiB); the input inflated into memory: 26.6 KiB
  Disk: output 210.0 KiB in .
Verdict: every check passed (size rules, free disk space, files beside the output); the run would go ahead.
"""


def _report(tmp_path, monkeypatch, capsys, *args):
    monkeypatch.chdir(tmp_path)
    make_volume("in.nii.gz")
    assert main(["in.nii.gz", *args, "--memory-limit", "1GB", "--workers", "2", "--no-progress"]) == 0
    out = capsys.readouterr().out
    out = out.replace(f"Kernel: {kernel.describe()}\n", "Kernel: KERNEL\n")  # the extension's, or the fallback's
    out = re.sub(r"(\d+\.\d+) s", "T s", out)
    out = out.replace("writing T s, ", "")  # shown only when it took 5 ms or more: on a loaded machine, often
    return re.sub(r"throughput \d+\.\d+", "throughput R", out)


def test_a_run_reports_every_line_as_before(tmp_path, monkeypatch, capsys):
    assert _report(tmp_path, monkeypatch, capsys, "out.nii.gz", "--x-spacing", "0.2", "--z-spacing", "0.15",
                   "--compare") == RUN


def test_a_dry_run_reports_every_line_as_before(tmp_path, monkeypatch, capsys):
    assert _report(tmp_path, monkeypatch, capsys, "out.zarr", "--spacing", "0.05", "0.05", "0.05",
                   "--dry-run") == DRY_RUN


def _save(cls, path):
    import nibabel as nib
    import numpy as np

    data = np.random.default_rng(0).random((12, 10, 8)).astype(np.float32)
    nib.save(cls(data, np.diag([0.1, 0.1, 0.1, 1.0])), path)
    return path


@pytest.mark.parametrize("name, make, expected", [
    ("in.nii", "Nifti1Image", "NIfTI-1 image"),
    ("in.nii.gz", "Nifti1Image", "NIfTI-1 image (gzip-compressed)"),
    ("in2.nii", "Nifti2Image", "NIfTI-2 image"),
    ("pair.img", "Nifti1Pair", "NIfTI-1 pair (.hdr/.img)"),
    ("old.img", "AnalyzeImage", "SPM2 Analyze image"),  # nibabel reads Analyze as SPM2's variant
    ("brain.mgz", "MGHImage", "MGH image (gzip-compressed)"),
    ("brain.mgh", "MGHImage", "MGH image"),
    ("scaled+tlrc.HEAD", None, "AFNI BRIK/HEAD image"),
])
def test_the_report_names_the_format_it_loaded(tmp_path, monkeypatch, capsys, name, make, expected):
    import nibabel as nib
    from nibabel.testing import data_path

    src = _save(getattr(nib, make), tmp_path / name) if make else Path(data_path) / name
    assert main([str(src), str(tmp_path / "out.nii"), "--spacing", "0.2", "0.2", "0.2", "--dry-run", "--force"]) == 0
    assert capsys.readouterr().out.splitlines()[0] == f"Loading {expected}: {src}"
