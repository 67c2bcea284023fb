"""A brain-like phantom at 100 um, made slab by slab, for the embedded demo.

An ellipsoidal head: scalp, skull, cerebrospinal fluid, a folded cortical
ribbon of grey matter over white matter, two lateral ventricles, a few vessels
and mild noise -- enough structure that resampling artefacts show.
"""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np

from .nifti import NiftiWriter

DEMO_SHAPE = (512, 512, 300)
DEMO_SPACING = 0.1  # mm


def phantom_slab(shape, z0: int, z1: int, seed: int = 0) -> np.ndarray:
    """Planes ``z0:z1`` of the phantom of ``shape`` as float32 (X, Y, dz)."""
    nx, ny, nz = shape
    x = (np.arange(nx) - (nx - 1) / 2) / (0.46 * nx)
    y = (np.arange(ny) - (ny - 1) / 2) / (0.40 * ny)
    z = (np.arange(z0, z1) - (nz - 1) / 2) / (0.46 * nz)
    X, Y, Z = np.meshgrid(x, y, z, indexing="ij", sparse=True)
    r = np.sqrt(X**2 + Y**2 + Z**2) + 1e-9
    theta = np.arccos(np.clip(Z / r, -1, 1))
    phi = np.arctan2(Y, X)
    folds = 0.035 * np.sin(9 * theta) * np.sin(11 * phi) + 0.02 * np.sin(17 * theta + 3 * phi)
    img = np.zeros(np.broadcast_shapes(X.shape, Y.shape, Z.shape), dtype=np.float32)
    img[r < 1.0] = 0.25  # scalp
    img[r < 0.96] = 0.9  # skull
    img[r < 0.92] = 0.15  # CSF
    brain = r < 0.89 + folds * 0.5
    img[brain] = 0.75  # grey matter
    img[r < 0.80 + folds] = 0.55  # white matter
    for cx in (-0.12, 0.12):  # lateral ventricles
        v = ((X - cx) / 0.09) ** 2 + (Y / 0.30) ** 2 + ((Z - 0.05) / 0.18) ** 2
        img[v < 1.0] = 0.12
    vessel = (np.abs(np.sin(23 * X + 5 * Z) * np.cos(19 * Y)) < 0.02) & brain
    img[vessel] = 1.0
    rng = np.random.default_rng(seed + z0)
    img += rng.normal(0, 0.01, img.shape).astype(np.float32)
    return img * 1000


def make_phantom(path, shape=DEMO_SHAPE, spacing=DEMO_SPACING, slab: int = 16, dtype=np.float32) -> Path:
    """Write the phantom to ``path`` (.nii or .nii.gz), never holding it whole.

    ``dtype`` int16 stores the phantom's values (0-1000) rounded.
    """
    path = Path(path)
    affine = np.diag([spacing, spacing, spacing, 1.0])
    affine[:3, 3] = -(np.array(shape) - 1) / 2 * spacing
    hdr = nib.Nifti1Header()
    hdr.set_data_shape(shape)
    hdr.set_data_dtype(dtype)
    hdr.set_qform(affine, 1)
    hdr.set_sform(affine, 1)
    hdr.set_xyzt_units("mm")
    hdr["descrip"] = b"bigresample brain phantom, 100 um"
    with NiftiWriter(path, hdr) as w:
        for z0 in range(0, shape[2], slab):
            values = phantom_slab(shape, z0, min(z0 + slab, shape[2]))
            w.write(values if np.dtype(dtype).kind == "f" else np.rint(values).astype(dtype))
    return path
