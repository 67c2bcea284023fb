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

import contextlib
import dataclasses
import os
import struct
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
from . import store
from .codec import gzip_member, open_gzip
from .geometry import Grid, voxel_spacing
from .rawio import RawReader
from . import header_checks

NIFTI1_MAX_DIM = 32767
#: Units of the NIfTI header that we convert requested spacings into.
UNIT_TO_MM = {"mm": 1.0, "micron": 1e-3, "meter": 1e3, "unknown": 1.0}
GZIP_MAGIC = b"\x1f\x8b"


class InputError(BigresampleError):
    """An input file that cannot be resampled; the message names the file and the problem."""


def _is_gzip(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(2) == GZIP_MAGIC


#: Bytes a compressed file may hold after its voxels (an MGH footer's tags,
#: a writer's padding); never written out, and no room for a bomb.
TRAILING_SLACK = 2**20


def decompress(src, fd: int, limit: int, slack: int = TRAILING_SLACK, chunk: int = 16 * 2**20, name=None,
               on_bytes=None) -> None:
    """Sequentially decompress ``src`` (a path, or a file object read from the
    start) into the open file ``fd``: the first ``limit`` bytes (what the
    header describes), and nothing more.

    A stream that holds more than ``limit + slack`` bytes is refused as soon
    as the first byte past that shows (a decompression bomb fills no disk);
    the ``slack`` bytes after the voxels are read but not written.  A stream
    within that bound is read to its end, so that the gzip reader checks each
    member's CRC-32 and length: a corrupted stream raises here, not silently
    later.  ``on_bytes(n)``: called as bytes are written (a progress bar).
    """
    name = src if name is None else name
    try:
        with open_gzip(src) as fin:
            written = copy_stream(fin, fd, limit, chunk, on_bytes)
            more = len(fin.read(slack + 1)) if written == limit else 0  # to the end, when within bounds
    except Exception as exc:  # zlib.error, isal's error, EOFError, BadGzipFile...
        if _from_store(exc):
            raise InputError(f"{name}: reading failed: {store.why(exc)}") from None
        raise InputError(f"{name}: corrupted or truncated gzip stream ({_one_line(exc)})") from None
    if more > slack:
        raise InputError(f"{name}: the gzip stream holds more than {slack} bytes past the {limit} bytes its "
                         "header describes (header and voxels): refused, as a decompression bomb would be")


def _from_store(exc) -> bool:
    """An error of the network or the object store (not of the gzip stream)."""
    module = type(exc).__module__.split(".")[0]
    return module in ("botocore", "aiobotocore", "aiohttp", "s3fs", "gcsfs", "adlfs", "fsspec") or isinstance(
        exc, (ConnectionError, PermissionError, FileNotFoundError, TimeoutError))


def copy_stream(fin, fd: int, limit: int, chunk: int = 16 * 2**20, on_bytes=None) -> int:
    """Copy the first ``limit`` bytes of the file object ``fin`` into ``fd``
    (closed afterwards) with one reused buffer; returns how many there were.
    ``on_bytes(n)``: called as bytes are written (a progress bar)."""
    buf = bytearray(chunk)
    written = 0
    with os.fdopen(fd, "wb") as fout:
        while written < limit:
            n = fin.readinto(memoryview(buf)[: min(chunk, limit - written)])
            if not n:
                break
            fout.write(memoryview(buf)[:n])
            written += n
            if on_bytes is not None:
                on_bytes(n)
    return written


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

    path: Path | str  # a URL stays a string
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
    notes: tuple[str, ...] = ()  # what the report says about reading this input (fallbacks taken...)
    read_dtype: np.dtype | None = None  # the values ``source`` gives, when not the stored type (SlicedProxy)
    axes: tuple[int, ...] | None = None  # the image's axes in the source's order (spatial first), if moved
    #: a NIfTI read from a URL: its options, whether it is gzip-compressed, and its first bytes
    #: (header and extensions) as planned; the voxels are copied to the scratch folder when attached
    url_options: dict | None = field(default=None, repr=False)
    url_gzip: bool = False
    url_head: bytes | None = field(default=None, repr=False)
    #: an OME-Zarr's group attributes (its provenance among them, ``bigresample.provenance``)
    ome_attrs: dict | None = field(default=None, repr=False)
    #: how the report names the format, when it is not nibabel's image class (``array_volume``)
    format_name: str | None = None
    #: where the spacing came from, as the report, ``bigresample info`` and the provenance say it (the
    #: header's pixdim, an OME-TIFF's PhysicalSize..., "--input-spacing"); None: the file gives none
    spacing_from: str | None = "the header"

    @property
    def dtype(self) -> np.dtype:
        return self.read_dtype if self.read_dtype is not None else self.image.dataobj.dtype

    @property
    def read_whole(self) -> bool:
        """The data can only be read whole (once, within the memory budget)."""
        return isinstance(getattr(self.source, "proxy", None), _Whole)

    @property
    def stored_dtype(self) -> np.dtype:
        """The output's default type: the stored type, or float for values only readable scaled."""
        if self.read_dtype is not None:
            return np.dtype(np.float64 if self.read_dtype.itemsize > 4 and _stored_is_f8(self.image)
                            else np.float32)
        return np.dtype(self.image.get_data_dtype())

    @property
    def extra_zooms(self) -> list[float]:
        """The steps of the non-spatial axes (time...), in the source's order."""
        try:
            zooms = [float(z) for z in self.image.header.get_zooms()]
        except (AttributeError, TypeError):  # ECAT's header has none
            zooms = []
        zooms += [0.0] * (len(self.shape) - len(zooms))
        if self.axes is not None:
            return [zooms[i] for i in self.axes[3:]]
        return zooms[3:len(self.shape)]

    @property
    def url(self) -> str | None:
        """The input's URL when it is read through fsspec."""
        return self.path if store.is_url(self.path) else None

    @property
    def copied(self) -> bool:
        """A NIfTI at a URL: copied (decompressed) into the scratch folder when the run starts."""
        return self.url_head is not None

    @property
    def compressed(self) -> bool:
        if self.copied:
            return self.url_gzip
        f = getattr(self.image.dataobj, "file_like", None)
        return isinstance(f, str) and _is_gzip(Path(f))

    @property
    def data_bytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * self.dtype.itemsize

    @property
    def format(self) -> str:
        """What was opened, named after nibabel's image class: "NIfTI-1 image",
        "MINC2 image", "OME-Zarr image"..."""
        if self.format_name is not None:
            return self.format_name
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

    def attach_data(self, scratch_dir=None, progress=None) -> None:
        """Open the voxels for reading (``source``), once; the header was checked at open.

        A gzip-compressed file is first decompressed, in one sequential pass,
        into ``scratch_dir`` (default: beside the input), after checking that
        the folder has room for it; a NIfTI at a URL is copied there (and
        decompressed on the way).  ``progress(total, desc, unit)``: a progress
        bar for that pass (``Report.bar``).
        """
        if self.source is not None:
            return
        proxy = self.image.dataobj
        if self.copied:
            data_file = self._copy_from_url(Path(scratch_dir) if scratch_dir is not None else Path.cwd(), progress)
        else:
            data_file = proxy.file_like if isinstance(proxy.file_like, str) else None
        if data_file is not None and not self.copied and _is_gzip(Path(data_file)):
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
                decompress(Path(data_file), fd, need)
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

    def _copy_from_url(self, folder: Path, progress) -> str:
        """Copy the header and voxels of the NIfTI at ``self.url`` into a new
        file in ``folder`` (decompressing a .nii.gz on the way, its CRC
        checked), with one bounded buffer; returns the copy's path."""
        proxy = self.image.dataobj
        need = int(proxy.offset) + int(np.prod(proxy.shape, dtype=np.int64)) * proxy.dtype.itemsize
        check_free_space(folder, need, "copying the input")
        base = store.name(self.url)
        stem = base[:-3] if base.lower().endswith(".gz") else base
        fd, scratch = tempfile.mkstemp(prefix=".bigresample-", suffix=f"-{stem}", dir=folder)
        self.scratch = Path(scratch)
        where = store.display(self.url)
        t0 = time.perf_counter()
        bar = progress(need, "copying input", unit="B") if progress is not None else contextlib.nullcontext()
        try:
            fs, path = store.filesystem(self.url, self.url_options)
            with bar, fs.open(path, "rb", block_size=8 * 2**20) as fin:
                on_bytes = getattr(bar, "update", None)
                if self.url_gzip:
                    decompress(fin, fd, need, slack=0, name=where, on_bytes=on_bytes)
                else:
                    copy_stream(fin, fd, need, on_bytes=on_bytes)
            _check_size(where, scratch, proxy)
            with open(scratch, "rb") as f:
                if f.read(len(self.url_head)) != self.url_head:
                    raise InputError(f"{where}: the object changed since its header was read; run again")
        except BaseException as exc:
            self.close()
            if isinstance(exc, Exception) and not isinstance(exc, BigresampleError):
                raise InputError(f"cannot read the input {where}: {store.why(exc, self.url_options)}") from None
            raise
        self.timings["copy"] = time.perf_counter() - t0
        return scratch

    @property
    def data_file(self) -> str:
        """The file the voxels are read from (a decompressed copy, once attached)."""
        return getattr(self.source, "path", None) or str(self.path)

    def close(self) -> None:
        close = getattr(self.source, "close", None) if self.format_name is not None else None
        if close is not None:  # a format's reader holding files open (tiff.TiffArray)
            close()
        if self.scratch is not None:
            self.scratch.unlink(missing_ok=True)
            self.scratch = None


def open_with_nibabel(path: Path, role: str = "input") -> InputVolume:
    """A local file nibabel opens, header only (``inputs.NibabelInput``): its raw header
    fields checked first (``header_checks``), then its shape, data type, affine and the
    file's size."""
    if path.is_dir():
        raise InputError(f"{role} is a folder, not an image file or an OME-Zarr: {path}")
    if path.stat().st_size == 0:
        raise InputError(f"{role} file is empty: {path}")
    checked = header_checks.check(path, role)  # refuses a damaged header in one line, before nibabel
    img = _load(path)
    return _volume(path, img, role=role, checked=checked)


def _volume(path, img, label=None, role: str = "input", checked=None) -> InputVolume:
    """The checked ``InputVolume`` (header only) of the image nibabel opened
    from ``path``; ``label``: how messages name it (a URL without its secrets);
    ``checked``: what ``header_checks`` found (fixes to apply, notes)."""
    vol_path, path = path, path if label is None else label
    if not isinstance(img, nib.spatialimages.SpatialImage):
        raise InputError(f"{path}: not a spatial image ({type(img).__name__})")
    notes = list(checked.notes) if checked is not None else []
    proxy = img.dataobj
    raw = isinstance(proxy, ArrayProxy) and getattr(proxy, "scaling", None) is None
    shape = tuple(int(n) for n in img.shape)
    if len(shape) < 3:
        raise InputError(f"{path}: need a 3D or 4D image; got shape {shape}")
    if any(n < 1 for n in shape):
        raise InputError(f"{path}: image has an empty dimension; shape {shape}")
    if checked is not None:
        checked.apply(img.header)
        affine = img.header.get_best_affine() if checked.version else img.affine
    else:
        affine = img.affine
    affine = np.asarray(affine, dtype=np.float64)
    if not np.all(np.isfinite(affine)) or abs(np.linalg.det(affine[:3, :3])) < 1e-12:
        raise InputError(f"{path}: affine is singular or not finite: {np.array2string(affine, separator=',').replace(chr(10), '')}")
    units = "mm"
    if hasattr(img.header, "get_xyzt_units"):
        units = img.header.get_xyzt_units()[0] or "unknown"
    if raw:
        if checked is not None and "vox_offset" in checked.fixes:
            proxy._offset = int(checked.fixes["vox_offset"])  # nibabel took 0 literally (header bytes as voxels)
        _refuse_complex(path, proxy.dtype)
        slope, inter = proxy.slope, proxy.inter
        data_file = proxy.file_like if isinstance(proxy.file_like, str) else None
        if data_file is not None and not os.path.exists(data_file):
            raise InputError(f"{path}: its data file {Path(data_file).name} is missing (looked in {Path(data_file).parent})")
        if role == "input" and data_file is not None and not _is_gzip(Path(data_file)):
            _check_size(path, data_file, proxy)
        source, read_dtype, axes = None, None, None
    else:
        source, note = sliced_source(path, img)
        _refuse_complex(path, source.stored)
        notes.append(note)
        slope, inter, read_dtype, axes = 1.0, 0.0, source.dtype, source.axes
        shape = tuple(source.shape)
    return InputVolume(
        path=vol_path,
        image=img,
        source=source,
        shape=shape,
        affine=affine,
        spacing=voxel_spacing(affine),
        units=units,
        slope=float(slope) if np.isfinite(slope) else 1.0,
        inter=float(inter) if np.isfinite(inter) else 0.0,
        notes=tuple(notes),
        read_dtype=read_dtype,
        axes=axes if axes != tuple(range(len(shape))) else None,
    )


#: The most header and extension bytes a NIfTI at a URL may have before its voxels.
MAX_URL_HEADER = 64 * 2**20


def open_url(url: str, role: str, options: dict) -> InputVolume:
    """An input or reference at a URL: a NIfTI (``.nii``, ``.nii.gz``) whose
    header is read from the object's first bytes (the voxels are copied when
    attached), or an OME-Zarr read chunk by chunk through fsspec."""
    where = store.display(url)
    try:
        if url.lower().endswith((".nii", ".nii.gz")):
            info = store.info(url, options)
            if info.get("type") == "directory":
                raise InputError(f"{role} {where} is a folder, not a .nii or .nii.gz object")
            vol = _nifti_from_url(url, role, options)
        elif ome.is_ome_zarr(url, options):
            return open_ome(url, role, options)
        elif not store.exists(url, options):
            raise InputError(f"{role} not found: {where}")
        else:
            raise InputError(f"{where}: a {role} URL must be a .nii, a .nii.gz or an OME-Zarr (no zarr.json or "
                             ".zattrs there)")
    except store.StoreError as exc:
        msg = str(exc)
        if msg.endswith(": not found"):
            raise InputError(f"{role} not found: {where}") from None
        raise InputError(f"cannot read the {role} {msg}") from None
    return vol


def _load(path: Path):
    """``nib.load``, with nibabel's header log lines (its own fixes, already
    reported by ``header_checks``) kept off stderr; anything it cannot read
    becomes one line.  ECAT files, which ``nib.load`` does not recognise, are
    tried with nibabel's ECAT reader."""
    logger = nib.imageglobals.logger
    level = logger.level
    logger.setLevel(100)
    try:
        try:
            return nib.load(path)
        except ImportError as exc:
            raise _missing_package(path, exc) from None
        except Exception as exc:  # nibabel raises many types for unreadable files
            import re

            missing = re.search(r"No module named '([\w.]+)'", str(exc))
            if missing:  # nibabel's optional packages can fail as TripWireError
                raise _missing_package(path, ImportError(str(exc), name=missing.group(1))) from None
            if path.suffix.lower() == ".v":
                try:
                    return nib.ecat.load(path)
                except Exception:
                    pass
            raise InputError(f"{path}: not an image nibabel can read ({_one_line(exc)})") from None
    finally:
        logger.setLevel(level)


#: optional packages some formats need, and the extra that installs them
OPTIONAL_PACKAGES = {"h5py": ("MINC2", "minc")}


def _missing_package(path: Path, exc: ImportError) -> InputError:
    name = getattr(exc, "name", None) or str(exc)
    what, extra = OPTIONAL_PACKAGES.get(name, (None, None))
    if extra:
        return InputError(f"{path}: reading {what} files needs the {name} package: "
                          f"pip install 'bigresample[{extra}]'")
    return InputError(f"{path}: reading this file needs the {name} package ({_one_line(exc)}): pip install {name}")


class SlicedProxy:
    """An image's data read region by region through its own proxy's slicing
    (MINC1/2, PAR/REC, ECAT, AFNI with scale factors: proxies without one raw
    offset), as the source the resamplers read windows from.

    These proxies give *scaled* values only (per-slice or per-volume factors
    cannot be carried as one scl_slope), so the scaled values are resampled,
    as float64, and the output is a float image with slope 1.  Non-spatial
    axes that the format puts first (MINC's time) are moved last (``axes``).
    Reads are serialised: the formats' readers (netCDF, HDF5, open file
    handles) are not all safe across threads; the resampling still is.
    """

    def __init__(self, proxy, axes: tuple[int, ...], stored):
        import threading

        self.proxy = proxy
        self.axes = tuple(axes)
        self.stored = np.dtype(stored)
        self.shape = tuple(int(proxy.shape[i]) for i in self.axes)
        self.dtype = np.dtype(np.float64)
        self._lock = threading.Lock()

    def __getitem__(self, slices):
        slices = tuple(slices) + (slice(None),) * (len(self.axes) - len(tuple(slices)))
        inverse = [0] * len(self.axes)
        for k, i in enumerate(self.axes):
            inverse[i] = slices[k]
        with self._lock:
            part = np.asarray(self.proxy[tuple(inverse)], dtype=np.float64)
        # the proxy's axes -> the source's: axis k of the result is proxy axis axes[k]
        return np.transpose(part, self.axes) if self.axes != tuple(range(len(self.axes))) else part

    def __getstate__(self):
        return {k: v for k, v in self.__dict__.items() if k != "_lock"}

    def __setstate__(self, state):
        import threading

        self.__dict__.update(state)
        self._lock = threading.Lock()


class _Whole:
    """A data object that can only be read whole (``np.asarray``), read once."""

    def __init__(self, dataobj):
        self.dataobj = dataobj
        self.shape = tuple(dataobj.shape)
        self.data = None

    def __getitem__(self, slices):
        if self.data is None:
            self.data = np.asarray(self.dataobj, dtype=np.float64)
        return self.data[slices]


def sliced_source(path: Path, img) -> tuple[SlicedProxy, str]:
    """The ``SlicedProxy`` of ``img`` and the report's line about it."""
    proxy = img.dataobj
    fmt = type(img).__name__.replace("Image", "").replace("Minc", "MINC").replace("PARREC", "PAR/REC")
    names = getattr(getattr(proxy, "minc_file", None), "_dim_names", None)
    axes = tuple(range(len(proxy.shape)))
    if names is not None and len(names) == len(axes):
        spatial = [i for i, n in enumerate(names) if str(n).endswith("space")]
        axes = tuple(spatial + [i for i in axes if i not in spatial])
    try:
        stored = img.get_data_dtype()
    except TypeError:  # ECAT: a type per frame
        stored = proxy[(slice(0, 1),) * len(proxy.shape)].dtype
    if not hasattr(proxy, "__getitem__"):
        # not even slicing: read whole, once, on first use (job.plan_job refuses it beyond the memory budget)
        src = SlicedProxy(_Whole(proxy), axes, stored)
        return src, (f"Reading {fmt} whole, once ({np.prod(src.shape, dtype=float) * 8 / 2**20:.1f} MiB as float64): "
                     "its data cannot be read region by region")
    src = SlicedProxy(proxy, axes, stored)
    moved = "" if axes == tuple(range(len(axes))) else f"; axes {axes} read as x, y, z first"
    out = "float64" if src.stored == np.float64 else "float32"
    return src, (f"Reading {fmt} through its own slicing: scaled values resampled, written as {out} "
                 f"with slope 1{moved}")


def _stored_is_f8(img) -> bool:
    try:
        return np.dtype(img.get_data_dtype()) == np.float64
    except TypeError:
        return False


def _nifti_from_url(url: str, role: str, options: dict) -> InputVolume:
    where = store.display(url)
    fs, path = store.filesystem(url, options)
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
        if _from_store(exc):
            raise InputError(f"cannot read the {role} {where}: {store.why(exc, options)}") from None
        raise InputError(f"{where}: not a NIfTI nibabel can read ({_one_line(exc)})") from None
    try:
        img = klass.from_bytes(head)
    except Exception as exc:
        raise InputError(f"{where}: not a NIfTI nibabel can read ({_one_line(exc)})") from None
    vol = _volume(url, img, where)
    vol.url_options, vol.url_gzip, vol.url_head = options, gz, bytes(head[: max(offset, hsize)])
    return vol


def open_ome(path, role: str, options: dict | None = None) -> InputVolume:
    """An OME-Zarr input: level 0 read chunk by chunk through zarr, with a
    NIfTI header made from its metadata (shape, type, spacing, units, time
    step, affine as qform and sform, code 2 "aligned") to carry over."""
    try:
        im = ome.read_image(path, options)
    except ome.OmeError as exc:
        raise InputError(f"{store.display(path)}: cannot read as OME-Zarr {role}: {exc}") from None
    time_unit = next((a.get("unit") for a in im.extra_axes if a.get("type") == "time"), None)
    return array_volume(path, im.data, im.affine, units=im.units, format_name="OME-Zarr image",
                        extra_scales=[a["scale"] for a in im.extra_axes], time_unit=time_unit,
                        extra_axes=im.extra_axes, ome_attrs=im.attrs if im.attrs is not None else {},
                        spacing_from="the OME-Zarr multiscales scale")


def array_volume(path, source, affine, *, units: str = "mm", format_name: str, extra_scales=(),
                 time_unit: str | None = None, notes=(), **fields) -> InputVolume:
    """The volume of a format whose reader gives the raw stored values region by region (``source``:
    ``shape``, ``dtype`` and ``__getitem__`` with a tuple of slices, spatial axes first, picklable for a
    cluster; an OME-Zarr's ``ome.SpatialView``, a numpy memmap...), with a NIfTI header made from its
    geometry (shape, type, spacing, ``units`` ('mm', 'micron', 'meter' or 'unknown'), the steps of the
    further axes, the affine as qform and sform, code 2 "aligned") for the output to carry over.
    ``format_name``: how the report names it; ``fields``: further ``InputVolume`` fields."""
    affine = np.asarray(affine, dtype=np.float64)
    shape = tuple(int(n) for n in source.shape)
    if len(shape) < 3:
        raise InputError(f"{path}: need a 3D or 4D image; got shape {shape}")
    if any(n < 1 for n in shape):
        raise InputError(f"{path}: image has an empty dimension; shape {shape}")
    if not np.all(np.isfinite(affine)) or abs(np.linalg.det(affine[:3, :3])) < 1e-12:
        raise InputError(f"{path}: affine is singular or not finite: {np.array2string(affine, separator=',')}")
    dtype = np.dtype(source.dtype)
    _refuse_complex(path, dtype)
    hdr = nib.Nifti2Header() if max(shape) > NIFTI1_MAX_DIM else nib.Nifti1Header()
    hdr.set_data_shape(shape)
    try:
        # NIfTI has no float16: such an image is described (and by default written) as float32
        hdr.set_data_dtype(np.float32 if dtype == np.float16 else dtype)
    except Exception:
        raise InputError(f"{path}: data type {dtype} cannot be written as NIfTI") from None
    spacing = voxel_spacing(affine)
    hdr.set_zooms(list(spacing) + list(extra_scales) + [1.0] * (len(shape) - 3 - len(extra_scales)))
    hdr.set_xyzt_units(units if units != "unknown" else 0, ome.TIME_UNITS_IN.get(time_unit, "sec"))
    hdr.set_qform(affine, 2)
    hdr.set_sform(affine, 2)
    image = (nib.Nifti2Image if isinstance(hdr, nib.Nifti2Header) else nib.Nifti1Image)(source, affine, hdr)
    return InputVolume(path=path, image=image, source=source, shape=shape, affine=affine, spacing=spacing,
                       units=units, slope=1.0, inter=0.0, notes=tuple(notes), format_name=format_name, **fields)


def with_spacing(vol: InputVolume, spacing, units: str, source: str) -> InputVolume:
    """``vol`` with the voxel spacing ``spacing`` (x, y, z, in ``units``: 'mm' or 'micron'), said to come
    from ``source`` (``--input-spacing``): each axis of the affine (and of a NIfTI header's qform and sform)
    keeps its direction and takes the new length; the origin is kept."""
    spacing = np.asarray(spacing, dtype=np.float64)

    def rescaled(a):
        a = np.array(a, dtype=np.float64)
        norms = voxel_spacing(a)
        a[:3, :3] = a[:3, :3] / np.where(norms > 0, norms, 1.0) * spacing
        return a
    affine = rescaled(vol.affine)
    hdr = vol.image.header
    if isinstance(hdr, (nib.Nifti1Header, nib.Nifti2Header)):  # the output header is made from it
        zooms = list(hdr.get_zooms())
        hdr.set_zooms(list(spacing) + zooms[3:])
        for get, put in ((hdr.get_qform, hdr.set_qform), (hdr.get_sform, hdr.set_sform)):
            form, code = get(coded=True)
            if code:
                put(rescaled(form), int(code))
        hdr.set_xyzt_units(units, hdr.get_xyzt_units()[1])
    return dataclasses.replace(vol, affine=affine, spacing=voxel_spacing(affine), units=units,
                               spacing_from=source)


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
