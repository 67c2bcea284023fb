"""How soon bigresample answers: a refusal, a huge plan, a signal (the seconds the tests do not assert).

    python benchmarks/bench_responsiveness.py [--repeats 5] [--no-signals]

The tests check these claims by counting work (no block region worked out,
as many Python calls for 1e15 output voxels as for 1e12, flat memory, a
stopped run's unfinished blocks), which a loaded machine cannot fail; the
seconds they promise are measured here, medians of ``--repeats``:

* ``refusal``: ``bigresample in.nii out.nii --spacing 0.0001 0.0001 0.0001``
  on a 128x128x75 image at 0.1 mm (1.2e15 output voxels), refused by the size
  rules: a fresh process, imports included (promise: under a second);
* ``plan``: ``plan_job`` of that request with ``force=True`` (1e8 blocks),
  in this process (promise: no time);
* ``blocks``: ``BlockSet`` of 1.4e12 blocks counted, its last region and
  that region's index (promise: no time);
* ``signal while decompressing / computing / streaming the store``: SIGTERM
  sent at the moment tests/test_signals.py waits for, to the process's end
  (promise: within a second).

Prints one markdown table with the machine's load average.
"""

from __future__ import annotations

import argparse
import gzip
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np


def volume(path, shape, dtype=np.float32):
    data = np.random.default_rng(0).random(shape).astype(dtype)
    img = nib.Nifti1Image(data, np.diag([0.1, 0.1, 0.1, 1.0]))
    img.header.set_xyzt_units("mm", "sec")
    nib.save(img, path)


def refusal(folder: Path) -> float:
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, "-m", "bigresample", folder / "small.nii", folder / "out.nii",
                        "--spacing", "0.0001", "0.0001", "0.0001", "--quiet"], capture_output=True, text=True)
    took = time.perf_counter() - t0
    assert p.returncode == 2 and "output would be" in p.stderr, p.stderr
    return took


def plan(folder: Path) -> float:
    from bigresample.job import plan_job
    from bigresample.request import Request

    t0 = time.perf_counter()
    plan_job(Request.make(folder / "small.nii", folder / "out.nii", spacing=(1e-4,) * 3, force=True))
    return time.perf_counter() - t0


def blocks(folder: Path) -> float:
    from bigresample.blocks import BlockSet

    t0 = time.perf_counter()
    b = BlockSet((1_280_000, 1_280_000, 750_000, 3), (1024, 1024, 4))
    b.index(b.region(len(b) - 1))
    return time.perf_counter() - t0


def _stop_when(args, moment, cwd) -> float:
    proc = subprocess.Popen([sys.executable, "-m", "bigresample", *map(str, args), "--quiet"], cwd=cwd,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    while not moment():
        if proc.poll() is not None:
            raise RuntimeError(f"the run ended before the moment came: {proc.communicate()[1]}")
        time.sleep(0.001)
    t0 = time.perf_counter()
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=60)
    return time.perf_counter() - t0


def _clean(folder: Path, keep):
    for p in folder.iterdir():
        if p.name not in keep:
            subprocess.run(["rm", "-rf", str(p)], check=True)


def signal_decompressing(folder: Path) -> float:
    scratch = folder / "scratch"
    scratch.mkdir(exist_ok=True)
    # a budget too small to hold the input inflated beside the blocks: it goes to a scratch file
    took = _stop_when([folder / "big.nii.gz", folder / "out.nii", "--z-spacing", "0.2", "--tmp-dir", scratch,
                       "--memory-limit", "200MB"],
                      lambda: any(p.stat().st_size > 0 for p in scratch.iterdir()), folder)
    _clean(folder, {"small.nii", "mid.nii", "big.nii.gz"})
    return took


def signal_computing(folder: Path) -> float:
    journal = folder / ".out.nii.gz.bigresample-journal"
    took = _stop_when([folder / "mid.nii", folder / "out.nii.gz", "--z-spacing", "0.05", "--order", "3",
                       "--chunks", "256", "256", "4", "--workers", "2"],
                      lambda: journal.exists() and len(journal.read_text().splitlines()) > 3, folder)
    _clean(folder, {"small.nii", "mid.nii", "big.nii.gz"})
    return took


def signal_streaming(folder: Path) -> float:
    partial = folder / ".out.bigresample-partial.nii.gz"
    took = _stop_when([folder / "mid.nii", folder / "out.nii.gz", "--z-spacing", "0.05", "--keep-zarr",
                       "--chunks", "256", "256", "8"],
                      lambda: partial.exists() and partial.stat().st_size > 10**6, folder)
    _clean(folder, {"small.nii", "mid.nii", "big.nii.gz"})
    return took


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--no-signals", action="store_true", help="only the refusal, the plan and the blocks")
    a = ap.parse_args(argv)
    cases = {"refusal (fresh process, 1.2e15 voxels)": refusal, "plan_job, 1e8 blocks, in process": plan,
             "BlockSet of 1.4e12 blocks: count, region, index": blocks}
    if not a.no_signals:
        cases.update({"SIGTERM while decompressing (~100 MB .nii.gz)": signal_decompressing,
                      "SIGTERM while computing (256x256x120, order 3)": signal_computing,
                      "SIGTERM while streaming the store (--keep-zarr)": signal_streaming})
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        volume(folder / "small.nii", (128, 128, 75))
        if not a.no_signals:
            volume(folder / "mid.nii", (256, 256, 160))
            data = np.random.default_rng(0).integers(0, 2**31, size=(320, 320, 240), dtype=np.int32)
            img = nib.Nifti1Image(data, np.diag([0.1, 0.1, 0.1, 1.0]))
            raw = img.header.binaryblock + b"\0" * 4 + data.tobytes(order="F")
            (folder / "big.nii.gz").write_bytes(gzip.compress(raw, compresslevel=1))
        print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores; medians of {a.repeats}\n")
        print("| case | median s | max s |\n|---|---|---|")
        for name, case in cases.items():
            times = [case(folder) for _ in range(a.repeats)]
            print(f"| {name} | {statistics.median(times):.3f} | {max(times):.3f} |", flush=True)


if __name__ == "__main__":
    main()
