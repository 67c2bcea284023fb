"""Input formats: found in a registry by what a path looks like (its suffix or content).

An ``InputFormat`` recognises a path (``recognises``, cheap: a suffix, a
metadata file) and opens it to a ``volume.InputVolume`` from its headers alone
(``open``): geometry (shape, affine, spacing, units), the stored type, a
reader of regions (``source``, or one attached when the run starts) and the
header the output carries over.  The first format that recognises a path
opens it; formats registered with ``register`` are asked before the built-in
ones, so a new container (a raw ``.npy``, a TIFF stack) is one class.  A
format whose reader gives raw values region by region builds its volume with
``volume.array_volume``.

Built in, in the order asked: a plain Zarr array (``plainzarr``: v2 or v3, a
folder or a URL), OME-Zarr (a folder with NGFF metadata), a URL (a NIfTI or an
OME-Zarr), a TIFF file and a folder or glob of TIFF slices (``tiff``), and
every file nibabel opens (NIfTI, Analyze, MGH/MGZ, MINC, PAR/REC, ECAT).
"""

from __future__ import annotations

import glob
from pathlib import Path

from . import ome
from . import location
from .errors import InputError
from .nibabel_input import open_with_nibabel
from .ome import open_ome
from .url_input import open_url
from .volume import InputVolume


class InputFormat:
    """The base: ``name`` (how the report names the format), ``recognises`` and ``open``."""

    name = ""

    def recognises(self, path, options: dict) -> bool:
        """True if ``path`` (a Path, or a URL as a string) is this format's (cheap: no voxel read)."""
        return False

    def open(self, path, *, role: str, options: dict) -> InputVolume:
        """The volume of ``path`` from its headers (``source`` may be None until ``attach_data``),
        or an ``InputError`` naming the file and the problem."""
        raise NotImplementedError


class OmeZarrInput(InputFormat):
    name = "OME-Zarr"

    def recognises(self, path, options):
        return not location.is_url(path) and Path(path).is_dir() and ome.is_ome_zarr(path)

    def open(self, path, *, role, options):
        return open_ome(path, role, options)


class UrlInput(InputFormat):
    """A URL: a NIfTI (its header read from the object's first bytes, its voxels copied into the scratch
    folder when attached) or an OME-Zarr (read chunk by chunk); anything else is refused in one line."""

    name = "URL"

    def recognises(self, path, options):
        return location.is_url(path)

    def open(self, path, *, role, options):
        return open_url(str(path), role, options)


class NibabelInput(InputFormat):
    """Every local file nibabel opens, its header checked first (``header_checks``)."""

    name = "nibabel"

    def recognises(self, path, options):
        return not location.is_url(path)

    def open(self, path, *, role, options):
        return open_with_nibabel(Path(path), role)


# the formats in their own modules subclass InputFormat (defined above; the package imports this module first)
from .plainzarr import PlainZarrInput  # noqa: E402
from .tiff import TiffInput, TiffSlicesInput  # noqa: E402

#: the formats, asked in this order; ``register`` puts new ones first
INPUTS: list[InputFormat] = [PlainZarrInput(), OmeZarrInput(), UrlInput(), TiffInput(), TiffSlicesInput(),
                             NibabelInput()]


def register(fmt: InputFormat) -> None:
    """Ask ``fmt`` before every format registered earlier (and the built-in ones)."""
    INPUTS.insert(0, fmt)


def open_input(path, scratch_dir=None, read_data: bool = True, role: str = "input",
               storage_options: dict | None = None) -> InputVolume:
    """Open ``path`` with the first format that recognises it (see the module docstring).

    Parameters
    ----------
    path : str or Path
    scratch_dir : Path, optional
        Where a gzip-compressed input is decompressed (or a URL's NIfTI copied) when attached.
    read_data : bool
        False: the header only (``source`` may be None until ``InputVolume.attach_data``).
    role : str
        What the file is, in error messages ("input", "reference").
    storage_options : dict, optional
        fsspec options for a URL (``bigresample.location``).
    """
    options = storage_options or {}
    if not location.is_url(path):
        path = Path(path)
        if not path.exists() and not glob.has_magic(str(path)):  # a glob names TIFF slices (``tiff``)
            raise InputError(f"{role} file not found: {path}")
    fmt = next(f for f in INPUTS if f.recognises(path, options))
    vol = fmt.open(path, role=role, options=options)
    if read_data:
        vol.attach_data(scratch_dir)
    return vol
