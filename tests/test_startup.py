"""Start-up: what importing the command line, ``--help`` and a small NIfTI run load.

Each case runs in a fresh interpreter and reads its ``sys.modules`` at the
end, so what an earlier test imported does not count.  ``import
bigresample.cli`` and ``bigresample --help`` load none of the libraries below
(numpy, nibabel and scipy included: the parser and its words are in
``bigresample.names``); a run loads numpy and nibabel (nibabel itself imports
scipy's top level) but no library only another path needs: dask and
distributed (a cluster, the lazy array API), zarr and fsspec (OME-Zarr, URLs),
tifffile (TIFF inputs), matplotlib (``--qc``), h5py (MINC2 through nibabel),
nitransforms (transform files).  The timings are in benchmarks/README.md
("Start-up").
"""

import json
import os
import subprocess
import sys

import pytest

from .helpers import make_volume

#: libraries only some paths need
OPTIONAL = {"dask", "distributed", "zarr", "fsspec", "tifffile", "matplotlib", "h5py", "nitransforms"}
#: and those a run needs, but not the parsing of its command line
NUMERIC = {"numpy", "nibabel", "scipy"}

DUMP = "import json, sys; print(json.dumps(sorted(sys.modules)))"


def loaded(code: str, *args: str, cwd=None) -> set[str]:
    """The modules loaded once ``code`` (then the dump) ran in a fresh interpreter."""
    proc = subprocess.run([sys.executable, "-c", f"{code}\n{DUMP}", *args], capture_output=True, text=True,
                          timeout=120, cwd=cwd)
    assert proc.returncode == 0, proc.stderr
    return set(json.loads(proc.stdout.splitlines()[-1]))


def roots(modules: set[str]) -> set[str]:
    return {m.split(".")[0] for m in modules}


HELP = """\
import contextlib, io
from bigresample.cli import main
with contextlib.redirect_stdout(io.StringIO()) as out:
    try:
        main(["--help"])
    except SystemExit as exc:
        assert exc.code == 0, exc.code
assert "usage: bigresample" in out.getvalue() and "--mode MODE" in out.getvalue()
"""


@pytest.mark.parametrize("code", ["import bigresample.cli", HELP], ids=["import", "--help"])
def test_the_command_line_parses_before_anything_numeric_is_imported(code):
    assert roots(loaded(code)) & (OPTIONAL | NUMERIC) == set()


RUN = """\
import sys
from bigresample.cli import main
assert main([sys.argv[1], sys.argv[2], "--z-spacing", "0.15", "--order", "1", "--quiet"]) == 0
"""


def test_a_nifti_run_loads_no_library_only_other_paths_need(tmp_path):
    src = tmp_path / "in.nii"
    make_volume(src)
    modules = loaded(RUN, str(src), str(tmp_path / "out.nii"))
    assert (tmp_path / "out.nii").exists()
    assert roots(modules) & OPTIONAL == set()
    assert "scipy.ndimage" not in modules  # order 1 on the separable engine: the compiled sum
    assert "numpy.ma" not in modules  # np.unique imports it (engine.sorted_unique): 25-50 ms in a first block


THREADS = """\
import os, sys
from bigresample.cli import main
assert main([sys.argv[1], sys.argv[2], "--reference", sys.argv[1], "--order", "1", "--workers", "2", "--quiet"]) == 0
print(len(os.listdir("/proc/self/task")), os.environ.get("OPENBLAS_NUM_THREADS"))
"""


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="counts the threads in /proc")
@pytest.mark.parametrize("asked", [None, "2"])
def test_a_run_leaves_blas_to_one_thread_unless_the_user_asked(tmp_path, asked):
    # the workers are the parallelism: OpenBLAS's own threads (one per core, started when numpy
    # loads) would only spin on their cores; after the run only the main thread is left
    src = tmp_path / "in.nii"
    make_volume(src)
    env = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "OMP_NUM_THREADS")}
    if asked:
        env["OPENBLAS_NUM_THREADS"] = asked
    proc = subprocess.run([sys.executable, "-c", THREADS, str(src), str(tmp_path / "out.nii")], capture_output=True,
                          text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr
    threads, setting = proc.stdout.split()
    assert setting == (asked or "1")
    if asked is None:
        assert int(threads) == 1
    elif (os.cpu_count() or 1) >= 2:  # the count is not blind: OpenBLAS's second thread when it may have one
        assert int(threads) == 2


def test_the_count_sees_what_a_module_imports():
    # the dump is not blind: the pipeline needs numpy and nibabel, the lazy array API dask
    assert {"numpy", "nibabel"} <= roots(loaded("import bigresample.pipeline"))
    assert "dask" in roots(loaded("from bigresample import resample_array"))


def test_the_timeline_records_each_step_and_block_when_asked(tmp_path):
    """``BIGRESAMPLE_TIMELINE=FILE`` (bigresample/timeline.py, benchmarks/bench_timeline.py)."""
    src, out, tl = tmp_path / "in.nii", tmp_path / "out.nii", tmp_path / "timeline.json"
    make_volume(src, shape=(24, 20, 30))
    proc = subprocess.run([sys.executable, "-m", "bigresample", str(src), str(out), "--z-spacing", "0.15",
                           "--chunks", "24", "20", "4", "--workers", "2", "--quiet"],
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "BIGRESAMPLE_TIMELINE": str(tl)})
    assert proc.returncode == 0, proc.stderr
    data = json.loads(tl.read_text())
    phases = {phase for _, phase, _, _, _ in data["spans"]}
    assert {"parse", "imports", "plan", "begin", "threads", "read", "compute", "write", "wait", "commit", "end",
            "finish", "blocks"} <= phases
    blocks = sorted(b for _, phase, b, _, _ in data["spans"] if phase == "commit")
    assert blocks == list(range(5))  # 20 output planes, 4 a block, each committed once
    assert all(start <= end for _, _, _, start, end in data["spans"])
    assert data["origin"] is None or data["origin"] <= min(s for _, _, _, s, _ in data["spans"])


def test_the_timeline_is_off_unless_asked():
    from bigresample import timeline

    assert "BIGRESAMPLE_TIMELINE" in os.environ or (timeline.now() is None and timeline.span("x", None) is None)
