"""Transform files: what each tool's file means when that tool applies it.

``read_chain`` turns the ``--transform`` arguments into a ``registration.Chain``
of output-to-input point maps in RAS millimetres.  Each file is read by the
first ``TransformFormat`` that recognises it (formats registered with
``register`` are asked first) and converted from its tool's convention, so
that a file means what it means to the tool that wrote it when that tool
applies it.

A transform is named as a path, or in ANTs' spelling ``[PATH,1]`` for its
inverse (``[PATH,0]``: as is); ``resample(transforms=...)`` also takes
``(path, True)`` for the inverse.  Built in:

- a plain 4x4 matrix (``.npy``, or a text file of 16 numbers): it maps an
  output (reference) point to the input point sampled there, both in RAS mm
  (nibabel's world coordinates): the direction ITK and ANTs files have.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import InputError
from .registration import AffineMap, Chain, RegistrationError


class TransformError(InputError):
    """A transform file that cannot be read or applied as asked (named with the file)."""


@dataclass(frozen=True)
class TransformSpec:
    """One ``--transform``: the file and whether its inverse is asked for."""

    path: Path
    inverse: bool = False

    @property
    def display(self) -> str:
        return f"[{self.path},1]" if self.inverse else str(self.path)


_BRACKETS = re.compile(r"^\[\s*(?P<path>.+?)\s*,\s*(?P<flag>[01])\s*\]$")


def parse_spec(value) -> TransformSpec:
    """``PATH``, ``[PATH,0]``, ``[PATH,1]`` (ANTs' spelling: 1 asks for the inverse), or ``(path, inverse)``."""
    if isinstance(value, TransformSpec):
        return value
    if isinstance(value, (tuple, list)):
        if len(value) != 2 or not isinstance(value[1], bool):
            raise TransformError(f"a transform is a path or (path, inverse: bool); got {value!r}")
        return TransformSpec(Path(value[0]), value[1])
    text = str(value)
    m = _BRACKETS.match(text.strip())
    if m:
        return TransformSpec(Path(m["path"]), m["flag"] == "1")
    if text.startswith("["):
        raise TransformError(f"a transform in brackets is [PATH,0] or [PATH,1] (1: its inverse); got {text!r}")
    return TransformSpec(Path(text))


@dataclass(frozen=True)
class Space:
    """An image's grid as a transform file may need it (FSL's scaled voxels, LTA's geometry):
    shape and voxel -> RAS mm affine."""

    shape: tuple
    affine: np.ndarray


class TransformFormat:
    """The base: ``name``, ``recognises(path, head)`` (``head``: the file's first 512 bytes) and ``read``."""

    name = ""

    def recognises(self, path: Path, head: bytes) -> bool:
        return False

    def read(self, path: Path, *, moving: Space, reference: Space):
        """The file's map (``registration.AffineMap`` or ``DisplacementField``), output to input, RAS mm."""
        raise NotImplementedError


class PlainMatrix(TransformFormat):
    """A 4x4 world-to-world matrix, output (reference) RAS mm -> input RAS mm: ``.npy`` or 16 numbers as text."""

    name = "4x4 matrix"

    def recognises(self, path, head):
        if path.suffix.lower() == ".npy":
            return True
        try:
            text = head.decode("ascii")
        except UnicodeDecodeError:
            return False
        return bool(text.strip()) and all(_is_number(w) for w in text.split()[:16]) and len(head) < 512

    def read(self, path, *, moving, reference):
        try:
            m = np.load(path, allow_pickle=False) if path.suffix.lower() == ".npy" else np.loadtxt(path, ndmin=2)
        except (OSError, ValueError) as e:
            raise TransformError(f"{path}: not a 4x4 matrix ({e})") from None
        m = np.asarray(m, dtype=np.float64)
        if m.shape == (3, 4):
            m = np.vstack([m, (0, 0, 0, 1)])
        if m.shape != (4, 4):
            raise TransformError(f"{path}: a plain matrix must be 4x4 (or 3x4); got shape {m.shape}")
        return AffineMap(m, f"{path.name} ({self.name})")


def _is_number(word: str) -> bool:
    try:
        float(word)
    except ValueError:
        return False
    return True


#: asked after the formats registered with ``register``, in this order
FORMATS: list[TransformFormat] = [PlainMatrix()]
_REGISTERED: list[TransformFormat] = []


def register(fmt: TransformFormat) -> None:
    """Ask ``fmt`` before the built-in formats."""
    _REGISTERED.insert(0, fmt)


def format_of(path: Path) -> TransformFormat:
    """The first format that recognises ``path``, or a one-line refusal naming it."""
    try:
        with open(path, "rb") as f:
            head = f.read(512)
    except IsADirectoryError:
        head = b""
    except OSError as e:
        raise TransformError(f"cannot read transform {path}: {e.strerror or e}") from None
    for fmt in _REGISTERED + FORMATS:
        if fmt.recognises(path, head):
            return fmt
    raise TransformError(f"{path}: not a transform file bigresample reads "
                         "(ITK/ANTs .txt/.tfm/.mat, FSL .mat, FreeSurfer .lta, a 4x4 matrix, a displacement field)")


def read_map(spec: TransformSpec, *, moving: Space, reference: Space):
    """One file's map, inverted when asked (a field cannot be: refused naming the file)."""
    fmt = format_of(spec.path)
    try:
        m = fmt.read(spec.path, moving=moving, reference=reference)
        return m.inverse() if spec.inverse else m
    except RegistrationError as e:
        raise TransformError(str(e)) from None


def read_chain(specs, *, moving: Space, reference: Space) -> Chain:
    """The ``--transform`` arguments as a ``Chain``: in antsApplyTransforms' order, the first listed is
    applied first to each output point (``-t T1 -t T2`` samples at ``T2(T1(p))``: measured with antspyx,
    ``ants.apply_transforms``), so the chain, in ITK's composite order, is the list reversed."""
    maps = [read_map(parse_spec(s), moving=moving, reference=reference) for s in specs]
    return Chain(tuple(maps[::-1]))


def describe(spec, with_digest: bool = True) -> dict:
    """What the provenance and the journal record of a transform: its path, format, inverse flag and
    sha256 (None without ``with_digest``: a dry run reads a field's header only)."""
    spec = parse_spec(spec)
    return {"path": str(spec.path), "format": format_of(spec.path).name, "inverse": spec.inverse,
            "sha256": digest(spec.path) if with_digest else None}


def digest(path: Path) -> str:
    """The sha256 of a file (of a folder's files, names included, for an OME-Zarr field)."""
    h = hashlib.sha256()
    path = Path(path)
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for p in files:
        if path.is_dir():
            h.update(str(p.relative_to(path)).encode() + b"\0")
        with open(p, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()
