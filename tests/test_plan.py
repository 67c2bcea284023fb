"""plan: memory sizes, the planner's byte counts (hand-computed) and the block shapes it chooses."""

import os

import numpy as np
import pytest

from bigresample import plan as plan_mod
from bigresample.blocks import is_file_stretch
from bigresample.engine import Resampler
from bigresample.geometry import make_grid
from bigresample.plan import (Plan, PlanError, block_bytes, default_memory_limit, format_bytes, parse_memory,
                              plan_blocks, window_shape)

MiB = 2**20


@pytest.mark.parametrize("text, n", [
    ("2GB", 2 * 10**9), ("2gb", 2 * 10**9), ("2 g", 2 * 10**9), ("512MiB", 512 * 2**20), ("1.5g", 1_500_000_000),
    ("3k", 3000), ("3KB", 3000), ("7m", 7 * 10**6), ("7MB", 7 * 10**6), ("2t", 2 * 10**12), ("2TB", 2 * 10**12),
    ("4KiB", 4096), ("3GiB", 3 * 2**30), ("1TiB", 2**40), ("10b", 10), ("10B", 10), (" 12 ", 12), ("1000", 1000),
    (".5k", 500), (1000000, 1000000), (np.int64(77), 77),
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
