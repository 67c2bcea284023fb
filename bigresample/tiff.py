"""TIFF inputs, through tifffile: one file (OME-TIFF, ImageJ hyperstack, BigTIFF, plain multi-page; tiled
or striped; compressed pages as tifffile decodes them), or a folder (or glob) of 2-D slices, one per z.

Nothing is read whole: a file's first series is read through tifffile's zarr view (``aszarr``: only the
tiles or strips a block's window touches are decoded), each worker thread with its own open file; a slice
stack reads, for a window, the rows and columns it needs of the slices of its z range, one file at a time.
The stored axes (tifffile's ``series.axes``: "ZYX", "CZYX", ImageJ's "TZCYX"...) are mapped onto x, y, z,
time, channel (``axes.spatial_order``).

Spacing: an OME-TIFF's ``PhysicalSizeX/Y/Z`` (and their units), an ImageJ file's resolution tags with its
``spacing`` and ``unit``; a plain TIFF and a slice stack give none (``--input-spacing`` does; docs/files.md).
"""

from __future__ import annotations

import glob
import os
import re
import threading
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np

from . import location, ome
from .axes import AxesError, AxesView, describe, spatial_order
from .inputs import InputFormat
from .errors import InputError
from .volume import array_volume

SUFFIXES = (".tif", ".tiff", ".btf", ".tf2", ".tf8")
#: OME's length units: (the NIfTI unit bigresample keeps, the factor into it)
_OME_UNITS = {"µm": ("micron", 1.0), "um": ("micron", 1.0), "micron": ("micron", 1.0), "nm": ("micron", 1e-3),
              "Å": ("micron", 1e-4), "mm": ("mm", 1.0), "cm": ("mm", 10.0), "m": ("meter", 1.0)}
#: ImageJ's unit names (its "unit" property)
_IMAGEJ_UNITS = {**_OME_UNITS, "\\u00B5m": ("micron", 1.0), "microns": ("micron", 1.0),
                 "millimeter": ("mm", 1.0), "nanometer": ("micron", 1e-3)}


def _tifffile():
    import tifffile

    return tifffile


class TiffArray:
    """Series ``series`` of the TIFF at ``path`` in its stored order, read through tifffile's zarr view;
    each thread opens the file once (a ``TiffFile`` is not shared between threads); picklable (the path)."""

    def __init__(self, path, series: int, shape, dtype):
        self.path, self.series, self.shape, self.dtype = str(path), series, tuple(shape), np.dtype(dtype)
        self._local = threading.local()
        self._open = []

    def __getstate__(self):
        return {"path": self.path, "series": self.series, "shape": self.shape, "dtype": self.dtype}

    def __setstate__(self, state):
        self.__init__(**state)

    def _array(self):
        arr = getattr(self._local, "array", None)
        if arr is None:
            import zarr

            tf = _tifffile().TiffFile(self.path)
            self._open.append(tf)
            arr = self._local.array = zarr.open_array(tf.series[self.series].aszarr(), mode="r")
        return arr

    def __getitem__(self, index):
        try:
            return self._array()[index]
        except (OSError, ValueError, KeyError, RuntimeError) as exc:
            raise InputError(f"{self.path}: cannot read its pages ({_one_line(exc)})") from None

    def close(self) -> None:
        while self._open:
            self._open.pop().close()
        self._local = threading.local()


class RawSeries:
    """An uncompressed series stored as one contiguous C-ordered block (``series.dataoffset``: what
    tifffile writes, ImageJ hyperstacks, most BigTIFF stacks), read through a memory map of the file
    opened when first read; picklable (the path, offset, shape and type).  tifffile's zarr view of such
    a file decodes strip by strip, tens of times slower (benchmarks/bench_tiff.py)."""

    def __init__(self, path, offset: int, shape, dtype):
        self.path, self.offset, self.shape = str(path), int(offset), tuple(int(n) for n in shape)
        self.stored = np.dtype(dtype)
        self.dtype = self.stored.newbyteorder("=")
        self._map = None

    def __getstate__(self):
        return {"path": self.path, "offset": self.offset, "shape": self.shape, "dtype": self.stored}

    def __setstate__(self, state):
        self.__init__(**state)

    def __getitem__(self, index):
        if self._map is None:
            self._map = np.memmap(self.path, self.stored, "r", self.offset, self.shape)
        return np.asarray(self._map[index], dtype=self.dtype)

    def close(self) -> None:
        self._map = None


def _read_plane(name, tf, ys, xs):
    """Rows ``ys`` and columns ``xs`` of the TIFF slice ``tf``: the rows read at their offsets when the page
    is stored uncompressed in one piece, else the page decoded (one 2-D plane) and cut."""
    page = tf.pages[0]
    if page.is_contiguous and page.compression == 1 and page.dtype is not None:
        h, w = page.shape[:2]
        y0, y1, _ = ys.indices(h)
        row = w * page.dtype.itemsize
        fh = tf.filehandle
        fh.seek(page.dataoffsets[0] + y0 * row)
        raw = fh.read(max(0, y1 - y0) * row)
        if len(raw) != max(0, y1 - y0) * row:
            raise InputError(f"{name}: file is truncated: its rows {y0}-{y1} are not all there")
        plane = np.frombuffer(raw, page.dtype.newbyteorder(tf.byteorder)).reshape(-1, w)
        return plane[:, xs]
    return page.asarray()[ys, xs]


class SliceStack:
    """2-D TIFF slices, one file per z, seen as one (z, y, x) array; a read opens the slices of its z range
    one at a time and decodes only the rows (strips, tiles) it needs; picklable (the file names)."""

    def __init__(self, files, plane, dtype):
        self.files, self.plane, self.dtype = [str(f) for f in files], tuple(plane), np.dtype(dtype).newbyteorder("=")
        self.shape = (len(self.files),) + self.plane

    def __getitem__(self, index):
        zs, ys, xs = index
        names = self.files[zs]
        out = None
        for k, name in enumerate(names):
            try:
                with _tifffile().TiffFile(name) as tf:
                    page = tf.series[0]
                    if tuple(page.shape) != self.plane or page.dtype.newbyteorder("=") != self.dtype:
                        raise InputError(f"{name}: slice is {page.dtype} {page.shape}, the stack's slices are "
                                         f"{self.dtype} {self.plane}")
                    values = _read_plane(name, tf, ys, xs)
            except InputError:
                raise
            except Exception as exc:
                raise InputError(f"{name}: cannot read the slice ({_one_line(exc)})") from None
            if out is None:
                out = np.empty((len(names),) + values.shape, self.dtype)
            out[k] = values
        return out


class TiffInput(InputFormat):
    """A TIFF file (``.tif``, ``.tiff``, ``.btf``...): its first series."""

    name = "TIFF"

    def recognises(self, path, options):
        return not location.is_url(path) and str(path).lower().endswith(SUFFIXES) and Path(path).is_file()

    def open(self, path, *, role, options):
        return open_tiff(Path(path), role)


class TiffSlicesInput(InputFormat):
    """A folder holding 2-D TIFF slices (and no zarr metadata), or a glob pattern matching them."""

    name = "TIFF slices"

    def recognises(self, path, options):
        if location.is_url(path):
            return False
        if glob.has_magic(str(path)):
            return bool(slice_files(path))
        p = Path(path)
        return p.is_dir() and not (p / "zarr.json").exists() and not (p / ".zattrs").exists() \
            and not (p / ".zarray").exists() and bool(slice_files(p))

    def open(self, path, *, role, options):
        return open_slices(path, role)


def natural_key(name: str):
    """Sort key: the digits in a name compared as numbers (slice_2 before slice_10)."""
    return [(0, int(part), "") if part.isdigit() else (1, 0, part) for part in re.split(r"(\d+)", name)]


def slice_files(path) -> list[Path]:
    """The slices of a folder (its ``*.tif``/``*.tiff`` files, hidden ones left out) or of a glob, in
    natural order."""
    if glob.has_magic(str(path)):
        found = [Path(f) for f in glob.glob(str(path)) if os.path.isfile(f)]
    else:
        found = [f for f in Path(path).iterdir() if f.is_file() and f.name.lower().endswith(SUFFIXES)
                 and not f.name.startswith(".")]
    return sorted(found, key=lambda f: natural_key(f.name))


def open_tiff(path: Path, role: str):
    """The volume of the TIFF at ``path`` from its headers (its IFDs and metadata)."""
    tifffile = _tifffile()
    try:
        tf = tifffile.TiffFile(path)
    except Exception as exc:
        raise InputError(f"{path}: not a TIFF file tifffile can read ({_one_line(exc)})") from None
    with tf:
        if not tf.series:
            raise InputError(f"{path}: the TIFF holds no image series")
        series = tf.series[0]
        _check_pages(path, tf, series)
        names, shape, dtype = series.axes, tuple(series.shape), series.dtype
        contiguous = series.dataoffset if series.keyframe.compression == 1 else None
        stored = np.dtype(dtype).newbyteorder(tf.byteorder)  # tifffile names the type, the file its byte order
        try:
            order, extra = spatial_order(names, shape)
        except AxesError as exc:
            raise InputError(f"{path}: {exc}") from None
        spacing, units, source, time_step = _spacing(tf, series)
        kind = "OME-TIFF" if tf.is_ome else "ImageJ TIFF" if tf.is_imagej else "TIFF"
        kind += " (BigTIFF)" if tf.is_bigtiff else ""
    for a in extra:
        if a["name"] == "t" and time_step:
            a["scale"], a["unit"] = time_step
    raw = contiguous is not None and not np.dtype(dtype).hasobject
    view = AxesView(RawSeries(path, contiguous, shape, stored) if raw else TiffArray(path, 0, shape, dtype), order)
    return _volume(path, view, spacing, units, source, kind, extra,
                   [describe(names, shape, order, extra)])


def _volume(path, view, spacing, units, source, kind, extra, notes):
    """``array_volume`` of ``view``: its spacing, or none (``spacing_from`` None, refused unless
    ``--input-spacing`` gives one)."""
    if spacing is None:
        notes = list(notes) + ["spacing: none in the file (give it with --input-spacing X Y Z)"]
    affine = np.diag(list(spacing if spacing is not None else (1.0, 1.0, 1.0)) + [1.0])
    time_unit = next((a.get("unit") for a in extra if a["name"] == "t"), None)
    return array_volume(path, view, affine, units=units if spacing is not None else "unknown", format_name=kind,
                        extra_scales=[a["scale"] for a in extra],
                        time_unit=ome.TIME_UNITS_IN.get(time_unit, "sec"), notes=notes,
                        extra_axes=extra or None, spacing_from=source)


def _check_pages(path, tf, series) -> None:
    """Refuse, from the IFDs alone, pages whose compression tifffile cannot decode here and a file
    shorter than its pages' data (a truncated TIFF)."""
    tifffile = _tifffile()
    page = series.keyframe
    try:
        tifffile.TIFF.DECOMPRESSORS[page.compression]
    except KeyError:
        name = getattr(page.compression, "name", page.compression)
        raise InputError(f"{path}: its pages are {name}-compressed, which needs the imagecodecs package "
                         f"(pip install imagecodecs)") from None
    size = os.path.getsize(path)
    if series.dataoffset is not None:
        need = int(series.dataoffset) + int(series.size) * series.dtype.itemsize
    else:
        need = max((int(o) + int(n) for p in series.pages if p is not None
                    for o, n in zip(p.dataoffsets, p.databytecounts) if n), default=0)
    if need > size:
        raise InputError(f"{path}: file is truncated: {size} bytes, its pages' data needs {need}")
    if int(np.prod(series.shape, dtype=np.int64)) != int(np.prod(series.get_shape(False), dtype=np.int64)):
        raise InputError(f"{path}: its series has inconsistent shapes {series.shape}")


def _spacing(tf, series):
    """``(spacing x y z, units, where it came from, (time step, unit) or None)``; spacing None when the
    file gives none."""
    if tf.is_ome:
        return _ome_spacing(tf.ome_metadata)
    if tf.is_imagej:
        return _imagej_spacing(tf.imagej_metadata or {}, series)
    return None, "unknown", None, None


def _ome_spacing(xml: str):
    try:
        root = ET.fromstring(xml)
    except ET.ParseError:
        return None, "unknown", None, None
    pixels = next((e for e in root.iter() if e.tag.endswith("}Pixels") or e.tag == "Pixels"), None)
    if pixels is None:
        return None, "unknown", None, None
    step = pixels.get("TimeIncrement")
    time = (float(step), {"s": "second", "ms": "millisecond", "µs": "microsecond"}.get(
        pixels.get("TimeIncrementUnit", "s"), "second")) if step else None
    sizes = [pixels.get(f"PhysicalSize{a}") for a in "XYZ"]
    units = [pixels.get(f"PhysicalSize{a}Unit", "µm") for a in "XYZ"]
    if None in sizes or any(u not in _OME_UNITS for u in units):
        return None, "unknown", None, time
    return (*_in_one_unit([float(s) for s in sizes], [_OME_UNITS[u] for u in units]),
            "OME-XML PhysicalSizeX/Y/Z", time)


def _imagej_spacing(md: dict, series):
    unit = md.get("unit")
    res = series.keyframe.resolution  # pixels per unit, x and y
    finterval = md.get("finterval")
    time = (float(finterval), "second") if finterval else None
    if unit not in _IMAGEJ_UNITS or not all(r and np.isfinite(r) for r in res):
        return None, "unknown", None, time
    x, y = 1.0 / float(res[0]), 1.0 / float(res[1])
    z = md.get("spacing")
    if z is None and "Z" in series.axes:
        return None, "unknown", None, time
    z = float(z) if z is not None else x
    return (*_in_one_unit([x, y, z], [_IMAGEJ_UNITS[unit]] * 3), "ImageJ resolution tags and spacing", time)


def _in_one_unit(sizes, units):
    """The spacing in the first axis' unit (OME allows one unit per axis)."""
    to_mm = {"mm": 1.0, "micron": 1e-3, "meter": 1e3}
    name = units[0][0]
    return [s * f * to_mm[u] / to_mm[name] for s, (u, f) in zip(sizes, units)], name


def open_slices(path, role: str):
    """The volume of a folder (or glob) of 2-D TIFF slices: every slice's header checked (one shape, one
    type, a 2-D image each, no number missing from a numbered sequence)."""
    files = slice_files(path)
    if not files:
        raise InputError(f"{path}: no TIFF slices found")
    _check_numbering(path, files)
    tifffile = _tifffile()
    plane = dtype = None
    for f in files:
        try:
            with tifffile.TiffFile(f) as tf:
                series = tf.series[0]
                _check_pages(f, tf, series)
                shape, dt = tuple(series.shape), series.dtype
        except InputError:
            raise
        except Exception as exc:
            raise InputError(f"{f}: not a TIFF slice tifffile can read ({_one_line(exc)})") from None
        if len(shape) != 2:
            raise InputError(f"{f}: a slice must be a 2-D image; this one has shape {shape} ({series.axes})")
        if plane is None:
            plane, dtype, first = shape, dt, f
        elif (shape, dt) != (plane, dtype):
            raise InputError(f"{f}: slice is {dt} {shape}, but {first.name} is {dtype} {plane}: the slices of a "
                             f"stack must have one shape and type")
    view = AxesView(SliceStack(files, plane, dtype), (2, 1, 0))
    where = Path(path) if not glob.has_magic(str(path)) else path
    note = f"axes: {len(files)} slices of (y={plane[0]}, x={plane[1]}), in name order, read as x, y, z"
    return _volume(where, view, None, "unknown", None, "TIFF slices", [], [note])


def _check_numbering(path, files) -> None:
    """Refuse a numbered sequence with a gap (a missing slice): the last number of each name, where all
    names share the same text around it."""
    parts = [re.fullmatch(r"(.*?)(\d+)(\D*)", f.name) for f in files]
    if len(files) < 2 or not all(parts) or len({(m.group(1), m.group(3)) for m in parts}) != 1:
        return
    numbers = [int(m.group(2)) for m in parts]
    for a, b, f in zip(numbers, numbers[1:], files[1:]):
        if b != a + 1:
            raise InputError(f"{path}: slice number {a + 1} is missing (the slices go from {a} to {b}, at "
                             f"{f.name}); {len(files)} slices found")


def _one_line(exc) -> str:
    return " ".join(str(exc).split())
