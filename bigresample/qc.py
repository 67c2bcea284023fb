"""A quality-control picture: orthogonal planes of input and output, one above the other.

Every panel is drawn in one frame, the world's (RAS+ millimetres from each
image's affine: x towards the subject's right, y anterior, z superior, as
NIfTI's world space has it), so the same anatomy sits at the same drawn coordinates in both rows,
whatever flips, permutations or rotations lie between the two grids.  The
three planes are the world planes (constant z: axial, constant y: coronal,
constant x: sagittal) through the output's central voxel.  Each row samples its
own image on that plane by nearest neighbour, at its own finest spacing (at
most ``MAX_PIXELS`` a side), so each row shows its own resolution; outside an
image is black.  Both rows of a column share their world limits (the union of
the two images' extents), so that they compare without reading tick labels;
each subtitle gives the image's shape and spacing in the header's own units,
and for a 4-D image which volume is drawn (the first).  One grey scale for both rows (1st to 99th percentile of the
input's planes).  Only the voxels on the six planes are read, in small boxes
(``gather``).  matplotlib is an optional dependency
(``pip install 'bigresample[qc]'``).
"""

from __future__ import annotations

import itertools
import os
import tempfile
from pathlib import Path

import numpy as np

AXES = "xyz"
VIEWS = (("axial", 2), ("coronal", 1), ("sagittal", 0))  # (name, world axis held fixed)
MAX_PIXELS = 800  # a side of a panel's image, at most
BOX_VOXELS = 2**22  # the largest box of voxels read at once for a panel


def require_matplotlib() -> None:
    import importlib.util

    if importlib.util.find_spec("matplotlib") is None:
        raise ImportError("--qc needs matplotlib: pip install 'bigresample[qc]'")


def gather(source, shape, idx: np.ndarray, limit: int = BOX_VOXELS) -> np.ndarray:
    """The values at voxel indices ``idx`` (N, 3), in range, of the first volume of
    ``source``: each read is the bounding box of a group of indices, the groups
    split along their longest side until the box holds at most ``limit`` voxels
    (an oblique plane is read as thin boxes, never as the volume)."""
    out = np.empty(len(idx), dtype=np.float64)
    extra = tuple(slice(0, 1) for _ in shape[3:])

    def read(sel):
        lo, hi = idx[sel].min(axis=0), idx[sel].max(axis=0) + 1
        if np.prod(hi - lo) > limit and len(sel) > 1:
            axis = int(np.argmax(hi - lo))
            order = sel[np.argsort(idx[sel, axis], kind="stable")]
            half = len(order) // 2
            read(order[:half])
            read(order[half:])
            return
        box = np.asarray(source[tuple(slice(a, b) for a, b in zip(lo, hi)) + extra], dtype=np.float64)
        box = box.reshape(tuple(hi - lo))
        local = idx[sel] - lo
        out[sel] = box[local[:, 0], local[:, 1], local[:, 2]]

    if len(idx):
        read(np.arange(len(idx)))
    return out


def world_plane(source, shape, affine, to_mm: float, axis: int, at_mm: float, slope=1.0, inter=0.0):
    """The image (``source``, ``shape``, ``affine``) sampled by nearest neighbour on
    the world plane ``axis`` = ``at_mm``: (pixels (nb, na), extent (a0, a1, b0, b1)
    in mm), ``a``, ``b`` the two other world axes in x, y, z order; NaN outside."""
    a, b = [i for i in range(3) if i != axis]
    aff = np.asarray(affine, dtype=np.float64).copy()
    aff[:3, :] *= to_mm  # world in mm
    corners = np.array(list(itertools.product(*[(-0.5, n - 0.5) for n in shape[:3]])))
    world = corners @ aff[:3, :3].T + aff[:3, 3]
    lo, hi = world.min(axis=0), world.max(axis=0)
    step = float(np.sqrt((aff[:3, :3] ** 2).sum(axis=0)).min())
    step = max(step, (hi[a] - lo[a]) / MAX_PIXELS, (hi[b] - lo[b]) / MAX_PIXELS)
    na = max(1, int(np.ceil((hi[a] - lo[a]) / step - 1e-9)))
    nb = max(1, int(np.ceil((hi[b] - lo[b]) / step - 1e-9)))
    ca = lo[a] + (np.arange(na) + 0.5) * step
    cb = lo[b] + (np.arange(nb) + 0.5) * step
    pts = np.zeros((nb, na, 3))
    pts[..., a], pts[..., b], pts[..., axis] = ca[None, :], cb[:, None], at_mm
    vox = np.rint((pts.reshape(-1, 3) - aff[:3, 3]) @ np.linalg.inv(aff[:3, :3]).T).astype(np.int64)
    inside = np.all((vox >= 0) & (vox < np.array(shape[:3])), axis=1)
    values = np.full(len(vox), np.nan)
    values[inside] = gather(source, shape, vox[inside]) * slope + inter
    return values.reshape(nb, na), (lo[a], lo[a] + na * step, lo[b], lo[b] + nb * step)


#: How a panel's subtitle names a header's spatial units (``volume.InputVolume.units``), and the unit's size in mm
UNIT_NAMES = {"mm": ("mm", 1.0), "micron": ("um", 1e-3), "meter": ("m", 1e3), "unknown": ("(unknown units)", 1.0)}


def voxel_text(shape, spacing_mm, units: str = "mm") -> str:
    """``128x96x24 voxels of 2 x 2 x 2.2 mm``: the spacing in the header's own units; a 4-D (or more)
    image adds which volume is drawn (the first: ``gather`` reads index 0 of every further axis)."""
    name, size = UNIT_NAMES.get(units, UNIT_NAMES["mm"])
    text = (f"{'x'.join(map(str, shape[:3]))} voxels of "
            + " x ".join(f"{v / size:.4g}" for v in np.asarray(spacing_mm, dtype=float)[:3]) + f" {name}")
    extra = [int(n) for n in shape[3:]]
    if any(n > 1 for n in extra):
        text += f", volume 1 of {int(np.prod(extra))}"
    return text


def shared_limits(extents) -> tuple[float, float, float, float]:
    """The union of the panels' extents (a0, a1, b0, b1): one frame for both rows of a column."""
    e = np.asarray(extents, dtype=float)
    return float(e[:, 0].min()), float(e[:, 1].max()), float(e[:, 2].min()), float(e[:, 3].max())


def qc_figure(*, in_source, in_shape, in_affine, in_spacing_mm, out_source, out_shape, out_affine,
              out_spacing_mm, in_slope=1.0, in_inter=0.0, title="", units="mm"):
    """The matplotlib figure (2 rows: input, output; 3 columns: axial, coronal, sagittal).
    Both rows of a column share their world limits (the union of both images' extents);
    ``units``: the input's header units (the output keeps them), for the subtitles."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    in_affine, out_affine = np.asarray(in_affine, float), np.asarray(out_affine, float)
    # the header's units (mm, microns...) to mm; both affines are in the input's units
    to_mm = float(np.asarray(in_spacing_mm, float)[0] / np.sqrt((in_affine[:3, 0] ** 2).sum()))
    centre = out_affine @ np.append([(n - 1) // 2 for n in out_shape[:3]], 1.0)
    point = centre[:3] * to_mm
    rows = [("input", in_source, in_shape, in_affine, in_spacing_mm, in_slope, in_inter),
            ("output", out_source, out_shape, out_affine, out_spacing_mm, 1.0, 0.0)]
    panels = [[world_plane(src, shape, aff, to_mm, axis, point[axis], sc, it) for _, axis in VIEWS]
              for _, src, shape, aff, _, sc, it in rows]
    finite = np.concatenate([p[np.isfinite(p)] for p, _ in panels[0]] + [np.zeros(0)])
    lo, hi = np.percentile(finite, [1, 99]) if finite.size else (0.0, 1.0)
    if hi <= lo:
        hi = lo + 1.0
    cmap = matplotlib.colormaps["gray"].with_extremes(bad="black")
    fig, axs = plt.subplots(2, 3, figsize=(12, 9), squeeze=False, layout="constrained")
    limits = [shared_limits([panels[0][c][1], panels[1][c][1]]) for c in range(len(VIEWS))]
    for r, (label, _, shape, _, sp, _, _) in enumerate(rows):
        for c, (view, axis) in enumerate(VIEWS):
            a, b = [i for i in range(3) if i != axis]
            pixels, extent = panels[r][c]
            ax = axs[r][c]
            ax.set_facecolor("black")  # outside the image, inside the shared limits
            ax.imshow(pixels, cmap=cmap, vmin=lo, vmax=hi, origin="lower", interpolation="nearest", extent=extent)
            ax.set_xlim(*limits[c][:2])
            ax.set_ylim(*limits[c][2:])
            ax.set_title(f"{label} {view}, {AXES[axis]} = {point[axis]:.1f} mm\n"
                         + voxel_text(shape, sp, units), fontsize=9)
            ax.set_xlabel(f"{AXES[a]} (mm, world RAS+)", fontsize=8)
            ax.set_ylabel(f"{AXES[b]} (mm, world RAS+)", fontsize=8)
            ax.tick_params(labelsize=7)
    if title:
        fig.suptitle(title + "\nboth rows in world coordinates: the same anatomy at the same place", fontsize=10)
    return fig


def write_qc(png, **kw) -> Path:
    """Draw the picture (``qc_figure``'s keywords) into ``png``.  ``in_source``
    gives raw values (scaled here by ``in_slope``/``in_inter``), ``out_source``
    scaled ones (a nibabel proxy)."""
    fig = qc_figure(**kw)
    import matplotlib.pyplot as plt

    try:
        return _save(fig, Path(png))
    finally:
        plt.close(fig)


def _save(fig, png: Path) -> Path:
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
    return png
