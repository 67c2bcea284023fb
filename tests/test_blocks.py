"""BlockSet: the output's blocks as arithmetic, checked against a plain enumeration."""

import itertools

import nibabel as nib
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from bigresample import resample
from bigresample.blocks import BlockSet


def file_order(shape, block):
    """Every block's slices, enumerated the slow way: the last axis outermost
    (NIfTI file order: x fastest, then y, z, dimension 4, 5...)."""
    k = len(block)
    ranges = [range(0, n, b) for n, b in zip(shape[:k], block)] + [range(n) for n in shape[k:]]
    out = []
    for rev in itertools.product(*ranges[::-1]):
        idx = rev[::-1]
        out.append(tuple(slice(i, min(i + b, n)) for i, b, n in zip(idx[:k], block, shape))
                   + tuple(slice(j, j + 1) for j in idx[k:]))
    return out


shapes = st.lists(st.integers(1, 9), min_size=3, max_size=5).map(tuple)


@given(shapes, st.data())
def test_blocks_are_the_file_order_enumeration(shape, data):
    block = tuple(data.draw(st.integers(1, n + 2)) for n in shape[:3])
    blocks = BlockSet(shape, block)
    expected = file_order(shape, tuple(min(b, n) for b, n in zip(block, shape)))
    assert len(blocks) == len(expected)
    assert list(blocks) == expected
    for i, region in enumerate(expected):
        assert blocks.region(i) == region
        assert blocks.index(region) == i


@given(shapes, st.data())
def test_blocks_of_one_slab_are_consecutive_and_cover_whole_planes(shape, data):
    block = tuple(data.draw(st.integers(1, n)) for n in shape[:3])
    blocks = BlockSet(shape, block)
    seen = set()
    for s in range(len(blocks) // (blocks.counts[0] * blocks.counts[1])):
        members = blocks.slab_blocks(s)
        regions = [blocks.region(i) for i in members]
        assert all(blocks.slab(i) == s for i in members)
        # one z range and one index of every extra axis, covering every (x, y)
        assert len({tuple((s.start, s.stop) for s in r[2:]) for r in regions}) == 1
        covered = np.zeros(shape[:2], bool)
        for r in regions:
            covered[r[0], r[1]] = True
        assert covered.all()
        seen.update(members)
    assert seen == set(range(len(blocks)))


@pytest.mark.parametrize("block, stretch", [
    ((8, 6, 3), True),   # whole planes
    ((8, 3, 1), True),   # rows of one plane
    ((1, 1, 1), True),   # single voxels
    ((4, 1, 1), True),   # parts of rows
    ((8, 3, 2), False),  # part of two planes
    ((4, 6, 1), False),
])
def test_a_block_is_a_stretch_of_the_file_only_when_consecutive_blocks_are_adjacent_bytes(block, stretch):
    shape = (8, 6, 5)
    blocks = BlockSet(shape, block)
    assert blocks.is_file_stretch == stretch
    if stretch:  # then the blocks' flat file offsets follow each other exactly
        offset = 0
        for region in blocks:
            idx = np.ravel_multi_index([s.start for s in region], shape, order="F")
            assert idx == offset
            offset += int(np.prod([s.stop - s.start for s in region]))


def test_a_huge_block_set_costs_nothing_to_count_or_index(monkeypatch):
    """Counting and indexing is arithmetic: no block is enumerated, nothing is
    allocated per block (traced); the seconds are benchmarks/bench_responsiveness.py's."""
    import tracemalloc

    monkeypatch.setattr(BlockSet, "__iter__", lambda self: pytest.fail("the blocks were enumerated"))
    tracemalloc.start()
    try:
        blocks = BlockSet((1_280_000, 1_280_000, 750_000, 3), (1024, 1024, 4))
        n = len(blocks)
        last = blocks.region(n - 1)
        found = blocks.index(last)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert n == 1250 * 1250 * 187500 * 3  # ceil(1280000 / 1024) = 1250
    assert last == (slice(1249 * 1024, 1_280_000), slice(1249 * 1024, 1_280_000), slice(749_996, 750_000), slice(2, 3))
    assert found == n - 1
    assert peak < 64 * 2**10, peak


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
@pytest.mark.parametrize("chunks", [None, (3, 2, 2)])
def test_a_5d_output_keeps_dimension_4_inside_dimension_5(tmp_path, suffix, chunks):
    """Blocks go to the file in file order: time (dim 4) varies before the
    components (dim 5).  Checked against nibabel reading the input back."""
    rng = np.random.default_rng(3)
    data = rng.random((6, 5, 4, 3, 2)).astype(np.float32)
    nib.save(nib.Nifti1Image(data, np.eye(4)), tmp_path / "in.nii")
    out = tmp_path / f"out{suffix}"
    resample(tmp_path / "in.nii", out, spacing=(1, 1, 1), chunks=chunks)
    np.testing.assert_array_equal(np.asanyarray(nib.load(out).dataobj), data)
