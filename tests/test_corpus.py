"""Hundreds of corrupted NIfTI files (tests/corpus.py): each one either
resamples into an output nibabel loads (finite affine) or is refused in one
line, exit status 2; never a traceback, a hang (30 s) or more than 1 GiB of
address space; nothing left behind; the input unchanged."""

import json
import os
import subprocess
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from . import corpus

ROOT = Path(__file__).resolve().parents[1]
DRIVERS = 2


def _run(folders, results_file):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-m", "tests.corpus", str(results_file), *map(str, folders)],
                          cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=corpus.TIMEOUT * len(folders) + 60)
    assert proc.returncode == 0, proc.stderr
    return json.loads(Path(results_file).read_text())


def _problem(case_dir: Path, name: str, filename: str, data: bytes, result: dict) -> str | None:
    """What is wrong with one case's outcome, or None."""
    status, err = result["status"], result["stderr"]
    if "Traceback" in err:
        return f"traceback:\n{err}"
    if (case_dir / filename).read_bytes() != data:
        return "the input was modified"
    left = sorted(p.name for p in case_dir.iterdir()) 
    if status == 0:
        if left != sorted([filename, "out.nii"]):
            return f"left behind: {left}"
        try:
            out = nib.load(case_dir / "out.nii")
            np.asarray(out.dataobj)
        except Exception as exc:
            return f"exit 0 but nibabel cannot load the output: {exc}"
        if not np.all(np.isfinite(out.affine)):
            return f"exit 0 but the output's affine is not finite: {out.affine.tolist()}"
        return None
    if status == 2:
        if left != [filename]:
            return f"left behind: {left}"
        if err.count("\n") != 1 or not err.startswith("bigresample: error: "):
            return f"exit 2 but not one error line: {err!r}"
        return None
    return f"exit status {status}: {err!r}"


@pytest.mark.slow
def test_every_corrupted_file_gives_an_output_or_one_line(tmp_path):
    cases = corpus.cases(seed=15)
    assert len(cases) >= 300
    folders = []
    for k, (name, filename, data) in enumerate(cases):
        folder = tmp_path / f"case{k:04d}"
        folder.mkdir()
        (folder / filename).write_bytes(data)
        folders.append(folder)
    t0 = time.perf_counter()
    chunks = [folders[i::DRIVERS] for i in range(DRIVERS)]
    with ThreadPoolExecutor(DRIVERS) as pool:
        parts = list(pool.map(_run, chunks, [tmp_path / f"results{i}.json" for i in range(DRIVERS)]))
    elapsed = time.perf_counter() - t0
    results = {k: v for part in parts for k, v in part.items()}
    problems = []
    for folder, (name, filename, data) in zip(folders, cases):
        why = _problem(folder, name, filename, data, results[str(folder)])
        if why:
            problems.append(f"{name}: {why}")
    counts = Counter(r["status"] for r in results.values())
    slowest = max(r["seconds"] for r in results.values())
    print(f"\ncorpus: {len(cases)} cases, {counts.get(0, 0)} exit 0, {counts.get(2, 0)} exit 2, "
          f"other {sum(v for k, v in counts.items() if k not in (0, 2))}; {elapsed:.1f} s "
          f"(slowest case {slowest:.2f} s)")
    assert not problems, f"{len(problems)} of {len(cases)} cases:\n" + "\n".join(problems[:40])
    # both outcomes occur: the corpus exercises refusals and fallbacks alike
    assert counts[0] > 20 and counts[2] > 100
