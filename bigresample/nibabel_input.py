"""Every local file nibabel opens: NIfTI-1/2, Analyze, MGH/MGZ, MINC1/2, PAR/REC, ECAT, AFNI.

Read lazily, never whole, as *stored* (raw) values where the format has one
raw offset (an ``ArrayProxy``): scl_slope/scl_inter are carried to the output
header instead (B-splines sum to one, so resampling raw values then scaling
equals resampling the scaled values).  A gzip-compressed file is first
inflated in one sequential pass (``attach``), into memory when the memory
budget holds it with what the blocks need (``job.plan_job``), else into
the scratch folder, because random access into gzip re-decompresses from the
start on every backward seek (quadratic); the pass also checks the gzip CRC
of the whole file.  Formats without one raw offset are read through their own slicing
(``SlicedProxy``).  The raw header fields are checked before nibabel reads
them (``header_checks``).
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np
from nibabel.arrayproxy import ArrayProxy

from . import header_checks
from .codec import decompress, inflate, is_gzip
from .errors import InputError, one_line
from .geometry import voxel_spacing
from .rawio import MemoryReader, RawReader
from .safefs import check_free_space
from .volume import InputVolume, refuse_complex

#: nibabel's image classes (most derived first along the MRO) and the format they read
FORMAT_NAMES = {
    "Nifti2Image": "NIfTI-2 image", "Nifti2Pair": "NIfTI-2 pair (.hdr/.img)",
    "Nifti1Image": "NIfTI-1 image", "Nifti1Pair": "NIfTI-1 pair (.hdr/.img)",
    "Spm2AnalyzeImage": "SPM2 Analyze image", "Spm99AnalyzeImage": "SPM99 Analyze image",
    "AnalyzeImage": "Analyze 7.5 image", "MGHImage": "MGH image", "Minc1Image": "MINC1 image",
    "Minc2Image": "MINC2 image", "PARRECImage": "PAR/REC image", "AFNIImage": "AFNI BRIK/HEAD image",
    "GiftiImage": "GIFTI image", "Cifti2Image": "CIFTI-2 image",
}


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
    return nibabel_volume(path, img, role=role, checked=checked)


def nibabel_volume(path, img, label=None, role: str = "input", checked=None) -> InputVolume:
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
        refuse_complex(path, proxy.dtype)
        slope, inter = proxy.slope, proxy.inter
        data_file = proxy.file_like if isinstance(proxy.file_like, str) else None
        if data_file is not None and not os.path.exists(data_file):
            raise InputError(f"{path}: its data file {Path(data_file).name} is missing (looked in {Path(data_file).parent})")
        gzipped = data_file is not None and is_gzip(Path(data_file))
        if role == "input" and data_file is not None and not gzipped:
            check_size(path, data_file, proxy)
        source, read_dtype, axes = None, None, None
        inflatable = gzipped and proxy.order == "F"
    else:
        inflatable = False
        source, note = sliced_source(path, img)
        refuse_complex(path, source.stored)
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
        format_name=_format_name(img),
        attacher=attach,
        whole=isinstance(getattr(source, "proxy", None), _Whole),
        inflatable=inflatable,
    )


def _format_name(img) -> str:
    """The format nibabel read, named after its image class (``FORMAT_NAMES``)."""
    for cls in type(img).__mro__:
        if cls.__name__ in FORMAT_NAMES:
            return FORMAT_NAMES[cls.__name__]
    return type(img).__name__


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
            raise InputError(f"{path}: not an image nibabel can read ({one_line(exc)})") from None
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
    return InputError(f"{path}: reading this file needs the {name} package ({one_line(exc)}): pip install {name}")


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


def check_size(path: Path, data_file: str | None, proxy: ArrayProxy) -> None:
    """A truncated file would otherwise read as garbage or fail half-way."""
    if data_file is None or not os.path.exists(data_file):
        return
    need = int(proxy.offset) + int(np.prod(proxy.shape, dtype=np.int64)) * proxy.dtype.itemsize
    have = os.path.getsize(data_file)
    if have < need:
        raise InputError(f"{path}: file is truncated: {have} bytes of data file, header needs {need}")


def attach(vol: InputVolume, scratch_dir=None, progress=None) -> None:
    """The ``attacher`` of a file nibabel opened with one raw offset (``InputVolume.attach_data``):
    a gzip-compressed file is first inflated, in one sequential pass: into memory when the
    planner found that the budget holds it (``InputVolume.in_memory``, ``job.plan_job``),
    else into ``scratch_dir`` (default: beside the input), after checking that the folder has
    room for it; then the voxels are read positionally (``reader``)."""
    proxy = vol.image.dataobj
    data_file = proxy.file_like if isinstance(proxy.file_like, str) else None
    if data_file is not None and is_gzip(Path(data_file)):
        t0 = time.perf_counter()
        if vol.in_memory and vol.inflatable:
            vol.source = _inflated(vol, Path(data_file), proxy)
            vol.timings["inflate"] = time.perf_counter() - t0
            return
        need = vol.decompressed_bytes
        folder = Path(scratch_dir) if scratch_dir is not None else vol.path.parent
        check_free_space(folder, need, "decompressing the input")
        name = Path(data_file).name
        stem = name[:-3] if name.lower().endswith(".gz") else name
        if name.lower().endswith(".mgz"):
            stem = name[:-4] + ".mgh"
        # a random name, created exclusively (never through a planted link)
        fd, scratch = tempfile.mkstemp(prefix=".bigresample-", suffix=f"-{stem}", dir=folder)
        vol.scratch = Path(scratch)
        try:
            decompress(Path(data_file), fd, need)
            check_size(vol.path, str(vol.scratch), proxy)
        except BaseException:
            vol.close()
            raise
        vol.timings["decompress"] = time.perf_counter() - t0
        data_file = str(vol.scratch)
    vol.source = reader(proxy, data_file)


def _inflated(vol: InputVolume, data_file: Path, proxy) -> MemoryReader:
    """The voxels of a gzip-compressed file inflated into one buffer of the size its header
    gives (a longer stream stops there, ``codec.decompress``), refused in one line if shorter."""
    need = vol.decompressed_bytes
    buf, have = inflate(data_file, need, name=vol.path)
    if have < need:
        raise InputError(f"{vol.path}: file is truncated: {have} bytes of data file, header needs {need}")
    return MemoryReader(buf, proxy.offset, proxy.shape, proxy.dtype)


def reader(proxy, data_file: str | None):
    """The source of the raw values of ``proxy``'s image stored in ``data_file``: positional
    reads into the workers' own buffers (``rawio.RawReader``) for x-fastest files, else a
    fresh unscaled ``ArrayProxy``."""
    if data_file is not None and proxy.order == "F":
        return RawReader(data_file, proxy.offset, proxy.shape, proxy.dtype)
    return ArrayProxy(proxy.file_like, (proxy.shape, proxy.dtype, proxy.offset, 1.0, 0.0), order=proxy.order,
                      keep_file_open=False)
