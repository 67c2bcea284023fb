"""Peak memory is bounded by the budget, not by the volume (measured in a subprocess)."""

import subprocess
import sys

import nibabel as nib
import numpy as np
import pytest

from bigresample.nifti import NiftiWriter

# VmHWM: the peak RSS of this process image.  (ru_maxrss would not do: Linux
# carries it across exec, so a child of a large pytest process reports pytest's.)
RUNNER = """
import sys
from bigresample.cli import main
rc = main(sys.argv[1:])
hwm = [l for l in open("/proc/self/status") if l.startswith("VmHWM:")][0]
print("MAXRSS", int(hwm.split()[1]) * 1024)
sys.exit(rc)
"""


def _volume(path, shape):
    hdr = nib.Nifti1Header()
    hdr.set_data_shape(shape)
    hdr.set_data_dtype(np.float32)
    hdr.set_qform(np.diag([0.1, 0.1, 0.1, 1]), 1)
    rng = np.random.default_rng(0)
    with NiftiWriter(path, hdr) as w:  # slab by slab: the test never holds the volume either
        for z0 in range(0, shape[2], 64):
            w.write(rng.random(shape[:2] + (min(64, shape[2] - z0),), dtype=np.float32))


def _peak(args) -> int:
    proc = subprocess.run([sys.executable, "-c", RUNNER, *map(str, args)], capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr
    return int(proc.stdout.split("MAXRSS")[-1])


@pytest.mark.slow
@pytest.mark.parametrize("order, suffix", [(1, ".nii"), (3, ".nii.gz")])
def test_peak_rss_does_not_grow_with_the_volume_and_stays_under_the_budget(tmp_path, order, suffix):
    limit = 300 * 2**20
    peaks = []
    for nz in (1280, 5120):  # 4x more voxels: 47 MB and 188 MB, both beyond one block
        src = tmp_path / f"in{nz}.nii"
        _volume(src, (96, 100, nz))
        out = tmp_path / f"out{nz}{suffix}"
        peaks.append(_peak([src, out, "--x-spacing", "0.07", "--z-spacing", "0.13", "--order", order,
                            "--memory-limit", limit, "--quiet"]))
        assert nib.load(out).shape == (137, 100, int(round(nz * 0.1 / 0.13)))
        src.unlink()
        out.unlink()
    small, large = peaks
    assert large <= small * 1.15 + 16 * 2**20, f"peak RSS grew from {small >> 20} MiB to {large >> 20} MiB"
    assert large <= limit, f"peak RSS {large >> 20} MiB over the {limit >> 20} MiB budget"


@pytest.mark.slow
def test_antialias_stays_under_the_budget(tmp_path):
    """The smoothed float64 window counts in the plan."""
    limit = 200 * 2**20
    src = tmp_path / "in.nii"
    _volume(src, (200, 200, 400))  # 64 MB
    out = tmp_path / "out.nii"
    peak = _peak([src, out, "--spacing", "0.4", "0.3", "0.25", "--order", "3", "--antialias",
                  "--memory-limit", limit, "--quiet"])
    assert nib.load(out).shape == (50, 67, 160)
    assert peak <= limit, f"peak RSS {peak >> 20} MiB over the {limit >> 20} MiB budget"


@pytest.mark.slow
def test_a_rotated_reference_stays_under_the_budget(tmp_path):
    """The general path's windows (boxes around rotated blocks) and coefficients
    count in the plan."""
    limit = 250 * 2**20
    src = tmp_path / "in.nii"
    _volume(src, (256, 256, 400))  # 105 MB
    t = np.radians(20)
    a_ref = np.array([[np.cos(t), -np.sin(t), 0, 0], [np.sin(t), np.cos(t), 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]])
    a_ref = a_ref @ np.diag([0.12, 0.12, 0.1, 1.0])
    a_ref[:3, 3] = [8.0, -2.0, 0.0]
    ref = tmp_path / "ref.nii"
    nib.save(nib.Nifti1Image(np.zeros((200, 220, 400), np.uint8), a_ref), ref)
    out = tmp_path / "out.nii"
    peak = _peak([src, out, "--reference", ref, "--order", "3", "--memory-limit", limit, "--quiet"])
    assert nib.load(out).shape == (200, 220, 400)
    assert peak <= limit, f"peak RSS {peak >> 20} MiB over the {limit >> 20} MiB budget"
