"""What a run tells its user: small events, and the renderers that turn them into text.

Planning and running emit events (``Opening``, ``Targeted``, ``GridChosen``,
``InputNotes``, ``Planned``, ``DryRun``, ``Verdict``, ``Started``, ``OnCluster``, ``NotResuming``,
``Pyramid``, ``Resumed``, ``Finished``) through a ``Report``; nothing else in
the package prints.  ``TextReport`` renders them as the report the command line
prints (the seed script's lines first); ``Report()`` renders nothing, which is
what ``--quiet`` and the API's ``verbose=False`` get.  A new report line is a
field on an event and a line in ``TextReport``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import singledispatchmethod
from pathlib import Path
from typing import Callable

import numpy as np

from .volume import NIFTI1_MAX_DIM  # the NIfTI-1 limit: nifti.output_header writes NIfTI-2 beyond
from .plan import format_bytes

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
#: how the default grid differs from the placement other tools use (docs/grids-and-exactness.md)
CENTER_VS_OTHERS = ("nibabel's resample_to_output and SimpleITK keep the first voxel's centre instead "
                    "(--grid origin matches them)")
AXES = "xyz"


# --------------------------------------------------------------------------
# events
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Opening:
    path: Path
    format: str  # "NIfTI-1 image", "MGH/MGZ image", "OME-Zarr image" (volume.InputVolume.format)
    spacing_from: str | None = "the header"  # where the input's spacing came from (volume.InputVolume.spacing_from)


@dataclass(frozen=True)
class InputNotes:
    """How the input is read, when it is not plainly: a damaged header's
    fallbacks ("sform unusable (...); using the qform"), a format read through
    its own slicing.  One line each."""

    path: Path
    lines: tuple[str, ...]


@dataclass(frozen=True)
class Targeted:
    shape: tuple[int, ...]
    spacing_mm: np.ndarray
    units: str  # the header's spatial units
    label: str | None  # what was asked, as typed ("z=0.15", "shape=10x10x10", ...)
    target_mm: np.ndarray


@dataclass(frozen=True)
class GridChosen:
    grid: str
    order: int
    mode: str
    cval: float
    zoom: np.ndarray | None = None  # per-axis zoom factors (spacing and shape targets)
    reference: Path | None = None  # a reference image's path (reference targets)
    reference_shape: tuple[int, ...] | None = None
    orientation: str = ""  # a reference's axes relative to the input's (geometry.Orientation.describe)
    labels: str | None = None  # --labels METHOD (labels.LABEL_METHODS): its own order whatever the order asked
    asked_order: int | None = None  # None: not given


@dataclass(frozen=True)
class Registered:
    transforms: tuple[str, ...]  # each map's source (file and format), in the order given
    affine: bool  # all affine: composed into one matrix


@dataclass(frozen=True)
class Planned:
    smoothing: tuple[float, ...] | None  # Gaussian sigmas of --antialias, or None
    block: tuple[int, ...]
    n_blocks: int
    workers: int
    block_bytes: int
    memory_limit: int
    kernel: str = ""  # kernel.describe(): the compiled kernel, or the fallback, why and what it costs
    chunk: tuple[int, ...] | None = None  # a sharded OME-Zarr's chunk (each block is one whole shard of them)


@dataclass(frozen=True)
class DryRun:
    out_shape: tuple[int, ...]
    dtype: str
    out_bytes: int
    block: tuple[int, ...]
    n_blocks: int
    workers: int
    block_bytes: int
    peak_bytes: int
    memory_limit: int
    disk: tuple[str, ...]  # one entry per folder written


@dataclass(frozen=True)
class Verdict:
    """A dry run passed every check the run makes before it starts."""


@dataclass(frozen=True)
class Started:
    pass


@dataclass(frozen=True)
class OnCluster:
    description: str
    store: str | None  # the intermediate zarr store, when the run goes through one
    writes: str  # where the workers write the blocks


@dataclass(frozen=True)
class NotResuming:
    what: str  # "the partial output NAME", "the zarr store PATH"
    why: str


@dataclass(frozen=True)
class Pyramid:
    shapes: tuple[tuple[int, ...], ...]


@dataclass(frozen=True)
class Resumed:
    done: int
    total: int
    in_store: bool  # the blocks were found in an intermediate zarr store


@dataclass(frozen=True)
class Finished:
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    grid: str
    target_mm: np.ndarray
    true_mm: np.ndarray
    verified_mm: np.ndarray
    nifti2: bool
    kept_store: str | None
    stats: dict | None
    qc: str | None
    timings: dict


# --------------------------------------------------------------------------
# renderers
# --------------------------------------------------------------------------


class Report:
    """Receives the events of a run; renders nothing.  ``progress``: show
    tqdm progress bars on stderr (``bar``)."""

    def __init__(self, progress: bool = False):
        self.progress = progress

    def __call__(self, event) -> None:
        pass

    def bar(self, total: int, desc: str, unit: str = "block"):
        """A progress bar (a context manager with ``update(n)``) for ``total`` steps."""
        if not self.progress:
            return _NoBar()
        from tqdm import tqdm

        return tqdm(total=total, desc=desc, unit=unit, leave=False, dynamic_ncols=True)


class _NoBar:
    def update(self, n=1):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


class TextReport(Report):
    """The human-readable report, line by line, into ``write`` (``print`` by default)."""

    def __init__(self, write: Callable[[str], None] = print, progress: bool = False):
        super().__init__(progress)
        self.write = write

    def __call__(self, event) -> None:
        for line in self.lines(event):
            self.write(line)

    @singledispatchmethod
    def lines(self, event):
        """The lines of ``event``: the renderer registered for its type below."""
        raise TypeError(f"TextReport has no lines for a {type(event).__name__} event")

    @lines.register
    def _opening(self, e: Opening):
        yield f"Loading {e.format}: {e.path}"
        if e.spacing_from != "the header":  # a NIfTI's pixdim goes without saying
            yield f"Spacing from {e.spacing_from}"

    @lines.register
    def _inputnotes(self, e: InputNotes):
        for line in e.lines:
            yield f"Note: {line}"

    @lines.register
    def _targeted(self, e: Targeted):
        yield ""
        yield f"Original volume shape: {e.shape}"
        yield f"Original spacing (mm): {fmt3(e.spacing_mm, '.4f')}"
        yield f"Original spacing (μm): {fmt3(e.spacing_mm * 1000, '.2f')}"
        if e.units == "unknown":
            yield "Header units: unknown (the header does not say; its numbers are read as mm)"
        elif e.units != "mm":
            yield f"Header units: {e.units} (spacings converted; the output keeps them)"
        yield ""
        if e.label:
            yield f"Changing spacing: {e.label}"
            yield ""
        yield f"Target spacing (mm): {fmt3(e.target_mm, '.4f')}"
        yield f"Target spacing (μm): {fmt3(e.target_mm * 1000, '.2f')}"
        yield ""

    @lines.register
    def _gridchosen(self, e: GridChosen):
        if e.zoom is not None:
            yield f"Zoom factors: {fmt3(e.zoom, '.4f')}"
            for a, z in zip(AXES, e.zoom):
                if z == 1.0:
                    yield f"  {a}-axis: No change"
                elif z < 1.0:
                    yield f"  {a}-axis: Downsampling ({z:.4f}x)"
                else:
                    yield f"  {a}-axis: Upsampling ({z:.4f}x)"
        else:
            yield (f"Reference grid: {e.reference}, shape {e.reference_shape}, {e.orientation} "
                   "(its header only: the reference's voxels are neither read nor checked)")
        yield ""
        yield from self._interpolation(e)
        yield f"Grid: {e.grid} ({GRID_NOTES[e.grid]})"
        if e.grid == "center":
            yield f"  {CENTER_VS_OTHERS}"
        if e.labels == "mode" and e.mode == "itk":
            yield (f"Boundary mode: itk (the label cval={e.cval:g} where an output voxel's centre is more than half "
                   f"a voxel beyond the input, or its footprint is empty)")
        elif e.labels == "mode":  # footprints are cut to the volume; cval fills a footprint beyond it
            yield f"Boundary mode: not used by --labels mode (an empty footprint gets cval={e.cval:g})"
        elif e.mode == "itk":
            yield (f"Boundary mode: itk (as ITK: scipy's nearest within half a voxel of the input, cval={e.cval:g} "
                   f"beyond; --mode nearest repeats the edge instead)")
        else:
            yield f"Boundary mode: {e.mode}" + (f" (cval={e.cval:g})" if "constant" in e.mode else "")

    @lines.register
    def _registered(self, e: Registered):
        n = len(e.transforms)
        yield (f"Registration: {n} transform{'s' if n != 1 else ''}, applied to each output point in the order "
               "listed (as antsApplyTransforms -t)" + (", composed into one affine" if e.affine and n > 1 else ""))
        for k, t in enumerate(e.transforms, 1):
            yield f"  {k}. {t}"
        yield ""

    def _interpolation(self, e: GridChosen):
        if e.labels == "mode":
            yield "Interpolation method: none (--labels mode)"
        else:
            yield (f"Interpolation method: {INTERPOLATION_NAMES[e.order]}"
                   + (", of each label's indicator" if e.labels in ("linear", "cubic") else ""))
        unused = f" (--order {e.asked_order} is not used)" \
            if e.asked_order is not None and e.asked_order != e.order else ""
        if e.labels == "nearest":
            yield "Labels: a label map is resampled by nearest neighbour, every output value an input label" + unused
        elif e.labels in ("linear", "cubic"):
            yield ("Labels: each label's indicator (1 on the label, 0 elsewhere) interpolated, the label with the "
                   "largest value kept (ties: the smallest label), every output value an input label" + unused)
        elif e.labels == "mode":
            yield ("Labels: the most frequent label among the input voxels of each output voxel's footprint "
                   "(ties: the smallest label), every output value an input label" + unused)

    @lines.register
    def _planned(self, e: Planned):
        if e.smoothing is not None:
            if any(sg > 0 for sg in e.smoothing):
                yield ("Anti-aliasing: Gaussian sigma (input voxels) "
                       + ", ".join(f"{a}={sg:.3g}" for a, sg in zip(AXES, e.smoothing))
                       + " ((r-1)/2, as scikit-image)")
            else:
                yield "Anti-aliasing: no axis is downsampled, nothing to smooth"
        yield (f"Block plan: {'x'.join(map(str, e.block))} output voxels per block, {e.n_blocks} blocks, "
               f"{e.workers} worker{'s' if e.workers != 1 else ''}, ~{format_bytes(e.block_bytes)} per block")
        if e.chunk is not None:
            yield (f"Shards: each block one whole shard of {'x'.join(map(str, e.chunk))}-voxel chunks "
                   f"({e.n_blocks} shard files for level 0)")
        yield f"Memory budget: {format_bytes(e.memory_limit)}"
        if e.kernel:
            yield f"Kernel: {e.kernel}"

    @lines.register
    def _dryrun(self, e: DryRun):
        yield ""
        yield "Dry run: nothing is read or written."
        yield (f"  Output shape: {e.out_shape} ({e.dtype}), {format_bytes(e.out_bytes)} uncompressed"
               + (" (NIfTI-2)" if max(e.out_shape) > NIFTI1_MAX_DIM else ""))
        yield f"  Blocks: {e.n_blocks} of {'x'.join(map(str, e.block))} voxels, {e.workers} at a time"
        yield (f"  Memory: ~{format_bytes(e.block_bytes)} per block, ~{format_bytes(e.peak_bytes)} peak "
               f"(budget {format_bytes(e.memory_limit)})")
        yield f"  Disk: {'; '.join(e.disk)}"

    @lines.register
    def _verdict(self, e: Verdict):
        yield ("Verdict: every check passed (size rules, free disk space, files beside the output); "
               "the run would go ahead.")

    @lines.register
    def _started(self, e: Started):
        yield ""
        yield "Resampling volume..."

    @lines.register
    def _oncluster(self, e: OnCluster):
        if e.store is not None:
            yield f"Cluster: {e.description}; zarr store {e.store}"
        else:
            yield f"Cluster: {e.description}; the workers write the blocks into {e.writes}"

    @lines.register
    def _notresuming(self, e: NotResuming):
        yield f"Note: not resuming {e.what}: {e.why}; starting again."

    @lines.register
    def _pyramid(self, e: Pyramid):
        yield f"Pyramid: {len(e.shapes)} levels, " + ", ".join("x".join(map(str, s)) for s in e.shapes)

    @lines.register
    def _resumed(self, e: Resumed):
        if e.in_store:
            yield (f"Resumed: {e.done} of {e.total} blocks were already in the zarr store from an "
                   "interrupted run.")
        else:
            yield f"Resumed: {e.done} of {e.total} blocks were already done by an interrupted run."

    @lines.register
    def _finished(self, e: Finished):
        yield f"Resampled volume shape: {e.out_shape}"
        for a, n, m in zip("XYZ", e.in_shape, e.out_shape):
            yield f"  {a}: {n} → {m} ({(m - n) / n * 100:+.1f}%)"
        yield ""
        if e.grid == "zoom" and not np.allclose(e.true_mm, e.target_mm, rtol=1e-6, atol=0):
            yield "Note: the zoom grid samples like scipy.ndimage.zoom, so the true spacing"
            yield f"      differs from the request: {fmt3(e.true_mm, '.6f')} mm (written in the header)"
        yield f"True output spacing (mm): {fmt3(e.true_mm, '.4f')}"
        yield f"Verified new spacing (mm): {fmt3(e.verified_mm, '.4f')}"
        yield f"Verified new spacing (μm): {fmt3(e.verified_mm * 1000, '.2f')}"
        if e.nifti2:
            yield f"Written as NIfTI-2: a dimension exceeds {NIFTI1_MAX_DIM} (the NIfTI-1 limit)"
        if e.kept_store:
            yield f"Zarr store kept: {e.kept_store}"
        if e.stats:
            yield ""
            yield "Comparison (scaled values, computed block by block):"
            yield f"  {'':8s} {'min':>14s} {'max':>14s} {'mean':>14s} {'std':>14s}"
            for label in ("input", "output"):
                s = e.stats[label]
                yield f"  {label:8s} {s['min']:14.6g} {s['max']:14.6g} {s['mean']:14.6g} {s['std']:14.6g}"
        if e.qc is not None:
            yield f"QC picture: {e.qc}"
        n_out = int(np.prod(e.out_shape))
        total = e.timings["total"]
        busy = total - e.timings.get("qc", 0.0)  # drawing the picture is not resampling
        yield ""
        yield (f"Elapsed: {total:.2f} s ({timing_text(e.timings)}); throughput {n_out / max(busy, 1e-9) / 1e6:.1f} "
               "Mvoxel/s" + (" (the QC picture not counted)" if "qc" in e.timings else ""))
        yield ""
        yield "Done!"


def summary_line(input, output, result) -> str:
    """The one line a batch prints for a finished file."""
    shapes = "x".join(map(str, result.in_shape)) + " -> " + "x".join(map(str, result.out_shape))
    took = f", {result.timings['total']:.2f} s" if "total" in result.timings else ""
    return f"bigresample: ok {input} -> {output} ({shapes}{took})"


def fmt3(values, fmt) -> str:
    return ", ".join(f"{a}={format(v, fmt)}" for a, v in zip(AXES, values))


def timing_text(t: dict) -> str:
    parts = []
    if "copy" in t:
        parts.append(f"copying input {t['copy']:.2f} s")
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


# --------------------------------------------------------------------------
# bigresample info FILE
# --------------------------------------------------------------------------


def info_lines(d: dict):
    """``fileinfo.describe``'s dict as the text ``bigresample info`` prints."""
    version = f", NIfTI-{d['nifti_version']}" if d.get("nifti_version") and "NIfTI" not in d["format"] else ""
    yield f"{d['file']}: {d['format']}{version}"
    axes = "x".join(map(str, d["shape"]))
    yield f"  Shape: {axes} ({' '.join(d['axes'])}), {d['dtype']}"
    unit = d["units"] if d["units"] != "unknown" else "unknown units"
    time = f"; time in {d['time_units']}" if d.get("time_units") and len(d["shape"]) > 3 else ""
    source = d.get("spacing_from", "the header")
    if source is None:
        yield f"  Spacing: none in the file (a run needs --input-spacing X Y Z){time}"
    else:
        yield f"  Spacing: {fmt3(d['spacing'], '.6g')} {unit}{time}" + (
            f" (from {source})" if source != "the header" else "")
    for note in d.get("notes") or ():
        if not note.startswith("spacing: none"):
            yield f"  Note: {note}"
    if d["zooms"][:3] != d["spacing"][:3] or len(d["zooms"]) > 3:
        yield f"  Header zooms: {', '.join(format(z, '.6g') for z in d['zooms'])}"
    yield "  Affine:"
    yield from _matrix_lines(d["affine"])
    if d.get("qform_code") is not None:
        yield f"  qform code: {d['qform_code']}, sform code: {d['sform_code']}"
    slope, inter = d.get("scl_slope"), d.get("scl_inter")
    yield "  Scaling: none" if slope is None or (slope == 1 and not inter) else f"  Scaling: slope {slope}, inter {inter}"
    if d.get("description"):
        yield f"  Description: {d['description']}"
    if d.get("intent"):
        yield f"  Intent: {d['intent']}"
    if d.get("extensions"):
        yield "  Extensions: " + ", ".join(f"{e['name']} ({e['code']}, {e['bytes']} bytes)" for e in d["extensions"])
    if d.get("ome"):
        yield f"  OME-Zarr: NGFF {d['ome']['version']}, {d['ome']['levels']} level(s)"
    yield from provenance_lines(d.get("provenance"))


def _matrix_lines(m):
    for row in m:
        yield "    [" + " ".join(f"{float(v):12.6g}" if isinstance(v, (int, float)) else f"{v:>12}" for v in row) + "]"


def provenance_lines(doc):
    """A provenance document (``bigresample.provenance``) as text, one block per step."""
    if not doc:
        yield "Provenance: none recorded"
        return
    steps = doc["steps"]
    yield f"Provenance: {len(steps)} step{'s' if len(steps) != 1 else ''} (schema {doc.get('bigresample_provenance')})"
    for k, st in enumerate(steps, 1):
        yield from _step_lines(k, st)


def _step_lines(k: int, st: dict):
    inp, out, how = st.get("input") or {}, st.get("output") or {}, st.get("resampling") or {}
    yield f"  {k}. {st.get('date')}  {st.get('tool', 'bigresample')} {st.get('version')}"
    inv = st.get("invocation") or {}
    if "command" in inv:
        yield "     command: " + " ".join(inv["command"])
    elif "function" in inv:
        args = ", ".join(f"{key}={value!r}" for key, value in inv.get("arguments", {}).items())
        yield f"     call: {inv['function']}({args})"
    size = "a folder" if inp.get("bytes") is None else f"{inp['bytes']} bytes"
    yield (f"     input: {inp.get('name')} ({inp.get('format')}, {size}), "
           f"{'x'.join(map(str, inp.get('shape', [])))} at {_spacing(inp)}")
    if inp.get("header_sha256"):
        yield f"     input header sha256: {inp['header_sha256']}"
    ref = st.get("reference")
    if ref:
        yield f"     reference: {ref.get('name')}, {'x'.join(map(str, ref.get('shape', [])))}"
    for t in st.get("transforms") or []:
        yield (f"     transform: {t.get('path')} ({t.get('format')}{', inverted' if t.get('inverse') else ''}), "
               f"sha256 {t.get('sha256')}")
    labels = f", labels {how['labels']}" if how.get("labels") else ""
    sigmas = how.get("antialias_sigmas")
    yield (f"     grid {how.get('grid')}, order {how.get('order')}{labels}, mode {how.get('mode')}, "
           f"cval {how.get('cval')}" + (f", antialias sigmas {sigmas}" if sigmas else ""))
    yield (f"     output: {out.get('name')}, {'x'.join(map(str, out.get('shape', [])))} at {_spacing(out)}, "
           f"{out.get('dtype')}")


def _spacing(part: dict) -> str:
    values = part.get("spacing") or []
    return " x ".join(format(v, ".6g") if isinstance(v, (int, float)) else str(v) for v in values) + \
        f" {part.get('units', '')}".rstrip()
