"""Output formats: what each declares, found in a registry by the output's suffix.

An ``OutputFormat`` says what the planner and the run need to know of a
format (its suffixes, whether it is a folder, whether it carries the NIfTI
header the job builds and so its provenance, whether it is compressed, takes
pyramids or URLs) and makes the ``sinks.Sink`` that writes it.  Nothing
outside this module branches on the output's suffix: ``Request.output_format``
is the format, and the code asks it.  A new format is a subclass registered
with ``register`` (its suffixes then pass ``Request.make``).
"""

from __future__ import annotations

from pathlib import Path

from . import ome
from . import provenance
from . import location
from .errors import BigresampleError
from .errors import InputError
from .nifti import header_bytes
from .sinks import GzipMembers, GzipNifti, OmeZarr, RawNifti, Sink, StoreThenNifti


class OutputFormat:
    """The base: a NIfTI-like single file.  Subclasses set the class attributes and ``make_sink``."""

    #: how the report and provenance name it
    name = ""
    #: the suffixes it is chosen by (lower case; the longest match wins)
    suffixes: tuple[str, ...] = ()
    #: written as a folder (a store), not a file
    folder = False
    #: carries the NIfTI header the job builds (the provenance goes into it, its bytes are part of the file)
    nifti_header = True
    #: compressed: its size on disk is estimated (half the voxels' bytes)
    compressed = False
    #: takes ``--levels`` (a multiscale pyramid)
    pyramids = False
    #: may be written at a URL (an object store)
    urls = False

    def file_bytes(self, out_bytes: int, header) -> int:
        """What the output holds uncompressed: its voxels, and the NIfTI header with its extensions."""
        return out_bytes + (len(header_bytes(header)) if self.nifti_header else 0)

    def disk_bytes(self, file_bytes: int) -> int:
        """The space it needs on disk (an estimate when compressed)."""
        return file_bytes // 2 if self.compressed else file_bytes

    def stretches_only(self, request, executor) -> bool:
        """The plan may only make blocks that are stretches of the output file (each becomes a piece of
        the file on its own, e.g. a gzip member written by a cluster's worker)."""
        return False

    def attach_provenance(self, header, record: dict) -> None:
        """Put the provenance document where this format keeps it (the NIfTI header's extension)."""
        if self.nifti_header:
            provenance.attach(header, record)

    def make_sink(self, request, vol, stages, header, out_dtype, zarr_store: str, executor, record) -> Sink:
        raise NotImplementedError


class NiftiOutput(OutputFormat):
    name, suffixes = "NIfTI", (".nii",)

    def make_sink(self, request, vol, stages, header, out_dtype, zarr_store, executor, record) -> Sink:
        out, kind, opts = request.output, request.kind, request.storage_options
        if _through_store(request, executor):
            return StoreThenNifti(out, header, kind, zarr_store, keep=request.keep_zarr, options=opts)
        return RawNifti(out, header, kind, remote=executor.remote)  # the workers write at the offsets


class GzipNiftiOutput(OutputFormat):
    name, suffixes, compressed = "NIfTI (gzip)", (".nii.gz",), True

    def make_sink(self, request, vol, stages, header, out_dtype, zarr_store, executor, record) -> Sink:
        out, kind, opts = request.output, request.kind, request.storage_options
        if _through_store(request, executor):
            return StoreThenNifti(out, header, kind, zarr_store, keep=request.keep_zarr, options=opts)
        if not executor.remote and executor.ordered_commits:
            return GzipNifti(out, header, kind)  # appended in block order
        if stages[0].blocks.is_file_stretch:  # as planned, unless --chunks said otherwise
            return GzipMembers(out, header, kind)  # the workers compress, the client concatenates
        return StoreThenNifti(out, header, kind, zarr_store, keep=False, options=opts)

    def stretches_only(self, request, executor) -> bool:
        """Written by a cluster's workers as gzip members: its blocks must be stretches of the file."""
        return executor.remote and not _through_store(request, executor)


class OmeZarrOutput(OutputFormat):
    name, suffixes = "OME-Zarr", (".zarr",)
    folder, nifti_header, pyramids, urls = True, False, True, True

    def make_sink(self, request, vol, stages, header, out_dtype, zarr_store, executor, record) -> Sink:
        out, kind = request.output, request.kind
        lead_axes = ome.leading_axes(vol)
        try:
            ome.check_leading_axes(lead_axes)
        except ome.OmeError as exc:
            raise OutputFormatError(f"cannot write this image as OME-Zarr: {exc}; write .nii or .nii.gz") from None
        attrs = ome.metadata(location.name(out)[: -len(kind)],
                             [s.grid.output_affine(vol.affine) for s in stages], vol.units, lead_axes)
        if record is not None:
            attrs["bigresample"]["provenance"] = record
        return OmeZarr(out, header, kind, attrs, out_dtype, stages[0].grid.output_affine(vol.affine),
                       request.storage_options)


def _through_store(request, executor) -> bool:
    """A NIfTI goes through a zarr store where that is the point: kept, or a cluster's scratch on an object store."""
    return request.keep_zarr or (executor.remote and location.is_url(request.store_root))


class OutputFormatError(BigresampleError):
    """An output this format cannot write (named with the reason)."""


#: the registered formats, in the order their suffixes are listed in messages
OUTPUTS: list[OutputFormat] = [NiftiOutput(), GzipNiftiOutput(), OmeZarrOutput()]


def register(fmt: OutputFormat) -> None:
    """Add a format (its suffixes then name outputs ``resample`` writes with it)."""
    OUTPUTS.append(fmt)


def suffix_of(path) -> tuple[str, OutputFormat]:
    """The output's suffix (as written: ``.nii.gz``) and its format, or InputError naming the unsupported suffix."""
    name = str(path).lower().rstrip("/")
    found = [(s, f) for f in OUTPUTS for s in f.suffixes if name.endswith(s)]
    if not found:
        known = [s for f in OUTPUTS for s in f.suffixes]
        raise InputError(f"output must end in {', '.join(known[:-1])} or {known[-1]}; got {Path(path).name!r}")
    return max(found, key=lambda sf: len(sf[0]))


def output_format(kind: str) -> OutputFormat:
    """The format registered for the suffix ``kind``."""
    return suffix_of(kind)[1]
