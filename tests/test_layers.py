"""The package's layers hold: a module imports only modules of its own layer or of the layers below it.

Read from the source (every ``import`` in ``bigresample/``, those inside functions
included), not from what a run happens to load.  So the numeric core imports no
format, run or command-line module; a format imports no run or command-line module;
nothing below ``pipeline`` imports ``pipeline`` or ``cli``.  A module missing from
``LAYERS`` fails the test by name: a new module (or package) joins a layer by one line
here.  An entry names a module (``nifti``) or a package and everything in it
(``formats`` covers ``formats/__init__.py`` and ``formats/*.py``).
"""

import ast
import functools
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "bigresample"

#: lowest first: a module may import the modules of its own layer and of the layers listed before it
LAYERS = [
    ("base", {"errors", "_version", "_kernel", "_signals", "names", "timeline"}),
    # the numbers: grids, splines, the separable engine and the general (rotated) path, their
    # compiled kernel, anti-aliasing, label maps, the blocks an output is cut into, the dask
    # array front (resample_array) that uses only these, and the resamplers' registry (resampling)
    ("core", {"geometry", "splines", "kernel", "_pykernel", "engine", "transform", "antialias", "labels", "blocks",
              "lazy", "bounds", "resampling", "registration", "warp", "permuted"}),
    # files and where they live: NIfTI and its codecs and header checks, OME-Zarr, URLs and
    # shared folders, the provenance record, ``bigresample info``, the input formats' registry (inputs)
    ("formats", {"safefs", "location", "codec", "rawio", "header_checks", "ome", "nifti", "provenance", "fileinfo",
                 "inputs", "volume", "nibabel_input", "url_input", "tiff", "plainzarr", "axes", "transform_files"}),
    # a run: the request, its plan, journal, sinks, executors, the runner and what it reports, and the
    # output formats' registry (outputs: an output format makes its sink)
    ("run", {"request", "plan", "journal", "sinks", "executors", "cluster", "job", "runner", "report", "stats",
             "qc", "outputs"}),
    ("pipeline", {"pipeline"}),
    # the public names, the command line and what only it uses
    ("front", {"__init__", "__main__", "cli", "demo"}),
]


def module_name(path: Path) -> str:
    """``formats.nifti`` for bigresample/formats/nifti.py, ``formats`` for its ``__init__.py``; ``__init__`` for the root's."""
    parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
    if parts[-1] == "__init__" and len(parts) > 1:
        parts.pop()
    return ".".join(parts)


def _is_module(dotted: str) -> bool:
    """A module of the package: a source file, a package, a compiled extension, or a name LAYERS lists."""
    where = PACKAGE.joinpath(*dotted.split("."))
    return (where.with_suffix(".py").exists() or (where / "__init__.py").exists()
            or any(where.parent.glob(where.name + ".*.so")) or any(where.parent.glob(where.name + ".*.pyd"))
            or any(dotted in names for _, names in LAYERS))


def imported(name: str, is_package: bool, source: str) -> set[str]:
    """The package's modules that module ``name`` (its source ``source``) imports, as dotted names;
    ``__init__`` for a name taken from the package itself (``from bigresample import resample``)."""
    here = [] if name == "__init__" else name.split(".")
    package = here if is_package else here[:-1]
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            targets = [a.name.split(".")[1:] for a in node.names if a.name.split(".")[0] == "bigresample"]
            found.update(".".join(t) if t else "__init__" for t in targets)
            continue
        if not isinstance(node, ast.ImportFrom):
            continue
        if node.level:
            base = package[: len(package) - (node.level - 1)] + (node.module.split(".") if node.module else [])
        elif node.module and node.module.split(".")[0] == "bigresample":
            base = node.module.split(".")[1:]
        else:
            continue  # not this package
        for alias in node.names:  # ``from . import engine`` imports a module; ``from . import resample`` a name
            sub = ".".join(base + [alias.name])
            found.add(sub if _is_module(sub) else ".".join(base) or "__init__")
    return found


def layer_of(module: str) -> int | None:
    """The index in ``LAYERS`` of the module or of the innermost package holding it; None if unlisted."""
    parts = module.split(".")
    for n in range(len(parts), 0, -1):
        for i, (_, names) in enumerate(LAYERS):
            if ".".join(parts[:n]) in names:
                return i
    return None


def violations(graph: dict[str, set[str]]) -> list[str]:
    """One line per unlisted module and per import of a higher layer's module."""
    problems = [f"{m}: not in LAYERS (tests/test_layers.py): add it to its layer"
                for m in sorted(set(graph) | set().union(*graph.values())) if layer_of(m) is None]
    for module, targets in sorted(graph.items()):
        mine = layer_of(module)
        for target in sorted(targets):
            theirs = layer_of(target)
            if mine is not None and theirs is not None and theirs > mine:
                problems.append(f"{module} ({LAYERS[mine][0]}) imports {target} ({LAYERS[theirs][0]})")
    return problems


def package_graph() -> dict[str, set[str]]:
    """Module -> the package's modules it imports (a copy: a test may add to it)."""
    return {name: set(targets) for name, targets in _read_package().items()}


@functools.cache
def _read_package() -> dict[str, frozenset[str]]:
    graph = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        name = module_name(path)
        graph[name] = frozenset(imported(name, path.name == "__init__.py", path.read_text(encoding="utf-8")) - {name})
    return graph


def test_every_module_imports_only_its_own_layer_and_those_below():
    graph = package_graph()
    assert {"engine", "nifti", "job", "pipeline", "cli"} <= set(graph), sorted(graph)  # the walk saw the package
    assert violations(graph) == []


def test_no_module_is_listed_twice():
    seen = [m for _, names in LAYERS for m in names]
    assert len(seen) == len(set(seen)), sorted(m for m in seen if seen.count(m) > 1)


@pytest.mark.parametrize("module, source, expected", [
    ("engine", "from .nifti import open_input\n", "engine (core) imports nifti (formats)"),
    ("transform", "def f():\n    from bigresample import job\n", "transform (core) imports job (run)"),
    ("geometry", "from . import sinks\n", "geometry (core) imports sinks (run)"),
    ("nifti", "import bigresample.request\n", "nifti (formats) imports request (run)"),
    ("ome", "from .cli import main\n", "ome (formats) imports cli (front)"),
    ("job", "from .pipeline import resample\n", "job (run) imports pipeline (pipeline)"),
    ("plan", "from bigresample import resample\n", "plan (run) imports __init__ (front)"),
])
def test_an_import_of_a_higher_layer_is_reported(module, source, expected):
    graph = package_graph()
    graph[module] = graph[module] | imported(module, False, source)
    assert violations(graph) == [expected]


def test_a_module_of_a_package_is_placed_by_its_package_and_an_unlisted_one_is_named():
    graph = package_graph()
    # bigresample/formats/tiff.py, once ``formats`` is a listed package, would import its sibling
    # relatively and the core with two dots
    source = "from .common import Volume\nfrom ..engine import Resampler\nfrom .. import nifti\n"
    assert imported("formats.tiff", False, source) == {"formats.common", "engine", "nifti"}
    graph["formats.tiff"] = {"engine", "nifti"}
    assert violations(graph) == ["formats.tiff: not in LAYERS (tests/test_layers.py): add it to its layer"]
    LAYERS[2][1].add("formats")
    try:
        assert violations(graph) == []
        graph["formats.tiff"] = {"job"}
        assert violations(graph) == ["formats.tiff (formats) imports job (run)"]
    finally:
        LAYERS[2][1].discard("formats")
