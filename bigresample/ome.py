"""OME-Zarr (NGFF) images: output (0.5, a zarr v3 group with an ``ome``
attribute) and input (0.4 or 0.5, level 0 of the first multiscale image).

An OUTPUT ending in ``.zarr`` is written as one image: array ``0`` holds the
resampled volume in NGFF axis order (leading axes such as ``t, c``, then
``z, y, x``: NIfTI's file order up to the leading axes, so the blocks go in
as whole chunks, see ``NgffWriter``), with ``scale`` (the output spacing) and ``translation`` (where voxel
0's centre is) as its coordinateTransformations, in the header's unit.

NGFF 0.5 has no rotation: for an axis-aligned affine with positive diagonal
the transformations are exact; otherwise ``scale`` holds the voxel spacing
(the affine's column norms) and ``translation`` the world position of voxel
0, and the full NIfTI affine is kept in the group attribute
``bigresample.nifti_affine`` (x, y, z order) so that nothing is lost.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np

from . import location
from .errors import BigresampleError, InputError, one_line
from .geometry import voxel_spacing
from .volume import InputVolume, array_volume

NGFF_VERSION = "0.5"
#: NGFF's unit of the spatial axes for a NIfTI's; unknown units get none (NGFF's unit is optional), so that
#: they read back unknown (``_read_multiscale``), as the provenance records them
UNITS = {"mm": "millimeter", "micron": "micrometer", "meter": "meter", "unknown": None}
TIME_UNITS = {"sec": "second", "msec": "millisecond", "usec": "microsecond"}
#: NGFF space units read as a NIfTI unit and the factor into it.
SPACE_UNITS_IN = {"millimeter": ("mm", 1.0), "micrometer": ("micron", 1.0), "meter": ("meter", 1.0),
                  "nanometer": ("micron", 1e-3), "angstrom": ("micron", 1e-4), "centimeter": ("mm", 10.0)}
TIME_UNITS_IN = {v: k for k, v in TIME_UNITS.items()}


class OmeError(BigresampleError):
    """A folder that is not an OME-Zarr image we can read (the message says why)."""


def is_axis_aligned(affine) -> bool:
    a = np.asarray(affine, dtype=np.float64)[:3, :3]
    return bool(np.all(a[~np.eye(3, dtype=bool)] == 0) and np.all(np.diag(a) > 0))


def check_leading_axes(extra_axes) -> None:
    """OmeError unless the non-spatial axes (NGFF order, before z y x) can lead
    an NGFF image: at most two, unique names, time before channel/custom."""
    names = [a["name"] for a in extra_axes]
    types = [a.get("type") for a in extra_axes]
    if len(extra_axes) > 2:
        raise OmeError(f"NGFF images have at most 5 axes; this one has {len(extra_axes) + 3}")
    if len(set(names)) != len(names) or set(names) & set("zyx"):
        raise OmeError(f"axis names must be unique: {' '.join(names)} z y x")
    if "time" in types[1:]:
        raise OmeError(f"NGFF puts time before the other axes; this image's order is {' '.join(names)} z y x")


def metadata(name: str, affines, units: str, extra_axes=()) -> dict:
    """The group's attributes for one image whose levels ``0, 1, ...`` have
    the output ``affines`` (spatial axes x, y, z).  ``extra_axes``: the
    non-spatial axes in NGFF order (before z, y, x), dicts with ``name``,
    ``type``, optionally ``unit``, and their ``scale``."""
    check_leading_axes(extra_axes)
    unit = UNITS.get(units, "millimeter")
    lead = [{k: v for k, v in a.items() if k != "scale" and v is not None} for a in extra_axes]
    axes = lead + [{"name": ax, "type": "space", **({"unit": unit} if unit else {})} for ax in "zyx"]
    datasets = []
    for level, affine in enumerate(affines):
        a = np.asarray(affine, dtype=np.float64)
        scale = [float(e.get("scale") or 1.0) for e in extra_axes] + [float(v) for v in voxel_spacing(a)[::-1]]
        translation = [0.0] * len(extra_axes) + [float(v) for v in a[:3, 3][::-1]]
        datasets.append({"path": str(level), "coordinateTransformations": [
            {"type": "scale", "scale": scale},
            {"type": "translation", "translation": translation},
        ]})
    a0 = np.asarray(affines[0], dtype=np.float64)
    return {
        "ome": {"version": NGFF_VERSION, "multiscales": [{"name": name, "axes": axes, "datasets": datasets}]},
        "bigresample": {"nifti_affine": a0.tolist(), "axis_aligned": is_axis_aligned(a0)},
    }


def create_group(path, attrs: dict, options: dict | None = None) -> None:
    """The image's group metadata at ``path``.  A folder's is made afresh; at
    a URL, only the group's ``zarr.json`` is written, beside arrays already
    there (so that it can come last)."""
    import zarr

    if location.is_url(path):
        # overwrite=False: zarr would otherwise delete the arrays below it
        zarr.create_group(str(path), attributes=attrs, zarr_format=3, overwrite=False,
                          storage_options=location.storage_options(path, options))
        return
    group = zarr.open_group(str(path), mode="w", zarr_format=3)
    group.attrs.update(attrs)


def leading_axes(vol) -> list[dict]:
    """The non-spatial axes for an OME-Zarr output, in NGFF order, which is
    also their spatial-first order (``SpatialView``): an OME-Zarr input's
    own; for a NIfTI, dimension 4 is time (its step and unit from the header),
    5 the components ("c", a channel axis), further ones custom."""
    if vol.extra_axes is not None:
        return vol.extra_axes
    hdr = vol.image.header
    zooms = vol.extra_zooms
    unit = (hdr.get_xyzt_units()[1] if hasattr(hdr, "get_xyzt_units") else None) or "sec"
    axes = []
    for i in range(3, len(vol.shape)):
        if i == 3:
            axes.append({"name": "t", "type": "time", "unit": TIME_UNITS.get(unit, "second"),
                         "scale": float(zooms[0]) if zooms and np.isfinite(zooms[0]) and zooms[0] > 0 else 1.0})
        else:
            axes.append({"name": "c" if i == 4 else f"dim{i + 1}", "type": "channel" if i == 4 else None,
                         "scale": 1.0})
    return axes


class SpatialView:
    """An NGFF-ordered array (leading axes such as ``t, c``, then ``z, y, x``)
    seen spatial-first like a NIfTI proxy: ``x, y, z``, then the leading axes in
    their order (so time is NIfTI's 4th dimension, channels its 5th)."""

    def __init__(self, array):
        self.array = array
        self.lead = array.ndim - 3
        self.shape = tuple(array.shape)[self.lead:][::-1] + tuple(array.shape)[: self.lead]
        self.dtype = array.dtype
        self.ndim = len(self.shape)

    def __getitem__(self, slices):
        slices = tuple(slices) + (slice(None),) * (self.ndim - len(slices))
        values = np.asarray(self.array[slices[3:] + slices[2::-1]])
        n = self.lead
        return values.transpose((n + 2, n + 1, n) + tuple(range(n)))


class NgffWriter:
    """Writes file-order blocks (the spatial-first order reversed: ``c, t, z, y,
    x`` for a 5D image) into an NGFF-ordered array (``t, c, z, y, x``): the
    leading axes swap back.  Small and picklable (the zarr array)."""

    def __init__(self, array):
        self.array = array
        self.lead = array.ndim - 3

    def __setitem__(self, region, block):
        n = self.lead
        self.array[tuple(region[:n])[::-1] + tuple(region[n:])] = np.transpose(
            block, tuple(range(n))[::-1] + tuple(range(n, n + 3)))


def open_image(path, options: dict | None = None, level: int = 0) -> SpatialView:
    import zarr

    addr = location.join(path, str(level))
    return SpatialView(zarr.open_array(addr, mode="r", storage_options=location.storage_options(addr, options)))


def written_scale(path, options: dict | None = None) -> list[float]:
    """The level-0 scale as written in the group's metadata (NGFF axis order)."""
    import zarr

    group = zarr.open_group(str(path), mode="r", storage_options=location.storage_options(path, options))
    ms = group.attrs["ome"]["multiscales"][0]
    return list(ms["datasets"][0]["coordinateTransformations"][0]["scale"])


def is_ome_zarr(path, options: dict | None = None) -> bool:
    """True for a folder (or URL) holding zarr group metadata (v3 ``zarr.json``
    or v2 ``.zattrs``).  At a URL, StoreError when the store cannot be asked."""
    if location.is_url(path):
        return any(location.exists(location.join(path, meta), options) for meta in ("zarr.json", ".zattrs"))
    p = Path(path)
    return p.is_dir() and ((p / "zarr.json").is_file() or (p / ".zattrs").is_file())


@dataclass
class OmeImage:
    """Level 0 of an OME-Zarr image, as the NIfTI side needs it."""

    data: SpatialView  # spatial-first: x, y, z, then the leading NGFF axes in order
    affine: np.ndarray  # x, y, z in ``units``
    units: str  # NIfTI name: 'mm', 'micron', 'meter' or 'unknown'
    extra_axes: list  # the leading axes, NGFF order: dicts with name, type, unit, scale
    attrs: dict | None = None  # the group's attributes (a provenance document among them: bigresample.provenance)


def read_image(path, options: dict | None = None) -> OmeImage:
    """Open level 0 of the first multiscale image of the OME-Zarr at ``path``.

    Its spatial axes must be the last three, named z, y, x (what NGFF
    requires of space axes, in this order in practice); leading axes (t, c)
    are carried through.  The affine is built from the level's ``scale`` and
    ``translation`` (then the multiscale's own transformations, if any); a
    group written by bigresample from a rotated NIfTI gives back that affine.
    """
    import zarr

    try:
        group = zarr.open_group(str(path), mode="r", storage_options=location.storage_options(path, options))
        attrs = dict(group.attrs)
    except Exception as exc:
        raise OmeError(f"not a zarr group ({_describe(exc, path, options)})") from None
    try:
        return _read_multiscale(path if location.is_url(path) else Path(path), attrs, options)
    except OmeError:
        raise
    except (KeyError, IndexError, TypeError, ValueError, AttributeError) as exc:
        # metadata of the wrong shape somewhere: say where we were, not a traceback
        what = f"{type(exc).__name__}: {one_line(exc)}"
        raise OmeError(f"malformed multiscales metadata ({what})") from None


def _describe(exc, path, options) -> str:
    """An exception from zarr in a few words; at a URL, without secrets."""
    return location.why(exc, options) if location.is_url(path) else one_line(exc)


def _read_multiscale(path, attrs: dict, options: dict | None = None) -> OmeImage:
    import zarr

    ome = attrs.get("ome", attrs)
    multiscales = ome.get("multiscales") if isinstance(ome, dict) else None
    if not multiscales:
        raise OmeError("no OME-Zarr 'multiscales' metadata")
    if not isinstance(multiscales, list) or not isinstance(multiscales[0], dict):
        raise OmeError(f"'multiscales' must be a list of images; got {multiscales!r:.60}")
    ms = multiscales[0]
    if "axes" not in ms:
        raise OmeError("no 'axes' in the multiscales metadata (required since NGFF 0.4)")
    axes = [a if isinstance(a, dict) else {"name": a} for a in ms["axes"]]
    names = [a.get("name") for a in axes]
    if len(axes) < 3 or names[-3:] != ["z", "y", "x"]:
        raise OmeError(f"spatial axes must be the last three, z y x; got {' '.join(map(str, names))}")
    datasets = ms.get("datasets")
    if not datasets or not isinstance(datasets[0], dict) or not isinstance(datasets[0].get("path"), str):
        raise OmeError(f"no level 0 dataset with a path; 'datasets' is {datasets!r:.60}")
    dataset = datasets[0]
    rel = PurePosixPath(dataset["path"])
    if rel.is_absolute() or ".." in rel.parts or "://" in dataset["path"]:
        raise OmeError(f"level 0 path must lie inside the image folder; got {dataset['path']!r}")
    addr = location.join(path, str(rel))
    try:
        array = zarr.open_array(addr, mode="r", storage_options=location.storage_options(addr, options))
    except Exception as exc:
        raise OmeError(f"cannot open level {dataset['path']!r} ({_describe(exc, path, options)})") from None
    if array.ndim != len(axes):
        raise OmeError(f"level {dataset['path']!r} has {array.ndim} dimensions, the axes say {len(axes)}")
    n = len(axes)
    scale, translation = np.ones(n), np.zeros(n)
    for transforms in (dataset.get("coordinateTransformations", []), ms.get("coordinateTransformations", [])):
        for t in transforms:
            kind = t.get("type")
            if kind not in ("scale", "translation", "identity"):
                raise OmeError(f"unsupported coordinateTransformation {kind!r} (scale and translation only)")
            if kind == "identity":
                continue
            values = np.asarray(t[kind], dtype=np.float64)
            if values.shape != (n,) or not np.all(np.isfinite(values)):
                raise OmeError(f"{kind} must be {n} finite numbers; got {t[kind]!r}")
            if kind == "scale":
                if np.any(values == 0):
                    raise OmeError(f"scale must not be 0 on any axis; got {t[kind]!r}")
                scale, translation = scale * values, translation * values
            else:
                translation = translation + values
    spatial_units = {a.get("unit") for a in axes[-3:]}
    if len(spatial_units) > 1:
        raise OmeError(f"z, y and x have different units: {', '.join(str(a.get('unit')) for a in axes[-3:])}")
    unit_name = spatial_units.pop()
    if unit_name is not None and unit_name not in SPACE_UNITS_IN:
        raise OmeError(f"unsupported space unit {unit_name!r} ({', '.join(SPACE_UNITS_IN)})")
    units, factor = SPACE_UNITS_IN[unit_name] if unit_name else ("unknown", 1.0)
    affine = np.eye(4)
    affine[:3, :3] = np.diag(scale[-3:][::-1] * factor)
    affine[:3, 3] = translation[-3:][::-1] * factor
    kept = attrs.get("bigresample", {}).get("nifti_affine") if dataset["path"] == "0" else None
    if kept is not None and np.allclose(voxel_spacing(np.asarray(kept)), voxel_spacing(affine), rtol=1e-5):
        affine = np.asarray(kept, dtype=np.float64)
    extra = [{"name": a.get("name"), "type": a.get("type"), "unit": a.get("unit"), "scale": float(sc)}
             for a, sc in zip(axes[:-3], scale[:-3])]
    return OmeImage(SpatialView(array), affine, units, extra, attrs)


def open_ome(path, role: str, options: dict | None = None) -> InputVolume:
    """An OME-Zarr input: level 0 read chunk by chunk through zarr, with a
    NIfTI header made from its metadata (shape, type, spacing, units, time
    step, affine as qform and sform, code 2 "aligned") to carry over."""
    try:
        im = read_image(path, options)
    except OmeError as exc:
        raise InputError(f"{location.display(path)}: cannot read as OME-Zarr {role}: {exc}") from None
    time_unit = next((a.get("unit") for a in im.extra_axes if a.get("type") == "time"), None)
    return array_volume(path, im.data, im.affine, units=im.units, format_name="OME-Zarr image",
                        extra_scales=[a["scale"] for a in im.extra_axes],
                        time_unit=TIME_UNITS_IN.get(time_unit, "sec"),
                        extra_axes=im.extra_axes, ome_attrs=im.attrs if im.attrs is not None else {},
                        spacing_from="the OME-Zarr multiscales scale")
