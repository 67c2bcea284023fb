"""The compiled kernel's boundary (bigresample/_kernel.c): everything it is
given is checked, and anything it cannot compute safely is refused with a
Python exception (issue 28's five findings, one or more tests each).

The cases that crashed the interpreter run in a subprocess, so that the old
behaviour fails the test instead of killing the run; tools/sanitize.sh runs
this file under AddressSanitizer and UndefinedBehaviorSanitizer, where the
int32 overflow of finding 4 (right values by luck on x86) is an error too.
"""

import subprocess
import sys
import textwrap

import numpy as np
import pytest
from scipy import ndimage

from bigresample import _kernel, kernel
from bigresample.errors import BigresampleError
from bigresample.geometry import ReferenceGrid, reference_grid
from bigresample.transform import AffineResampler

from .helpers import guarded, staircase


def run_isolated(code: str) -> None:
    """Run ``code`` in a fresh interpreter; it must exit 0 (a heap overflow aborts it)."""
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"exit {done.returncode}: {done.stderr[-2000:]}"


# -- finding 1: axis_take on an empty axis (inner == 0) wrote past its buffers


def test_an_order_0_grid_constant_block_with_an_empty_axis_equals_scipy():
    run_isolated("""
        import numpy as np
        from scipy import ndimage
        from bigresample.engine import Resampler
        from bigresample.geometry import make_grid
        data = np.arange(4 * 2000 * 3, dtype=np.float32).reshape(4, 2000, 3)
        g = make_grid(data.shape, (1, 1, 1), (0.5, 3.1, 1), "origin")
        m0 = g.out_shape[0]
        expected = ndimage.affine_transform(data, g.steps, offset=g.offsets, output_shape=g.out_shape, order=0,
                                            mode="grid-constant", cval=-7.0)[m0 - 1 : m0]
        r = Resampler(g, 0, "grid-constant", -7.0)
        for _ in range(50):  # the old build ended in "double free or corruption" within 50
            got = r.compute(data, (slice(m0 - 1, m0), slice(0, g.out_shape[1]), slice(0, 3)))
            np.testing.assert_array_equal(got, expected)
    """)


@pytest.mark.parametrize("shape", [(3, 5, 0), (0, 5, 4)])
def test_axis_take_and_axis_sum_on_empty_arrays_write_nothing(shape):
    x = np.zeros(shape, np.float32)
    out = np.zeros((shape[0], 4, shape[2]), np.float32)
    index = np.zeros((4, 1), np.int64)
    kernel.axis_take(x, out, index)
    kernel.axis_sum(x, out, np.zeros((4, 2), np.int64), np.ones((4, 2)))
    assert out.size == 0


# -- finding 2: a row's coordinates are not linear when huge terms cancel


def test_reference_grid_refuses_coordinates_too_large_to_trust():
    matrix, offset = staircase()
    a_ref = np.eye(4)
    a_ref[:3, :3], a_ref[:3, 3] = matrix, offset
    with pytest.raises(BigresampleError, match=r"input coordinates .* axis 0 .*2\*\*26"):
        reference_grid((20, 20, 20), np.eye(4), (16, 16, 3), a_ref)


def test_an_affine_resampler_refuses_coordinates_too_large_to_trust():
    matrix, offset = staircase()
    grid = ReferenceGrid((20, 20, 20), (16, 16, 3), matrix, offset, np.eye(4))
    with pytest.raises(BigresampleError, match="input coordinates"):
        AffineResampler(grid, 1, "constant")


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("order", [0, 1])
def test_the_kernel_does_not_trust_a_staircase_to_be_a_line(order, dtype):
    """Straight to the kernel (no Python check): scipy's values, every tap
    inside the window (the float32 window also goes through AVX2's gathers)."""
    matrix, offset = staircase()
    data = np.random.default_rng(0).uniform(0, 100, (20, 20, 20)).astype(dtype)
    expected = ndimage.affine_transform(data.T, matrix, offset=offset, output_shape=(16, 16, 3), order=order,
                                        mode="constant", cval=-1.0).T
    got = np.zeros((3, 16, 16))
    bad = kernel.resample_block(data, got, matrix, offset, (0, 0, 0), (0, 0, 0), (20, 20, 20), pad=0.0,
                                order=order, mode=kernel.MODE_CODES["constant"], cval=-1.0)
    assert bad == 0
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12 * 100)


# -- finding 3: unchecked arguments


def call_block(data, out=None, matrix=np.eye(3), offset=(0.0, 0.0, 0.0), origin=(0, 0, 0), first=(0, 0, 0),
               length=(4, 4, 4), order=1, mode="nearest"):
    out = np.zeros((4, 4, 4)) if out is None else out
    return kernel.resample_block(data, out, matrix, offset, origin, first, length, pad=0.0, order=order,
                                 mode=kernel.MODE_CODES[mode], cval=0.0)


@pytest.mark.parametrize("shape", [(0, 4, 4), (4, 0, 4), (4, 4, 0)])
def test_resample_block_refuses_an_empty_window(shape):
    with pytest.raises(ValueError, match="empty window"):
        call_block(np.zeros(shape))


@pytest.mark.parametrize("length", [(4, -3, 4), (0, 4, 4), (4, 4, 2**62)])
def test_resample_block_refuses_a_line_length_out_of_range(length):
    with pytest.raises(ValueError, match="length"):
        call_block(np.zeros((4, 4, 4)), length=length)


@pytest.mark.parametrize("first", [(-2**62, 0, 0), (0, 2**62, 0)])
def test_resample_block_refuses_a_window_position_out_of_range(first):
    with pytest.raises(ValueError, match="first"):
        call_block(np.zeros((4, 4, 4)), first=first)


@pytest.mark.parametrize("origin", [(2**62, 0, 0), (0, 0, 2**63 - 2)])
def test_resample_block_refuses_an_origin_out_of_range(origin):
    with pytest.raises(ValueError, match="origin"):
        call_block(np.zeros((4, 4, 4)), origin=origin)


def test_resample_block_refuses_an_output_that_overlaps_the_window():
    data = np.zeros((4, 4, 4))
    with pytest.raises(ValueError, match="overlap"):
        call_block(data, out=data)


@pytest.mark.parametrize("rows, error", [
    (np.zeros((2, 4, 4), np.int32), TypeError),  # not int64
    (np.zeros((2, 4, 3), np.int64), TypeError),  # not one pair a row
    (np.zeros((3, 4, 4), np.int64), TypeError),
    (np.stack([np.full((4, 4), -1), np.full((4, 4), 2)]), ValueError),  # starts before the row
    (np.stack([np.full((4, 4), 3), np.full((4, 4), 2)]), ValueError),  # ends before it starts
    (np.stack([np.full((4, 4), 0), np.full((4, 4), 5)]), ValueError),  # ends beyond the row
])
def test_resample_block_refuses_rows_that_do_not_fit_the_block(rows, error):
    out = np.full((4, 4, 4), 7.0)
    with pytest.raises(error, match="rows|row"):
        kernel.resample_block(np.zeros((4, 4, 4)), out, np.eye(3), (0.0,) * 3, (0, 0, 0), (0, 0, 0), (4, 4, 4),
                              pad=0.0, order=1, mode=kernel.MODE_CODES["nearest"], cval=0.0,
                              rows=np.asarray(rows).astype(rows.dtype))
    assert (out == 7.0).all()  # refused before anything was written


@pytest.mark.parametrize("order", [0, 1, 3])
@pytest.mark.parametrize("interior", [True, False])
def test_resample_block_computes_each_rows_part_and_writes_cval_around_it(order, interior):
    # ITK's rule in the kernel: the voxels in [lo, hi) equal the whole block's, every other is cval,
    # wherever the part lies against the interior span (before, inside, after, empty, the whole row)
    rng = np.random.default_rng(order)
    data = rng.random((12, 13, 14))
    angle = np.deg2rad(11.0)
    matrix = np.array([[np.cos(angle), -np.sin(angle), 0.0], [np.sin(angle), np.cos(angle), 0.0], [0.0, 0.0, 1.0]])
    args = (data, None, matrix, (1.3, -0.7, 0.4), (0, 0, 0), (0, 0, 0), (14, 13, 12))
    whole = np.zeros((5, 9, 16))
    kernel.resample_block(data, whole, *args[2:], pad=0.0, order=order, mode=kernel.MODE_CODES["nearest"],
                          cval=0.0, interior=interior)
    lo = rng.integers(0, 17, (5, 9))
    hi = np.minimum(lo + rng.integers(0, 17, (5, 9)), 16)
    lo[0, :3], hi[0, :3] = (0, 0, 16), (16, 0, 16)  # the whole row, an empty part, an empty part at the end
    out = np.full_like(whole, np.nan)
    kernel.resample_block(data, out, *args[2:], pad=0.0, order=order, mode=kernel.MODE_CODES["nearest"],
                          cval=-2.5, interior=interior, rows=np.stack([lo, hi]))
    x = np.arange(16)
    inside = (x >= lo[..., None]) & (x < hi[..., None])
    assert np.array_equal(out[inside], whole[inside])
    assert (out[~inside] == -2.5).all()


def test_an_affine_resampler_refuses_an_empty_input():
    grid = ReferenceGrid((0, 5, 5), (4, 4, 4), np.eye(3), np.zeros(3), np.eye(4))
    with pytest.raises(BigresampleError, match=r"shape.*\(0, 5, 5\)"):
        AffineResampler(grid, 1, "nearest")


def prefilter(a, horizons=(3,), kind=0, acc=None):
    acc = np.zeros(a.shape[2]) if acc is None else acc
    kernel.prefilter_lines(a, 1.0, [-0.2679491924311228][: len(horizons)], list(horizons), kind, acc)


@pytest.mark.parametrize("horizon", [8, 9, -1])
def test_prefilter_lines_refuses_a_horizon_beyond_the_line(horizon):
    with pytest.raises(ValueError, match="horizon"):
        prefilter(np.zeros((2, 8, 3)), horizons=(horizon,))


@pytest.mark.parametrize("n", [0, 1])
def test_prefilter_lines_refuses_lines_too_short_to_filter(n):
    with pytest.raises(ValueError, match="line"):
        prefilter(np.zeros((2, n, 3)), horizons=(0,))


def test_prefilter_lines_refuses_strides_that_are_not_whole_samples():
    raw = np.zeros(2 * 8 * 3 * 8 + 4, np.uint8)
    a = np.ndarray((2, 8, 3), np.float64, buffer=raw, offset=0, strides=(194, 3 * 8, 8))
    with pytest.raises(ValueError, match="stride"):
        prefilter(a)


@pytest.mark.parametrize("kind", [-1, 3, 7])
def test_prefilter_lines_refuses_an_unknown_start(kind):
    with pytest.raises(ValueError, match="kind"):
        prefilter(np.zeros((2, 8, 3)), kind=kind)


def test_prefilter_lines_refuses_a_scratch_row_inside_the_view():
    a = np.zeros((2, 8, 3))
    with pytest.raises(ValueError, match="overlap"):
        prefilter(a, acc=a[0, 0])


def spline_filter(a, order=3, kind=1, acc=None):
    kernel.spline_filter_lines(a, order, kind, np.zeros(a.shape[2]) if acc is None else acc)


@pytest.mark.parametrize("order", [0, 1, 6, -3])
def test_spline_filter_lines_refuses_an_order_without_a_prefilter(order):
    with pytest.raises(ValueError, match="order"):
        spline_filter(np.zeros((2, 8, 3)), order=order)


@pytest.mark.parametrize("kind", [-1, 3])
def test_spline_filter_lines_refuses_an_unknown_start(kind):
    with pytest.raises(ValueError, match="kind"):
        spline_filter(np.zeros((2, 8, 3)), kind=kind)


def test_spline_filter_lines_refuses_strides_that_are_not_whole_samples():
    raw = np.zeros(2 * 8 * 3 * 8 + 4, np.uint8)
    a = np.ndarray((2, 8, 3), np.float64, buffer=raw, offset=0, strides=(194, 3 * 8, 8))
    with pytest.raises(ValueError, match="stride"):
        spline_filter(a)


def test_spline_filter_lines_refuses_a_scratch_row_inside_the_view():
    a = np.zeros((2, 8, 3))
    with pytest.raises(ValueError, match="overlap"):
        spline_filter(a, acc=a[1, 2])


@pytest.mark.parametrize("a, acc", [(np.zeros((8, 3)), np.zeros(3)), (np.zeros((2, 8, 3), np.float32), np.zeros(3)),
                                    (np.zeros((2, 8, 3)), np.zeros(2)), (np.zeros((2, 8, 3)), np.zeros(3, np.float32))])
def test_spline_filter_lines_refuses_a_view_or_row_of_another_shape_or_type(a, acc):
    with pytest.raises(TypeError, match="3-d float64"):
        kernel.spline_filter_lines(a, 3, 1, acc)


def test_spline_filter_lines_leaves_lines_of_one_sample_and_empty_views_as_they_are():
    """scipy leaves a line of one sample unfiltered (no gain); an empty view touches nothing
    (its scratch row may then be empty too)."""
    a = np.arange(6.0).reshape(2, 1, 3)
    spline_filter(a)
    assert np.array_equal(a, np.arange(6.0).reshape(2, 1, 3))
    for shape in ((0, 8, 3), (2, 0, 3), (2, 8, 0)):
        spline_filter(np.zeros(shape), acc=np.zeros(shape[2]))


def test_spline_filter_lines_stays_inside_a_view_that_ends_at_a_guard_page():
    """The lines' last samples (the boundary starts read the far end) and the scratch row are
    the last bytes before a page that faults: nothing is read or written beyond them."""
    a, mem = guarded((2, 9, 4), np.float64)
    acc, mem_acc = guarded((4,), np.float64)
    a[...] = np.random.default_rng(2).standard_normal(a.shape)
    want = ndimage.spline_filter1d(a, 3, axis=1, mode="reflect")
    spline_filter(a, acc=acc)
    assert a.tobytes() == want.tobytes()


def test_label_boxes_refuses_a_key_outside_its_range():
    keys = np.array([[3, 4], [5, 9]], np.uint16)
    for lo, n in ((3, 6), (4, 7)):  # 9 beyond lo + n, then 3 below lo
        with pytest.raises(ValueError, match="key"):
            kernel.label_boxes(keys, lo, np.zeros(n, np.int64), np.zeros((n, 4), np.int64))


@pytest.mark.parametrize("keys, counts, boxes", [
    (np.zeros((2, 3), np.int16), np.zeros(1, np.int64), np.zeros((1, 4), np.int64)),  # signed keys
    (np.zeros((2, 3), np.float64), np.zeros(1, np.int64), np.zeros((1, 4), np.int64)),
    (np.zeros((2, 3), np.uint8), np.zeros(1, np.int64), np.zeros((1, 6), np.int64)),  # boxes of another width
    (np.zeros((2, 3), np.uint8), np.zeros(2, np.int64), np.zeros((1, 4), np.int64)),
    (np.zeros((2, 3), np.uint8), np.zeros(0, np.int64), np.zeros((0, 4), np.int64)),
    (np.zeros((2, 3), np.uint8), np.zeros(1, np.int32), np.zeros((1, 4), np.int64)),
    (np.zeros((1,) * 9, np.uint8), np.zeros(1, np.int64), np.zeros((1, 18), np.int64)),  # 9 axes
])
def test_label_boxes_refuses_keys_counts_or_boxes_of_another_type_or_shape(keys, counts, boxes):
    with pytest.raises(TypeError, match="label_boxes"):
        kernel.label_boxes(keys, 0, counts, boxes)


def test_label_boxes_refuses_counts_that_overlap_the_boxes():
    boxes = np.zeros((2, 4), np.int64)
    with pytest.raises(ValueError, match="overlap"):
        kernel.label_boxes(np.zeros((2, 3), np.uint8), 0, boxes[0, :2], boxes)


def test_label_boxes_stays_inside_a_window_that_ends_at_a_guard_page():
    keys, mem = guarded((3, 5), np.uint16)
    keys[...] = [[1, 1, 2, 2, 2], [2, 2, 2, 1, 1], [1, 2, 1, 2, 2]]
    counts, boxes = np.zeros(2, np.int64), np.zeros((2, 4), np.int64)
    kernel.label_boxes(keys, 1, counts, boxes)
    assert counts.tolist() == [6, 9]
    assert boxes.tolist() == [[0, 2, 0, 4], [0, 2, 0, 4]]


# -- finding 4: undefined behaviour


@pytest.mark.parametrize("order", [0, 1])
def test_a_small_window_deep_in_a_large_volume_reads_its_own_samples(order):
    """z index 3000 times a 1000 x 1000 plane is past 2**31: the window
    position was an int32 product (undefined; right by luck on x86)."""
    data = np.random.default_rng(1).uniform(0, 1, (2, 1000, 1000)).astype(np.float32)
    out = np.zeros((1, 3, 1000), np.float32)  # z 3000 only: order 1's second tap (3001) is in the window
    bad = kernel.resample_block(data, out, np.eye(3), (0.0, 5.0, 3000.0), (0, 0, 0), (0, 0, 3000),
                                (1000, 1000, 4000), pad=0.0, order=order, mode=kernel.MODE_CODES["nearest"], cval=0.0)
    assert bad == 0
    np.testing.assert_array_equal(out[0], data[0, 5:8])


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf, 1e19, -1e300])
@pytest.mark.parametrize("where", ["matrix", "offset"])
def test_resample_block_refuses_coordinates_it_cannot_convert(value, where):
    matrix, offset = np.eye(3), np.zeros(3)
    (matrix if where == "matrix" else offset)[0] = value
    with pytest.raises(ValueError, match="coordinate"):
        call_block(np.zeros((4, 4, 4)), matrix=matrix, offset=offset, mode="mirror")


@pytest.mark.parametrize("take", [True, False])
def test_axis_sum_refuses_an_output_that_overlaps_its_input(take):
    x = np.zeros((2, 4, 3))
    index = np.zeros((4, 1), np.int64)
    with pytest.raises(ValueError, match="overlap"):
        if take:
            kernel.axis_take(x, x, index)
        else:
            kernel.axis_sum(x, x, index, np.ones((4, 1)))


def test_axis_sum_reads_the_taps_it_checked():
    """The index array is copied under the GIL: a thread changing it later
    cannot send the sum outside ``x``."""
    source = open(kernel.__file__.replace("kernel.py", "_kernel.c")).read()
    body = source[source.index("static PyObject *axis_call"):]
    body = body[: body.index("\n}\n")]
    assert "memcpy(taps" in body and "Py_BEGIN_ALLOW_THREADS" in body
    assert body.index("memcpy(taps") < body.index("Py_BEGIN_ALLOW_THREADS")


# -- finding 5: AVX2's gathers, where ASan cannot see


def test_a_float32_window_at_the_end_of_its_allocation_is_not_read_past():
    run_isolated("""
        import numpy as np
        from scipy import ndimage
        from bigresample import kernel
        from tests.helpers import guarded, staircase
        matrix, offset = staircase()
        data, mem = guarded((20, 20, 20), np.float32)
        data[...] = np.random.default_rng(0).uniform(0, 100, data.shape)
        expected = ndimage.affine_transform(data.T, matrix, offset=offset, output_shape=(16, 16, 3), order=1,
                                            mode="nearest").T
        got = np.zeros((3, 16, 16))
        kernel.resample_block(data, got, matrix, offset, (0, 0, 0), (0, 0, 0), (20, 20, 20), pad=0.0, order=1,
                              mode=kernel.MODE_CODES["nearest"], cval=0.0)
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-10)
    """)


def test_the_avx2_reads_can_be_switched_off_and_give_the_same_bits():
    rng = np.random.default_rng(2)
    data = rng.uniform(-5, 5, (30, 40, 50)).astype(np.float32)
    angle = np.deg2rad(11.0)
    matrix = np.array([[np.cos(angle), -np.sin(angle), 0.0], [np.sin(angle), np.cos(angle), 0.0], [0.0, 0.0, 1.0]])
    runs = []
    for flag in (True, False):
        kernel.use_avx2(flag)
        out = np.zeros((20, 30, 40))
        kernel.resample_block(data, out, matrix, (3.3, 1.2, 2.1), (0, 0, 0), (0, 0, 0), (50, 40, 30), pad=0.0,
                              order=1, mode=kernel.MODE_CODES["nearest"], cval=0.0)
        runs.append(out)
    kernel.use_avx2(True)
    np.testing.assert_array_equal(runs[0], runs[1])
    assert kernel.use_avx2(True) == _kernel.has_avx2()


# -- kernel.sample_points (issue 31): the same checks, and every coordinate


def call_points(data, coords, out=None, first=(0, 0, 0), length=(4, 4, 4), pad=0.0, order=1, mode="nearest"):
    coords = np.asarray(coords, dtype=np.float64)
    out = np.zeros(len(coords)) if out is None else out
    return kernel.sample_points(data, coords, out, first, length, pad, order, kernel.MODE_CODES[mode], 0.0)


@pytest.mark.parametrize("shape", [(0, 4, 4), (4, 0, 4), (4, 4, 0)])
def test_sample_points_refuses_an_empty_window(shape):
    with pytest.raises(ValueError, match="empty window"):
        call_points(np.zeros(shape), [[1.0, 1.0, 1.0]])


@pytest.mark.parametrize("length", [(4, -3, 4), (0, 4, 4), (4, 4, 2**62)])
def test_sample_points_refuses_a_line_length_out_of_range(length):
    with pytest.raises(ValueError, match="length"):
        call_points(np.zeros((4, 4, 4)), [[1.0, 1.0, 1.0]], length=length)


@pytest.mark.parametrize("first", [(-1, 0, 0), (0, 2**62, 0), (0, 0, 1)])
def test_sample_points_refuses_a_window_position_out_of_range(first):
    with pytest.raises(ValueError, match="first"):
        call_points(np.zeros((4, 4, 4)), [[1.0, 1.0, 1.0]], first=first)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf, 2.0**62, -(2.0**62), 1e300])
@pytest.mark.parametrize("axis", [0, 1, 2])
def test_sample_points_refuses_a_coordinate_not_finite_or_beyond_2_62_before_writing(bad, axis):
    coords = np.full((5, 3), 1.5)
    coords[3, axis] = bad
    out = np.full(5, -9.0)
    with pytest.raises(ValueError, match=f"point 3 on axis {axis}"):
        call_points(np.ones((4, 4, 4)), coords, out=out)
    assert (out == -9.0).all()  # nothing written


def test_sample_points_counts_the_pad_in_the_coordinates_limit():
    with pytest.raises(ValueError, match="2\\*\\*62"):
        call_points(np.ones((4, 4, 4)), [[2.0**62 - 512.0, 0.0, 0.0]], pad=1e6, length=(4 + 2 * 10**6,) * 3)


def test_sample_points_refuses_a_pad_out_of_range():
    with pytest.raises(ValueError, match="pad"):
        call_points(np.ones((4, 4, 4)), [[1.0, 1.0, 1.0]], pad=-1.0)


def test_sample_points_refuses_coordinates_that_do_not_match_the_output():
    with pytest.raises(ValueError, match="3 coordinates for 4 output samples"):
        call_points(np.ones((4, 4, 4)), np.ones((3, 3)), out=np.zeros((2, 2)))


@pytest.mark.parametrize("coords", [np.ones((3, 2)), np.ones(9), np.ones((3, 3), np.float32), np.ones((3, 3, 1))])
def test_sample_points_refuses_coordinates_not_n_by_3_float64(coords):
    with pytest.raises(TypeError, match="coordinates"):
        kernel._kernel.sample_points(np.ones((4, 4, 4)), coords, np.zeros(3), [0, 0, 0], [4, 4, 4], 0.0, 1, 0, 0.0)


@pytest.mark.parametrize("out", [np.zeros(3, np.int32), np.zeros(3, np.float16)])
def test_sample_points_refuses_an_output_not_float32_or_float64(out):
    with pytest.raises(TypeError, match="float32/float64"):
        call_points(np.ones((4, 4, 4)), np.ones((3, 3)), out=out)


def test_sample_points_refuses_an_output_that_overlaps_the_window_or_the_coordinates():
    data = np.zeros((4, 4, 4))
    with pytest.raises(ValueError, match="overlap"):
        call_points(data, np.ones((64, 3)), out=data.reshape(-1))
    coords = np.ones((4, 3))
    with pytest.raises(ValueError, match="overlap"):
        call_points(np.zeros((4, 4, 4)), coords, out=coords.reshape(-1)[:4])


@pytest.mark.parametrize("order,mode", [(7, "nearest"), (-1, "nearest"), (1, "grid-mirror")])
def test_sample_points_refuses_an_order_or_mode_out_of_range(order, mode):
    code = 99 if mode == "grid-mirror" else kernel.MODE_CODES[mode]
    with pytest.raises(ValueError, match="out of range"):
        kernel._kernel.sample_points(np.ones((4, 4, 4)), np.ones((1, 3)), np.zeros(1), [0, 0, 0], [4, 4, 4], 0.0,
                                     order, code, 0.0)


def test_sample_points_counts_taps_outside_a_window_planned_wrong_without_reading_there():
    data, _mem = guarded((3, 3, 3), np.float64)
    data[...] = 1.0
    out = np.zeros(2)
    bad = kernel.sample_points(data, np.array([[5.0, 5.0, 5.0], [1.0, 1.0, 1.0]]), out, (0, 0, 0), (9, 9, 9), 0.0,
                               1, kernel.MODE_CODES["nearest"], 0.0)
    assert bad > 0 and out[1] == 1.0


# -- kernel.chain_points (issue 31): a block's coordinates through a chain; every shape, window and value checked


EYE = np.eye(4)[:3]


def chain_field(win=None, first=(0, 0, 0), shape=(4, 4, 4), inv=EYE):
    return (np.zeros((4, 4, 4, 3)) if win is None else win, inv, first, shape)


def call_chain(count=(2, 2, 2), origin=(0, 0, 0), mats=None, fields=None, out=None, inside=None, in_shape=None):
    fields = [chain_field()] if fields is None else fields
    mats = [EYE] * (len(fields) + 1) if mats is None else mats
    out = np.zeros((int(np.prod(count)), 3)) if out is None else out
    return kernel.chain_points(out, origin, count, mats, fields, inside, in_shape)


@pytest.mark.parametrize("first, shape", [((-1, 0, 0), (4, 4, 4)), ((0, 1, 0), (4, 4, 4)), ((0, 0, 0), (4, 4, 3)),
                                          ((0, 0, 0), (4, 4, 2**62)), ((0, 2**62, 0), (4, 2**62, 4))])
def test_chain_points_refuses_a_field_window_that_leaves_the_field(first, shape):
    with pytest.raises(ValueError, match="leaves the field"):
        call_chain(fields=[chain_field(first=first, shape=shape)])


@pytest.mark.parametrize("count, origin", [((0, 2, 2), (0, 0, 0)), ((2, 2, -1), (0, 0, 0)), ((2, 2, 2), (2**52, 0, 0)),
                                           ((2, 2, 2), (0, -(2**53), 0))])
def test_chain_points_refuses_a_block_out_of_range(count, origin):
    with pytest.raises(ValueError, match="block origin"):
        call_chain(count=count, origin=origin, out=np.zeros((8, 3)))


@pytest.mark.parametrize("out", [np.zeros((7, 3)), np.zeros((8, 2)), np.zeros(24), np.zeros((8, 3), np.float32), np.zeros((0, 3))])
def test_chain_points_refuses_an_output_that_is_not_the_blocks(out):
    with pytest.raises(ValueError, match="the block's voxels"):
        call_chain(out=out)


def test_chain_points_refuses_a_block_whose_voxels_overflow_64_bits():
    with pytest.raises(ValueError, match="the block's voxels"):
        call_chain(count=(2**21, 2**21, 2**22), out=np.zeros((8, 3)))


@pytest.mark.parametrize("nmats", [0, 1, 3])
def test_chain_points_refuses_matrices_that_do_not_match_the_fields(nmats):
    with pytest.raises(ValueError, match="matrices for 1 fields"):
        call_chain(mats=[EYE] * nmats)


@pytest.mark.parametrize("where", ["matrix", "inverse"])
@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_chain_points_refuses_a_matrix_not_finite(where, bad):
    m = EYE.copy()
    m[1, 3] = bad
    with pytest.raises(ValueError, match="not finite"):
        if where == "matrix":
            call_chain(mats=[EYE, m])
        else:
            call_chain(fields=[chain_field(inv=m)])


@pytest.mark.parametrize("win", [np.zeros((4, 4, 4)), np.zeros((4, 4, 4, 2)), np.zeros((4, 4, 4, 3), np.float32)])
def test_chain_points_refuses_a_field_window_not_wx_wy_wz_3_float64(win):
    with pytest.raises(TypeError, match="float64"):
        kernel._kernel.chain_points(np.zeros((8, 3)), [0, 0, 0], [2, 2, 2], [[1.0] * 12] * 2,
                                    [(win, [0.0] * 12, [0, 0, 0], [4, 4, 4])])


def test_chain_points_refuses_an_output_that_overlaps_a_field_window():
    win = np.zeros((2, 2, 2, 3))
    with pytest.raises(ValueError, match="overlaps"):
        call_chain(fields=[chain_field(win=win, shape=(2, 2, 2))], out=win.reshape(8, 3))


@pytest.mark.parametrize("inside", [np.zeros(7, bool), np.zeros(8, np.uint8), np.zeros(8, np.float64)])
def test_chain_points_refuses_an_inside_mask_that_is_not_n_bools(inside):
    with pytest.raises(ValueError, match="8 bools"):
        call_chain(inside=inside, in_shape=(4, 4, 4))


@pytest.mark.parametrize("in_shape", [(0, 4, 4), (4, 4, 2**53)])
def test_chain_points_refuses_an_input_shape_out_of_range(in_shape):
    with pytest.raises(ValueError, match="input's length"):
        call_chain(inside=np.zeros(8, bool), in_shape=in_shape)


@pytest.mark.parametrize("scale", [1e300, np.float64(2.0**62)])
def test_chain_points_names_the_field_whose_coordinates_are_not_finite_or_beyond_2_62(scale):
    inv = EYE * scale  # the field's voxel index of point (1, 1, 1): inf, or 2**62
    bad, lo, hi, counted = call_chain(fields=[chain_field(), chain_field(inv=inv)])
    assert bad == 2
    assert call_chain(fields=[chain_field(inv=inv), chain_field()])[0] == 1


def test_chain_points_refuses_taps_outside_a_field_window_without_reading_there():
    win, _mem = guarded((2, 2, 2, 3), np.float64)
    win[...] = 0.0
    shift = EYE.copy()
    shift[0, 3] = 1.0  # the block's x = 1 reaches field voxel 2, beyond the window [0, 2)
    with pytest.raises(IndexError, match="field 0's taps leave its window"):
        call_chain(mats=[shift, EYE], fields=[chain_field(win=win, shape=(8, 8, 8))])


def test_chain_points_clamps_onto_the_fields_edge_samples_as_scipys_nearest():
    win = np.zeros((3, 1, 1, 3))
    win[:, 0, 0, 0] = (10.0, 20.0, 40.0)
    far = EYE.copy()
    far[0, 3] = -5.0  # x = -5, -4: clamped onto the field's first sample
    out = np.zeros((2, 3))
    call_chain(count=(2, 1, 1), mats=[far, EYE], fields=[chain_field(win=win, shape=(3, 1, 1))], out=out)
    np.testing.assert_array_equal(out[:, 0], [5.0, 6.0])
    half = EYE.copy()
    half[0, 3] = 1.5  # x = 1.5, 2.5 (beyond the last sample: 40)
    call_chain(count=(2, 1, 1), mats=[half, EYE], fields=[chain_field(win=win[1:], first=(1, 0, 0), shape=(3, 1, 1))],
               out=out)
    np.testing.assert_array_equal(out[:, 0], [1.5 + 30.0, 2.5 + 40.0])
