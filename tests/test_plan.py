"""plan: memory sizes, the planner's byte counts (hand-computed) and the block shapes it chooses."""

import os

import numpy as np
import pytest

from bigresample import plan as plan_mod
from bigresample.engine import Resampler
from bigresample.geometry import make_grid
from bigresample.plan import (Plan, PlanError, block_bytes, default_memory_limit, format_bytes, parse_memory,
                              plan_blocks, window_shape)

from .helpers import permuted_grid

MiB = 2**20


@pytest.mark.parametrize("text, n", [
    ("2GB", 2 * 10**9), ("2gb", 2 * 10**9), ("2 g", 2 * 10**9), ("512MiB", 512 * 2**20), ("1.5g", 1_500_000_000),
    ("3k", 3000), ("3KB", 3000), ("7m", 7 * 10**6), ("7MB", 7 * 10**6), ("2t", 2 * 10**12), ("2TB", 2 * 10**12),
    ("4KiB", 4096), ("3GiB", 3 * 2**30), ("1TiB", 2**40), ("10b", 10), ("10B", 10), (" 12 ", 12), ("1000", 1000),
    (".5k", 500), (1000000, 1000000), (np.int64(77), 77), (1, 1), ("1", 1),
])
def test_memory_sizes(text, n):
    got = parse_memory(text)
    assert got == n and type(got) is int


@pytest.mark.parametrize("value, why", [
    ("2XB", "must look like 2GB, 512MiB or a number of bytes; got '2XB'"),
    ("GB", "must look like"), ("1.2.3", "must look like"), ("", "must look like"), ("-5", "must look like"),
    (True, "must look like 2GB, 512MiB or a number of bytes; got True"),
    ("0", "must be > 0; got '0'"), (0, "must be > 0; got 0"), (-3, "must be > 0; got -3"), ("0.1b", "must be > 0"),
])
def test_bad_memory_sizes_are_refused_with_the_value(value, why):
    with pytest.raises(PlanError, match="memory limit " + why.replace("(", r"\(").replace(")", r"\)")):
        parse_memory(value)


MEMINFO = "MemTotal:       16000000 kB\nMemFree:         1000000 kB\nMemAvailable:    8000000 kB\nBuffers: 1 kB\n"


def _fake_open(text):
    def fake(path, *a, **k):
        assert path == "/proc/meminfo"
        if text is None:
            raise OSError("no /proc here")
        import io
        return io.StringIO(text)
    return fake


def test_available_memory_is_memavailable_in_bytes(monkeypatch):
    monkeypatch.setattr(plan_mod, "open", _fake_open(MEMINFO), raising=False)
    assert plan_mod.available_memory() == 8_000_000 * 1024


@pytest.mark.parametrize("text", [None, "MemTotal:       16000000 kB\n"])
def test_without_memavailable_the_physical_memory(monkeypatch, text):
    monkeypatch.setattr(plan_mod, "open", _fake_open(text), raising=False)
    assert plan_mod.available_memory() == os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


@pytest.mark.parametrize("available, limit", [(8 * 2**30 + 1, 4 * 2**30), (600 * MiB, 300 * MiB),
                                              (512 * MiB, 256 * MiB), (100 * MiB, 256 * MiB)])
def test_the_default_budget_is_half_the_available_memory_at_least_256_mib(monkeypatch, available, limit):
    monkeypatch.setattr(plan_mod, "available_memory", lambda: available)
    assert default_memory_limit() == limit


@pytest.mark.parametrize("n, text", [
    (0, "0 B"), (1023, "1023 B"), (1024, "1.0 KiB"), (1536, "1.5 KiB"), (-2048, "-2.0 KiB"),
    (5 * MiB, "5.0 MiB"), (3 * 2**30, "3.0 GiB"), (5 * 2**40, "5.0 TiB"), (2**50, "1024.0 TiB"),
])
def test_byte_counts_for_people(n, text):
    assert format_bytes(n) == text


# x halved (step 0.5), y unchanged (identity), z doubled (step 2): 40x30x20 -> 80x30x10
GRID = make_grid((40, 30, 20), (1, 1, 1), (0.5, 1, 2))


@pytest.mark.parametrize("order, block, window", [
    (1, (16, 7, 3), (10, 7, 8)),  # x: ceil(16 * 0.5) + 1 + 1; y: the block; z: ceil(3 * 2) + 2
    (0, (16, 7, 3), (9, 7, 7)),  # + order + 1
    (1, (80, 7, 3), (40, 7, 8)),  # x: 42 capped at the axis' 40 voxels
    (2, (16, 7, 3), (35, 7, 33)),  # + 2 * halo (12 at order 2)
    (3, (16, 7, 10), (46, 7, 44)),  # x: 8 + 4 + 2 * 17; z: 20 + 4 + 34 capped at 20 + 24
])
def test_the_input_window_of_a_block(order, block, window):
    assert window_shape(Resampler(GRID, order=order), block) == window


def test_the_window_covers_what_the_engine_reads():
    r = Resampler(GRID, order=1)
    block = (16, 7, 3)
    w = window_shape(r, block)
    for x0 in range(0, 80, 16):
        for z0 in range(0, 10, 3):
            region = (slice(x0, x0 + 16), slice(0, 7), slice(z0, min(z0 + 3, 10)))
            got = r.input_region(region)
            assert all(s.stop - s.start <= n for s, n in zip(got, w)), (region, got, w)


@pytest.mark.parametrize("grid, order, block, expected", [
    # window 10*7*8 = 560 (int16), out 336 (float32), plane max(10,16)*max(7,7) = 112:
    # 560*2 + 2*336*4 + 4*112*8 + (two axes resampled) 2*560*8
    (GRID, 1, (16, 7, 3), 1120 + 2688 + 3584 + 8960),
    # window 46*7*44 = 14168, out 1120, plane 46*7: 14168*2*2 + 2*1120*4 + 4*322*8 + 14168*8 + 2*14168*8
    (GRID, 3, (16, 7, 10), 56672 + 8960 + 10304 + 113344 + 226688),
    # order 2: window 35*7*33 = 8085, out 336, plane 35*7: 8085*2*2 + 2*336*4 + 4*245*8 + 8085*8 + 2*8085*8
    (GRID, 2, (16, 7, 3), 32340 + 2688 + 7840 + 64680 + 129360),
    # only z resampled: window 40*30*8 = 9600, out 3600, plane 1200; no intermediates
    (make_grid((40, 30, 20), (1, 1, 1), (1, 1, 2)), 1, (40, 30, 3), 19200 + 28800 + 38400),
    # upsampled: window 12*5*7 = 420 < out 40*5*10 = 2000, plane 40*5; intermediates 2*2000*8
    (make_grid((40, 30, 20), (1, 1, 1), (0.25, 1, 0.5)), 1, (40, 5, 10), 840 + 16000 + 6400 + 32000),
])
def test_the_bytes_of_one_block(grid, order, block, expected):
    got = block_bytes(Resampler(grid, order=order), block, 2, 4)
    assert got == expected and type(got) is int


@pytest.mark.parametrize("block, gzip, extra", [
    ((16, 7, 3), False, 0),
    ((16, 7, 3), True, 3 * 80 * 30 * 3 * 4),  # not stretches: three slabs assembled
    ((80, 30, 3), True, (2 + 2) * 80 * 30 * 3 * 4),  # stretches: a member per block in flight, two more
    ((80, 7, 1), True, (2 + 2) * 80 * 7 * 1 * 4),
])
def test_the_peak_of_a_run(block, gzip, extra):
    p = Plan(block, 2, 10**9, 1000)
    assert p.peak_bytes((80, 30, 10), 4, gzip) == 100 * MiB + 2 * 1000 + extra
    assert p.peak_bytes((80, 30, 10), 4, gzip, base=0) == 2 * 1000 + extra


def test_given_chunks_are_clipped_to_the_output_and_costed():
    r = Resampler(GRID, order=1)
    p = plan_blocks(r, 2, 4, 10**9, 0, block=(16.0, 7, 300))
    assert p == Plan((16, 7, 10), 1, 10**9, block_bytes(r, (16, 7, 10), 2, 4))
    assert plan_blocks(r, 2, 4, 10**9, 3, block=(1, 1, 1)).block == (1, 1, 1)


@pytest.mark.parametrize("block", [(16, 7), (16, 7, 3, 1), (0, 7, 3), (16, -1, 3)])
def test_bad_chunks_are_refused(block):
    with pytest.raises(PlanError, match=r"chunks must be 3 positive integers; got \(" + ", ".join(
            str(b) for b in block)):
        plan_blocks(Resampler(GRID, order=1), 2, 4, 10**9, 2, block=block)


def _identity(shape):
    return Resampler(make_grid(shape, (1, 1, 1), (1, 1, 1)), order=1)


@pytest.mark.parametrize("nz, workers, bz", [
    (28, 2, 2),  # 28 -> 14 -> 7 -> 4 (7 blocks) -> 2 (14 blocks >= 4 per worker)
    (18, 2, 2),  # 18 -> 9 -> 5 -> 3 (6 blocks) -> 2 (9)
    (18, 5, 1),  # 20 blocks wanted: as thin as one plane
    (18, 1, 5),  # 18 -> 9 -> 5 (4 blocks)
])
def test_a_roomy_budget_gives_whole_planes_enough_blocks_for_every_worker(nz, workers, bz):
    p = plan_blocks(_identity((40, 30, nz)), 4, 4, 2 * 2**30, workers)
    assert p.block == (40, 30, bz) and p.workers == workers
    assert p.block_bytes == block_bytes(_identity((40, 30, nz)), p.block, 4, 4)


def test_a_budget_below_the_reserve_is_refused():
    with pytest.raises(PlanError, match=r"memory limit 160\.0 MiB is too small for even a single row of voxels"):
        plan_blocks(_identity((40, 30, 20)), 4, 4, 160 * MiB, 2)


def test_halvings():
    assert plan_mod._halvings(1) == [1]
    assert plan_mod._halvings(2) == [2, 1]
    assert plan_mod._halvings(5) == [5, 3, 2, 1]
    assert plan_mod._halvings(8) == [8, 4, 2, 1]
    assert plan_mod._halvings(571) == [571, 286, 143, 72, 36, 18, 9, 5, 3, 2, 1]


def test_a_block_that_just_fits_is_taken():
    """A single plane: whole when the budget per worker is exactly its cost, split when one byte short."""
    r = _identity((40, 30, 1))
    whole = block_bytes(r, (40, 30, 1), 4, 4)
    assert plan_blocks(r, 4, 4, 160 * MiB + whole, 1).block == (40, 30, 1)
    assert plan_blocks(r, 4, 4, 160 * MiB + whole - 1, 1).block != (40, 30, 1)


def _oblique():
    from bigresample.geometry import reference_grid
    from bigresample.transform import AffineResampler
    t = np.radians(15)
    a_ref = np.array([[np.cos(t), -np.sin(t), 0, 0], [np.sin(t), np.cos(t), 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]])
    a_ref = a_ref @ np.diag([0.9, 0.9, 1.1, 1.0])
    return AffineResampler(reference_grid((120, 100, 60), np.eye(4), (110, 120, 50), a_ref), order=3)


def test_the_general_path_costs_and_plans_its_own_windows():
    from bigresample import transform
    r = _oblique()
    assert window_shape(r, (32, 16, 8)) == r.window_shape((32, 16, 8))
    assert block_bytes(r, (32, 16, 8), 2, 4) == transform.block_bytes(r, (32, 16, 8), 2, 4)
    p = plan_blocks(r, 2, 4, 2 * 2**30, 2)
    assert p.block == _model_plan(r, 2, 4, 2 * 2**30, 2, 160 * MiB, False, False)
    assert p.block_bytes == transform.block_bytes(r, p.block, 2, 4)


def _model_plan(r, in_it, out_it, limit, workers, reserve, gzip, stretches):
    """The planner's documented cost model (plan.py's comments), written out plainly.

    Blocks: every shape from halving each axis (n, ceil(n/2), ... 1) whose
    estimated bytes fit the budget per worker (at most the target per block:
    48 MiB at orders 0 and 1, 128 MiB for splines, 512 MiB on the general
    path); only stretches of the file when asked; for a .nii.gz, blocks that are
    not stretches only if three slabs of whole planes plus every worker's block
    fit the budget and one slab fits a worker's share.  Cost: input voxels read,
    plus 20000 per block, plus 4096 per contiguous stretch read or written (one
    for whole planes, window depth + block depth for whole rows, that times the
    rows otherwise), times 1.25 (2 for a .nii.gz) for blocks that are not
    stretches.  The first cheapest wins; then z is halved (rounding up) until
    there are at least four blocks per worker.
    """
    from bigresample.transform import AffineResampler
    out = r.grid.out_shape
    x, y = out[:2]
    budget = limit - reserve
    if isinstance(r, AffineResampler):
        target = 512 * MiB
    else:
        target = 48 * MiB if r.order <= 1 else 128 * MiB
    share = min(budget // workers, target)
    halvings = []
    for n in out:
        h = [n]
        while h[-1] > 1:
            h.append((h[-1] + 1) // 2)
        halvings.append(h)
    costs = []
    for bx in halvings[0]:
        for by in halvings[1]:
            for bz in halvings[2]:
                b = (bx, by, bz)
                nbytes = block_bytes(r, b, in_it, out_it)
                stretch = (bx == x and by == y) or (bx == x and bz == 1) or (by == 1 and bz == 1)
                slab = x * y * bz * out_it
                if nbytes > share or (stretches and not stretch):
                    continue
                if gzip and not stretch and (3 * slab + workers * nbytes > budget or slab > share):
                    continue
                wx, wy, wz = window_shape(r, b)
                spans = 1 if (bx, by) == (x, y) else (wz + bz if bx == x else (wz + bz) * by)
                count = np.prod([-(-n // k) for n, k in zip(out, b)])
                score = count * (wx * wy * wz + 20_000 + spans * 4096)
                if not stretch:
                    score *= 2.0 if gzip else 1.25
                costs.append((score, len(costs), b))
    if not costs:
        return None
    bx, by, bz = min(costs)[2]
    while bz > 1 and np.prod([-(-n // k) for n, k in zip(out, (bx, by, bz))]) < 4 * workers:
        bz = (bz + 1) // 2
    return (bx, by, bz)


SCENARIOS = [((400, 300, 64), 0.7, 3), ((400, 300, 64), 0.7, 1), ((256, 256, 40), 1.3, 3), ((90, 200, 30), 0.5, 0)]


@pytest.mark.parametrize("shape, spacing, order", SCENARIOS)
@pytest.mark.parametrize("gzip, stretches", [(False, False), (True, False), (False, True)])
def test_the_planner_picks_the_cheapest_block_of_its_cost_model(shape, spacing, order, gzip, stretches):
    r = Resampler(make_grid(shape, (1, 1, 1), (spacing,) * 3), order=order)
    for limit_mib, workers, in_it, out_it in [(164, 1, 4, 4), (168, 2, 4, 4), (176, 3, 2, 4), (200, 2, 4, 2),
                                               (400, 2, 4, 4), (1200, 1, 4, 8)]:
        limit = limit_mib * MiB
        want = _model_plan(r, in_it, out_it, limit, workers, 160 * MiB, gzip, stretches)
        kw = {k: v for k, v in dict(gzip=gzip, stretches=stretches).items() if v}  # the defaults otherwise
        if want is None:
            with pytest.raises(PlanError, match="too small for even a single row"):
                plan_blocks(r, in_it, out_it, limit, workers, **kw)
            continue
        p = plan_blocks(r, in_it, out_it, limit, workers, **kw)
        assert p == Plan(want, workers, limit, block_bytes(r, want, in_it, out_it)), (limit_mib, workers)


def test_whole_planes_win_when_they_fit_and_a_tight_spline_budget_splits_y():
    """plan.py's two stated outcomes, on a 571x429x91 output."""
    grid = make_grid((400, 300, 64), (1, 1, 1), (0.7, 0.7, 0.7))
    assert plan_blocks(Resampler(grid, order=1), 4, 4, 400 * MiB, 2).block[:2] == (571, 429)
    bx, by, bz = plan_blocks(Resampler(grid, order=3), 4, 4, 200 * MiB, 2).block
    assert by < 429 and bz > 1


def test_a_gzip_output_whose_plane_exceeds_a_worker_share_is_cut_in_rows_not_slabs():
    """2560x5120 float32 planes (50 MiB, over the 48 MiB target): split blocks would need slabs of whole
    planes no worker's share holds, so the .nii.gz gets stretches of rows."""
    r = Resampler(make_grid((2048, 4096, 4), (1, 1, 1), (0.8, 0.8, 0.8)), order=1)
    p = plan_blocks(r, 4, 4, 2**30, 1, gzip=True)
    assert p.block == _model_plan(r, 4, 4, 2**30, 1, 160 * MiB, True, False) == (2560, 160, 1)


def test_label_methods_count_the_float64_resampler_and_their_own_buffers_by_hand():
    """--labels linear/cubic: the intensity resampler's buffers for float64 indicators,
    plus per window voxel the label (2 B for int16) and its dense id (4 B), per output
    voxel the running maximum (8), the labels kept (2), a mask (1) and the output (1).
    --labels mode: per window voxel 2 + 4 + 3 * 4, per output voxel 4 + 2 + 1 + 1 + 4."""
    from math import prod

    from bigresample import labels

    g = make_grid((40, 30, 20), (1, 1, 1), (0.5, 0.5, 0.5), "center")
    lin, b = labels.make("linear", g, "nearest", 0.0), (20, 16, 10)
    w = plan_mod.window_shape(lin.base, b)
    assert block_bytes(lin, b, 2, 1) == block_bytes(lin.base, b, 8, 8) + prod(w) * 6 + prod(b) * 12
    down = make_grid((40, 30, 20), (1, 1, 1), (2, 2, 2), "center")
    mode = labels.make("mode", down, "nearest", 0.0)
    wm = mode.window_shape(b)
    assert wm == (min(40, 2 * 20 + 2), min(30, 2 * 16 + 2), min(20, 2 * 10 + 2))
    assert block_bytes(mode, b, 2, 1) == prod(wm) * 18 + prod(b) * 12


def test_label_methods_aim_for_384_mib_blocks():
    from bigresample import labels

    g = make_grid((1024, 1024, 600), (1, 1, 1), (0.5, 0.5, 0.5), "center")
    p = plan_blocks(labels.make("linear", g, "nearest", 0.0), 2, 2, 64 * 2**30, 1)
    assert 48 * 2**20 < p.block_bytes <= 384 * 2**20


def test_the_general_path_reserves_what_the_separable_one_does():
    """The compiled kernel loads no JIT: plan_blocks keeps the usual 160 MiB for the
    interpreter and libraries, and a 40 MiB margin above it is what a block gets."""
    from bigresample.geometry import reference_grid
    from bigresample.transform import AffineResampler

    t = np.radians(15.0)
    ref = np.eye(4)
    ref[:2, :2] = [[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]]
    aff = AffineResampler(reference_grid((512, 512, 300), np.eye(4), (512, 512, 300), ref), 1, "nearest")
    p = plan_blocks(aff, 4, 4, 160 * 2**20 + 40 * 2**20, 1)
    assert 10 * 2**20 < p.block_bytes <= 40 * 2**20


def _voxels_read(resampler, plan) -> int:
    """The input voxels the plan's blocks read in all: each block's window (``input_region``), whole
    rows where it cuts the input's rows (``rawio.RawReader`` reads rows close together so)."""
    from bigresample.blocks import BlockSet
    blocks = BlockSet(tuple(resampler.grid.out_shape), plan.block)
    total = 0
    for i in range(len(blocks)):
        x, y, z = resampler.input_region(blocks.region(i))[:3]
        total += resampler.grid.in_shape[0] * (y.stop - y.start) * (z.stop - z.start)
    return total


@pytest.mark.parametrize("order", [0, 1])
def test_more_workers_on_a_grid_whose_x_runs_along_the_input_y_read_no_more_rows(order):
    """Issue 34: onto a P-I-L grid the general path sliced the output into ever thinner z slabs for
    more workers, each reading every input row for a narrow cut of it (512x512x300 at 0.2 mm: 30 blocks
    of 153,600 row reads on 2 workers, 34 s against 10 s on 1).  The planner counts those reads and
    cuts another axis: 2 workers read about as much as 1, and the input a few times at most (halo, whole rows)."""
    from bigresample.transform import AffineResampler
    in_shape = (160, 144, 100)
    r = AffineResampler(permuted_grid(in_shape, (1, 2, 0), (True, True, True), 2.0, (72, 50, 80)), order)
    one, two = (plan_blocks(r, 4, 4, 2**30, w) for w in (1, 2))
    blocks_two = np.prod([-(-n // b) for n, b in zip(r.grid.out_shape, two.block)])
    assert blocks_two >= r.min_blocks_per_worker * 2
    read_one, read_two = _voxels_read(r, one), _voxels_read(r, two)
    assert read_two <= 1.25 * read_one
    assert read_one <= 3 * np.prod(in_shape) and read_two <= 3 * np.prod(in_shape)  # main: 8x and 4x


def test_a_flipped_axis_reads_the_window_of_the_same_axis_unflipped():
    """Issue 34: the engine's window estimate took a flipped axis' negative step as 1e-9 input
    voxels a sample (3 voxels a window at order 1): the planner under-counted memory and work."""
    straight = Resampler(permuted_grid((200, 150, 90), (0, 1, 2), (False,) * 3, 1.5, (100, 80, 50)).separable(), 1)
    flipped = Resampler(permuted_grid((200, 150, 90), (0, 1, 2), (True, False, True), 1.5, (100, 80, 50)).separable(), 1)
    assert flipped.grid.axes[0].step == -1.5
    for block in [(100, 80, 50), (10, 20, 3), (1, 1, 1)]:
        assert flipped.window_shape(block) == straight.window_shape(block)
        assert flipped.block_bytes(block, 4, 4) == straight.block_bytes(block, 4, 4)
    assert flipped.window_shape((10, 20, 3)) == (17, 32, 7)  # ceil(b * 1.5) + 2
