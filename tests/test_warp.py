"""The point-by-point resampler for chains with a displacement field (bigresample/warp.py, issue 31):
block by block against the whole-array ``scipy.ndimage.map_coordinates`` at the coordinates the
chain gives every output voxel (tests/helpers.py: ``chain_coordinates``, ``warp_reference``), and
what the planner and the label methods ask of it."""

import pickle

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bigresample import _pykernel, kernel, labels, plan, resampling
from bigresample.engine import Workspace
from bigresample.geometry import GeometryError, reference_grid
from bigresample.registration import AffineMap, Chain, DisplacementField
from bigresample.transform import AffineResampler
from bigresample.warp import WarpGrid, WarpResampler

from .helpers import (ArrayField, blockwise, chain_coordinates, check_warp, kernel_volume, rotation, smooth_field,
                      warp_reference)

MODES = ("nearest", "constant", "mirror", "reflect", "wrap", "grid-constant", "grid-wrap", "itk")
IN_SHAPE, OUT_SHAPE = (20, 18, 16), (17, 15, 13)


def affine(spacing, origin):
    a = np.diag(list(spacing) + [1.0])
    a[:3, 3] = origin
    return a


A_IN = affine((1.0, 1.1, 1.3), (-10.0, -9.5, -10.0))
A_OUT = affine((1.2, 1.25, 1.5), (-10.5, -9.0, -9.5))


def field(scale, amplitude, seed=0, reader=None):
    """A field over the output's box plus a margin, its samples ``scale`` mm apart."""
    shape = tuple(int(np.ceil(24.0 / scale)) + 2 for _ in range(3))
    f = affine((scale,) * 3, (-12.0 - scale,) * 3)
    return DisplacementField(shape, f, reader or ArrayField(smooth_field(shape, amplitude, seed)))


def turn(degrees, shift=(0.7, -0.4, 0.3)):
    m = rotation(2, degrees) @ rotation(0, degrees / 2)
    m[:3, 3] = shift
    return AffineMap(m)


def check(data, maps, order, mode, block=(7, 6, 5), cval=0.5, dtype=None, ws=None, out_shape=OUT_SHAPE):
    grid = WarpGrid(data.shape[:3], out_shape, A_IN, A_OUT, Chain(tuple(maps)))
    r = resampling.interpolating(grid, order, mode, cval)
    assert isinstance(r, WarpResampler)
    coords = chain_coordinates(A_IN, A_OUT, out_shape, maps)
    expected = warp_reference(data, coords, order, mode, cval, dtype)
    got = blockwise(r, data, block, dtype, ws)
    check_warp(got, expected, data, order, cval, coords)
    return r


@pytest.mark.parametrize("order", range(6))
@pytest.mark.parametrize("mode", MODES)
def test_every_order_and_mode_through_a_field_and_an_affine(order, mode):
    data = kernel_volume(IN_SHAPE, np.float32, seed=order)
    check(data, [turn(8.0), field(4.0, 2.0)], order, mode)


@pytest.mark.parametrize("scale", [0.5, 4.0, 8.0])
@pytest.mark.parametrize("order", [0, 1, 3])
def test_fields_finer_and_coarser_than_the_output(scale, order):
    data = kernel_volume(IN_SHAPE, np.float64, seed=3)
    check(data, [field(scale, 1.5, seed=4)], order, "nearest")


@pytest.mark.parametrize("chain", ["field+affine", "affine+field+affine", "two fields"])
@pytest.mark.parametrize("order", [0, 1, 3])
def test_chains_of_two_and_three(chain, order):
    data = kernel_volume(IN_SHAPE, np.float32, seed=5)
    maps = {"field+affine": [field(3.0, 2.0, 1), turn(-12.0)],
            "affine+field+affine": [turn(5.0), field(3.0, 2.0, 2), turn(-9.0, (0.0, 1.0, -0.5))],
            "two fields": [field(4.0, 1.5, 3), field(2.0, 1.0, 4)]}[chain]
    check(data, maps, order, "itk")


@pytest.mark.parametrize("block", [(5, 4, 3), (17, 15, 1), (1, 15, 13), (17, 2, 13), (17, 15, 13)])
def test_blocks_cut_on_every_axis(block):
    data = kernel_volume(IN_SHAPE, np.float32, seed=6)
    check(data, [turn(10.0), field(4.0, 2.0)], 3, "mirror", block=block)


@pytest.mark.parametrize("order", [1, 3])
def test_a_4d_input_goes_through_the_same_transform_per_volume(order):
    data = np.stack([kernel_volume(IN_SHAPE, np.float32, seed=s) for s in range(3)], axis=-1)
    check(data, [turn(6.0), field(4.0, 2.0)], order, "itk", ws=Workspace())


@pytest.mark.parametrize("kind,order,out", [(np.uint8, 0, None), (np.int16, 1, None), (np.int16, 3, None),
                                             (np.int32, 1, np.float32), (np.uint16, 3, np.float64),
                                             (np.float32, 1, np.int16)])
def test_integer_and_float_types(kind, order, out):
    data = kernel_volume(IN_SHAPE, kind, seed=7)
    check(data, [turn(7.0), field(4.0, 2.0)], order, "itk", cval=3.0, dtype=out)


def test_itks_rule_writes_cval_beyond_half_a_voxel_and_the_edge_within():
    """A shift of x by -10.4 input voxels puts the first output voxels beyond half a voxel of the input."""
    data = kernel_volume(IN_SHAPE, np.float32, seed=8)
    shift = AffineMap(affine((1.0, 1.0, 1.0), (-10.4, 0.0, 0.0)))
    zero = DisplacementField((3, 3, 3), affine((20.0,) * 3, (-20.0,) * 3), ArrayField(np.zeros((3, 3, 3, 3))))
    grid = WarpGrid(IN_SHAPE, OUT_SHAPE, A_IN, A_OUT, Chain((shift, zero)))
    got = blockwise(WarpResampler(grid, 1, "itk", -99.0), data, (5, 15, 13))
    coords = chain_coordinates(A_IN, A_OUT, OUT_SHAPE, [shift, zero])
    out = coords[..., 0] < -0.5
    assert out.any() and (~out).any()
    assert (got[out] == -99.0).all() and (got[~out] != -99.0).all()
    edge = (coords[..., 0] >= -0.5) & (coords[..., 0] < 0)  # within half a voxel: the edge's value (scipy's nearest)
    assert edge.any()


@pytest.mark.slow
@settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.integers(0, 2**32 - 1), st.lists(st.floats(-25, 25), min_size=3, max_size=3),
       st.lists(st.floats(0.7, 1.4), min_size=3, max_size=3), st.floats(0.0, 4.0), st.floats(1.0, 6.0),
       st.integers(0, 3), st.sampled_from(MODES), st.lists(st.integers(1, 9), min_size=3, max_size=3))
def test_random_affines_and_smooth_fields(seed, angles, scale, amplitude, spacing, order, mode, block):
    data = kernel_volume((12, 11, 10), np.float32, seed=seed % 1000)
    m = rotation(0, angles[0]) @ rotation(1, angles[1]) @ rotation(2, angles[2]) @ np.diag(list(scale) + [1.0])
    m[:3, 3] = np.random.default_rng(seed).uniform(-2, 2, 3)
    check(data, [AffineMap(m), field(spacing, amplitude, seed % 7)], order, mode, block=tuple(block),
          out_shape=(10, 9, 8))


class Recording:
    """An input that records the spatial shape of every window read from it."""

    def __init__(self, data):
        self.data, self.shape, self.dtype, self.ndim = data, data.shape, data.dtype, data.ndim
        self.reads = []

    def __getitem__(self, sl):
        self.reads.append(tuple(s.stop - s.start for s in sl[:3]))
        return self.data[sl]


@pytest.mark.parametrize("order,mode", [(1, "itk"), (3, "nearest"), (3, "mirror"), (0, "constant")])
def test_the_window_read_per_block_stays_within_window_shape_and_input_region(order, mode):
    data = Recording(kernel_volume((90, 80, 70), np.float32, seed=9))  # axes longer than transform.SHORT_AXIS
    grid = WarpGrid(data.shape, (34, 30, 26), A_IN, A_OUT, Chain((turn(12.0), field(4.0, 3.0))))
    r = WarpResampler(grid, order, mode, 0.0)
    block = (11, 8, 7)
    shape = r.window_shape(block)
    for z in range(0, 26, 7):
        for x in range(0, 34, 11):
            region = (slice(x, min(34, x + 11)), slice(8, 16), slice(z, min(26, z + 7)))
            before = len(data.reads)
            r.compute(data, region)
            (read,) = data.reads[before:]
            assert all(a <= b for a, b in zip(read, shape)), (read, shape)
            assert all(a <= s.stop - s.start for a, s in zip(read, r.input_region(region))), (read, region)
    assert min(np.prod(s) for s in data.reads) < np.prod(data.shape)  # windows, not the whole input


def test_the_planner_shrinks_blocks_when_displacements_are_large():
    blocks = []
    a = np.diag([0.05, 0.05, 0.05, 1.0])  # 512**3 voxels of 0.05 mm over the field's 24 mm: planned, not read
    a[:3, 3] = -12.0
    for amplitude in (0.05, 3.0):
        grid = WarpGrid((512, 512, 512), (480, 480, 480), a, a, Chain((field(4.0, amplitude, 1),)))
        r = WarpResampler(grid, 3, "nearest", 0.0)
        p = plan.plan_blocks(r, 4, 4, memory_limit=600 * 2**20, workers=2)
        assert p.block_bytes <= 600 * 2**20
        blocks.append(p.block)
        assert min(r.window_shape(p.block)) >= min(512, 2 * amplitude / 0.05)  # the displacements are in the window
    assert np.prod(blocks[1]) < np.prod(blocks[0]), blocks


def test_the_field_bound_is_one_pass_in_slabs_and_cached():
    reader = ArrayField(smooth_field((10, 10, 10), 2.0))
    f = DisplacementField((10, 10, 10), affine((3.0,) * 3, (-15.0,) * 3), reader)
    grid = WarpGrid(IN_SHAPE, OUT_SHAPE, A_IN, A_OUT, Chain((f,)))
    r = WarpResampler(grid, 1, "nearest", 0.0)
    n = len(reader.reads)
    r.window_shape((5, 5, 5)), r.block_bytes((5, 5, 5), 4, 4), r.input_region((slice(0, 5),) * 3)
    assert len(reader.reads) == n  # the bound was taken once, when the resampler was made
    np.testing.assert_allclose(f.bound(), np.abs(reader.d).reshape(-1, 3).max(axis=0))


def test_reaching_is_none_only_for_a_box_the_block_cannot_read():
    grid = WarpGrid(IN_SHAPE, OUT_SHAPE, A_IN, A_OUT, Chain((turn(5.0), field(4.0, 1.0))))
    r = WarpResampler(grid, 1, "nearest", 0.0)
    region = (slice(0, 5), slice(0, 5), slice(0, 5))
    coords = chain_coordinates(A_IN, A_OUT, OUT_SHAPE, grid.chain.maps)[:5, :5, :5].reshape(-1, 3)
    lo, hi = coords.min(axis=0), coords.max(axis=0)
    assert r.reaching(region, lo, hi) == region
    assert r.reaching(region, hi + 3.0, hi + 6.0) is None
    assert r.reaching(region, lo - 6.0, lo - 3.0) is None


def test_interpolated_labels_through_a_zero_field_equal_the_affine_path():
    """--labels linear on a WarpGrid (a zero field after an affine) equals the general path's on the same affine."""
    rng = np.random.default_rng(10)
    lab = rng.integers(0, 4, (8, 7, 6)).repeat(3, 0).repeat(3, 1).repeat(3, 2)[:20, :18, :16].astype(np.int16)
    m = turn(9.0)
    zero = DisplacementField((3, 3, 3), affine((20.0,) * 3, (-20.0,) * 3), ArrayField(np.zeros((3, 3, 3, 3))))
    warp = labels.make("linear", WarpGrid(IN_SHAPE, OUT_SHAPE, A_IN, A_OUT, Chain((m, zero))), "itk", 2.0)
    ref_grid = reference_grid(IN_SHAPE, A_IN, OUT_SHAPE, m.matrix @ A_OUT)
    general = labels.make("linear", ref_grid, "itk", 2.0)
    assert isinstance(general.zero, AffineResampler) and isinstance(warp.zero, WarpResampler)
    np.testing.assert_array_equal(blockwise(warp, lab, (9, 8, 7)), blockwise(general, lab, (9, 8, 7)))


def test_a_resampler_pickles_and_answers_the_grid_questions():
    grid = WarpGrid(IN_SHAPE, OUT_SHAPE, A_IN, A_OUT, Chain((turn(0.0, (0.0, 0.0, 0.0)), field(4.0, 1.0))))
    r = pickle.loads(pickle.dumps(WarpResampler(grid, 3, "itk", 0.0)))
    assert r.grid.separable() is None and r.itk and r.grid.grid == "reference"
    np.testing.assert_array_equal(r.grid.output_affine(), A_OUT)
    np.testing.assert_allclose(r.grid.output_spacing(), (1.2, 1.25, 1.5))
    assert r.grid.orientation().describe() == "axes aligned with the input's"


def test_coordinates_beyond_2_26_are_refused_in_one_line():
    huge = DisplacementField((2, 2, 2), affine((30.0,) * 3, (-15.0,) * 3), ArrayField(np.full((2, 2, 2, 3), 1e9)))
    with pytest.raises(GeometryError, match=r"reach .* on axis 0 .*2\*\*26"):
        WarpResampler(WarpGrid(IN_SHAPE, OUT_SHAPE, A_IN, A_OUT, Chain((huge,))), 1, "nearest", 0.0)


@pytest.mark.parametrize("order", [0, 1, 3])
def test_the_fallback_samples_the_same_points(order, monkeypatch):
    monkeypatch.setattr(kernel, "_kernel", _pykernel)
    data = kernel_volume(IN_SHAPE, np.float32, seed=11)
    check(data, [turn(8.0), field(4.0, 2.0)], order, "itk")
