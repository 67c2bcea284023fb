"""A .nii.gz input: inflated into memory against decompressed into a scratch file, and the candidates.

    python benchmarks/bench_gzip_input.py --before DIR [--repeats 3] [--large] [--workdir DIR]

``DIR`` is a checkout of the code before the change (``git archive`` of a commit, with the
compiled ``_kernel`` copied in): each job runs as ``python -m bigresample`` with that checkout,
then with this one, then SimpleITK (``bench_speed.SITK_SCRIPT``), alternating, ``--repeats``
times; the figures are wall seconds of the whole command, peak RSS of its process tree, and the
phase the report's ``Elapsed:`` line gives for the input ("decompressing input" before;
"inflating input into memory" or "decompressing input to a scratch file" after).

* ``phantom``: the 512x512x300 float32 phantom (``bigresample.demo.make_phantom``) as .nii.gz,
  -> z 0.15 mm, order 1, to .nii.gz.
* ``--large``: a synthetic 985x1165x945 int16 volume (a smooth field with a little noise inside
  an ellipsoid, compressing 5.6:1 like a brain: 2.2 GB as 0.39 GB) -> 0.2 x 0.2 x 0.3 mm, order 1,
  to .nii, under ``--memory-limit 1GB`` (the scratch route: the budget cannot hold 2.2 GB) and
  under the default budget (half the available memory: the memory route).  Then one inflating
  pass over it by each candidate, alternating: into a scratch file (``codec.decompress``), into
  memory (``codec.inflate``), into memory through ``isal.igzip_threaded`` (a reading thread),
  and, where importable (not dependencies of bigresample: ``pip install --target D`` and put D
  on ``PYTHONPATH``), rapidgzip's parallel inflate into memory and the index builds of
  rapidgzip and indexed_gzip (what a random-access route would pay before its first block).
  Wall seconds and the process's user and system CPU seconds.

Everything is made in ``--workdir`` (default: a new folder in the system's temporary folder)
and removed at the end.  The report (markdown) goes to stdout, progress to stderr.
"""

from __future__ import annotations

import argparse
import mmap
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
if str(HERE) not in sys.path:  # the shared measuring helpers live beside this file
    sys.path.insert(0, str(HERE))
sys.path.insert(1, str(REPO))  # this checkout's bigresample, in this process too (the inflating passes)

from bench_speed import SITK_SCRIPT, _kill_tree, _sample, header_lines, log  # noqa: E402

LARGE_SHAPE = (985, 1165, 945)
PHASE = re.compile(r"(decompressing input(?: to a scratch file)?|inflating input into memory) ([0-9.]+) s")


def run(cmd, env, cwd, timeout=3600.0):
    """(wall s, peak RSS bytes of the process tree, stdout); raises if the command fails.  Run in
    ``cwd``, not here: ``python -m`` puts the current folder first on the path."""
    import psutil

    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        proc = psutil.Popen(cmd, stdout=out, stderr=err, env=env, cwd=cwd)
        peak = 0
        while proc.poll() is None:
            peak = max(peak, *_sample(proc))
            if time.perf_counter() - t0 > timeout:
                _kill_tree(proc)
                proc.wait()
                break
            time.sleep(0.05)
        seconds = time.perf_counter() - t0
        out.seek(0)
        err.seek(0)
        text, errors = out.read().decode(errors="replace"), err.read().decode(errors="replace")
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, cmd))} failed ({proc.returncode}): {errors[-2000:]}")
    return seconds, peak, text


def env_for(checkout: Path) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(checkout)
    return env


def make_large(path: Path) -> None:
    """The synthetic int16 volume, one gzip stream written plane by plane (ISA-L level 2)."""
    import nibabel as nib
    from isal import isal_zlib

    nx, ny, nz = LARGE_SHAPE
    rng = np.random.default_rng(0)
    x = np.arange(nx, dtype=np.float32)[None, :]
    y = np.arange(ny, dtype=np.float32)[:, None]
    hdr = nib.Nifti1Header()
    hdr.set_data_shape(LARGE_SHAPE)
    hdr.set_data_dtype(np.int16)
    affine = np.diag([0.2, 0.2, 0.2, 1.0])
    hdr.set_qform(affine, 1)
    hdr.set_sform(affine, 1)
    hdr["vox_offset"] = 352
    c = isal_zlib.compressobj(2, isal_zlib.DEFLATED, 31)
    with open(path, "wb") as f:
        f.write(c.compress(hdr.binaryblock + b"\0" * 4))
        for z in range(nz):
            r = ((x - nx / 2) / (0.4 * nx)) ** 2 + ((y - ny / 2) / (0.4 * ny)) ** 2 + ((z - nz / 2) / (0.4 * nz)) ** 2
            v = 900 + 300 * np.sin(x / 17 + z / 40) * np.cos(y / 23) + 200 * np.sin((x + y) / 61 - z / 29)
            v = v + rng.normal(0, 1.2, size=(ny, nx))
            v[r > 1] = 0
            f.write(c.compress(np.rint(v).astype("<i2").tobytes()))
        f.write(c.flush())


def jobs_table(title, cells, tools) -> list[str]:
    lines = [f"### {title}", "", "| tool | wall s (median, min-max) | peak RSS MiB | input phase s | ratio to SimpleITK |",
             "|---|---:|---:|---|---:|"]
    sitk = cells.get("SimpleITK")
    for tool in tools:
        runs = cells.get(tool)
        if not runs:
            continue
        walls = [r[0] for r in runs]
        phases = sorted({name for r in runs for name, _ in r[2]})
        phase = "; ".join(f"{name} {', '.join(f'{v:.2f}' for r in runs for n, v in r[2] if n == name)}"
                          for name in phases) or "-"
        ratio = "-"
        if sitk and tool != "SimpleITK":
            ratio = f"{statistics.median(a[0] / b[0] for a, b in zip(runs, sitk)):.2f}"
        lines.append(f"| {tool} | {statistics.median(walls):.2f} ({min(walls):.2f}-{max(walls):.2f}) | "
                     f"{max(r[1] for r in runs) / 2**20:.0f} | {phase} | {ratio} |")
    return lines + [""]


def bench_jobs(cmds: dict, repeats: int, out: Path) -> dict:
    cells = {tool: [] for tool in cmds}
    for i in range(repeats):
        for tool, (cmd, env) in cmds.items():
            log(f"{tool} run {i + 1}: load {os.getloadavg()[0]:.2f}")
            seconds, peak, text = run(cmd, env, out.parent)
            out.unlink(missing_ok=True)
            cells[tool].append((seconds, peak, [(m.group(1), float(m.group(2))) for m in PHASE.finditer(text)]))
            log(f"  {seconds:.2f} s, {peak / 2**20:.0f} MiB")
    return cells


def _private_buffer(n: int) -> np.ndarray:
    return np.frombuffer(mmap.mmap(-1, n, flags=mmap.MAP_PRIVATE), np.uint8)


def inflaters(path: Path, need: int, workdir: Path) -> dict:
    """One inflating pass each: the candidates for a .nii.gz input."""
    from bigresample import codec

    def scratch():
        fd, name = tempfile.mkstemp(dir=workdir)
        try:
            codec.decompress(path, fd, need)
        finally:
            os.unlink(name)

    def threaded():
        from isal import igzip_threaded

        with igzip_threaded.open(path, "rb", threads=1) as f:
            codec.fill_buffer(f, _private_buffer(need), need)

    out = {"scratch file (codec.decompress, before)": scratch,
           "into memory (codec.inflate, after)": lambda: codec.inflate(path, need),
           "into memory, isal.igzip_threaded": threaded}
    try:
        import rapidgzip

        def rapid_memory():
            with rapidgzip.open(str(path), parallelization=2) as f:
                codec.fill_buffer(f, _private_buffer(need), need)

        def rapid_index():
            with rapidgzip.open(str(path), parallelization=2) as f:
                f.seek(0, os.SEEK_END)
        out["into memory, rapidgzip (2 threads)"] = rapid_memory
        out["index only, rapidgzip (2 threads)"] = rapid_index
    except ImportError:
        log("rapidgzip not importable: not measured")
    try:
        import indexed_gzip

        def indexed():
            with indexed_gzip.IndexedGzipFile(str(path), spacing=4 * 2**20) as f:
                f.build_full_index()
        out["index only, indexed_gzip (4 MiB spacing)"] = indexed
    except ImportError:
        log("indexed_gzip not importable: not measured")
    return out


def bench_inflaters(path: Path, need: int, workdir: Path, repeats: int) -> list[str]:
    cands = inflaters(path, need, workdir)
    got = {name: [] for name in cands}
    for i in range(repeats):
        for name, fn in cands.items():
            load = os.getloadavg()[0]
            c0, t0 = os.times(), time.perf_counter()
            fn()
            c1, wall = os.times(), time.perf_counter() - t0
            got[name].append((wall, c1.user - c0.user, c1.system - c0.system, load))
            log(f"{name}: {wall:.2f} s (user {c1.user - c0.user:.2f}, sys {c1.system - c0.system:.2f}, load {load:.1f})")
    lines = ["### One inflating pass over the large volume (2.2 GB from 0.39 GB)", "",
             "| candidate | wall s (median, min-max) | user s | sys s | load at start |", "|---|---:|---:|---:|---|"]
    for name, rows in got.items():
        walls = [r[0] for r in rows]
        lines.append(f"| {name} | {statistics.median(walls):.2f} ({min(walls):.2f}-{max(walls):.2f}) | "
                     f"{statistics.median(r[1] for r in rows):.2f} | {statistics.median(r[2] for r in rows):.2f} | "
                     f"{', '.join(f'{r[3]:.1f}' for r in rows)} |")
    return lines + [""]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--before", type=Path, required=True, help="a checkout of the code before the change")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--large", action="store_true", help="also the 985x1165x945 int16 volume (2.2 GB inflated)")
    p.add_argument("--workdir", type=Path, default=None)
    a = p.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="bench-gzip-input-", dir=a.workdir))
    try:
        return _main(a, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _main(a, work: Path) -> int:
    from bigresample.demo import make_phantom

    print("\n".join(header_lines("bench_gzip_input")))
    print(f"Started {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}, load {os.getloadavg()}\n")
    sitk = work / "sitk_resample.py"
    sitk.write_text(SITK_SCRIPT)
    before, after = env_for(a.before.resolve()), env_for(REPO)
    src, dst = work / "phantom.nii.gz", work / "out.nii.gz"
    make_phantom(src, shape=(512, 512, 300), spacing=0.1)
    br = [sys.executable, "-m", "bigresample", str(src), str(dst), "--z-spacing", "0.15", "--order", "1",
          "--no-progress"]
    cells = bench_jobs({"bigresample before": (br, before), "bigresample after": (br, after),
                        "SimpleITK": ([sys.executable, str(sitk), str(src), str(dst), "1", "0.1", "0.1", "0.15"],
                                      after)}, a.repeats, dst)
    print("\n".join(jobs_table("512x512x300 float32 .nii.gz -> z 0.15 mm, order 1, .nii.gz out", cells,
                               ["bigresample before", "bigresample after", "SimpleITK"])))
    src.unlink()
    if a.large:
        src, dst = work / "large.nii.gz", work / "out.nii"
        t0 = time.perf_counter()
        make_large(src)
        log(f"made {src} ({src.stat().st_size / 1e6:.0f} MB) in {time.perf_counter() - t0:.0f} s")
        job = [sys.executable, "-m", "bigresample", str(src), str(dst), "--spacing", "0.2", "0.2", "0.3",
               "--no-progress", "--tmp-dir", str(work)]
        cells = bench_jobs({"before, --memory-limit 1GB": (job + ["--memory-limit", "1GB"], before),
                            "after, --memory-limit 1GB": (job + ["--memory-limit", "1GB"], after),
                            "after, default budget": (job, after)}, a.repeats, dst)
        print("\n".join(jobs_table(f"{'x'.join(map(str, LARGE_SHAPE))} int16 .nii.gz "
                                   f"({src.stat().st_size / 1e6:.0f} MB) -> 0.2 x 0.2 x 0.3 mm, order 1, .nii out",
                                   cells, list(cells))))
        need = 352 + int(np.prod(LARGE_SHAPE)) * 2
        print("\n".join(bench_inflaters(src, need, work, a.repeats)))
    print(f"Ended {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}, load {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
