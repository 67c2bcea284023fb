"""What the tests share: the whole-array scipy references, the exactness check, the
block-by-block loop that a reference is compared with, and the small files the tests
write.  A test module imports from here, never from another test module (fixtures and
the hypothesis profiles live in conftest.py)."""

import itertools
import mmap
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from bigresample import kernel
from bigresample.geometry import ReferenceGrid, make_grid, reference_grid, voxel_spacing

#: A test of the C extension's own routes (interior spans, AVX2 reads): skipped when the
#: fallback runs (BIGRESAMPLE_KERNEL=python, or no extension), which has none of them.
compiled_only = pytest.mark.skipif(not kernel.COMPILED, reason=f"the fallback runs: {kernel.FALLBACK_WHY}")

#: docs/grids-and-exactness.md, "Exactness": tolerance as a fraction of the input's range.
TOLERANCE = {0: 0.0, 1: 1e-6, 2: 1e-5, 3: 1e-5, 4: 1e-5, 5: 1e-5}


class Expected(np.ndarray):
    """A reference array that also carries ``exact``: the same scipy call in float64.

    An integer output at order > 0 may differ from scipy by one unit only where
    the float value sits on a rounding boundary; ``exact`` says where those are.
    """

    exact = None  # a view or a slice has lost track of which float belongs to which voxel: set by with_exact only

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        """Arithmetic on it gives plain arrays."""
        plain = tuple(np.asarray(x) if isinstance(x, Expected) else x for x in inputs)
        if "out" in kwargs:
            kwargs["out"] = tuple(np.asarray(x) if isinstance(x, Expected) else x for x in kwargs["out"])
        return getattr(ufunc, method)(*plain, **kwargs)

    def __array_function__(self, func, types, args, kwargs):
        def plain(x):
            if isinstance(x, Expected):
                return np.asarray(x)
            if isinstance(x, (list, tuple)):
                return type(x)(plain(v) for v in x)
            return x

        return func(*plain(args), **{k: plain(v) for k, v in kwargs.items()})


def with_exact(rounded, exact):
    """``rounded`` (scipy's integer output) carrying ``exact`` (its float64 output)."""
    out = np.asarray(rounded).view(Expected)
    out.exact = np.asarray(exact, dtype=np.float64)
    return out


def scipy_reference(data, grid, order, mode, cval=0.0, dtype=None):
    """The whole-array scipy.ndimage call that a resampling must equal.

    ``zoom`` grid: ``scipy.ndimage.zoom(zoom=s/t, grid_mode=False)``; other grids:
    ``affine_transform`` with the diagonal matrix ``r`` and offset ``x(0)``.
    Extra axes: every volume the same way.  The shape, ratios and offsets are
    derived here from docs/grids-and-exactness.md ("Grids"), not taken from
    ``grid`` (which only says which grid and the spacing ratios asked for):
    ``independent_axis`` below, and the test asserts ``grid`` agrees.
    An integer output carries its float64 twin (``with_exact``).
    """
    out_dtype = np.dtype(data.dtype if dtype is None else dtype)
    rounded = _scipy_whole(data, grid, order, mode, cval, out_dtype)
    if out_dtype.kind in "iu" and order > 0:
        return with_exact(rounded, _scipy_whole(data, grid, order, mode, cval, np.dtype(np.float64)))
    return rounded


def _scipy_whole(data, grid, order, mode, cval, out_dtype):
    k = len(grid.axes)
    axes = [independent_axis(a.n, a.ratio, grid.grid, a.m) for a in grid.axes]
    shape = tuple(m for m, _, _ in axes)
    assert shape == grid.out_shape, f"Grid's shape {grid.out_shape} != the documented {shape}"
    several = [m > 1 for m, _, _ in axes]  # with one output voxel the step is never used
    np.testing.assert_allclose(grid.steps[several], [step for m, step, _ in axes if m > 1], rtol=1e-12)
    np.testing.assert_allclose(grid.offsets, [x0 for _, _, x0 in axes], rtol=1e-12, atol=1e-12)

    def one(vol):
        if grid.grid == "zoom":
            # the call bigresample claims to equal: the factor asked for, s / t = 1 / r (not m / n, which
            # is exactly 1 when r = 0.9999 keeps m == n and makes scipy return a copy of the input);
            # m / n only on an exact .5 tie where 1 / r rounds to another size than the grid's
            zoom = [1.0 / a.ratio if int(round(a.n / a.ratio)) == m else m / a.n
                    for a, (m, _, _) in zip(grid.axes, axes)]
            return ndimage.zoom(
                vol, zoom, order=order, mode=mode, cval=cval, grid_mode=False, output=out_dtype
            )
        return ndimage.affine_transform(
            vol,
            np.array([step for _, step, _ in axes]),
            offset=np.array([x0 for _, _, x0 in axes]),
            output_shape=shape,
            order=order,
            mode=mode,
            cval=cval,
            output=out_dtype,
        )

    if data.ndim == k:
        return one(data)
    extra = data.shape[k:]
    out = np.empty(shape + extra, dtype=out_dtype)
    for idx in np.ndindex(*extra):
        out[(Ellipsis,) + idx] = one(data[(Ellipsis,) + idx])
    return out


def itk_inside(in_shape, matrix, offset, out_shape):
    """Which output voxels are inside the input by ITK's ``IsInsideBuffer`` (``itk_reference``)."""
    matrix, offset = np.asarray(matrix, dtype=np.float64), np.asarray(offset, dtype=np.float64)
    o = np.meshgrid(*[np.arange(m, dtype=np.float64) for m in out_shape], indexing="ij")
    inside = np.ones(tuple(out_shape), dtype=bool)
    for a, n in enumerate(in_shape):
        x = ((offset[a] + o[0] * matrix[a, 0]) + o[1] * matrix[a, 1]) + o[2] * matrix[a, 2]
        inside &= (x >= -0.5) & (x < n - 0.5)
    return inside


def itk_reference(data, matrix, offset, out_shape, order, cval=0.0, dtype=None):
    """``--mode itk`` (docs/grids-and-exactness.md, "Outside the input"), whole-array: scipy's
    ``affine_transform(mode='nearest')`` with ``matrix`` and ``offset``, then ``cval`` at every
    output voxel whose continuous input index ``x`` is not inside on every axis, inside being
    ITK's ``ImageFunction::IsInsideBuffer``: ``-0.5 <= x < n - 0.5`` (NaN outside).  ``x`` is
    computed here as scipy's C loop does, ``((offset + o_0 m_0) + o_1 m_1) + o_2 m_2``.  Extra
    axes: every volume the same way; an integer output carries its float64 twin."""
    out_dtype = np.dtype(data.dtype if dtype is None else dtype)
    inside = itk_inside(data.shape[:3], matrix, offset, out_shape)

    def whole(kind):
        fill = cval
        if kind.kind in "iu":  # cval as scipy stores a value into an integer output: rounded half away, saturated
            info = np.iinfo(kind)
            fill = np.clip(np.sign(cval) * np.floor(abs(cval) + 0.5), info.min, info.max)
        out = np.empty(tuple(out_shape) + data.shape[3:], dtype=kind)
        for idx in np.ndindex(*data.shape[3:]):
            vol = ndimage.affine_transform(data[(Ellipsis,) + idx], matrix, offset=offset, output_shape=out_shape,
                                           order=order, mode="nearest", output=kind)
            vol[~inside] = fill
            out[(Ellipsis,) + idx] = vol
        return out

    rounded = whole(out_dtype)
    if out_dtype.kind in "iu" and order > 0:
        return with_exact(rounded, whole(np.dtype(np.float64)))
    return rounded


def independent_axis(n, r, grid, m_seen=None):
    """(m, step, x(0)) of one axis as docs/grids-and-exactness.md writes them, from ``n`` and ``r = t/s``.

    ``m = max(1, round(n * s / t))``; center: ``x(o) = (o - (m-1)/2) * r + (n-1)/2``;
    origin: ``x(o) = o * r``; zoom: ``x(o) = o * (n-1)/(m-1)`` (0 if m == 1).
    ``n / r`` can differ from ``n * s / t`` in the last bit: on an exact .5 tie
    (only there) the size seen by the caller, ``m_seen``, is taken.
    """
    exact = n / r
    m = max(1, int(round(exact)))
    if m_seen is not None and m_seen != m and abs(exact - np.floor(exact) - 0.5) < 1e-9 * max(exact, 1.0):
        m = m_seen
    if grid == "zoom":
        return m, ((n - 1) / (m - 1) if m > 1 else 0.0), 0.0
    if grid == "origin":
        return m, r, 0.0
    return m, r, (0 - (m - 1) / 2) * r + (n - 1) / 2


def assert_matches_reference(result, expected, data, order, cval=None, exact=None):
    """Exactness as docs/grids-and-exactness.md ("Exactness") states it, relative to the input's range.

    NaN and infinities must sit where the reference has them (same sign);
    finite values within the order's tolerance.  Integer outputs: order 0
    identical; order > 0 may differ by one unit only where the reference's
    float64 value (``exact``, or ``expected.exact``) lies within the tolerance
    of a rounding boundary (k + 0.5), equal everywhere else.
    """
    result, exact = np.asarray(result), exact if exact is not None else getattr(expected, "exact", None)
    expected = np.asarray(expected)
    assert result.shape == expected.shape, f"shape {result.shape} != reference {expected.shape}"
    assert result.dtype == expected.dtype, f"dtype {result.dtype} != reference {expected.dtype}"
    tol = TOLERANCE[order] * max(_span(data, cval), 1e-300)
    if expected.dtype.kind in "iu" and order > 0:
        assert exact is not None, "an integer output at order > 0 needs the float64 reference (exact=)"
        _assert_integers_match(result, expected, np.asarray(exact, dtype=np.float64), tol)
        return
    if tol == 0 or expected.dtype.kind not in "fc":
        np.testing.assert_array_equal(result, expected)  # NaN where NaN, bit for bit elsewhere
        return
    _assert_same_non_finite(result, expected)
    finite = np.isfinite(expected)
    diff = np.abs(result[finite].astype(np.float64) - expected[finite].astype(np.float64))
    worst = float(diff.max()) if diff.size else 0.0
    assert worst <= tol, f"max abs difference {worst!r} > tolerance {tol!r} (order {order})"


def _span(data, cval):
    data = np.asarray(data)
    finite = data[np.isfinite(data)] if data.dtype.kind == "f" else data
    span = float(finite.max()) - float(finite.min()) if finite.size else 0.0
    if cval is not None and np.isfinite(cval) and finite.size:
        span = max(span, abs(float(cval) - float(finite.min())), abs(float(cval) - float(finite.max())))
    return span


def _assert_same_non_finite(result, expected):
    """NaN exactly where the reference has NaN; +inf/-inf exactly where it has them."""
    r_nan, e_nan = np.isnan(result), np.isnan(expected)
    bad = r_nan != e_nan
    assert not bad.any(), (
        f"NaN mismatch at {int(bad.sum())} voxel(s), first {tuple(int(i) for i in np.argwhere(bad)[0])}: "
        f"got {result[bad][0]!r}, reference {expected[bad][0]!r}"
    )
    inf = np.isinf(result) | np.isinf(expected)
    bad = inf & (result != expected)
    assert not bad.any(), (
        f"infinity mismatch at {int(bad.sum())} voxel(s), first {tuple(int(i) for i in np.argwhere(bad)[0])}: "
        f"got {result[bad][0]!r}, reference {expected[bad][0]!r}"
    )


def _assert_integers_match(result, expected, exact, tol):
    """Equal, except one unit where ``exact`` is within ``tol`` of k + 0.5 (both sides of the tie)."""
    assert exact.shape == expected.shape, f"float reference shape {exact.shape} != {expected.shape}"
    near_tie = np.abs(exact - (np.floor(exact) + 0.5)) <= tol
    diff = np.abs(result.astype(np.int64) - expected.astype(np.int64))
    off = (diff > 0) & ~near_tie
    assert not off.any(), (
        f"{int(off.sum())} integer voxel(s) differ away from a rounding boundary, first at "
        f"{tuple(int(i) for i in np.argwhere(off)[0])}: got {result[off][0]}, reference {expected[off][0]} "
        f"(float {exact[off][0]!r})"
    )
    assert diff.max(initial=0) <= 1, f"integer difference {int(diff.max())} > 1 unit at a rounding boundary"


def make_volume(path, shape=(24, 20, 14), spacing=(0.1, 0.1, 0.1), dtype=np.float32, seed=0, header=None):
    rng = np.random.default_rng(seed)
    if np.dtype(dtype).kind in "iu":
        data = rng.integers(0, 1000, size=shape).astype(dtype)
    else:
        data = (rng.random(shape) * 1000).astype(dtype)
    affine = np.diag(list(spacing) + [1.0])
    affine[:3, 3] = [-3.0, 4.0, 5.0]
    img = nib.Nifti1Image(data, affine, header=header)
    img.header.set_qform(affine, 1)
    img.header.set_sform(affine, 2)
    img.header.set_xyzt_units("mm", "sec")
    nib.save(img, path)
    return data, affine


def same_but_provenance(path) -> bytes:
    """The NIfTI (.nii or .nii.gz) at ``path``, byte for byte but for its
    provenance record (``bigresample.provenance``), which differs between runs
    (the date, the command line, the output's name): the header re-serialised
    without that extension, then every byte after ``vox_offset`` as stored.
    Fails when the record is missing."""
    import gzip
    import io

    from bigresample import provenance
    from bigresample.nifti import header_bytes

    raw = open(path, "rb").read()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    klass = nib.Nifti1Header if int.from_bytes(raw[:4], "little") in (348, 348 << 24) else nib.Nifti2Header
    hdr = klass.from_fileobj(io.BytesIO(raw))
    assert provenance.from_header(hdr) is not None, f"{path}: no provenance record"
    return header_bytes(provenance.without(hdr)) + raw[int(hdr["vox_offset"]):]


# ---------------------------------------------------------------- block by block against the whole array


def blockwise(resampler, data, block, dtype=None, ws=None):
    """The output of ``resampler`` assembled block by block (blocks of shape ``block``, the
    last ones cut at the edge, in file order: the first axis fastest), each by ``compute``,
    or by ``compute_into`` through ``ws`` (one workspace for every block, as a worker thread
    has); axes of ``data`` beyond the grid's are carried whole."""
    g = resampler.grid
    k = len(g.out_shape)
    out = np.empty(g.out_shape + data.shape[k:], dtype=data.dtype if dtype is None else dtype)
    starts = itertools.product(*[range(0, m, b) for m, b in zip(g.out_shape, block)][::-1])
    for start in (s[::-1] for s in starts):
        region = tuple(slice(i, min(i + b, m)) for i, b, m in zip(start, block, g.out_shape))
        full = region + (slice(None),) * (data.ndim - k)
        out[region] = resampler.compute(data, full, dtype) if ws is None else resampler.compute_into(
            data, full, dtype, ws).T
    return out


def whole(data, g, order, mode, cval=0.0, dtype=None):
    """The whole-array ``scipy.ndimage.affine_transform`` onto the reference grid ``g``, one call per
    volume of the extra axes; an integer output at order > 0 carries its float64 twin (``with_exact``:
    one unit of difference is allowed only next to a rounding boundary)."""
    dtype = np.dtype(data.dtype if dtype is None else dtype)
    if mode == "itk":  # the default of a reference run: ITK's rule (scipy's nearest, cval beyond half a voxel)
        return itk_reference(data, g.matrix, g.offset, g.out_shape, order, cval, dtype)
    rounded = _whole(data, g, order, mode, cval, dtype)
    if dtype.kind in "iu" and order > 0:
        return with_exact(rounded, _whole(data, g, order, mode, cval, np.dtype(np.float64)))
    return rounded


def _whole(data, g, order, mode, cval, dtype):
    if data.ndim == 3:
        return ndimage.affine_transform(data, g.homogeneous, output_shape=g.out_shape, order=order, mode=mode,
                                        cval=cval, output=dtype)
    out = np.empty(g.out_shape + data.shape[3:], dtype)
    for idx in np.ndindex(*data.shape[3:]):
        out[(Ellipsis,) + idx] = _whole(data[(Ellipsis,) + idx], g, order, mode, cval, dtype)
    return out


# ---------------------------------------------------------------- oblique grids

#: an input affine with unequal spacings and an offset
A_IN = np.array([[0.1, 0, 0, 1.0], [0, 0.1, 0, 2.0], [0, 0, 0.12, 3.0], [0, 0, 0, 1]])


def rotation(axis, degrees):
    """The 4x4 rotation by ``degrees`` about voxel axis ``axis``."""
    t = np.radians(degrees)
    c, s = np.cos(t), np.sin(t)
    r = np.eye(4)
    i, j = [k for k in range(3) if k != axis]
    r[i, i], r[i, j], r[j, i], r[j, j] = c, -s, s, c
    return r


def oblique_reference(shape=(70, 75, 60)):
    """(shape, affine) of a reference grid rotated about two axes, with its own spacings."""
    a = rotation(2, 17) @ rotation(0, 9) @ np.diag([0.13, 0.11, 0.15, 1.0])
    a[:3, 3] = [1.5, 2.2, 2.6]
    return shape, a


# ---------------------------------------------------------------- files


def write_nifti(path, data, affine, units="mm", qcode=1, scode=2):
    """``data`` as a NIfTI-1 at ``path`` with ``affine`` as both its qform and sform."""
    img = nib.Nifti1Image(data, affine)
    img.header.set_xyzt_units(units)
    img.set_qform(affine, qcode)
    img.set_sform(affine, scode)
    nib.save(img, path)
    return path


def write_ome(path, data, scale, units="micrometer", fmt="0.5", axes="zyx"):
    """An OME-Zarr image written by ome-zarr-py (the independent writer)."""
    import warnings

    import zarr

    group = zarr.open_group(str(path), mode="w", zarr_format=3 if fmt == "0.5" else 2)
    unit = {a: ("second" if a == "t" else units) for a in axes}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ome-zarr-py's own deprecation warnings, on import and use
        from ome_zarr.format import FormatV04, FormatV05
        from ome_zarr.writer import write_image

        write_image(data, group, scale_factors=[], fmt=FormatV05() if fmt == "0.5" else FormatV04(), axes=axes,
                    scale=dict(zip(axes, scale)), axes_units=unit)


def ome_array(path, level=0):
    """Level ``level`` of an OME-Zarr image read by ome-zarr-py, back in NIfTI axis order (x, y, z, ...)."""
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Reader

    node = list(Reader(parse_url(str(path)))())[0]
    data = np.asarray(node.data[level])
    return data.transpose(tuple(range(data.ndim))[::-1]), node.metadata


def check_output(in_path, out_path, target_mm, order=1, grid="center"):
    """Shape, spacing, affine invariant and data against the whole-array reference."""
    src = nib.load(in_path)
    raw = np.asanyarray(src.dataobj.get_unscaled())
    g = make_grid(src.shape[:3], voxel_spacing(src.affine), target_mm, grid)
    out = nib.load(out_path)
    assert out.shape == g.out_shape + src.shape[3:]
    np.testing.assert_allclose(voxel_spacing(out.affine), g.output_spacing(voxel_spacing(src.affine)), rtol=1e-6)
    # the written affine obeys A_out @ [o, 1] == A_in @ [x(o), 1]
    o = np.array([1.0, 2.0, 1.0, 1.0])
    x = np.array([a.coordinates(1 if i != 1 else 2, 3 if i != 1 else 3)[0] for i, a in enumerate(g.axes)] + [1.0])
    np.testing.assert_allclose(out.affine @ o, src.affine @ x, atol=1e-4)
    got = np.asanyarray(out.dataobj.get_unscaled())
    assert_matches_reference(got, scipy_reference(raw, g, order, "nearest"), raw, order)
    return src, out


# ---------------------------------------------------------------- runs


def run_cli(*args, **kw):
    """``python -m bigresample ARGS`` started in its own process (not waited for)."""
    return subprocess.Popen(
        [sys.executable, "-m", "bigresample", *map(str, args)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw,
    )


def journal_blocks(journal: Path) -> int:
    """The blocks a journal records as done (its lines after the first); 0 while there is none."""
    try:
        return max(0, len(journal.read_text().splitlines()) - 1)
    except OSError:
        return 0


class InterruptAfter:
    """An executor (threads by default) that stops, as Ctrl-C would, after ``k`` commits."""

    def __init__(self, k, inner=None):
        from bigresample.executors import Threads

        self.inner, self.k, self.n = inner or Threads(2), k, 0
        self.remote = self.inner.remote

    def run(self, task, todo, commit):
        def counted(i, payload):
            commit(i, payload)
            self.n += 1
            if self.n == self.k:
                raise KeyboardInterrupt

        self.inner.run(task, todo, counted)

    def after_running(self, fn):
        self.inner.after_running(fn)


def run_job_stages(job, executor):
    """Every stage of ``job`` through ``executor``; returns the blocks each stage reused."""
    from bigresample.report import Report
    from bigresample.runner import resume, run_stage

    reused = []
    for stage in job.stages:
        journal, done = resume(job, stage, Report())
        reused.append(run_stage(job, stage, journal, done, executor, job.volume.source, Report()))
    return reused


def planned(src, out, **kw):
    """The planned job of ``Request.make(src, out, **kw)``, its input data attached."""
    from bigresample.job import plan_job
    from bigresample.request import Request

    job = plan_job(Request.make(src, out, **kw))
    job.volume.attach_data()
    return job


def smooth_volume(shape, seed=0, dtype=np.float32):
    rng = np.random.default_rng(seed)
    data = ndimage.gaussian_filter(rng.standard_normal(shape), 2.0) * 1000
    return data.astype(dtype)


def interpolated_reference(data, grid, order, mode, cval):
    """(labels, gap): the arg-max of the interpolated indicators, ties to the smallest label, and
    the difference between the two largest values at each output voxel."""
    candidates = set(np.unique(data).tolist()) | ({int(cval)} if "constant" in mode else set())
    values = []
    for lab in sorted(candidates):
        ind = (data == lab).astype(np.float64)
        outside = 1.0 if "constant" in mode and lab == cval else 0.0
        if isinstance(grid, ReferenceGrid):
            values.append(ndimage.affine_transform(ind, grid.homogeneous, output_shape=grid.out_shape, order=order,
                                                   mode=mode, cval=outside))
        else:
            values.append(scipy_reference(ind, grid, order, mode, outside, np.float64))
    stack = np.stack(values)
    out = np.array(sorted(candidates), dtype=data.dtype)[np.argmax(stack, axis=0)]  # first maximum: smallest label
    top = np.sort(stack, axis=0)
    gap = top[-1] - top[-2] if len(values) > 1 else np.full(out.shape, np.inf)
    return out, gap


def mode_reference(data, grid, cval):
    """The most frequent label of each output voxel's footprint (input voxels i with
    x - w/2 <= i < x + w/2 on every axis), ties to the smallest; cval where it holds none."""
    feet = []
    for ax in grid.axes:
        i, w = np.arange(ax.n, dtype=np.float64), abs(ax.affine_scale)
        feet.append([(i >= x - w / 2) & (i < x + w / 2) for x in ax.coordinates()])
    out = np.empty(grid.out_shape, dtype=data.dtype)
    for j in np.ndindex(*grid.out_shape):
        voxels = data[np.ix_(*(f[jj] for f, jj in zip(feet, j)))]
        if voxels.size == 0:
            out[j] = cval
            continue
        values, counts = np.unique(voxels, return_counts=True)
        out[j] = values[np.argmax(counts)]  # the first maximum: the smallest label
    return out


def bigresample_ome_groups(root):
    """Every OME-Zarr group bigresample wrote under ``root`` (a ``zarr.json`` group whose attributes hold
    both ``ome`` and ``bigresample``; hidden folders, partial outputs among them, left out)."""
    import json
    from pathlib import Path

    found = []
    for meta in Path(root).rglob("zarr.json"):
        if any(part.startswith(".") for part in meta.relative_to(root).parts):
            continue
        try:
            doc = json.loads(meta.read_text())
        except (OSError, ValueError):
            continue
        attrs = doc.get("attributes") or {}
        if doc.get("node_type") == "group" and "ome" in attrs and "bigresample" in attrs:
            found.append(meta.parent)
    return found


def validate_ngff(group_path) -> None:
    """The OME-NGFF reference models (ome-zarr-models) accept the image at ``group_path`` as NGFF 0.5."""
    import zarr
    from ome_zarr_models.v05.image import Image

    Image.from_zarr(zarr.open_group(str(group_path), mode="r"))


def kernel_volume(shape, dtype, seed=0):
    rng = np.random.default_rng(seed)
    smooth = ndimage.gaussian_filter(rng.standard_normal(shape), 1.5)
    smooth = (smooth - smooth.min()) / max(np.ptp(smooth), 1e-12)
    if np.dtype(dtype).kind in "iu":
        hi = 250 if dtype == np.uint8 else 3000
        return (smooth * hi - (0 if dtype == np.uint8 else 1000)).round().astype(dtype)
    return (smooth * 1000 - 300).astype(dtype)


def rotated_grid(shape, out_shape, angles, scale=(1.0, 1.0, 1.0), shift=(0.0, 0.0, 0.0)):
    a_ref = rotation(0, angles[0]) @ rotation(1, angles[1]) @ rotation(2, angles[2]) @ np.diag(
        [0.1 * scale[0], 0.1 * scale[1], 0.12 * scale[2], 1.0])
    a_ref[:3, 3] = A_IN[:3, 3] + np.array(shift) * 0.1
    return reference_grid(shape, A_IN, out_shape, a_ref)


def permuted_grid(in_shape, axes, flips, spacing, out_shape, shift=(0.0, 0.0, 0.0)):
    """A reference grid whose axis ``j`` runs along input axis ``axes[j]`` (the other way where
    ``flips[j]``), ``spacing[j]`` input voxels a step (one number: every axis), centred on the
    input then moved by ``shift`` input voxels (the input's affine: the identity)."""
    a_ref = np.zeros((4, 4))
    a_ref[3, 3] = 1.0
    steps = np.broadcast_to(np.asarray(spacing, dtype=np.float64), (3,))
    for j, (i, f, t) in enumerate(zip(axes, flips, steps)):
        a_ref[i, j] = -t if f else t
    centre = (np.array(in_shape) - 1) / 2 + np.asarray(shift, dtype=np.float64)
    a_ref[:3, 3] = centre - a_ref[:3, :3] @ ((np.array(out_shape) - 1) / 2)
    return reference_grid(in_shape, np.eye(4), out_shape, a_ref)


def near_tie(g) -> np.ndarray:
    """Output voxels whose sample coordinate lies within 1e-6 voxel of a half-way tie on some axis."""
    o = np.stack(np.meshgrid(*[np.arange(m, dtype=np.float64) for m in g.out_shape], indexing="ij"), -1)
    c = o @ g.matrix.T + g.offset
    return np.any(np.abs(c - np.floor(c) - 0.5) < 1e-6, axis=-1)


def check_general(got, expected, data, order, cval, g):
    """The contract: order 0 identical but where a sample is within 1e-6 voxel
    of a half-way tie; orders >= 1 as ``assert_matches_reference``."""
    if order > 0:
        assert_matches_reference(got, expected, data, order, cval=cval)
        return
    assert got.shape == expected.shape and got.dtype == expected.dtype
    same = got == expected
    if got.dtype.kind == "f":
        same |= np.isnan(got) & np.isnan(expected)
    excused = near_tie(g)
    same |= excused.reshape(excused.shape + (1,) * (got.ndim - excused.ndim))
    assert same.all(), f"{int((~same).sum())} voxels differ at order 0"


def engine_reference(data, g, order, mode, cval=0.0, output=np.float64):
    if g.grid == "zoom":
        zoom = [1.0 if a.ratio == 1.0 else a.m / a.n for a in g.axes]
        return ndimage.zoom(data, zoom, order=order, mode=mode, cval=cval, grid_mode=False, output=output)
    return ndimage.affine_transform(data, [a.ratio for a in g.axes], offset=[a.offset for a in g.axes],
                                    output_shape=g.out_shape, order=order, mode=mode, cval=cval, output=output)


def staircase():
    """A matrix whose x coordinate adds 2**54 and takes it away again: on
    output plane z = 1 the coordinates land inside the volume as a staircase
    of steps of 4 (the rounding at 2**54), not on the row's straight line."""
    matrix = np.array([[0.7, 0.0, -(2.0**54)], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    offset = np.array([2.0**54 + 5.0, 1.0, 0.0])
    return matrix, offset


def guarded(shape, dtype):
    """An array that ends exactly where a PROT_NONE page begins: a read past it faults."""
    import ctypes

    page = mmap.PAGESIZE
    nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
    size = (nbytes + page - 1) // page * page
    mem = mmap.mmap(-1, size + page)
    addr = ctypes.addressof(ctypes.c_char.from_buffer(mem))
    libc = ctypes.CDLL(None, use_errno=True)
    assert libc.mprotect(ctypes.c_void_p(addr + size), ctypes.c_size_t(page), 0) == 0
    return np.frombuffer(mem, dtype=dtype, count=int(np.prod(shape)), offset=size - nbytes).reshape(shape), mem


def cast_output(values, dtype):
    """``values`` stored into a new array of ``dtype`` by the engine's cast (``engine.cast_into``:
    integers rounded half away from zero and saturated, as scipy.ndimage stores them)."""
    from bigresample.engine import cast_into

    out = np.empty(np.shape(values), dtype=dtype)
    cast_into(np.asarray(values), out)
    return out


def registered_reference(data, in_affine, out_shape, out_affine, matrices, order, mode="itk", cval=0.0):
    """A registration of affine maps applied to the whole array: ``warp_reference`` at the
    coordinates ``chain_coordinates`` gives (each output voxel ``o`` samples the input at the
    continuous index ``A_in^-1 M_1 ... M_k A_out o``; ``matrices``: the (4, 4) RAS mm maps
    ``M_1 ... M_k``, output point to input point, listed as the chain lists them: the last
    applied first), in ``data``'s float type or float64 (``mode='itk'``: ITK's rule)."""
    from bigresample.registration import AffineMap

    coords = chain_coordinates(in_affine, out_affine, out_shape, [AffineMap(m) for m in matrices])
    return warp_reference(data, coords, order, mode, cval, data.dtype if data.dtype.kind == "f" else np.float64)


# ---------------------------------------------------------------- displacement fields (issue 31)


class ArrayField:
    """A displacement field's region reader over an in-memory (nx, ny, nz, 3) array (picklable),
    recording the regions read (``reads``)."""

    def __init__(self, d):
        self.d = np.asarray(d, dtype=np.float64)
        self.reads = []

    def __call__(self, region):
        self.reads.append(region)
        return self.d[region]


def smooth_field(shape, amplitude, seed=0):
    """Smooth displacements (nx, ny, nz, 3) in mm, at most ``amplitude`` in magnitude per component."""
    rng = np.random.default_rng(seed)
    d = ndimage.gaussian_filter(rng.standard_normal(tuple(shape) + (3,)), (1.5, 1.5, 1.5, 0))
    return d * (amplitude / max(np.abs(d).max(), 1e-12))


def chain_coordinates(in_affine, out_affine, out_shape, maps):
    """The input's continuous index of every output voxel (x, y, z, 3), written out from the
    definitions: the output's world point, each map applied from the last listed to the first
    (an affine's matrix; a field's displacements trilinear between its samples,
    ``map_coordinates(order=1, mode='nearest')`` on its whole array per component), then the
    input affine's inverse."""
    o = np.stack(np.meshgrid(*[np.arange(m, dtype=np.float64) for m in out_shape], indexing="ij"), -1)
    p = o @ np.asarray(out_affine)[:3, :3].T + np.asarray(out_affine)[:3, 3]
    for m in reversed(maps):
        if m.is_affine:
            p = p @ m.matrix[:3, :3].T + m.matrix[:3, 3]
            continue
        whole = np.asarray(m.read(tuple(slice(0, n) for n in m.shape)), dtype=np.float64)
        inv = np.linalg.inv(m.affine)
        v = p @ inv[:3, :3].T + inv[:3, 3]
        p = p + np.stack([ndimage.map_coordinates(whole[..., c], np.moveaxis(v, -1, 0), order=1, mode="nearest")
                          for c in range(3)], axis=-1)
    inv = np.linalg.inv(np.asarray(in_affine))
    return p @ inv[:3, :3].T + inv[:3, 3]


def warp_reference(data, coords, order, mode, cval=0.0, dtype=None):
    """The whole-array ``scipy.ndimage.map_coordinates(data, coords, prefilter=True)`` at the
    coordinates ``coords`` (x, y, z, 3) (``chain_coordinates``), one call per volume of the extra
    axes; ``mode='itk'``: scipy's 'nearest', then ``cval`` wherever a coordinate lies beyond half
    a voxel of the input on some axis (ITK's ``IsInsideBuffer``).  An integer output at order > 0
    carries its float64 twin."""
    dtype = np.dtype(data.dtype if dtype is None else dtype)
    shape = coords.shape[:3]
    inside = np.all((coords >= -0.5) & (coords < np.array(data.shape[:3]) - 0.5), axis=-1)

    def whole(kind):
        out = np.empty(shape + data.shape[3:], dtype=kind)
        for idx in np.ndindex(*data.shape[3:]):
            vol = ndimage.map_coordinates(data[(Ellipsis,) + idx], np.moveaxis(coords, -1, 0), order=order,
                                          mode="nearest" if mode == "itk" else mode, cval=cval, output=kind)
            if mode == "itk":
                fill = cval
                if kind.kind in "iu":  # as scipy stores a value into an integer output
                    info = np.iinfo(kind)
                    fill = np.clip(np.sign(cval) * np.floor(abs(cval) + 0.5), info.min, info.max)
                vol[~inside] = fill
            out[(Ellipsis,) + idx] = vol
        return out

    rounded = whole(dtype)
    if dtype.kind in "iu" and order > 0:
        return with_exact(rounded, whole(np.dtype(np.float64)))
    return rounded


def check_warp(got, expected, data, order, cval, coords):
    """The contract: order 0 identical but where a coordinate lies within 1e-6 voxel of a
    half-way tie; orders >= 1 as ``assert_matches_reference``."""
    if order > 0:
        assert_matches_reference(got, expected, data, order, cval=cval)
        return
    assert got.shape == expected.shape and got.dtype == expected.dtype
    same = got == expected
    excused = np.any(np.abs(coords - np.floor(coords) - 0.5) < 1e-6, axis=-1)
    same |= excused.reshape(excused.shape + (1,) * (got.ndim - excused.ndim))
    assert same.all(), f"{int((~same).sum())} voxels differ at order 0"
