"""End-to-end speed and peak memory of bigresample against its peers, file in to file out.

What it measures
----------------
One brain phantom (default 512x512x300 float32 at 0.1 mm isotropic, written by
``bigresample.demo.make_phantom`` as ``in.nii`` and ``in.nii.gz``) is resampled
to 0.1 x 0.1 x 0.15 mm (only z changes) with spline orders 0, 1 and 3 by

* ``bigresample``  -- ``python -m bigresample IN OUT --z-spacing 0.15 --order K --quiet``
* ``seed``         -- the original script: nibabel ``get_fdata`` + ``scipy.ndimage.zoom``
                      on the whole array (slow; ``--skip-seed``)
* ``simpleitk``    -- ``sitk.ReadImage`` + ``ResampleImageFilter`` + ``sitk.WriteImage``
                      (all cores, the SimpleITK default)
* ``dask-image``   -- nibabel proxy -> ``dask.array`` -> ``dask_image.ndinterp.affine_transform``
                      -> threaded compute -> nibabel save (``.nii`` input only; ``--skip-dask-image``)

Every tool runs as a separate subprocess, so interpreter start-up and imports
count.  Wall time is ``time.perf_counter()`` around the whole subprocess.  Peak
RSS is the largest sum of RSS over the process and all its descendants, polled
every ~10 ms with psutil; because polling can miss a short spike it is raised
to the kernel's high-water mark (VmHWM) of any single process of the tree
when that is larger.  RSS counts file-backed pages a process maps
(e.g. nibabel memory-mapping an uncompressed input).

Each (format, order) gets one untimed warm-up run per tool first (so the page
cache holds the input); the warm-up output of bigresample is read back with
SimpleITK and nibabel to check its shape -- for ``.nii.gz`` this shows that
the concatenated gzip members bigresample writes are readable by SimpleITK.
Then ``--repeats`` timed rounds run, the tool order rotated each round so that
noise on a shared machine hits every tool alike.

The "I/O floor" is a subprocess that reads the input file (as stored) into
memory in 16 MiB chunks and writes a file of the output's stored size: the
time no file-to-file tool can beat on this machine.  bigresample fsyncs its
output, the peers do not; the floor is reported both without and with an
fsync at the end.

Speed is reported as a ratio to SimpleITK measured in the same run (these
machines are shared and noisy); absolute times are for orientation only.

How to run
----------
From the repository root, with the ``bench`` extra installed::

    python benchmarks/bench_speed.py                       # default 512x512x300, 3 repeats
    python benchmarks/bench_speed.py --repeats 3 --skip-seed
    python benchmarks/bench_speed.py --shape 64 64 40 --repeats 1   # a quick try

The report (markdown) goes to stdout, progress to stderr.
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import shutil
import statistics
import sys
import tempfile
import textwrap
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import numpy as np
import psutil

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # run from anywhere: use this checkout of bigresample
    sys.path.insert(0, str(REPO))

SPACING = 0.1  # mm, isotropic input
TARGET = (0.1, 0.1, 0.15)  # mm, only z changes
NIFTI1_HEADER = 352  # bytes before the data in a single-file NIfTI-1
TOOLS = ("bigresample", "seed", "simpleitk", "dask-image")
POLL = 0.01  # s between RSS samples
MIB = 2**20

# --------------------------------------------------------------------------- #
# The peers, as small scripts run by the same interpreter:                    #
#   python SCRIPT IN OUT ORDER TX TY TZ                                        #
# --------------------------------------------------------------------------- #

SEED_SCRIPT = '''\
"""The seed method: whole volume in memory, scipy.ndimage.zoom."""
import sys
import nibabel as nib
import numpy as np
import scipy.ndimage

src, dst, order = sys.argv[1], sys.argv[2], int(sys.argv[3])
target = np.array([float(v) for v in sys.argv[4:7]])
img = nib.load(src)
data = img.get_fdata()
affine = img.affine
current = np.sqrt(np.sum(affine[:3, :3] ** 2, axis=0))
zoom_factors = current / target
out = scipy.ndimage.zoom(data, zoom_factors, order=order, mode="nearest")
new_affine = affine.copy()
new_affine[:3, :3] = affine[:3, :3] * (target / current)  # scale the columns
# get_fdata gives float64; save in the input's type (float32) to be fair
nib.save(nib.Nifti1Image(out.astype(img.get_data_dtype()), new_affine), dst)
'''

SITK_SCRIPT = '''\
"""SimpleITK: ReadImage, ResampleImageFilter, WriteImage (all cores)."""
import sys
import SimpleITK as sitk

src, dst, order = sys.argv[1], sys.argv[2], int(sys.argv[3])
target = [float(v) for v in sys.argv[4:7]]
interpolators = {0: sitk.sitkNearestNeighbor, 1: sitk.sitkLinear, 3: sitk.sitkBSpline}  # cubic B-spline
img = sitk.ReadImage(src)
size = [max(1, int(round(n * s / t))) for n, s, t in zip(img.GetSize(), img.GetSpacing(), target)]
f = sitk.ResampleImageFilter()
f.SetOutputSpacing(target)
f.SetSize(size)
f.SetOutputDirection(img.GetDirection())
f.SetOutputOrigin(img.GetOrigin())
f.SetInterpolator(interpolators[order])
f.SetDefaultPixelValue(0)
out = f.Execute(img)
sitk.WriteImage(out, dst, useCompression=dst.endswith(".gz"))
'''

DASK_IMAGE_SCRIPT = '''\
"""dask-image: a lazy dask array over nibabel's proxy, ndinterp.affine_transform."""
import sys
import dask
import dask.array as da
import nibabel as nib
import numpy as np
from dask_image.ndinterp import affine_transform

src, dst, order = sys.argv[1], sys.argv[2], int(sys.argv[3])
target = np.array([float(v) for v in sys.argv[4:7]])
chunks = (256, 256, 64)
img = nib.load(src)
arr = da.from_array(img.dataobj, chunks=chunks, name=False)  # reads blocks on demand
current = np.sqrt(np.sum(img.affine[:3, :3] ** 2, axis=0))
ratio = target / current  # input index = ratio * output index
out_shape = tuple(max(1, int(round(n * s / t))) for n, s, t in zip(img.shape, current, target))
res = affine_transform(arr, matrix=np.diag(ratio), offset=0.0, output_shape=out_shape,
                       order=order, mode="nearest", output_chunks=chunks)
with dask.config.set(scheduler="threads"):
    out = res.compute()
new_affine = img.affine.copy()
new_affine[:3, :3] = img.affine[:3, :3] * ratio
nib.save(nib.Nifti1Image(out.astype(np.float32), new_affine), dst)
'''

IO_FLOOR_SCRIPT = '''\
"""The I/O floor: read the input file into memory, write a file of the output's size."""
import os
import sys

src, dst, nbytes, sync = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4] == "fsync"
chunk = 16 * 2**20
held = []
with open(src, "rb", buffering=0) as f:
    while True:
        b = f.read(chunk)
        if not b:
            break
        held.append(b)
buf = memoryview(bytes(chunk))
with open(dst, "wb", buffering=0) as f:
    left = nbytes
    while left > 0:
        left -= f.write(buf[: min(chunk, left)])
    if sync:
        os.fsync(f.fileno())
'''

SCRIPTS = {
    "seed": ("seed.py", SEED_SCRIPT),
    "simpleitk": ("sitk_resample.py", SITK_SCRIPT),
    "dask-image": ("dask_image_resample.py", DASK_IMAGE_SCRIPT),
    "io-floor": ("io_floor.py", IO_FLOOR_SCRIPT),
}


# --------------------------------------------------------------------------- #
# Measuring one subprocess                                                    #
# --------------------------------------------------------------------------- #


@dataclass
class Run:
    """One finished subprocess: wall time, peak RSS of its tree, exit status, stderr."""

    seconds: float
    peak_rss: int  # bytes
    returncode: int
    stderr: str = ""

    @property
    def ok(self) -> bool:
        return self.returncode == 0


def subprocess_env() -> dict:
    """The environment for the tools: this checkout of bigresample first on the path."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    return env


def _hwm(pid: int) -> int:
    """The kernel's RSS high-water mark of ``pid`` (VmHWM, bytes); 0 if unknown."""
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            for line in f:
                if line.startswith(b"VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def _sample(proc: psutil.Process) -> tuple[int, int]:
    """(RSS of ``proc`` plus all its descendants, largest VmHWM among them).

    Processes that end while being sampled are skipped.
    """
    try:
        procs = [proc, *proc.children(recursive=True)]
    except psutil.Error:
        return 0, 0
    total = hwm = 0
    for p in procs:
        try:
            total += p.memory_info().rss
        except psutil.Error:
            continue
        hwm = max(hwm, _hwm(p.pid))
    return total, hwm


def _kill_tree(proc: psutil.Process) -> None:
    try:
        children = proc.children(recursive=True)
    except psutil.Error:
        children = []
    for p in [*children, proc]:
        try:
            p.kill()
        except psutil.Error:
            pass


def measure(cmd: list[str], log_dir: Path, timeout: float = 3600.0, env: dict | None = None) -> Run:
    """Run ``cmd`` to completion; wall time and peak RSS of its process tree.

    Peak RSS is the largest of the polled sums of RSS over the process tree
    and of the kernel's high-water mark (VmHWM) of any one process in it, which
    catches a spike between two polls.  (``ru_maxrss`` from ``wait4`` would not
    do: it starts from the RSS of this process at the fork.)
    """
    err_path = log_dir / "stderr.txt"
    with open(os.devnull, "wb") as out, open(err_path, "wb") as err:
        t0 = time.perf_counter()
        proc = psutil.Popen(cmd, stdout=out, stderr=err, env=env or subprocess_env())
        peak = 0
        deadline = t0 + timeout
        timed_out = False
        while proc.poll() is None:
            peak = max(peak, *_sample(proc))
            if time.perf_counter() > deadline:
                _kill_tree(proc)
                proc.wait()
                timed_out = True
                break
            time.sleep(POLL)
        seconds = time.perf_counter() - t0
    returncode = proc.returncode
    stderr = err_path.read_text(errors="replace")
    if timed_out:
        stderr += f"\n[timed out after {timeout:.0f} s]"
    return Run(seconds, peak, returncode, stderr)


def remove(path: Path) -> None:
    """Delete a file or folder if present (an output between runs)."""
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


# --------------------------------------------------------------------------- #
# Inputs, commands and checks                                                 #
# --------------------------------------------------------------------------- #


def output_shape(shape, spacing=SPACING, target=TARGET) -> tuple[int, ...]:
    """round(n * s / t) per axis, as every tool here computes it."""
    return tuple(max(1, int(round(n * spacing / t))) for n, t in zip(shape, target))


def make_inputs(workdir: Path, shape, formats) -> dict[str, Path]:
    """Write the phantom once per format (slab by slab, never whole)."""
    from bigresample.demo import make_phantom

    inputs = {}
    for fmt in formats:
        path = workdir / f"in{fmt}"
        t0 = time.perf_counter()
        make_phantom(path, shape=tuple(shape), spacing=SPACING)
        log(f"made {path} ({path.stat().st_size / 1e6:.1f} MB) in {time.perf_counter() - t0:.1f} s")
        inputs[fmt] = path
    return inputs


def write_scripts(workdir: Path) -> dict[str, Path]:
    paths = {}
    for tool, (name, text) in SCRIPTS.items():
        path = workdir / name
        path.write_text(text)
        paths[tool] = path
    return paths


def tool_command(tool: str, src: Path, dst: Path, order: int, scripts: dict[str, Path]) -> list[str]:
    if tool == "bigresample":
        return [sys.executable, "-m", "bigresample", str(src), str(dst),
                "--z-spacing", str(TARGET[2]), "--order", str(order), "--quiet"]
    return [sys.executable, str(scripts[tool]), str(src), str(dst), str(order), *map(str, TARGET)]


def floor_command(src: Path, dst: Path, nbytes: int, fsync: bool, scripts: dict[str, Path]) -> list[str]:
    return [sys.executable, str(scripts["io-floor"]), str(src), str(dst), str(nbytes),
            "fsync" if fsync else "nosync"]


def check_output(path: Path, expected: tuple[int, ...], with_sitk: bool) -> tuple[bool, bool | None, str]:
    """(nibabel shape ok, SimpleITK read + shape ok or None if not tried, message)."""
    import nibabel as nib

    notes = []
    try:
        nib_shape = tuple(nib.load(path).shape)
        nib_ok = nib_shape == expected
        if not nib_ok:
            notes.append(f"nibabel shape {nib_shape} != {expected}")
    except Exception as exc:  # noqa: BLE001 -- report any failure to read
        nib_ok = False
        notes.append(f"nibabel cannot read it: {exc}")
    sitk_ok = None
    if with_sitk:
        import SimpleITK as sitk

        try:
            img = sitk.ReadImage(str(path))
            arr = sitk.GetArrayViewFromImage(img)  # forces the full decompression
            sitk_shape = tuple(img.GetSize())
            sitk_ok = sitk_shape == expected and bool(np.isfinite(arr).all())
            if sitk_shape != expected:
                notes.append(f"SimpleITK size {sitk_shape} != {expected}")
            del arr, img
        except Exception as exc:  # noqa: BLE001
            sitk_ok = False
            notes.append(f"SimpleITK cannot read it: {exc}")
    return nib_ok, sitk_ok, "; ".join(notes)


# --------------------------------------------------------------------------- #
# Report                                                                       #
# --------------------------------------------------------------------------- #


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def machine_info() -> list[str]:
    import bigresample

    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    mem = psutil.virtual_memory()
    return [
        f"- nproc: {usable} (os.cpu_count {os.cpu_count()}), CPU: {cpu}",
        f"- RAM: {mem.total / 2**30:.1f} GiB total, {mem.available / 2**30:.1f} GiB available at start",
        f"- platform: {platform.platform()}; Python {platform.python_version()}",
        f"- numpy {np.__version__}, scipy {_version('scipy')}, nibabel {_version('nibabel')}, "
        f"SimpleITK {_version('SimpleITK')}, bigresample {bigresample.__version__}, "
        f"dask {_version('dask')}, dask-image {_version('dask-image')}, psutil {psutil.__version__}",
    ]


def header_lines(title: str = "bench_speed") -> list[str]:
    """A title, the exact command line and the machine, as markdown lines."""
    cmd = shlex.join([sys.executable, *sys.argv])
    return [f"# {title}", "", "```", cmd, "```", "", *machine_info(), ""]


def _fmt(x: float | None, spec: str) -> str:
    return "-" if x is None else format(x, spec)


@dataclass
class Cell:
    """All timed runs of one tool at one (format, order)."""

    runs: list[Run] = field(default_factory=list)
    skipped: str | None = None  # why there is no measurement ("-")

    @property
    def good(self) -> list[Run]:
        return [r for r in self.runs if r.ok]

    @property
    def failed(self) -> bool:
        return any(not r.ok for r in self.runs)

    def median_time(self) -> float | None:
        return statistics.median(r.seconds for r in self.good) if self.good and not self.failed else None

    def min_time(self) -> float | None:
        return min(r.seconds for r in self.good) if self.good and not self.failed else None

    def median_rss(self) -> float | None:
        return statistics.median(r.peak_rss for r in self.good) / MIB if self.good and not self.failed else None


def results_table(cells: dict, formats, orders, tools) -> list[str]:
    rows = [
        "| format | order | tool | median wall (s) | min wall (s) | median peak RSS (MiB) "
        "| time / SimpleITK | RSS < SimpleITK |",
        "|---|---:|---|---:|---:|---:|---:|---|",
    ]
    for fmt in formats:
        for order in orders:
            ref = cells[fmt, order].get("simpleitk")
            ref_t = ref.median_time() if ref else None
            ref_m = ref.median_rss() if ref else None
            for tool in tools:
                cell = cells[fmt, order][tool]
                if cell.skipped:
                    rows.append(f"| {fmt} | {order} | {tool} | - | - | - | - | - |")
                    continue
                if cell.failed or not cell.good:
                    rows.append(f"| {fmt} | {order} | {tool} | error | error | error | - | - |")
                    continue
                t, m = cell.median_time(), cell.median_rss()
                ratio = f"{t / ref_t:.2f}" if ref_t else "-"
                smaller = "-" if tool == "simpleitk" or ref_m is None else ("yes" if m < ref_m else "no")
                rows.append(f"| {fmt} | {order} | {tool} | {t:.2f} | {cell.min_time():.2f} | {m:.0f} "
                            f"| {ratio} | {smaller} |")
    return rows


def floor_table(floors: dict, floor_sizes: dict, cells: dict, formats, orders) -> list[str]:
    rows = [
        "| format | bytes read | bytes written | I/O floor (s) | floor + fsync (s) "
        "| bigresample order 1 (s) | bigresample / floor | bigresample / floor+fsync |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for fmt in formats:
        nosync, sync = floors[fmt, False], floors[fmt, True]
        f0, f1 = nosync.median_time(), sync.median_time()
        cell = cells[fmt, 1]["bigresample"] if 1 in orders else None
        b = cell.median_time() if cell else None
        r0 = f"{b / f0:.1f}" if b and f0 else "-"
        r1 = f"{b / f1:.1f}" if b and f1 else "-"
        read, written = floor_sizes[fmt]
        rows.append(f"| {fmt} | {read / 1e6:.1f} MB | {written / 1e6:.1f} MB | {_fmt(f0, '.2f')} "
                    f"| {_fmt(f1, '.2f')} | {_fmt(b, '.2f')} | {r0} | {r1} |")
    return rows


# --------------------------------------------------------------------------- #
# The benchmark                                                               #
# --------------------------------------------------------------------------- #


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workdir", type=Path,
                   help="folder for inputs, outputs and the tool scripts (default: a fresh folder under /tmp, "
                        "deleted at the end)")
    p.add_argument("--shape", nargs=3, type=int, default=(512, 512, 300), metavar=("X", "Y", "Z"),
                   help="input shape in voxels at 0.1 mm (default 512 512 300)")
    p.add_argument("--orders", nargs="+", type=int, default=[0, 1, 3], choices=(0, 1, 3),
                   help="spline orders (default 0 1 3)")
    p.add_argument("--formats", nargs="+", default=[".nii", ".nii.gz"], choices=(".nii", ".nii.gz"),
                   help="input (and output) formats (default both)")
    p.add_argument("--repeats", type=int, default=3, help="timed rounds (default 3)")
    p.add_argument("--skip-seed", action="store_true", help="do not run the (slow) seed method")
    p.add_argument("--skip-dask-image", action="store_true", help="do not run dask-image")
    p.add_argument("--timeout", type=float, default=3600.0, help="seconds before a run is killed (default 3600)")
    p.add_argument("--keep", action="store_true", help="keep the work folder (inputs, scripts)")
    args = p.parse_args(argv)
    if args.repeats < 1:
        p.error("--repeats must be >= 1")
    if min(args.shape) < 1:
        p.error("--shape values must be >= 1")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    formats = list(dict.fromkeys(args.formats))
    orders = list(dict.fromkeys(args.orders))
    tools = [t for t in TOOLS
             if not (t == "seed" and args.skip_seed) and not (t == "dask-image" and args.skip_dask_image)]
    created = args.workdir is None
    workdir = Path(tempfile.mkdtemp(prefix="bench_speed_", dir="/tmp")) if created else args.workdir
    workdir.mkdir(parents=True, exist_ok=True)

    print("\n".join(header_lines()), flush=True)
    shape = tuple(args.shape)
    out_shape = output_shape(shape)
    print(f"Input {shape[0]}x{shape[1]}x{shape[2]} float32 at {SPACING} mm -> spacing "
          f"{' x '.join(map(str, TARGET))} mm = {out_shape[0]}x{out_shape[1]}x{out_shape[2]}; "
          f"{args.repeats} timed repeat(s) after 1 warm-up; work folder {workdir}\n", flush=True)

    try:
        inputs = make_inputs(workdir, shape, formats)
        scripts = write_scripts(workdir)
        cells = {(fmt, order): {t: Cell() for t in tools} for fmt in formats for order in orders}
        for fmt in formats:
            for order in orders:
                if "dask-image" in tools and fmt != ".nii":
                    cells[fmt, order]["dask-image"].skipped = "dask-image runs on .nii only"
        floors = {(fmt, sync): Cell() for fmt in formats for sync in (False, True)}
        out_bytes = int(np.prod(out_shape)) * 4 + NIFTI1_HEADER
        readable = warm_up(cells, tools, formats, orders, inputs, scripts, workdir, out_shape, args.timeout)
        floor_sizes = {fmt: (inputs[fmt].stat().st_size, readable[fmt][1] or out_bytes) for fmt in formats}

        for rep in range(args.repeats):
            for fmt in formats:
                src = inputs[fmt]
                dst = workdir / f"out{fmt}"
                for sync in (False, True)[:: 1 if rep % 2 == 0 else -1]:
                    run = measure(floor_command(src, dst, floor_sizes[fmt][1], sync, scripts),
                                  workdir, args.timeout)
                    remove(dst)
                    report_run(f"[{rep + 1}/{args.repeats}] {fmt} io-floor{' +fsync' if sync else ''}", run)
                    floors[fmt, sync].runs.append(run)
                for order in orders:
                    active = [t for t in tools if not cells[fmt, order][t].skipped]
                    k = rep % len(active)
                    for tool in active[k:] + active[:k]:
                        run = measure(tool_command(tool, src, dst, order, scripts), workdir, args.timeout)
                        remove(dst)
                        report_run(f"[{rep + 1}/{args.repeats}] {fmt} order {order} {tool}", run)
                        cells[fmt, order][tool].runs.append(run)

        print("## Wall time and peak RSS (median of "
              f"{args.repeats} run{'s' if args.repeats > 1 else ''})\n")
        print("\n".join(results_table(cells, formats, orders, tools)))
        print("\n## I/O floor (read the input as stored, write a file of the output's stored size; "
              "no (de)compression)\n")
        print("\n".join(floor_table(floors, floor_sizes, cells, formats, orders)))
        print("\n## bigresample output check (warm-up runs)\n")
        for fmt in formats:
            ok, _, notes = readable[fmt]
            verdict = "not checked (bigresample failed)" if ok is None else ("yes" if ok else "no")
            print(f"- {fmt}: readable by SimpleITK: {verdict} "
                  f"(SimpleITK and nibabel shape {out_shape} for orders {' '.join(map(str, orders))})"
                  + (f" -- {notes}" if notes else ""))
        failures = [(fmt, order, tool) for (fmt, order), row in cells.items()
                    for tool, cell in row.items() if cell.failed]
        failures += [(fmt, "-", "io-floor") for (fmt, _), cell in floors.items() if cell.failed]
        if failures:
            print("\nFailed runs: " + ", ".join(f"{t} {f} order {o}" for f, o, t in failures))
        return 1 if failures else 0
    finally:
        if created and not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
        elif created:
            log(f"kept {workdir}")


def report_run(label: str, run: Run) -> None:
    status = "ok" if run.ok else f"FAILED (exit {run.returncode})"
    log(f"{label}: {run.seconds:.2f} s, peak RSS {run.peak_rss / MIB:.0f} MiB, {status}")
    if not run.ok:
        log(textwrap.indent(run.stderr.strip()[-4000:], "    "))


def warm_up(cells, tools, formats, orders, inputs, scripts, workdir, out_shape, timeout) -> dict:
    """One untimed run per tool and (format, order); check every output's shape.

    Returns {format: (bigresample outputs readable by SimpleITK (None: none made), size in bytes of
    bigresample's order-1 output (else the first order's) or None, notes)}.
    """
    readable = {}
    for fmt in formats:
        src = inputs[fmt]
        dst = workdir / f"out{fmt}"
        sitk_ok, notes, size = None, [], None
        for order in orders:
            for tool in tools:
                if cells[fmt, order][tool].skipped:
                    continue
                run = measure(tool_command(tool, src, dst, order, scripts), workdir, timeout)
                report_run(f"[warm-up] {fmt} order {order} {tool}", run)
                if not run.ok:
                    remove(dst)
                    continue
                nib_ok, s_ok, note = check_output(dst, out_shape, with_sitk=tool == "bigresample")
                if tool == "bigresample":
                    sitk_ok = (sitk_ok is not False) and bool(s_ok) and nib_ok
                    if size is None or order == 1:
                        size = dst.stat().st_size
                if note:
                    notes.append(f"{tool} order {order}: {note}")
                    log(f"    output check: {note}")
                remove(dst)
        readable[fmt] = (sitk_ok, size, "; ".join(notes))
    return readable


if __name__ == "__main__":
    sys.exit(main())
