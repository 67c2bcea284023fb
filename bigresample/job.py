"""Planning: a ``Request`` becomes a ``Job``, from headers alone.

``plan_job(request, report)`` opens the input's (and a reference's) header,
resolves the target into a grid, chooses the resampler, the block plan, the
output's header, its sink and the executor, and emits the report's planning
events as it goes.  It reads no voxel (at a URL: the header's first bytes, or
an OME-Zarr's metadata), contacts no cluster, and costs O(1)
time and memory in the number of blocks (blocks are a ``BlockSet``), so the
checks that can refuse a run (``preflight``) and ``--dry-run`` (``dry_run``)
answer at once, whatever the size asked for.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from dataclasses import dataclass
from functools import cached_property
from math import prod
from pathlib import Path

import nibabel as nib
import numpy as np

from ._version import __version__
from . import kernel
from . import labels as label_methods
from . import provenance
from . import resampling
from . import safefs
from . import location
from .antialias import Smoothed
from .antialias import sigmas as antialias_sigmas
from .blocks import BlockSet
from .bounds import uses_cval
from .executors import Executor, choose
from .geometry import ReferenceGrid, make_grid, reference_grid
from .journal import input_identity
from .inputs import open_input
from .errors import InputError
from .nifti import header_bytes, output_header
from .safefs import check_free_space
from .volume import InputVolume, with_spacing
from .plan import Plan, format_bytes, plan_blocks, shard_plan
from .report import DryRun, GridChosen, InputNotes, Opening, Planned, Registered, Report, Targeted
from .request import Request, UsageError
from .sinks import Sink

# The size rules (docs/usage.md, "Size rules"), checked by ``size_rules`` as soon as the grid is known.
# Each guards against a slip in the spacing (a unit, a digit) and yields to ``force``:
#: too large: an output more than MAX_GROWTH times the input's bytes *and* more than MIN_REFUSED_BYTES;
MAX_GROWTH = 16
MIN_REFUSED_BYTES = 2**30
#: too small: an axis shrinking by more than MAX_SHRINK times to fewer than MIN_KEPT_VOXELS voxels.
MAX_SHRINK = 16
MIN_KEPT_VOXELS = 4
#: the interpreter with numpy and nibabel, in a run's estimated peak (``Plan.peak_bytes``)
BASE_BYTES = 100 * 2**20


@dataclass(frozen=True)
class Stage:
    """One resampling of the input into one array of the output: the only one
    for a NIfTI, level ``level`` of an OME-Zarr pyramid."""

    level: int
    grid: object  # Grid or ReferenceGrid
    resampler: resampling.BlockResampler
    smoothing: tuple[float, ...] | None  # --antialias's Gaussian sigmas (input voxels), or None
    plan: Plan
    blocks: BlockSet
    journal: Path
    #: a sharded OME-Zarr's chunk and shard shapes (x, y, z voxels; ``plan.shard_plan``): each block is one
    #: whole shard; None unsharded (each block is one chunk)
    chunk: tuple[int, ...] | None = None
    shard: tuple[int, ...] | None = None

    def source(self, data):
        """What this stage reads: the input's voxels ``data``, smoothed when anti-aliasing."""
        if self.smoothing is not None and any(sg > 0 for sg in self.smoothing):
            return Smoothed(data, self.smoothing)
        return data


@dataclass(frozen=True)
class Job:
    """A planned run: everything decided, nothing read or written yet."""

    request: Request
    volume: InputVolume  # the input's header; its voxels are attached when the run starts
    reference: InputVolume | None
    target_mm: np.ndarray  # the spacing asked for, in mm
    target: np.ndarray  # ... in the header's units, as the grid uses it
    out_dtype: np.dtype
    header: object  # the output's NIfTI header
    stages: tuple[Stage, ...]
    sink: Sink
    executor: Executor
    zarr_store: str  # the intermediate zarr store's address (used by StoreThenNifti)
    provenance: dict | None = None  # the output's provenance document (bigresample.provenance), its date fixed
    #: the transforms applied (``transform_files.describe``: path, format, inverse, sha256), in the order given
    transforms: tuple = ()

    @property
    def grid(self):
        return self.stages[0].grid

    @property
    def plan(self) -> Plan:
        return self.stages[0].plan

    @property
    def blocks(self) -> BlockSet:
        return self.stages[0].blocks

    @property
    def out_shape(self) -> tuple[int, ...]:
        return self.blocks.shape

    @property
    def out_bytes(self) -> int:
        return prod(self.out_shape) * self.out_dtype.itemsize

    @property
    def file_bytes(self) -> int:
        """What the output file holds uncompressed: a NIfTI's header (its
        extensions, the provenance record among them) and voxels."""
        return self.request.output_format.file_bytes(self.out_bytes, self.header)

    @property
    def via_store(self) -> bool:
        return self.sink.in_store

    @property
    def nifti2(self) -> bool:
        return isinstance(self.header, nib.Nifti2Header)

    @cached_property
    def _identity(self) -> dict:
        r, g = self.request, self.grid
        return {
            "input": location.identity(self.volume.path, r.storage_options)
            if location.is_url(self.volume.path) else input_identity(self.volume.path),
            # the header written at the start of a partial NIfTI (a reference's forms and codes, ...), but
            # for its provenance record: a rerun (another date, other execution flags) resumes the same output
            "header": hashlib.sha256(header_bytes(provenance.without(self.header))).hexdigest(),
            "output": location.display(r.output) if location.is_url(r.output)
            else str(r.output.resolve()),
            "spacing": [repr(float(v)) for v in self.target],
            # the reference's grid (a registered grid's own: its transforms are below)
            "reference": None if self.reference is None else [repr(float(v)) for v in
                                                              getattr(g, "base", g).homogeneous[:3].ravel()]
            + list(g.out_shape),
            "order": r.order,
            "mode": r.mode,
            "cval": repr(float(r.cval)),
            "grid": r.grid,
            "dtype": self.out_dtype.str,
            "block": list(self.plan.block),
            # where the finished blocks are: the partial NIfTI, a zarr store, or the OME-Zarr's level 0
            "store": self.sink.kept_in(self.stages[0]),
            "antialias": list(self.stages[0].smoothing) if self.stages[0].smoothing else None,
            # each transform file's path, format, inverse flag and sha256: another file is another output
            **({"transforms": self.transforms} if self.transforms else {}),
            **({"labels": r.labels} if r.labels in label_methods.METHODS else {}),
            **({"resampler": r.resampler} if r.resampler != resampling.DEFAULT else {}),
            "version": __version__,
            # blocks of a 5D+ output are numbered in file order (dimension 4 before 5, BlockSet); a
            # journal written before that numbered them otherwise and is not resumed
            **({"numbering": "file-order"} if len(self.blocks.extra) > 1 else {}),
        }

    def identity(self, stage: Stage) -> dict:
        """What the journal of ``stage`` was made for (reads the input's file metadata)."""
        if stage.level == 0:
            return self._identity
        return {**self._identity, "level": stage.level, "block": list(stage.plan.block)}


def plan_job(request: Request, report: Report = Report()) -> Job:
    """Plan ``request`` (see the module docstring); the caller closes ``job.volume``."""
    # the report's first events are held until the size rules pass: a refusal is one line, not after them
    told, held = report, []
    report = held.append
    opts = request.storage_options
    ref = open_input(request.reference, read_data=False, role="reference", storage_options=opts) \
        if request.reference is not None else None
    vol = given_spacing(request, open_input(request.input, scratch_dir=request.scratch, read_data=False,
                                            storage_options=opts))
    report(Opening(location.display(request.input), vol.format, vol.spacing_from))
    for v in (ref, vol):
        if v is not None and v.notes:
            report(InputNotes(v.path, v.notes))
    if vol.read_whole and vol.data_bytes > request.memory_limit:
        raise InputError(f"{vol.path}: its data can only be read whole ({format_bytes(vol.data_bytes)} as float64), "
                         f"more than the memory budget {format_bytes(request.memory_limit)}")
    grid, target_mm, target = _target(request, vol, ref, report)
    out_dtype = np.dtype(vol.stored_dtype if request.dtype is None else request.dtype).newbyteorder("=")
    if uses_cval(request.mode) and not np.isfinite(request.cval) and out_dtype.kind in "iub":
        raise UsageError(f"--cval {request.cval:g} needs a float output (e.g. --dtype float32); the output type is "
                         f"{out_dtype.name}")
    if request.labels in label_methods.METHODS:  # before anything is planned: a label map it cannot resample
        label_methods.check(request.labels, vol.dtype, vol.slope, vol.inter, request.mode, request.cval,
                            _label_grid(grid))
    extra = tuple(vol.shape[3:])
    if not request.force:  # before the blocks are planned: a slip in the spacing gets this line, not another
        size_rules(vol, request, grid, out_dtype)
    report = told
    for event in held:
        report(event)
    journal = journal_path(request)
    executor = choose(request)
    fmt = request.output_format
    first = _stage(request, vol, 0, grid, out_dtype, extra, journal, gzip=fmt.compressed,
                   stretches=fmt.stretches_only(request, executor))
    report(Planned(smoothing=first.smoothing, block=first.plan.block, n_blocks=len(first.blocks),
                   workers=request.workers, block_bytes=first.plan.block_bytes, memory_limit=request.memory_limit,
                   kernel=kernel.describe(), chunk=first.chunk))
    # level k of a pyramid: the input resampled to 2^k times the spacing, on the same grid convention
    stages = [first] + [
        _stage(request, vol, k, registered(make_grid(vol.shape[:3], vol.spacing, target * 2.0**k, request.grid),
                                           vol, request), out_dtype, extra, journal.with_name(f"{journal.name}-level{k}"))
        for k in range(1, request.levels)
    ]
    header = output_header(vol, grid, out_dtype, reference=ref)
    # how the output was made, dated once for the job: every route writes the same header bytes
    previous = provenance.of_volume(vol)
    transforms = transform_descriptions(request)
    record = provenance.document((previous["steps"] if previous else [])
                                 + [provenance.step(request, vol, ref, stages, out_dtype, transforms=transforms)])
    fmt.attach_provenance(header, record)
    zarr_store = location.address(request.store_root, f".{location.name(request.output)}.bigresample.zarr")
    sink = fmt.make_sink(request, vol, stages, header, out_dtype, zarr_store, executor, record)
    vol.in_memory = inflates_in_memory(vol, request, stages, out_dtype, executor)
    return Job(request=request, volume=vol, reference=ref, target_mm=target_mm, target=target, out_dtype=out_dtype,
               header=header, stages=tuple(stages), sink=sink, executor=executor, zarr_store=zarr_store,
               provenance=record, transforms=transforms)


def transform_descriptions(request: Request) -> tuple:
    """What the provenance and the journal record of each ``--transform`` (``transform_files.describe``)."""
    if not request.transforms:
        return ()
    from . import transform_files

    # a dry run reads headers only: no digest of a (possibly large) field file
    return tuple(transform_files.describe(spec, with_digest=not request.dry_run) for spec in request.transforms)


def inflates_in_memory(vol: InputVolume, request: Request, stages, out_dtype, executor: Executor) -> bool:
    """Whether a gzip-compressed input is inflated into memory when the run starts, not into a
    scratch file the disk must absorb: when its inflated file and the largest stage's estimated peak
    (what its blocks need, ``Plan.peak_bytes``) fit the memory budget together, and the blocks are
    computed by this process's threads (not a remote executor's workers)."""
    if not vol.inflatable or executor.remote:
        return False
    gz = request.output_format.compressed
    peak = max(s.plan.peak_bytes(s.blocks.shape, out_dtype.itemsize, gz, base=BASE_BYTES) for s in stages)
    return peak + vol.decompressed_bytes <= request.memory_limit


def given_spacing(request: Request, vol: InputVolume) -> InputVolume:
    """The input with ``--input-spacing`` applied, if given; refused in one line when neither the file
    nor the option gives a spacing."""
    if request.input_spacing is not None:
        units = "micron" if request.units == "um" else "mm"
        vol = with_spacing(vol, request.input_spacing, units, "--input-spacing")
        return dataclasses.replace(vol, notes=tuple(n for n in vol.notes if not n.startswith("spacing: none")))
    if vol.spacing_from is None:
        vol.close()
        raise InputError(f"{location.display(vol.path)}: the {vol.format} gives no voxel spacing: give it "
                         f"with --input-spacing X Y Z (in --units, default mm)")
    return vol


def journal_path(request: Request) -> Path:
    """The first stage's journal: beside a local output; for an output at a
    URL, in the local scratch folder, named after the URL (so a rerun finds it)."""
    out = request.output
    if not location.is_url(out):
        return out.parent / f".{out.name}.bigresample-journal"
    tag = hashlib.sha256(location.display(out).encode()).hexdigest()[:12]
    return request.scratch / f".{location.name(out)}-{tag}.bigresample-journal"


def _target(request: Request, vol: InputVolume, ref, report: Report):
    """The grid of level 0, the target spacing in mm and in the header's units;
    emits the ``Targeted`` and ``GridChosen`` events."""
    to_mm = vol.unit_to_mm
    cur_mm = vol.spacing * to_mm
    g = None
    if ref is not None:
        a_ref = ref.affine.copy()
        a_ref[:3, :] *= ref.unit_to_mm / to_mm  # into the input's units
        g = reference_grid(vol.shape[:3], vol.affine, ref.shape[:3], a_ref)
        target_mm = g.output_spacing() * to_mm
    elif request.shape is not None:
        # the spacing that gives this shape with the field of view kept (n*s = m*t)
        target_mm = cur_mm * np.array(vol.shape[:3], dtype=np.float64) / np.array(request.shape, dtype=np.float64)
    else:
        scale = 1e-3 if request.units == "um" else 1.0
        target_mm = np.array([c if v is None else v * scale for v, c in zip(request.spacing, cur_mm)])
    report(Targeted(vol.shape, cur_mm, vol.units, request.spacing_label, target_mm))
    r = request
    if g is not None:
        report(GridChosen(g.grid, r.order, r.mode, r.cval, reference=location.display(ref.path),
                          reference_shape=tuple(g.out_shape), orientation=g.orientation().describe(),
                          labels=r.labels, asked_order=r.asked_order))
        return registered(g, vol, r, report), target_mm, g.output_spacing()
    target = same_as_stored(target_mm / to_mm, vol.spacing)
    g = make_grid(vol.shape[:3], vol.spacing, target, r.grid)
    report(GridChosen(g.grid, r.order, r.mode, r.cval, zoom=vol.spacing / target, labels=r.labels,
                      asked_order=r.asked_order))
    return registered(g, vol, r, report), target_mm, target


def registered(g, vol: InputVolume, request: Request, report: Report | None = None):
    """The grid ``g`` sampled through ``request.transforms`` (``g`` itself without them): the chain read
    from its files (``transform_files``; an FSL matrix needs both grids, in mm) and, for affines only,
    composed into one ``registration.RegisteredGrid``; emits ``Registered``."""
    if not request.transforms:
        return g
    from . import registration, transform_files

    to_mm = np.diag([vol.unit_to_mm] * 3 + [1.0])
    chain = transform_files.read_chain(
        request.transforms, moving=transform_files.Space(tuple(vol.shape[:3]), to_mm @ vol.affine),
        # the reference image's grid, for the files written against it (FSL's): a --spacing or --shape
        # target is not the grid such a file was computed on
        reference=transform_files.Space(tuple(g.out_shape), to_mm @ g.output_affine(vol.affine))
        if request.reference is not None else None)
    if report is not None:
        report(Registered(tuple(m.source for m in chain.maps[::-1]), chain.affine is not None))  # as listed
    if chain.affine is None:  # a field: each output voxel mapped on its own (warp), in mm
        from .warp import RegisteredWarpGrid

        grid = RegisteredWarpGrid(tuple(vol.shape[:3]), tuple(g.out_shape), to_mm @ vol.affine,
                                  to_mm @ g.output_affine(vol.affine), chain, base=g)
        grid.check_covered()
        return grid
    return registration.registered_grid(g, vol.shape[:3], vol.affine, chain.affine, vol.unit_to_mm)


def same_as_stored(target, spacing):
    """``target`` with each axis whose value equals the input's spacing in
    float32 (the precision a NIfTI header stores it in) set to that spacing.

    ``--spacing 0.1 0.1 0.15`` on a 0.1 mm volume then leaves x and y alone,
    as meant: the header holds 0.1 as 0.10000000149, and the ratio 1 + 1.5e-8
    would otherwise shift every sample by a few millionths of a voxel and
    interpolate axes nobody asked to change.  The output's header could not
    tell the two grids apart anyway (it stores the spacing in float32 too).
    """
    target = np.asarray(target, dtype=np.float64)
    spacing = np.asarray(spacing, dtype=np.float64)
    return np.where(target.astype(np.float32) == spacing.astype(np.float32), spacing, target)


def _stage(request: Request, vol: InputVolume, level: int, g, out_dtype, extra, journal: Path,
           gzip: bool = False, stretches: bool = False) -> Stage:
    """The resampler, the Gaussian sigmas (None without ``antialias``) and the block plan for the grid ``g``."""
    r = request
    interpolate = resampling.RESAMPLERS[r.resampler]
    if r.labels in label_methods.METHODS:
        resampler = label_methods.make(r.labels, _label_grid(g), r.mode, r.cval, interpolate)
    else:
        resampler = interpolate(g, r.order, r.mode, r.cval)
    smoothing = antialias_sigmas(g.ratios) if r.antialias else None
    # a smoothed window is float64 and briefly held twice while filtered:
    # counted as 16 bytes per input voxel (512x512x300 order 3 to 0.4x0.4x0.3
    # mm under --memory-limit 400MB: 263 MiB peak; at 8 bytes, 376 MiB)
    smoothed = smoothing is not None and any(sg > 0 for sg in smoothing)
    in_itemsize = 16 if smoothed else vol.dtype.itemsize
    plan = plan_blocks(resampler, in_itemsize, out_dtype.itemsize, r.memory_limit, r.workers, r.chunks, gzip=gzip,
                       stretches=stretches)
    chunk = shard = None
    if r.shards is not None:  # the planned block is the chunk; the block run is a whole shard of them
        chunk = plan.block
        plan, shard = shard_plan(resampler, plan, r.shards, in_itemsize, out_dtype.itemsize)
    return Stage(level, g, resampler, smoothing, plan, BlockSet(tuple(g.out_shape) + extra, plan.block), journal,
                 chunk=chunk, shard=shard)


def _label_grid(g):
    """The grid a label method runs on: an axis-aligned reference as the per-axis grid it is."""
    return g.separable() or g


# --------------------------------------------------------------------------
# before anything is written
# --------------------------------------------------------------------------


def preflight(job: Job) -> None:
    """Refuse, before writing anything, an output that cannot be meant or cannot fit
    (with the uncompressed zarr store, when the run goes through one), or whose
    partial output, journal or store name is taken by something this user's
    bigresample did not make (a link planted in a shared folder: ``safefs``)."""
    r, vol = job.request, job.volume
    remote_out = location.is_url(r.output)
    if not remote_out:
        safefs.check_leftover(job.sink.partial, want_dir=r.output_format.folder)
    for stage in job.stages:
        safefs.check_leftover(stage.journal)
    if job.via_store and not location.is_url(job.zarr_store):
        safefs.check_leftover(job.zarr_store, want_dir=True)
    # an object store answers (bucket, endpoint, credentials) before anything is computed
    if remote_out:
        location.check_reachable(r.output, r.storage_options)
    if job.via_store and location.is_url(job.zarr_store):
        location.check_reachable(job.zarr_store, r.storage_options)
    out_bytes = job.out_bytes
    if vol.compressed and not vol.in_memory:  # as attach_data will check it
        check_free_space(r.scratch, vol.decompressed_bytes, "decompressing the input")
    if remote_out:
        return  # an object store has no free space to ask
    need = r.output_format.disk_bytes(job.file_bytes)  # compressed: an estimate
    partial = job.sink.partial
    if partial.is_file():
        need -= partial.stat().st_size
    what = f"the output ({format_bytes(out_bytes)} uncompressed)"
    if job.via_store and not location.is_url(r.store_root):
        if _same_filesystem(r.store_root, r.output.parent):
            need, what = need + out_bytes, what + f" and the zarr store ({format_bytes(out_bytes)})"
        else:
            check_free_space(r.store_root, out_bytes, f"the zarr store ({format_bytes(out_bytes)})")
    check_free_space(r.output.parent, need, what)


def size_rules(vol: InputVolume, r: Request, grid, out_dtype) -> None:
    """Refuse an output too large or too small to be meant (the rules above), from
    the grid alone; ``plan_job`` calls it unless ``force``."""
    out_shape = tuple(grid.out_shape) + tuple(vol.shape[3:])
    out_bytes = prod(out_shape) * np.dtype(out_dtype).itemsize
    in_bytes = prod(vol.shape) * vol.dtype.itemsize
    if out_bytes > MAX_GROWTH * in_bytes and out_bytes > MIN_REFUSED_BYTES:
        raise UsageError(
            f"output would be {format_bytes(out_bytes)}, {out_bytes / max(in_bytes, 1):.0f}x the input "
            f"(shape {out_shape}): check the spacing{_millimetres_hint(vol, r)}, or add --force"
        )
    if isinstance(grid, ReferenceGrid):
        return  # a reference's axes need not be the input's: its shape is what was asked
    for a, n, m in zip("xyz", vol.shape[:3], out_shape[:3]):
        if n > MAX_SHRINK * m and m < MIN_KEPT_VOXELS:
            raise UsageError(
                f"{a}-axis would shrink from {n} to {m} voxel{'s' if m != 1 else ''} ({n / m:.0f}x smaller, "
                f"shape {out_shape}): check the spacing{_microns_hint(vol, r)}, or add --force"
            )


def _microns_hint(vol: InputVolume, r: Request) -> str:
    """`` (... looks like microns: add --units um)`` when the spacing asked for, read as microns, is a
    plausible change of the input's spacing (at most ``MAX_SHRINK`` times either way on every axis given)."""
    if r.spacing is None or r.units != "mm":
        return ""
    cur_mm = vol.spacing * vol.unit_to_mm
    ratios = [v / 1000 / c for v, c in zip(r.spacing, cur_mm) if v is not None]
    if ratios and all(1 / MAX_SHRINK <= q <= MAX_SHRINK for q in ratios):
        given = " ".join(f"{v:g}" for v in r.spacing if v is not None)
        return f" ({given} looks like microns: add --units um)"
    return ""


def _millimetres_hint(vol: InputVolume, r: Request) -> str:
    """`` (... looks like millimetres: drop --units um)``: the opposite slip, millimetres typed with
    ``--units um``, when the numbers read as millimetres are a plausible change (as ``_microns_hint``)."""
    if r.spacing is None or r.units != "um":
        return ""
    cur_mm = vol.spacing * vol.unit_to_mm
    ratios = [v / c for v, c in zip(r.spacing, cur_mm) if v is not None]
    if ratios and all(1 / MAX_SHRINK <= q <= MAX_SHRINK for q in ratios):
        given = " ".join(f"{v:g}" for v in r.spacing if v is not None)
        return f" ({given} looks like millimetres: drop --units um)"
    return ""


def _same_filesystem(a, b) -> bool:
    try:
        return os.stat(a).st_dev == os.stat(b).st_dev
    except OSError:
        return True


def dry_run(job: Job) -> DryRun:
    """What a run would need: the ``DryRun`` event."""
    r, vol, plan = job.request, job.volume, job.plan
    out_bytes, file_bytes = job.out_bytes, job.file_bytes
    gz = r.output_format.compressed
    disk = [f"output {format_bytes(r.output_format.disk_bytes(file_bytes))}"
            + (" (compressed: an estimate)" if gz else "") + " in "
            + (location.display(r.output) if location.is_url(r.output) else str(r.output.parent))]
    if vol.copied:
        disk.append(f"input copied{' and decompressed' if vol.compressed else ''} {format_bytes(vol.data_bytes)} "
                    f"in {r.scratch} (removed afterwards)")
    elif vol.compressed and not vol.in_memory:
        disk.append(f"decompressed input {format_bytes(vol.data_bytes)} in {r.scratch} (removed afterwards)")
    if job.via_store:
        disk.append(f"zarr store {format_bytes(out_bytes)} in {location.display(r.store_root)}")
    return DryRun(out_shape=job.out_shape, dtype=job.out_dtype.name, out_bytes=out_bytes, block=plan.block,
                  n_blocks=len(job.blocks), workers=plan.workers, block_bytes=plan.block_bytes,
                  peak_bytes=_peak_bytes(job, plan, gz), memory_limit=r.memory_limit,
                  disk=tuple(disk), inflated_bytes=vol.decompressed_bytes if vol.in_memory else 0)


def _peak_bytes(job: Job, plan, gz: bool) -> int:
    """The run's estimated peak: the plan's, plus the interpreter and libraries, and an input
    inflated into memory."""
    inflated = job.volume.decompressed_bytes if job.volume.in_memory else 0
    return plan.peak_bytes(job.out_shape, job.out_dtype.itemsize, gz, base=BASE_BYTES) + inflated
