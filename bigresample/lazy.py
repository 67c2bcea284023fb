"""Lazy, array-level resampling: array in, dask array out.

Every output block is one task.  The task reads the input region its block
needs (``Resampler.compute``) from the source, which sits in the graph once:

* a numpy array is held once (as ``dask.array.from_array`` would);
* a file-backed array-like (nibabel ``ArrayProxy``, zarr array, anything with
  ``shape``, ``dtype`` and slicing) is held as the small reader object, so the
  graph carries no voxel data and tasks read their own regions;
* a dask array is not computed: each task depends on exactly the input chunks
  its region overlaps.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import dask.array as da
import numpy as np
from dask.base import tokenize
from dask.highlevelgraph import HighLevelGraph

from . import labels as label_methods
from .engine import READ_GAP, Resampler, _split_runs
from .geometry import make_grid
from .bounds import parse_mode

#: Default output block size in bytes of float64 work per block.
DEFAULT_BLOCK_BYTES = 32 * 2**20


def _spatial_ndim(shape, spacing) -> int:
    k = len(spacing)
    if len(shape) < k:
        raise ValueError(
            f"array has {len(shape)} dimensions but {k} spacings were given: shape {tuple(shape)}"
        )
    return k


def output_chunks(out_shape, extra_shape=(), chunks=None, block_bytes: int = DEFAULT_BLOCK_BYTES):
    """Normalise ``chunks`` for an output of ``out_shape + extra_shape``.

    ``chunks`` may be None (automatic: blocks of about ``block_bytes`` of
    float64, one index along each extra axis), a block shape for the spatial
    axes, or anything ``dask.array.normalize_chunks`` accepts for the full
    shape.
    """
    shape = tuple(out_shape) + tuple(extra_shape)
    k = len(out_shape)
    if chunks is None:
        spatial = da.core.normalize_chunks(
            "auto", tuple(out_shape), limit=block_bytes, dtype=np.float64
        )
        return spatial + tuple((1,) * n for n in extra_shape)
    if isinstance(chunks, Sequence) and len(chunks) == k and k < len(shape):
        chunks = tuple(chunks) + tuple(1 for _ in extra_shape)
    return da.core.normalize_chunks(chunks, shape)


def _block_regions(chunks):
    bounds = [np.cumsum((0,) + tuple(c)) for c in chunks]
    for idx in itertools.product(*[range(len(c)) for c in chunks]):
        yield idx, tuple(slice(int(b[i]), int(b[i + 1])) for b, i in zip(bounds, idx))


def _compute_block(resampler: Resampler, source, region, dtype):
    return resampler.compute(source, region, dtype)


class _Mosaic:
    """Array-like view over a few chunks of a dask array (inside one task)."""

    def __init__(self, shape, dtype, pieces, boxes):
        self.shape, self.dtype = tuple(shape), np.dtype(dtype)
        self.pieces, self.boxes = pieces, boxes

    def __getitem__(self, slices):
        slices = tuple(slices) + (slice(None),) * (len(self.shape) - len(slices))
        bounds = [s.indices(n)[:2] for s, n in zip(slices, self.shape)]
        out = np.empty(tuple(b - a for a, b in bounds), dtype=self.dtype)
        filled = 0
        for piece, box in zip(self.pieces, self.boxes):
            src, dst = [], []
            for (a, b), (p0, p1) in zip(bounds, box):
                lo, hi = max(a, p0), min(b, p1)
                if lo >= hi:
                    break
                src.append(slice(lo - p0, hi - p0))
                dst.append(slice(lo - a, hi - a))
            else:
                out[tuple(dst)] = piece[tuple(src)]
                filled += int(np.prod([s.stop - s.start for s in dst]))
        if filled != out.size:  # pragma: no cover - a planning bug, never data
            raise RuntimeError("input region not covered by the chunks given to the task")
        return out


def _compute_block_from_chunks(resampler, shape, dtype, pieces, boxes, region, out_dtype):
    return resampler.compute(_Mosaic(shape, dtype, pieces, boxes), region, out_dtype)


def resample_array(
    data,
    spacing,
    new_spacing,
    *,
    order: int = 1,
    mode: str = "nearest",
    cval: float = 0.0,
    grid: str = "center",
    chunks=None,
    dtype=None,
    labels=None,
) -> da.Array:
    """Resample an array lazily to a new voxel spacing.

    Parameters
    ----------
    data : numpy array, dask array or array-like
        Input; its first ``len(spacing)`` axes are spatial, any further axes
        (time, channels) are left alone.  Array-likes (nibabel ``ArrayProxy``,
        zarr arrays) are read region by region, never whole.
    spacing, new_spacing : sequence of float
        Input and requested voxel spacing of the spatial axes.
    order : int, 0-5
        Spline order, as scipy.ndimage.
    mode : str
        Boundary mode, as scipy.ndimage (default 'nearest'), or ``'itk'``:
        'nearest' within half a voxel of the input, ``cval`` beyond (ITK's rule,
        ``bigresample.bounds``; on these grids it only differs from 'nearest'
        where ``grid='origin'`` upsamples: its last samples lie beyond).
    cval : float
        Value outside the input for the 'constant' modes and 'itk'.
    grid : {'center', 'origin', 'zoom'}
        Output grid convention (see ``bigresample.geometry``).
    chunks : optional
        Output chunks (a block shape for the spatial axes, or full dask chunks).
    dtype : optional
        Output dtype; default the input's.  Integer outputs are rounded and
        saturated.
    labels : {None, True, 'nearest', 'linear', 'cubic', 'mode'}
        The array is a label map: nearest neighbour (``True``), or a label
        method (docs/grids-and-exactness.md, "Label maps"); ``order`` is then
        not used.  Integer arrays only for linear, cubic and mode.

    Returns
    -------
    dask.array.Array
        Nothing is computed until asked; ``.compute()`` equals the whole-array
        scipy.ndimage call on the same grid (see docs/grids-and-exactness.md, "Exactness").
    """
    k = _spatial_ndim(data.shape, spacing)
    g = make_grid(data.shape[:k], spacing, new_spacing, grid)
    method = label_methods.parse_labels(labels)
    if method in label_methods.METHODS:
        label_methods.check(method, data.dtype, 1.0, 0.0, parse_mode(mode), cval, g)
        return resample_with(label_methods.make(method, g, parse_mode(mode), cval), data, chunks=chunks, dtype=dtype)
    resampler = Resampler(g, 0 if method == "nearest" else order, mode, cval)
    return resample_with(resampler, data, chunks=chunks, dtype=dtype)


def resample_with(resampler: Resampler, data, *, chunks=None, dtype=None) -> da.Array:
    """Lazy resampling of ``data`` by a prepared ``Resampler``."""
    k = resampler.ndim
    shape = tuple(int(n) for n in data.shape)
    if shape[:k] != resampler.grid.in_shape:
        raise ValueError(f"array shape {shape} does not match the grid's input {resampler.grid.in_shape}")
    extra = shape[k:]
    out_dtype = np.dtype(data.dtype if dtype is None else dtype)
    out_chunks = output_chunks(resampler.grid.out_shape, extra, chunks)
    token = tokenize(resampler, shape, str(data.dtype), out_dtype.str, out_chunks, _source_token(data))
    name = f"resample-{token}"
    dsk = {}
    if isinstance(data, da.Array):
        in_bounds = [np.cumsum((0,) + c) for c in data.chunks]
        for idx, region in _block_regions(out_chunks):
            per_axis = []
            for ax, runs in enumerate(_input_runs(resampler, region[:k])):
                hit = set()
                for a, b in runs:
                    i0 = int(np.searchsorted(in_bounds[ax], a, side="right") - 1)
                    i1 = int(np.searchsorted(in_bounds[ax], b, side="left"))
                    hit.update(range(i0, i1))
                per_axis.append(sorted(hit))
            for ax, sl in enumerate(region[k:], start=k):
                i0 = int(np.searchsorted(in_bounds[ax], sl.start, side="right") - 1)
                i1 = int(np.searchsorted(in_bounds[ax], sl.stop, side="left"))
                per_axis.append(list(range(i0, i1)))
            keys, boxes = [], []
            for cidx in itertools.product(*per_axis):
                keys.append((data.name,) + cidx)
                boxes.append(
                    tuple((int(in_bounds[a][i]), int(in_bounds[a][i + 1])) for a, i in enumerate(cidx))
                )
            dsk[(name,) + idx] = (
                _compute_block_from_chunks,
                resampler,
                shape,
                data.dtype,
                keys,
                boxes,
                region,
                out_dtype,
            )
        graph = HighLevelGraph.from_collections(name, dsk, dependencies=[data])
    else:
        src_key = f"source-{token}"
        dsk[src_key] = data
        res_key = f"resampler-{token}"
        dsk[res_key] = resampler
        for idx, region in _block_regions(out_chunks):
            dsk[(name,) + idx] = (_compute_block, res_key, src_key, region, out_dtype)
        graph = HighLevelGraph.from_collections(name, dsk, dependencies=[])
    meta = np.empty((0,) * len(shape), dtype=out_dtype)
    return da.Array(graph, name, out_chunks, meta=meta)


def _input_runs(resampler, spatial) -> list[list[tuple[int, int]]]:
    """Per spatial axis, the runs of input indices the output block ``spatial`` reads."""
    if not hasattr(resampler, "plans"):  # a label method: its window
        return [[(s.start, s.stop)] if s.stop > s.start else [] for s in resampler.input_region(spatial)]
    return [_split_runs(np.unique(p.src[p.src >= 0]), READ_GAP) for p in resampler.plans(spatial)]


def _source_token(data):
    if isinstance(data, (np.ndarray, da.Array)):
        return tokenize(data)
    # readers: identify by type and whatever identifies the file, not the bytes
    ident = getattr(data, "file_like", None) or id(data)
    return (type(data).__name__, str(ident), tuple(data.shape), str(data.dtype))
