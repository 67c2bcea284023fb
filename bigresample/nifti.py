"""NIfTI out: the output's header (from the input's, a reference's forms, the grid) and
the streaming writer.

The header first, then the data in on-disk order (x fastest), slab by slab,
so the volume is never held whole.  NIfTI-1 stores each dimension in 16 bits:
a NIfTI-2 file is written when any dimension exceeds 32767.  Reading NIfTI
(and every other format nibabel opens) is ``nibabel_input``'s.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

import nibabel as nib
import numpy as np

from . import safefs
from .codec import gzip_member
from .geometry import Grid
from .volume import NIFTI1_MAX_DIM, InputVolume



#: The most header and extension bytes a NIfTI may have before its voxels (a URL's first bytes, a
#: partial output's header read back).
MAX_URL_HEADER = 64 * 2**20

_NOT_COPIED = {"sizeof_hdr", "magic", "dim", "vox_offset", "datatype", "bitpix", "scl_slope", "scl_inter"}


def output_header(vol: InputVolume, grid: Grid, out_dtype, reference: InputVolume | None = None
                  ) -> nib.Nifti1Header:
    """The output's header: the input's, with shape, dtype, spacing and affines updated.

    qform and sform keep their codes; each is mapped by the grid from the
    input's own qform/sform.  Units, intent, description, time step and
    extensions are kept.  NIfTI-2 when any dimension exceeds 32767.

    On a ``reference`` image's grid the qform and sform (and their codes) are
    the reference's, converted into the input's units: the output lives in
    the reference's space.
    """
    out_shape = tuple(grid.out_shape) + tuple(vol.shape[3:])
    nifti2 = max(out_shape) > NIFTI1_MAX_DIM
    hdr = nib.Nifti2Header() if nifti2 else nib.Nifti1Header()
    src = vol.image.header
    if isinstance(src, (nib.Nifti1Header, nib.Nifti2Header)):
        for name in src.keys():
            if name in _NOT_COPIED or name not in hdr.keys():
                continue
            value = np.asarray(src[name])
            if value.dtype.kind == "f" and hdr[name].dtype.itemsize < value.dtype.itemsize:
                finite = np.abs(value[np.isfinite(value)])
                if finite.size and finite.max() > np.finfo(hdr[name].dtype).max:
                    continue  # a NIfTI-2 value a NIfTI-1 header cannot hold (cal_max=1e300...): left unset
            try:
                hdr[name] = value
            except (ValueError, TypeError):
                pass
        for ext in src.extensions:
            hdr.extensions.append(ext)
        qform, qcode = src.get_qform(coded=True)
        sform, scode = src.get_sform(coded=True)
    else:
        qform, qcode = None, 0
        sform, scode = vol.affine, 2  # scanner-independent "aligned" space
        if hasattr(src, "get_xyzt_units"):
            hdr.set_xyzt_units(*src.get_xyzt_units())
    hdr.set_data_shape(out_shape)
    hdr.set_data_dtype(np.dtype(out_dtype).newbyteorder("="))
    zooms = list(grid.output_spacing(vol.spacing)) + [z if np.isfinite(z) and z >= 0 else 0.0 for z in vol.extra_zooms]
    hdr.set_zooms(zooms)
    mapped = grid.output_affine
    if reference is not None:
        qform, qcode, sform, scode = _reference_forms(reference, vol.unit_to_mm)
        mapped = np.asarray
    if qcode:
        hdr.set_qform(mapped(qform), int(qcode))
    else:
        hdr.set_qform(None, 0)
    if scode:
        hdr.set_sform(mapped(sform), int(scode))
    else:
        hdr.set_sform(None, 0)
    if not (vol.slope == 1.0 and vol.inter == 0.0):
        hdr.set_slope_inter(vol.slope, vol.inter)
    else:
        hdr.set_slope_inter(np.nan, np.nan)
    return hdr


def _reference_forms(ref: InputVolume, to_unit: float):
    """The reference's (qform, qcode, sform, scode) in units of ``to_unit`` mm."""
    scale = ref.unit_to_mm / to_unit
    src = ref.image.header
    if isinstance(src, (nib.Nifti1Header, nib.Nifti2Header)):
        (qform, qcode), (sform, scode) = src.get_qform(coded=True), src.get_sform(coded=True)
    else:
        qform, qcode, sform, scode = None, 0, ref.affine, 2
    if not (qcode or scode):
        sform, scode = ref.affine, 2  # nibabel's fallback affine, as used for the grid
    out = []
    for form in (qform, sform):
        if form is not None:
            form = np.array(form, dtype=np.float64)
            form[:3, :] *= scale
        out.append(form)
    return out[0], qcode, out[1], scode


def header_bytes(hdr) -> bytes:
    """Header, extension flag and extensions, with vox_offset set (multiple of 16)."""
    import io

    buf = io.BytesIO()
    hdr.set_data_offset(0)
    hdr.write_to(buf)
    size = len(buf.getvalue())
    offset = (size + 15) // 16 * 16
    hdr.set_data_offset(offset)
    buf = io.BytesIO()
    hdr.write_to(buf)
    data = buf.getvalue()
    return data + b"\0" * (offset - len(data))


def written_header(fd: int):
    """The NIfTI-1 or -2 header, extensions included, at the start of the open
    file ``fd`` (a partial output being resumed), or None if there is none."""
    import io

    try:
        head = os.pread(fd, 540, 0)
        sizes = [struct.unpack(e + "i", head[:4])[0] for e in "<>"] if len(head) >= 4 else []
        klass = nib.Nifti1Header if 348 in sizes else nib.Nifti2Header if 540 in sizes else None
        if klass is None:
            return None
        offset = int(klass(head[: 348 if klass is nib.Nifti1Header else 540], check=False)["vox_offset"])
        if not 0 < offset <= MAX_URL_HEADER:
            return None
        return klass.from_fileobj(io.BytesIO(os.pread(fd, offset, 0)), check=False)
    except Exception:  # nibabel raises many types for a damaged header: then there is none to keep
        return None


class NiftiWriter:
    """Write a NIfTI file as a header then slabs of data in file order.

    A .nii.gz is written as one gzip member for the header and one per slab
    (see ``bigresample.codec``).  Usage::

        with NiftiWriter(path, header) as w:
            for slab in slabs_in_file_order:   # (X, Y, dz) arrays
                w.write(slab)
    """

    def __init__(self, path, header):
        self.path = Path(path)
        self.header = header
        self.dtype = header.get_data_dtype()
        self.gz = str(path).lower().endswith(".nii.gz")
        self._f = None
        self.bytes_written = 0

    def __enter__(self):
        self._f = os.fdopen(safefs.create_file(self.path), "wb")  # never through a planted link
        head = header_bytes(self.header)
        self._f.write(gzip_member(head) if self.gz else head)
        return self

    def write(self, slab: np.ndarray) -> None:
        """Write ``slab`` (the next voxels in file order, x fastest)."""
        self.write_file_order(np.ascontiguousarray(np.asarray(slab).T, dtype=self.dtype))

    def write_file_order(self, block: np.ndarray) -> None:
        """Write a C-ordered block whose axes are reversed (``(..., z, y, x)``)."""
        if block.dtype != self.dtype or not block.flags.c_contiguous:
            block = np.ascontiguousarray(block, dtype=self.dtype)
        self.write_bytes(gzip_member(block) if self.gz else memoryview(block).cast("B"))
        self.bytes_written += block.nbytes

    def write_bytes(self, data) -> None:
        self._f.write(data)

    def __exit__(self, exc_type, exc, tb):
        self._f.flush()
        if exc_type is None:
            os.fsync(self._f.fileno())
        self._f.close()
        return False


def create_raw_output(path, header) -> tuple[int, int]:
    """Create an uncompressed NIfTI of full size with its header; (fd, data offset).

    Blocks are then written at their offsets (``rawio.RawWriter``); the rest
    of the file reads as zeros until they are.
    """
    head = header_bytes(header)
    size = len(head) + int(np.prod(header.get_data_shape(), dtype=np.int64)) * header.get_data_dtype().itemsize
    fd = safefs.create_file(path, os.O_RDWR)  # never through a planted link
    try:
        os.pwrite(fd, head, 0)
        os.ftruncate(fd, size)
    except BaseException:
        os.close(fd)
        raise
    return fd, len(head)
