"""``bigresample info FILE``: what a file is, as a dict (``describe``); ``report.info_lines`` renders it.

The file is opened as a run opens its input (``inputs.open_input``, headers
only: a NIfTI, any image nibabel reads, an OME-Zarr, local or at a URL), so
what ``info`` shows is what a run would read, and a file a run would refuse
is refused here with the same line.  No voxel is read.
"""

from __future__ import annotations

import numpy as np

from . import provenance
from . import location
from .inputs import open_input

#: NIfTI-1 and -2 header classes by version
NIFTI_VERSIONS = {"Nifti1Header": 1, "Nifti2Header": 2}


def describe(path, storage_options: dict | None = None) -> dict:
    """The geometry, type, scaling, header codes and provenance of the image at
    ``path`` (JSON-safe).  ``InputError`` (one line) for what cannot be read."""
    vol = open_input(path, read_data=False, role="image", storage_options=storage_options)
    try:
        hdr = vol.image.header
        # a format read through its own reader (OME-Zarr, TIFF, Zarr) has a NIfTI header made for the output only
        version = None if vol.made_header else _nifti_version(hdr)
        out = {
            "file": location.display(path),
            "format": vol.format,
            "nifti_version": version,
            "shape": [int(n) for n in vol.shape],
            "axes": ["x", "y", "z"] + _extra_axes(vol),
            "dtype": _dtype(vol),
            "spacing": provenance.json_safe(vol.spacing),  # the affine's column norms, as a run uses them
            "zooms": _zooms(vol, hdr),  # as the header stores them (pixdim), every axis
            "units": vol.units,
            "spacing_from": vol.spacing_from,  # None: the file gives none (--input-spacing does)
            "notes": list(vol.notes),
            "time_units": _time_units(vol, hdr),
            "affine": provenance.json_safe(vol.affine),
            **_nifti_fields(hdr, version, vol),
            "provenance": provenance.of_volume(vol),
        }
    finally:
        vol.close()
    if vol.ome_attrs is not None:
        ms = (vol.ome_attrs.get("ome", vol.ome_attrs).get("multiscales") or [{}])[0]
        out["ome"] = {"version": vol.ome_attrs.get("ome", {}).get("version", ms.get("version")),
                      "levels": len(ms.get("datasets", [])), "name": ms.get("name")}
    return out


def _nifti_version(hdr) -> int | None:
    for cls in type(hdr).__mro__:
        if cls.__name__ in NIFTI_VERSIONS:
            return NIFTI_VERSIONS[cls.__name__]
    return None


def _extra_axes(vol) -> list[str]:
    if vol.extra_axes is not None:
        return [str(a.get("name")) for a in vol.extra_axes]
    return [("t" if i == 3 else "c" if i == 4 else f"dim{i + 1}") for i in range(3, len(vol.shape))]


def _dtype(vol) -> str:
    try:
        return np.dtype(vol.image.get_data_dtype()).name
    except (TypeError, AttributeError):  # ECAT: a type per frame
        return vol.dtype.name


def _zooms(vol, hdr) -> list:
    try:
        return provenance.json_safe([float(z) for z in hdr.get_zooms()])
    except (AttributeError, TypeError):
        return provenance.json_safe(vol.spacing)


def _time_units(vol, hdr) -> str | None:
    if vol.extra_axes is not None:
        return next((a.get("unit") for a in vol.extra_axes if a.get("type") == "time"), None)
    if hasattr(hdr, "get_xyzt_units"):
        return hdr.get_xyzt_units()[1] or "unknown"
    return None


def _nifti_fields(hdr, version, vol) -> dict:
    """qform/sform and their codes, scaling, offset, description, intent,
    extensions: a NIfTI's header fields (None elsewhere; slope and inter as
    the run uses them)."""
    if version is None:
        return {"qform_code": None, "sform_code": None, "qform": None, "sform": None,
                "scl_slope": vol.slope, "scl_inter": vol.inter, "vox_offset": None, "description": None,
                "intent": None, "extensions": []}
    qform, qcode = hdr.get_qform(coded=True)
    sform, scode = hdr.get_sform(coded=True)
    slope, inter = hdr.get_slope_inter()
    return {
        "qform_code": int(qcode), "sform_code": int(scode),
        "qform": None if qform is None else provenance.json_safe(qform),
        "sform": None if sform is None else provenance.json_safe(sform),
        "scl_slope": None if slope is None else provenance.json_safe(slope),
        "scl_inter": None if inter is None else provenance.json_safe(inter),
        "vox_offset": int(vol.image.dataobj.offset) if hasattr(vol.image.dataobj, "offset") else None,
        "description": bytes(np.asarray(hdr["descrip"]).item()).split(b"\0")[0].decode("latin-1") or None,
        "intent": hdr.get_intent()[0] if int(hdr["intent_code"]) else None,
        "extensions": [{"code": int(e.get_code()), "name": _extension_name(e.get_code()),
                        "bytes": len(e.get_content())} for e in hdr.extensions],
    }


def _extension_name(code) -> str:
    from nibabel.nifti1 import extension_codes

    try:
        return str(extension_codes.label[code])
    except KeyError:
        return "unknown"
