"""A quality-control picture: orthogonal slices of input and output, side by side.

The three planes go through the same physical point (the output's central
voxel, mapped into the input through both affines), so a misregistration
shows as a shift between the rows.  Each panel is drawn over its extent in
mm, with one grey scale for both rows (1st to 99th percentile of the input's
planes).  Only six planes are read.  matplotlib is an optional dependency
(``pip install 'bigresample[qc]'``).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

AXES = "xyz"
VIEWS = (("axial", 2), ("coronal", 1), ("sagittal", 0))  # (name, axis held fixed)


def require_matplotlib() -> None:
    import importlib.util

    if importlib.util.find_spec("matplotlib") is None:
        raise ImportError("--qc needs matplotlib: pip install 'bigresample[qc]'")


def centre_indices(in_affine, out_affine, out_shape) -> tuple[np.ndarray, np.ndarray]:
    """Voxel indices (input, output) of the planes through the output's centre."""
    o = np.array([(n - 1) // 2 for n in out_shape[:3]], dtype=float)
    point = out_affine @ np.append(o, 1.0)
    x = np.linalg.solve(in_affine, point)[:3]
    return np.clip(np.rint(x), 0, None).astype(int), o.astype(int)


def plane(source, shape, axis: int, index: int, slope=1.0, inter=0.0) -> np.ndarray:
    """The plane ``index`` along ``axis`` (first volume of a 4D image), as
    float64 scaled values with the two remaining spatial axes in x, y, z order."""
    index = int(min(max(index, 0), shape[axis] - 1))
    sl = [slice(None)] * 3 + [slice(0, 1)] * (len(shape) - 3)
    sl[axis] = slice(index, index + 1)
    data = np.asarray(source[tuple(sl)], dtype=np.float64).reshape([n for i, n in enumerate(shape[:3]) if i != axis])
    return data * slope + inter


def write_qc(png, *, in_source, in_shape, in_affine, in_spacing_mm, out_source, out_shape, out_affine,
             out_spacing_mm, in_slope=1.0, in_inter=0.0, title="") -> Path:
    """Draw the picture into ``png``.  ``in_source`` gives raw values (scaled
    here by ``in_slope``/``in_inter``), ``out_source`` scaled ones (a nibabel
    proxy)."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    xi, xo = centre_indices(in_affine, out_affine, out_shape)
    in_sp = np.asarray(in_spacing_mm, dtype=float)
    # where output voxel 0 sits, in mm from input voxel 0 along each index axis
    out_start = np.linalg.solve(in_affine, out_affine @ np.array([0.0, 0.0, 0.0, 1.0]))[:3] * in_sp
    # an output rotated relative to the input (--reference) is drawn along its own axes
    m = np.linalg.solve(np.asarray(in_affine, float)[:3, :3], np.asarray(out_affine, float)[:3, :3])
    aligned = bool(np.allclose(m[~np.eye(3, dtype=bool)], 0.0, atol=1e-9 * np.abs(m).max()))
    if not aligned:
        out_start = np.zeros(3)
    rows = [
        ("input", in_source, in_shape, xi, in_sp, np.zeros(3), in_slope, in_inter),
        ("output", out_source, out_shape, xo, np.asarray(out_spacing_mm, dtype=float), out_start, 1.0, 0.0),
    ]
    planes = [[plane(src, shape, axis, idx[axis], sc, it) for _, axis in VIEWS]
              for _, src, shape, idx, _, _, sc, it in rows]
    finite = np.concatenate([p[np.isfinite(p)].ravel() for p in planes[0]] or [np.zeros(1)])
    lo, hi = np.percentile(finite, [1, 99]) if finite.size else (0.0, 1.0)
    if hi <= lo:
        hi = lo + 1.0
    fig, axs = plt.subplots(2, 3, figsize=(12, 9), squeeze=False, layout="constrained")
    for r, (label, _, shape, idx, sp, start, _, _) in enumerate(rows):
        for c, (view, axis) in enumerate(VIEWS):
            a, b = [i for i in range(3) if i != axis]
            ax = axs[r][c]
            # first remaining axis horizontal, second vertical; both rows in the
            # input's frame (mm from its first voxel), so the same anatomy sits
            # at the same coordinates
            ax.imshow(planes[r][c].T, cmap="gray", vmin=lo, vmax=hi, origin="lower", interpolation="nearest",
                      extent=(start[a] - 0.5 * sp[a], start[a] + (shape[a] - 0.5) * sp[a],
                              start[b] - 0.5 * sp[b], start[b] + (shape[b] - 0.5) * sp[b]))
            ax.set_title(
                f"{label} {view}, {AXES[axis]} = {idx[axis]}\n"
                f"spacing {sp[a] * 1000:.1f} x {sp[b] * 1000:.1f} um ({AXES[a]} x {AXES[b]}), "
                f"{shape[a]}x{shape[b]} voxels",
                fontsize=9,
            )
            frame = "the input's first voxel" if aligned or r == 0 else "the output's first voxel, its own axes"
            ax.set_xlabel(f"{AXES[a]} (mm from {frame})", fontsize=8)
            ax.set_ylabel(f"{AXES[b]} (mm)", fontsize=8)
            ax.tick_params(labelsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    png = Path(png)
    # drawn under a random name beside it, then renamed: never written through a planted link
    fd, tmp = tempfile.mkstemp(prefix=f".{png.name}.", suffix=".png", dir=png.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            fig.savefig(f, dpi=100, format="png")
        os.chmod(tmp, 0o644)
        os.replace(tmp, png)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    finally:
        plt.close(fig)
    return png
