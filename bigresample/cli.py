"""Command line: ``bigresample INPUT OUTPUT --spacing X Y Z`` and the seed's options;
``bigresample info FILE [--json]`` (``is_info``).

A thin layer over ``bigresample.pipeline.resample``.  Bad arguments or input
give one line on stderr naming the problem and the value, exit status 2, no
traceback (unless ``--debug``).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import sys
import threading
import time
import warnings
from pathlib import Path

from . import _signals, timeline
from ._version import __version__
from .errors import BigresampleError, UsageError, one_line
from .names import LABEL_METHODS, MODES

# Nothing numeric at the top: ``--help``, ``--version`` and a refused command
# line answer before numpy, nibabel and the run's modules are imported (each
# function imports what it uses; tests/test_startup.py counts what ``import
# bigresample.cli`` loads).

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
DTYPES = ("uint8", "int8", "uint16", "int16", "uint32", "int32", "int64", "float32", "float64")


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, not usage + line
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


class _LabelsAction(argparse.Action):
    """``--labels [METHOD]``: a word after a bare ``--labels`` that names no method but looks like a
    path (``bigresample --labels in.nii out.nii ...``) is a path, as it was before methods existed."""

    def __call__(self, parser, namespace, values, option_string=None):
        if values is not None and values not in LABEL_METHODS:
            if not ("." in values or os.sep in values or Path(values).exists()):
                parser.error(f"--labels METHOD must be one of {', '.join(LABEL_METHODS)}; got {values!r}")
            namespace.paths_before = [*getattr(namespace, "paths_before", []), values]
            values = self.const
        setattr(namespace, self.dest, values)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="bigresample",
        description="Resample a NIfTI volume to a new voxel spacing, exactly and in bounded memory.",
        epilog="Spacing values are in millimetres (0.1 mm = 100 microns) unless --units um. "
               "`bigresample info FILE [--json]` prints a file's geometry and how it was made.",
    )
    p.add_argument("paths", nargs="*", metavar="INPUT OUTPUT",
                   help="input image (.nii, .nii.gz, .hdr/.img, .mgz, ...) and output (.nii, .nii.gz, or .zarr "
                        "for OME-Zarr); with --output-dir, any number of inputs")
    p.add_argument("--labels", nargs="?", const="nearest", default=None, action=_LabelsAction, metavar="METHOD",
                   help="the input is a label map, every output value an input label (--order is not used; not "
                        "with --antialias): nearest (the default of --labels alone), linear or cubic (each label "
                        "interpolated, the largest wins), mode (downsampling: the most frequent label of each "
                        "output voxel's footprint); see docs/grids-and-exactness.md, 'Label maps'")
    bt = p.add_argument_group("several inputs")
    bt.add_argument("--output-dir", metavar="DIR",
                    help="resample every INPUT into DIR, keeping its name (plus --suffix); one failure does not "
                         "stop the others; exit status 2 if any failed")
    bt.add_argument("--suffix", default="", help="added to each output name before its extension (with --output-dir)")
    bt.add_argument("--verbose", action="store_true",
                    help="with --output-dir: print every file's full report (default: one line per file)")
    _target_options(p.add_argument_group("spacing (use --spacing, or any of the per-axis options)"))
    _interpolation_options(p.add_argument_group("interpolation"))
    _execution_options(p.add_argument_group("execution"))
    _output_options(p.add_argument_group("output"))
    return p


def _target_options(g) -> None:
    """--spacing and its spellings, --shape, --reference, --units."""
    g.add_argument("--spacing", nargs="+", metavar="X", help="new spacing as three values (x y z)")
    g.add_argument("--xyz-spacing", nargs="+", metavar="X", help="alternative syntax for --spacing")
    g.add_argument("--x-spacing", metavar="X", help="new x-spacing (others keep theirs)")
    g.add_argument("--y-spacing", metavar="Y", help="new y-spacing")
    g.add_argument("--z-spacing", metavar="Z", help="new z-spacing")
    g.add_argument("--shape", nargs="+", metavar="X",
                    help="instead of a spacing: the output shape in voxels (x y z); the field of view is kept")
    g.add_argument("--reference", metavar="IMAGE",
                    help="instead of a spacing: resample onto this image's grid (its shape and affine, "
                         "rotated or not); NIfTI or OME-Zarr")
    g.add_argument("--transform", action="append", metavar="FILE", dest="transforms",
                    help="a registration to apply, repeatable, in antsApplyTransforms' order: each output "
                         "point p samples the input at T2(T1(p)) for --transform T1 --transform T2 (ANTs: "
                         "--transform 1Warp.nii.gz --transform 0GenericAffine.mat); ITK/ANTs "
                         ".txt/.tfm/.mat, FSL .mat, FreeSurfer .lta, a 4x4 matrix, a displacement field; "
                         "'[FILE,1]' for an affine file's inverse (docs/registration.md)")
    g.add_argument("--units", choices=("mm", "um"), default="mm", help="units of the spacing values (default mm)")
    g.add_argument("--input-spacing", nargs=3, type=float, metavar=("X", "Y", "Z"),
                    help="the input's voxel spacing (in --units), for a file that gives none (a plain TIFF, a "
                         "slice folder, a plain Zarr array) or a wrong one")


def _interpolation_options(g) -> None:
    """--order, --grid, --mode, --cval, --antialias, --dtype."""
    g.add_argument(
        "--order", type=int, default=None, metavar="{0..5}",
        help="spline order: 0=nearest, 1=linear (default), 2=quadratic, 3=cubic, 4, 5",
    )
    g.add_argument("--grid", choices=("center", "origin", "zoom"), default="center",
                    help="where the output voxels sit (default center: field of view centred; origin: first "
                         "voxel kept, as nibabel and SimpleITK; zoom: as scipy.ndimage.zoom; see "
                         "docs/grids-and-exactness.md)")
    g.add_argument("--mode", default=None, metavar="MODE",
                    help=f"boundary mode: {', '.join(MODES)}; scipy.ndimage's modes, or itk: scipy's nearest "
                         "within half a voxel of the input, --cval beyond (ITK's and SimpleITK's rule). Default "
                         "itk with --reference, nearest otherwise")
    g.add_argument("--cval", type=float, default=0.0,
                    help="value outside the input for the constant modes and itk (default 0)")
    g.add_argument("--antialias", action="store_true",
                    help="Gaussian smoothing of downsampled axes before sampling (sigma (r-1)/2 input voxels)")
    g.add_argument("--dtype", choices=DTYPES, help="output data type (default: the input's stored type)")


def _execution_options(g) -> None:
    """Blocks, memory, threads, cluster, scratch."""
    g.add_argument("--chunks", nargs=3, type=int, metavar=("X", "Y", "Z"), help="output block shape in voxels")
    g.add_argument("--memory-limit", metavar="SIZE", help="memory budget, e.g. 2GB (default: half of available)")
    g.add_argument("--workers", type=int, metavar="N", help="threads computing blocks (default: CPU count)")
    g.add_argument("--scheduler", metavar="ADDRESS",
                     help="run the blocks on a running dask scheduler, e.g. tcp://10.0.0.5:8786")
    g.add_argument("--local-cluster", type=int, metavar="N",
                     help="start a dask LocalCluster of N worker processes for the run")
    g.add_argument("--tmp-dir", metavar="DIR",
                     help="scratch folder for a decompressed .nii.gz input (one the memory budget cannot hold) and the "
                          "zarr store (default: the output's folder), or a URL (s3://...) for the zarr store")
    g.add_argument("--keep-zarr", action="store_true", help="keep the zarr store after success")
    g.add_argument("--storage-option", action="append", metavar="KEY=VALUE", dest="storage_options",
                     help="an fsspec option for the URLs (s3://..., gs://...) of the run, e.g. "
                          "endpoint_url=http://127.0.0.1:9000 or anon=true; may be repeated (credentials: better "
                          "from the environment or the library's config, as they would show in the process list)")


def _output_options(g) -> None:
    """What else to produce or print."""
    g.add_argument("--compare", action="store_true", help="print min/max/mean/std of input and output")
    g.add_argument("--shards", nargs="+", metavar="N",
                     help="OME-Zarr output: zarr v3 shards of X Y Z chunks each, or 'auto' (at most 10,000 shard "
                          "files per level); blocks are planned as whole shards")
    g.add_argument("--levels", type=int, default=1, metavar="N",
                     help="OME-Zarr output: a pyramid of N levels, level k at 2^k times the spacing (default 1)")
    g.add_argument("--qc", metavar="PNG",
                     help="also draw input and output planes through the same point, both in world coordinates "
                          "(needs matplotlib)")
    g.add_argument("--quiet", action="store_true", help="no report, no progress bars")
    g.add_argument("--no-progress", action="store_true", help="no progress bars")
    g.add_argument("--dry-run", action="store_true",
                     help="print the plan (shapes, blocks, memory and disk needed), run every check a run would "
                          "make, and stop (exit status 2 if the run would be refused)")
    g.add_argument("--force", action="store_true",
                     help="skip the size rules: an output over 16x the input's size and over 1 GiB, or an axis "
                          "shrunk over 16x to fewer than 4 voxels, is refused otherwise")
    g.add_argument("--debug", action="store_true", help="show tracebacks")
    g.add_argument("--demo", action="store_true",
                     help="make a brain phantom at 100 um in ./bigresample-demo and resample it to 100x100x150 um "
                          "(leaves 500 MiB there, and says so)")
    g.add_argument("--version", action="version", version=f"bigresample {__version__}")


_terminated = threading.Event()


def _terminate(signum, frame):
    """SIGTERM (job schedulers, kill): stop like Ctrl-C, keeping finished blocks;
    the exit status then says SIGTERM (143), not Ctrl-C (130)."""
    _terminated.set()
    raise KeyboardInterrupt


def _interrupted_status() -> int:
    term = _terminated.is_set() or signal.SIGTERM in _signals.received
    return 128 + signal.SIGTERM if term else EXIT_INTERRUPTED


def _target_from_args(args) -> tuple[dict, str]:
    """``resample`` keywords for the one target the flags name (spacing, shape or reference) and the
    report's label; flags that name two targets are refused here, in the flags' words."""
    spacing, label = _spacing_from_args(args)
    if args.reference is not None:
        if spacing is not None or args.shape is not None:
            raise UsageError("give either --reference or a spacing/--shape, not both")
        return {"reference": args.reference}, f"onto the grid of {args.reference}"
    if args.shape is not None:
        if spacing is not None:
            raise UsageError("give either a spacing or --shape, not both")
        return {"shape": list(args.shape)}, "shape=" + "x".join(args.shape)
    if spacing is None:
        raise UsageError("no spacing given: use --spacing X Y Z, --x-spacing/--y-spacing/--z-spacing, --shape X Y Z "
                         "or --reference IMAGE")
    return {"spacing": spacing}, label


def _spacing_from_args(args) -> tuple[list | None, str | None]:
    """One spacing from --spacing, --xyz-spacing or --x/--y/--z-spacing (None if none is given)."""
    full = args.spacing if args.spacing is not None else args.xyz_spacing
    if args.spacing is not None and args.xyz_spacing is not None:
        raise UsageError("give --spacing or --xyz-spacing, not both")
    axes = (args.x_spacing, args.y_spacing, args.z_spacing)
    if full is not None:
        if any(v is not None for v in axes):
            raise UsageError("give either --spacing X Y Z or --x/--y/--z-spacing, not both")
        if len(full) != 3:  # the option's own count (nargs='+'), before Request sees a spacing
            raise UsageError(f"--spacing needs 3 values (x y z); got {len(full)}: {' '.join(full)}")
        return list(full), ", ".join(f"{a}={v}" for a, v in zip("xyz", full))
    if all(v is None for v in axes):
        return None, None
    return list(axes), ", ".join(f"{a}={v}" for a, v in zip("xyz", axes) if v is not None)


def _show_warning(message, category, filename, lineno, file=None, line=None):
    print(f"bigresample: warning: {message}", file=sys.stderr)


def _report_printer():
    """``print`` for the report that survives a reader going away (``| head``):
    the run goes on to the end, only the report stops."""
    alive = True

    def say(line):
        nonlocal alive
        if not alive:
            return
        try:
            print(line)
        except BrokenPipeError:
            alive = False
            # stdout's buffer would fail again when flushed at exit
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())

    return say


#: what may follow ``info``: the one FILE and these options (``is_info``)
INFO_OPTIONS = ("--json", "--storage-option", "--debug", "-h", "--help")


def is_info(argv) -> bool:
    """``bigresample info FILE [--json]``: the first word ``info`` and no option
    but ``INFO_OPTIONS``.  Every such command line was an error before ``info``
    existed (it names no target), so a file named ``info`` is resampled as
    before: ``bigresample info out.nii --spacing ...`` (or ``./info``)."""
    return bool(argv) and argv[0] == "info" and all(
        not a.startswith("-") or a.split("=", 1)[0] in INFO_OPTIONS for a in argv[1:])


def build_info_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="bigresample info",
                description="Print an image's geometry (shape, spacing, affine, qform/sform codes, units, type, "
                            "scaling, NIfTI version) and how it was made (its provenance record, if any).")
    p.add_argument("file", metavar="FILE", help="a NIfTI, any image nibabel reads, or an OME-Zarr (a folder or a URL)")
    p.add_argument("--json", action="store_true", help="print it as JSON")
    p.add_argument("--storage-option", action="append", metavar="KEY=VALUE", dest="storage_options",
                   help="an fsspec option for a URL, as for a run")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    return p


def info_main(argv) -> int:
    """``bigresample info FILE [--json]``: describe (``fileinfo.describe``), then print."""
    args = build_info_parser().parse_args(argv)
    from .fileinfo import describe
    from .report import info_lines
    from .request import parse_storage_options

    say = _report_printer()
    try:
        described = describe(args.file, parse_storage_options(args.storage_options))
    except BigresampleError as exc:
        if args.debug:
            raise
        print(f"bigresample: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except Exception as exc:  # a reader's own failure on an odd file: still one line
        if args.debug:
            raise
        print(f"bigresample: error: {args.file}: cannot be described ({type(exc).__name__}: "
              f"{one_line(exc)})", file=sys.stderr)
        return EXIT_USAGE
    if args.json:
        say(json.dumps(described, indent=2))
    else:
        for line in info_lines(described):
            say(line)
    return 0


def main(argv=None) -> int:
    """The command line: its exit status (0, 2 for a refusal, 130/143 when
    interrupted).  In the command-line process an interrupted run ends here
    (``_signals.leave``: the daemon worker threads are not finalised around)."""
    try:
        status = _main(argv)
    except KeyboardInterrupt:  # a signal after _main's own handlers were put back
        print("bigresample: interrupted", file=sys.stderr)
        status = _interrupted_status()
    return _signals.leave(status)


#: The BLAS libraries' thread counts, set in the command-line process unless the user set them.
#: A run's parallelism is its worker threads (``--workers``); numpy's BLAS is only asked about
#: 3x3 and 4x4 matrices, yet OpenBLAS starts a thread per core when numpy loads, which spins
#: on the cores the workers need (onto a rotated reference, 512x512x300, order 1, 2 workers:
#: 1.25-1.50 s -> 1.03-1.10 s wall, system time 0.5-0.7 -> 0.2 s; benchmarks/README.md).
BLAS_THREADS = {"OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "BLIS_NUM_THREADS": "1"}


def one_blas_thread() -> None:
    """Set ``BLAS_THREADS`` in the environment where the user has not: it takes effect if
    numpy is not imported yet, as in the command-line process (and the processes it starts)."""
    for name, value in BLAS_THREADS.items():
        os.environ.setdefault(name, value)


def _main(argv) -> int:
    one_blas_thread()
    t = timeline.now()
    argv = sys.argv[1:] if argv is None else [str(a) for a in argv]
    if is_info(argv):
        return info_main(argv[1:])
    args = build_parser().parse_args(argv)
    t = timeline.span("parse", t)
    # what a run needs, imported before _signals.running(): a signal while importing still ends at once
    from .pipeline import LabelMapWarning
    from .runner import Interrupted

    timeline.span("imports", t)

    args.argv = argv
    args.paths = [*getattr(args, "paths_before", []), *args.paths]
    log = None if args.quiet else _report_printer()
    main_thread = threading.current_thread() is threading.main_thread()
    _terminated.clear()
    previous = signal.signal(signal.SIGTERM, _terminate) if main_thread else None
    _signals.running()
    progress = not (args.quiet or args.no_progress) and sys.stderr.isatty()
    with warnings.catch_warnings():  # warnings as one line on stderr, for this call only
        warnings.showwarning = _show_warning
        warnings.simplefilter("always", LabelMapWarning)
        try:
            if args.demo:
                return _demo(args, log, progress)
            if args.order is not None and args.order not in range(6):
                raise UsageError(f"--order must be 0-5; got {args.order}")
            if args.verbose and args.quiet:
                raise UsageError("give --verbose or --quiet, not both")
            if args.output_dir is not None:
                target, label = _target_from_args(args)
                return _batch(args, target, label, log if args.verbose else None, progress)
            if args.verbose:
                raise UsageError("--verbose is for --output-dir (a single run prints its full report already)")
            if len(args.paths) != 2:
                raise UsageError(_paths_problem(len(args.paths)))
            target, label = _target_from_args(args)
            _run_one(args, args.paths[0], args.paths[1], target, label, log, progress)
            return 0
        except BigresampleError as exc:
            if args.debug:
                raise
            print(f"bigresample: error: {exc}", file=sys.stderr)
            return EXIT_USAGE
        except Interrupted as exc:
            print(f"bigresample: interrupted after {exc.done} of {exc.total} blocks; the finished ones are kept in "
                  f"{exc.partial} -- run the same command again to resume", file=sys.stderr)
            return _interrupted_status()
        except KeyboardInterrupt:
            print("bigresample: interrupted", file=sys.stderr)
            return _interrupted_status()
        finally:
            if main_thread:
                signal.signal(signal.SIGTERM, previous)


def _run_one(args, input, output, target, label, log, progress):
    from .pipeline import resample

    return resample(
        input,
        output,
        **target,
        units=args.units,
        compare=args.compare,
        progress=progress,
        log=log,
        spacing_label=label,
        dry_run=args.dry_run,
        **_options(args),
    )


def batch_output(input, output_dir, suffix="") -> Path:
    """``output_dir/NAME{suffix}.EXT``: the input's name and, for .nii and
    .nii.gz, its extension (other formats become .nii.gz)."""
    name = Path(input).name
    for ext in (".nii.gz", ".nii"):
        if name.lower().endswith(ext):
            return Path(output_dir) / f"{name[: -len(ext)]}{suffix}{name[-len(ext):]}"
    stem = name.rsplit(".", 2)[0] if name.lower().endswith((".img.gz", ".hdr.gz")) else Path(name).stem
    return Path(output_dir) / f"{stem}{suffix}.nii.gz"


def _batch(args, target, label, log, progress) -> int:
    """Every input into ``--output-dir``; one summary line each (and, with
    ``--verbose``, its report: ``log``); exit status 2 if any failed.  Ctrl-C
    stops the batch (the interrupted file resumes on a rerun, as a single run
    would)."""
    if not args.paths:
        raise UsageError("--output-dir needs at least one INPUT")
    if not Path(args.output_dir).is_dir():
        raise UsageError(f"--output-dir does not exist: {args.output_dir}")
    failed = 0
    for input in args.paths:
        output = batch_output(input, args.output_dir, args.suffix)
        try:
            r = _run_one(args, input, output, target, label, log, progress)
        except BigresampleError as exc:
            failed += 1
            print(f"bigresample: FAILED {input}: {exc}", flush=True)
            continue
        except (KeyboardInterrupt, SystemExit):
            raise
        except Exception as exc:  # the others still run; --debug shows it
            if args.debug:
                raise
            failed += 1
            print(f"bigresample: FAILED {input}: {type(exc).__name__}: {one_line(exc)}", flush=True)
            continue
        from .report import summary_line

        print(summary_line(input, output, r), flush=True)
    print(f"bigresample: {len(args.paths) - failed} of {len(args.paths)} done"
          + (f", {failed} failed" if failed else ""), flush=True)
    return EXIT_USAGE if failed else 0


def _paths_problem(n: int) -> str:
    """What is wrong with ``n`` (not 2) paths given without --output-dir."""
    usage = "bigresample INPUT OUTPUT (or --output-dir DIR, or --demo)"
    if n == 0:
        return f"no INPUT and OUTPUT given: {usage}"
    if n == 1:
        return f"no OUTPUT given: {usage}"
    return f"{n} paths given: one INPUT and one OUTPUT, or several inputs with --output-dir DIR"


def _options(args) -> dict:
    """The keyword arguments of ``resample`` that options set directly."""
    import numpy as np

    from .provenance import command_line

    return dict(
        order=args.order,
        grid=args.grid,
        mode=args.mode,
        cval=args.cval,
        dtype=np.dtype(args.dtype) if args.dtype else None,
        chunks=args.chunks,
        memory_limit=args.memory_limit,
        workers=args.workers,
        tmp_dir=args.tmp_dir,
        keep_zarr=args.keep_zarr,
        force=args.force,
        labels=args.labels,
        antialias=args.antialias,
        levels=args.levels,
        qc=args.qc,
        scheduler=args.scheduler,
        local_cluster=args.local_cluster,
        storage_options=args.storage_options,
        input_spacing=args.input_spacing,
        shards=args.shards,
        transforms=args.transforms,
        invocation=command_line(getattr(args, "argv", [])),
    )


def _demo(args, log, progress) -> int:
    from .demo import DEMO_SHAPE, make_phantom
    from .pipeline import resample
    from .plan import format_bytes

    folder = Path("bigresample-demo")
    folder.mkdir(exist_ok=True)
    src, out = folder / "phantom_100um.nii", folder / "phantom_100x100x150um.nii"
    if log:
        log(f"Making a brain phantom {DEMO_SHAPE} at 100 um ({format_bytes(_nifti_bytes(DEMO_SHAPE))}): {src}")
    t0 = time.perf_counter()
    make_phantom(src)
    made = time.perf_counter() - t0
    if log:
        log(f"Phantom made in {made:.2f} s")
        log("")
    result = resample(
        src,
        out,
        spacing=[None, None, 0.15],
        compare=True,
        progress=progress,
        log=log,
        spacing_label="z=0.15",
        **_options(args),
    )
    if log:
        sizes = [p.stat().st_size for p in (src, out)]
        log("")
        log(f"The demo took {time.perf_counter() - t0:.2f} s: making the phantom {made:.2f} s, the run above "
            f"{result.timings['total']:.2f} s")
        log(f"The demo left {format_bytes(sum(sizes))} in {folder.resolve()}: the phantom ({format_bytes(sizes[0])}) "
            f"and its resampled copy ({format_bytes(sizes[1])}); remove them with: rm -r {folder}")
    return 0


def _nifti_bytes(shape, itemsize=4) -> int:
    return 352 + math.prod(shape) * itemsize


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
