"""Every command shown in README.md and docs/*.md runs: each page's ```bash blocks, in order, in one
folder, on small stand-ins for the files they name (the demo's files included).  A command under a
comment starting "# refused" must be refused (exit status 2, one line); any other must succeed.
The ```python blocks of the pages run too, the same way."""

import glob
import re
import shlex
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from bigresample.cli import build_parser, is_info, main
from bigresample.demo import make_phantom
from bigresample.transform_files import parse_spec

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md"] + sorted((ROOT / "docs").glob("*.md"))
#: lines that are not bigresample runs, and what checks them instead
NOT_RUN_HERE = {
    "python3 -m venv": "the Quick start's set-up: .ci/run does it (tests/test_readme.py keeps them equal)",
    "pip install": "installing: .ci/run installs the project (tests/test_readme.py keeps them equal)",
    "python benchmarks/": "a benchmark (minutes on full-size data): its figures are in benchmarks/README.md",
    "export AWS_": "credentials for an object store: tests/test_object_store.py sets its own for a local S3 server",
    "dask scheduler": "starting a cluster's scheduler: tests/test_distributed.py starts real ones",
    "dask worker": "starting a cluster's worker: tests/test_distributed.py starts real ones",
}
#: commands on object-store URLs: tests/test_object_store.py runs these routes against a local S3 server
URL_MARK = "s3://"


def commands(page: Path):
    """(command, expect_refusal) for every line of the page's bash blocks, continuations joined."""
    out = []
    for block in re.findall(r"```bash\n(.*?)```", page.read_text(), re.S):
        refused, pending = False, ""
        for line in block.splitlines():
            if pending:
                line, pending = pending + " " + line.strip(), ""
            if line.rstrip().endswith("\\"):
                pending = line.rstrip()[:-1].rstrip()
                continue
            stripped = line.strip()
            if not stripped:
                continue
            if stripped.startswith("#"):
                refused = stripped.startswith("# refused")
                continue
            out.append((stripped.split("  #")[0].strip(), refused))
            refused = False
    return out


def test_every_page_shows_commands_and_they_are_all_known():
    for page in PAGES:
        for cmd, _ in commands(page):
            assert cmd.startswith(("bigresample ", "mkdir -p ")) or any(cmd.startswith(k) or f"&& {k}" in cmd
                                                                        for k in NOT_RUN_HERE), (page.name, cmd)
            assert URL_MARK not in cmd or cmd.startswith("bigresample "), (page.name, cmd)
    assert sum(len(commands(p)) for p in PAGES) >= 25


def _stand_in(path: Path):
    """A small image at ``path``: 1 mm for MRI-like names (t1, mni), labels for seg/labels, else 0.1 mm."""
    path.parent.mkdir(parents=True, exist_ok=True)
    name = path.name.lower()
    rng = np.random.default_rng(0)
    if name.endswith(".zarr"):
        _stand_in(path.with_name(path.name[:-5] + ".nii"))
        assert main([str(path.with_name(path.name[:-5] + ".nii")), str(path), "--z-spacing", "0.1", "--quiet"]) == 0
        return
    if name.endswith((".tif", ".tiff")):
        import tifffile
        tifffile.imwrite(path, (rng.random((12, 40, 48)) * 1000).astype(np.float32), photometric="minisblack")
        return
    if "t1" in name or "mni" in name:
        data, spacing = rng.random((40, 48, 40)).astype(np.float32), 1.0
    elif "seg" in name or "label" in name:
        data, spacing = rng.choice(np.array([0, 2, 7, 40], np.int16), (48, 40, 28)), 0.1
    else:
        data, spacing = (rng.random((48, 40, 28)) * 1000).astype(np.float32), 0.1
    affine = np.diag([spacing] * 3 + [1.0])
    affine[:3, 3] = -(np.array(data.shape) - 1) / 2 * spacing
    nib.save(nib.Nifti1Image(data, affine), path)


def _transform_stand_in(path: Path):
    """An identity registration at ``path``, in the format its name says (docs/registration.md's files):
    ``*Warp.nii.gz`` a zero ITK displacement field over +-100 mm, ``*Affine.mat`` ITK's binary .mat, another
    ``.mat`` FSL's text matrix, ``.lta`` an LTA, ``.txt``/``.tfm`` an ITK text file, ``.npy`` a 4x4 matrix."""
    name = path.name.lower()
    if name.endswith((".nii", ".nii.gz")):
        img = nib.Nifti1Image(np.zeros((50, 50, 50, 1, 3), np.float32), np.diag([4.0, 4, 4, 1]) + np.c_[
            np.zeros((4, 3)), [-100, -100, -100, 0]])
        img.header.set_intent(1007)
        nib.save(img, path)
    elif name.endswith("affine.mat"):  # MATLAB v4: type 0 (little-endian double), rows, cols, imag, name length
        record = lambda var, values: (np.array([0, len(values), 1, 0, len(var) + 1], "<i4").tobytes()
                                      + var.encode() + b"\0" + np.asarray(values, "<f8").tobytes())
        path.write_bytes(record("AffineTransform_double_3_3", [1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0])
                         + record("fixed", [0, 0, 0]))
    elif name.endswith(".lta"):
        path.write_text("type = 1\nnxforms = 1\n1 4 4\n1 0 0 0\n0 1 0 0\n0 0 1 0\n0 0 0 1\n")
    elif name.endswith((".txt", ".tfm")):
        path.write_text("#Insight Transform File V1.0\n#Transform 0\nTransform: AffineTransform_double_3_3\n"
                        "Parameters: 1 0 0 0 1 0 0 0 1 0 0 0\nFixedParameters: 0 0 0\n")
    elif name.endswith(".npy"):
        np.save(path, np.eye(4))
    else:
        np.savetxt(path, np.eye(4))


def _demo_stand_ins(folder: Path):
    """What `bigresample --demo` leaves, small: the phantom and its copy at 150 um in z."""
    demo = folder / "bigresample-demo"
    demo.mkdir()
    make_phantom(demo / "phantom_100um.nii", shape=(64, 64, 40))
    assert main([str(demo / "phantom_100um.nii"), str(demo / "phantom_100x100x150um.nii"), "--z-spacing", "0.15",
                 "--quiet"]) == 0


def _prepare(args: list[str], folder: Path, cluster) -> list[str]:
    """Expand globs, map a cluster's address and /shared/ into ``folder``, make the files the command reads."""
    args = [a.replace("/shared/", f"{folder}/shared/") for a in args]
    if is_info(args):  # bigresample info FILE: the file it describes
        if not Path(args[1]).exists():
            _stand_in(Path(args[1]))
        return args
    if cluster is not None:
        args = [re.sub(r"^tcp://[0-9.]+:\d+$", cluster.scheduler_address, a) for a in args]
    opts = build_parser().parse_args(args)
    expanded = []
    for a in args:
        if "*" in a and a in opts.paths:
            if not glob.glob(a):
                for k in ("01", "02"):
                    _stand_in(Path(a.replace("*", k)))
            expanded += sorted(glob.glob(a))
        else:
            expanded.append(a)
    opts = build_parser().parse_args(expanded)
    inputs = list(opts.paths if opts.output_dir else opts.paths[:1]) + ([opts.reference] if opts.reference else [])
    for p in inputs:
        if not Path(p).exists():
            _stand_in(Path(p))
    for spec in opts.transforms or []:
        if not parse_spec(spec).path.exists():
            _transform_stand_in(parse_spec(spec).path)
    outputs = ([opts.paths[1]] if len(opts.paths) == 2 and not opts.output_dir else []) + [opts.qc]
    for p in filter(None, outputs):
        Path(p).parent.mkdir(parents=True, exist_ok=True)
    for d in filter(None, [opts.output_dir, opts.tmp_dir]):
        Path(d).mkdir(parents=True, exist_ok=True)
    return expanded


def _runs(page: Path):
    return [(c, r) for c, r in commands(page)
            if not any(c.startswith(k) or f"&& {k}" in c for k in NOT_RUN_HERE) and URL_MARK not in c]


RUN_PAGES = [p for p in PAGES if _runs(p)]


@pytest.mark.slow
@pytest.mark.parametrize("page", RUN_PAGES, ids=[p.name for p in RUN_PAGES])
def test_every_command_of_the_page_runs(page, tmp_path, monkeypatch, capsys):
    runs = _runs(page)
    monkeypatch.chdir(tmp_path)
    _demo_stand_ins(tmp_path)
    cluster = None
    if any("--scheduler" in c for c, _ in runs):
        distributed = pytest.importorskip("distributed", reason="--scheduler needs dask.distributed")
        cluster = distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=False,
                                           dashboard_address=":0")
    try:
        for cmd, refused in runs:
            if cmd.startswith("mkdir -p "):
                for d in shlex.split(cmd)[2:]:
                    Path(d).mkdir(parents=True, exist_ok=True)
                continue
            args = _prepare(shlex.split(cmd)[1:], tmp_path, cluster)
            capsys.readouterr()
            code = main(args + ["--no-progress"] * ("--no-progress" not in args and not is_info(args)))
            err = capsys.readouterr().err
            if refused:
                assert code == 2 and err.count("\n") == 1 and err.startswith("bigresample: error: "), (cmd, err)
            else:
                assert code == 0, (cmd, err)
    finally:
        if cluster is not None:
            cluster.close()


PY_PAGES = [p for p in PAGES if "```python" in p.read_text()]


@pytest.mark.parametrize("page", PY_PAGES, ids=[p.name for p in PY_PAGES])
def test_every_python_example_of_the_page_runs(page, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    for block in re.findall(r"```python\n(.*?)```", page.read_text(), re.S):
        for name in re.findall(r"'([\w./-]+\.(?:nii\.gz|nii|zarr))'", block):
            if not Path(name).exists():
                _stand_in(Path(name))
        exec(compile(block, f"{page.name} example", "exec"), {})
