"""Issue 34's table in one run: bigresample against SimpleITK on every job, beside the I/O floor.

What it measures
----------------
One smooth 512x512x300 float32 volume at 0.1 mm (``bench_reference.make_inputs``:
``in.nii``, and ``ref.nii``, the input's grid rotated 15 degrees about z then 7
about x) is resampled, file to file, in seven jobs:

* z -> 0.15 mm (``--z-spacing``-like: ``--spacing 0.1 0.1 0.15``), orders 0, 1 and 3;
* every axis -> 0.13 x 0.07 x 0.15 mm, orders 1 and 3;
* onto the rotated reference, orders 1 and 3;

by ``python -P -m bigresample IN OUT ... --order K --workers 2 --quiet`` and by
SimpleITK with 2 threads (``bench_reference.SITK_SCRIPT``: ``ReadImage``,
``Resample`` onto the same grid, ``WriteImage``), each a subprocess timed and
memory-polled from outside (``bench_speed.measure``: wall time of the whole
process, peak RSS of its tree).  Beside them, in the same rounds:

* the I/O floor (``bench_speed.IO_FLOOR_SCRIPT`` with ``fsync``): read the input
  as the page cache holds it, write a file of the job's output size and flush
  it: what no file-to-file tool can beat here;
* the interpreter's start-up (``python -P -c pass``).

One warm-up round (not counted) puts the input in the page cache and
byte-compiles the package; then ``--repeats`` rounds, the three commands of a
job in a rotated order each round.  Printed per job: medians (and ranges) of
wall time and peak RSS, the ratio to SimpleITK (median of the round-by-round
ratios, and their range), the floor and bigresample's ratio to the floor plus
the interpreter's start-up.

How to run
----------
    python benchmarks/bench_table.py                      # 3 repeats, about 5 min on an idle 2-core machine
    python benchmarks/bench_table.py --shape 96 96 60 --repeats 1   # a quick try
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
from math import prod
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # the shared measuring helpers live beside this file
    sys.path.insert(0, str(HERE))

import nibabel as nib  # noqa: E402
import numpy as np  # noqa: E402

from bench_reference import CASES, SITK_SCRIPT, Case, byte_compile, center_grid, load_text, make_inputs  # noqa: E402
from bench_speed import IO_FLOOR_SCRIPT, MIB, NIFTI1_HEADER, header_lines, log, measure, remove  # noqa: E402

#: (label, target: "rotated" or a spacing in mm (None: the axis keeps its stored spacing), order)
ROWS = [
    ("z -> 0.15 mm, order 0", (None, None, 0.15), 0),
    ("z -> 0.15 mm, order 1", (None, None, 0.15), 1),
    ("z -> 0.15 mm, order 3", (None, None, 0.15), 3),
    ("every axis 0.13 x 0.07 x 0.15, order 1", (0.13, 0.07, 0.15), 1),
    ("every axis, order 3", (0.13, 0.07, 0.15), 3),
    ("onto a reference rotated 15/7 degrees, order 1", "rotated", 1),
    ("rotated, order 3", "rotated", 3),
]
TOOLS = ("bigresample", "simpleitk", "floor")


def grids(workdir: Path, src: Path, rotated_grid: Path, shape) -> dict:
    """{target: grid json path}: the rotated reference's, and the center grid of each spacing."""
    out = {"rotated": rotated_grid}
    affine = nib.load(src).affine
    stored = np.linalg.norm(affine[:3, :3], axis=0)
    for _, target, _ in ROWS:
        if target != "rotated" and target not in out:
            spacing = [s if t is None else t for s, t in zip(stored, target)]
            path = workdir / f"grid-{len(out)}.json"
            path.write_text(json.dumps(center_grid(shape, affine, spacing)))
            out[target] = path
    return out


def commands(tool: str, src: Path, dst: Path, target, order: int, grid: Path, scripts: dict) -> list[str]:
    if tool == "bigresample":
        if target == "rotated":
            aim = ["--reference", json.loads(grid.read_text())["reference"]]
        else:  # only the axes that change: the others keep their stored spacing, as SimpleITK's grid does
            aim = [a for axis, t in zip("xyz", target) if t is not None for a in (f"--{axis}-spacing", str(t))]
        return [sys.executable, "-P", "-m", "bigresample", str(src), str(dst), *aim, "--order", str(order),
                "--workers", "2", "--quiet"]
    if tool == "simpleitk":
        return [sys.executable, str(scripts["simpleitk"]), str(src), str(grid), str(dst), str(order)]
    shape = json.loads(grid.read_text())["shape"]
    return [sys.executable, str(scripts["floor"]), str(src), str(dst), str(NIFTI1_HEADER + 4 * prod(shape)), "fsync"]


def run_rounds(args, workdir, src, grid_of, scripts) -> tuple[dict, list]:
    """{(row, tool): [Run, ...]} of the counted rounds, and the interpreter's start-up times."""
    runs = {(r, t): [] for r in range(len(ROWS)) for t in TOOLS}
    interpreter = []
    dst = workdir / "out.nii"
    for rep in range(args.repeats + 1):  # round 0: the warm-up
        run = measure([sys.executable, "-P", "-c", "pass"], workdir)
        if rep:
            interpreter.append(run.seconds)
        for r, (label, target, order) in enumerate(ROWS):
            k = rep % len(TOOLS)
            for tool in TOOLS[k:] + TOOLS[:k]:
                run = measure(commands(tool, src, dst, target, order, grid_of[target], scripts), workdir,
                              args.timeout)
                remove(dst)
                log(f"[{rep}/{args.repeats}] {label} {tool}: {run.seconds:.2f} s, {run.peak_rss / MIB:.0f} MiB"
                    + ("" if run.ok else f" FAILED\n{run.stderr[-2000:]}") + f" (load {load_text()})")
                if rep:
                    runs[r, tool].append(run)
    return runs, interpreter


def _med(xs) -> float:
    return statistics.median(xs)


def _range(xs, spec=".2f") -> str:
    return f"{min(xs):{spec}}-{max(xs):{spec}}"


def table(runs: dict, interpreter: list) -> list[str]:
    start = _med(interpreter)
    rows = ["| job | bigresample s (MiB) | SimpleITK s (MiB) | ratio | I/O floor s | bigresample / (floor + "
            f"start-up {start:.2f} s) |", "|---|---:|---:|---:|---:|---:|"]
    for r, (label, _, _) in enumerate(ROWS):
        b, s, f = (runs[r, t] for t in TOOLS)
        if not all(x.ok for x in b + s + f) or not b:
            rows.append(f"| {label} | error | error | - | - | - |")
            continue
        bt, st, ft = ([x.seconds for x in runs_] for runs_ in (b, s, f))
        ratios = [x / y for x, y in zip(bt, st)]
        floor_ratio = [x / (y + start) for x, y in zip(bt, ft)]
        rows.append(
            f"| {label} | {_med(bt):.2f} ({_range(bt)}; {_med([x.peak_rss for x in b]) / MIB:.0f}) "
            f"| {_med(st):.2f} ({_range(st)}; {_med([x.peak_rss for x in s]) / MIB:.0f}) "
            f"| {_med(ratios):.2f} ({_range(ratios)}) | {_med(ft):.2f} ({_range(ft)}) "
            f"| {_med(floor_ratio):.2f} ({_range(floor_ratio)}) |")
    return rows


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shape", nargs=3, type=int, default=(512, 512, 300), metavar=("X", "Y", "Z"))
    p.add_argument("--repeats", type=int, default=3, help="counted rounds after the warm-up (default 3)")
    p.add_argument("--timeout", type=float, default=600.0, help="seconds before a run is killed")
    p.add_argument("--workdir", type=Path, help="default: a fresh folder under /tmp, removed at the end")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    created = args.workdir is None
    workdir = Path(tempfile.mkdtemp(prefix="bench_table_", dir="/tmp")) if created else args.workdir
    workdir.mkdir(parents=True, exist_ok=True)
    print("\n".join(header_lines("bench_table")), flush=True)
    print(f"load average at the start: {load_text()}\n", flush=True)
    try:
        shape = tuple(args.shape)
        src, rotated_grid, _ = make_inputs(workdir, Case(shape, ref_spacing=CASES["rotated"].ref_spacing), shape)
        grid_of = grids(workdir, src, rotated_grid, shape)
        scripts = {"simpleitk": workdir / "sitk_resample.py", "floor": workdir / "io_floor.py"}
        scripts["simpleitk"].write_text(SITK_SCRIPT)
        scripts["floor"].write_text(IO_FLOOR_SCRIPT)
        byte_compile(None)
        runs, interpreter = run_rounds(args, workdir, src, grid_of, scripts)
        print(f"{shape[0]}x{shape[1]}x{shape[2]} float32 at 0.1 mm, file to file, 2 threads each, median of "
              f"{args.repeats} (range in brackets); ratio: bigresample / SimpleITK round by round; load average "
              f"at the end: {load_text()}\n")
        print("\n".join(table(runs, interpreter)))
        failed = any(not x.ok for rs in runs.values() for x in rs)
        return 1 if failed else 0
    finally:
        if created:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
