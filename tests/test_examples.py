"""The example notebook runs from top to bottom (its cells assert the exactness they show) and
leaves nothing behind."""

import tempfile
from pathlib import Path

import pytest

NOTEBOOK = Path(__file__).resolve().parents[1] / "examples" / "resample_demo.ipynb"


@pytest.mark.slow
def test_the_example_notebook_executes(tmp_path):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    pytest.importorskip("matplotlib")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    scratch = Path(tempfile.gettempdir())
    before = set(scratch.glob("bigresample-notebook-*"))
    nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
    text = "".join(o.get("text", "") for o in outputs if o.get("output_type") == "stream")
    assert "Done!" in text and "order 3:" in text
    assert sum("image/png" in o.get("data", {}) for o in outputs) == 3  # slices, histograms, orders
    assert "-> True" in text  # its last cell removed its folder
    assert set(scratch.glob("bigresample-notebook-*")) == before
    assert list(tmp_path.iterdir()) == []  # nor anything where it ran
