"""Geometry pinned value by value: refusals word for word, grids against hand-derived
coordinates and against scipy.ndimage's own sampling, references by their matrices."""

import numpy as np
import pytest
from scipy import ndimage

from bigresample.geometry import (
    AxisMap,
    GeometryError,
    Orientation,
    axis_map,
    make_grid,
    orientation,
    parse_grid,
    parse_spacing,
    reference_grid,
    voxel_spacing,
)


def test_refusals_name_the_rule_and_the_value():
    cases = [
        (lambda: parse_grid("corner"), "grid must be one of center, origin, zoom; got 'corner'"),
        (lambda: voxel_spacing(np.eye(3)), "affine must be 4x4; got shape (3, 3)"),
        (lambda: parse_spacing(None, 3), "spacing must be 3 numbers; got None"),
        (lambda: parse_spacing(["a", 1, 1], 3, "new spacing"), "new spacing must be 3 numbers; got ['a', 1, 1]"),
        (lambda: parse_spacing((1, 2), 3), "spacing must have 3 values; got 2: [1, 2]"),
        (lambda: parse_spacing((1, -2.5, 1), 3), "spacing values must be finite and > 0; got -2.5"),
        (lambda: parse_spacing((1, 1, float("inf")), 3), "spacing values must be finite and > 0; got inf"),
        (lambda: axis_map(0, 1.0, 1.0), "axis length must be >= 1; got 0"),
        (lambda: axis_map(4, 0.0, 1.0), "input spacing must be finite and > 0; got 0.0"),
        (lambda: axis_map(4, float("nan"), 1.0), "input spacing must be finite and > 0; got nan"),
        (lambda: axis_map(4, 1.0, -1.0), "new spacing must be finite and > 0; got -1.0"),
        (lambda: axis_map(4, 1.0, 0.0), "new spacing must be finite and > 0; got 0.0"),
        (lambda: axis_map(4, 1.0, float("inf")), "new spacing must be finite and > 0; got inf"),
        (lambda: reference_grid((4, 4), np.eye(4), (4, 4, 4), np.eye(4)),
         "shapes must be 3 positive lengths; got (4, 4) and (4, 4, 4)"),
        (lambda: reference_grid((4, 4, 4), np.eye(4), (4, 4, 4, 2), np.eye(4)),
         "shapes must be 3 positive lengths; got (4, 4, 4) and (4, 4, 4, 2)"),
        (lambda: reference_grid((4, 0, 4), np.eye(4), (4, 4, 4), np.eye(4)),
         "shapes must be 3 positive lengths; got (4, 0, 4) and (4, 4, 4)"),
        (lambda: reference_grid((4, 4, 4), np.eye(4), (4, 4, 0), np.eye(4)),
         "shapes must be 3 positive lengths; got (4, 4, 4) and (4, 4, 0)"),
        (lambda: reference_grid((4, 4, 4), np.diag([1, 1, 0, 1.0]), (4, 4, 4), np.eye(4)),
         "input affine is not an invertible, finite 4x4 matrix"),
        (lambda: reference_grid((4, 4, 4), np.eye(4), (4, 4, 4), np.eye(3)),
         "reference affine is not an invertible, finite 4x4 matrix"),
        (lambda: reference_grid((4, 4, 4), np.eye(4), (4, 4, 4), np.diag([1, np.nan, 1, 1])),
         "reference affine is not an invertible, finite 4x4 matrix"),
    ]
    for call, message in cases:
        with pytest.raises(GeometryError) as err:
            call()
        assert str(err.value) == message


def test_valid_values_pass_through_unchanged():
    assert parse_grid("zoom") == "zoom"
    assert parse_spacing(["0.5", 2, np.float32(0.25)], 3) == (0.5, 2.0, 0.25)
    assert axis_map(1, 1.0, 1.0).m == 1  # one voxel is a valid axis
    # a nearly singular but invertible reference (det 1e-9 of a 1e-3 mm voxel) is accepted
    g = reference_grid((4, 4, 4), np.eye(4), (4, 4, 4), np.diag([1e-3, 1e-3, 1e-3, 1.0]))
    np.testing.assert_allclose(g.matrix, np.eye(3) * 1e-3)


def test_voxel_spacing_is_the_column_norm_by_hand():
    a = np.array([[3.0, 0, 0, 9], [4.0, 0, -2, 9], [0, 5.0, 0, 9], [0, 0, 0, 1]])
    np.testing.assert_array_equal(voxel_spacing(a), [5.0, 5.0, 2.0])


@pytest.mark.parametrize("n, s, t", [(10, 1.0, 0.7), (9, 0.5, 1.3), (7, 2.0, 2.0), (1, 1.0, 0.4)])
def test_the_three_grids_by_hand(n, s, t):
    """x(o) for o = 0..m-1 written out from docs/grids-and-exactness.md, "Grids"."""
    m = max(1, int(round(n * s / t)))
    r = t / s
    o = np.arange(m, dtype=np.float64)
    center = axis_map(n, s, t, "center")
    assert (center.m, center.ratio, center.step) == (m, r, r)
    np.testing.assert_allclose(center.coordinates(), (o - (m - 1) / 2) * r + (n - 1) / 2, rtol=0, atol=1e-12)
    assert center.offset == pytest.approx((n - 1) / 2 - (m - 1) / 2 * r, abs=1e-15)
    assert center.kind == "affine"
    origin = axis_map(n, s, t, "origin")
    assert (origin.offset, origin.step, origin.kind) == (0.0, r, "affine")
    np.testing.assert_array_equal(origin.coordinates(), o * r)
    zoom = axis_map(n, s, t, "zoom")
    step = (n - 1) / (m - 1) if m > 1 else 1.0
    assert (zoom.kind, zoom.step, zoom.offset, zoom.ratio) == ("zoom", step, 0.0, r)
    np.testing.assert_array_equal(zoom.coordinates(), o * step)
    # a part of the axis is the same part of the whole
    for ax in (center, origin, zoom):
        np.testing.assert_array_equal(ax.coordinates(1, m), ax.coordinates()[1:])
        np.testing.assert_array_equal(ax.coordinates(0, 1), ax.coordinates()[:1])


@pytest.mark.parametrize("grid", ["center", "origin"])
def test_center_and_origin_coordinates_are_affine_transforms_own(grid):
    """scipy.ndimage.affine_transform with a diagonal matrix samples at (o + x0/r) * r:
    a line of its own input indices comes back as exactly these coordinates."""
    n, s, t = 50, 0.1, 0.13
    ax = axis_map(n, s, t, grid)
    ramp = np.arange(n, dtype=np.float64)
    got = ndimage.affine_transform(ramp, [ax.ratio], offset=[ax.offset], output_shape=(ax.m,), order=1,
                                   mode="grid-constant", cval=-1.0)
    inside = (ax.coordinates() >= 0) & (ax.coordinates() <= n - 1)
    np.testing.assert_allclose(got[inside], ax.coordinates()[inside], rtol=0, atol=1e-12)
    assert inside.sum() >= ax.m - 2


def test_zoom_coordinates_are_zooms_own():
    n, m = 23, 31
    ax = axis_map(n, 1.0, n / m, "zoom")
    assert ax.m == m
    ramp = np.arange(n, dtype=np.float64)
    np.testing.assert_allclose(ndimage.zoom(ramp, m / n, order=1, grid_mode=False), ax.coordinates(),
                               rtol=0, atol=1e-12)


def test_identity_axis_and_a_copy_grid():
    assert axis_map(1, 1.0, 1.0, "zoom").is_identity  # one voxel to one voxel: step 1, as scipy's factor
    assert axis_map(5, 0.3, 0.3, "origin").is_identity
    assert not axis_map(5, 0.3, 0.3, "center").is_identity is False  # center of an unchanged axis: offset 0 too
    assert not axis_map(5, 0.3, 0.15, "origin").is_identity
    assert make_grid((5, 4, 3), (1, 1, 1), (1, 1, 1), "zoom").is_copy
    assert not make_grid((5, 4, 3), (1, 1, 1), (1, 1, 1), "center").is_copy
    assert not make_grid((5, 4, 3), (1, 1, 1), (1, 1, 2), "zoom").is_copy


def test_output_affine_and_spacing_by_hand():
    """Center grid, 10 voxels of 1 mm to 2 mm on x: x(0) = 4.5 - 2 * 2 = 0.5, so the origin
    moves by half a voxel along the (rotated) x column; y and z unchanged."""
    a_in = np.array([[0.0, -1.0, 0, 10], [1.0, 0.0, 0, 20], [0, 0, 3.0, 30], [0, 0, 0, 1]])
    g = make_grid((10, 6, 4), (1, 1, 3), (2, 1, 3), "center")
    np.testing.assert_array_equal(g.out_shape, (5, 6, 4))
    np.testing.assert_array_equal(g.in_shape, (10, 6, 4))
    np.testing.assert_array_equal(g.ratios, [2, 1, 1])
    np.testing.assert_array_equal(g.steps, [2, 1, 1])
    np.testing.assert_allclose(g.offsets, [0.5, 0, 0])
    expected = np.array([[0.0, -1.0, 0, 10], [2.0, 0.0, 0, 20.5], [0, 0, 3.0, 30], [0, 0, 0, 1]])
    np.testing.assert_allclose(g.output_affine(a_in), expected, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(a_in[1], [1.0, 0.0, 0, 20])  # the input affine is not modified
    np.testing.assert_allclose(g.output_spacing((1, 1, 3)), [2, 1, 3])


def test_output_affine_of_a_4d_input_keeps_the_extra_rows():
    """A 5x5 affine (nibabel's for some 4D headers) keeps rows and columns beyond 3."""
    a_in = np.eye(5)
    a_in[:3, 4] = (1, 2, 3)
    a_in[3, 3] = 7.0
    g = make_grid((10, 10, 10), (1, 1, 1), (2, 2, 2), "origin")
    out = g.output_affine(a_in)
    assert out.shape == (5, 5)
    np.testing.assert_array_equal(out[:3, :3], np.eye(3) * 2)
    assert out[3, 3] == 7.0


def test_zoom_grid_output_affine_of_a_one_voxel_axis_scales_by_the_ratio():
    g = make_grid((1, 9, 4), (1, 1, 1), (0.5, 2, 1), "zoom")
    assert g.out_shape == (2, 4, 4)
    np.testing.assert_allclose(g.output_affine(np.eye(4)).diagonal(), [0.5, 8 / 3, 1, 1])
    np.testing.assert_allclose(g.output_spacing((1, 1, 1)), [0.5, 8 / 3, 1])


def _ref_affine(flip_x=False):
    a = np.diag([0.2, 0.3, 0.25, 1.0])
    if flip_x:
        a[0, 0] = -0.2
    a[:3, 3] = (1.0, -2.0, 0.5)
    return a


def test_reference_grid_matrix_offset_and_the_separable_grid():
    a_in = np.diag([0.1, 0.1, 0.25, 1.0])
    g = reference_grid((40, 30, 20), a_in, (12, 9, 20), _ref_affine(flip_x=True))
    np.testing.assert_allclose(g.matrix, np.diag([-2.0, 3.0, 1.0]), atol=1e-12)
    np.testing.assert_allclose(g.offset, [10.0, -20.0, 2.0], atol=1e-12)
    np.testing.assert_allclose(g.homogeneous[:3, :3], g.matrix)
    np.testing.assert_allclose(g.homogeneous[:3, 3], g.offset)
    np.testing.assert_array_equal(g.homogeneous[3], [0, 0, 0, 1])
    np.testing.assert_allclose(g.ratios, [2, 3, 1])
    assert g.is_axis_aligned
    sep = g.separable()
    assert sep.grid == "reference" and sep.out_shape == (12, 9, 20) and sep.in_shape == (40, 30, 20)
    x = sep.axes[0]
    assert (x.kind, x.ratio, x.step, x.offset) == ("matrix", 2.0, -2.0, 10.0)
    np.testing.assert_allclose(x.coordinates(), 10.0 - 2.0 * np.arange(12), atol=1e-12)
    # the reference's own affine and spacing, as a copy
    out = g.output_affine(np.eye(4))
    np.testing.assert_array_equal(out, _ref_affine(flip_x=True))
    out[0, 0] = 99
    np.testing.assert_array_equal(g.output_affine(), _ref_affine(flip_x=True))
    np.testing.assert_allclose(g.output_spacing(), [0.2, 0.3, 0.25])


def test_separable_grid_samples_as_affine_transform():
    a_in = np.diag([0.1, 0.1, 0.25, 1.0])
    g = reference_grid((40, 30, 20), a_in, (12, 9, 20), _ref_affine(flip_x=True))
    sep = g.separable()
    ramp = np.arange(40, dtype=np.float64)[:, None, None] * np.ones((1, 30, 20))
    got = ndimage.affine_transform(ramp, g.homogeneous, output_shape=g.out_shape, order=1, mode="nearest")
    x = np.clip(sep.axes[0].coordinates(), 0, 39)
    np.testing.assert_allclose(got[:, 0, 0], x, atol=1e-12)


def test_rotated_permuted_or_degenerate_references_are_not_separable():
    a_in = np.eye(4)
    rot = np.eye(4)
    c, s = np.cos(0.3), np.sin(0.3)
    rot[:2, :2] = [[c, -s], [s, c]]
    assert not reference_grid((8, 8, 8), a_in, (8, 8, 8), rot).is_axis_aligned
    assert reference_grid((8, 8, 8), a_in, (8, 8, 8), rot).separable() is None
    perm = np.eye(4)[[1, 0, 2, 3]]
    assert reference_grid((8, 8, 8), a_in, (8, 8, 8), perm).separable() is None
    g = reference_grid((8, 8, 8), a_in, (8, 8, 8), np.eye(4))
    object.__setattr__(g, "matrix", np.diag([1.0, 0.0, 1.0]))  # a zero step: no separable form
    assert g.separable() is None


def test_rotation_degrees_and_orientation_of_a_reference():
    a_in = np.diag([0.5, 0.5, 0.5, 1.0])
    ref = np.eye(4)
    t = np.radians(30)
    ref[:3, :3] = np.array([[1, 0, 0], [0, np.cos(t), -np.sin(t)], [0, np.sin(t), np.cos(t)]]) * 2.0
    g = reference_grid((8, 8, 8), a_in, (8, 8, 8), ref)
    assert g.orientation().degrees == pytest.approx(30.0, abs=1e-9)
    o = g.orientation()
    assert o == Orientation((0, 1, 2), (False, False, False), pytest.approx(30.0, abs=1e-9))


@pytest.mark.parametrize("degrees, text", [
    (0.004, "axes aligned with the input's"),
    (0.005, "rotated 0.01 degrees relative to the input"),
    (0.006, "rotated 0.01 degrees relative to the input"),
])
def test_rotations_under_five_thousandths_of_a_degree_are_called_aligned(degrees, text):
    assert Orientation((0, 1, 2), (False, False, False), degrees).describe() == text


def test_describe_lists_flips_in_axis_order_then_the_permutation_then_the_rotation():
    # reference axis 0 runs along input z, flipped; reference axis 2 along input y, flipped
    o = Orientation((2, 0, 1), (True, False, True), 12.5)
    assert o.describe() == "y flipped, z flipped, axes permuted (z, x, y), then rotated 12.50 degrees relative to the input"
    o = Orientation((0, 1, 2), (False, True, False), 0.0)
    assert o.describe() == "y flipped relative to the input's axes"


def test_orientation_of_a_sheared_input_uses_its_rotation_part():
    """A shear of the input's own is no rotation of the reference: only the orthogonal factor counts."""
    sheared = np.array([[1.0, 0.3, 0], [0, 1.0, 0], [0, 0, 1.0]])
    o = orientation(sheared, sheared)
    assert (o.axes, o.flipped) == ((0, 1, 2), (False,) * 3)
    assert o.degrees == pytest.approx(0.0, abs=1e-6)
    # an improper reference (one flip) keeps its flip even when rotated a little
    t = np.radians(5)
    r = np.array([[np.cos(t), -np.sin(t), 0], [np.sin(t), np.cos(t), 0], [0, 0, 1]])
    o = orientation(np.eye(3), r @ np.diag([1.0, 1.0, -1.0]))
    assert (o.axes, o.flipped) == ((0, 1, 2), (False, False, True))
    assert o.degrees == pytest.approx(5.0, abs=1e-9)


def test_axis_map_is_a_plain_value():
    ax = AxisMap(4, 8, 0.5, 0.5, 0.25, "affine")
    np.testing.assert_array_equal(ax.coordinates(), (np.arange(8) + 0.5) * 0.5)
    assert not ax.is_identity
    assert ax.affine_scale == 0.5


def test_integer_and_text_inputs_are_taken_as_float64():
    g = make_grid((10, 10, 10), (1, 1, 1), (0.5, 0.5, 0.5))  # the center grid by default
    assert g.grid == "center" and g.axes[0].offset == pytest.approx(4.5 - 9.5 * 0.5)
    out = g.output_affine(np.eye(4, dtype=np.int64))  # an integer affine: no truncation
    assert out.dtype == np.float64
    np.testing.assert_allclose(out.diagonal(), [0.5, 0.5, 0.5, 1])
    np.testing.assert_allclose(out[:3, 3], [-0.25, -0.25, -0.25])
    np.testing.assert_allclose(g.output_spacing(["1", "1", "2"]), [0.5, 0.5, 1.0])
    ref = reference_grid((4, 4, 4), np.eye(4, dtype=int), (4, 4, 4), 2 * np.eye(4, dtype=int))
    assert ref.output_affine().dtype == np.float64 and ref.out_affine.dtype == np.float64


def test_make_grid_names_which_spacing_is_wrong():
    with pytest.raises(GeometryError) as err:
        make_grid((4, 4, 4), (1, 1), (1, 1, 1))
    assert str(err.value) == "input spacing must have 3 values; got 2: [1, 1]"
    with pytest.raises(GeometryError) as err:
        make_grid((4, 4, 4), (1, 1, 1), (1, 0, 1))
    assert str(err.value) == "new spacing values must be finite and > 0; got 0.0"


def test_one_voxel_axes_and_the_determinant_threshold_are_accepted():
    g = reference_grid((1, 4, 4), np.eye(4), (4, 1, 4), np.eye(4))
    assert g.in_shape == (1, 4, 4) and g.out_shape == (4, 1, 4)
    flat = np.diag([1e-12, 1.0, 1.0, 1.0])  # determinant 1e-12 (1.000000000000001e-12 as numpy computes it)
    assert reference_grid((4, 4, 4), np.eye(4), (4, 4, 4), flat).matrix[0, 0] == 1e-12


def _rz(degrees):
    t = np.radians(degrees)
    return np.array([[np.cos(t), -np.sin(t), 0], [np.sin(t), np.cos(t), 0], [0, 0, 1.0]])


def test_the_nearest_signed_permutation_is_chosen_and_ties_go_to_the_first():
    # 60 degrees about z is 30 from a quarter turn (a flip and a swap): that is nearer
    o = orientation(np.eye(3), _rz(60))
    assert (o.axes, o.flipped) == ((1, 0, 2), (False, True, False))
    assert o.degrees == pytest.approx(30.0, abs=1e-9)
    # exactly half-way (45 degrees): the plain rotation, not a permutation and a rotation
    o = orientation(np.eye(3), _rz(45))
    assert (o.axes, o.flipped) == ((0, 1, 2), (False, False, False))
    assert o.describe() == "rotated 45.00 degrees relative to the input"


def test_identical_directions_are_zero_degrees_even_when_rounding_makes_the_trace_exceed_3():
    from bigresample.geometry import _rotation_part

    r = _rz(39)
    assert np.trace(_rotation_part(r).T @ _rotation_part(r)) > 3  # 3 + 9e-16 here
    o = orientation(r, r)
    assert o.degrees == 0.0 and o.describe() == "axes aligned with the input's"


def test_float32_directions_are_decomposed_in_float64():
    a = (_rz(17) * 0.7).astype(np.float32)
    b = (np.array([[1, 0, 0], [0, np.cos(0.05), -np.sin(0.05)], [0, np.sin(0.05), np.cos(0.05)]]) * 0.2)
    b = b.astype(np.float32)
    o32 = orientation(a, b)
    o64 = orientation(a.astype(np.float64), b.astype(np.float64))
    assert o32.degrees == pytest.approx(o64.degrees, abs=1e-9)


def test_spacing_of_a_float32_affine_is_computed_in_float64():
    a = (np.diag([0.1, 0.2, 0.3, 1.0]) @ np.array(
        [[1, 0, 0, 0], [0, np.cos(0.3), -np.sin(0.3), 0], [0, np.sin(0.3), np.cos(0.3), 0], [0, 0, 0, 1]]))
    a32 = a.astype(np.float32)
    got = voxel_spacing(a32)
    assert got.dtype == np.float64
    np.testing.assert_array_equal(got, np.sqrt((a32[:3, :3].astype(np.float64) ** 2).sum(axis=0)))
