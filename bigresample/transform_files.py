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

- ITK/ANTs linear transforms, text (``#Insight Transform File``, ``.txt``
  or ``.tfm``) or the MATLAB v4 binary ``.mat`` that antsRegistration writes:
  ``AffineTransform``, ``MatrixOffsetTransformBase``, ``Euler3DTransform``,
  ``VersorRigid3DTransform``, ``Similarity3DTransform``,
  ``TranslationTransform``, ``IdentityTransform`` (double or float, with
  their fixed centre) and a text ``CompositeTransform`` of them.  ITK maps
  output (fixed) LPS points to input (moving) LPS points: converted to RAS
  with ``diag(-1, -1, 1)`` on both sides.
- an FSL FLIRT matrix (a ``.mat`` text file of 16 numbers): written
  input-to-reference in FSL's scaled voxels (voxel indices times the voxel
  sizes, x flipped when the grid's affine has a positive determinant), so it
  needs both grids (``Space``) and is applied inverted, as
  ``flirt -applyxfm -init`` applies it.
- a FreeSurfer ``.lta`` (``LINEAR_VOX_TO_VOX`` or ``LINEAR_RAS_TO_RAS``): it
  maps its ``src`` (the moving volume) to its ``dst`` (the target), so it is
  applied inverted, as ``mri_vol2vol --mov --targ --lta`` applies it; a
  voxel-to-voxel LTA goes through its own src/dst geometry (refused without
  it, as mri_vol2vol refuses it).
- a displacement field as ANTs and ITK write it: a NIfTI vector image, 5-D
  ``(X, Y, Z, 1, 3)``, displacements in LPS mm on its own grid
  (``p_in = p + d(p)``); or an OME-Zarr field (docs/registration.md): an
  OME-Zarr image with one leading ``c`` axis of 3 components (x, y, z) and
  the group attribute ``bigresample.displacement_field.frame`` ``"RAS"`` or
  ``"LPS"``, displacements in the spatial axes' unit.  Both are read region
  by region (``registration.DisplacementField.read``), never whole.
- a plain 4x4 matrix (``.npy``, or a text file of 16 numbers not named
  ``.mat``): it maps an output (reference) point to the input point sampled
  there, both in RAS mm (nibabel's world coordinates): the direction ITK and
  ANTs files have.

Parsers are our own (numpy only; nibabel and zarr for the fields):
nitransforms reads these formats too, but importing it costs about a second
and a half (it imports scipy.io, asyncio, the nonlinear resamplers), and
each format here is a few lines; the tests
check each parser against the tool that writes the format (SimpleITK) and
against nitransforms' mapping (FSL, LTA).
"""

from __future__ import annotations

import functools
import hashlib
import re
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import InputError
from .registration import AffineMap, Chain, DisplacementField, RegistrationError


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
        return AffineMap(self.matrix(path), f"{path.name} ({self.name})")

    @staticmethod
    def matrix(path: Path) -> np.ndarray:
        """The file's 4x4 (a 3x4 gets its last row), finite, float64."""
        try:
            m = np.load(path, allow_pickle=False) if path.suffix.lower() == ".npy" else np.loadtxt(path, ndmin=2)
            m = np.asarray(m, dtype=np.float64)
        except (OSError, ValueError, TypeError) as e:
            raise TransformError(f"{path}: not a 4x4 matrix ({e})") from None
        if m.size in (12, 16) and m.ndim == 2 and m.shape[0] == 1:  # the numbers on one line
            m = m.reshape(-1, 4)
        if m.shape == (3, 4):
            m = np.vstack([m, (0, 0, 0, 1)])
        if m.shape != (4, 4):
            raise TransformError(f"{path}: a matrix must be 4x4 (or 3x4); got shape {m.shape}")
        _finite(m, path, "the matrix")
        return m


def _is_number(word: str) -> bool:
    try:
        float(word)
    except ValueError:
        return False
    return True


# ---------------------------------------------------------------- ITK / ANTs

#: ITK's LPS <-> RAS (its own inverse)
_LPS = np.diag([-1.0, -1.0, 1.0, 1.0])
_ITK_KIND = re.compile(r"^(?P<kind>[A-Za-z0-9]+?)(_(?P<type>double|float)_3_3)?$")


def _finite(values, path, what) -> np.ndarray:
    v = np.asarray(values, dtype=np.float64).ravel()
    if not np.all(np.isfinite(v)):
        raise TransformError(f"{path}: {what} holds a value that is not finite ({v[~np.isfinite(v)][0]})")
    return v


def _versor(v) -> np.ndarray:
    """ITK's versor (its vector part; ``w = sqrt(1 - |v|^2)``) as a rotation matrix (ITK's Versor::GetMatrix)."""
    x, y, z = v
    norm = float(np.sqrt(x * x + y * y + z * z))
    if norm >= 1.0 - 1e-10:  # as VersorRigid3DTransform::SetParameters: renormalised
        x, y, z = np.array([x, y, z]) / (norm + 1e-10 * norm)
    w = np.sqrt(max(0.0, 1.0 - (x * x + y * y + z * z)))
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                     [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                     [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])


def _euler(angles, zyx: bool) -> np.ndarray:
    """ITK's Euler3DTransform: ``Rz Rx Ry`` (``Rz Ry Rx`` when ComputeZYX)."""
    (cx, cy, cz), (sx, sy, sz) = np.cos(angles), np.sin(angles)
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return rz @ ry @ rx if zyx else rz @ rx @ ry


#: kind -> (number of parameters, its matrix and translation from the parameters and fixed parameters)
_ITK_LINEAR = {
    "AffineTransform": (12, lambda p, f: (p[:9].reshape(3, 3), p[9:12])),
    "MatrixOffsetTransformBase": (12, lambda p, f: (p[:9].reshape(3, 3), p[9:12])),
    "Euler3DTransform": (6, lambda p, f: (_euler(p[:3], len(f) > 3 and f[3] != 0), p[3:6])),
    "VersorRigid3DTransform": (6, lambda p, f: (_versor(p[:3]), p[3:6])),
    "Similarity3DTransform": (7, lambda p, f: (_versor(p[:3]) * p[6], p[3:6])),
    "TranslationTransform": (3, lambda p, f: (np.eye(3), p[:3])),
    "IdentityTransform": (0, lambda p, f: (np.eye(3), np.zeros(3))),
}


def _itk_affine(path, name: str, params, fixed) -> np.ndarray:
    """One ITK linear transform as its output -> input 4x4 matrix in RAS mm.

    ITK: ``p_in = M (p_out - c) + c + t`` in LPS, ``c`` the fixed parameters
    (the centre); RAS: ``F M F`` with ``F = diag(-1, -1, 1)``."""
    m = _ITK_KIND.match(name)
    kind = m["kind"] if m else name
    if kind not in _ITK_LINEAR:
        raise TransformError(f"{path}: ITK transform {name!r} is not read "
                             f"(linear 3-D ones only: {', '.join(_ITK_LINEAR)}; a field as a NIfTI image)")
    count, build = _ITK_LINEAR[kind]
    p = _finite(params, path, f"{name}'s parameters")
    f = _finite(fixed, path, f"{name}'s fixed parameters")
    if p.size != count:
        raise TransformError(f"{path}: {name} needs {count} parameters; got {p.size}")
    if kind not in ("TranslationTransform", "IdentityTransform") and f.size not in (3, 4):
        raise TransformError(f"{path}: {name} needs its centre (3 fixed parameters); got {f.size}")
    matrix, t = build(p, f)
    c = f[:3] if f.size >= 3 else np.zeros(3)
    lps = np.eye(4)
    lps[:3, :3] = matrix
    lps[:3, 3] = t + c - matrix @ c
    return _LPS @ lps @ _LPS


class ItkText(TransformFormat):
    """ITK's text transform file (``.txt``, ``.tfm``): one linear transform or a composite of them."""

    name = "ITK text"

    def recognises(self, path, head):
        return head.lstrip().startswith(b"#Insight Transform File") or (
            path.suffix.lower() in (".txt", ".tfm") and b"\nTransform:" in head)

    def read(self, path, *, moving, reference):
        try:
            text = path.read_text(encoding="ascii")
        except (OSError, UnicodeDecodeError) as e:
            raise TransformError(f"{path}: not an ITK text transform ({e})") from None
        transforms = []  # [name, parameters, fixed parameters]
        for number, line in enumerate(text.splitlines(), 1):
            key, sep, value = line.partition(":")
            key = key.strip()
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            if not sep or key not in ("Transform", "Parameters", "FixedParameters"):
                raise TransformError(f"{path}: line {number} is not an ITK transform line: {line.strip()[:60]!r}")
            if key == "Transform":
                transforms.append([value.strip(), None, None])
                continue
            if not transforms:
                raise TransformError(f"{path}: line {number}: {key} before any Transform")
            try:
                transforms[-1][1 if key == "Parameters" else 2] = [float(w) for w in value.split()]
            except ValueError:
                raise TransformError(f"{path}: line {number}: {key} are not numbers: {value.strip()[:60]!r}") from None
        if transforms and transforms[0][0].startswith("CompositeTransform"):
            transforms = transforms[1:]
        if not transforms:
            raise TransformError(f"{path}: an ITK transform file holding no transform")
        maps = []
        for name, params, fixed in transforms:
            if params is None and not name.startswith("IdentityTransform"):
                raise TransformError(f"{path}: {name} has no Parameters line (a truncated file?)")
            maps.append(_itk_affine(path, name, params or [], fixed or []))
        # a composite's queue applies its last transform first, as a --transform list
        matrix = functools.reduce(np.matmul, maps)
        kinds = " * ".join(t[0] for t in transforms)
        return AffineMap(matrix, f"{path.name} ({self.name}: {kinds})")


#: MATLAB v4's P digit: element type
_MAT4_TYPES = {0: "f8", 1: "f4", 2: "i4", 3: "i2", 4: "u2", 5: "u1"}


def read_mat4(path: Path, data: bytes) -> dict:
    """The variables of a MATLAB v4 file (what ITK's MatlabTransformIO writes, through vnl) as flat arrays.

    Each record: 5 int32 (type ``MOPT``, rows, columns, imaginary flag, name
    length), the name (NUL-terminated), the values; M is the byte order (0
    little, 1 big), P the element type, T 0 (a full numeric matrix).  Every
    length is checked against what is left of the file."""
    out, pos = {}, 0
    while pos < len(data):
        if len(data) - pos < 20:
            raise TransformError(f"{path}: truncated MATLAB v4 file (a record header of {len(data) - pos} bytes)")
        for order in "<>":
            mopt, rows, cols, imag, namlen = np.frombuffer(data, dtype=f"{order}i4", count=5, offset=pos).tolist()
            if 0 <= mopt < 2000 and mopt // 1000 == (order == ">"):
                break
        else:
            raise TransformError(f"{path}: not a MATLAB v4 file (record type {mopt} at byte {pos})")
        p, t = (mopt // 10) % 10, mopt % 10
        if t != 0 or p not in _MAT4_TYPES or imag not in (0, 1) or not 0 < namlen <= 256 \
                or not 0 <= rows <= 4096 or not 0 <= cols <= 4096:
            raise TransformError(f"{path}: not a numeric MATLAB v4 record at byte {pos} "
                                 f"(type {mopt}, {rows}x{cols}, name length {namlen})")
        dtype = np.dtype(_MAT4_TYPES[p]).newbyteorder(order)
        size = rows * cols * dtype.itemsize * (2 if imag else 1)
        if len(data) - pos - 20 - namlen < size:
            raise TransformError(f"{path}: truncated MATLAB v4 file ({rows}x{cols} values announced at byte {pos})")
        name = data[pos + 20: pos + 20 + namlen].rstrip(b"\0").decode("ascii", "replace")
        values = np.frombuffer(data, dtype=dtype, count=rows * cols, offset=pos + 20 + namlen)
        out[name] = values.astype(np.float64)  # a vector: its order is the same row- or column-wise
        pos += 20 + namlen + size
    return out


class ItkMat(TransformFormat):
    """The binary ``.mat`` (MATLAB v4) antsRegistration and ITK write: the transform's parameters
    under its name (``AffineTransform_float_3_3``...) and its centre under ``fixed``."""

    name = "ITK binary .mat"

    def recognises(self, path, head):
        if len(head) < 21:
            return False
        namlen = min(int.from_bytes(head[16:20], "little"), int.from_bytes(head[16:20], "big"))
        return b"Transform" in head[20:20 + min(namlen, 256)]

    def read(self, path, *, moving, reference):
        try:
            data = path.read_bytes()
        except OSError as e:
            raise TransformError(f"cannot read transform {path}: {e.strerror or e}") from None
        variables = read_mat4(path, data)
        names = [n for n in variables if n != "fixed"]
        if len(names) != 1:
            raise TransformError(f"{path}: an ITK .mat holds one transform and 'fixed'; got {', '.join(variables)}")
        matrix = _itk_affine(path, names[0], variables[names[0]], variables.get("fixed", np.zeros(0)))
        return AffineMap(matrix, f"{path.name} ({self.name}: {names[0]})")


# ---------------------------------------------------------------- FSL FLIRT

def _fsl_scaled(space: Space) -> np.ndarray:
    """FSL's scaled-voxel coordinates of a grid's voxel indices (4x4): indices times the voxel sizes,
    x flipped (``(nx - 1 - i) dx``) when the affine's determinant is positive (FSL's "neurological" storage)."""
    a = np.asarray(space.affine, dtype=np.float64)
    zooms = np.sqrt((a[:3, :3] ** 2).sum(axis=0))
    s = np.diag(list(zooms) + [1.0])
    if np.linalg.det(a[:3, :3]) > 0:
        flip = np.eye(4)
        flip[0, 0], flip[0, 3] = -1.0, (int(space.shape[0]) - 1) * zooms[0]
        s = flip @ s
    return s


class FslMatrix(TransformFormat):
    """FLIRT's matrix (a ``.mat`` text file of 16 numbers): input scaled voxels -> reference scaled voxels.

    Applied as ``flirt -applyxfm -init`` applies it, inverted: an output
    (reference) RAS point ``p`` samples the input at
    ``A_in S_in^-1 M^-1 S_ref A_ref^-1 p`` (``S``: ``_fsl_scaled``)."""

    name = "FSL FLIRT"

    def recognises(self, path, head):
        return path.suffix.lower() == ".mat" and PlainMatrix().recognises(Path("m.txt"), head)

    def read(self, path, *, moving, reference):
        m = PlainMatrix().matrix(path)
        if moving is None or reference is None:
            raise TransformError(f"{path}: an FSL matrix needs --reference, the image FLIRT's -ref was (the "
                                 "matrix is in the scaled voxels of both images)")
        _finite(m, path, "the matrix")
        s_in, s_ref = _fsl_scaled(moving), _fsl_scaled(reference)
        try:
            inverse = np.linalg.inv(m)
        except np.linalg.LinAlgError:
            raise TransformError(f"{path}: the FSL matrix is singular") from None
        matrix = np.asarray(moving.affine) @ np.linalg.inv(s_in) @ inverse @ s_ref @ np.linalg.inv(reference.affine)
        return AffineMap(matrix, f"{path.name} ({self.name}, applied inverted)")


# ---------------------------------------------------------------- FreeSurfer LTA

_LTA_TYPES = {0: "LINEAR_VOX_TO_VOX", 1: "LINEAR_RAS_TO_RAS"}


def _lta_geometry(path, fields: dict, which: str) -> Space | None:
    """An LTA's ``src``/``dst`` volume info as a Space (FreeSurfer: the centre voxel ``n / 2`` sits at ``cras``)."""
    if int(fields.get("valid", [0])[0]) != 1:
        return None
    try:
        shape = tuple(int(v) for v in fields["volume"])
        sizes = np.array(fields["voxelsize"], dtype=np.float64)
        cols = np.array([fields["xras"], fields["yras"], fields["zras"]], dtype=np.float64).T
        cras = np.array(fields["cras"], dtype=np.float64)
        a = cols * sizes
    except (KeyError, ValueError) as e:
        raise TransformError(f"{path}: the {which} volume info is incomplete ({e})") from None
    if len(shape) != 3 or a.shape != (3, 3) or cras.shape != (3,):
        raise TransformError(f"{path}: the {which} volume info is malformed")
    affine = np.eye(4)
    affine[:3, :3] = a
    affine[:3, 3] = cras - a @ (np.array(shape) / 2.0)
    _finite(affine, path, f"the {which} volume info")
    return Space(shape, affine)


def _parse_lta(path, text: str):
    """type, the 4x4 matrix, and the src/dst sections' ``key = values`` of an LTA's text."""
    lines = [ln.split("#", 1)[0].strip() for ln in text.splitlines()]
    header, sections, section, matrix = {}, {"src": {}, "dst": {}}, None, None
    i = 0
    while i < len(lines):
        ln = lines[i]
        words = ln.split()
        if ln in ("src volume info", "dst volume info"):
            section = sections[ln[:3]]
        elif "=" in ln:
            key, _, value = ln.partition("=")
            (section if section is not None else header)[key.strip()] = value.split()
        elif matrix is None and len(words) == 3 and words[1:] == ["4", "4"]:
            rows = " ".join(lines[i + 1:i + 5]).split()
            try:
                matrix = np.array([float(w) for w in rows]).reshape(4, 4)
            except ValueError:
                raise TransformError(f"{path}: the LTA's 4x4 matrix is malformed (a truncated file?)") from None
            i += 4
        i += 1
    if matrix is None or "type" not in header:
        raise TransformError(f"{path}: not a FreeSurfer LTA (no type or no 4x4 matrix)")
    if header.get("nxforms", ["1"])[0] != "1":
        raise TransformError(f"{path}: an LTA with {header['nxforms'][0]} transforms; one is read")
    try:
        kind = int(header["type"][0])
    except ValueError:
        raise TransformError(f"{path}: the LTA's type is not a number: {header['type'][0]!r}") from None
    return kind, matrix, sections


class FreeSurferLta(TransformFormat):
    """A FreeSurfer ``.lta``: its matrix maps ``src`` (moving) to ``dst`` (target); applied inverted,
    as ``mri_vol2vol --mov SRC --targ DST --lta`` does."""

    name = "FreeSurfer LTA"

    def recognises(self, path, head):
        return path.suffix.lower() == ".lta" or (b"nxforms" in head and b"type" in head)

    def read(self, path, *, moving, reference):
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError as e:
            raise TransformError(f"cannot read transform {path}: {e.strerror or e}") from None
        kind, m, sections = _parse_lta(path, text)
        if kind not in _LTA_TYPES:
            raise TransformError(f"{path}: LTA type {kind} is not read ({', '.join(map(str, _LTA_TYPES.values()))})")
        _finite(m, path, "the LTA's matrix")
        if kind == 0:  # voxel to voxel: through the LTA's own geometry
            src = _lta_geometry(path, sections["src"], "src")
            dst = _lta_geometry(path, sections["dst"], "dst")
            if src is None or dst is None:
                raise TransformError(f"{path}: a LINEAR_VOX_TO_VOX LTA without valid src and dst volume info "
                                     "(mri_vol2vol refuses it too)")
            m = np.asarray(dst.affine) @ m @ np.linalg.inv(src.affine)
        try:
            matrix = np.linalg.inv(m)
        except np.linalg.LinAlgError:
            raise TransformError(f"{path}: the LTA's matrix is singular") from None
        return AffineMap(matrix, f"{path.name} ({self.name} {_LTA_TYPES[kind]}, applied inverted)")


# ---------------------------------------------------------------- displacement fields

class _FieldReader:
    """A field's region reader: ``(sx, sy, sz)`` -> ``(nx, ny, nz, 3)`` float64 RAS mm.

    Opens its file on first use (once, whichever thread asks first) and drops
    it when pickled (a task carries the path, never the array), as nibabel's
    ArrayProxy does with its lock."""

    def __init__(self, path: Path, flip: np.ndarray, scale: float = 1.0):
        self.path, self.flip, self.scale = Path(path), flip, float(scale)
        self.__setstate__({})

    def __getstate__(self):
        return {k: v for k, v in self.__dict__.items() if k not in ("_data", "_lock")}

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._data, self._lock = None, threading.Lock()

    def __call__(self, region) -> np.ndarray:
        if self._data is None:
            with self._lock:
                if self._data is None:
                    self._data = self.open()
        sx, sy, sz = region
        d = np.asarray(self.values(self._data, (sx, sy, sz)), dtype=np.float64)
        if not np.all(np.isfinite(d)):
            raise RegistrationError(f"{self.path}: the field holds displacements that are not finite")
        return d * (self.flip * self.scale)


#: a gzip-compressed NIfTI field up to this size is decompressed once into memory: gzip has no random
#: access, and a region read through nibabel's proxy inflates the file from its start each time
GZ_FIELD_IN_MEMORY = 128 << 20


class _NiftiField(_FieldReader):
    def open(self):
        import nibabel as nib

        img = nib.load(self.path)
        compressed = self.path.name.lower().endswith(".gz")
        if compressed and int(np.prod(img.shape)) * img.get_data_dtype().itemsize <= GZ_FIELD_IN_MEMORY:
            return np.asarray(img.dataobj)
        return img.dataobj  # a .nii: each region read at its offsets; a larger .nii.gz: correct, slow

    def values(self, data, region):
        return data[region + (0, slice(None))]


class _OmeField(_FieldReader):
    def open(self):
        from .ome import read_image

        return read_image(self.path).data

    def values(self, view, region):
        return view[region]


_RAS, _FROM_LPS = np.ones(3), np.array([-1.0, -1.0, 1.0])


class NiftiField(TransformFormat):
    """A displacement field as ANTs and ITK write it: a NIfTI vector image, 5-D ``(X, Y, Z, 1, 3)``,
    intent vector, displacements in LPS mm; read region by region through nibabel's array proxy."""

    name = "NIfTI displacement field"

    def recognises(self, path, head):
        return path.name.lower().endswith((".nii", ".nii.gz"))

    def read(self, path, *, moving, reference):
        import nibabel as nib

        try:
            img = nib.load(path)
        except Exception as e:
            raise TransformError(f"{path}: not a readable NIfTI displacement field ({type(e).__name__}: {e})") from None
        shape, intent = img.shape, int(img.header.get("intent_code", 0))
        if len(shape) == 5 and shape[3] == 1 and shape[4] != 3:
            raise TransformError(f"{path}: a displacement field needs 3 components; got {shape[4]}")
        if len(shape) != 5 or shape[3] != 1:
            raise TransformError(f"{path}: a NIfTI image of shape {shape}, not a displacement field "
                                 "(ANTs and ITK write them 5-D, (X, Y, Z, 1, 3))")
        if intent not in (0, 1006, 1007):
            raise TransformError(f"{path}: a 5-D image with intent code {intent}, not a displacement field "
                                 "(intent vector, 1007, or displacement vector, 1006)")
        _check_size(path, img)
        return DisplacementField(shape[:3], img.affine, _NiftiField(path, _FROM_LPS),
                                 f"{path.name} ({self.name}, LPS mm)")


def _check_size(path, img) -> None:
    """A truncated NIfTI field is refused when it is named, not in the middle of a run."""
    if hasattr(img.dataobj, "offset") and not path.name.lower().endswith(".gz"):
        need = img.dataobj.offset + int(np.prod(img.shape)) * img.get_data_dtype().itemsize
        if path.stat().st_size < need:
            raise TransformError(f"{path}: truncated: the header announces {need} bytes, "
                                 f"the file holds {path.stat().st_size}")


#: an OME-Zarr field's unit -> mm (unknown: taken as mm, as NIfTI's)
_TO_MM = {"mm": 1.0, "micron": 1e-3, "meter": 1e3, "unknown": 1.0}


class OmeZarrField(TransformFormat):
    """An OME-Zarr displacement field (docs/registration.md): an OME-Zarr image (level 0 of its first
    multiscale) whose one leading axis is ``c``, 3 components (the x, y, z of its world space), with
    the group attribute ``bigresample: {"displacement_field": {"frame": "RAS" | "LPS"}}``;
    displacements in the spatial axes' unit."""

    name = "OME-Zarr displacement field"

    def recognises(self, path, head):
        return path.is_dir() and ((path / "zarr.json").is_file() or (path / ".zattrs").is_file())

    def read(self, path, *, moving, reference):
        from .ome import OmeError, read_image

        try:
            im = read_image(path)
        except OmeError as e:
            raise TransformError(f"{path}: not an OME-Zarr displacement field ({e})") from None
        marker = ((im.attrs or {}).get("bigresample") or {}).get("displacement_field")
        if not isinstance(marker, dict):
            raise TransformError(f"{path}: an OME-Zarr image without the attribute "
                                 "bigresample.displacement_field: not a displacement field (docs/registration.md)")
        frame = marker.get("frame")
        if frame not in ("RAS", "LPS"):
            raise TransformError(f"{path}: bigresample.displacement_field.frame must be 'RAS' or 'LPS'; got {frame!r}")
        lead = im.data.shape[3:]
        if len(lead) != 1 or lead[0] != 3 or im.extra_axes[0]["name"] != "c":
            raise TransformError(f"{path}: a displacement field needs one leading axis 'c' of 3 components; "
                                 f"got axes {[a['name'] for a in im.extra_axes]} of sizes {list(lead)}")
        scale = _TO_MM[im.units]
        affine = np.array(im.affine, dtype=np.float64)
        affine[:3] *= scale
        flip = _RAS if frame == "RAS" else _FROM_LPS
        return DisplacementField(im.data.shape[:3], affine, _OmeField(path, flip, scale),
                                 f"{path.name} ({self.name}, {frame} {im.units})")


class ItkHdf5(TransformFormat):
    """ITK's HDF5 transform files (``.h5``, antsRegistration's composite): recognised to be refused clearly."""

    name = "ITK HDF5"

    def recognises(self, path, head):
        return head.startswith(b"\x89HDF\r\n")

    def read(self, path, *, moving, reference):
        raise TransformError(f"{path}: ITK HDF5 transform files are not read; have antsRegistration write "
                             "its transforms apart (--write-composite-transform 0: .mat affines, .nii.gz fields)")


#: asked after the formats registered with ``register``, in this order
FORMATS: list[TransformFormat] = [ItkText(), ItkMat(), ItkHdf5(), FslMatrix(), FreeSurferLta(), NiftiField(),
                                  OmeZarrField(), PlainMatrix()]
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
    """One file's map, inverted when asked (a field cannot be: refused naming the file).

    Its inverse is read with the grids in the roles the file was written for:
    applied inverted, the file's reference (FSL's ``-ref``, an LTA's ``dst``) is
    the run's input and its moving image the run's output grid, as
    ``convert_xfm -inverse`` then ``flirt -applyxfm`` would have it."""
    fmt = format_of(spec.path)
    try:
        if spec.inverse:
            return fmt.read(spec.path, moving=reference, reference=moving).inverse()
        return fmt.read(spec.path, moving=moving, reference=reference)
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
