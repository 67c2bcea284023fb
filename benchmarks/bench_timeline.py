"""Where a run's time goes: the per-block timeline of the z-only and every-axis jobs at orders 0 and 1.

What it measures
----------------
The phantom (``bigresample.demo.make_phantom``, default 512x512x300 float32 at
0.1 mm, ``in.nii``) is resampled by ``python -m bigresample IN OUT ... --workers
2 --quiet`` in three jobs:

* ``z0``, ``z1``   -- ``--z-spacing 0.15``, orders 0 and 1;
* ``every1``       -- ``--spacing 0.13 0.07 0.15``, order 1;

each run with ``BIGRESAMPLE_TIMELINE`` set (``bigresample/timeline.py``: the run
records its steps and writes them as JSON when it exits).  Wall time is
measured from outside (``bench_speed.measure``, the whole process); the
timeline splits it into: the interpreter's start and ``import
bigresample.cli`` (process start to ``main``), parsing, the imports a run
needs, planning (``plan_job``, ``preflight``), the output's creation
(``begin``), the worker threads' start, the blocks (first submission to last
commit), the final ``fsync`` (``end``), the check and rename (``finish``),
reading the output back, and the interpreter's exit (the rest).  Inside the
blocks: the workers' read, compute (without the read) and write seconds
summed over the threads, the calling thread's wait for the next block in order
and its commits, the hand-off (a block's write done to its commit: median and
largest), and the background flushes (``rawio.BackgroundSync``).

``--startup`` measures the start-up alone instead: ``python -P -c "import
bigresample.cli"``, ``python -P -m bigresample --help`` and a run on a
32x32x20 float32 ``.nii`` (z -> 0.15 mm), whole-process wall time, median of
``--repeats``.

With ``--baseline DIR`` (another checkout of bigresample) the two run in turn
(A B A B ...) and each job's wall-time ratio is printed pair by pair: the way
each change of the start-up and per-block overheads was measured
(benchmarks/README.md, "Start-up and per-block overheads").  A baseline that
predates the timeline gives wall times only.

How to run
----------
    python benchmarks/bench_timeline.py                          # 3 repeats
    python benchmarks/bench_timeline.py --baseline /tmp/base --repeats 5
    python benchmarks/bench_timeline.py --shape 128 128 80 --repeats 1   # a quick try
    python benchmarks/bench_timeline.py --startup --repeats 10 --baseline /tmp/base
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # the shared measuring helpers live beside this file
    sys.path.insert(0, str(HERE))

from bench_speed import header_lines, log, measure, remove  # noqa: E402  (puts the repo on sys.path)

JOBS = {
    "z0": (["--z-spacing", "0.15", "--order", "0"], "z -> 0.15 mm, order 0"),
    "z1": (["--z-spacing", "0.15", "--order", "1"], "z -> 0.15 mm, order 1"),
    "every1": (["--spacing", "0.13", "0.07", "0.15", "--order", "1"], "every axis 0.13 x 0.07 x 0.15, order 1"),
}
#: the calling thread's steps, in the order a run takes them
STEPS = ("parse", "imports", "plan", "preflight", "attach", "begin", "threads", "blocks", "end", "finish",
         "read back")


def command(src: Path, dst: Path, job: str) -> list[str]:
    # -P: no current folder first on sys.path, so that PYTHONPATH chooses the checkout
    return [sys.executable, "-P", "-m", "bigresample", str(src), str(dst), *JOBS[job][0], "--workers", "2",
            "--quiet"]


def summarise(path: Path, wall: float) -> dict:
    """The timeline at ``path`` as {figure: seconds}."""
    data = json.loads(path.read_text())
    spans, origin = data["spans"], data["origin"]
    main = {}
    for thread, phase, _, start, end in spans:
        if thread == "MainThread" or phase in ("end",):
            main[phase] = main.get(phase, 0.0) + end - start
    first = min(s[3] for s in spans)
    out = {"wall": wall, "to main": first - origin if origin is not None else float("nan")}
    out.update({step: main.get(step, 0.0) for step in STEPS})
    for phase in ("read", "compute", "write", "flush"):
        out[phase] = sum(e - s for t, p, _, s, e in spans if p == phase and t != "MainThread")
    out["compute"] -= out["read"]  # compute spans hold the read
    out["wait"] = main.get("wait", 0.0)
    out["commit"] = main.get("commit", 0.0)
    written = {b: e for t, p, b, s, e in spans if p == "write"}
    handoff = [s - written[b] for t, p, b, s, e in spans if p == "commit" and b in written]
    out["hand-off median"] = statistics.median(handoff) if handoff else 0.0
    out["hand-off max"] = max(handoff) if handoff else 0.0
    out["blocks n"] = len(handoff)
    known = out["to main"] + sum(out[s] for s in STEPS)
    out["exit and rest"] = wall - known
    return out


def table(results: dict[str, list[dict]]) -> list[str]:
    figures = ["wall", "to main", *STEPS, "exit and rest", "read", "compute", "write", "wait", "commit",
               "hand-off median", "hand-off max", "flush"]
    jobs = list(results)
    rows = ["| seconds (median) | " + " | ".join(JOBS[j][1] for j in jobs) + " |",
            "|---|" + "---:|" * len(jobs)]
    for f in figures:
        cells = []
        for j in jobs:
            vals = [r[f] for r in results[j]]
            cells.append(f"{statistics.median(vals):.3f}")
        label = {"read": "  workers: read (2 threads, summed)", "compute": "  workers: compute",
                 "write": "  workers: write", "flush": "  background flush", "wait": "  main: wait in order",
                 "commit": "  main: commit (sink, journal)", "hand-off median": "  hand-off, median",
                 "hand-off max": "  hand-off, largest", "to main": "start, import bigresample.cli"}.get(f, f)
        rows.append(f"| {label} | " + " | ".join(cells) + " |")
    rows.append("| blocks | " + " | ".join(str(results[j][0]["blocks n"]) for j in jobs) + " |")
    return rows


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shape", nargs=3, type=int, default=(512, 512, 300), metavar=("X", "Y", "Z"))
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--jobs", nargs="+", default=list(JOBS), choices=list(JOBS))
    p.add_argument("--baseline", type=Path, help="another checkout of bigresample, run in turn with this one")
    p.add_argument("--workdir", type=Path, help="default: a fresh folder under /tmp, removed at the end")
    p.add_argument("--startup", action="store_true", help="time the start-up alone (import, --help, a tiny run)")
    return p.parse_args(argv)


def startup(workdir: Path, trees: dict, repeats: int) -> list[str]:
    """Whole-process wall time of importing the command line, ``--help`` and a tiny run, per tree."""
    import nibabel as nib
    import numpy as np

    src = workdir / "tiny.nii"
    nib.save(nib.Nifti1Image(np.random.default_rng(0).random((32, 32, 20), dtype=np.float32),
                             np.diag([0.1, 0.1, 0.1, 1.0])), src)
    cases = {"import bigresample.cli": [sys.executable, "-P", "-c", "import bigresample.cli"],
             "bigresample --help": [sys.executable, "-P", "-m", "bigresample", "--help"],
             "a 32x32x20 run": [sys.executable, "-P", "-m", "bigresample", str(src), str(workdir / "out.nii"),
                                "--z-spacing", "0.15", "--quiet"]}
    walls = {(c, t): [] for c in cases for t in trees}
    for rep in range(repeats + 1):  # round 0 warms up, not counted
        for case, cmd in cases.items():
            for tree, root in trees.items():
                run = measure(cmd, workdir, env=dict(os.environ, PYTHONPATH=str(root)))
                remove(workdir / "out.nii")
                if not run.ok:
                    raise RuntimeError(run.stderr)
                if rep:
                    walls[case, tree].append(run.seconds)
    rows = ["| wall s, median (range) | " + " | ".join(trees) + (" | ratio, median (range) |" if len(trees) > 1 else " |"),
            "|---|" + "---:|" * (len(trees) + (len(trees) > 1))]
    for case in cases:
        cells = [f"{statistics.median(walls[case, t]):.3f} ({min(walls[case, t]):.3f}-{max(walls[case, t]):.3f})"
                 for t in trees]
        if len(trees) > 1:
            r = [a / b for a, b in zip(walls[case, "this"], walls[case, "baseline"])]
            cells.append(f"{statistics.median(r):.3f} ({min(r):.3f}-{max(r):.3f})")
        rows.append(f"| {case} | " + " | ".join(cells) + " |")
    return rows


def main(argv=None) -> int:
    args = parse_args(argv)
    from bigresample.demo import make_phantom

    created = args.workdir is None
    workdir = Path(tempfile.mkdtemp(prefix="bench_timeline_", dir="/tmp")) if created else args.workdir
    workdir.mkdir(parents=True, exist_ok=True)
    print("\n".join(header_lines("bench_timeline")), flush=True)
    try:
        trees = {"this": HERE.parent}
        if args.baseline:
            trees["baseline"] = args.baseline.resolve()
        if args.startup:
            print("\n".join(startup(workdir, trees, args.repeats)))
            return 0
        src = workdir / "in.nii"
        make_phantom(src, shape=tuple(args.shape), spacing=0.1)
        results = {t: {j: [] for j in args.jobs} for t in trees}
        walls = {t: {j: [] for j in args.jobs} for t in trees}
        for rep in range(args.repeats + 1):  # the first round warms the page cache, not counted
            for job in args.jobs:
                for tree, root in trees.items():
                    dst, tl = workdir / "out.nii", workdir / f"timeline-{tree}.json"
                    env = dict(os.environ, PYTHONPATH=str(root), BIGRESAMPLE_TIMELINE=str(tl))
                    run = measure(command(src, dst, job), workdir, env=env)
                    remove(dst)
                    if not run.ok:
                        log(run.stderr)
                        return 1
                    if rep:
                        walls[tree][job].append(run.seconds)
                        if tl.exists():
                            results[tree][job].append(summarise(tl, run.seconds))
                    tl.unlink(missing_ok=True)
                    log(f"[{rep}/{args.repeats}] {job} {tree}: {run.seconds:.2f} s")
        for tree in trees:
            if results[tree][args.jobs[0]]:
                print(f"\n## {tree}: {trees[tree]}\n")
                print("\n".join(table(results[tree])))
        if args.baseline:
            print("\n## wall time, this / baseline, pair by pair (median, min-max)\n")
            for job in args.jobs:
                r = [a / b for a, b in zip(walls["this"][job], walls["baseline"][job])]
                print(f"- {JOBS[job][1]}: this {statistics.median(walls['this'][job]):.3f} s, baseline "
                      f"{statistics.median(walls['baseline'][job]):.3f} s, ratio {statistics.median(r):.3f} "
                      f"({min(r):.3f}-{max(r):.3f})")
        return 0
    finally:
        if created:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
