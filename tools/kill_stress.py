"""Kill runs of the command line at random moments, then resume them (issue 28).

Each run resamples a small volume in many small blocks (the case of
tests/test_reliability.py) to a .nii, .nii.gz or .zarr output, and gets
SIGTERM or SIGINT after a random delay (from the process's start to the end
of an uninterrupted run: imports, planning, blocks, the finish).  Every run
must exit 143 (SIGTERM) or 130 (SIGINT) -- or 0 when the signal came after it
had finished -- and never print "Fatal Python error" (a signal during
CPython's own start-up, before bigresample's first line has run, is tallied
apart: only CPython answers it); then the same command
again must exit 0 with the uninterrupted output's bytes (NIfTI: all but the
provenance record, which names the date; zarr: every array's values).

    python tools/kill_stress.py --runs 200 [--jobs 2] [--seed 1] [--keep DIR]

Not run by CI (minutes); prints a tally and exits 1 if any run broke a rule.
"""

from __future__ import annotations

import argparse
import collections
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import nibabel as nib
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

ARGS = ["--z-spacing", "0.13", "--order", "3", "--workers", "1", "--chunks", "64", "64", "2", "--quiet"]
KINDS = (".nii", ".nii.gz", ".zarr")
SIGNALS = {"TERM": (signal.SIGTERM, 143), "INT": (signal.SIGINT, 130)}


def command(src: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "bigresample", str(src), str(out), *ARGS]


def make_input(folder: Path) -> Path:
    from scipy import ndimage

    rng = np.random.default_rng(7)
    data = ndimage.gaussian_filter(rng.standard_normal((64, 64, 240)), 2) * 3000
    src = folder / "in.nii"
    nib.save(nib.Nifti1Image(data.astype(np.int16), np.diag([0.1, 0.1, 0.1, 1.0])), src)
    return src


def content(out: Path):
    """What must be identical between an interrupted-then-resumed run and an uninterrupted one."""
    if out.suffix == ".zarr":
        import zarr

        group = zarr.open_group(str(out), mode="r")
        return {name: np.asarray(arr[...]).tobytes() for name, arr in sorted(group.arrays())}
    from tests.helpers import same_but_provenance

    return same_but_provenance(out)


def phase(out: Path) -> str:
    """Where the run was when the signal was sent: before its first block, in them, or finishing."""
    journal = out.parent / f".{out.name}.bigresample-journal"
    try:
        lines = journal.read_text().splitlines()
    except OSError:
        return "finishing" if out.exists() else "starting"
    return "blocks" if len(lines) > 1 else "planned"


def before_bigresample(status: int, sig: int, err: str) -> bool:
    """The signal came while CPython itself was starting, before the first
    line of bigresample (its handlers, bigresample/_signals.py, are then not
    installed): killed by it (-15, -2), or CPython's "init_import_site" error
    when Ctrl-C interrupts the site module.  Nothing of the run exists yet;
    the tally counts these apart: no code of the package can answer them."""
    if status == -sig and "bigresample" not in err:
        return True
    return status == 1 and "init_import_site" in err and "bigresample/" not in err.split("Fatal Python error")[0]


def one(i: int, src: Path, refs: dict, durations: dict, seed: int, keep: Path, start: float = 0.0) -> dict:
    rnd = random.Random(seed * 100003 + i)
    kind, name = rnd.choice(KINDS), rnd.choice(sorted(SIGNALS))
    sig, wanted = SIGNALS[name]
    delay = rnd.uniform(durations[kind] * start, durations[kind] * 1.05)
    folder = keep / f"run{i:04d}"
    folder.mkdir(parents=True)
    out = folder / f"out{kind}"
    proc = subprocess.Popen(command(src, out), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(delay)
    where = phase(out) if proc.poll() is None else "exited"
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=300)
    record = dict(i=i, kind=kind, signal=name, delay=round(delay, 3), phase=where, status=proc.returncode,
                  fatal="Fatal Python error" in err, problems=[])
    # 0 only if the run was over (or finishing, its status decided) when the signal came
    allowed = (wanted, 0) if where in ("exited", "finishing") else (wanted,)
    if before_bigresample(proc.returncode, sig, err):
        record["phase"] = "python-startup"  # CPython's own start (site, .pth files): no line of ours has run
    elif proc.returncode not in allowed:
        record["problems"].append(f"exit {proc.returncode}, expected {wanted}: {err.strip()[-500:]}")
    if record["fatal"] and record["phase"] != "python-startup":
        record["problems"].append(f"Fatal Python error: {err.strip()[-800:]}")
    rerun = subprocess.run(command(src, out), capture_output=True, text=True, timeout=600)
    if rerun.returncode != 0:
        record["problems"].append(f"rerun exit {rerun.returncode}: {rerun.stderr.strip()[-500:]}")
    elif content(out) != refs[kind]:
        record["problems"].append("rerun's output differs from the uninterrupted one")
    if not record["problems"]:
        shutil.rmtree(folder, ignore_errors=True)
    return record


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=200)
    p.add_argument("--jobs", type=int, default=1, help="runs at once")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--start", type=float, default=0.0,
                   help="signal no earlier than this fraction of an uninterrupted run (0: from the process's start)")
    p.add_argument("--keep", type=Path, default=None, help="work here (failed runs' folders are kept)")
    a = p.parse_args(argv)
    # started in the background by a non-interactive shell, this process may have
    # inherited SIGINT ignored, and so would every run (Python keeps an ignored
    # SIGINT ignored): a handled signal is reset to the default in the children
    signal.signal(signal.SIGINT, signal.default_int_handler)
    keep = a.keep or Path(tempfile.mkdtemp(prefix="kill-stress-"))
    keep.mkdir(parents=True, exist_ok=True)
    env_path = os.environ.get("PYTHONPATH", "")
    os.environ["PYTHONPATH"] = str(ROOT) + (os.pathsep + env_path if env_path else "")
    src = make_input(keep)
    refs, durations = {}, {}
    for kind in KINDS:
        ref = keep / f"ref{kind}"
        t0 = time.perf_counter()
        subprocess.run(command(src, ref), check=True, capture_output=True)
        durations[kind] = time.perf_counter() - t0
        refs[kind] = content(ref)
    print("uninterrupted:", ", ".join(f"{k} {v:.2f} s" for k, v in durations.items()), flush=True)
    records = []
    with ThreadPoolExecutor(a.jobs) as pool:
        for r in pool.map(lambda i: one(i, src, refs, durations, a.seed, keep, a.start), range(a.runs)):
            records.append(r)
            mark = "BAD " if r["problems"] else ""
            print(f"{mark}run {r['i']:3d} {r['kind']:7s} SIG{r['signal']:4s} at {r['delay']:6.3f} s "
                  f"({r['phase']}): exit {r['status']}", flush=True)
            for problem in r["problems"]:
                print("    " + problem.replace("\n", "\n    "), flush=True)
    tally = collections.Counter((r["signal"], r["status"]) for r in records)
    phases = collections.Counter(r["phase"] for r in records)
    bad = [r for r in records if r["problems"]]
    print(f"\n{len(records)} runs: " + ", ".join(f"SIG{s} -> exit {c}: {n}" for (s, c), n in sorted(tally.items())))
    print("phases at the signal: " + ", ".join(f"{k} {n}" for k, n in sorted(phases.items())))
    early = [r for r in records if r["phase"] == "python-startup"]
    print(f"signalled during CPython's own start-up (before bigresample's first line): {len(early)}, "
          f"exits {sorted(collections.Counter(r['status'] for r in early).items())}")
    print(f"'Fatal Python error' after bigresample started: "
          f"{sum(r['fatal'] for r in records if r['phase'] != 'python-startup')}; reruns with other bytes or failing: "
          f"{sum(any(p.startswith('rerun') for p in r['problems']) for r in records)}; runs breaking a rule: {len(bad)}")
    if not a.keep and not bad:
        shutil.rmtree(keep, ignore_errors=True)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
