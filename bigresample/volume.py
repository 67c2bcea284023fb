"""What an input is to the rest of bigresample: ``InputVolume``, whatever its format.

A volume is a file's geometry (shape, affine, spacing, units), its stored
type and scaling, the reader of its raw stored values region by region
(``source``, set when the run starts by the format's ``attacher``), and the
header the output carries over: a nibabel image's (for formats nibabel does
not read, a NIfTI header made from the geometry: ``array_volume``).  The
formats that open volumes are in ``inputs`` (the registry), ``nibabel_input``,
``url_input`` and ``ome``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np

from . import location
from .codec import is_gzip
from .errors import InputError
from .geometry import voxel_spacing

NIFTI1_MAX_DIM = 32767

#: Units of the NIfTI header that we convert requested spacings into.
UNIT_TO_MM = {"mm": 1.0, "micron": 1e-3, "meter": 1e3, "unknown": 1.0}


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
    #: a gzip-compressed local file whose voxels, x fastest, its attacher can inflate into memory
    inflatable: bool = False
    #: ... and will, not into a scratch file: the planner found that the memory budget holds it
    #: with what the blocks need (``job.plan_job``)
    in_memory: bool = False
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
    #: how the report names the format ("NIfTI-1 image", "OME-Zarr image"...)
    format_name: str | None = None
    #: ``attacher(volume, scratch_dir, progress)`` sets ``source`` when the run starts (``attach_data``)
    attacher: object = field(default=None, repr=False)
    #: the data can only be read whole (``nibabel_input.SlicedProxy`` over a proxy without slicing)
    whole: bool = False
    #: where the spacing came from, as the report, ``bigresample info`` and the provenance say it (the
    #: header's pixdim, an OME-TIFF's PhysicalSize..., "--input-spacing"); None: the file gives none
    spacing_from: str | None = "the header"
    #: the NIfTI header was made from the geometry (``array_volume``), not read from the file
    made_header: bool = False

    @property
    def dtype(self) -> np.dtype:
        return self.read_dtype if self.read_dtype is not None else self.image.dataobj.dtype

    @property
    def read_whole(self) -> bool:
        """The data can only be read whole (once, within the memory budget)."""
        return self.whole

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
        return self.path if location.is_url(self.path) else None

    @property
    def copied(self) -> bool:
        """A NIfTI at a URL: copied (decompressed) into the scratch folder when the run starts."""
        return self.url_head is not None

    @property
    def compressed(self) -> bool:
        if self.copied:
            return self.url_gzip
        f = getattr(self.image.dataobj, "file_like", None)
        return isinstance(f, str) and is_gzip(Path(f))

    @property
    def data_bytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * self.dtype.itemsize

    @property
    def format(self) -> str:
        """What was opened: "NIfTI-1 image", "MINC2 image", "OME-Zarr image"... (``format_name``)."""
        return (self.format_name or type(self.image).__name__) + (" (gzip-compressed)" if self.compressed else "")

    @property
    def decompressed_bytes(self) -> int:
        """What decompressing a gzip-compressed input writes (its header and voxels)."""
        proxy = self.image.dataobj
        return int(proxy.offset) + int(np.prod(proxy.shape, dtype=np.int64)) * proxy.dtype.itemsize

    @property
    def unit_to_mm(self) -> float:
        return UNIT_TO_MM.get(self.units, 1.0)

    def attach_data(self, scratch_dir=None, progress=None) -> None:
        """Open the voxels for reading (``source``), once: what the format's
        ``attacher`` does (a gzip-compressed file inflated into memory or decompressed into ``scratch_dir``,
        a NIfTI at a URL copied there...); ``progress(total, desc, unit)``: a
        progress bar for a long pass (``Report.bar``)."""
        if self.source is None:
            self.attacher(self, scratch_dir, progress)

    @property
    def data_file(self) -> str:
        """The file the voxels are read from (a decompressed copy, once attached)."""
        return getattr(self.source, "path", None) or str(self.path)

    def close(self) -> None:
        close = getattr(self.source, "close", None) if self.made_header else None
        if close is not None:  # a format's reader holding files open (tiff.TiffArray)
            close()
        if self.scratch is not None:
            self.scratch.unlink(missing_ok=True)
            self.scratch = None


def array_volume(path, source, affine, *, units: str = "mm", format_name: str, extra_scales=(),
                 time_unit: str | None = None, notes=(), **fields) -> InputVolume:
    """The volume of a format whose reader gives the raw stored values region by region (``source``:
    ``shape``, ``dtype`` and ``__getitem__`` with a tuple of slices, spatial axes first, picklable for a
    cluster; an OME-Zarr's ``ome.SpatialView``, a numpy memmap...), with a NIfTI header made from its
    geometry (shape, type, spacing, ``units`` ('mm', 'micron', 'meter' or 'unknown'), the steps of the
    further axes, the affine as qform and sform, code 2 "aligned") for the output to carry over.
    ``time_unit``: nibabel's name of the time axis' unit ("sec", "msec"...); ``format_name``: how the
    report names it; ``fields``: further ``InputVolume`` fields."""
    affine = np.asarray(affine, dtype=np.float64)
    shape = tuple(int(n) for n in source.shape)
    if len(shape) < 3:
        raise InputError(f"{path}: need a 3D or 4D image; got shape {shape}")
    if any(n < 1 for n in shape):
        raise InputError(f"{path}: image has an empty dimension; shape {shape}")
    if not np.all(np.isfinite(affine)) or abs(np.linalg.det(affine[:3, :3])) < 1e-12:
        raise InputError(f"{path}: affine is singular or not finite: {np.array2string(affine, separator=',')}")
    dtype = np.dtype(source.dtype)
    refuse_complex(path, dtype)
    hdr = nib.Nifti2Header() if max(shape) > NIFTI1_MAX_DIM else nib.Nifti1Header()
    hdr.set_data_shape(shape)
    try:
        # NIfTI has no float16: such an image is described (and by default written) as float32
        hdr.set_data_dtype(np.float32 if dtype == np.float16 else dtype)
    except Exception:
        raise InputError(f"{path}: data type {dtype} cannot be written as NIfTI") from None
    spacing = voxel_spacing(affine)
    hdr.set_zooms(list(spacing) + list(extra_scales) + [1.0] * (len(shape) - 3 - len(extra_scales)))
    hdr.set_xyzt_units(units if units != "unknown" else 0, time_unit or "sec")
    hdr.set_qform(affine, 2)
    hdr.set_sform(affine, 2)
    image = (nib.Nifti2Image if isinstance(hdr, nib.Nifti2Header) else nib.Nifti1Image)(source, affine, hdr)
    return InputVolume(path=path, image=image, source=source, shape=shape, affine=affine, spacing=spacing,
                       units=units, slope=1.0, inter=0.0, notes=tuple(notes), format_name=format_name,
                       made_header=True, **fields)


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


def refuse_complex(path, dtype) -> None:
    if np.dtype(dtype).kind == "c":
        raise InputError(f"{path}: complex data ({dtype}) is not supported; resample the real and "
                         "imaginary parts as two images")


def _stored_is_f8(img) -> bool:
    try:
        return np.dtype(img.get_data_dtype()) == np.float64
    except TypeError:
        return False
