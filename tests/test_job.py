"""Planning: Request -> Job from headers only, O(1) in the blocks; the checks before a run."""

import gzip
import json
import subprocess
import sys

import pytest

from bigresample import kernel
from bigresample.executors import Dask, Threads
from bigresample.job import plan_job, preflight
from bigresample.errors import DiskSpaceError
from bigresample.plan import format_bytes
from bigresample.report import Planned, Report, TextReport
from bigresample.request import Request, UsageError
from bigresample.sinks import GzipMembers, GzipNifti, OmeZarr, RawNifti, StoreThenNifti

from .helpers import make_volume


class Events(Report):
    def __init__(self):
        super().__init__()
        self.events = []

    def __call__(self, event):
        self.events.append(event)


def plan(tmp_path, out="out.nii", **kw):
    src = tmp_path / "in.nii"
    if not src.exists():
        make_volume(src, shape=(40, 30, 20))
    return plan_job(Request.make(src, tmp_path / out, **kw))


@pytest.mark.parametrize("limit", ["200MiB", "180MiB", "170MiB", "164MiB"])
@pytest.mark.parametrize("order", [1, 3])
def test_blocks_fit_the_budget_with_every_worker_busy(tmp_path, limit, order):
    job = plan(tmp_path, spacing=(0.05, 0.05, 0.05), order=order, memory_limit=limit, workers=2)
    budget = Request.make(tmp_path / "in.nii", tmp_path / "o.nii", spacing=(1, 1, 1), memory_limit=limit).memory_limit
    reserve = 160 * 2**20  # plan_blocks' default reserve for the interpreter
    assert job.plan.block_bytes * 2 <= budget - reserve


def test_whole_planes_when_the_budget_allows(tmp_path):
    job = plan(tmp_path, spacing=(0.1, 0.1, 0.15), memory_limit="2GB", workers=2)
    x, y = job.out_shape[:2]
    assert job.plan.block[:2] == (x, y)
    assert job.blocks.is_file_stretch


def test_a_budget_too_small_for_a_row_is_refused_in_one_line(tmp_path):
    from bigresample.plan import PlanError

    with pytest.raises(PlanError, match="too small for even a single row"):
        plan(tmp_path, spacing=(0.05, 0.05, 0.05), memory_limit="1KB")


def _count_regions(monkeypatch):
    """A list that grows by one for every block region ``BlockSet`` works out."""
    from bigresample.blocks import BlockSet

    counted, real = [], BlockSet.region
    monkeypatch.setattr(BlockSet, "region", lambda self, i: counted.append(i) or real(self, i))
    return counted


def test_planning_a_huge_grid_enumerates_no_block_and_allocates_nothing_per_block(tmp_path, monkeypatch):
    """1e15 output voxels (a unit slip): the plan is made from the grid's
    arithmetic, never by enumerating its 1e8 blocks (counted: no region is
    worked out; traced: no allocation grows with them).  Its seconds are a
    benchmark's (benchmarks/bench_planning.py), not a test's."""
    import tracemalloc

    make_volume(tmp_path / "in.nii", shape=(128, 128, 75))
    regions = _count_regions(monkeypatch)
    tracemalloc.start()
    try:
        job = plan_job(Request.make(tmp_path / "in.nii", tmp_path / "out.nii", spacing=(1e-4, 1e-4, 1e-4),
                                    force=True))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert job.out_shape == (128_000, 128_000, 75_000)
    assert len(job.blocks) > 10**7
    assert regions == [] and peak < 2**20, (len(regions), peak)  # not a byte per block
    with pytest.raises(DiskSpaceError, match=r"not enough disk space"):
        preflight(job)
    with pytest.raises(UsageError, match=r"output would be .* check the spacing, or add --force"):
        plan_job(Request.make(tmp_path / "in.nii", tmp_path / "out.nii", spacing=(1e-4, 1e-4, 1e-4)))
    assert regions == []


# peak RSS from VmHWM: getrusage's ru_maxrss keeps the forking parent's peak across exec.
# Work is counted, not timed: every Python function call of main() (sys.setprofile) and
# every block region worked out; not the import machinery's calls, which compile a
# changed module once.
SUBPROCESS = """
import sys
from bigresample import blocks
from bigresample.cli import main
regions, calls = [0], [0]
real = blocks.BlockSet.region
def region(self, i):
    regions[0] += 1
    return real(self, i)
blocks.BlockSet.region = region
def count(frame, event, arg):
    if event == "call" and not frame.f_code.co_filename.startswith("<frozen"):  # not the import machinery
        calls[0] += 1
sys.setprofile(count)
rc = main(sys.argv[1:])
sys.setprofile(None)
hwm = [ln for ln in open("/proc/self/status") if ln.startswith("VmHWM:")][0]
print("MEASURED", rc, calls[0], regions[0], int(hwm.split()[1]) * 1024, file=sys.stderr)
"""


def _measured(args):
    """(exit status, Python calls, regions worked out, peak RSS, the process)."""
    p = subprocess.run([sys.executable, "-c", SUBPROCESS, *map(str, args)], capture_output=True, text=True,
                       timeout=120)
    line = [ln for ln in p.stderr.splitlines() if ln.startswith("MEASURED")][-1].split()
    return int(line[1]), int(line[2]), int(line[3]), int(line[4]), p


def test_a_1e15_voxel_request_is_refused_at_once_in_flat_memory(tmp_path):
    """"At once" counted as work: the refusal of 1e15 voxels makes as many
    Python calls as that of 1e12 (O(1) in the grid and its blocks), works out
    no block region, and stays in flat memory; so does its plan (--force
    --dry-run), but for the block shape's search.  The seconds it takes are
    measured by benchmarks/bench_planning.py."""
    make_volume(tmp_path / "in.nii", shape=(128, 128, 75))
    args = [tmp_path / "in.nii", tmp_path / "out.nii", "--no-progress", "--spacing"]
    huge, smaller = ["0.0001"] * 3, ["0.001"] * 3  # 1.2e15 and 1.2e12 output voxels
    rc, calls, regions, rss, p = _measured(args + huge)
    assert rc == 2
    assert "output would be" in p.stderr and "add --force" in p.stderr
    assert regions == 0
    assert rss < 200 * 2**20, format_bytes(rss)
    assert sorted(f.name for f in tmp_path.iterdir()) == ["in.nii"]
    rc, calls_smaller, _, _, p = _measured(args + smaller)
    assert rc == 2 and "output would be" in p.stderr
    assert abs(calls - calls_smaller) <= 0.02 * calls_smaller, (calls, calls_smaller)
    # with --force --dry-run, the plan is printed, and the disk check refuses it as the run would
    rc, calls, regions, rss, p = _measured(args + huge + ["--force", "--dry-run"])
    assert rc == 2, p.stderr
    assert "Dry run: nothing is read or written." in p.stdout
    assert "Output shape: (128000, 128000, 75000) (float32)" in p.stdout
    assert "not enough disk space" in p.stderr and "Verdict" not in p.stdout
    rc, calls_smaller, regions_smaller, _, p = _measured(args + smaller + ["--force", "--dry-run"])
    assert rc == 2 and "not enough disk space" in p.stderr, p.stderr
    # a thousand times the blocks; the block shape's search tries a few more candidates (its
    # steps grow with the logarithm of the grid), nothing grows with the blocks
    assert calls < 2 * calls_smaller, (calls, calls_smaller)
    assert regions == regions_smaller <= 2
    assert rss < 200 * 2**20


def test_planning_reads_no_voxels(tmp_path):
    """A .nii.gz whose voxels are corrupted plans (and dry-runs) fine: only
    its header is read; the run then refuses it."""
    src = tmp_path / "in.nii.gz"
    make_volume(src, shape=(40, 30, 20))
    raw = bytearray(gzip.decompress(src.read_bytes()))
    comp = bytearray(gzip.compress(bytes(raw)))
    comp[len(comp) // 2] ^= 0xFF  # deep inside the voxels
    src.write_bytes(bytes(comp))
    events = Events()
    job = plan_job(Request.make(src, tmp_path / "out.nii", spacing=(0.2, 0.2, 0.2)), events)
    assert job.volume.source is None and job.volume.scratch is None
    assert any(isinstance(e, Planned) for e in events.events)
    assert sorted(f.name for f in tmp_path.iterdir()) == ["in.nii.gz"]


def test_a_dry_run_with_a_local_cluster_starts_nothing(tmp_path):
    make_volume(tmp_path / "in.nii", shape=(40, 30, 20))
    code = ("import sys, multiprocessing; from bigresample.cli import main; "
            "rc = main(sys.argv[1:]); "
            "print('STATE', rc, 'distributed' in sys.modules, len(multiprocessing.active_children()))")
    p = subprocess.run([sys.executable, "-c", code, str(tmp_path / "in.nii"), str(tmp_path / "out.nii"),
                        "--spacing", "0.2", "0.2", "0.2", "--dry-run", "--local-cluster", "2"],
                       capture_output=True, text=True, timeout=120)
    state = [ln for ln in p.stdout.splitlines() if ln.startswith("STATE")][0].split()
    assert state[1:] == ["0", "False", "0"], p.stdout + p.stderr
    assert "Dry run: nothing is read or written." in p.stdout


@pytest.mark.parametrize("out, kw, sink", [
    ("o.nii", {}, RawNifti),
    ("o.nii.gz", {}, GzipNifti),
    ("o.nii", {"keep_zarr": True}, StoreThenNifti),
    ("o.nii", {"local_cluster": 1}, RawNifti),  # the workers write at the offsets
    ("o.nii.gz", {"local_cluster": 1}, GzipMembers),  # the workers compress, the client concatenates
    ("o.nii.gz", {"local_cluster": 1, "chunks": (20, 7, 3)}, StoreThenNifti),  # blocks not stretches of the file
    ("o.nii", {"local_cluster": 1, "tmp_dir": "file:///tmp"}, StoreThenNifti),  # scratch on an object store
    ("o.zarr", {}, OmeZarr),
])
def test_each_output_has_its_sink_and_executor(tmp_path, out, kw, sink):
    job = plan(tmp_path, out, spacing=(0.2, 0.2, 0.2), **kw)
    assert type(job.sink) is sink
    assert isinstance(job.executor, Dask if "local_cluster" in kw else Threads)
    assert job.sink.partial.parent == tmp_path and job.sink.partial.name.startswith(".")
    assert not job.sink.partial.exists()


def test_a_pyramid_plans_one_stage_per_level(tmp_path):
    job = plan(tmp_path, "o.zarr", spacing=(0.1, 0.1, 0.1), levels=3)
    assert [s.level for s in job.stages] == [0, 1, 2]
    assert [s.grid.out_shape for s in job.stages] == [(40, 30, 20), (20, 15, 10), (10, 8, 5)]
    assert len({str(s.journal) for s in job.stages}) == 3


def test_the_journal_identity_is_the_one_earlier_versions_wrote(tmp_path):
    """Field for field, so that a run interrupted before this version resumes."""
    job = plan(tmp_path, spacing=(0.2, 0.2, 0.15), order=3)
    ident = job.identity(job.stages[0])
    assert sorted(ident) == ["antialias", "block", "cval", "dtype", "grid", "header", "input", "mode", "order",
                             "output", "reference", "spacing", "store", "version"]
    assert ident["input"]["path"] == str((tmp_path / "in.nii").resolve())
    assert ident["spacing"] == [repr(0.2), repr(0.2), repr(0.15)]
    assert ident["order"] == 3 and ident["cval"] == repr(0.0) and ident["store"] is None
    json.dumps(ident)  # written as the journal's first line


@pytest.mark.parametrize("kw, message", [
    (dict(spacing=(1, 1, 1), shape=(2, 2, 2)), "not several"),
    (dict(), "no spacing given"),
    (dict(spacing=(1, 1)), "spacing needs 3 values"),
    (dict(spacing=(1, 1, 0)), "z-spacing must be finite and > 0"),
    (dict(spacing=(1, 1, 1), units="nm"), "units must be 'mm' or 'um'"),
    (dict(shape=(2, 2)), "--shape needs 3 values"),
    (dict(spacing=(1, 1, 1), workers=0), "workers must be >= 1"),
    (dict(spacing=(1, 1, 1), scheduler="tcp://x:1", local_cluster=2), "not both"),
    (dict(spacing=(1, 1, 1), local_cluster=0), "at least 1 worker"),
])
def test_every_rule_between_arguments_is_checked_before_anything_is_opened(tmp_path, kw, message):
    # the input does not even exist: the request is refused first
    with pytest.raises(ValueError, match=message):
        Request.make(tmp_path / "missing.nii", tmp_path / "o.nii", **kw)


def test_the_text_report_renders_the_planning_events(tmp_path):
    lines = []
    make_volume(tmp_path / "in.nii", shape=(40, 30, 20))
    plan_job(Request.make(tmp_path / "in.nii", tmp_path / "o.nii", spacing=(None, None, 0.2), memory_limit="1GB",
                          workers=2, spacing_label="z=0.2"), TextReport(lines.append))
    assert lines[0] == f"Loading NIfTI-1 image: {tmp_path / 'in.nii'}"
    assert "Changing spacing: z=0.2" in lines
    assert "  z-axis: Downsampling (0.5000x)" in lines
    assert lines[-3] == "Block plan: 40x30x1 output voxels per block, 10 blocks, 2 workers, ~65.6 KiB per block"
    assert lines[-2] == "Memory budget: 953.7 MiB"
    assert lines[-1] == f"Kernel: {kernel.describe()}"
