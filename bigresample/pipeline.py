"""File-level resampling: NIfTI in, blocks out, NIfTI out.

    input (raw values, read region by region) --blocks--> output .nii / .nii.gz

By default worker threads write each block straight into the output: at its
file offsets for .nii, as a gzip member appended in file order for .nii.gz
(benchmarks/bench_speed.py measured going through a zarr store first at
several times the cost of the whole resampling).  With ``keep_zarr`` the
blocks go to a zarr v3 store through a dask graph and the NIfTI is streamed out
of it in file order.  Neither path ever holds the volume.  The output is
written under a temporary name in its own folder, checked, and renamed onto
the output path.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import nibabel as nib
import numpy as np

from .errors import BigresampleError
from . import __version__
from . import ome
from . import store as store_location
from .antialias import Smoothed
from .antialias import sigmas as antialias_sigmas
from .cluster import check_visible, connect, describe
from .engine import Resampler
from .geometry import ReferenceGrid, make_grid, parse_grid, reference_grid, voxel_spacing
from .journal import Journal, input_identity
from .nifti import InputVolume, check_free_space, header_bytes, open_input, output_header, output_kind
from .output import check_written, compute_direct, compute_to_zarr, stream_store
from .plan import default_memory_limit, format_bytes, parse_memory, plan_blocks
from .qc import require_matplotlib, write_qc
from .runner import block_regions
from .stats import compare_stats
from .splines import parse_mode, parse_order
from .transform import AffineResampler

INTERPOLATION_NAMES = {
    0: "Nearest Neighbor",
    1: "Linear (Trilinear)",
    2: "Quadratic",
    3: "Cubic",
    4: "Quartic",
    5: "Quintic",
}
GRID_NOTES = {
    "center": "field of view centred, spacing exact",
    "origin": "first voxel centre kept, spacing exact",
    "zoom": "samples like scipy.ndimage.zoom; true spacing (n-1)/(m-1) x input",
    "reference": "the reference image's shape and affine; as scipy.ndimage.affine_transform",
}
AXES = "xyz"


class UsageError(BigresampleError):
    """Arguments that cannot describe a resampling (named with the value)."""


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


def _fmt3(values, fmt):
    return ", ".join(f"{a}={format(v, fmt)}" for a, v in zip(AXES, values))


def resolve_spacing(current_mm: np.ndarray, spacing, units: str = "mm") -> np.ndarray:
    """Requested spacing in mm per axis; ``None`` entries keep the current one."""
    if units not in ("mm", "um"):
        raise UsageError(f"units must be 'mm' or 'um'; got {units!r}")
    if spacing is None:
        raise UsageError("no spacing given: use --spacing X Y Z or --x/--y/--z-spacing")
    values = list(spacing)
    if len(values) != 3:
        raise UsageError(f"spacing needs 3 values (x y z); got {len(values)}: {values!r}")
    scale = 1e-3 if units == "um" else 1.0
    out = []
    for axis, v, cur in zip(AXES, values, current_mm):
        if v is None:
            out.append(float(cur))
            continue
        try:
            f = float(v)
        except (TypeError, ValueError):
            raise UsageError(f"{axis}-spacing must be a number; got {v!r}") from None
        if not np.isfinite(f) or f <= 0:
            raise UsageError(f"{axis}-spacing must be finite and > 0; got {v!r}")
        out.append(f * scale)
    return np.array(out)


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def resample(
    input,
    output,
    *,
    spacing: Sequence[float | None] | None = None,
    shape: Sequence[int] | None = None,
    reference=None,
    units: str = "mm",
    order: int = 1,
    grid: str = "center",
    mode: str = "nearest",
    cval: float = 0.0,
    dtype=None,
    chunks: Sequence[int] | None = None,
    memory_limit=None,
    workers: int | None = None,
    tmp_dir=None,
    keep_zarr: bool = False,
    compare: bool = False,
    progress: bool = False,
    log: Callable[[str], None] | None = None,
    spacing_label: str | None = None,
    force: bool = False,
    dry_run: bool = False,
    labels: bool = False,
    antialias: bool = False,
    levels: int = 1,
    qc=None,
    scheduler: str | None = None,
    local_cluster: int | None = None,
    client=None,
) -> ResampleResult:
    """Resample a NIfTI (or any nibabel spatial image) file to a new spacing.

    Parameters
    ----------
    input, output : path
        Output must end in .nii or .nii.gz.
    spacing : 3 floats or None
        Requested spacing of x, y, z; None keeps that axis' spacing.
    shape : 3 ints, optional
        Instead of ``spacing``: the output shape; the spacing is then
        ``s * n / m`` per axis (the field of view is kept).
    reference : path, optional
        Instead of ``spacing``: an image (NIfTI or OME-Zarr) whose grid, its
        shape and affine, the output takes, whatever its orientation relative
        to the input (``scipy.ndimage.affine_transform`` with
        ``A_in^-1 @ A_ref``, computed block by block).  Its voxels are not read.
    units : {'mm', 'um'}
        Units of ``spacing``.
    order, grid, mode, cval, dtype
        As ``bigresample.resample_array``.
    chunks : 3 ints, optional
        Output block shape in voxels (default: planned from ``memory_limit``).
    memory_limit : bytes or str like '2GB', optional
        Budget for the computation (default: half the available memory).
    workers : int, optional
        Threads computing blocks (default: the number of CPUs).
    tmp_dir : path or URL, optional
        Scratch folder (default: the output's folder) for a decompressed
        ``.nii.gz`` input and the intermediate zarr store of cluster and
        ``keep_zarr`` runs.  A URL that zarr opens through fsspec
        (``s3://bucket/prefix``, ``file:///shared/scratch``) holds the zarr
        store only; the other scratch files then go beside the output.
    keep_zarr : bool
        Keep the zarr store after success.
    compare : bool
        Also compute min/max/mean/std of input and output (block by block).
    progress : bool
        Show tqdm progress bars on stderr.
    log : callable, optional
        Receives the report, line by line.
    force : bool
        Write an output more than 16x the input's size (refused otherwise, as
        most likely a typo in the spacing).
    antialias : bool
        Smooth each downsampled axis with a Gaussian before sampling (sigma
        ``(r - 1) / 2`` input voxels, scikit-image's rule; see
        ``bigresample.antialias``).  Off by default, so that the ``zoom`` grid
        stays equal to ``scipy.ndimage.zoom``.
    levels : int
        For an OME-Zarr output: a multiscale pyramid of this many levels,
        level k at 2^k times the spacing (each resampled from the input).
    qc : path, optional
        Also draw orthogonal slices of input and output through the same
        physical point into this PNG (needs matplotlib).
    labels : bool
        The input is a label map: nearest-neighbour (order 0) whatever
        ``order`` says, so every output value is one of the input's labels.
        Without it, an integer image with few distinct values resampled with
        order > 0 gets a ``LabelMapWarning``.
    dry_run : bool
        Print the plan (output shape and bytes, block shape, concurrent
        blocks, memory and disk needed) and stop before reading any voxel.
    scheduler, local_cluster, client
        Run the blocks on a dask.distributed cluster: a running scheduler's
        address, a number of local worker processes, or a ``Client``.  With
        none of them, an active ``Client`` is used if there is one.  The input
        and ``tmp_dir`` must be visible to every worker.
    """
    t_start = time.perf_counter()
    say = log or (lambda line: None)
    n_targets = sum(v is not None for v in (spacing, shape, reference))
    if n_targets != 1:
        raise UsageError("give the target as a spacing, a shape or a reference image, not several" if n_targets
                         else "no spacing given: use --spacing X Y Z, --x/--y/--z-spacing, --shape X Y Z or "
                              "--reference IMAGE")
    if shape is not None:
        shape = parse_shape(shape)
    order = 0 if labels else parse_order(order)
    mode = parse_mode(mode)
    grid = parse_grid(grid)
    for role, value in (("input", input), ("reference", reference)):
        if value is not None and store_location.is_url(str(value)):
            raise UsageError(f"{role} must be a local file or folder (URLs are not read); got {value}")
    in_path, out_path = Path(input), Path(output)
    kind = output_kind(out_path)
    if not (isinstance(levels, (int, np.integer)) and levels >= 1):
        raise UsageError(f"--levels must be a whole number >= 1; got {levels!r}")
    if levels > 1 and kind != ".zarr":
        raise UsageError(f"--levels needs an OME-Zarr output (.zarr); got {out_path.name!r}")
    if reference is not None and levels > 1:
        raise UsageError("--levels needs a spacing or --shape: a reference image gives one grid")
    if reference is not None and grid != "center":
        raise UsageError(f"--grid {grid} has no meaning with --reference (the reference's grid is used)")
    if qc is not None:
        try:
            require_matplotlib()
        except ImportError as e:
            raise UsageError(str(e)) from None
        if not Path(qc).parent.is_dir():
            raise UsageError(f"--qc folder does not exist: {Path(qc).parent}")
    if in_path.resolve() == out_path.resolve() or _same_file(in_path, out_path):
        raise UsageError(f"output would overwrite the input: {out_path}")
    if reference is not None and (Path(reference).resolve() == out_path.resolve()
                                  or _same_file(Path(reference), out_path)):
        raise UsageError(f"output would overwrite the reference: {out_path}")
    if not out_path.parent.is_dir():
        raise UsageError(f"output folder does not exist: {out_path.parent}")
    if not os.access(out_path.parent, os.W_OK | os.X_OK):
        raise UsageError(f"output folder is not writable: {out_path.parent}")
    limit = parse_memory(memory_limit) if memory_limit is not None else default_memory_limit()
    workers = int(workers) if workers is not None else (os.cpu_count() or 1)
    if workers < 1:
        raise UsageError(f"workers must be >= 1; got {workers}")
    store_root = str(tmp_dir) if tmp_dir is not None else str(out_path.parent)
    why = store_location.problem(store_root)
    if why:
        raise UsageError(f"--tmp-dir {'URL' if store_location.is_url(store_root) else 'folder'} "
                         f"cannot be used: {store_root}: {why}")
    # a URL holds only the zarr store; other scratch files stay beside the output
    scratch = out_path.parent if store_location.is_url(store_root) else Path(store_root)

    with connect(scheduler, local_cluster, client) as cl:
        ref = open_input(reference, read_data=False, role="reference") if reference is not None else None
        say(f"Loading {'OME-Zarr image' if ome.is_ome_zarr(in_path) else 'NIfTI file'}: {in_path}")
        vol = open_input(in_path, scratch_dir=scratch, read_data=not dry_run)
        try:
            why = None if (labels or order == 0 or dry_run) else looks_like_labels(vol)
            if why:
                warnings.warn(LabelMapWarning(
                    f"{in_path} looks like a label map ({why}): order {order} blends neighbouring labels into "
                    "values that are not labels; use --labels (or --order 0)"), stacklevel=2)
            return _run(
                vol, out_path, kind, spacing, units, order, grid, mode, cval, dtype, chunks, limit, workers,
                scratch, store_root, keep_zarr, compare, progress, say, spacing_label, t_start, force, dry_run, cl,
                qc, shape, antialias, int(levels), ref,
            )
        finally:
            vol.close()


def _run(vol: InputVolume, out_path, kind, spacing, units, order, grid, mode, cval, dtype, chunks, limit,
         workers, scratch, store_root, keep_zarr, compare, progress, say, spacing_label, t_start, force,
         dry_run, client, qc=None, shape=None, antialias=False, levels=1, ref=None) -> ResampleResult:
    to_mm = vol.unit_to_mm
    cur_mm = vol.spacing * to_mm
    g = None
    if ref is not None:
        a_ref = ref.affine.copy()
        a_ref[:3, :] *= ref.unit_to_mm / to_mm  # into the input's units
        g = reference_grid(vol.shape[:3], vol.affine, ref.shape[:3], a_ref)
        target_mm = g.output_spacing() * to_mm
    elif shape is not None:
        # the spacing that gives this shape with the field of view kept (n*s = m*t)
        target_mm = cur_mm * np.array(vol.shape[:3], dtype=np.float64) / np.array(shape, dtype=np.float64)
    else:
        target_mm = resolve_spacing(cur_mm, spacing, units)
    say("")
    say(f"Original volume shape: {vol.shape}")
    say(f"Original spacing (mm): {_fmt3(cur_mm, '.4f')}")
    say(f"Original spacing (μm): {_fmt3(cur_mm * 1000, '.2f')}")
    if vol.units not in ("mm", "unknown"):
        say(f"Header units: {vol.units} (spacings converted; the output keeps them)")
    say("")
    if spacing_label:
        say(f"Changing spacing: {spacing_label}")
        say("")
    say(f"Target spacing (mm): {_fmt3(target_mm, '.4f')}")
    say(f"Target spacing (μm): {_fmt3(target_mm * 1000, '.2f')}")
    say("")

    if g is None:
        target = same_as_stored(target_mm / to_mm, vol.spacing)
        g = make_grid(vol.shape[:3], vol.spacing, target, grid)
        if shape is not None and tuple(g.out_shape) != shape:  # pragma: no cover - m = round(n*s/t) is exact
            raise RuntimeError(f"asked for shape {shape}, the grid has {g.out_shape}")
        zoom = vol.spacing / target
        say(f"Zoom factors: {_fmt3(zoom, '.4f')}")
        for a, z in zip(AXES, zoom):
            if z == 1.0:
                say(f"  {a}-axis: No change")
            elif z < 1.0:
                say(f"  {a}-axis: Downsampling ({z:.4f}x)")
            else:
                say(f"  {a}-axis: Upsampling ({z:.4f}x)")
    else:
        target = g.output_spacing()
        angle = g.rotation_degrees()
        say(f"Reference grid: {ref.path}, shape {tuple(g.out_shape)}, "
            + ("axes aligned with the input's" if g.is_axis_aligned
               else f"rotated {angle:.2f} degrees relative to the input"))
    say("")
    say(f"Interpolation method: {INTERPOLATION_NAMES[order]}")
    say(f"Grid: {g.grid} ({GRID_NOTES[g.grid]})")
    say(f"Boundary mode: {mode}" + (f" (cval={cval:g})" if "constant" in mode else ""))

    # default: the type the header describes (an OME-Zarr's float16 is described as float32)
    out_dtype = np.dtype(vol.image.get_data_dtype() if dtype is None else dtype).newbyteorder("=")
    if "constant" in mode and not np.isfinite(cval) and out_dtype.kind in "iub":
        raise UsageError(f"--cval {cval:g} needs a float output (e.g. --dtype float32); the output type is "
                         f"{out_dtype.name}")
    resampler, source, smoothing, plan = _prepare(vol, g, order, mode, cval, antialias, out_dtype, limit, workers,
                                                  chunks, gzip=kind == ".nii.gz")
    if smoothing is not None:
        if any(sg > 0 for sg in smoothing):
            say("Anti-aliasing: Gaussian sigma (input voxels) "
                + ", ".join(f"{a}={sg:.3g}" for a, sg in zip("xyz", smoothing)) + " ((r-1)/2, as scikit-image)")
        else:
            say("Anti-aliasing: no axis is downsampled, nothing to smooth")
    extra = vol.shape[3:]
    n_blocks = len(block_regions(tuple(g.out_shape) + tuple(extra), plan.block))
    say(
        f"Block plan: {'x'.join(map(str, plan.block))} output voxels per block, {n_blocks} blocks, "
        f"{workers} worker{'s' if workers != 1 else ''}, ~{format_bytes(plan.block_bytes)} per block"
    )
    say(f"Memory budget: {format_bytes(limit)}")
    out_full = tuple(g.out_shape) + tuple(extra)
    lead_axes = _leading_axes(vol) if kind == ".zarr" else None
    if lead_axes is not None:
        try:
            ome.check_leading_axes(lead_axes)
        except ome.OmeError as exc:
            raise UsageError(f"cannot write this image as OME-Zarr: {exc}; write .nii or .nii.gz") from None
    via_zarr = (keep_zarr or client is not None) and kind != ".zarr"  # an OME-Zarr output is its own store
    if dry_run:
        return _dry_run(vol, resampler, out_path, kind, g, out_full, out_dtype, plan, limit, scratch,
                        store_root if via_zarr else None, say, target_mm, to_mm)
    _check_output_size(vol, out_path, kind, g, extra, out_dtype, force, store_root if via_zarr else None)
    say("")
    say("Resampling volume...")

    store_path = store_location.address(store_root, f".{out_path.name}.bigresample.zarr")
    stem = out_path.name[: -len(kind)]
    tmp_out = out_path.parent / f".{stem}.bigresample-partial{kind}"
    hdr = output_header(vol, g, out_dtype, reference=ref)
    journal = Journal(
        out_path.parent / f".{out_path.name}.bigresample-journal",
        {
            "input": input_identity(vol.path),
            # the header written at the start of a partial NIfTI (a reference's forms and codes, ...)
            "header": hashlib.sha256(header_bytes(hdr)).hexdigest(),
            "output": str(out_path.resolve()),
            "spacing": [repr(float(v)) for v in target],
            "reference": None if ref is None else [repr(float(v)) for v in g.homogeneous[:3].ravel()]
            + list(g.out_shape),
            "order": order,
            "mode": mode,
            "cval": repr(float(cval)),
            "grid": grid,
            "dtype": out_dtype.str,
            "block": list(plan.block),
            # where the finished blocks are: the partial NIfTI, a zarr store, or the OME-Zarr's level 0
            "store": store_path if via_zarr else (str(tmp_out / "0") if kind == ".zarr" else None),
            "antialias": list(smoothing) if smoothing else None,
            "version": __version__,
        },
    )
    nifti2 = isinstance(hdr, nib.Nifti2Header)
    timings = dict(vol.timings)
    store = None
    if client is not None:
        data_file = getattr(vol.source, "path", None) or str(vol.path)
        check_visible(client, [data_file, str(out_path.parent) if kind == ".zarr" else store_root])
        say(f"Cluster: {describe(client)}; zarr store {store_path}")
    t0 = time.perf_counter()
    level_journals = []
    if kind == ".zarr":
        done, note = journal.load()
        if note:
            say(f"Note: not resuming the partial output {tmp_out.name}: {note}; starting again.")
        # level k of a pyramid: the input resampled to 2^k times the spacing, on the same grid convention
        grids = [g] + [make_grid(vol.shape[:3], vol.spacing, target * 2.0**k, grid) for k in range(1, levels)]
        if levels > 1:
            say(f"Pyramid: {levels} levels, " + ", ".join("x".join(map(str, gk.out_shape)) for gk in grids))
        if not (done and (tmp_out / "zarr.json").exists()):
            done = {}
            shutil.rmtree(tmp_out, ignore_errors=True)
            ome.create_group(tmp_out, ome.metadata(out_path.name[: -len(kind)],
                                                   [gk.output_affine(vol.affine) for gk in grids],
                                                   vol.units, lead_axes))
        _, resumed = compute_to_zarr(resampler, source, out_dtype, out_full, plan, str(tmp_out / "0"), workers,
                                     progress, journal, done, client, ngff=True)
        if resumed:
            say(f"Resumed: {resumed} of {n_blocks} blocks were already done by an interrupted run.")
        for k, gk in enumerate(grids[1:], start=1):
            rk, sk, _, pk = _prepare(vol, gk, order, mode, cval, antialias, out_dtype, limit, workers, chunks)
            jk = Journal(journal.path.with_name(f"{journal.path.name}-level{k}"),
                         {**journal.identity, "level": k, "block": list(pk.block)})
            done_k, _ = jk.load()
            compute_to_zarr(rk, sk, out_dtype, tuple(gk.out_shape) + tuple(extra), pk, str(tmp_out / str(k)),
                            workers, progress, jk, done_k, client, ngff=True)
            level_journals.append(jk)
        timings["compute"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        written = ome.open_image(tmp_out)
        if written.shape != tuple(out_full):
            raise RuntimeError(f"written OME-Zarr has shape {written.shape}, expected {out_full}")
        _replace_folder(tmp_out, out_path)
    elif via_zarr:
        done, note = journal.load()
        if note:
            say(f"Note: not resuming the zarr store {store_path}: {note}; starting again.")
        try:
            store, resumed = compute_to_zarr(resampler, source, out_dtype, out_full, plan, store_path, workers,
                                             progress, journal, done, client)
            if resumed:
                say(f"Resumed: {resumed} of {n_blocks} blocks were already in the zarr store from an "
                    "interrupted run.")
            timings["compute"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            stream_store(store, tmp_out, hdr, progress)
        except BaseException:
            tmp_out.unlink(missing_ok=True)
            raise
    else:
        done, note = journal.load()
        if note and tmp_out.exists():
            say(f"Note: not resuming the partial output {tmp_out.name}: {note}; starting again.")
        resumed = compute_direct(
            resampler, source, out_dtype, plan, out_full, hdr, tmp_out, kind, workers, progress, journal, done
        )
        if resumed:
            say(f"Resumed: {resumed} of {n_blocks} blocks were already done by an interrupted run.")
        timings["compute"] = time.perf_counter() - t0
        t0 = time.perf_counter()
    if kind != ".zarr":
        check_written(tmp_out, hdr, kind)
        os.replace(tmp_out, out_path)
    journal.remove()
    for jk in level_journals:
        jk.remove()
    timings["write"] = time.perf_counter() - t0

    stats = None
    if kind == ".zarr":
        out_data, out_affine = ome.open_image(out_path), g.output_affine(vol.affine)
        written_scale = ome.written_scale(out_path)
        verified_mm = np.array(written_scale[-3:][::-1]) * to_mm
        nifti2 = False
    else:
        out_img = nib.load(out_path)
        out_data, out_affine = out_img.dataobj, out_img.affine
        verified_mm = voxel_spacing(out_img.affine) * to_mm
    if compare:
        t0 = time.perf_counter()
        stats = compare_stats(vol, out_data, plan, workers)
        timings["compare"] = time.perf_counter() - t0
    if store is not None and not keep_zarr:
        store_location.remove(store_path)

    true_mm = g.output_spacing(vol.spacing) * to_mm
    out_shape = tuple(int(n) for n in out_data.shape)
    say(f"Resampled volume shape: {out_shape}")
    for a, n, m in zip("XYZ", vol.shape, out_shape):
        say(f"  {a}: {n} → {m} ({(m - n) / n * 100:+.1f}%)")
    say("")
    if grid == "zoom" and not np.allclose(true_mm, target_mm, rtol=1e-6, atol=0):
        say("Note: the zoom grid samples like scipy.ndimage.zoom, so the true spacing")
        say(f"      differs from the request: {_fmt3(true_mm, '.6f')} mm (written in the header)")
    say(f"True output spacing (mm): {_fmt3(true_mm, '.4f')}")
    say(f"Verified new spacing (mm): {_fmt3(verified_mm, '.4f')}")
    say(f"Verified new spacing (μm): {_fmt3(verified_mm * 1000, '.2f')}")
    if nifti2:
        say(f"Written as NIfTI-2: a dimension exceeds {32767} (the NIfTI-1 limit)")
    if keep_zarr:
        say(f"Zarr store kept: {store_path}")
    if stats:
        say("")
        say("Comparison (scaled values, computed block by block):")
        say(f"  {'':8s} {'min':>14s} {'max':>14s} {'mean':>14s} {'std':>14s}")
        for label in ("input", "output"):
            s = stats[label]
            say(f"  {label:8s} {s['min']:14.6g} {s['max']:14.6g} {s['mean']:14.6g} {s['std']:14.6g}")
    if qc is not None:
        t0 = time.perf_counter()
        write_qc(qc, vol.source, vol.shape, vol.affine, cur_mm, out_data, out_shape, out_affine, true_mm,
                 vol.slope, vol.inter, title=f"{vol.path.name} -> {out_path.name}, {INTERPOLATION_NAMES[order]}")
        timings["qc"] = time.perf_counter() - t0
        say(f"QC picture: {qc}")
    timings["total"] = time.perf_counter() - t_start
    n_out = int(np.prod(out_shape))
    say("")
    say(
        f"Elapsed: {timings['total']:.2f} s ({_timing_text(timings)}); "
        f"throughput {n_out / timings['total'] / 1e6:.1f} Mvoxel/s"
    )
    say("")
    say("Done!")
    return ResampleResult(
        input=str(vol.path),
        output=str(out_path),
        in_shape=tuple(vol.shape),
        out_shape=out_shape,
        in_spacing_mm=tuple(float(v) for v in cur_mm),
        requested_spacing_mm=tuple(float(v) for v in target_mm),
        out_spacing_mm=tuple(float(v) for v in true_mm),
        verified_spacing_mm=tuple(float(v) for v in verified_mm),
        affine=out_affine,
        grid=g.grid,
        order=order,
        mode=mode,
        dtype=out_dtype.name,
        block=plan.block,
        n_blocks=n_blocks,
        workers=workers,
        memory_limit=limit,
        nifti2=nifti2,
        timings=timings,
        stats=stats,
    )


def _prepare(vol, g, order, mode, cval, antialias, out_dtype, limit, workers, chunks, gzip=False):
    """The resampler, the source it reads (smoothed when anti-aliasing), the
    Gaussian sigmas (None without ``antialias``) and the block plan for the grid ``g``."""
    if isinstance(g, ReferenceGrid):
        # axis-aligned (flips allowed): the separable engine on the same coordinates, much faster
        separable = g.separable()
        resampler = Resampler(separable, order, mode, cval) if separable else AffineResampler(g, order, mode, cval)
    else:
        resampler = Resampler(g, order, mode, cval)
    source, smoothing = vol.source, None
    if antialias:
        smoothing = antialias_sigmas(g.ratios)
        if any(sg > 0 for sg in smoothing):
            source = Smoothed(vol.source, smoothing)
    # a smoothed window is float64 and briefly held twice while filtered:
    # counted as 16 bytes per input voxel (512x512x300 order 3 to 0.4x0.4x0.3
    # mm under --memory-limit 400MB: 263 MiB peak; at 8 bytes, 376 MiB)
    in_itemsize = 16 if source is not vol.source else vol.dtype.itemsize
    plan = plan_blocks(resampler, in_itemsize, out_dtype.itemsize, limit, workers, chunks, gzip=gzip)
    return resampler, source, smoothing, plan


def _dry_run(vol, resampler, out_path, kind, g, out_full, out_dtype, plan, limit, scratch, store_root, say,
             target_mm, to_mm):
    """Report what a run would need, and stop."""
    out_bytes = int(np.prod(out_full, dtype=np.int64)) * out_dtype.itemsize
    peak = plan.peak_bytes(out_full, out_dtype.itemsize, kind == ".nii.gz")
    say("")
    say("Dry run: nothing is read or written.")
    say(f"  Output shape: {out_full} ({out_dtype.name}), {format_bytes(out_bytes)} uncompressed"
        + (" (NIfTI-2)" if max(out_full) > 32767 else ""))
    say(f"  Blocks: {len(block_regions(out_full, plan.block))} of {'x'.join(map(str, plan.block))} voxels, "
        f"{plan.workers} at a time")
    say(f"  Memory: ~{format_bytes(plan.block_bytes)} per block, ~{format_bytes(peak)} peak "
        f"(budget {format_bytes(limit)})")
    disk = [f"output {format_bytes(out_bytes // 2 if kind == '.nii.gz' else out_bytes)}"
            + (" (compressed: an estimate)" if kind == ".nii.gz" else "") + f" in {out_path.parent}"]
    if vol.compressed:
        disk.append(f"decompressed input {format_bytes(vol.data_bytes)} in {scratch} (removed afterwards)")
    if store_root is not None:
        disk.append(f"zarr store {format_bytes(out_bytes)} in {store_root}")
    say(f"  Disk: {'; '.join(disk)}")
    return ResampleResult(
        input=str(vol.path), output=str(out_path), in_shape=tuple(vol.shape), out_shape=out_full,
        in_spacing_mm=tuple(float(v) for v in vol.spacing * to_mm),
        requested_spacing_mm=tuple(float(v) for v in target_mm),
        out_spacing_mm=tuple(float(v) for v in g.output_spacing(vol.spacing) * to_mm), verified_spacing_mm=(),
        affine=g.output_affine(vol.affine), grid=g.grid, order=resampler.order, mode=resampler.mode, dtype=out_dtype.name,
        block=plan.block, n_blocks=len(block_regions(out_full, plan.block)), workers=plan.workers,
        memory_limit=limit, nifti2=max(out_full) > 32767,
    )


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


#: An output this many times the input's size is refused without ``force``.
MAX_GROWTH = 16


def _check_output_size(vol, out_path, kind, g, extra, out_dtype, force, store_root=None) -> None:
    """Refuse, before writing anything, an output that cannot be meant or cannot fit
    (with the uncompressed zarr store under ``store_root``, when there is one)."""
    n_out = int(np.prod(tuple(g.out_shape) + tuple(extra), dtype=np.int64))
    out_bytes = n_out * out_dtype.itemsize
    in_bytes = int(np.prod(vol.shape, dtype=np.int64)) * vol.dtype.itemsize
    if not force and out_bytes > max(MAX_GROWTH * in_bytes, 2**30):
        raise UsageError(
            f"output would be {format_bytes(out_bytes)}, {out_bytes / max(in_bytes, 1):.0f}x the input "
            f"(shape {tuple(g.out_shape) + tuple(extra)}): check the spacing, or add --force"
        )
    need = out_bytes // 2 if kind == ".nii.gz" else out_bytes  # compressed: an estimate
    partial = out_path.parent / f".{out_path.name[: -len(kind)]}.bigresample-partial{kind}"
    if partial.exists():
        need -= partial.stat().st_size
    what = f"the output ({format_bytes(out_bytes)} uncompressed)"
    if store_root is not None and not store_location.is_url(store_root):
        if _same_filesystem(store_root, out_path.parent):
            need, what = need + out_bytes, what + f" and the zarr store ({format_bytes(out_bytes)})"
        else:
            check_free_space(store_root, out_bytes, f"the zarr store ({format_bytes(out_bytes)})")
    check_free_space(out_path.parent, need, what)


def _leading_axes(vol: InputVolume) -> list[dict]:
    """The non-spatial axes for an OME-Zarr output, in NGFF order, which is
    also their spatial-first order (``ome.SpatialView``): an OME-Zarr input's
    own; for a NIfTI, dimension 4 is time (its step and unit from the header),
    5 the components ("c", a channel axis), further ones custom."""
    if vol.extra_axes is not None:
        return vol.extra_axes
    hdr = vol.image.header
    zooms = hdr.get_zooms()
    unit = (hdr.get_xyzt_units()[1] if hasattr(hdr, "get_xyzt_units") else None) or "sec"
    axes = []
    for i in range(3, len(vol.shape)):
        if i == 3:
            axes.append({"name": "t", "type": "time", "unit": ome.TIME_UNITS.get(unit, "second"),
                         "scale": float(zooms[3]) if len(zooms) > 3 and zooms[3] > 0 else 1.0})
        else:
            axes.append({"name": "c" if i == 4 else f"dim{i + 1}", "type": "channel" if i == 4 else None,
                         "scale": 1.0})
    return axes


def _replace_folder(new: Path, target: Path) -> None:
    """Put the finished folder ``new`` at ``target``; an existing ``target``
    stays whole until then (moved aside, removed after)."""
    old = target.parent / f".{target.name}.bigresample-old"
    shutil.rmtree(old, ignore_errors=True)
    if target.exists() or target.is_symlink():
        os.replace(target, old)
    os.replace(new, target)
    if old.is_dir() and not old.is_symlink():
        shutil.rmtree(old, ignore_errors=True)
    else:
        old.unlink(missing_ok=True)


def _same_filesystem(a, b) -> bool:
    try:
        return os.stat(a).st_dev == os.stat(b).st_dev
    except OSError:
        return True


def _timing_text(t: dict) -> str:
    parts = []
    if "decompress" in t:
        parts.append(f"decompressing input {t['decompress']:.2f} s")
    parts.append(f"resampling {t['compute']:.2f} s")
    if t.get("write", 0) >= 0.005:
        parts.append(f"writing {t['write']:.2f} s")
    if "compare" in t:
        parts.append(f"comparing {t['compare']:.2f} s")
    if "qc" in t:
        parts.append(f"QC picture {t['qc']:.2f} s")
    return ", ".join(parts)


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
