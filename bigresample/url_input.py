"""An input or reference at a URL (fsspec): a NIfTI whose header is read from the
object's first bytes and whose voxels are copied into the local scratch folder
when the run starts (``attach_url``), or an OME-Zarr read chunk by chunk
(``ome.open_ome``); anything else is refused in one line."""

from __future__ import annotations

import contextlib
import struct
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np

from . import ome
from . import location
from .codec import GZIP_MAGIC, copy_stream, decompress, from_store, open_gzip
from .errors import BigresampleError, InputError, one_line
from .nibabel_input import check_size, nibabel_volume, reader
from .nifti import MAX_URL_HEADER
from .safefs import check_free_space
from .volume import InputVolume



def open_url(url: str, role: str, options: dict) -> InputVolume:
    """An input or reference at a URL: a NIfTI (``.nii``, ``.nii.gz``) whose
    header is read from the object's first bytes (the voxels are copied when
    attached), or an OME-Zarr read chunk by chunk through fsspec."""
    where = location.display(url)
    try:
        if url.lower().endswith((".nii", ".nii.gz")):
            info = location.info(url, options)
            if info.get("type") == "directory":
                raise InputError(f"{role} {where} is a folder, not a .nii or .nii.gz object")
            vol = _nifti_from_url(url, role, options)
        elif ome.is_ome_zarr(url, options):
            return ome.open_ome(url, role, options)
        elif not location.exists(url, options):
            raise InputError(f"{role} not found: {where}")
        else:
            raise InputError(f"{where}: a {role} URL must be a .nii, a .nii.gz or an OME-Zarr (no zarr.json or "
                             ".zattrs there)")
    except location.StoreError as exc:
        msg = str(exc)
        if msg.endswith(": not found"):
            raise InputError(f"{role} not found: {where}") from None
        raise InputError(f"cannot read the {role} {msg}") from None
    return vol


def _nifti_from_url(url: str, role: str, options: dict) -> InputVolume:
    where = location.display(url)
    fs, path = location.filesystem(url, options)
    try:
        with fs.open(path, "rb", block_size=2**20) as f:
            gz = f.read(2) == GZIP_MAGIC
            f.seek(0)
            with (open_gzip(f) if gz else contextlib.nullcontext(f)) as stream:
                head = stream.read(540)
                sizes = [struct.unpack(e + "i", head[:4])[0] for e in "<>"] if len(head) >= 4 else []
                klass = nib.Nifti1Image if 348 in sizes else nib.Nifti2Image if 540 in sizes else None
                if klass is None:
                    raise InputError(f"{where}: not a NIfTI-1 or NIfTI-2 header")
                hsize = 348 if klass is nib.Nifti1Image else 540
                hdr = klass.header_class(head[:hsize], check=False)
                offset = int(hdr["vox_offset"])
                if offset > MAX_URL_HEADER:
                    raise InputError(f"{where}: header and extensions of {offset} bytes: more than a NIfTI holds")
                need = max(offset, hsize + 4)
                head = head[:need] if len(head) >= need else head + stream.read(need - len(head))
    except BigresampleError:
        raise
    except Exception as exc:
        if from_store(exc):
            raise InputError(f"cannot read the {role} {where}: {location.why(exc, options)}") from None
        raise InputError(f"{where}: not a NIfTI nibabel can read ({one_line(exc)})") from None
    try:
        img = klass.from_bytes(head)
    except Exception as exc:
        raise InputError(f"{where}: not a NIfTI nibabel can read ({one_line(exc)})") from None
    vol = nibabel_volume(url, img, where)
    vol.url_options, vol.url_gzip, vol.url_head = options, gz, bytes(head[: max(offset, hsize)])
    vol.attacher = attach_url
    return vol


def attach_url(vol: InputVolume, scratch_dir=None, progress=None) -> None:
    """The ``attacher`` of a NIfTI at a URL: its header and voxels copied into a new file in
    ``scratch_dir`` (decompressing a .nii.gz on the way, its CRC checked), with one bounded
    buffer, then read from the copy (``nibabel_input.reader``)."""
    folder = Path(scratch_dir) if scratch_dir is not None else Path.cwd()
    vol.source = reader(vol.image.dataobj, _copy(vol, folder, progress))


def _copy(vol: InputVolume, folder: Path, progress) -> str:
    """Copy the header and voxels of the NIfTI at ``vol.url`` into a new
    file in ``folder`` (decompressing a .nii.gz on the way, its CRC
    checked), with one bounded buffer; returns the copy's path."""
    proxy = vol.image.dataobj
    need = int(proxy.offset) + int(np.prod(proxy.shape, dtype=np.int64)) * proxy.dtype.itemsize
    check_free_space(folder, need, "copying the input")
    base = location.name(vol.url)
    stem = base[:-3] if base.lower().endswith(".gz") else base
    fd, scratch = tempfile.mkstemp(prefix=".bigresample-", suffix=f"-{stem}", dir=folder)
    vol.scratch = Path(scratch)
    where = location.display(vol.url)
    t0 = time.perf_counter()
    bar = progress(need, "copying input", unit="B") if progress is not None else contextlib.nullcontext()
    try:
        fs, path = location.filesystem(vol.url, vol.url_options)
        with bar, fs.open(path, "rb", block_size=8 * 2**20) as fin:
            on_bytes = getattr(bar, "update", None)
            if vol.url_gzip:
                decompress(fin, fd, need, slack=0, name=where, on_bytes=on_bytes)
            else:
                copy_stream(fin, fd, need, on_bytes=on_bytes)
        check_size(where, scratch, proxy)
        with open(scratch, "rb") as f:
            if f.read(len(vol.url_head)) != vol.url_head:
                raise InputError(f"{where}: the object changed since its header was read; run again")
    except BaseException as exc:
        vol.close()
        if isinstance(exc, Exception) and not isinstance(exc, BigresampleError):
            raise InputError(f"cannot read the input {where}: {location.why(exc, vol.url_options)}") from None
        raise
    vol.timings["copy"] = time.perf_counter() - t0
    return scratch

