"""Registrations applied to output points: affine maps and displacement fields.

A registration maps each *output* point (a point of the fixed, or reference,
space) to the point of the *input* (moving) image that is sampled there, as
``antsApplyTransforms`` and ITK's resampler use a transform.  Everything here
is in world coordinates, **RAS millimetres** (nibabel's convention: an
image's affine maps its voxel indices to them); the readers of transform files
(``transform_files``) convert from each tool's convention (ITK's LPS, FSL's
scaled voxels, FreeSurfer's LTA types) so that nothing downstream knows which
tool wrote a file.

A ``Chain`` holds its maps in ITK's ``CompositeTransform`` order: the last is
applied first to the output point (``Chain((T1, T2))`` samples at
``T1(T2(p))``, as ``CompositeTransform([T1, T2])``).  The command line follows
antsApplyTransforms instead, whose ``-t`` list is applied first to last to the
output point (``-t W -t A``, ANTs' warp then affine, samples at ``A(W(p))``):
``transform_files.read_chain`` reverses it (measured against antspyx in
tests/test_transform_files.py).  A chain of affines only is one affine
(``Chain.affine``): the run then takes the existing grids (a ``geometry.ReferenceGrid``, separable when
axis-aligned); a chain with a field needs the point-by-point resampler.

numpy only: the numeric core, no file is opened here (a field's samples come
from the reader its format gives it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from .errors import BigresampleError
from .geometry import ReferenceGrid, reference_grid


class RegistrationError(BigresampleError):
    """A transform that cannot be applied as asked (named with its file)."""


def _points(points) -> np.ndarray:
    p = np.asarray(points, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] != 3:
        raise ValueError(f"points must be an (N, 3) array; got shape {p.shape}")
    return p


def affine_points(p: np.ndarray, m: np.ndarray) -> np.ndarray:
    """``p @ m[:3, :3].T + m[:3, 3]`` for (N, 3) points, a column at a time: numpy hands
    the (N, 3) @ (3, 3) product to BLAS, whose threads made it 10x slower here
    (131072 points, loaded 2-core machine: 44 ms against 3.7 ms)."""
    out = np.empty_like(p)
    for i in range(3):
        col = out[:, i]
        np.multiply(p[:, 0], m[i, 0], out=col)
        col += p[:, 1] * m[i, 1]
        col += p[:, 2] * m[i, 2]
        col += m[i, 3]
    return out


def column_bounds(p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per column of (N, 3) points, the smallest and largest value (NaN if any is NaN), a
    column at a time: numpy's ``min(axis=0)`` on (N, 3) was 10x slower (1.3M points: 87 ms
    against 8 ms)."""
    return (np.array([p[:, k].min() for k in range(3)]), np.array([p[:, k].max() for k in range(3)]))


@dataclass(frozen=True, eq=False)
class AffineMap:
    """``p_in = matrix @ [p_out, 1]``: output world point to input world point, RAS mm."""

    matrix: np.ndarray  # (4, 4), last row (0, 0, 0, 1)
    #: what it was read from, for messages, the report and provenance ("ants.mat (ITK binary, inverted)")
    source: str = "affine"

    def __post_init__(self):
        m = np.array(self.matrix, dtype=np.float64)
        if m.shape != (4, 4) or not np.all(np.isfinite(m)) or not np.allclose(m[3], (0, 0, 0, 1)):
            raise RegistrationError(f"{self.source}: not a finite 4x4 affine matrix with last row 0 0 0 1")
        if abs(np.linalg.det(m[:3, :3])) < 1e-12:
            raise RegistrationError(f"{self.source}: the affine matrix is singular")
        m.setflags(write=False)
        object.__setattr__(self, "matrix", m)

    is_affine = True

    def apply(self, points) -> np.ndarray:
        return affine_points(_points(points), self.matrix)

    def inverse(self, source: str | None = None) -> "AffineMap":
        return AffineMap(np.linalg.inv(self.matrix), source or f"{self.source} (inverted)")


@dataclass(frozen=True, eq=False)
class DisplacementField:
    """``p_in = p + d(p)``: a displacement field on its own grid, RAS mm.

    ``d`` is interpolated trilinearly between the field's samples (ITK's
    ``DisplacementFieldTransform`` with its default linear interpolator); a
    point within half a field voxel beyond the field's first or last sample
    takes the edge samples (scipy's ``nearest``, as ITK's interpolator clamps
    there).  Further out the field is undefined here: the run refuses an
    output the field does not cover (``covers``) before it starts.

    The samples are read region by region through ``read``, so a field larger
    than memory works: ``read((sx, sy, sz))`` returns the ``(nx, ny, nz, 3)``
    displacements of that region, float64, RAS mm, already converted from the
    file's convention.
    """

    shape: tuple[int, int, int]
    affine: np.ndarray  # (4, 4): field voxel index -> RAS mm
    read: Callable[[tuple[slice, slice, slice]], np.ndarray]
    source: str = "displacement field"
    #: per RAS axis, the largest |displacement| in mm over the field (None until ``bound`` is asked)
    _bound: list = field(default_factory=list, repr=False)

    is_affine = False

    def __post_init__(self):
        shape = tuple(int(n) for n in self.shape)
        a = np.array(self.affine, dtype=np.float64)
        if len(shape) != 3 or min(shape) < 1:
            raise RegistrationError(f"{self.source}: a displacement field needs 3 spatial axes; got shape {shape}")
        if a.shape != (4, 4) or not np.all(np.isfinite(a)) or abs(np.linalg.det(a[:3, :3])) < 1e-12:
            raise RegistrationError(f"{self.source}: the field's affine is not an invertible, finite 4x4 matrix")
        a.setflags(write=False)
        object.__setattr__(self, "shape", shape)
        object.__setattr__(self, "affine", a)

    def to_voxels(self, points) -> np.ndarray:
        """The field's continuous voxel indices of world points (N, 3)."""
        return affine_points(_points(points), np.linalg.inv(self.affine))

    def covers(self, lo, hi) -> bool:
        """True if the field's voxel-index box ``[lo, hi]`` lies within half a voxel of its samples."""
        return bool(np.all(np.asarray(lo) >= -0.5 - 1e-9) and np.all(np.asarray(hi) <= np.array(self.shape) - 0.5 + 1e-9))

    def displacements(self, points) -> np.ndarray:
        """``d(p)`` (N, 3) at world points, reading only the field's samples around them:
        scipy's ``map_coordinates`` (order 1, ``nearest``) on the whole field, per component,
        computed by the compiled ``kernel.sample_points`` on the window read (profiled on the
        warp resampler's pieces: scipy's generic per-point loop was a fifth of the chain's time)."""
        from . import kernel

        v = self.to_voxels(points)
        if v.shape[0] == 0:
            return np.zeros((0, 3))
        vmin, vmax = column_bounds(v)
        if not (np.all(np.isfinite(vmin)) and np.all(np.isfinite(vmax))):  # a NaN makes both NaN
            raise RegistrationError(f"{self.source}: a point whose field coordinates are not finite")
        lo = np.clip(np.floor(vmin).astype(np.int64), 0, np.array(self.shape) - 1)
        hi = np.clip(np.floor(vmax).astype(np.int64) + 2, 1, np.array(self.shape))
        region = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))
        win = np.asarray(self.read(region), dtype=np.float64)
        out = np.empty((3, v.shape[0]))
        for c in range(3):  # each component's window in file order (z, y, x), the field's line around it
            kernel.sample_points(np.ascontiguousarray(win[..., c].T), v, out[c], lo, self.shape, 0.0, 1,
                                 kernel.MODE_CODES["nearest"], 0.0)
        return out.T

    def apply(self, points) -> np.ndarray:
        p = _points(points)
        return p + self.displacements(p)

    def bound(self, slab_voxels: int = 2**22) -> np.ndarray:
        """Per RAS axis, the largest |displacement| (mm) anywhere in the field: one pass over it, in slabs."""
        if not self._bound:
            nx, ny, nz = self.shape
            step = max(1, slab_voxels // max(1, nx * ny))
            worst = np.zeros(3)
            for z in range(0, nz, step):
                d = np.asarray(self.read((slice(0, nx), slice(0, ny), slice(z, min(nz, z + step)))), dtype=np.float64)
                # per component, reduced in place: no copy of a strided field (NaN and inf reach the extremes;
                # abs().reshape() copied it: 0.21 s against 0.004 s for a 128x128x75 field)
                far = np.maximum(d.max(axis=(0, 1, 2)), -d.min(axis=(0, 1, 2)))
                if not np.all(np.isfinite(far)):
                    raise RegistrationError(f"{self.source}: the field holds displacements that are not finite")
                worst = np.maximum(worst, far)
            self._bound.append(worst)
        return self._bound[0]

    def inverse(self, source: str | None = None):
        raise RegistrationError(f"{self.source}: a displacement field cannot be inverted here; "
                                "give the inverse field its tool wrote (ANTs: the InverseWarp file)")


@dataclass(frozen=True, eq=False)
class Chain:
    """Transforms as listed: ``maps[0]`` is T1, applied last (``T1(T2(...(p)))``)."""

    maps: tuple = ()

    def apply(self, points) -> np.ndarray:
        p = _points(points)
        for m in reversed(self.maps):
            p = m.apply(p)
        return p

    @property
    def affine(self) -> np.ndarray | None:
        """The whole chain as one output-world -> input-world 4x4 matrix, or None if it holds a field."""
        out = np.eye(4)
        for m in self.maps:
            if not m.is_affine:
                return None
            out = out @ m.matrix
        return out

    def collapsed(self) -> "Chain":
        """The same chain with runs of adjacent affines multiplied into one."""
        out: list = []
        for m in self.maps:
            if m.is_affine and out and out[-1].is_affine:
                out[-1] = AffineMap(out[-1].matrix @ m.matrix, f"{out[-1].source} * {m.source}")
            else:
                out.append(m)
        return Chain(tuple(out))

    @property
    def fields(self) -> tuple:
        return tuple(m for m in self.maps if not m.is_affine)

    def __len__(self) -> int:
        return len(self.maps)


def registered_grid(base, in_shape, in_affine, chain_affine, to_mm: float = 1.0):
    """The grid on which output voxel ``o`` of ``base`` (a ``geometry.Grid`` or ``ReferenceGrid``) samples
    the input at ``A_in^-1 @ C @ A_out @ o``, ``C`` the chain's affine (RAS mm), ``A_in`` the input's
    affine and ``A_out`` the base grid's output affine (both in the input's units, ``to_mm`` mm each):
    a ``RegisteredGrid``, which the existing resamplers serve (separable when it is axis-aligned)."""
    s = np.diag([to_mm, to_mm, to_mm, 1.0])
    c_units = np.linalg.solve(s, np.asarray(chain_affine, dtype=np.float64)) @ s
    a_out = base.output_affine(in_affine)
    g = reference_grid(in_shape, np.linalg.solve(c_units, np.asarray(in_affine, dtype=np.float64)),
                       tuple(base.out_shape), a_out)
    return RegisteredGrid(g.in_shape, g.out_shape, g.matrix, g.offset, g.out_affine, base)



@dataclass(frozen=True, eq=False)
class RegisteredGrid(ReferenceGrid):
    """A ``ReferenceGrid`` whose output is ``base``'s grid sampled through an affine registration: the
    output's header and spacing are ``base``'s (its qform and sform mapped as ``base`` maps them), the
    sampling is the composed matrix's."""

    base: object = None

    def output_affine(self, affine=None) -> np.ndarray:
        return self.base.output_affine(affine) if affine is not None else self.out_affine.copy()

    def output_spacing(self, spacing=None) -> np.ndarray:
        return self.base.output_spacing(spacing) if spacing is not None else super().output_spacing()
