import os

import nibabel as nib
import numpy as np
import pytest
from hypothesis import HealthCheck, settings
from scipy import ndimage

settings.register_profile(
    "default", max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile(
    "thorough", max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

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

    ``zoom`` grid: ``scipy.ndimage.zoom(grid_mode=False)``; other grids:
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
            zoom = [1.0 if a.ratio == 1.0 else m / a.n for a, (m, _, _) in zip(grid.axes, axes)]
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


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


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


@pytest.fixture(autouse=True)
def _every_ome_zarr_written_is_valid_ngff(request):
    """After each test that had a ``tmp_path``: every OME-Zarr bigresample wrote there validates
    (ome-zarr-models), so no route (levels, labels, shards, URLs through file://) writes one that does not."""
    yield
    root = request.node.funcargs.get("tmp_path") if hasattr(request.node, "funcargs") else None
    if root is None:
        return
    for group in bigresample_ome_groups(root):
        try:
            validate_ngff(group)
        except Exception as exc:  # pydantic's ValidationError, or zarr's on a broken array
            pytest.fail(f"{group}: not valid OME-NGFF 0.5: {' '.join(str(exc).split())[:400]}")
