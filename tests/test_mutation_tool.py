"""tools/mutation.py's bookkeeping of equivalent mutants: an entry follows its function to
another module, and one that is gone or renamed is reported (no mutmut run: its results are
made up here in the form the script reads)."""

import importlib.util
from pathlib import Path

import pytest

TOOL = Path(__file__).resolve().parent.parent / "tools" / "mutation.py"


@pytest.fixture
def mutation(tmp_path, monkeypatch):
    spec = importlib.util.spec_from_file_location("mutation_tool", TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    listed = tmp_path / "equivalent_mutants.toml"
    listed.write_text('[[mutant]]\nmodule = "engine"\nfunction = "Resampler.compute_into"\n'
                      'change = "tmp = ws.array(a) => tmp = ws.array(None)"\nreason = "a buffer"\n')
    monkeypatch.setattr(module, "EQUIVALENT", listed)
    return module


def mutant(path, old, new, exit_code=0):
    return {"exit": exit_code, "diff": f"--- {path}\n+++ {path}\n@@ -1,1 +1,1 @@\n-    {old}\n+    {new}\n"}


def test_an_equivalent_mutant_is_found_in_the_module_its_function_moved_to(mutation):
    result = {"seconds": 0.0, "mutants": {
        "bigresample.kernel.xǁResamplerǁcompute_into__mutmut_1": mutant(
            "bigresample/kernel.py", "tmp = ws.array(a)", "tmp = ws.array(None)"),
        "bigresample.kernel.x_taps__mutmut_1": mutant("bigresample/kernel.py", "n = 2", "n = 3", exit_code=1),
    }}
    row, notes = mutation.summarise("kernel", result)
    assert (row["mutants"], row["killed"], row["equivalent"], row["survived"]) == (2, 1, 1, 0)
    assert row["score"] == 1.0
    assert notes == ["- listed as equivalent under module engine, found in kernel (update its module): "
                     "`Resampler.compute_into`: `tmp = ws.array(a) => tmp = ws.array(None)`"]


def test_an_entry_no_mutant_matches_any_more_is_reported_and_a_rename_is_guessed(mutation):
    renamed = {"seconds": 0.0, "mutants": {"bigresample.engine.xǁResamplerǁfill__mutmut_1": mutant(
        "bigresample/engine.py", "tmp = ws.array(a)", "tmp = ws.array(None)")}}
    row, notes = mutation.summarise("engine", renamed)
    assert (row["equivalent"], row["survived"]) == (0, 1)
    assert notes[-1] == ("- listed as equivalent but not generated in engine any more (the same change is now in "
                         "Resampler.fill: renamed?): `Resampler.compute_into`: "
                         "`tmp = ws.array(a) => tmp = ws.array(None)`")
    _, elsewhere = mutation.summarise("splines", renamed)  # an entry of engine is not reported by another module
    assert not any("not generated" in n for n in elsewhere)


def test_a_module_of_a_package_is_mutated_at_its_file(mutation):
    assert "only_mutate = bigresample/formats/nifti.py" in mutation._setup_cfg("formats.nifti", [])
    assert "only_mutate = bigresample/engine.py" in mutation._setup_cfg("engine", [])
