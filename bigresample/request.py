"""What was asked: ``Request``, every argument of a file-level resampling, checked once.

``Request.make(...)`` takes ``resample``'s keyword arguments as typed and
returns a frozen, validated request, or raises ``UsageError`` (or the
``PlanError``/``ClusterError``/``InputError`` of the value's own domain)
naming the value.  Every rule that involves more than one option is here and
nowhere else.  Nothing is opened and nothing is connected: the checks look at
the arguments and at the filesystem's folders only.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import kernel
from . import resampling
from . import location
from .bounds import ITK, parse_mode
from .cluster import ClusterError
from .executors import EXECUTORS
from .transform_files import TransformError, parse_spec
from .errors import UsageError
from .geometry import parse_grid
from .labels import LABEL_ORDERS, LabelMapError, parse_labels
from .outputs import OutputFormat, output_format, suffix_of
from .plan import default_memory_limit, parse_memory
from .qc import require_matplotlib
from .splines import parse_order

UNITS = ("mm", "um")


@dataclass(frozen=True)
class Request:
    """A checked request.  ``spacing`` (x, y, z; None keeps an axis), ``shape``
    and ``reference`` are the three ways to name the target; exactly one is set."""

    input: Path | str  # a URL stays a string (location.is_url)
    output: Path | str
    kind: str  # the output's format: ".nii", ".nii.gz" or ".zarr"
    spacing: tuple[float | None, ...] | None
    shape: tuple[int, int, int] | None
    reference: Path | str | None
    units: str
    order: int  # the order used: the label method's (LABEL_ORDERS) for a label map
    asked_order: int | None  # the order asked for, None if not (differs from ``order`` with ``labels``)
    grid: str
    mode: str  # scipy's mode or 'itk' (bounds); not given: 'itk' with a reference, else 'nearest'
    cval: float
    dtype: np.dtype | None
    chunks: tuple[int, ...] | None
    memory_limit: int
    workers: int
    store_root: str  # where an intermediate zarr store goes: a folder or a URL
    scratch: Path  # where other scratch files go (a decompressed or copied input; a URL output's journal)
    keep_zarr: bool
    compare: bool
    spacing_label: str | None
    force: bool
    dry_run: bool
    labels: str | None  # a label map's method (labels.LABEL_METHODS), None for an intensity image
    antialias: bool
    levels: int
    qc: object  # the picture's path, as given
    scheduler: str | None
    local_cluster: int | None
    client: object
    #: fsspec options for every URL of the run (--storage-option); never printed
    storage_options: dict = field(default_factory=dict, repr=False)
    #: a registered executor's name (``executors.EXECUTORS``), or None: threads or the cluster named
    executor: str | None = None
    #: the registered resampler's name (``resampling.RESAMPLERS``)
    resampler: str = resampling.DEFAULT
    #: how the run was asked, as the output's provenance records it (``provenance.command_line``/``api_call``)
    invocation: dict | None = None
    #: the input's voxel spacing (x, y, z, in ``units``) when its file gives none or a wrong one
    input_spacing: tuple[float, float, float] | None = None
    #: an OME-Zarr output's shard shape in chunks (x, y, z), "auto" (``sinks.default_shards``) or None (unsharded)
    shards: tuple[int, int, int] | str | None = None
    #: registrations applied to each output point (``transform_files.TransformSpec``), the first listed applied last
    transforms: tuple = ()

    @classmethod
    def make(cls, input, output, *, spacing=None, shape=None, reference=None, units="mm", order=None,
             grid="center", mode=None, cval=0.0, dtype=None, chunks=None, memory_limit=None,
             workers=None, tmp_dir=None, keep_zarr=False, compare=False, spacing_label=None, force=False,
             dry_run=False, labels=False, antialias=False, levels=1, qc=None, scheduler=None,
             local_cluster=None, client=None, storage_options=None, resampler=None, executor=None, invocation=None,
             input_spacing=None, shards=None, transforms=None) -> Request:
        """Check the arguments of ``bigresample.resample`` and return them as a request."""
        kernel.check()  # BIGRESAMPLE_KERNEL: a value it does not know, or 'compiled' without the extension
        n_targets = sum(v is not None for v in (spacing, shape, reference))
        if n_targets != 1:
            raise UsageError("give the target as a spacing, a shape or a reference image, not several" if n_targets
                             else "no spacing given: give spacing=(x, y, z), shape=(x, y, z) or reference=IMAGE")
        spacing = parse_spacing(spacing) if spacing is not None else None
        input_spacing = parse_input_spacing(input_spacing)
        shape = parse_shape(shape) if shape is not None else None
        if units not in UNITS:
            raise UsageError(f"units must be 'mm' or 'um'; got {units!r}")
        asked_order = None if order is None else parse_order(order)  # None: not given (1, or the labels')
        try:
            labels = parse_labels(labels)
        except LabelMapError as exc:
            raise UsageError(str(exc)) from None
        if labels and antialias:
            raise UsageError("--labels cannot be combined with --antialias: smoothing a label map blends "
                             "neighbouring labels into values that are not labels")
        order = LABEL_ORDERS[labels] if labels else 1 if asked_order is None else asked_order
        transforms = _transforms(transforms)
        if transforms and antialias:
            raise UsageError("--antialias cannot be combined with --transform: the smoothing of a registered "
                             "resampling is not defined per input axis")
        if mode is None:  # ITK's rule where the output's field of view is another image's (bounds), or registered
            mode = ITK if reference is not None or transforms else "nearest"
        mode, grid = parse_mode(mode), parse_grid(grid)
        options = parse_storage_options(storage_options)
        in_path, out_path = _location(input), _location(output)
        ref_path = None if reference is None else _location(reference)
        _check_urls(in_path, out_path, ref_path, tmp_dir, options)
        kind = suffix_of(out_path)[0]
        levels = _check_levels(levels, kind, out_path, reference)
        shards = parse_shards(shards, kind, out_path)
        if reference is not None and grid != "center":
            raise UsageError(f"--grid {grid} has no meaning with --reference (the reference's grid is used)")
        qc = _check_qc(qc)
        _check_paths(in_path, out_path, ref_path)
        limit = parse_memory(memory_limit) if memory_limit is not None else default_memory_limit()
        workers = int(workers) if workers is not None else (os.cpu_count() or 1)
        if workers < 1:
            raise UsageError(f"workers must be >= 1; got {workers}")
        # scratch files (a copied or decompressed input, a URL output's journal) stay local:
        # --tmp-dir when it is a folder, else the output's folder, else the current one
        if tmp_dir is not None and not location.is_url(str(tmp_dir)):
            scratch = Path(tmp_dir)
        else:
            scratch = Path.cwd() if location.is_url(out_path) else out_path.parent
        store_root = str(tmp_dir) if tmp_dir is not None else str(scratch)
        why = location.problem(store_root, options, write=True)
        if why:
            raise UsageError(f"--tmp-dir {'URL' if location.is_url(store_root) else 'folder'} "
                             f"cannot be used: {location.display(store_root)}: {why}")
        if scheduler is not None and local_cluster is not None:
            raise ClusterError("give --scheduler or --local-cluster, not both")
        if local_cluster is not None and int(local_cluster) < 1:
            raise ClusterError(f"--local-cluster needs at least 1 worker; got {local_cluster}")
        return cls(
            input=in_path, output=out_path, kind=kind, spacing=spacing, shape=shape,
            reference=ref_path, units=units, order=order, asked_order=asked_order,
            grid=grid,
            mode=mode, cval=float(cval), dtype=None if dtype is None else np.dtype(dtype).newbyteorder("="),
            chunks=None if chunks is None else tuple(chunks), memory_limit=limit, workers=workers,
            store_root=store_root, scratch=scratch,
            keep_zarr=bool(keep_zarr), compare=bool(compare), spacing_label=spacing_label, force=bool(force),
            dry_run=bool(dry_run), labels=labels, antialias=bool(antialias), levels=levels, qc=qc,
            scheduler=scheduler, local_cluster=None if local_cluster is None else int(local_cluster),
            client=client, storage_options=options, resampler=_resampler(resampler),
            executor=_executor(executor, scheduler, local_cluster, client), invocation=invocation,
            input_spacing=input_spacing, shards=shards, transforms=transforms,
        )

    @property
    def output_format(self) -> OutputFormat:
        """The output's format (``outputs``), from its suffix ``kind``."""
        return output_format(self.kind)

    @property
    def on_cluster(self) -> bool:
        """A cluster was named (a scheduler, local workers or a client)."""
        return self.scheduler is not None or self.local_cluster is not None or self.client is not None


def _transforms(values) -> tuple:
    """``--transform`` arguments as ``TransformSpec``s, each a local file that exists."""
    if values is None:
        return ()
    if isinstance(values, (str, Path)):
        values = [values]
    try:
        specs = tuple(parse_spec(v) for v in values)
    except TransformError as exc:
        raise UsageError(str(exc)) from None
    for spec in specs:
        if location.is_url(str(spec.path)):
            raise UsageError(f"--transform takes local files; got the URL {location.display(str(spec.path))}")
        if not spec.path.exists():
            raise UsageError(f"transform file not found: {spec.path}")
    return specs


def _resampler(name) -> str:
    try:
        return resampling.parse_resampler(name)
    except resampling.ResamplerError as exc:
        raise UsageError(str(exc)) from None


def _executor(name, scheduler, local_cluster, client) -> str | None:
    if name is None:
        return None
    if name not in EXECUTORS:
        raise UsageError(f"executor must be one of {', '.join(sorted(EXECUTORS)) or '(none registered)'}; "
                         f"got {name!r}")
    if scheduler is not None or local_cluster is not None or client is not None:
        raise UsageError(f"executor {name!r} cannot be combined with --scheduler, --local-cluster or a client")
    return name


def parse_spacing(spacing) -> tuple[float | None, ...]:
    """Three spacings (x, y, z), each a number > 0 or None (keep that axis')."""
    values = list(spacing)
    if len(values) != 3:
        raise UsageError(f"spacing needs 3 values (x y z); got {len(values)}: {' '.join(map(str, values))}")
    out = []
    for axis, v in zip("xyz", values):
        if v is None:
            out.append(None)
            continue
        try:
            f = float(v)
        except (TypeError, ValueError):
            raise UsageError(f"{axis}-spacing must be a number; got {v!r}") from None
        if not np.isfinite(f) or f <= 0:
            raise UsageError(f"{axis}-spacing must be finite and > 0; got {v!r}")
        out.append(f)
    return tuple(out)


def parse_input_spacing(spacing) -> tuple[float, float, float] | None:
    """``--input-spacing X Y Z``: three numbers > 0 (every axis: it replaces the file's), or None."""
    if spacing is None:
        return None
    values = list(spacing)
    if len(values) != 3 or any(v is None for v in values):
        raise UsageError(f"--input-spacing needs 3 values (x y z); got {' '.join(map(str, values))}")
    try:
        return parse_spacing(values)
    except UsageError as exc:
        raise UsageError(f"--input-spacing: {exc}") from None


def parse_shards(shards, kind: str, out_path) -> tuple[int, int, int] | str | None:
    """``--shards``: None (unsharded), "auto" or three whole numbers >= 1 (chunks per shard, x y z); an
    OME-Zarr output only."""
    if shards is None:
        return None
    if not output_format(kind).pyramids:
        raise UsageError(f"--shards needs an OME-Zarr output (.zarr); got {location.name(out_path)!r}")
    if isinstance(shards, str):
        if shards != "auto":
            raise UsageError(f"--shards must be 'auto' or three whole numbers (x y z, in chunks); got {shards!r}")
        return "auto"
    values = list(shards)
    if len(values) == 1 and values[0] == "auto":
        return "auto"
    try:
        return parse_shape(values)
    except UsageError as exc:
        raise UsageError(str(exc).replace("--shape", "--shards")) from None


def parse_shape(shape) -> tuple[int, int, int]:
    """Three positive whole numbers of output voxels, or UsageError naming the value."""
    values = list(shape)
    if len(values) != 3:
        raise UsageError(f"--shape needs 3 values (x y z); got {len(values)}: {' '.join(map(str, values))}")
    out = []
    for a, v in zip("xyz", values):
        try:
            f = float(v)
        except (TypeError, ValueError):
            raise UsageError(f"--shape {a} must be a whole number; got {v!r}") from None
        if not (np.isfinite(f) and f == int(f) and f >= 1):
            raise UsageError(f"--shape {a} must be a whole number >= 1; got {v!r}")
        out.append(int(f))
    return tuple(out)


def _check_levels(levels, kind: str, out_path: Path, reference) -> int:
    if not (isinstance(levels, (int, np.integer)) and levels >= 1):
        raise UsageError(f"--levels must be a whole number >= 1; got {levels!r}")
    if levels > 1 and not output_format(kind).pyramids:
        raise UsageError(f"--levels needs an OME-Zarr output (.zarr); got {location.name(out_path)!r}")
    if reference is not None and levels > 1:
        raise UsageError("--levels needs a spacing or --shape: a reference image gives one grid")
    return int(levels)


def _check_qc(qc) -> Path | None:
    if qc is None:
        return None
    try:
        require_matplotlib()
    except ImportError as e:
        raise UsageError(str(e)) from None
    if not Path(qc).parent.is_dir():
        raise UsageError(f"--qc folder does not exist: {Path(qc).parent}")
    return qc


def parse_storage_options(options) -> dict:
    """``--storage-option KEY=VALUE`` items (or a dict, from the API) as fsspec's keyword arguments."""
    if options is None:
        return {}
    if isinstance(options, dict):
        return dict(options)
    out = {}
    for item in options:
        try:
            key, value = location.parse_option(item)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        out[key] = value
    return out


def _location(value) -> Path | str:
    """A path as a Path; a URL kept as its string (a Path would fold its ``//``)."""
    return str(value).rstrip("/") if location.is_url(str(value)) else Path(value)


def _check_urls(in_path, out_path, reference, tmp_dir, options: dict) -> None:
    """The URLs among the locations: a protocol fsspec knows, its library
    installed, an output that can be written there.  Connects to nothing."""
    for role, value, write in (("input", in_path, False), ("reference", reference, False),
                               ("output", out_path, True)):
        if not location.is_url(value):
            continue
        if role == "output" and not output_format(suffix_of(value)[0]).urls:
            raise UsageError(f"an output URL must be an OME-Zarr (.zarr): NIfTI files are written to a local "
                             f"folder; got {location.display(value)}")
        why = location.problem(value, options, write=write)
        if why:
            raise UsageError(f"{role} URL cannot be used: {location.display(value)}: {why}")
    if options and not any(location.is_url(str(v)) for v in (in_path, out_path, reference, tmp_dir)
                           if v is not None):
        raise UsageError("--storage-option is for URLs (s3://..., gs://...), and no input, output, reference or "
                         "--tmp-dir is one")


def _check_paths(in_path, out_path, reference) -> None:
    if location.is_url(in_path) or location.is_url(out_path) or location.is_url(reference):
        same = [r for r, v in (("input", in_path), ("reference", reference))
                if v is not None and str(v).rstrip("/") == str(out_path).rstrip("/")]
        if same:
            raise UsageError(f"output would overwrite the {same[0]}: {location.display(out_path)}")
        if location.is_url(out_path):
            return
        in_path = Path("/nonexistent-url") if location.is_url(in_path) else in_path
        reference = None if location.is_url(reference) else reference
    if in_path.resolve() == out_path.resolve() or _same_file(in_path, out_path):
        raise UsageError(f"output would overwrite the input: {out_path}")
    if reference is not None and (reference.resolve() == out_path.resolve() or _same_file(reference, out_path)):
        raise UsageError(f"output would overwrite the reference: {out_path}")
    if not out_path.parent.is_dir():
        what = "is not a folder" if out_path.parent.exists() else "does not exist"
        raise UsageError(f"output folder {what}: {out_path.parent}")
    if not os.access(out_path.parent, os.W_OK | os.X_OK):
        raise UsageError(f"output folder is not writable: {out_path.parent}")


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False
