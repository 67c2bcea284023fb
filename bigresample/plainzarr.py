"""Plain Zarr arrays (zarr v2 or v3, a local folder or a URL) without OME metadata.

The array is read chunk by chunk through zarr (picklable: its store's address).  Its axes: a v3 array's
``dimension_names`` when it has them (x, y, z, t/time, c/channel, in any order), else the NGFF convention:
C order with z, y, x last and up to two leading axes read as NIfTI's dimensions 4 and 5, in order
(``axes``).  A plain array holds no spacing: ``--input-spacing`` gives it (docs/files.md).
"""

from __future__ import annotations

import json
from pathlib import Path

from . import location
from .axes import AxesError, AxesView, describe, spatial_order
from .inputs import InputFormat
from .errors import InputError
from .volume import array_volume


class PlainZarrInput(InputFormat):
    """A zarr array (``zarr.json`` with ``"node_type": "array"``, or a v2 ``.zarray``), not a group."""

    name = "Zarr array"

    def recognises(self, path, options):
        try:
            return is_zarr_array(path, options)
        except location.StoreError:
            return False

    def open(self, path, *, role, options):
        return open_array(path, role, options)


def is_zarr_array(path, options: dict | None = None) -> bool:
    """True for a folder (or URL) holding a zarr array's metadata."""
    if location.is_url(path):
        if location.exists(location.join(path, ".zarray"), options):
            return True
        meta = location.join(path, "zarr.json")
        if not location.exists(meta, options):
            return False
        fs, where = location.filesystem(meta, options)
        return _is_array_json(fs.cat_file(where))
    p = Path(path)
    if not p.is_dir():
        return False
    if (p / ".zarray").is_file():
        return True
    return (p / "zarr.json").is_file() and _is_array_json((p / "zarr.json").read_bytes())


def _is_array_json(raw: bytes) -> bool:
    try:
        return json.loads(raw).get("node_type") == "array"
    except (ValueError, AttributeError):
        return False


def open_array(path, role: str, options: dict | None = None):
    """The volume of the zarr array at ``path``, from its metadata."""
    import zarr

    where = location.display(path)
    try:
        array = zarr.open_array(str(path), mode="r", storage_options=location.storage_options(path, options))
    except Exception as exc:
        why = location.why(exc, options) if location.is_url(path) else " ".join(str(exc).split())
        raise InputError(f"{where}: cannot open the zarr array {role} ({why})") from None
    shape = tuple(int(n) for n in array.shape)
    names = getattr(array.metadata, "dimension_names", None)
    if not names or any(n is None for n in names):
        if len(shape) < 2 or len(shape) > 5:
            raise InputError(f"{where}: a zarr array of {len(shape)} dimensions {shape}: need 3 to 5 "
                             f"(z, y, x last), or dimension_names")
        # NGFF's convention: ..., z, y, x; the leading axes keep their order, as NIfTI's dimensions 4 and 5
        names = [f"dim{i}" for i in range(len(shape) - 3)] + ["z", "y", "x"][-len(shape):]
        lead = len(shape) - 3
        order = (lead + 2, lead + 1, lead) + tuple(range(lead)) if lead >= 0 else (1, 0, None)
        extra = None
    else:
        try:
            order, extra = spatial_order(names, shape)
        except AxesError as exc:
            raise InputError(f"{where}: {exc}") from None
    view = AxesView(array, order)
    note = describe(names, shape, order, extra or [{"name": f"dimension {4 + i}"} for i in range(len(order) - 3)])
    return array_volume(path, view, [[1.0, 0, 0, 0], [0, 1.0, 0, 0], [0, 0, 1.0, 0], [0, 0, 0, 1.0]],
                        units="unknown", format_name=f"Zarr v{array.metadata.zarr_format} array",
                        extra_scales=[1.0] * (len(order) - 3), notes=[note, "spacing: none in a plain zarr "
                                                                      "array (give it with --input-spacing X Y Z)"],
                        extra_axes=extra or None, spacing_from=None)
