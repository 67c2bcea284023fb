"""File-level resampling, the public API: a request, planned into a job, run.

    resample(**arguments)
      -> Request.make        what was asked, every rule checked once (request.py)
      -> plan_job            headers only, O(1) in the blocks (job.py)
      -> dry_run / preflight describe, then refuse or go on, before anything is read
      -> run_job             voxels attached; each stage's blocks through the
                             executor (executors.py) into the sink (sinks.py),
                             the journal recording them (runner.py); the sink
                             checks the output and moves it into place
      -> ResampleResult      and the ``Finished`` event for the report

By default worker threads write each block straight into the output: at its
file offsets for .nii, as a gzip member appended in file order for .nii.gz
(benchmarks/bench_speed.py measured going through a zarr store first at
several times the cost of the whole resampling).  Cluster runs and
``keep_zarr`` go through a zarr v3 store; an OME-Zarr output is its own store.
The volume is never held whole, and nothing but a complete, checked output is
ever found at the output path.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

from . import provenance
from . import location
from .job import Job, dry_run, plan_job, preflight
from .volume import InputVolume
from .qc import write_qc
from .report import (AXES, INTERPOLATION_NAMES, Finished, OnCluster, Pyramid, Report, Resumed, Started, TextReport,
                     Verdict)
from .request import Request, UsageError
from .runner import resume, run_stage
from .stats import compare_stats

__all__ = ["LabelMapWarning", "ResampleResult", "UsageError", "looks_like_labels", "resample",
           "resample_nifti_spacing"]


@dataclass
class ResampleResult:
    """What a file-level resampling did."""

    input: str
    output: str
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    in_spacing_mm: tuple[float, ...]
    requested_spacing_mm: tuple[float, ...]
    out_spacing_mm: tuple[float, ...]  # true spacing of the samples
    verified_spacing_mm: tuple[float, ...]  # read back from the written file
    affine: np.ndarray
    grid: str
    order: int
    mode: str
    dtype: str
    block: tuple[int, ...]
    n_blocks: int
    workers: int
    memory_limit: int
    nifti2: bool
    timings: dict = field(default_factory=dict)
    stats: dict | None = None


def resample(
    input, output, *,
    spacing: Sequence[float | None] | None = None, shape: Sequence[int] | None = None, reference=None,
    units: str = "mm", order: int | None = None, grid: str = "center", mode: str | None = None,
    cval: float = 0.0, dtype=None,
    chunks: Sequence[int] | None = None, memory_limit=None, workers: int | None = None, tmp_dir=None,
    keep_zarr: bool = False, compare: bool = False, progress: bool = False,
    log: Callable[[str], None] | None = None, spacing_label: str | None = None, force: bool = False,
    dry_run: bool = False, labels: bool | str = False, antialias: bool = False, levels: int = 1, qc=None,
    scheduler: str | None = None, local_cluster: int | None = None, client=None, report: Report | None = None,
    storage_options: dict | None = None, resampler: str | None = None, executor: str | None = None,
    invocation: dict | None = None, input_spacing: Sequence[float] | None = None, shards=None,
    transforms: Sequence | None = None,
) -> ResampleResult:
    """Resample a NIfTI (or any nibabel spatial image) file to a new spacing.

    Parameters
    ----------
    input, output : path or URL
        Input: any image nibabel opens, or an OME-Zarr.  Output: .nii, .nii.gz
        or .zarr (OME-Zarr).  URLs (``s3://``...) go through fsspec: OME-Zarr
        inputs, references and outputs, and NIfTI inputs (copied first).
    spacing : 3 floats or None
        Requested spacing of x, y, z; None keeps that axis' spacing.
    shape : 3 ints, optional
        Instead of ``spacing``: the output shape; the spacing is then
        ``s * n / m`` per axis (the field of view is kept).
    reference : path, optional
        Instead of ``spacing``: an image (NIfTI or OME-Zarr) whose grid (shape
        and affine, any orientation) the output takes, as
        ``scipy.ndimage.affine_transform`` with ``A_in^-1 @ A_ref``.
    units : {'mm', 'um'}
        Units of ``spacing``; ``spacing_label``: how the report names it.
    order, grid, mode, cval, dtype
        As ``bigresample.resample_array`` (``order`` None: 1, or the label
        method's; the report then names no order); ``mode`` defaults to ``'itk'``
        with a ``reference`` (``cval`` beyond half a voxel of the input, as ITK:
        docs/grids-and-exactness.md, "Outside the input") and ``'nearest'`` otherwise.
    chunks, memory_limit, workers : optional
        Output block shape in voxels; the budget (bytes or '2GB'); threads
        (default: planned from the budget; half the available memory; the CPUs).
    tmp_dir : path or URL, optional
        Scratch folder (default: the output's) for a decompressed ``.nii.gz``
        input and the zarr store of cluster and ``keep_zarr`` runs; a URL
        (``s3://bucket/prefix``, through fsspec) holds the zarr store only.
    keep_zarr, compare : bool
        Keep the zarr store; compute min/max/mean/std of input and output.
    progress, log, report
        tqdm bars on stderr; a callable receiving the report line by line; or a
        ``bigresample.report.Report`` receiving the events (then the others are ignored).
    force : bool
        Skip the size rules (``job.size_rules``: an output more than 16x the
        input's size and over 1 GiB, or an axis shrunk more than 16x to fewer
        than 4 voxels, is refused otherwise, as most likely a slip in the spacing).
    antialias : bool
        Smooth each downsampled axis with a Gaussian first (sigma ``(r - 1) / 2``
        input voxels, scikit-image's rule; ``bigresample.antialias``).
    levels : int
        For an OME-Zarr output: a multiscale pyramid of this many levels,
        level k at 2^k times the spacing (each resampled from the input).
    qc : path, optional
        Also draw the axial, coronal and sagittal planes of input and output
        through the same physical point into this PNG, both rows in world
        coordinates (needs matplotlib; ``bigresample.qc``).
    labels : bool or str
        The input is a label map (``order`` is not used; refused with
        ``antialias``: smoothing would invent labels): ``True`` or
        ``'nearest'`` for order 0, ``'linear'``/``'cubic'`` for the arg-max of
        each label's interpolated indicator, ``'mode'`` for the most frequent
        label of each output voxel's footprint (docs/grids-and-exactness.md,
        "Label maps").  Without it, an integer image with few distinct values
        gets a ``LabelMapWarning``.
    dry_run : bool
        Report the plan (shapes, blocks, memory and disk), run every check the
        run would (refusing as it would), and stop, reading no voxel.
    scheduler, local_cluster, client
        Run on a dask.distributed cluster: a scheduler's address, a number of
        local worker processes, or a ``Client`` (default: the active one, if
        any).  The input and ``tmp_dir`` must be visible to every worker.
    storage_options : dict, optional
        fsspec options for every URL of the run (``endpoint_url``, ``anon``,
        ``key``/``secret``...); credentials otherwise come from the
        environment and the protocol library's config.
    resampler : str, optional
        The name a resampler was registered under (``bigresample.resampling.register``;
        default ``'scipy'``: scipy.ndimage's interpolation, exact).
    executor : str, optional
        The name an executor was registered under (``bigresample.executors.register``;
        default: local threads, or the cluster named).
    invocation : dict, optional
        How the output's provenance says the run was asked (default: this call).
    input_spacing : 3 floats, optional
        The input's voxel spacing (x, y, z, in ``units``), for a file that gives none (a plain TIFF, a
        slice folder, a plain Zarr array) or a wrong one; the report and provenance say it was given.
    shards : 3 ints or 'auto', optional
        An OME-Zarr output in zarr v3 shards of this many chunks (x, y, z); 'auto': enough chunks per
        shard that each level holds at most ``sinks.MAX_SHARD_FILES`` shard files.  Blocks are whole shards.
    transforms : list of paths, optional
        Registrations to apply (docs/registration.md), in antsApplyTransforms' order: each output point ``p``
        samples the input at ``T2(T1(p))`` for ``[T1, T2]``, as ``antsApplyTransforms -t T1 -t T2`` (and
        SimpleITK's ``CompositeTransform([T2, T1])``); each file means what it
        means to the tool that wrote it (ITK/ANTs, FSL, FreeSurfer LTA, a 4x4 matrix, a displacement field).
        ``'[PATH,1]'`` or ``(path, True)``: the inverse of an affine file.  ``mode`` then defaults to ``'itk'``.
    """
    t_start = time.perf_counter()
    # what was asked, once: Request.make's keywords (tests/test_request.py holds the two signatures equal)
    asked = dict(
        spacing=spacing, shape=shape, reference=reference, units=units, order=order, grid=grid, mode=mode,
        cval=cval, dtype=dtype, chunks=chunks, memory_limit=memory_limit, workers=workers, tmp_dir=tmp_dir,
        keep_zarr=keep_zarr, compare=compare, spacing_label=spacing_label, force=force, dry_run=dry_run,
        labels=labels, antialias=antialias, levels=levels, qc=qc, scheduler=scheduler,
        local_cluster=local_cluster, client=client, storage_options=storage_options, resampler=resampler,
        executor=executor, input_spacing=input_spacing, shards=shards, transforms=transforms)
    # the invocation, unless given, is this call and its arguments
    invocation = invocation or provenance.api_call(resample, {"input": input, "output": output, **asked})
    if report is None:
        report = TextReport(log, progress) if log is not None else Report(progress)
    return run_request(Request.make(input, output, **asked, invocation=invocation), report, t_start)


def run_request(request: Request, report: Report, t_start: float | None = None) -> ResampleResult:
    """Plan ``request``, then describe it (a dry run) or check and run it."""
    t_start = time.perf_counter() if t_start is None else t_start
    job = plan_job(request, report)
    try:
        if request.dry_run:
            report(dry_run(job))
            preflight(job)  # the real run's checks: a refusal is the same error (exit status 2)
            report(Verdict())
            return _result(job, verified_mm=())
        preflight(job)
        return run_job(job, report, t_start)
    finally:
        job.volume.close()


def run_job(job: Job, report: Report, t_start: float) -> ResampleResult:
    """Run a planned job: its blocks into its sink, the output checked and
    moved into place, then read back, compared and drawn as asked."""
    r, vol = job.request, job.volume
    report(Started())
    vol.attach_data(r.scratch, report.bar)
    timings = dict(vol.timings)
    _warn_if_labels(job)
    with job.executor as executor:
        if executor.remote:
            out_root = r.output if location.is_url(r.output) else str(r.output.parent)
            executor.check_visible([vol.data_file, r.store_root if job.via_store else out_root], r.storage_options)
            report(OnCluster(executor.describe(), location.display(job.zarr_store) if job.via_store else None,
                             job.sink.where(job.stages[0])))
        t0 = time.perf_counter()
        for stage in job.stages:
            journal, done = resume(job, stage, report)
            if stage.level == 0 and len(job.stages) > 1:
                report(Pyramid(tuple(tuple(s.grid.out_shape) for s in job.stages)))
            reused = run_stage(job, stage, journal, done, executor, vol.source, report)
            if stage.level == 0 and reused:
                report(Resumed(reused, len(stage.blocks), job.sink.in_store))
        timings["compute"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        job.sink.finish(report.bar)
        for stage in job.stages:
            stage.journal.unlink(missing_ok=True)
        timings["write"] = time.perf_counter() - t0
    return _finish(job, report, timings, t_start)


def _finish(job: Job, report: Report, timings: dict, t_start: float) -> ResampleResult:
    """Read the written output back (its spacing), compare and draw as asked, report."""
    r, vol = job.request, job.volume
    out_data, out_affine, spacing = job.sink.written()
    verified_mm = spacing * vol.unit_to_mm
    stats = None
    if r.compare:
        t0 = time.perf_counter()
        stats = compare_stats(vol, out_data, job.plan, r.workers)
        timings["compare"] = time.perf_counter() - t0
    job.sink.cleanup()
    true_mm = job.grid.output_spacing(vol.spacing) * vol.unit_to_mm
    out_shape = tuple(int(n) for n in out_data.shape)
    if r.qc is not None:
        t0 = time.perf_counter()
        write_qc(r.qc, in_source=vol.source, in_shape=vol.shape, in_affine=vol.affine,
                 in_spacing_mm=vol.spacing * vol.unit_to_mm, out_source=out_data, out_shape=out_shape,
                 out_affine=out_affine, out_spacing_mm=true_mm, in_slope=vol.slope, in_inter=vol.inter,
                 units=vol.units,
                 title=f"{location.name(vol.path)} -> {location.name(r.output)}, "
                       f"{INTERPOLATION_NAMES[r.order]}")
        timings["qc"] = time.perf_counter() - t0
    timings["total"] = time.perf_counter() - t_start
    report(Finished(in_shape=vol.shape, out_shape=out_shape, grid=job.grid.grid, target_mm=job.target_mm,
                    true_mm=true_mm, verified_mm=verified_mm, nifti2=job.nifti2 and r.output_format.nifti_header,
                    kept_store=location.display(job.zarr_store) if r.keep_zarr and job.via_store else None, stats=stats, qc=r.qc,
                    timings=timings))
    return _result(job, verified_mm, out_shape, out_affine, timings, stats)


def _result(job: Job, verified_mm, out_shape=None, affine=None, timings=None, stats=None) -> ResampleResult:
    r, vol, g = job.request, job.volume, job.grid
    to_mm = vol.unit_to_mm
    return ResampleResult(
        input=location.display(vol.path),
        output=location.display(r.output),
        in_shape=tuple(vol.shape),
        out_shape=job.out_shape if out_shape is None else out_shape,
        in_spacing_mm=tuple(float(v) for v in vol.spacing * to_mm),
        requested_spacing_mm=tuple(float(v) for v in job.target_mm),
        out_spacing_mm=tuple(float(v) for v in g.output_spacing(vol.spacing) * to_mm),
        verified_spacing_mm=tuple(float(v) for v in verified_mm),
        affine=g.output_affine(vol.affine) if affine is None else affine,
        grid=g.grid,
        order=r.order,
        mode=r.mode,
        dtype=job.out_dtype.name,
        block=job.plan.block,
        n_blocks=len(job.blocks),
        workers=job.plan.workers,
        memory_limit=r.memory_limit,
        # a dry run says whether a NIfTI would be NIfTI-2; a run, whether it was written so
        nifti2=job.nifti2 and (timings is None or r.output_format.nifti_header),
        timings={} if timings is None else timings,
        stats=stats,
    )


def _warn_if_labels(job: Job) -> None:
    r = job.request
    why = None if (r.labels or r.order == 0) else looks_like_labels(job.volume)
    if why:
        warnings.warn(LabelMapWarning(
            f"{r.input} looks like a label map ({why}): order {r.order} blends neighbouring labels into "
            "values that are not labels; use --labels (or --order 0)"), stacklevel=5)  # resample's caller


class LabelMapWarning(UserWarning):
    """An integer image with few distinct values is resampled with order > 0."""


def looks_like_labels(vol: InputVolume) -> str | None:
    """Why ``vol`` looks like a label map, or None: unscaled integers with few
    distinct values in its middle z-plane (first volume), the only voxels read.
    Intensity images have thousands of distinct values there; atlases and
    segmentations have tens to a few hundred."""
    if vol.dtype.kind not in "iu" or not (vol.slope == 1.0 and vol.inter == 0.0):
        return None
    nz = vol.shape[2]
    plane = np.asarray(vol.source[(slice(None), slice(None), slice(nz // 2, nz // 2 + 1))
                                  + tuple(slice(0, 1) for _ in vol.shape[3:])])
    values = np.unique(plane)
    n = len(values)
    if n < 2:
        return None  # an empty slice tells nothing
    # a few values, or at most 1000 (and 1% of the slice) spread sparsely over
    # their range: 8-bit intensities fill most of 0-255, atlas labels do not
    sparse = n <= min(1000, plane.size // 100) and n < (int(values[-1]) - int(values[0]) + 1) / 2
    if n <= 16 or sparse:
        return f"{vol.dtype.name}, {n} distinct values in the middle slice"
    return None


def resample_nifti_spacing(
    input_path,
    output_path,
    new_x_spacing: float | None = None,
    new_y_spacing: float | None = None,
    new_z_spacing: float | None = None,
    new_spacing: Sequence[float] | None = None,
    order: int = 1,
    verbose: bool = True,
    compare: bool = False,
    **kwargs,
) -> ResampleResult:
    """The seed script's call: change the spacing (mm) of some or all axes.

    ``new_spacing=(x, y, z)`` sets all three; otherwise ``new_x_spacing`` etc.
    change single axes and the others keep their spacing.  Prints the seed's
    report unless ``verbose=False``.  Further keywords go to ``resample``
    (``grid``, ``mode``, ``memory_limit``...).
    """
    axes = (new_x_spacing, new_y_spacing, new_z_spacing)
    if new_spacing is not None and any(v is not None for v in axes):
        raise UsageError("give either new_spacing or new_x/y/z_spacing, not both")
    if new_spacing is not None:
        values = list(new_spacing)
        label = ", ".join(f"{a}={v}" for a, v in zip(AXES, values))
    elif any(v is not None for v in axes):
        values = list(axes)
        label = ", ".join(f"{a}={v}" for a, v in zip(AXES, values) if v is not None)
    else:
        raise UsageError("no spacing given: set new_spacing or one of new_x/y/z_spacing")
    if kwargs.get("invocation") is None:
        kwargs["invocation"] = provenance.api_call(resample_nifti_spacing, dict(
            input_path=input_path, output_path=output_path, new_x_spacing=new_x_spacing,
            new_y_spacing=new_y_spacing, new_z_spacing=new_z_spacing, new_spacing=new_spacing, order=order,
            verbose=verbose, compare=compare, **kwargs))
    return resample(
        input_path,
        output_path,
        spacing=values,
        order=order,
        compare=compare,
        log=print if verbose else None,
        spacing_label=label,
        **kwargs,
    )
