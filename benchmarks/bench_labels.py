"""Label maps: bigresample's label methods against SimpleITK, on a synthetic atlas, file in to file out.

What it measures
----------------
A synthetic atlas (default 512x512x300 uint16 at 0.1 mm isotropic; written
slab by slab as ``atlas.nii`` by ``make_atlas``): Voronoi cells of random seeds
in smoothly warped coordinates (a third of the seeds in tight clusters, so some
cells are small), inside a warped ellipsoid with background 0 around it; every
``SHELL_EVERY``-th cell also gets a shell label: its voxels less than
``SHELL_THICKNESS`` voxels (warped) from the boundary with a neighbouring cell,
2-3 voxels thick; and ``FULL_BLOBS`` tiny ellipsoids (semi-axes 0.8-2 voxels) get labels of
their own.  Label ids are distinct random uint16 values.  At the default shape
that is ~700 labels; ``--shape`` scales the number of cells and blobs with the
volume (at least ``MIN_CELLS`` and ``MIN_BLOBS``).  Deterministic for a given ``--seed``.

Two jobs (``--jobs``): ``down`` 0.1 -> 0.25 mm (205x205x120) and ``up`` 0.1 ->
0.05 mm (1024x1024x600), both on bigresample's default ``center`` grid.
Methods (``--methods``):

* ``nearest``, ``linear``, ``cubic``, ``mode`` -- ``python -m bigresample IN OUT
  --spacing T T T --labels [METHOD] --workers 2 --quiet`` (``nearest`` is the
  bare ``--labels``); ``mode`` only for ``down`` (majority pooling is not
  defined for upsampling).  A method the installed bigresample refuses (its
  ``--dry-run`` exits non-zero) is reported "not available";
* ``sitk-labelgaussian``, ``sitk-nearest`` -- SimpleITK ``ResampleImageFilter``
  with ``sitkLabelGaussian`` (sigma = the input spacing, alpha 1: SimpleITK's
  choice) and ``sitkNearestNeighbor``, on the same grid (output origin at the
  continuous input index of bigresample's output voxel 0),
  ``ProcessObject_SetGlobalDefaultNumberOfThreads(2)``.

Per method: median wall time of ``--repeats`` runs (the methods' order rotated
every round), peak RSS of the process tree (``bench_speed.measure``: polled sum
of RSS over the tree, raised to any process's VmHWM), the number of input labels
(non-zero) present in the output, and the per-label Dice overlap with the
whole-array reference of that method (``sitk-labelgaussian`` against the
``linear`` reference, ``sitk-nearest`` against ``nearest``): mean, min and the
fraction of labels with Dice exactly 1, over the non-zero labels present in the
reference or the output; and the voxels that differ from the reference, with
how many of those sit at a near-tie (see below).  Dice is taken from the
untimed warm-up outputs.

The whole-array references (``reference_*``), written here from scipy and numpy
only, never from bigresample:

* ``nearest``: one ``scipy.ndimage.affine_transform(atlas, r, offset=x0,
  output_shape, order=0, mode="nearest")`` on the whole array (``r = t/s`` with
  ``s`` the spacing as stored, ``x0 = (n-1)/2 - (m-1)/2 r``: the center grid of
  docs/grids-and-exactness.md);
* ``linear`` / ``cubic``: the definition is, for every label L (0 included),
  the float64 indicator ``atlas == L`` interpolated by that call at order 1 / 3,
  then the arg-max over labels, ties to the smallest id.  700 whole-array calls
  being far too slow, each label is computed only where it can win: at order 1
  on the output voxels whose sample position lies within 1 voxel of the label's
  bounding box (elsewhere its value is exactly 0); at order 3 within
  ``cubic_reach`` voxels (10 for ~700 labels), beyond which
  ``|value| <= 21.3 * 0.268**(reach - 2)`` (the prefilter's impulse response
  ``sqrt(3) z^|n|``, ``z = 2 - sqrt(3)``, summed over a half-line times two
  whole lines, 3 each) is below ``0.5 / K`` for K labels, while the winner's
  value is at least ``1/K`` (the values of all labels sum to 1; checked on every
  voxel): so a label left out there cannot win.  The prefilter is scipy's own
  (``np.pad`` by 12 ``edge`` then ``spline_filter(mode="nearest")``, as
  ``affine_transform`` does) on a box whose faces lie in zeros or are the
  volume's faces: with the input zero beyond a face, the box's and the whole
  array's prefilter solve the same problem, up to rounding and scipy's mirror
  12 voxels beyond the padding.  The coefficients are then sampled separably
  (z, y, x; ``sample_box``) at the very positions the whole-array call computes
  (``Axis.positions``), with scipy's taps; only the order of the sums differs
  from scipy's, so a voxel whose two largest label values lie within
  ``NEAR_TIE`` (1e-9) is a *near-tie*, where the winner depends on rounding,
  and differences there are counted apart.  ``--check-references`` (small
  shapes) compares these references voxel for voxel with the plain definition
  (``plain_argmax``: one whole-array ``affine_transform`` per label);
* ``mode``: plain numpy: for every output voxel, the labels of the input voxels
  in its footprint (``footprint``: ``x(o) - r/2 <= i < x(o) + r/2`` per axis,
  inside the volume, as docs/grids-and-exactness.md, "Label maps" states it),
  the most frequent, ties to the smallest id; ``--check-references`` checks it
  at 500 random voxels against a loop.

For ``nearest`` a near-tie is a voxel whose sample position lies within 1e-9
of a half-way point on some axis.  The references are computed output slab by
output slab (``--ref-slab`` planes) and kept as uint16 ``.npy`` files in the
work folder, which is removed at the end (``--keep`` keeps it).  The ``up``
job's references (and so its Dice) cover the central half of every output axis
(``--up-ref-fraction``, an eighth of the volume): over all 1024x1024x600
voxels the cubic one alone would take ~15 min of CPU here.

How to run
----------
From the repository root, with the ``bench`` extra installed::

    python benchmarks/bench_labels.py                               # 512x512x300, 3 repeats
    python benchmarks/bench_labels.py --shape 128 128 75 --repeats 1   # a quick try
    python benchmarks/bench_labels.py --jobs down --methods linear sitk-labelgaussian

The report (markdown) goes to stdout, progress to stderr.
"""

from __future__ import annotations

import argparse
import math
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # the shared measuring helpers live beside this file
    sys.path.insert(0, str(HERE))

from bench_speed import Cell, Run, header_lines, log, measure, remove, report_run  # noqa: E402

SPACING = 0.1  # mm, isotropic input
ORIGIN = (-25.6, -25.6, -15.0)  # mm
FULL_SHAPE = (512, 512, 300)
FULL_CELLS = 575  # Voronoi cells at the full shape (scaled with the volume)
MIN_CELLS = 30
FULL_BLOBS = 30  # tiny ellipsoids (semi-axes 0.8-2 voxels) at the full shape
MIN_BLOBS = 5
CLUSTERED = 1 / 3  # fraction of the seeds in tight clusters: small cells
N_CLUSTERS = 12
SHELL_EVERY = 6  # every 6th cell gets a shell label
SHELL_THICKNESS = 2.5  # voxels (warped) from the boundary with the next cell
SLAB = 16  # z planes per slab when writing the atlas
JOBS = {"down": 0.25, "up": 0.05}  # mm, isotropic target
BIG_METHODS = ("nearest", "linear", "cubic", "mode")
SITK_METHODS = ("sitk-labelgaussian", "sitk-nearest")
REFERENCE_OF = {"nearest": "nearest", "linear": "linear", "cubic": "cubic", "mode": "mode",
                "sitk-labelgaussian": "linear", "sitk-nearest": "nearest"}
NEAR_TIE = 1e-9
NLAB = 65536  # uint16

# --------------------------------------------------------------------------- #
# The synthetic atlas                                                          #
# --------------------------------------------------------------------------- #


@dataclass
class Atlas:
    """What ``make_atlas`` drew: seeds (warped voxel coordinates), warp, ellipsoid, label ids."""

    shape: tuple[int, int, int]
    seeds: np.ndarray  # (n, 3)
    warp: list  # per component: [(amplitude, frequency vector, phase), ...]
    centre: np.ndarray
    semi_axes: np.ndarray
    cell_ids: np.ndarray  # uint16, one per seed
    shell_ids: np.ndarray  # uint16, one per seed (0: no shell)
    blobs: list  # (centre, semi-axes, label) of the tiny ellipsoids, voxel units (not warped)


def draw_atlas(shape, seed: int) -> Atlas:
    rng = np.random.default_rng(seed)
    shape_a = np.array(shape, dtype=np.float64)
    scale = float(np.cbrt(np.prod(shape_a) / np.prod(FULL_SHAPE)))
    n_cells = max(MIN_CELLS, int(round(FULL_CELLS * scale**3)))
    centre, semi = (shape_a - 1) / 2, 0.46 * shape_a
    warp = []
    for _ in range(3):
        terms = []
        for _ in range(3):
            direction = rng.normal(size=3)
            direction /= np.linalg.norm(direction)
            wavelength = rng.uniform(120, 300) * scale
            terms.append((rng.uniform(5, 9) * scale, direction / wavelength, rng.uniform(0, 2 * np.pi)))
        warp.append(terms)

    def inside(n):
        pts = []
        while sum(len(p) for p in pts) < n:
            p = rng.uniform(-1, 1, size=(2 * n + 8, 3))
            pts.append(p[(p**2).sum(1) < 1])
        return np.concatenate(pts)[:n]

    n_clustered = int(n_cells * CLUSTERED)
    centres = centre + 0.7 * semi * inside(N_CLUSTERS)
    members = centres[rng.integers(0, N_CLUSTERS, n_clustered)]
    clustered = members + rng.normal(scale=0.03 * shape_a.mean(), size=(n_clustered, 3))
    seeds = np.concatenate([centre + semi * inside(n_cells - n_clustered), clustered])
    has_shell = np.arange(n_cells) % SHELL_EVERY == 0
    n_shells = int(has_shell.sum())
    n_blobs = max(MIN_BLOBS, int(round(FULL_BLOBS * scale**3)))
    ids = rng.choice(np.arange(1, NLAB, dtype=np.int64), n_cells + n_shells + n_blobs, replace=False)
    shell_ids = np.zeros(n_cells, np.uint16)
    shell_ids[has_shell] = ids[n_cells:n_cells + n_shells]
    blobs = [(c, rng.uniform(0.8, 2.0, 3), int(lab))
             for c, lab in zip(centre + 0.8 * semi * inside(n_blobs), ids[n_cells + n_shells:])]
    return Atlas(tuple(shape), seeds, warp, centre, semi, ids[:n_cells].astype(np.uint16), shell_ids, blobs)


def warped(atlas: Atlas, points: np.ndarray) -> np.ndarray:
    """Points (N, 3) in voxel coordinates, moved by the smooth warp."""
    out = points.copy()
    for k, terms in enumerate(atlas.warp):
        for amplitude, freq, phase in terms:
            out[:, k] += amplitude * np.sin(2 * np.pi * points @ freq + phase)
    return out


def atlas_slab(atlas: Atlas, tree: cKDTree, z0: int, z1: int, workers: int) -> np.ndarray:
    """Planes ``z0:z1`` of the atlas, uint16 (X, Y, dz)."""
    x, y, z = np.meshgrid(np.arange(atlas.shape[0], dtype=np.float64), np.arange(atlas.shape[1], dtype=np.float64),
                          np.arange(z0, z1, dtype=np.float64), indexing="ij")
    u = warped(atlas, np.stack([x.ravel(), y.ravel(), z.ravel()], axis=1))
    inside = (((u - atlas.centre) / atlas.semi_axes) ** 2).sum(1) < 1
    u = u[inside]
    dist, idx = tree.query(u, k=2, workers=workers)
    out = np.zeros(x.size, np.uint16)
    labels = atlas.cell_ids[idx[:, 0]]
    s1, s2 = atlas.seeds[idx[:, 0]], atlas.seeds[idx[:, 1]]
    # distance to the bisector plane of the two nearest seeds: (d2^2 - d1^2) / (2 |s1 - s2|)
    to_boundary = (dist[:, 1] ** 2 - dist[:, 0] ** 2) / (2 * np.linalg.norm(s1 - s2, axis=1))
    shell = atlas.shell_ids[idx[:, 0]]
    in_shell = (shell > 0) & (to_boundary < SHELL_THICKNESS)
    labels[in_shell] = shell[in_shell]
    out[inside] = labels
    out = out.reshape(x.shape)
    for c, semi, label in atlas.blobs:  # tiny labels, drawn over the cells
        lo = np.maximum(np.floor(c - semi).astype(int), [0, 0, z0])
        hi = np.minimum(np.ceil(c + semi).astype(int) + 1, [atlas.shape[0], atlas.shape[1], z1])
        if np.any(hi <= lo):
            continue
        g = np.meshgrid(*(np.arange(a, b) for a, b in zip(lo, hi)), indexing="ij")
        hit = sum(((g[k] - c[k]) / semi[k]) ** 2 for k in range(3)) <= 1
        out[lo[0]:hi[0], lo[1]:hi[1], lo[2] - z0:hi[2] - z0][hit] = label
    return out


def nifti_header(shape, dtype=np.uint16) -> nib.Nifti1Header:
    affine = np.diag([SPACING, SPACING, SPACING, 1.0])
    affine[:3, 3] = ORIGIN
    hdr = nib.Nifti1Header()
    hdr.set_data_shape(shape)
    hdr.set_data_dtype(dtype)
    hdr.set_qform(affine, 1)
    hdr.set_sform(affine, 1)
    hdr.set_xyzt_units("mm")
    return hdr


def make_atlas(path: Path, shape, seed: int, workers: int) -> None:
    """Write the atlas slab by slab (never whole)."""
    from bigresample.nifti import NiftiWriter

    t0 = time.perf_counter()
    atlas = draw_atlas(shape, seed)
    tree = cKDTree(atlas.seeds)
    with NiftiWriter(path, nifti_header(shape)) as w:
        for z0 in range(0, shape[2], SLAB):
            w.write(atlas_slab(atlas, tree, z0, min(z0 + SLAB, shape[2]), workers))
    log(f"made {path} ({path.stat().st_size / 1e6:.1f} MB) in {time.perf_counter() - t0:.1f} s")


# --------------------------------------------------------------------------- #
# The grid (docs/grids-and-exactness.md, "Grids": center)                      #
# --------------------------------------------------------------------------- #


@dataclass(frozen=True)
class Axis:
    n: int
    m: int
    r: float  # input voxels per output voxel
    x0: float  # sample position of output voxel 0

    def positions(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Sample positions as scipy's ``affine_transform`` with a diagonal matrix computes them."""
        o = np.arange(start, self.m if stop is None else stop, dtype=np.float64)
        return (o + self.x0 / self.r) * self.r


def center_grid(path: Path, target: float) -> list[Axis]:
    img = nib.load(path)
    spacing = np.sqrt((img.affine[:3, :3] ** 2).sum(axis=0))  # as stored
    axes = []
    for n, s in zip(img.shape[:3], spacing):
        r = 1.0 if np.float32(target) == np.float32(s) else target / s
        m = max(1, int(round(n * (s / target))))
        axes.append(Axis(n, m, r, (n - 1) / 2.0 - (m - 1) / 2.0 * r))
    return axes


def out_shape(axes) -> tuple[int, int, int]:
    return tuple(a.m for a in axes)


# --------------------------------------------------------------------------- #
# The whole-array references                                                   #
# --------------------------------------------------------------------------- #


@dataclass
class Reference:
    labels: Path  # uint16 .npy over the output sub-volume ``box``
    near_tie: Path | None  # bool .npy over ``box``, or None
    seconds: float
    box: tuple  # slices of the output


def ref_box(shape, fraction: float) -> tuple:
    """The central ``fraction`` of every output axis (all of it for 1)."""
    box = []
    for m in shape:
        k = max(1, int(round(m * fraction)))
        box.append(slice((m - k) // 2, (m - k) // 2 + k))
    return tuple(box)


def box_shape(box) -> tuple:
    return tuple(b.stop - b.start for b in box)


def reference_nearest(data, axes, dst: Path, workdir: Path, box) -> Reference:
    """One whole-array order-0 call (into a memory-mapped file), kept over ``box``."""
    t0 = time.perf_counter()
    whole_path = workdir / "whole_nearest.npy"
    whole = np.lib.format.open_memmap(whole_path, mode="w+", dtype=np.uint16, shape=out_shape(axes))
    ndimage.affine_transform(data, np.array([a.r for a in axes]), offset=np.array([a.x0 for a in axes]),
                             output_shape=whole.shape, order=0, mode="nearest", output=whole)
    out = np.lib.format.open_memmap(dst, mode="w+", dtype=np.uint16, shape=box_shape(box))
    out[...] = whole[box]
    out.flush()
    del out, whole
    remove(whole_path)
    ties = [np.abs((a.positions(b.start, b.stop) % 1.0) - 0.5) < NEAR_TIE for a, b in zip(axes, box)]
    tie_path = workdir / (dst.stem + "_ties.npy")
    tie = np.lib.format.open_memmap(tie_path, mode="w+", dtype=bool, shape=box_shape(box))
    for z in range(tie.shape[2]):
        tie[:, :, z] = ties[0][:, None] | ties[1][None, :] | ties[2][z]
    tie.flush()
    return Reference(dst, tie_path, time.perf_counter() - t0, box)


def cubic_reach(n_labels: int) -> int:
    """Voxels beyond a label's bounding box past which its cubic value cannot win (see the docstring)."""
    z = 2 - math.sqrt(3)
    bound = 9 * math.sqrt(3) / (1 - z)  # a half-line of |h| (times z^d) by two whole lines (3 each)
    d = 0
    while bound * z**d >= 0.5 / n_labels:
        d += 1
    return d + 2  # cubic taps reach 2 voxels from the sample position


@dataclass
class LabelBox:
    """One label's coefficients on its box and the output ranges it may win."""

    label: int
    coef: np.ndarray  # float64: the indicator (order 1) or scipy's prefiltered, padded indicator (order 3)
    start: tuple  # input index of coef[0, 0, 0] (padding included)
    out_lo: tuple
    out_hi: tuple  # exclusive


def out_range(ax: Axis, lo: int, hi: int, reach: float) -> tuple[int, int]:
    """Output indices whose sample position lies in [lo - reach, hi + reach] (inclusive)."""
    x = ax.positions()
    sel = np.nonzero((x >= lo - reach - 1e-9) & (x <= hi + reach + 1e-9))[0]
    return (int(sel[0]), int(sel[-1]) + 1) if sel.size else (0, 0)


def label_box(data, label: int, bbox, axes, order: int, reach: float) -> LabelBox | None:
    ranges = [out_range(ax, s.start, s.stop - 1, reach) for ax, s in zip(axes, bbox)]
    if any(lo >= hi for lo, hi in ranges):
        return None
    box = []
    for ax, (lo, hi), s in zip(axes, ranges, bbox):
        x = ax.positions(lo, hi)
        a = min(int(np.floor(x.min())) - 2, s.start - 1)
        b = max(int(np.floor(x.max())) + 3, s.stop + 1)
        box.append(slice(max(0, a), min(ax.n, b)))
    ind = data[tuple(box)] == label
    start = [s.start for s in box]
    if order > 1:  # what affine_transform does before sampling: pad 12 by edge, prefilter in float64
        ind = ndimage.spline_filter(np.pad(ind, 12, mode="edge"), order, output=np.float64, mode="nearest")
        start = [v - 12 for v in start]
    else:  # edge padding: the taps clamped at the volume's faces, as mode "nearest"
        ind = np.pad(ind, 2, mode="edge").astype(np.float64)
        start = [v - 2 for v in start]
    return LabelBox(label, ind, tuple(start), tuple(lo for lo, _ in ranges), tuple(hi for _, hi in ranges))


def spline_weights(x: np.ndarray, order: int) -> tuple[np.ndarray, np.ndarray]:
    """(first tap, (len(x), order + 1) weights) of the B-spline of ``order`` (1 or 3) at positions ``x``,
    with scipy's taps: ``floor(x) - order // 2`` onwards."""
    f = np.floor(x)
    t = x - f
    if order == 1:
        return f.astype(np.int64), np.stack([1 - t, t], axis=1)
    u = 1 - t
    w = np.stack([u**3 / 6, (3 * t**3 - 6 * t**2 + 4) / 6, (3 * u**3 - 6 * u**2 + 4) / 6, t**3 / 6], axis=1)
    return f.astype(np.int64) - 1, w


def sample_axis(c: np.ndarray, axis: int, x: np.ndarray, start: int, order: int) -> np.ndarray:
    """``c`` (coefficients from input index ``start`` along ``axis``) sampled at positions ``x`` along it."""
    first, w = spline_weights(x, order)
    first -= start
    shape = [1, 1, 1]
    shape[axis] = len(x)
    out = None
    for k in range(order + 1):
        term = np.take(c, first + k, axis=axis) * w[:, k].reshape(shape)
        out = term if out is None else out + term
    return out


def sample_box(lb: LabelBox, axes, box, z0: int, z1: int, order: int):
    """The label's values on its output range within ``box`` and planes [z0, z1); (values, slices into the
    slab of ``box`` that starts at plane z0), or None if they do not meet.

    Separable: the coefficients sampled along z, then y, then x at the very positions the whole-array
    ``affine_transform`` computes (``Axis.positions``); only the order of the sums differs from scipy's
    (``--check-references`` compares with the plain definition)."""
    lo = [max(lb.out_lo[k], box[k].start) for k in range(2)] + [max(lb.out_lo[2], z0)]
    hi = [min(lb.out_hi[k], box[k].stop) for k in range(2)] + [min(lb.out_hi[2], z1)]
    if any(h <= l for l, h in zip(lo, hi)):
        return None
    vals = lb.coef
    for a in (2, 1, 0):
        vals = sample_axis(vals, a, axes[a].positions(lo[a], hi[a]), lb.start[a], order)
    origin = (box[0].start, box[1].start, z0)
    return vals, tuple(slice(l - o, h - o) for l, h, o in zip(lo, hi, origin))


def bounding_boxes(data) -> dict[int, tuple]:
    """{label: bounding box (slices)}, background 0 included."""
    boxes = {lab + 1: sl for lab, sl in enumerate(ndimage.find_objects(data)) if sl is not None}
    bg = data == 0
    if bg.any():
        spans = []
        for a in range(3):
            hit = np.nonzero(bg.any(axis=tuple(k for k in range(3) if k != a)))[0]
            spans.append(slice(int(hit[0]), int(hit[-1]) + 1))
        boxes[0] = tuple(spans)
    return dict(sorted(boxes.items()))


def reference_argmax(data, axes, order: int, dst: Path, workdir: Path, ref_slab: int, box) -> Reference:
    """Arg-max of every label's interpolated indicator over the output ``box``, slab by slab of output
    planes (see the module's docstring)."""
    t0 = time.perf_counter()
    boxes = bounding_boxes(data)
    n_labels = len(boxes)  # K, background included
    reach = 1.0 if order == 1 else float(cubic_reach(n_labels))
    shape = box_shape(box)
    out = np.lib.format.open_memmap(dst, mode="w+", dtype=np.uint16, shape=shape)
    tie_path = workdir / (dst.stem + "_ties.npy")
    tie = np.lib.format.open_memmap(tie_path, mode="w+", dtype=bool, shape=shape)
    ranges = {lab: [out_range(ax, b.start, b.stop - 1, reach) for ax, b in zip(axes, boxes[lab])] for lab in boxes}
    boxes = {lab: b for lab, b in boxes.items()  # only the labels that can win somewhere in the box
             if all(lo < hi and lo < k.stop and hi > k.start for (lo, hi), k in zip(ranges[lab], box))}
    z_range = {lab: ranges[lab][2] for lab in boxes}
    cache: dict[int, LabelBox | None] = {}
    for z0 in range(box[2].start, box[2].stop, ref_slab):
        z1 = min(z0 + ref_slab, box[2].stop)
        best = np.full(shape[:2] + (z1 - z0,), -np.inf)
        second = np.full_like(best, -np.inf)
        arg = np.zeros(best.shape, np.uint16)
        for lab in boxes:  # increasing id: a tie keeps the smaller id
            if z_range[lab][1] <= z0 or z_range[lab][0] >= z1:
                continue
            if lab not in cache:
                cache[lab] = label_box(data, lab, boxes[lab], axes, order, reach)
            got = sample_box(cache[lab], axes, box, z0, z1, order) if cache[lab] else None
            if got is None:
                continue
            vals, where = got
            b, sec, a = best[where], second[where], arg[where]
            wins = vals > b
            second[where] = np.where(wins, b, np.maximum(sec, vals))
            best[where] = np.where(wins, vals, b)
            arg[where] = np.where(wins, np.uint16(lab), a)
        for lab in [k for k in cache if z_range[k][1] <= z1]:
            del cache[lab]
        if not np.all(best >= 1.0 / n_labels - 1e-12):
            raise AssertionError("a winning value below 1/K: the reach argument does not hold")
        out[:, :, z0 - box[2].start:z1 - box[2].start] = arg
        tie[:, :, z0 - box[2].start:z1 - box[2].start] = (best - second) < NEAR_TIE
        log(f"    reference order {order}: output planes {z0}-{z1} of {box[2].start}-{box[2].stop}, "
            f"{time.perf_counter() - t0:.0f} s, {len(cache)} boxes cached")
    out.flush()
    tie.flush()
    return Reference(dst, tie_path, time.perf_counter() - t0, box)


def plain_argmax(data, axes, order: int) -> tuple[np.ndarray, np.ndarray]:
    """The definition itself, for ``--check-references`` on small shapes: one whole-array
    ``affine_transform`` per label indicator, arg-max, ties to the smallest id; (labels, top-2 gap)."""
    best = np.full(out_shape(axes), -np.inf)
    second = np.full_like(best, -np.inf)
    arg = np.zeros(best.shape, np.uint16)
    for lab in np.unique(data):
        vals = ndimage.affine_transform((data == lab).astype(np.float64), np.array([a.r for a in axes]),
                                        offset=np.array([a.x0 for a in axes]), output_shape=best.shape,
                                        order=order, mode="nearest", output=np.float64)
        wins = vals > best
        second = np.where(wins, best, np.maximum(second, vals))
        best = np.where(wins, vals, best)
        arg = np.where(wins, np.uint16(lab), arg)
    return arg, best - second


def check_references(data, axes, refs: dict) -> None:
    """Compare the boxed references with the plain whole-array definition (small shapes only)."""
    for kind, order in (("linear", 1), ("cubic", 3)):
        if kind not in refs:
            continue
        plain, gap = plain_argmax(data, axes, order)
        boxed = np.load(refs[kind].labels)
        plain, gap = plain[refs[kind].box], gap[refs[kind].box]
        differ = plain != boxed
        log(f"  check {kind}: boxed reference vs whole-array definition: {int(differ.sum())} voxels differ, "
            f"{int((differ & (gap >= NEAR_TIE)).sum())} of them away from near-ties "
            f"({int((gap < NEAR_TIE).sum())} near-tie voxels)")
        if (differ & (gap >= NEAR_TIE)).any():
            raise AssertionError(f"the boxed {kind} reference differs from the definition away from near-ties")
    if "mode" in refs:
        check_mode(data, axes, refs["mode"])


def check_mode(data, axes, ref: Reference, n: int = 500) -> None:
    """The mode reference at ``n`` random output voxels against a loop over each one's footprint."""
    rng = np.random.default_rng(0)
    got = np.load(ref.labels)
    bad = 0
    for _ in range(n):
        o = [int(rng.integers(b.start, b.stop)) for b in ref.box]
        lo_hi = []
        for ax, k in zip(axes, o):
            x = ax.positions(k, k + 1)[0]
            lo_hi.append((max(0, math.ceil(x - ax.r / 2)), min(ax.n, math.ceil(x + ax.r / 2))))
        foot = data[tuple(slice(lo, max(lo, hi)) for lo, hi in lo_hi)].ravel()
        labels, counts = np.unique(foot, return_counts=True)  # sorted: argmax takes the smallest on ties
        want = labels[np.argmax(counts)] if foot.size else 0
        bad += int(got[tuple(k - b.start for k, b in zip(o, ref.box))] != want)
    log(f"  check mode: {bad} of {n} random output voxels differ from a loop over their footprints")
    if bad:
        raise AssertionError("the mode reference differs from its definition")


def footprint(ax: Axis) -> np.ndarray:
    """(m, W) input indices in each output voxel's footprint along ``ax``, -1 padded.

    Output voxel o covers the input positions [x(o) - r/2, x(o) + r/2); an input
    voxel i is in it when its centre is: ``x(o) - r/2 <= i < x(o) + r/2``;
    indices outside the volume are left out.
    """
    x = ax.positions()
    lo = np.ceil(x - ax.r / 2).astype(np.int64)
    hi = np.ceil(x + ax.r / 2).astype(np.int64)  # exclusive
    width = int((hi - lo).max())
    idx = lo[:, None] + np.arange(width)[None, :]
    valid = (idx < hi[:, None]) & (idx >= 0) & (idx < ax.n)
    return np.where(valid, idx, -1)


def reference_mode(data, axes, dst: Path, ref_slab: int, box) -> Reference:
    """Majority over each output voxel's footprint (plain numpy), ties to the smallest label."""
    t0 = time.perf_counter()
    shape = box_shape(box)
    out = np.lib.format.open_memmap(dst, mode="w+", dtype=np.uint16, shape=shape)
    fx, fy, fz = (footprint(ax)[b] for ax, b in zip(axes, box))
    for z0 in range(0, shape[2], ref_slab):
        z1 = min(z0 + ref_slab, shape[2])
        ix = fx[:, None, None, :, None, None]
        iy = fy[None, :, None, None, :, None]
        iz = fz[z0:z1][None, None, :, None, None, :]
        vals = data[np.maximum(ix, 0), np.maximum(iy, 0), np.maximum(iz, 0)].astype(np.int64)
        vals = np.where((ix >= 0) & (iy >= 0) & (iz >= 0), vals, NLAB)  # NLAB: outside, never counted
        vals = vals.reshape(-1, vals.shape[3] * vals.shape[4] * vals.shape[5])
        out[:, :, z0:z1] = majority(vals).reshape(shape[0], shape[1], z1 - z0)
    out.flush()
    return Reference(dst, None, time.perf_counter() - t0, box)


def majority(vals: np.ndarray) -> np.ndarray:
    """Per row of ``vals`` (values < NLAB count; NLAB is padding): the most frequent, smallest on ties."""
    rows = np.repeat(np.arange(vals.shape[0], dtype=np.int64), vals.shape[1])
    flat = vals.ravel()
    keep = flat < NLAB
    key, counts = np.unique(rows[keep] * NLAB + flat[keep], return_counts=True)
    row, label = key // NLAB, key % NLAB
    order = np.lexsort((label, -counts, row))  # per row: largest count first, then smallest label
    first = np.ones(order.size, bool)
    first[1:] = row[order][1:] != row[order][:-1]
    result = np.zeros(vals.shape[0], np.uint16)
    result[row[order][first]] = label[order][first]
    return result


# --------------------------------------------------------------------------- #
# Comparing an output with its reference                                      #
# --------------------------------------------------------------------------- #


@dataclass
class Agreement:
    labels_in: int  # non-zero labels in the input
    labels_out: int  # of them, present in the output
    labels_ref: int  # of them, present in the reference (its box)
    dice: np.ndarray  # per non-zero label present in the reference or the output
    differ: int  # voxels != reference
    differ_at_ties: int
    voxels: int

    def row(self) -> str:
        d = self.dice
        return (f"{self.labels_out} / {self.labels_in} | {self.labels_ref} | {d.mean():.4f} | {d.min():.4f} "
                f"| {np.mean(d == 1.0):.3f} | {self.differ} ({self.differ_at_ties}) "
                f"| {self.differ / self.voxels:.1e}")


def compare(output: Path, ref: Reference, input_labels: np.ndarray, slab: int = 32) -> Agreement:
    """Labels present in the whole output; Dice and differing voxels over the reference's box."""
    got_img = nib.load(output)
    want = np.load(ref.labels, mmap_mode="r")
    ties = np.load(ref.near_tie, mmap_mode="r") if ref.near_tie else None
    bx, by, bz = ref.box
    if tuple(got_img.shape[:3])[2] < bz.stop or box_shape(ref.box) != want.shape:
        raise ValueError(f"{output.name}: shape {got_img.shape} does not hold the reference's box")
    n_all, n_got, n_want, n_both = (np.zeros(NLAB, np.int64) for _ in range(4))
    differ = at_ties = 0
    for z0 in range(0, got_img.shape[2], slab):
        z1 = min(z0 + slab, got_img.shape[2])
        whole = np.asarray(got_img.dataobj[:, :, z0:z1])
        if whole.dtype != np.uint16:
            raise ValueError(f"{output.name}: {whole.dtype}, not uint16")
        n_all += np.bincount(whole.ravel(), minlength=NLAB)
        lo, hi = max(z0, bz.start), min(z1, bz.stop)
        if hi <= lo:
            continue
        g = whole[bx, by, lo - z0:hi - z0]
        w = np.asarray(want[:, :, lo - bz.start:hi - bz.start])
        same = g == w
        n_got += np.bincount(g.ravel(), minlength=NLAB)
        n_want += np.bincount(w.ravel(), minlength=NLAB)
        n_both += np.bincount(w[same], minlength=NLAB)
        differ += int((~same).sum())
        if ties is not None:
            at_ties += int((~same & np.asarray(ties[:, :, lo - bz.start:hi - bz.start])).sum())
    nz = input_labels[input_labels > 0]
    present = np.nonzero((n_got + n_want)[1:] > 0)[0] + 1
    dice = 2 * n_both[present] / (n_got[present] + n_want[present])
    return Agreement(len(nz), int((n_all[nz] > 0).sum()), int((n_want[nz] > 0).sum()), dice, differ, at_ties,
                     int(np.prod(want.shape)))


# --------------------------------------------------------------------------- #
# Commands                                                                     #
# --------------------------------------------------------------------------- #

SITK_SCRIPT = '''\
"""SimpleITK: ReadImage, ResampleImageFilter onto the given grid, WriteImage."""
import sys
import SimpleITK as sitk

src, dst, method, threads = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
size = [int(v) for v in sys.argv[5:8]]
spacing = [float(v) for v in sys.argv[8:11]]
start = [float(v) for v in sys.argv[11:14]]  # continuous input index of output voxel 0
sitk.ProcessObject_SetGlobalDefaultNumberOfThreads(threads)
interpolator = {"sitk-labelgaussian": sitk.sitkLabelGaussian, "sitk-nearest": sitk.sitkNearestNeighbor}[method]
img = sitk.ReadImage(src)
f = sitk.ResampleImageFilter()
f.SetSize(size)
f.SetOutputSpacing(spacing)
f.SetOutputDirection(img.GetDirection())
f.SetOutputOrigin(img.TransformContinuousIndexToPhysicalPoint(start))
f.SetInterpolator(interpolator)
f.SetDefaultPixelValue(0)
f.SetOutputPixelType(img.GetPixelID())
sitk.WriteImage(f.Execute(img), dst)
'''


def command(method: str, src: Path, dst: Path, target: float, axes, args, script: Path, dry_run=False) -> list[str]:
    if method in SITK_METHODS:
        spacing = [target] * 3  # SimpleITK steps the input index by target / (the spacing it read): r
        return [sys.executable, str(script), str(src), str(dst), method, str(args.threads),
                *map(str, out_shape(axes)), *(repr(float(v)) for v in spacing), *(repr(float(a.x0)) for a in axes)]
    labels = ["--labels"] if method == "nearest" else ["--labels", method]
    return [sys.executable, "-m", "bigresample", str(src), str(dst), "--spacing", *[str(target)] * 3, *labels,
            "--workers", str(args.threads), "--quiet", *(["--dry-run"] if dry_run else [])]


def available(method: str, src: Path, workdir: Path, target: float, axes, args, script: Path) -> str | None:
    """None if the installed bigresample accepts the method (a --dry-run), else its error line."""
    if method in SITK_METHODS:
        return None
    run = measure(command(method, src, workdir / "probe.nii", target, axes, args, script, dry_run=True), workdir,
                  120.0)
    remove(workdir / "probe.nii")
    if run.ok:
        return None
    lines = [ln for ln in run.stderr.strip().splitlines() if ln.strip()]
    return lines[-1] if lines else f"exit status {run.returncode}"


# --------------------------------------------------------------------------- #
# The benchmark                                                               #
# --------------------------------------------------------------------------- #


@dataclass
class JobResult:
    target: float
    shape: tuple
    box: tuple  # the output sub-volume of the references
    cells: dict = field(default_factory=dict)  # method -> Cell
    agreement: dict = field(default_factory=dict)  # method -> Agreement
    refs: dict = field(default_factory=dict)  # reference kind -> seconds
    missing: dict = field(default_factory=dict)  # method -> why not available


def make_references(kinds, data, axes, workdir: Path, args, box) -> dict[str, Reference]:
    refs = {}
    for kind in kinds:
        dst = workdir / f"ref_{kind}.npy"
        log(f"  reference {kind} ...")
        if kind == "nearest":
            refs[kind] = reference_nearest(data, axes, dst, workdir, box)
        elif kind == "mode":
            refs[kind] = reference_mode(data, axes, dst, args.ref_slab, box)
        else:
            order = {"linear": 1, "cubic": 3}[kind]
            refs[kind] = reference_argmax(data, axes, order, dst, workdir, args.ref_slab, box)
        log(f"  reference {kind}: {refs[kind].seconds:.1f} s")
    return refs


def run_job(name: str, src: Path, data, input_labels, workdir: Path, script: Path, args) -> JobResult:
    target = JOBS[name]
    axes = center_grid(src, target)
    box = ref_box(out_shape(axes), args.up_ref_fraction if name == "up" else 1.0)
    res = JobResult(target, out_shape(axes), box)
    methods = [m for m in args.methods if not (m == "mode" and name == "up") and f"{name}:{m}" not in args.skip]
    for m in methods:
        why = available(m, src, workdir, target, axes, args, script)
        if why:
            res.missing[m] = why
            log(f"[{name}] {m}: not available ({why})")
    methods = [m for m in methods if m not in res.missing]
    checked = {"linear", "cubic"} | ({"mode"} if name == "down" else set())
    kinds = {REFERENCE_OF[m] for m in methods} | (checked if args.check_references else set())
    refs = make_references(sorted(kinds), data, axes, workdir, args, box)
    res.refs = {k: r.seconds for k, r in refs.items()}
    if args.check_references:
        check_references(data, axes, refs)
    dst = workdir / "out.nii"
    for m in methods:  # warm-up: untimed, its output compared with the reference
        res.cells[m] = Cell()
        run = measure(command(m, src, dst, target, axes, args, script), workdir, args.timeout)
        report_run(f"[{name} warm-up] {m}", run)
        if run.ok:
            res.agreement[m] = compare(dst, refs[REFERENCE_OF[m]], input_labels)
            log(f"    vs reference {REFERENCE_OF[m]}: {res.agreement[m].row()}")
        else:
            res.cells[m].runs.append(run)
        remove(dst)
    for r in refs.values():
        remove(r.labels)
        if r.near_tie:
            remove(r.near_tie)
    timed = [m for m in methods if not res.cells[m].failed]
    for rep in range(args.repeats):
        k = rep % max(1, len(timed))
        for m in timed[k:] + timed[:k]:
            run = measure(command(m, src, dst, target, axes, args, script), workdir, args.timeout)
            remove(dst)
            report_run(f"[{name} {rep + 1}/{args.repeats}] {m}", run)
            res.cells[m].runs.append(run)
    return res


def job_table(name: str, res: JobResult, methods) -> list[str]:
    part = np.prod(box_shape(res.box)) / np.prod(res.shape)
    sub = "the whole output" if part == 1 else (
        "output voxels " + " x ".join(f"{b.start}-{b.stop - 1}" for b in res.box)
        + f" ({'x'.join(map(str, box_shape(res.box)))}, the central {part:.1%})")
    rows = [f"### {name}: 0.1 -> {res.target} mm, output {'x'.join(map(str, res.shape))}; "
            f"references, Dice and differences over {sub}", "",
            "| method | median wall (s) | min wall (s) | median peak RSS (MiB) | time / sitk-nearest "
            "| labels in output / input | in reference | reference | Dice mean | Dice min | Dice = 1 "
            "| voxels ≠ reference (at near-ties) | fraction ≠ |",
            "|---|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|"]
    peer = res.cells.get("sitk-nearest")
    peer_t = peer.median_time() if peer else None
    for m in methods:
        if m in res.missing:
            rows.append(f"| {m} | not available | | | | | | | | | | | |")
            continue
        cell = res.cells.get(m)
        if cell is None:
            why = "not defined for upsampling" if m == "mode" and name == "up" else "skipped (--skip)"
            rows.append(f"| {m} | {why} | | | | | | | | | | | |")
            continue
        t = cell.median_time()
        if t is None and not cell.runs:
            rows.append(f"| {m} | not timed | | | | " + (
                f"{res.agreement[m].labels_out} / {res.agreement[m].labels_in} | {res.agreement[m].labels_ref} | "
                f"{REFERENCE_OF[m]} | " + res.agreement[m].row().split(" | ", 2)[2] if m in res.agreement
                else "- | - | - | - | - | - | - | -") + " |")
            continue
        if t is None:
            rows.append(f"| {m} | error | | | | | | | | | | | |")
            continue
        ratio = f"{t / peer_t:.2f}" if peer_t else "-"
        agree = res.agreement.get(m)
        tail = f"{REFERENCE_OF[m]} | " + agree.row().split(" | ", 2)[2] if agree else "- | - | - | - | - | -"
        head = f"{agree.labels_out} / {agree.labels_in} | {agree.labels_ref}" if agree else "- | -"
        rows.append(f"| {m} | {t:.2f} | {cell.min_time():.2f} | {cell.median_rss():.0f} | {ratio} | {head} "
                    f"| {tail} |")
    refs = ", ".join(f"{k} {v:.0f} s" for k, v in res.refs.items())
    rows += ["", f"Reference computation times (not timed above): {refs}."]
    return rows


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shape", nargs=3, type=int, default=FULL_SHAPE, metavar=("X", "Y", "Z"),
                   help="atlas shape in voxels at 0.1 mm (default 512 512 300)")
    p.add_argument("--seed", type=int, default=18, help="random seed of the atlas (default 18)")
    p.add_argument("--jobs", nargs="+", choices=tuple(JOBS), default=list(JOBS), help="default: down up")
    p.add_argument("--methods", nargs="+", choices=BIG_METHODS + SITK_METHODS, default=list(BIG_METHODS + SITK_METHODS))
    p.add_argument("--repeats", type=int, default=3, help="timed rounds (default 3)")
    p.add_argument("--threads", type=int, default=2, help="threads of every tool (default 2)")
    p.add_argument("--ref-slab", type=int, default=32, help="output planes per slab of the references (default 32)")
    p.add_argument("--timeout", type=float, default=1800.0, help="seconds before a run is killed (default 1800)")
    p.add_argument("--workdir", type=Path, help="work folder (default: a fresh one under /tmp, removed at the end); "
                                               "an atlas.nii of the same shape and seed there is reused")
    p.add_argument("--keep", action="store_true", help="keep the work folder")
    p.add_argument("--up-ref-fraction", type=float, default=0.5,
                   help="the up job's references (and so its Dice) cover the central FRACTION of every output axis "
                        "(default 0.5: an eighth of the volume; 1 for all of it)")
    p.add_argument("--skip", nargs="+", default=[], metavar="JOB:METHOD",
                   help="leave these out, e.g. up:sitk-labelgaussian")
    p.add_argument("--check-references", action="store_true",
                   help="also compute the linear/cubic references by their plain definition (one whole-array "
                        "call per label) and check the boxed ones against it: small shapes only")
    args = p.parse_args(argv)
    if args.repeats < 0 or min(args.shape) < 8 or args.threads < 1 or args.ref_slab < 1:
        p.error("--repeats >= 0, --shape values >= 8, --threads >= 1, --ref-slab >= 1")
    if not 0 < args.up_ref_fraction <= 1:
        p.error("--up-ref-fraction must be in (0, 1]")
    return args


def atlas_path(workdir: Path, args) -> Path:
    src = workdir / f"atlas_{'x'.join(map(str, args.shape))}_seed{args.seed}.nii"
    if src.exists():
        log(f"reusing {src}")
    else:
        make_atlas(src, tuple(args.shape), args.seed, args.threads)
    return src


def main(argv=None) -> int:
    args = parse_args(argv)
    created = args.workdir is None
    workdir = Path(tempfile.mkdtemp(prefix="bench_labels_", dir="/tmp")) if created else args.workdir
    workdir.mkdir(parents=True, exist_ok=True)
    print("\n".join(header_lines("bench_labels")), flush=True)
    try:
        src = atlas_path(workdir, args)
        script = workdir / "sitk_labels.py"
        script.write_text(SITK_SCRIPT)
        data = np.asarray(nib.load(src).dataobj)
        counts = np.bincount(data.ravel(), minlength=NLAB)
        input_labels = np.nonzero(counts)[0]
        sizes = counts[input_labels[input_labels > 0]]
        print(f"Atlas {'x'.join(map(str, args.shape))} uint16 at {SPACING} mm, seed {args.seed}: "
              f"{(input_labels > 0).sum()} labels + background ({counts[0] / data.size:.0%} of the voxels); "
              f"label sizes {sizes.min()}-{sizes.max()} voxels (median {int(np.median(sizes))}); "
              f"{args.repeats} timed repeat(s) after 1 warm-up, {args.threads} threads each; "
              f"work folder {workdir}\n", flush=True)
        print("## Wall time, peak RSS (median of the timed runs) and agreement with the references "
              "(warm-up outputs)\n", flush=True)
        results = {}
        for name in args.jobs:  # each job's table as soon as it is done
            results[name] = run_job(name, src, data, input_labels, workdir, script, args)
            print("\n".join(job_table(name, results[name], args.methods)) + "\n", flush=True)
        print("Dice: per non-zero label present in the reference or the output, 2|A∩B| / (|A| + |B|); "
              "'Dice = 1' is the fraction of those labels with Dice exactly 1.  Near-ties: voxels whose two "
              f"largest label values differ by < {NEAR_TIE:g} (linear, cubic), or whose sample position is within "
              f"{NEAR_TIE:g} of half-way (nearest); mode has none.")
        failed = [m for r in results.values() for m, c in r.cells.items() if c.failed]
        return 1 if failed else 0
    finally:
        if created and not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
        elif created:
            log(f"kept {workdir}")


if __name__ == "__main__":
    sys.exit(main())
