"""NIfTI in and out: the input's raw voxels through a proxy, headers, streaming writer.

Reading: anything nibabel opens as a spatial image.  The voxels are read
through an ``ArrayProxy`` region by region, never whole, as *stored* (raw)
values: scl_slope/scl_inter are carried to the output header instead (B-splines
sum to one, so resampling raw values then scaling equals resampling the scaled
values).  A gzip-compressed file is first decompressed in one sequential pass
into the scratch folder, because random access into gzip re-decompresses from
the start on every backward seek (quadratic); the pass also checks the gzip
CRC of the whole file.

Writing: the header first, then the data in on-disk order (x fastest), slab by
slab, so the volume is never held whole.  NIfTI-1 stores each dimension in 16
bits: a NIfTI-2 file is written when any dimension exceeds 32767.
"""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np
from nibabel.arrayproxy import ArrayProxy

from .errors import BigresampleError
from . import ome
from . import safefs
from .codec import gzip_member, open_gzip
from .geometry import Grid, voxel_spacing
from .rawio import RawReader

NIFTI1_MAX_DIM = 32767
OUTPUT_SUFFIXES = (".nii", ".nii.gz", ".zarr")
#: Units of the NIfTI header that we convert requested spacings into.
UNIT_TO_MM = {"mm": 1.0, "micron": 1e-3, "meter": 1e3, "unknown": 1.0}
GZIP_MAGIC = b"\x1f\x8b"


class InputError(BigresampleError):
    """An input file that cannot be resampled; the message names the file and the problem."""


def output_kind(path) -> str:
    """'.nii', '.nii.gz' or '.zarr' (OME-Zarr), or InputError naming the unsupported suffix."""
    name = str(path).lower()
    for suffix in (".nii.gz", ".nii", ".zarr"):
        if name.endswith(suffix):
            return suffix
    raise InputError(
        f"output must end in {', '.join(OUTPUT_SUFFIXES[:-1])} or {OUTPUT_SUFFIXES[-1]}; got {Path(path).name!r}"
    )


def _is_gzip(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(2) == GZIP_MAGIC


#: Bytes a compressed non-NIfTI file may hold after its voxels (an MGH
#: footer's tags); a NIfTI holds nothing after them.
FOOTER_SLACK = 2**20


def decompress(src: Path, fd: int, limit: int, slack: int = 0, chunk: int = 16 * 2**20) -> None:
    """Sequentially decompress ``src`` into the open file ``fd``: the first
    ``limit`` bytes (what the header describes), and nothing more.

    A stream that holds more than ``limit + slack`` bytes is refused as soon
    as the first byte past that shows (a decompression bomb fills no disk).
    Otherwise the stream is read to its end, so that the gzip reader checks
    each member's CRC-32 and length: a corrupted stream raises here, not
    silently later.
    """
    buf = bytearray(chunk)
    written = 0
    try:
        with os.fdopen(fd, "wb") as fout, open_gzip(src) as fin:
            while written < limit:
                n = fin.readinto(memoryview(buf)[: min(chunk, limit - written)])
                if not n:
                    break
                fout.write(memoryview(buf)[:n])
                written += n
            more = len(fin.read(slack + 1)) if written == limit else 0  # to the end, when within bounds
    except Exception as exc:  # zlib.error, isal's error, EOFError, BadGzipFile...
        raise InputError(f"{src}: corrupted or truncated gzip stream ({_one_line(exc)})") from None
    if more > slack:
        raise InputError(f"{src}: the gzip stream holds more data than the {limit} bytes its header describes "
                         "(header and voxels): refused, as a decompression bomb would be")


#: nibabel's image classes (most derived first along the MRO) and the format they read
FORMAT_NAMES = {
    "Nifti2Image": "NIfTI-2 image", "Nifti2Pair": "NIfTI-2 pair (.hdr/.img)",
    "Nifti1Image": "NIfTI-1 image", "Nifti1Pair": "NIfTI-1 pair (.hdr/.img)",
    "Spm2AnalyzeImage": "SPM2 Analyze image", "Spm99AnalyzeImage": "SPM99 Analyze image",
    "AnalyzeImage": "Analyze 7.5 image", "MGHImage": "MGH image", "Minc1Image": "MINC1 image",
    "Minc2Image": "MINC2 image", "PARRECImage": "PAR/REC image", "AFNIImage": "AFNI BRIK/HEAD image",
    "GiftiImage": "GIFTI image", "Cifti2Image": "CIFTI-2 image",
}


@dataclass
class InputVolume:
    """An opened input: geometry, raw-value reader and the header to carry over."""

    path: Path
    image: nib.spatialimages.SpatialImage
    source: object  # raw stored values, read region by region (RawReader or ArrayProxy)
    shape: tuple[int, ...]
    affine: np.ndarray
    spacing: np.ndarray  # in header units
    units: str  # 'mm', 'micron', ...
    slope: float
    inter: float
    scratch: Path | None = None  # decompressed copy, removed by close()
    timings: dict = field(default_factory=dict)
    extra_axes: list | None = None  # an OME-Zarr's leading axes (NGFF order), see ome.OmeImage

    @property
    def dtype(self) -> np.dtype:
        return self.image.dataobj.dtype

    @property
    def compressed(self) -> bool:
        f = getattr(self.image.dataobj, "file_like", None)
        return isinstance(f, str) and _is_gzip(Path(f))

    @property
    def data_bytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * self.dtype.itemsize

    @property
    def format(self) -> str:
        """What was opened, named after nibabel's image class: "NIfTI-1 image",
        "MINC2 image", "OME-Zarr image"..."""
        if self.extra_axes is not None:
            return "OME-Zarr image"
        for cls in type(self.image).__mro__:
            if cls.__name__ in FORMAT_NAMES:
                name = FORMAT_NAMES[cls.__name__]
                break
        else:
            name = type(self.image).__name__
        return name + (" (gzip-compressed)" if self.compressed else "")

    @property
    def decompressed_bytes(self) -> int:
        """What decompressing a gzip-compressed input writes (its header and voxels)."""
        proxy = self.image.dataobj
        return int(proxy.offset) + int(np.prod(proxy.shape, dtype=np.int64)) * proxy.dtype.itemsize

    @property
    def unit_to_mm(self) -> float:
        return UNIT_TO_MM.get(self.units, 1.0)

    def attach_data(self, scratch_dir=None) -> None:
        """Open the voxels for reading (``source``), once; the header was checked at open.

        A gzip-compressed file is first decompressed, in one sequential pass,
        into ``scratch_dir`` (default: beside the input), after checking that
        the folder has room for it.
        """
        if self.source is not None:
            return
        proxy = self.image.dataobj
        data_file = proxy.file_like if isinstance(proxy.file_like, str) else None
        if data_file is not None and _is_gzip(Path(data_file)):
            need = self.decompressed_bytes
            folder = Path(scratch_dir) if scratch_dir is not None else self.path.parent
            check_free_space(folder, need, "decompressing the input")
            name = Path(data_file).name
            stem = name[:-3] if name.lower().endswith(".gz") else name
            if name.lower().endswith(".mgz"):
                stem = name[:-4] + ".mgh"
            # a random name, created exclusively (never through a planted link)
            fd, scratch = tempfile.mkstemp(prefix=".bigresample-", suffix=f"-{stem}", dir=folder)
            self.scratch = Path(scratch)
            t0 = time.perf_counter()
            try:
                analyze = isinstance(self.image, nib.AnalyzeImage)  # NIfTI-1/2 and Analyze: nothing after the voxels
                decompress(Path(data_file), fd, need, slack=0 if analyze else FOOTER_SLACK)
                _check_size(self.path, str(self.scratch), proxy)
            except BaseException:
                self.close()
                raise
            self.timings["decompress"] = time.perf_counter() - t0
            data_file = str(self.scratch)
        if data_file is not None and proxy.order == "F":
            # positional reads into the workers' own buffers (bigresample.rawio)
            self.source = RawReader(data_file, proxy.offset, proxy.shape, proxy.dtype)
        else:
            self.source = ArrayProxy(
                proxy.file_like,
                (proxy.shape, proxy.dtype, proxy.offset, 1.0, 0.0),
                order=proxy.order,
                keep_file_open=False,
            )

    @property
    def data_file(self) -> str:
        """The file the voxels are read from (a decompressed copy, once attached)."""
        return getattr(self.source, "path", None) or str(self.path)

    def close(self) -> None:
        if self.scratch is not None:
            self.scratch.unlink(missing_ok=True)
            self.scratch = None


def open_input(path, scratch_dir=None, read_data: bool = True, role: str = "input") -> InputVolume:
    """Open ``path`` for block-wise reading of its raw stored values.

    The header is read and checked (shape, data type, affine, the file's
    size); with ``read_data`` the voxels are then made readable
    (``InputVolume.attach_data``: a gzip-compressed image is decompressed into
    ``scratch_dir``).

    Parameters
    ----------
    path : str or Path
    scratch_dir : Path, optional
        Where a gzip-compressed input is decompressed.
    read_data : bool
        False: the header only (``source`` is None until ``attach_data``).
    role : str
        What the file is, in error messages ("input", "reference").
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"{role} file not found: {path}")
    if ome.is_ome_zarr(path):
        return _open_ome(path, role)
    if path.is_dir():
        raise InputError(f"{role} is a folder, not an image file or an OME-Zarr: {path}")
    if path.stat().st_size == 0:
        raise InputError(f"{role} file is empty: {path}")
    try:
        img = nib.load(path)
    except Exception as exc:  # nibabel raises many types for unreadable files
        raise InputError(f"{path}: not an image nibabel can read ({_one_line(exc)})") from None
    if not isinstance(img, nib.spatialimages.SpatialImage):
        raise InputError(f"{path}: not a spatial image ({type(img).__name__})")
    proxy = img.dataobj
    if not isinstance(proxy, ArrayProxy):
        raise InputError(f"{path}: image data cannot be read lazily ({type(proxy).__name__})")
    shape = tuple(int(n) for n in img.shape)
    if len(shape) < 3:
        raise InputError(f"{path}: need a 3D or 4D image; got shape {shape}")
    if any(n < 1 for n in shape):
        raise InputError(f"{path}: image has an empty dimension; shape {shape}")
    affine = np.asarray(img.affine, dtype=np.float64)
    if not np.all(np.isfinite(affine)) or abs(np.linalg.det(affine[:3, :3])) < 1e-12:
        raise InputError(f"{path}: affine is singular or not finite: {np.array2string(affine, separator=',').replace(chr(10), '')}")
    _refuse_complex(path, proxy.dtype)
    slope, inter = proxy.slope, proxy.inter
    units = "mm"
    if hasattr(img.header, "get_xyzt_units"):
        units = img.header.get_xyzt_units()[0] or "unknown"
    data_file = proxy.file_like if isinstance(proxy.file_like, str) else None
    if role == "input" and data_file is not None and not _is_gzip(Path(data_file)):
        _check_size(path, data_file, proxy)
    vol = InputVolume(
        path=path,
        image=img,
        source=None,
        shape=shape,
        affine=affine,
        spacing=voxel_spacing(affine),
        units=units,
        slope=float(slope) if np.isfinite(slope) else 1.0,
        inter=float(inter) if np.isfinite(inter) else 0.0,
    )
    if read_data:
        vol.attach_data(scratch_dir)
    return vol


def _open_ome(path: Path, role: str) -> InputVolume:
    """An OME-Zarr input: level 0 read chunk by chunk through zarr, with a
    NIfTI header made from its metadata (shape, type, spacing, units, time
    step, affine as qform and sform, code 2 "aligned") to carry over."""
    try:
        im = ome.read_image(path)
    except ome.OmeError as exc:
        raise InputError(f"{path}: cannot read as OME-Zarr {role}: {exc}") from None
    view = im.data
    if any(n < 1 for n in view.shape):
        raise InputError(f"{path}: image has an empty dimension; shape {view.shape}")
    _refuse_complex(path, view.dtype)
    hdr = nib.Nifti2Header() if max(view.shape) > NIFTI1_MAX_DIM else nib.Nifti1Header()
    hdr.set_data_shape(view.shape)
    try:
        # NIfTI has no float16: such an image is described (and by default written) as float32
        hdr.set_data_dtype(np.float32 if view.dtype == np.float16 else view.dtype)
    except Exception:
        raise InputError(f"{path}: data type {view.dtype} cannot be written as NIfTI") from None
    spacing = voxel_spacing(im.affine)
    hdr.set_zooms(list(spacing) + [a["scale"] for a in im.extra_axes])
    time_unit = next((a.get("unit") for a in im.extra_axes if a.get("type") == "time"), None)
    hdr.set_xyzt_units(im.units if im.units != "unknown" else 0, ome.TIME_UNITS_IN.get(time_unit, "sec"))
    hdr.set_qform(im.affine, 2)
    hdr.set_sform(im.affine, 2)
    image = (nib.Nifti2Image if isinstance(hdr, nib.Nifti2Header) else nib.Nifti1Image)(view, im.affine, hdr)
    return InputVolume(path=path, image=image, source=view, shape=tuple(view.shape), affine=im.affine,
                       spacing=spacing, units=im.units, slope=1.0, inter=0.0, extra_axes=im.extra_axes)


def _refuse_complex(path, dtype) -> None:
    if np.dtype(dtype).kind == "c":
        raise InputError(f"{path}: complex data ({dtype}) is not supported; resample the real and "
                         "imaginary parts as two images")


def _one_line(exc) -> str:
    return " ".join(str(exc).split())


class DiskSpaceError(InputError):
    """Not enough free space for what the run must write."""


def check_free_space(folder, need: int, what: str) -> None:
    """Refuse before starting when ``folder``'s filesystem lacks ``need`` bytes."""
    try:
        st = os.statvfs(folder)
    except OSError:
        return
    free = st.f_bavail * st.f_frsize
    if free < need:
        raise DiskSpaceError(
            f"not enough disk space in {folder} for {what}: need {need / 2**30:.2f} GiB, "
            f"{free / 2**30:.2f} GiB free"
        )


def _check_size(path: Path, data_file: str | None, proxy: ArrayProxy) -> None:
    """A truncated file would otherwise read as garbage or fail half-way."""
    if data_file is None or not os.path.exists(data_file):
        return
    need = int(proxy.offset) + int(np.prod(proxy.shape, dtype=np.int64)) * proxy.dtype.itemsize
    have = os.path.getsize(data_file)
    if have < need:
        raise InputError(f"{path}: file is truncated: {have} bytes of data file, header needs {need}")


# --------------------------------------------------------------------------
# output header
# --------------------------------------------------------------------------

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
            try:
                hdr[name] = src[name]
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
    zooms = list(grid.output_spacing(vol.spacing)) + list(vol.image.header.get_zooms()[3:])
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
        self.gz = output_kind(path) == ".nii.gz"
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
