"""Grid geometry: spacing, output grids, index maps and output affines.

numpy only, no files.  Everything here works on a ``(shape, affine)`` pair so it
can be tested without a single image (as ``nibabel.spaces`` does).

Conventions (docs/grids-and-exactness.md, "Grids").  Per spatial axis: ``n`` input voxels,
spacing ``s`` (the norm of that affine column, so rotated affines work),
requested spacing ``t``, ratio ``r = t / s``, output size
``m = max(1, int(round(n * (s / t))))`` (as ``scipy.ndimage.zoom`` computes it
from the zoom factor ``s / t``).  The continuous input index sampled by output
index ``o`` is

=========  =================================  ==================================
grid       x(o)                               output affine
=========  =================================  ==================================
center     (o - (m-1)/2) * r + (n-1)/2         columns * r, origin A_in @ x(0)
origin     o * r                               columns * r, origin unchanged
zoom       o * (n-1)/(m-1)   (0 if m == 1)     columns * (n-1)/(m-1)
=========  =================================  ==================================

and for every grid ``A_out @ [o, 1] == A_in @ [x(o), 1]``.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
from .errors import BigresampleError

GRIDS = ("center", "origin", "zoom")


class GeometryError(BigresampleError):
    """A shape, spacing or affine that cannot describe a resampling."""


def parse_grid(grid: str) -> str:
    if grid not in GRIDS:
        raise GeometryError(f"grid must be one of {', '.join(GRIDS)}; got {grid!r}")
    return grid


def voxel_spacing(affine) -> np.ndarray:
    """Voxel spacing per axis: the norms of the affine's first three columns.

    Parameters
    ----------
    affine : (4, 4) array

    Returns
    -------
    spacing : (3,) float64 array
        Rotation-safe: an oblique affine gives the true spacing, not the
        diagonal.
    """
    affine = np.asarray(affine, dtype=np.float64)
    if affine.shape != (4, 4):
        raise GeometryError(f"affine must be 4x4; got shape {affine.shape}")
    return np.sqrt(np.sum(affine[:3, :3] ** 2, axis=0))


def parse_spacing(values, ndim: int, name: str = "spacing") -> tuple[float, ...]:
    """Return ``ndim`` finite positive floats or raise GeometryError naming the value."""
    try:
        seq = [float(v) for v in values]
    except (TypeError, ValueError):
        raise GeometryError(f"{name} must be {ndim} numbers; got {values!r}") from None
    if len(seq) != ndim:
        raise GeometryError(f"{name} must have {ndim} values; got {len(seq)}: {list(values)!r}")
    for v in seq:
        if not np.isfinite(v) or v <= 0:
            raise GeometryError(f"{name} values must be finite and > 0; got {v!r}")
    return tuple(seq)


@dataclass(frozen=True)
class AxisMap:
    """The index map of one spatial axis: output index ``o`` -> input index ``x(o)``.

    ``coordinates`` reproduces, bit for bit, the coordinate the whole-array
    scipy reference computes, so that nearest-neighbour ties fall the same way:

    * ``zoom``: ``scipy.ndimage.zoom(grid_mode=False)`` computes
      ``o * ((n-1)/(m-1))`` (factor 1 when ``m == 1``);
    * ``center``/``origin``: ``scipy.ndimage.affine_transform`` with a diagonal
      matrix ``r`` and offset ``x0`` computes ``(o + x0/r) * r``;
    * ``matrix`` (an axis-aligned reference grid): ``affine_transform`` with a
      4x4 matrix computes ``o * step + x0`` (step may be negative: a flip).
    """

    n: int
    m: int
    ratio: float  # r = t / s, the requested ratio
    step: float  # the coordinate step actually used: r, or (n-1)/(m-1) for zoom
    offset: float  # x(0)
    kind: str  # "affine", "zoom" or "matrix"

    def coordinates(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        stop = self.m if stop is None else stop
        o = np.arange(start, stop, dtype=np.float64)
        if self.kind == "zoom":
            return o * self.step
        if self.kind == "matrix":
            return o * self.step + self.offset
        return (o + self.offset / self.ratio) * self.ratio

    @property
    def is_identity(self) -> bool:
        """True when every output sample is an input sample at the same index."""
        return self.n == self.m and self.step == 1.0 and self.offset == 0.0

    @property
    def affine_scale(self) -> float:
        """Factor applied to this axis' affine column.

        In the ``zoom`` grid an axis with ``n == 1`` or ``m == 1`` has all its
        samples at ``x = 0`` and so no true spacing: its column is scaled by the
        requested ratio instead (the one exception to the affine invariant).
        """
        if self.kind == "zoom" and (self.n == 1 or self.m == 1):
            return self.ratio
        return self.step


def axis_map(n: int, spacing: float, new_spacing: float, grid: str = "center") -> AxisMap:
    """Index map of one axis of ``n`` voxels from ``spacing`` to ``new_spacing``."""
    grid = parse_grid(grid)
    n = int(n)
    if n < 1:
        raise GeometryError(f"axis length must be >= 1; got {n}")
    s, t = float(spacing), float(new_spacing)
    if not (np.isfinite(s) and s > 0):
        raise GeometryError(f"input spacing must be finite and > 0; got {s!r}")
    if not (np.isfinite(t) and t > 0):
        raise GeometryError(f"new spacing must be finite and > 0; got {t!r}")
    zoom_factor = s / t
    m = max(1, int(round(n * zoom_factor)))
    r = t / s
    if grid == "zoom":
        # np.divide(n - 1, m - 1) with factor 1 where m == 1, as scipy.ndimage.zoom
        step = (n - 1) / (m - 1) if m > 1 else 1.0
        return AxisMap(n, m, r, step, 0.0, "zoom")
    if grid == "origin":
        return AxisMap(n, m, r, r, 0.0, "affine")
    offset = (n - 1) / 2.0 - (m - 1) / 2.0 * r
    return AxisMap(n, m, r, r, offset, "affine")


@dataclass(frozen=True)
class Grid:
    """The output grid of a resampling of the first ``len(axes)`` axes."""

    axes: tuple[AxisMap, ...]
    grid: str

    def separable(self) -> Grid:
        """This grid, per axis already (as ``ReferenceGrid.separable``)."""
        return self

    @property
    def in_shape(self) -> tuple[int, ...]:
        return tuple(a.n for a in self.axes)

    @property
    def out_shape(self) -> tuple[int, ...]:
        return tuple(a.m for a in self.axes)

    @property
    def is_copy(self) -> bool:
        """True for a zoom grid with every spacing unchanged: scipy.ndimage.zoom
        then returns its input as it is."""
        return self.grid == "zoom" and all(a.ratio == 1.0 for a in self.axes)

    @property
    def ratios(self) -> np.ndarray:
        return np.array([a.ratio for a in self.axes])

    @property
    def offsets(self) -> np.ndarray:
        """x(0) per axis."""
        return np.array([a.offset for a in self.axes])

    @property
    def steps(self) -> np.ndarray:
        return np.array([a.step for a in self.axes])

    def output_affine(self, affine) -> np.ndarray:
        """Affine of the output grid: ``A_out @ [o, 1] == A_in @ [x(o), 1]``.

        Parameters
        ----------
        affine : (4, 4) array
            Input affine; only its first ``len(axes)`` columns are used for the
            spatial axes.
        """
        a_in = np.asarray(affine, dtype=np.float64)
        k = len(self.axes)
        out = a_in.copy()
        for i, ax in enumerate(self.axes):
            out[:3, i] = a_in[:3, i] * ax.affine_scale
        x0 = np.zeros(a_in.shape[0] - 1)
        x0[:k] = self.offsets
        out[:3, 3] = a_in[:3, :3] @ x0[:3] + a_in[:3, 3]
        return out

    def output_spacing(self, spacing) -> np.ndarray:
        """True output spacing: ``s * step`` (differs from the request in the zoom grid)."""
        return np.asarray(spacing, dtype=np.float64) * np.array(
            [ax.affine_scale for ax in self.axes]
        )


def make_grid(shape, spacing, new_spacing, grid: str = "center") -> Grid:
    """Output grid for resampling ``shape`` (spatial axes only) to ``new_spacing``.

    Parameters
    ----------
    shape : sequence of int, length k
    spacing, new_spacing : sequence of float, length k
    grid : {"center", "origin", "zoom"}
    """
    shape = tuple(int(v) for v in shape)
    k = len(shape)
    spacing = parse_spacing(spacing, k, "input spacing")
    new_spacing = parse_spacing(new_spacing, k, "new spacing")
    return Grid(
        tuple(axis_map(n, s, t, grid) for n, s, t in zip(shape, spacing, new_spacing)),
        parse_grid(grid),
    )


@dataclass(frozen=True, eq=False)
class ReferenceGrid:
    """The grid of a reference image: any shape and affine, possibly rotated
    relative to the input (the general, non-separable case).

    Output index ``o`` samples the input at the continuous index
    ``matrix @ o + offset``, where ``[matrix, offset] = A_in^-1 @ A_ref``
    (both affines in the input's units): exactly what
    ``scipy.ndimage.affine_transform(input, A_in^-1 @ A_ref, output_shape=...)``
    computes.
    """

    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    matrix: np.ndarray  # (3, 3)
    offset: np.ndarray  # (3,)
    out_affine: np.ndarray  # (4, 4), the reference's affine
    grid = "reference"

    @property
    def homogeneous(self) -> np.ndarray:
        """The (4, 4) matrix to give ``scipy.ndimage.affine_transform``."""
        out = np.eye(4)
        out[:3, :3], out[:3, 3] = self.matrix, self.offset
        return out

    @property
    def ratios(self) -> np.ndarray:
        """Input voxels per output step along each input axis: the norms of the
        matrix rows (``t / s`` for an axis-aligned reference)."""
        return np.sqrt(np.sum(self.matrix**2, axis=1))

    @property
    def is_axis_aligned(self) -> bool:
        return bool(np.all(self.matrix[~np.eye(3, dtype=bool)] == 0))

    def separable(self) -> Grid | None:
        """The same sampling as a per-axis ``Grid`` when the reference is
        axis-aligned with the input (a diagonal matrix, flips allowed), for the
        fast separable engine; None when it is rotated or permutes axes (a
        permutation goes to the same engine through ``permuted``: ``permutation``)."""
        if not self.is_axis_aligned or np.any(np.diag(self.matrix) == 0):
            return None
        axes = tuple(AxisMap(n, m, abs(float(step)), float(step), float(off), "matrix")
                     for n, m, step, off in zip(self.in_shape, self.out_shape, np.diag(self.matrix), self.offset))
        return Grid(axes, "reference")

    def permutation(self) -> tuple[int, ...] | None:
        """``axes`` when the reference permutes the input's axes (flips allowed): one
        non-zero a row and a column of the matrix, not all on the diagonal; output
        axis ``j`` then samples input axis ``axes[j]`` alone.  None otherwise (the
        diagonal is ``separable``; a rotation is neither)."""
        nonzero = self.matrix != 0
        if not (np.all(nonzero.sum(axis=0) == 1) and np.all(nonzero.sum(axis=1) == 1)):
            return None
        axes = tuple(int(np.flatnonzero(nonzero[:, j])[0]) for j in range(len(self.out_shape)))
        return None if axes == tuple(range(len(axes))) else axes

    def on_input_axes(self) -> Grid:
        """A permuting grid (``permutation``) as a per-axis ``Grid`` in the input's axis
        order: input axis ``i`` is sampled by the output axis ``j`` with ``axes[j] == i``,
        ``m`` samples of it at ``matrix[i, j] * o + offset[i]``."""
        axes = self.permutation()
        if axes is None:
            raise GeometryError("on_input_axes: the reference grid does not permute the input's axes")
        by_input = {i: j for j, i in enumerate(axes)}
        maps = []
        for i, n in enumerate(self.in_shape):
            j = by_input[i]
            step = float(self.matrix[i, j])
            maps.append(AxisMap(n, self.out_shape[j], abs(step), step, float(self.offset[i]), "matrix"))
        return Grid(tuple(maps), "reference")

    def output_affine(self, affine=None) -> np.ndarray:
        return self.out_affine.copy()

    def output_spacing(self, spacing=None) -> np.ndarray:
        return voxel_spacing(self.out_affine)

    def orientation(self) -> Orientation:
        """How the reference's axes sit relative to the input's: see ``orientation``."""
        in_dirs = self.out_affine[:3, :3] @ np.linalg.inv(self.matrix)  # A_in's columns, in the same units
        return orientation(in_dirs, self.out_affine[:3, :3])


@dataclass(frozen=True)
class Orientation:
    """The reference's axes seen from the input's: reference axis ``j`` runs
    along input axis ``axes[j]``, the other way when ``flipped[j]``, then
    turned by a proper rotation of ``degrees``."""

    axes: tuple[int, int, int]
    flipped: tuple[bool, bool, bool]
    degrees: float

    def describe(self) -> str:
        """``x flipped, axes permuted (y, x, z), then rotated 9.00 degrees``, or
        ``axes aligned with the input's``."""
        parts = [f"{'xyz'[i]} flipped" for i, f in sorted(zip(self.axes, self.flipped)) if f]
        if self.axes != (0, 1, 2):
            parts.append(f"axes permuted ({', '.join('xyz'[i] for i in self.axes)})")
        if self.degrees >= 0.005:
            parts.append(("then " if parts else "") + f"rotated {self.degrees:.2f} degrees")
        if not parts:
            return "axes aligned with the input's"
        return ", ".join(parts) + " relative to the input" + ("" if self.degrees >= 0.005 else "'s axes")


def _rotation_part(a3) -> np.ndarray:
    """The orthogonal factor of the polar decomposition of ``a3`` (an affine's
    directions without their scaling, even when sheared)."""
    u, _, vt = np.linalg.svd(np.asarray(a3, dtype=np.float64))
    return u @ vt


def orientation(in_directions, ref_directions) -> Orientation:
    """Split the reference's axes, seen from the input's, into the signed
    permutation nearest to them (flips and permutations, which a viewer shows
    as such) and the proper rotation left, by its angle.  Both arguments are
    the 3x3 direction parts of the affines (columns: the voxel axes in world
    space, any scaling)."""
    q = _rotation_part(in_directions).T @ _rotation_part(ref_directions)  # column j: reference axis j, input axes
    det = np.sign(np.linalg.det(q))
    best = None
    for perm in itertools.permutations(range(3)):
        for signs in itertools.product((1.0, -1.0), repeat=3):
            p = np.zeros((3, 3))
            p[list(perm), [0, 1, 2]] = signs
            if np.sign(np.linalg.det(p)) != det:
                continue  # the rest must be a proper rotation
            trace = float(np.trace(p.T @ q))
            if best is None or trace > best[0] + 1e-12:
                best = (trace, perm, signs)
    trace, perm, signs = best
    degrees = float(np.degrees(np.arccos(np.clip((trace - 1) / 2, -1.0, 1.0))))
    return Orientation(tuple(int(i) for i in perm), tuple(bool(v < 0) for v in signs), degrees)


#: Largest magnitude (in voxels) a term of an input coordinate may reach on a
#: reference grid.  The compiled kernel estimates each output row's
#: coordinates as a straight line (bigresample/_kernel.c: span); they are sums
#: of terms rounded to a few ulp of the largest, ~1e-7 voxel at 2**26, still
#: far below the line's 1e-6 voxel margin.  Huge terms that cancel (a
#: translation of 2**54 voxels undone by a column of the matrix) make the
#: coordinates a staircase instead: refused here (the kernel itself never
#: trusts the line beyond this: LINEAR_MAX).
COORDINATE_LIMIT = 2.0**26


def check_coordinates(in_shape, out_shape, matrix, offset, pad: float = 12.0) -> None:
    """Refuse a grid whose input coordinates (``matrix @ o + offset``, plus
    scipy's pre-pad ``pad``) have a term beyond ``COORDINATE_LIMIT`` anywhere
    on the output grid, or whose shapes are empty, naming the axis and value."""
    in_shape, out_shape = tuple(int(v) for v in in_shape), tuple(int(v) for v in out_shape)
    if len(in_shape) != 3 or len(out_shape) != 3 or min(in_shape + out_shape) < 1:
        raise GeometryError(f"shapes must be 3 positive lengths; got {in_shape} and {out_shape}")
    matrix, offset = np.asarray(matrix, dtype=np.float64), np.asarray(offset, dtype=np.float64)
    with np.errstate(all="ignore"):
        bound = np.abs(offset) + np.abs(matrix) @ (np.array(out_shape, dtype=np.float64) - 1) + pad
    for k, b in enumerate(bound):
        if not b <= COORDINATE_LIMIT:  # also NaN
            raise GeometryError(
                f"the reference grid's input coordinates reach {b:.3g} voxels on axis {k} (x, y, z = 0, 1, 2): "
                f"beyond 2**26 their rounding is too coarse to trust (check the two affines)")


def reference_grid(in_shape, in_affine, ref_shape, ref_affine) -> ReferenceGrid:
    """The grid of ``(ref_shape, ref_affine)`` seen from an input ``(in_shape, in_affine)``.

    Both affines must be in the same units.
    """
    in_shape = tuple(int(v) for v in in_shape)
    ref_shape = tuple(int(v) for v in ref_shape)
    if len(in_shape) != 3 or len(ref_shape) != 3 or min(in_shape + ref_shape) < 1:
        raise GeometryError(f"shapes must be 3 positive lengths; got {in_shape} and {ref_shape}")
    a_in = np.asarray(in_affine, dtype=np.float64)
    a_ref = np.asarray(ref_affine, dtype=np.float64)
    for name, a in (("input", a_in), ("reference", a_ref)):
        if a.shape != (4, 4) or not np.all(np.isfinite(a)) or abs(np.linalg.det(a[:3, :3])) < 1e-12:
            raise GeometryError(f"{name} affine is not an invertible, finite 4x4 matrix")
    m = np.linalg.solve(a_in, a_ref)
    check_coordinates(in_shape, ref_shape, m[:3, :3], m[:3, 3])
    return ReferenceGrid(in_shape, ref_shape, np.ascontiguousarray(m[:3, :3]), m[:3, 3].copy(), a_ref.copy())
