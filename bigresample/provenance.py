"""How an output was made: the provenance record every output carries.

One JSON document, the same in every format (docs/files.md, "Provenance")::

    {"bigresample_provenance": 1,            # the schema's version
     "steps": [step, step, ...]}             # oldest first; the last made this file

A step says which bigresample (``version``) made the file, when (``date``,
UTC, ISO 8601; ``SOURCE_DATE_EPOCH`` fixes it), how it was asked
(``invocation``: the command line, or the Python call and its keyword
arguments; storage options' values and a URL's ``user:password`` masked),
from what (``input``: name, format, size, a digest of its header, shape,
spacing, affine), onto what (``reference``), how (``resampling``: grid,
order, label method, mode, cval, anti-aliasing sigmas) and into what
(``output``: shape, spacing, affine, type).  It is built from the plan
(``job.plan_job``) and the headers, never from the voxels.

Where it goes: a NIfTI's header extension of code 6 (``comment``, NIfTI's
registered code for text; nibabel: ``img.header.extensions``), whose content
is the document as ASCII JSON; an OME-Zarr's group attribute
``bigresample.provenance``.  An input's own document is kept: its steps come
first, this run's is appended.
"""

from __future__ import annotations

import datetime
import hashlib
import inspect
import json
import os
from pathlib import Path

import numpy as np

from . import kernel, location
from ._version import __version__

SCHEMA = 1
KEY = "bigresample_provenance"
#: NIfTI's registered extension code for text ("comment"; ``nibabel.nifti1.extension_codes``).
EXTENSION_CODE = 6
#: The most header bytes read for the input's digest (as ``nifti.MAX_URL_HEADER``).
MAX_HEADER = 64 * 2**20
MASK = "***"


def now() -> str:
    """The date a step records: now (UTC, to the second), or ``SOURCE_DATE_EPOCH``'s
    when that variable is set (reproducible outputs)."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    try:
        t = datetime.datetime.fromtimestamp(int(epoch), datetime.timezone.utc) if epoch else None
    except (ValueError, OverflowError, OSError):
        t = None
    t = t or datetime.datetime.now(datetime.timezone.utc)
    return t.replace(microsecond=0).isoformat().replace("+00:00", "Z")


# --------------------------------------------------------------------------
# the invocation
# --------------------------------------------------------------------------


def command_line(argv) -> dict:
    """The ``invocation`` of a command line ``bigresample ARGV...``: every
    ``--storage-option`` value masked, URLs without their ``user:password``."""
    out, secret = [], False
    for arg in map(str, argv):
        flag, eq, value = arg.partition("=")
        if secret:  # the value after a --storage-option: KEY=VALUE, or a stray secret
            arg, secret = (f"{flag}={MASK}" if eq else MASK), False
        elif _is_storage_option(flag):
            if eq:
                key, sep, _ = value.partition("=")
                arg = f"{flag}={key}={MASK}" if sep else f"{flag}={MASK}"
            else:
                secret = True
        out.append(location.display(arg))
    return {"command": ["bigresample", *out]}


def _is_storage_option(flag: str) -> bool:
    # argparse takes any unambiguous prefix: --sto, --storage, --storage-opt...
    return len(flag) >= 5 and "--storage-option".startswith(flag)


def api_call(function, arguments: dict) -> dict:
    """The ``invocation`` of a Python call of ``function`` with ``arguments``
    (its parameters by name): those that differ from their defaults, JSON-safe,
    storage options' values masked."""
    try:
        defaults = {k: p.default for k, p in inspect.signature(function).parameters.items()}
    except (TypeError, ValueError):
        defaults = {}
    kept = {}
    for key, value in arguments.items():
        if key in defaults and _same(value, defaults[key]):
            continue
        if key == "storage_options" and value:
            value = {k: MASK for k in value} if isinstance(value, dict) else [
                f"{str(v).partition('=')[0]}={MASK}" for v in value]
        kept[key] = json_safe(value)
    return {"function": f"bigresample.{function.__name__}", "arguments": kept}


def _same(value, default) -> bool:
    try:
        return value is default or bool(value == default) and type(value) is type(default)
    except Exception:  # an array, a client...
        return False


def json_safe(value):
    """``value`` as JSON can hold it: paths and URLs as strings (no secrets),
    tuples and arrays as lists, numpy scalars as numbers, non-finite floats as
    strings ("nan", "inf"), anything else as its type's name."""
    if value is None or isinstance(value, (bool, str)):
        return location.display(value) if isinstance(value, str) else value
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        f = float(value)
        return f if np.isfinite(f) else repr(f)
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, np.dtype) or (isinstance(value, type) and issubclass(value, np.generic)):
        return np.dtype(value).name
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [json_safe(v) for v in (value.tolist() if isinstance(value, np.ndarray) else value)]
    return f"<{type(value).__name__}>"


# --------------------------------------------------------------------------
# reading and writing the document
# --------------------------------------------------------------------------


def document(steps) -> dict:
    return {KEY: SCHEMA, "steps": list(steps)}


def parse(data) -> dict | None:
    """The document in ``data`` (bytes, text or a decoded object), or None
    when it is not one (another tool's comment, a damaged one)."""
    try:
        if isinstance(data, (bytes, bytearray)):
            data = bytes(data).rstrip(b"\0 \n").decode("utf-8")
        if isinstance(data, str):
            data = json.loads(data)
    except (UnicodeDecodeError, ValueError):
        return None
    if isinstance(data, dict) and isinstance(data.get(KEY), int) and isinstance(data.get("steps"), list):
        return data
    return None


def _ours(ext) -> bool:
    return ext.get_code() == EXTENSION_CODE and parse(ext.get_content()) is not None


def from_header(header) -> dict | None:
    """The document in a NIfTI header's extensions (the last one, if several), or None."""
    found = None
    for ext in getattr(header, "extensions", ()):
        if ext.get_code() == EXTENSION_CODE:
            found = parse(ext.get_content()) or found
    return found


def from_attrs(attrs) -> dict | None:
    """The document in an OME-Zarr group's attributes (``bigresample.provenance``), or None."""
    ours = attrs.get("bigresample") if isinstance(attrs, dict) else None
    return parse(ours.get("provenance")) if isinstance(ours, dict) else None


def of_volume(vol) -> dict | None:
    """The document an opened input carries (``volume.InputVolume``), or None."""
    if vol.ome_attrs is not None:
        return from_attrs(vol.ome_attrs)
    return from_header(vol.image.header)


def encode(doc: dict) -> bytes:
    """The document as a NIfTI extension's content: compact ASCII JSON."""
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=True, allow_nan=False).encode("ascii")


def attach(header, doc: dict) -> None:
    """Put ``doc`` in ``header``'s extensions, in place of any document there
    (an input's, copied with its other extensions)."""
    from nibabel.nifti1 import Nifti1Extension

    kept = [e for e in header.extensions if not _ours(e)]
    header.extensions.clear()
    header.extensions.extend(kept)
    header.extensions.append(Nifti1Extension(EXTENSION_CODE, encode(doc)))


def without(header):
    """A copy of ``header`` without a provenance extension: what the journal's
    identity digests, so that a rerun (another date, other execution flags)
    resumes the same partial output."""
    copy = header.copy()
    kept = [e for e in header.extensions if not _ours(e)]
    copy.extensions.clear()
    copy.extensions.extend(kept)
    return copy


# --------------------------------------------------------------------------
# one step, from the plan
# --------------------------------------------------------------------------


def step(request, vol, reference, stages, out_dtype, date: str | None = None, transforms=()) -> dict:
    """This run's step: ``request`` (``request.Request``), the opened input
    and reference (``volume.InputVolume``, headers only), the planned
    ``stages`` (``job.Stage``) and the output's type."""
    r, g = request, stages[0].grid
    out_affine = g.output_affine(vol.affine)
    smoothing = stages[0].smoothing
    labels = r.labels
    return {
        "tool": "bigresample",
        "version": __version__,
        "date": date or now(),
        "invocation": r.invocation,
        "input": {**_source(vol, r.storage_options), "shape": list(vol.shape), "dtype": vol.dtype.name,
                  "spacing": _floats(vol.spacing), "units": vol.units, "affine": _matrix(vol.affine),
                  "spacing_from": vol.spacing_from},
        "reference": None if reference is None else {
            **_source(reference, r.storage_options), "shape": list(reference.shape[:3]),
            "affine": _matrix(reference.affine), "units": reference.units},
        # the registrations applied (path, format, inverse, sha256), in the order given
        **({"transforms": [dict(t) for t in transforms]} if transforms else {}),
        "resampling": {
            "grid": "reference" if reference is not None else r.grid,
            "order": int(r.order),
            "asked_order": _int_or_none(getattr(r, "asked_order", r.order)),  # None: not given
            # the label method (a bool once: True is nearest neighbour), None without labels
            "labels": None if not labels else "nearest" if labels is True else str(labels),
            "mode": r.mode,
            "cval": json_safe(r.cval),
            "antialias_sigmas": None if smoothing is None else _floats(smoothing),
            "kernel": "compiled" if kernel.COMPILED else "python",  # the fallback: bigresample/_pykernel.py
        },
        "output": {"name": location.name(r.output), "format": r.kind,
                   "shape": [int(n) for n in g.out_shape] + [int(n) for n in vol.shape[3:]],
                   "dtype": np.dtype(out_dtype).name, "spacing": _floats(g.output_spacing(vol.spacing)),
                   "units": vol.units, "affine": _matrix(out_affine),
                   **({"levels": [[int(n) for n in s.grid.out_shape] for s in stages]} if len(stages) > 1 else {})},
    }


def _floats(values) -> list:
    return [json_safe(float(v)) for v in values]


def _matrix(a) -> list:
    return [_floats(row) for row in np.asarray(a, dtype=np.float64)]


def _source(vol, options) -> dict:
    """An input's name, format, size in bytes (its files': a pair's .hdr and
    .img; None for a folder or when unknown) and the sha256 of its header
    (``header_digest``)."""
    digest, of = header_digest(vol)
    return {"name": location.name(vol.path), "format": vol.format, "bytes": _size(vol, options),
            "header_sha256": digest, "header_digest_of": of}


def _size(vol, options) -> int | None:
    path = vol.path
    try:
        if location.is_url(path):
            info = location.info(str(path), options)
            return None if info.get("type") == "directory" else int(info.get("size"))
        if Path(path).is_dir():
            return None
        files = {os.path.abspath(f) for f in [str(path), *_files(vol.image).values()]}
        return sum(os.path.getsize(f) for f in files)
    except Exception:  # a store that does not say: the size is left out, the run goes on
        return None


def _files(img) -> dict:
    """The files nibabel reads an image from, by role ("image", "header"...)."""
    names = {k: getattr(v, "filename", None) for k, v in getattr(img, "file_map", {}).items()}
    return {k: f for k, f in names.items() if isinstance(f, str) and os.path.isfile(f)}


def header_digest(vol) -> tuple[str | None, str | None]:
    """``(sha256, what it is of)`` of an input's header, as stored: a NIfTI's
    first ``vox_offset`` bytes (header and extensions; decompressed for a
    .nii.gz), an OME-Zarr's group attributes (sorted JSON), or another
    format's header block as nibabel reads it (an MGH's, an Analyze's)."""
    import nibabel as nib

    if vol.ome_attrs is not None:
        text = json.dumps(vol.ome_attrs, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest(), "OME-Zarr group attributes"
    if vol.url_head is not None:
        return hashlib.sha256(vol.url_head).hexdigest(), "NIfTI header and extensions"
    img = vol.image
    if isinstance(img, nib.Nifti1Pair):  # NIfTI-1 and -2, single files and pairs
        head = _nifti_head(img)
        if head is not None:
            return hashlib.sha256(head).hexdigest(), "NIfTI header and extensions"
    block = getattr(img.header, "binaryblock", None)
    if isinstance(block, bytes):
        return hashlib.sha256(block).hexdigest(), "header block"
    return None, None


def _nifti_head(img) -> bytes | None:
    """The first ``vox_offset`` bytes of a single-file NIfTI, or a pair's
    whole .hdr (decompressed)."""
    from .codec import open_gzip

    files = _files(img)
    name = files.get("header") or files.get("image")
    if name is None:
        return None
    hsize = int(img.header.sizeof_hdr)
    pair = "header" in files and files["header"] != files.get("image")
    need = MAX_HEADER if pair else min(max(int(img.dataobj.offset), hsize), MAX_HEADER)
    try:
        with open(name, "rb") as f:
            gz = f.read(2) == b"\x1f\x8b"
        if gz:
            with open_gzip(Path(name)) as f:
                return f.read(need)
        with open(name, "rb") as f:
            return f.read(need)
    except (OSError, EOFError, ValueError):
        return None


def _int_or_none(value):
    return None if value is None else int(value)
