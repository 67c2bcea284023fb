"""The QC picture of issue 30's example: nibabel's EPI slab onto a 2 mm MNI-sized grid.

    python tools/qc_example.py FOLDER [extra bigresample options...]

Writes into FOLDER: ``t1_2mm.nii.gz``, a reference with the MNI152 2 mm
template's grid (91x109x91 voxels of 2 mm, its affine; zeros: only its header
is used), then runs

    bigresample example4d.nii.gz FOLDER/out.nii.gz --reference FOLDER/t1_2mm.nii.gz --qc FOLDER/qc.png

on nibabel's test image ``example4d.nii.gz`` (128x96x24x2, 2 x 2 x 2.2 mm,
oblique), printing the report.  Look at ``FOLDER/qc.png``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
from nibabel.testing import data_path

#: The MNI152 2 mm template's grid (FSL's MNI152_T1_2mm and nilearn's 2 mm MNI template)
MNI_2MM_SHAPE = (91, 109, 91)
MNI_2MM_AFFINE = np.array([[-2.0, 0, 0, 90], [0, 2.0, 0, -126], [0, 0, 2.0, -72], [0, 0, 0, 1]])


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    folder = Path(argv[0])
    folder.mkdir(parents=True, exist_ok=True)
    ref = folder / "t1_2mm.nii.gz"
    img = nib.Nifti1Image(np.zeros(MNI_2MM_SHAPE, np.uint8), MNI_2MM_AFFINE)
    img.header.set_xyzt_units("mm")
    img.header.set_sform(MNI_2MM_AFFINE, 4)  # MNI152
    img.header.set_qform(MNI_2MM_AFFINE, 4)
    nib.save(img, ref)
    src = os.path.join(data_path, "example4d.nii.gz")
    out, png = folder / "out.nii.gz", folder / "qc.png"
    for stale in (out, png):
        stale.unlink(missing_ok=True)
    cmd = [sys.executable, "-m", "bigresample", src, str(out), "--reference", str(ref), "--qc", str(png),
           "--no-progress", *argv[1:]]
    print("$", " ".join(cmd[2:]))
    return subprocess.run(cmd).returncode


if __name__ == "__main__":
    sys.exit(main())
