"""Mutation testing of the modules where a wrong line means a wrong result or lost data.

Each module is mutated on its own (mutmut 3, the ``dev`` extra) and checked
against that module's own tests only (``TESTS`` below): mutmut records which of
those tests call each function and runs just them against the function's
mutants.  The run happens in a scratch copy of ``bigresample/`` and ``tests/``
(removed afterwards, so the checkout is never touched; ``--work-dir`` keeps it,
and ``--retest-survivors`` then retests the mutants left alive after tests were
added, but those listed as equivalent), and a markdown table
per module is printed:

    mutants  killed  survived  equivalent  timeout  score = killed / (mutants - equivalent)

A mutant no test can tell from the original is listed, with the reason, in
``tools/equivalent_mutants.toml``, keyed by its function (``Class.method`` or
``function``) and the changed line (``old => new``, as ``mutmut show`` prints
it), not by its module nor its line number: the entry stays valid when other
lines move and when the function moves to another module (its ``module`` only
says where it was last seen; the report asks to update it).  Survivors not
listed there are printed with their diff.

Usage (from the checkout, after ``pip install -e ".[dev,test]"``)::

    nice -n 10 python tools/mutation.py                 # all modules
    nice -n 10 python tools/mutation.py --module engine # one module
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EQUIVALENT = Path(__file__).resolve().parent / "equivalent_mutants.toml"

SLOW_CLOCKS = ["--deselect=tests/test_job.py::test_planning_a_huge_grid_costs_no_time_and_no_memory",
               "--deselect=tests/test_job.py::test_a_1e15_voxel_request_is_refused_at_once_in_flat_memory"]

#: module -> that module's tests: test files or node ids, and pytest options.
TESTS = {
    "geometry": ["tests/test_geometry.py", "tests/test_geometry_pins.py"],
    "splines": ["tests/test_splines.py", "tests/test_splines_pins.py"],
    # Every surviving mutant pays for all the tests that reach its function, and mutmut's
    # trampolines make the engine's many small calls slow: the engine's and the
    # transform's heaviest tests are left out (hypothesis draws, the 576-case and 48-case
    # whole-image grids, the command-line runs); their _pins files check the same paths
    # strictly on smaller volumes.
    "engine": ["tests/test_engine_pins.py", "tests/test_engine.py",
               "--deselect=tests/test_engine.py::test_any_shape_spacing_and_chunking_matches_scipy",
               "--deselect=tests/test_engine.py::test_block_decomposition_matches_a_single_whole_image_call"],
    "transform": ["tests/test_transform_pins.py"] + [f"tests/test_reference.py::{t}" for t in (
        "test_nearest_neighbour_ties_fall_as_in_scipy", "test_integer_output_is_rounded_and_saturated_as_scipy",
        "test_4d_volumes_and_nan_as_cval", "test_a_block_far_outside_the_input_is_the_edge_or_cval",
        "test_the_planned_window_bounds_every_block_window",
        "test_order_0_is_identical_and_order_1_within_1e_6_in_float64_too")] + [
        # the kernel's every order, mode and type through AffineResampler (its hypothesis draws left out)
        "tests/test_kernel.py", "--deselect=tests/test_kernel.py::test_any_shape_angle_block_and_type"],
    # the data modules: their own test files and test_job's planning; test_memory and
    # test_reliability run everything in subprocesses (which run no mutant) and are left out,
    # as are test_job's two wall-clock checks (a loaded machine fails them, mutant or not)
    "journal": ["tests/test_journal.py", "tests/test_job.py", *SLOW_CLOCKS],
    "codec": ["tests/test_codec.py", "tests/test_sinks.py"],
    "plan": ["tests/test_plan.py", "tests/test_job.py", *SLOW_CLOCKS],
    "sinks": ["tests/test_sinks.py", "-mnot cluster",
              "--deselect=tests/test_sinks.py::test_a_dask_executor_connects_nothing_until_a_run_enters_it"],
}

#: mutmut's exit codes, grouped as the table counts them.
KILLED = {1, 3}
TIMEOUT = {24, -24, 152, 255, 36}
NO_TESTS = {5, 33}

# Run inside the scratch copy by a fresh interpreter (mutmut reads its
# configuration from the working directory when imported): every mutant's
# name, exit code and diff, as JSON.
_DUMP = r"""
import json, sys
from pathlib import Path
from mutmut.mutation.data import SourceFileMutationData
from mutmut.mutation.diff_apply import get_diff_for_mutant
path = Path(sys.argv[1])
m = SourceFileMutationData(path=path)
m.load()
out = {k: {"exit": v, "diff": get_diff_for_mutant(k, path=path)} for k, v in m.exit_code_by_key.items()}
json.dump(out, sys.stdout)
"""


def _path(module: str) -> str:
    """The module's file under bigresample/: ``engine.py``; ``formats/nifti.py`` for ``formats.nifti``."""
    return module.replace(".", "/") + ".py"


def _setup_cfg(module: str, tests: list[str]) -> str:
    lines = [
        "[mutmut]",
        "source_paths = bigresample",
        f"only_mutate = bigresample/{_path(module)}",
        "pytest_add_cli_args_test_selection =",
        *(f"    {t}" for t in tests),
        "pytest_add_cli_args =",
        "    -p",
        "    no:cacheprovider",
        "use_git_change_detection = false",
        "",
    ]
    return "\n".join(lines)


def _prepare(work: Path, module: str) -> None:
    """A scratch copy of the package and the tests, with mutmut's configuration."""
    ignore = shutil.ignore_patterns("__pycache__", ".hypothesis", "*.pyc")
    for name in ("bigresample", "tests"):
        if (work / name).exists():
            shutil.rmtree(work / name)
        shutil.copytree(ROOT / name, work / name, ignore=ignore)
    # each test in a folder of its own: a mutant that turns a path into "" (the working
    # directory, which is mutmut's mutants/ folder) must not be able to empty mutants/
    with open(work / "tests" / "conftest.py", "a") as f:
        f.write("\n\n@pytest.fixture(autouse=True)\ndef _mutation_cwd(tmp_path_factory, monkeypatch):\n"
                "    monkeypatch.chdir(tmp_path_factory.mktemp('cwd'))\n")
        # mutmut forks each mutant's run from a process whose dask thread pool
        # (made by the stats run) has no threads in the child: a .compute() there
        # would wait forever, and the mutant count as a timeout
        f.write("\n\n@pytest.fixture(autouse=True)\ndef _mutation_fresh_dask_pool(monkeypatch):\n"
                "    import dask.threaded\n"
                "    monkeypatch.setattr(dask.threaded, 'default_pool', None)\n")
    # without a [tool.mutmut] table mutmut reads setup.cfg; pytest its own options
    pyproject = (ROOT / "pyproject.toml").read_text()
    if "[tool.mutmut]" in pyproject:
        raise SystemExit("pyproject.toml has a [tool.mutmut] table: this script writes its own configuration")
    (work / "pyproject.toml").write_text(pyproject)
    tests = [t for t in TESTS[module] if t.startswith("-") or (ROOT / t.split("::")[0]).exists()]
    (work / "setup.cfg").write_text(_setup_cfg(module, tests))


def change_key(diff: str) -> str:
    """``old => new`` from a mutant's diff: its removed and added lines, stripped."""
    old = [ln[1:].strip() for ln in diff.splitlines() if ln.startswith("-") and not ln.startswith("---")]
    new = [ln[1:].strip() for ln in diff.splitlines() if ln.startswith("+") and not ln.startswith("+++")]
    return " / ".join(old) + " => " + " / ".join(new)


def function_name(mutant: str) -> str:
    """``Class.method`` or ``function`` from mutmut's mangled mutant name."""
    name = mutant.partition("__mutmut_")[0].rpartition(".")[2]
    if "ǁ" in name:  # mutmut's class separator: xǁClassǁmethod
        _, cls, meth = name.split("ǁ")
        return f"{cls}.{meth}"
    return name[2:] if name.startswith("x_") else name


def load_equivalent() -> dict[tuple[str, str], str]:
    """(function, change) -> the module the entry was last seen in, for every listed equivalent mutant,
    whatever its module: a function moved to another module keeps its entries."""
    if not EQUIVALENT.exists():
        return {}
    data = tomllib.loads(EQUIVALENT.read_text())
    return {(e["function"], e["change"]): e["module"] for e in data.get("mutant", [])}


def _mutmut(module: str, work: Path, env: dict, args: list[str]) -> None:
    proc = subprocess.run([sys.executable, "-m", "mutmut", "run", *args], cwd=work, env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-4000:])
        raise SystemExit(f"mutmut failed on {module} (exit {proc.returncode})")


def _dump(module: str, work: Path, env: dict) -> dict:
    dump = subprocess.run([sys.executable, "-c", _DUMP, f"bigresample/{_path(module)}"], cwd=work, env=env,
                          stdout=subprocess.PIPE, text=True, check=True)
    return json.loads(dump.stdout)


def run_module(module: str, work: Path, max_children: int, retest: bool = False, report: bool = False) -> dict:
    """Mutate ``module`` in ``work`` and test every mutant; ``retest``: test again the
    mutants a previous run in ``work`` left alive (after tests were added); ``report``:
    only read what a run in ``work`` found so far."""
    start = time.monotonic()
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    if report:
        return {"mutants": _dump(module, work, env), "seconds": 0.0}
    _prepare(work, module)
    _mutmut(module, work, env, ["--max-children", str(max_children)])
    if retest:
        equivalent = load_equivalent()
        alive = [k for k, m in _dump(module, work, env).items()
                 if m["exit"] not in KILLED and (function_name(k), change_key(m["diff"])) not in equivalent]
        if alive:
            _mutmut(module, work, env, ["--max-children", str(max_children), *alive])
    return {"mutants": _dump(module, work, env), "seconds": time.monotonic() - start}


def summarise(module: str, result: dict) -> tuple[dict, list[str]]:
    """The table row and the lines describing survivors and stale equivalents."""
    equivalent = load_equivalent()
    row = dict(module=module, mutants=0, killed=0, survived=0, equivalent=0, timeout=0, no_tests=0, not_checked=0)
    notes, matched = [], set()
    for name, m in sorted(result["mutants"].items()):
        row["mutants"] += 1
        key = (function_name(name), change_key(m["diff"]))
        code = m["exit"]
        if code in KILLED:
            row["killed"] += 1
            if key in equivalent:
                notes.append(f"- listed as equivalent but killed (remove it): `{key[0]}`: `{key[1]}`")
            continue
        if code in TIMEOUT:
            row["timeout"] += 1
            continue
        if key in equivalent:
            row["equivalent"] += 1
            matched.add(key)
            if equivalent[key] != module:
                notes.append(f"- listed as equivalent under module {equivalent[key]}, found in {module} "
                             f"(update its module): `{key[0]}`: `{key[1]}`")
            continue
        if code is None:
            row["not_checked"] += 1
            continue
        row["survived"] += 1
        if code in NO_TESTS:
            row["no_tests"] += 1
        status = "no test covers it" if code in NO_TESTS else f"survived (exit {code})"
        notes.append(f"- {status}: `{name}`\n\n```diff\n{m['diff'].strip()}\n```")
    notes += _stale(module, equivalent, matched, result["mutants"])
    tested = row["mutants"] - row["equivalent"] - row["not_checked"]  # all of them once the run is complete
    row["score"] = row["killed"] / tested if tested else 1.0
    row["seconds"] = result["seconds"]
    return row, notes


def _stale(module: str, equivalent: dict, matched: set, mutants: dict) -> list[str]:
    """The entries listed under ``module`` that no mutant of this run matches: gone, moved to a
    module not run here (looked up there when it runs), or renamed (then said: same change)."""
    generated = {(function_name(n), change_key(m["diff"])) for n, m in mutants.items()}
    notes = []
    for key in sorted(k for k, where in equivalent.items() if where == module and k not in matched | generated):
        renamed = sorted({f for f, change in generated - set(equivalent) if change == key[1]})
        hint = f" (the same change is now in {', '.join(renamed)}: renamed?)" if renamed else ""
        notes.append(f"- listed as equivalent but not generated in {module} any more{hint}: `{key[0]}`: `{key[1]}`")
    return notes


def table(rows: list[dict]) -> str:
    head = "| module | mutants | killed | survived | equivalent | timeout | score | time |\n|---|---|---|---|---|---|---|---|"
    body = [
        f"| {r['module']} | {r['mutants']} | {r['killed']} | {r['survived']}"
        + (f" ({r['no_tests']} no test)" if r["no_tests"] else "")
        + f" | {r['equivalent']} | {r['timeout']} | {100 * r['score']:.1f}%"
        + (f" of the {r['mutants'] - r['not_checked']} tested so far ({r['not_checked']} not yet)"
           if r["not_checked"] else "")
        + f" | {r['seconds']:.0f} s |"
        for r in rows
    ]
    return "\n".join([head, *body])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--module", choices=sorted(TESTS), action="append",
                        help="run this module only (repeatable); default: all")
    parser.add_argument("--max-children", type=int, default=os.cpu_count() or 2,
                        help="mutants tested at once (default: the CPU count)")
    parser.add_argument("--work-dir", type=Path,
                        help="keep mutmut's files here between runs (a rerun tests only the mutants of "
                             "changed functions); default: a scratch folder, removed at the end")
    parser.add_argument("--retest-survivors", action="store_true",
                        help="with --work-dir: test again the mutants an earlier run left alive "
                             "(but those listed as equivalent)")
    parser.add_argument("--report-only", action="store_true",
                        help="with --work-dir: print what the run there has found so far, run nothing")
    parser.add_argument("--min-score", type=float, default=0.0,
                        help="exit 1 if a module scores below this fraction (e.g. 0.9)")
    args = parser.parse_args(argv)
    rows = []
    for module in args.module or list(TESTS):
        if args.work_dir:
            work = args.work_dir.resolve() / module
            work.mkdir(parents=True, exist_ok=True)
            result = run_module(module, work, args.max_children, args.retest_survivors, args.report_only)
        else:
            with tempfile.TemporaryDirectory(prefix="mutation-") as tmp:
                result = run_module(module, Path(tmp), args.max_children)
        row, notes = summarise(module, result)
        rows.append(row)
        print(f"## {module}\n\n{table([row])}\n")
        if notes:
            print("\n".join(notes) + "\n")
        sys.stdout.flush()
    if len(rows) > 1:
        print("## All modules\n\n" + table(rows))
    return 1 if any(r["score"] < args.min_score for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
