"""A NIfTI (or Analyze) header checked field by field before nibabel reads it.

nibabel reads damaged headers in many ways: it raises on some (a quaternion
that is not a rotation), byte-swaps the whole header on others (``dim[0]``
out of range), logs and "fixes" some (unknown form codes), reads voxel data
as header extensions when an extension's size is wrong (up to the whole
file, into memory), and leaves others to fail later (an undefined
``xyzt_units`` code).  ``check(path, role)`` reads the raw header bytes
itself and, for every field a corrupted file can carry, either

* refuses with one ``InputError`` naming the field and its value, or
* takes a sound fallback, returned as a ``Checked``: ``notes`` (one report
  line each) and ``fixes`` (fields to set in the header nibabel loaded, in
  memory only: the input file is never written).

The affine follows nibabel's rules (sform if its code is set, else qform,
else the voxel sizes), with one addition: when the form those rules pick is
unusable (not finite, singular, not a rotation) and the other one is usable,
the other one is used and the report says so.  A form that is set but
unusable is dropped (its code set to 0), so the output header never carries
it.

Fields that cannot make a run fail or an output unreadable (``descrip``,
``cal_min``, ``dim_info``: every byte decodes) are carried as they are.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np

from .codec import GZIP_MAGIC, open_gzip
from .errors import BigresampleError, one_line

#: numeric NIfTI data types bigresample resamples (uint8 ... float64)
SUPPORTED_CODES = {2, 4, 8, 16, 64, 256, 512, 768, 1024, 1280}
COMPLEX_CODES = {32, 1792, 2048}  # refused after loading, with the advice to split the parts
XFORM_CODES = {0, 1, 2, 3, 4, 5}
SPACE_UNITS = {0, 1, 2, 3}  # unknown, meter, mm, micron
TIME_UNITS = {0, 8, 16, 24, 32, 40, 48}  # unknown, s, ms, us, Hz, ppm, rad/s
SLICE_CODES = {0, 1, 2, 3, 4, 5, 6}
#: coordinates beyond this (in the header's units: a million km in mm) are not a scanner's
MAX_COORDINATE = 1e12
#: header extensions are read into memory by nibabel: more than this is refused
MAX_EXTENSION_BYTES = 64 * 2**20
#: no file holds more data than this (and an int64 byte count overflows past it)
MAX_DATA_BYTES = 2**60


class HeaderError(BigresampleError):
    """A header field that cannot be used; the message names the field and its value."""


@dataclass
class Checked:
    """What the raw header said that the loaded header must be told."""

    version: int  # 0 (Analyze), 1 or 2
    notes: list[str] = field(default_factory=list)  # fallbacks taken, one report line each
    fixes: dict = field(default_factory=dict)  # field name (or (name, index)) -> value

    def apply(self, header) -> None:
        """Set the fixed fields in ``header`` (a loaded image's, in memory)."""
        for key, value in self.fixes.items():
            if isinstance(key, tuple):
                name, i = key
                arr = header[name]
                arr[i] = value
                header[name] = arr
            else:
                header[key] = value


def _fmt(v) -> str:
    if isinstance(v, (bytes, np.bytes_)):
        return repr(bytes(v))
    if isinstance(v, (float, np.floating)):
        return f"{float(v):g}"
    return str(v.item() if hasattr(v, "item") else v)


def header_file(path: Path) -> tuple[Path, bool] | None:
    """(the file holding the header, single file?) for NIfTI/Analyze names; None for other formats."""
    name = path.name.lower()
    if name.endswith((".nii", ".nii.gz")):
        return path, True
    if name.endswith((".hdr", ".hdr.gz")):
        return path, False
    for img_ext, hdr_ext in ((".img.gz", ".hdr.gz"), (".img", ".hdr")):
        if name.endswith(img_ext):
            stem = path.name[: -len(img_ext)]
            for ext in (hdr_ext, hdr_ext.upper()):
                if (path.parent / (stem + ext)).exists():
                    return path.parent / (stem + ext), False
            return None
    return None


class _Reader:
    """Positional reads of a (possibly gzip-compressed) header file; gzip errors become one line."""

    def __init__(self, path: Path):
        self.path = path
        with open(path, "rb") as f:
            self.gz = f.read(2) == GZIP_MAGIC
        self.size = None if self.gz else os.path.getsize(path)

    def __enter__(self):
        self.f = open_gzip(self.path) if self.gz else open(self.path, "rb")
        return self

    def __exit__(self, *exc):
        self.f.close()
        return False

    def read(self, offset: int, n: int) -> bytes:
        try:
            self.f.seek(offset)  # forward in a gzip stream: decompressed in chunks, O(1) memory
            return self.f.read(n)
        except Exception as exc:  # zlib.error, EOFError, BadGzipFile, isal's error...
            raise HeaderError(f"{self.path}: corrupted or truncated gzip stream "
                              f"({one_line(exc)})") from None


def check(path, role: str = "input") -> Checked | None:
    """Check the header of the NIfTI/Analyze file ``path`` (see the module docstring).

    None for a file that is not named as a NIfTI or Analyze image (nibabel's
    own loader then decides what it is).
    """
    path = Path(path)
    found = header_file(path)
    if found is None:
        return None
    hpath, single = found
    with _Reader(hpath) as r:
        if hpath.name.lower().endswith(".gz") and not r.gz:  # nibabel would not read it either
            raise HeaderError(f"{hpath}: not a gzip file (a .nii.gz must be gzip-compressed)")
        return _check(path, hpath, single, r)


def _check(path: Path, hpath: Path, single: bool, r: _Reader) -> Checked:
    raw = r.read(0, 544)
    where = f"{path}: header" if hpath == path else f"{path}: header {hpath.name}"
    whose = str(path) if hpath == path else f"{path} (header {hpath.name})"
    if len(raw) < 348:
        raise HeaderError(f"{path}: file is truncated: {len(raw)} bytes, a NIfTI header needs 348")
    version, endian, hsize, h = _identify(path, raw)
    out = Checked(_check_magic(where, h, version, single))
    _check_data(where, h, out)
    offset = _check_offset(where, h, single, hsize, r, out)
    if out.version == 0:
        return out  # Analyze: the rest of the header is not NIfTI's
    if single:
        _check_extensions(where, r, hsize, offset, endian)
    elif r.size is not None or r.gz:
        _check_extensions(where, r, hsize, None, endian)
    _check_values(where, h, out)
    _check_forms(whose, h, raw[:hsize], endian, out.version, out)
    return out


def _identify(path: Path, raw: bytes):
    """(version 1 or 2, byte order, header size, the header's fields) from sizeof_hdr."""
    version, endian = None, None
    for e in ("<", ">"):
        n = int(np.frombuffer(raw[:4], dtype=f"{e}i4")[0])
        if n in (348, 540):
            version, endian = (1 if n == 348 else 2), e
            break
    if version is None:
        n = int(np.frombuffer(raw[:4], dtype="<i4")[0])
        raise HeaderError(f"{path}: not an image nibabel can read (header field sizeof_hdr is {n}; a NIfTI-1 "
                          "header has 348, NIfTI-2 540)")
    hsize = 348 if version == 1 else 540
    if len(raw) < hsize:
        raise HeaderError(f"{path}: file is truncated: {len(raw)} bytes, a NIfTI-2 header needs 540")
    layout = (nib.nifti1.header_dtype if version == 1 else nib.nifti2.header_dtype).newbyteorder(endian)
    h = np.ndarray((), dtype=layout, buffer=bytearray(raw[:hsize]))

    return version, endian, hsize, h


def _check_magic(where: str, h, version: int, single: bool) -> int:
    """The version the magic confirms (0: an Analyze 7.5 .hdr), or one line why not."""
    magic = bytes(h["magic"]).rstrip(b"\0")
    want = {(1, True): b"n+1", (1, False): b"ni1", (2, True): b"n+2", (2, False): b"ni2"}[version, single]
    if magic != want:
        if version == 1 and not single:  # an Analyze 7.5 .hdr: no NIfTI fields
            version = 0
        else:
            raise HeaderError(f"{where} field magic is {_fmt(bytes(h['magic']))} (a NIfTI-{version} "
                              f"{'.nii' if single else '.hdr'} file has {want.decode()!r})")
    if version == 2:
        eol = bytes(np.asarray(h["eol_check"]).tobytes())
        if eol not in (b"\r\n\x1a\n", b"\0\0\0\0"):
            raise HeaderError(f"{where} field eol_check is {list(eol)} (NIfTI-2 has [13, 10, 26, 10]: the file "
                              "has probably been through a text-mode line-ending conversion)")
    return version


def _check_data(where: str, h, out: Checked) -> None:
    """Dimensions, data type and bitpix."""
    dim = [int(v) for v in h["dim"]]
    if not 1 <= dim[0] <= 7:
        raise HeaderError(f"{where} field dim[0] is {dim[0]} (the number of dimensions must be 1-7)")
    for i in range(1, dim[0] + 1):
        if dim[i] < 1:
            raise HeaderError(f"{where} field dim[{i}] is {dim[i]} (every dimension must be at least 1)")
    code = int(h["datatype"])
    if code not in SUPPORTED_CODES | COMPLEX_CODES:
        try:
            label = f" ({nib.nifti1.data_type_codes.label[code]})"
        except KeyError:
            label = " (undefined)"
        raise HeaderError(f"{where} field datatype is {code}{label}: not a numeric type bigresample resamples "
                          "(integers of 8-64 bits, float32, float64)")
    itemsize = np.dtype(nib.nifti1.data_type_codes.dtype[code]).itemsize
    data_bytes = itemsize
    for n in dim[1:dim[0] + 1]:
        data_bytes *= n
    if data_bytes > MAX_DATA_BYTES:
        raise HeaderError(f"{where} field dim is {dim[1:dim[0] + 1]}: {data_bytes} bytes of data, more than "
                          "any file holds")
    bitpix = int(h["bitpix"])
    if bitpix != itemsize * 8:
        out.notes.append(f"header field bitpix is {bitpix} but datatype {code} "
                         f"({nib.nifti1.data_type_codes.label[code]}) has {itemsize * 8} bits: bitpix ignored")
        out.fixes["bitpix"] = itemsize * 8



def _check_offset(where: str, h, single: bool, hsize: int, r: _Reader, out: Checked) -> int:
    """Where the data starts (vox_offset), with its fallback for 0."""
    offset = float(h["vox_offset"])
    if not np.isfinite(offset) or offset < 0 or offset != int(offset):
        raise HeaderError(f"{where} field vox_offset is {_fmt(h['vox_offset'])} (must be a whole number of "
                          "bytes, >= 0)")
    offset = int(offset)
    if single and offset == 0:  # "unset", as some writers leave it: the NIfTI C library reads from 352 (544)
        out.notes.append(f"header field vox_offset is 0 (unset): data read from byte {hsize + 4}, right after "
                         "the header, as the NIfTI C library does")
        out.fixes["vox_offset"] = offset = hsize + 4
    if single and offset < hsize + 4:
        raise HeaderError(f"{where} field vox_offset is {offset}: inside the header (the data of a .nii "
                          f"file starts at byte {hsize + 4} or later)")
    if single and r.size is not None and offset > r.size:
        raise HeaderError(f"{where} field vox_offset is {offset}: past the end of the file ({r.size} bytes)")
    if single and offset % 16:
        out.notes.append(f"header field vox_offset is {offset}, not a multiple of 16 as NIfTI asks: data read "
                         f"from byte {offset}")
    return offset


def _check_values(where: str, h, out: Checked) -> None:
    """Scaling, units, intent and slice codes, the extra dimensions' steps."""
    dim = [int(v) for v in h["dim"]]
    # scaling
    slope, inter = float(h["scl_slope"]), float(h["scl_inter"])
    if np.isinf(slope):
        raise HeaderError(f"{where} field scl_slope is {_fmt(slope)}: every value would be infinite")
    if slope != 0 and np.isfinite(slope) and not np.isfinite(inter):
        raise HeaderError(f"{where} field scl_inter is {_fmt(inter)} while scl_slope is {_fmt(slope)}: "
                          "the scaled values would not be finite")

    # units
    units = int(h["xyzt_units"])
    space, time = units & 0x07, units & ~0x07
    if space not in SPACE_UNITS:
        out.notes.append(f"xyzt_units code {units} is undefined: spatial units treated as unknown")
        space = 0
    if time not in TIME_UNITS:
        out.notes.append(f"xyzt_units code {units} is undefined: time units treated as unknown")
        time = 0
    if space | time != units:
        out.fixes["xyzt_units"] = space | time

    # intent and slice timing: codes nibabel (and other readers) look up
    intent = int(h["intent_code"])
    if intent not in nib.nifti1.intent_codes.value_set():
        out.notes.append(f"header field intent_code is {intent} (undefined): not carried to the output")
        out.fixes["intent_code"] = 0
    slice_code = int(h["slice_code"])
    if slice_code not in SLICE_CODES:
        out.notes.append(f"header field slice_code is {slice_code} (undefined): not carried to the output")
        out.fixes["slice_code"] = 0

    # extra dimensions' steps (the time step...): carried to the output, which needs them finite and >= 0
    pixdim = [float(v) for v in h["pixdim"]]
    for i in range(4, dim[0] + 1):
        if not (np.isfinite(pixdim[i]) and pixdim[i] >= 0):
            out.notes.append(f"header field pixdim[{i}] is {_fmt(pixdim[i])}: the step of dimension {i} is "
                             "unknown (written as 0)")
            out.fixes[("pixdim", i)] = 0.0
    if pixdim[0] not in (-1.0, 1.0):
        out.fixes[("pixdim", 0)] = 1.0  # qfac: the standard treats anything but -1 as 1 (so does nibabel)



def _check_extensions(where: str, r: _Reader, hsize: int, end: int | None, endian: str) -> None:
    """Walk the extensions as nibabel will read them: each must fit before the data
    (``end``: vox_offset; None: the end of a .hdr file), in sizes of 16 bytes."""
    flag = r.read(hsize, 4)
    if len(flag) < 4 or flag[:1] == b"\0":
        return
    pos, total = hsize + 4, 0
    while end is None or end - pos >= 16:
        head = r.read(pos, 8)
        if end is None and not head:
            return
        if len(head) < 8:
            raise HeaderError(f"{where} extension at byte {pos} is truncated ({len(head)} of its 8 header bytes)")
        esize, ecode = (int(v) for v in np.frombuffer(head, dtype=f"{endian}i4"))
        room = (end - pos) if end is not None else None
        if esize < 16 or esize % 16 or (room is not None and esize > room):
            limit = f"up to the {room} bytes before vox_offset {end}" if room is not None else "up to the file's end"
            raise HeaderError(f"{where} extension at byte {pos} (code {ecode}) has esize {esize} (must be a "
                              f"multiple of 16, at least 16, {limit})")
        total += esize
        if total > MAX_EXTENSION_BYTES:
            raise HeaderError(f"{where} extensions take more than {MAX_EXTENSION_BYTES // 2**20} MiB "
                              f"(esize {esize} at byte {pos}): more than bigresample reads")
        if end is None:  # a .hdr: the extension must be all there
            body = r.read(pos + esize - 1, 1)
            if not body:
                raise HeaderError(f"{where} extension at byte {pos} (esize {esize}) runs past the file's end")
        pos += esize


def _form_problem(kind: str, h, matrix) -> str | None:
    """Why the qform or sform ``matrix`` (None: nibabel could not make it) is unusable, or None."""
    if matrix is not None and np.all(np.isfinite(matrix)):
        m = np.asarray(matrix, dtype=np.float64)
        if np.abs(m).max() > MAX_COORDINATE:
            return f"coordinates beyond {MAX_COORDINATE:g}"
        if abs(np.linalg.det(m[:3, :3])) >= 1e-12:
            return None
    if kind == "sform":
        rows = {r: [float(v) for v in h[r]] for r in ("srow_x", "srow_y", "srow_z")}
        bad = [f"{r}={_vals(v)}" for r, v in rows.items() if not np.all(np.isfinite(v))]
        return (", ".join(bad) + " not finite") if bad else "srow_x/y/z singular: " + "; ".join(
            f"{r}={_vals(v)}" for r, v in rows.items())
    q = [float(h[f"quatern_{c}"]) for c in "bcd"]
    pixdim = [float(v) for v in h["pixdim"][1:4]]
    offsets = [float(h[f"qoffset_{c}"]) for c in "xyz"]
    if not np.all(np.isfinite(q)):
        return f"quatern_b/c/d = {_vals(q)} not finite"
    if sum(v * v for v in q) > 1 + 1e-6:
        return f"quatern_b/c/d = {_vals(q)} is not a rotation"
    for i, v in enumerate(pixdim, 1):
        if not np.isfinite(v) or v == 0:
            return f"pixdim[{i}] = {_fmt(v)}"
    if not np.all(np.isfinite(offsets)):
        return f"qoffset_x/y/z = {_vals(offsets)} not finite"
    return "singular or not finite"


def _vals(v) -> str:
    return "(" + ", ".join(_fmt(x) for x in v) + ")"


def _check_forms(where: str, h, raw: bytes, endian: str, version: int, out: Checked) -> None:
    """Which affine is used (see the module docstring); refuses when none is usable."""
    klass = nib.Nifti1Header if version == 1 else nib.Nifti2Header
    hdr = klass(raw, endianness=endian, check=False)
    for key, value in out.fixes.items():
        if key == ("pixdim", 0):
            hdr["pixdim"][0] = value
    codes = {}
    for kind in ("qform", "sform"):
        c = int(h[f"{kind}_code"])
        if c not in XFORM_CODES:
            out.notes.append(f"header field {kind}_code is {c} (undefined): the {kind} is ignored")
            out.fixes[f"{kind}_code"] = 0
            c = 0
        codes[kind] = c
    problems = {}
    for kind in ("qform", "sform"):
        if not codes[kind]:
            continue
        try:
            with np.errstate(all="ignore"):
                matrix = hdr.get_qform() if kind == "qform" else hdr.get_sform()
        except Exception:  # nibabel: "w2 should be positive", a qfac it refuses...
            matrix = None
        problems[kind] = _form_problem(kind, h, matrix)
    first = "sform" if codes["sform"] else "qform" if codes["qform"] else None
    if first is None:
        with np.errstate(all="ignore"):
            base = hdr.get_base_affine()
        if _form_problem("base", h, base) is not None:
            pixdim = [float(v) for v in h["pixdim"][1:4]]
            raise HeaderError(f"{where}: affine is singular or not finite: there is no qform or sform, and the "
                              f"voxel sizes pixdim[1:4] = {_vals(pixdim)} give none")
        return
    other = "qform" if first == "sform" else "sform"
    if problems[first] is None:
        if codes[other] and problems[other] is not None:
            out.notes.append(f"{other} unusable ({problems[other]}): not carried to the output; using the {first}")
            out.fixes[f"{other}_code"] = 0
        return
    if codes[other] and problems[other] is None:
        out.notes.append(f"{first} unusable ({problems[first]}); using the {other}")
        out.fixes[f"{first}_code"] = 0
        return
    detail = f"the {first} ({first}_code {codes[first]}) is unusable: {problems[first]}"
    detail += f"; so is the {other}: {problems[other]}" if codes[other] else f"; and there is no {other}"
    raise HeaderError(f"{where}: affine is singular or not finite: {detail}")
