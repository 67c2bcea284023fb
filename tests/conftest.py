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


def scipy_reference(data, grid, order, mode, cval=0.0, dtype=None):
    """The whole-array scipy.ndimage call that a resampling must equal.

    ``zoom`` grid: ``scipy.ndimage.zoom(grid_mode=False)``; other grids:
    ``affine_transform`` with the diagonal matrix ``r`` and offset ``x(0)``.
    Extra axes: every volume the same way.
    """
    out_dtype = np.dtype(data.dtype if dtype is None else dtype)
    k = len(grid.axes)

    def one(vol):
        if grid.grid == "zoom":
            zoom = [1.0 if a.ratio == 1.0 else a.m / a.n for a in grid.axes]
            return ndimage.zoom(
                vol, zoom, order=order, mode=mode, cval=cval, grid_mode=False, output=out_dtype
            )
        return ndimage.affine_transform(
            vol,
            grid.ratios,
            offset=grid.offsets,
            output_shape=grid.out_shape,
            order=order,
            mode=mode,
            cval=cval,
            output=out_dtype,
        )

    if data.ndim == k:
        return one(data)
    extra = data.shape[k:]
    out = np.empty(grid.out_shape + extra, dtype=out_dtype)
    for idx in np.ndindex(*extra):
        out[(Ellipsis,) + idx] = one(data[(Ellipsis,) + idx])
    return out


def assert_matches_reference(result, expected, data, order, cval=None):
    """Exactness as docs/grids-and-exactness.md ("Exactness") states it, relative to the input's range.

    Integer outputs may differ by one unit where the float value sits on a
    rounding boundary.
    """
    assert result.shape == expected.shape
    assert result.dtype == expected.dtype
    finite = data[np.isfinite(data)] if data.dtype.kind == "f" else data
    span = float(finite.max()) - float(finite.min()) if finite.size else 0.0
    if cval is not None and np.isfinite(cval) and finite.size:
        span = max(span, abs(float(cval) - float(finite.min())), abs(float(cval) - float(finite.max())))
    tol = TOLERANCE[order] * max(span, 1e-300)
    if expected.dtype.kind in "iu":
        tol = max(tol, 1.0) if order > 0 else 0.0
    diff = np.abs(result.astype(np.float64) - expected.astype(np.float64))
    diff[np.isnan(result.astype(np.float64)) & np.isnan(expected.astype(np.float64))] = 0
    if tol == 0:
        np.testing.assert_array_equal(result, expected)
    else:
        worst = float(np.nanmax(diff)) if diff.size else 0.0
        assert worst <= tol, f"max abs difference {worst!r} > tolerance {tol!r} (order {order})"


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
