"""The point-by-point path: resampling through a chain of transforms that holds a displacement field.

A chain of affines only is one matrix (``registration.Chain.affine``) and goes
to the grids of ``geometry`` and their resamplers.  A chain with a field
(``registration.DisplacementField``) maps each output voxel on its own, so
each output block is computed from explicit coordinates:

* output voxel ``o`` -> world ``A_out @ o`` -> each map of the chain, the
  last listed first -> the input's continuous index ``A_in^-1 @ p``, in
  float64 (adjacent affines multiplied into one matrix: ``WarpGrid.steps``),
  every point of the block in one compiled pass (``kernel.chain_points``:
  each field trilinear on its window, read once per block by
  ``WarpGrid.field_windows``; ITK's rule and the coordinates' bounds in the
  same pass), into the block's coordinate buffer (24 bytes an output voxel,
  counted by the planner; the pure-Python fallback computes the same chain
  in numpy, ``PIECE_POINTS`` at a time);
* the input window is the bounding box of those coordinates plus the
  order's reach (and for orders >= 2 the prefilter halo, ``splines.halo``),
  clipped as ``transform.AffineResampler._support_of`` clips a rotated
  block's, read once per block (``transform.read_window``) and prefiltered
  for orders >= 2 (``AffineResampler._coefficients``);
* the compiled ``kernel.sample_points`` samples it at the coordinates:
  ``scipy.ndimage.map_coordinates(whole, coords, prefilter=True)`` on the
  whole array, within the general path's tolerances.

ITK's rule (``--mode itk``: ``cval`` where a coordinate lies more than half a
voxel beyond the input, ``bounds.inside``) is applied per point around the
kernel; the window then spans only the points inside.

The planner's questions (``window_shape``, ``block_bytes``) are answered from
the chain's bound: the affine parts' linear spans and each field's largest
displacement (``DisplacementField.bound``: one pass over the field, in slabs
of 4 Mi samples, the first time it is asked; cached on the field), so large
displacements give smaller blocks.  ``input_region`` and ``reaching`` (the
label methods, the lazy path) use the same bound on the block's box:
conservative, never narrower than the window ``compute_into`` reads.

Everything works in file order (axes reversed), like the other resamplers.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from math import prod

import numpy as np

from . import transform
from .engine import Sampling, Workspace, _Fresh, cast_into
from .geometry import COORDINATE_LIMIT, GeometryError, orientation, voxel_spacing
from .registration import Chain, affine_points
from .transform import PREPAD, PREPAD_MODES, AffineResampler, block_output, read_window

#: Output voxels whose coordinates one pass of the fallback's numpy chain computes
#: (``_pykernel.chain_points``' temporaries: a few (n, 3) float64 arrays, ~1.5 MiB
#: each); the compiled pass has none, and the planner's count of them covers a
#: field's window per block instead (a few KiB for a field coarser than the output).
PIECE_POINTS = 2**16
#: Bytes of the chain's temporaries per point of a piece (the planner counts them).
PIECE_BYTES_PER_POINT = 8 * 24


def _box_corners(lo, hi) -> np.ndarray:
    """The 8 corners (8, 3) of the box ``[lo, hi]``."""
    return np.array([[hi[a] if (c >> a) & 1 else lo[a] for a in range(3)] for c in range(8)], dtype=np.float64)


def _margin(lo, hi) -> np.ndarray:
    """Rounding room for a bound computed another way than the coordinates themselves."""
    return 1e-6 + 1e-9 * np.maximum(np.abs(lo), np.abs(hi))


@dataclass(frozen=True, eq=False)
class WarpGrid:
    """Output voxels of ``(out_shape, out_affine)`` sampled in the input ``(in_shape, in_affine)``
    through ``chain`` (affines: voxel index -> RAS mm; the chain: output world -> input world)."""

    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    in_affine: np.ndarray
    out_affine: np.ndarray
    chain: Chain
    grid = "reference"

    def __post_init__(self):
        in_shape, out_shape = tuple(int(v) for v in self.in_shape), tuple(int(v) for v in self.out_shape)
        if len(in_shape) != 3 or len(out_shape) != 3 or min(in_shape + out_shape) < 1:
            raise GeometryError(f"shapes must be 3 positive lengths; got {in_shape} and {out_shape}")
        for name in ("in_affine", "out_affine"):
            a = np.array(getattr(self, name), dtype=np.float64)
            if a.shape != (4, 4) or not np.all(np.isfinite(a)) or abs(np.linalg.det(a[:3, :3])) < 1e-12:
                raise GeometryError(f"{'input' if name == 'in_affine' else 'output'} affine is not an invertible, "
                                    "finite 4x4 matrix")
            a.setflags(write=False)
            object.__setattr__(self, name, a)
        object.__setattr__(self, "in_shape", in_shape)
        object.__setattr__(self, "out_shape", out_shape)

    @cached_property
    def to_input(self) -> np.ndarray:
        """Input world (RAS mm) -> the input's continuous voxel index (4, 4) (cached: the planner
        asks ``spans`` thousands of times)."""
        out = np.linalg.inv(self.in_affine)
        out.setflags(write=False)
        return out

    def separable(self):
        """Never: a field maps every voxel on its own."""
        return None

    def output_affine(self, affine=None) -> np.ndarray:
        return self.out_affine.copy()

    def output_spacing(self, spacing=None) -> np.ndarray:
        return voxel_spacing(self.out_affine)

    def linear(self) -> np.ndarray:
        """The chain's affine parts multiplied (fields taken as the identity), output world -> input world."""
        out = np.eye(4)
        for m in self.chain.maps:
            if m.is_affine:
                out = out @ m.matrix
        return out

    def orientation(self):
        """How the output's axes sit relative to the input's, through the chain's affine parts."""
        in_dirs = np.linalg.inv(self.linear()[:3, :3]) @ self.in_affine[:3, :3]
        return orientation(in_dirs, self.out_affine[:3, :3])

    def coordinates(self, spatial, out: np.ndarray, inside=None) -> tuple:
        """The input's continuous index of every output voxel of the block ``spatial``
        into ``out`` ((n, 3) float64, x y z per point, the points in file order:
        x fastest), in one pass (``kernel.chain_points``), each field's samples read
        once for the block (``field_windows``); with ``inside`` (n bools), ITK's rule
        per point into it.  Returns per axis the smallest and largest coordinate of the
        points (those inside, with ``inside``; NaN if one is not finite) and their number."""
        from . import kernel
        from .registration import RegistrationError

        origin = [s.start for s in spatial[:3]]
        count = [s.stop - s.start for s in spatial[:3]]
        steps = self.steps
        fields = self.field_windows(spatial)
        bad, lo, hi, counted = kernel.chain_points(out, origin, count, steps[::2], fields, inside,
                                                   None if inside is None else self.in_shape)
        if bad:
            raise RegistrationError(f"{steps[2 * bad - 1].source}: a point whose field coordinates are not finite")
        return np.array(lo), np.array(hi), counted

    def field_windows(self, spatial) -> list:
        """Per field of ``steps``, ``(window, inverse, first, shape)`` for ``kernel.chain_points``:
        the samples of the box of field voxels the block's points can reach (the block's corners
        through the affines before it, exact for the first field; a field before it widens the box
        by its ``bound()``), one sample more on each side, clipped to the field."""
        from .registration import RegistrationError

        lo = np.array([s.start for s in spatial[:3]], dtype=np.float64)
        hi = np.array([s.stop - 1 for s in spatial[:3]], dtype=np.float64)
        out = []
        for step in self.steps:
            if isinstance(step, np.ndarray):
                c = _box_corners(lo, hi) @ step[:3, :3].T + step[:3, 3]
                lo, hi = c.min(axis=0), c.max(axis=0)
                lo, hi = lo - _margin(lo, hi), hi + _margin(lo, hi)
                continue
            inv = np.linalg.inv(step.affine)
            v = _box_corners(lo, hi) @ inv[:3, :3].T + inv[:3, 3]
            vlo, vhi = v.min(axis=0), v.max(axis=0)
            if not (np.all(np.isfinite(vlo)) and np.all(np.isfinite(vhi))
                    and np.all(np.abs(vlo) < 2.0**52) and np.all(np.abs(vhi) < 2.0**52)):
                raise RegistrationError(f"{step.source}: a point whose field coordinates are not finite")
            n = np.array(step.shape)
            first = np.clip(np.floor(vlo).astype(np.int64) - 1, 0, n - 1)
            stop = np.clip(np.floor(vhi).astype(np.int64) + 3, first + 1, n)
            region = tuple(slice(int(a), int(b)) for a, b in zip(first, stop))
            out.append((np.ascontiguousarray(step.read(region), dtype=np.float64), inv, first, n))
            b = step.bound() if len(out) < len(self.steps) // 2 else np.zeros(3)  # the last field: no box after it
            lo, hi = lo - b, hi + b
            lo, hi = lo - _margin(lo, hi), hi + _margin(lo, hi)
        return out

    @cached_property
    def steps(self) -> tuple:
        """The map from output index to input index as applied: the fields, and between
        them the affines next to each other (the output's and the input's affines included)
        multiplied into one matrix (4, 4) each, so a point goes through one matrix product
        per run of affines."""
        steps, current = [], self.out_affine
        for m in reversed(self.chain.maps):
            if m.is_affine:
                current = m.matrix @ current
            else:
                steps += [current, m]
                current = np.eye(4)
        return tuple(steps + [self.to_input @ current])

    def input_box(self, spatial) -> tuple[np.ndarray, np.ndarray]:
        """A box of the input's continuous indices that holds every coordinate of the block
        ``spatial``: its corners through the chain, a field widening the box by its bound."""
        lo = np.array([s.start for s in spatial[:3]], dtype=np.float64)
        hi = np.array([s.stop - 1 for s in spatial[:3]], dtype=np.float64)
        c = _box_corners(lo, hi) @ self.out_affine[:3, :3].T + self.out_affine[:3, 3]
        lo, hi = c.min(axis=0), c.max(axis=0)
        for m in reversed(self.chain.maps):
            if m.is_affine:
                c = _box_corners(lo, hi) @ m.matrix[:3, :3].T + m.matrix[:3, 3]
                lo, hi = c.min(axis=0), c.max(axis=0)
            else:
                b = m.bound()
                lo, hi = lo - b, hi + b
            lo, hi = lo - _margin(lo, hi), hi + _margin(lo, hi)
        c = _box_corners(lo, hi) @ self.to_input[:3, :3].T + self.to_input[:3, 3]
        lo, hi = c.min(axis=0), c.max(axis=0)
        return lo - _margin(lo, hi), hi + _margin(lo, hi)

    def spans(self, block) -> np.ndarray:
        """Per input axis, the largest extent of the coordinates of a block of shape ``block``
        (remembered per shape: the planner asks ~3000 times for a few hundred shapes)."""
        key = tuple(int(b) for b in block[:3])
        memo = self._spans_memo
        if key not in memo:
            w = self._span_steps[0] @ (np.asarray(key, dtype=np.float64) - 1)
            for step in self._span_steps[1:]:
                w = step @ w if step.ndim == 2 else w + step
                w = w + 2 * _margin(w, w)
            w.setflags(write=False)
            memo[key] = w
        return memo[key]

    @cached_property
    def _spans_memo(self) -> dict:
        return {}

    @cached_property
    def _span_steps(self) -> tuple:
        """``spans``' steps: the output's |linear part|, then per map its |linear part| or twice its
        field's bound, then the input's |inverse linear part| (each followed by the rounding margin)."""
        out = [np.abs(self.out_affine[:3, :3])]
        for m in reversed(self.chain.maps):
            out.append(np.abs(m.matrix[:3, :3]) if m.is_affine else 2 * m.bound())
        return tuple(out + [np.abs(self.to_input[:3, :3])])

    def check_covered(self) -> None:
        """Refuse, naming the file, a field whose samples do not cover the points it is asked at: the
        output's corners through the maps applied before it (exactly through affines; a field before it
        widens their box by its ``bound()``) must lie within half a field voxel of its samples."""
        from .registration import RegistrationError

        hi = np.array(self.out_shape, dtype=np.float64) - 1
        pts = affine_points(_box_corners(np.zeros(3), hi), self.out_affine)
        for m in reversed(self.chain.maps):
            if m.is_affine:
                pts = affine_points(pts, m.matrix)
                continue
            v = affine_points(pts, np.linalg.inv(m.affine))
            lo_v, hi_v = v.min(axis=0), v.max(axis=0)
            if not m.covers(lo_v, hi_v):
                raise RegistrationError(
                    f"{m.source}: the displacement field does not cover the output: its samples span voxels "
                    f"0..{tuple(n - 1 for n in m.shape)}, the output reaches field voxels "
                    f"{tuple(round(float(a), 2) for a in lo_v)}..{tuple(round(float(b), 2) for b in hi_v)}")
            b = m.bound()
            lo_p, hi_p = pts.min(axis=0) - b, pts.max(axis=0) + b
            pts = _box_corners(lo_p, hi_p)

    def inside_mask(self, spatial, ws=None) -> np.ndarray:
        """ITK's rule on the block ``spatial``: True where the voxel's coordinate lies within
        half a voxel of the input on every axis, shape ``(z, y, x)``."""
        shape = tuple(s.stop - s.start for s in spatial[:3])
        ws = ws or _Fresh()
        coords = ws.array("warp_coords", (prod(shape), 3), np.float64)
        ok = ws.array("itk_ok", (len(coords),), bool)
        self.coordinates(spatial, coords, ok)
        return ok.reshape(shape[::-1])


@dataclass(frozen=True, eq=False)
class RegisteredWarpGrid(WarpGrid):
    """A ``WarpGrid`` whose output is ``base``'s grid (a ``geometry.Grid`` or ``ReferenceGrid``, in the
    input's units): the output's header and spacing are ``base``'s (its qform and sform mapped as ``base``
    maps them), the sampling is the chain's (``in_affine``, ``out_affine`` in mm)."""

    base: object = None

    def output_affine(self, affine=None) -> np.ndarray:
        return self.base.output_affine(affine) if affine is not None else self.base.output_affine(None)

    def output_spacing(self, spacing=None) -> np.ndarray:
        return self.base.output_spacing(spacing)


@dataclass(frozen=True)
class WarpResampler(AffineResampler):
    """Output blocks on a ``WarpGrid`` (small, picklable), equal to
    ``scipy.ndimage.map_coordinates(input, coords, order, mode, cval)`` at the chain's coordinates."""

    grid: WarpGrid

    def __post_init__(self):
        Sampling.__post_init__(self)
        lo, hi = self.grid.input_box(tuple(slice(0, n) for n in self.grid.out_shape))
        for k, b in enumerate(np.maximum(np.abs(lo), np.abs(hi)) + PREPAD):
            if not b <= COORDINATE_LIMIT:
                raise GeometryError(f"the transforms' input coordinates can reach {b:.3g} voxels on axis {k} "
                                    "(x, y, z = 0, 1, 2): beyond 2**26 their rounding is too coarse to trust "
                                    "(check the transforms and the field's displacements)")

    def _corners(self, region) -> tuple[np.ndarray, np.ndarray]:
        """A box holding every input coordinate of the block (``WarpGrid.input_box``)."""
        return self.grid.input_box(region)

    def _spans(self, block) -> np.ndarray:
        return self.grid.spans(block)

    def block_bytes(self, block, in_itemsize: int, out_itemsize: int) -> int:
        """``transform.block_bytes`` on this grid's windows, plus the block's coordinates
        (24 bytes a voxel), ITK's mask and the chain's temporaries of one piece."""
        out = prod(block)
        extra = 24 * out + (out if self.itk else 0) + PIECE_BYTES_PER_POINT * min(out, PIECE_POINTS + block[0])
        return transform.block_bytes(self, block, in_itemsize, out_itemsize) + int(extra)

    def reaching(self, region, lo, hi, folding_reach=None):
        """The whole ``region`` if its coordinates' box (``WarpGrid.input_box``) meets the input
        box ``[lo, hi]`` (or, with ``folding_reach``, reads beyond an edge by more), else None."""
        cmin, cmax = self._corners(region)
        if folding_reach is not None and (np.any(cmin < folding_reach)
                                          or np.any(cmax > np.array(self.grid.in_shape) - 1 - folding_reach)):
            return tuple(region)
        lo, hi = np.asarray(lo, dtype=np.float64), np.asarray(hi, dtype=np.float64)
        with np.errstate(invalid="ignore"):
            if np.any(cmax < lo) or np.any(cmin > hi):
                return None
        return tuple(region)

    def compute_into(self, source, region, dtype, ws: Workspace) -> np.ndarray:
        """The block in file order, C-ordered, in ``ws``'s buffers (as ``Resampler.compute_into``)."""
        from . import kernel

        spatial, extra, bshape, extra_shape, dtype, out = block_output(source, region, dtype, ws)
        coords = ws.array("warp_coords", (prod(bshape), 3), np.float64)
        # ITK's rule: cval beyond half a voxel of the input; the window spans the points inside
        ok = ws.array("itk_ok", (len(coords),), bool) if self.itk else None
        cmin, cmax, counted = self.grid.coordinates(spatial, coords, ok)
        fill = None
        if ok is not None:
            fill = np.empty((), dtype=dtype)
            cast_into(np.array(self.cval), fill)
            if not counted:
                out[...] = fill
                return out
            if counted < len(coords):
                coords[~ok] = coords[np.argmax(ok)]  # sampled, then overwritten: inside the window
        win_range = self._support_of(cmin, cmax)
        read_range = transform._whole_rows(win_range, self.grid.in_shape)
        if self.order < 2:  # the kernel reads the whole read window (as AffineResampler.coefficient_window)
            win_range = read_range
        win = read_window(source, read_range, win_range, extra, extra_shape, ws)
        pad = PREPAD if self.order > 1 and self.mode in PREPAD_MODES else 0
        first = [a for a, _ in win_range]
        length = [n + 2 * pad for n in self.grid.in_shape]
        direct = dtype in (np.float32, np.float64)  # else float64 values, stored as scipy stores them
        values = None if direct else ws.array("values", bshape[::-1], np.float64)
        for idx in np.ndindex(*extra_shape[::-1]) if extra_shape else [()]:
            data = self._coefficients(win[idx], pad, ws) if self.order > 1 else win[idx]
            dst = out[idx] if direct else values
            bad = kernel.sample_points(data, coords, dst, first, length, pad, self.order,
                                       kernel.MODE_CODES[self.mode], self.cval)
            if bad:  # pragma: no cover - the window is planned to hold every tap
                raise RuntimeError(f"{bad} samples of block {region} read outside its window {win_range}")
            if not direct:
                cast_into(values, out[idx])
        if ok is not None and counted < len(coords):
            np.copyto(out, fill, where=~ok.reshape(bshape[::-1]))
        return out
