"""Geometry: spacing, output shapes, index maps and affines, with no files."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from bigresample.geometry import GeometryError, axis_map, make_grid, voxel_spacing

SEED_OBLIQUE = np.array(
    [
        [-0.01045284, 0.0, 0.09945219, -2.93459034],
        [0.0, -0.1, 0.0, 8.0],
        [0.09945219, 0.0, 0.01045284, -5.08460236],
        [0.0, 0.0, 0.0, 1.0],
    ]
)


def test_spacing_of_the_seed_oblique_affine_is_100_um_not_the_diagonal():
    np.testing.assert_allclose(voxel_spacing(SEED_OBLIQUE) * 1000, [100, 100, 100], atol=1e-4)
    np.testing.assert_allclose(np.abs(SEED_OBLIQUE.diagonal()[:3]) * 1000, [10.45, 100, 10.45], atol=0.01)


def test_spacing_rejects_a_non_4x4_affine():
    with pytest.raises(GeometryError, match="4x4"):
        voxel_spacing(np.eye(3))


@pytest.mark.parametrize(
    "n, s, t, m",
    [
        (300, 0.1, 0.15, 200),  # the seed's headline example
        (512, 0.1, 0.1, 512),
        (100, 0.1, 0.05, 200),
        (7, 1.0, 2.0, 4),  # round(3.5) -> 4 (Python rounds half to even: 4)
        (5, 1.0, 2.0, 2),  # round(2.5) -> 2
        (1, 0.1, 0.05, 2),
        (3, 0.1, 10.0, 1),  # never below one voxel
    ],
)
def test_output_size_is_rounded_like_scipy_zoom(n, s, t, m):
    assert axis_map(n, s, t).m == m
    assert axis_map(n, s, t).m == max(1, int(round(n * (s / t))))


def test_center_grid_index_map_keeps_the_field_of_view_centred():
    ax = axis_map(300, 0.1, 0.15, "center")
    x = ax.coordinates()
    np.testing.assert_allclose(x, (np.arange(200) - 199 / 2) * 1.5 + 299 / 2)
    assert x[0] + x[-1] == pytest.approx(299)


def test_origin_grid_keeps_the_first_voxel_centre():
    np.testing.assert_array_equal(axis_map(10, 1.0, 0.5, "origin").coordinates(), np.arange(20) * 0.5)


def test_zoom_grid_samples_like_scipy_zoom_and_says_its_true_spacing():
    ax = axis_map(300, 0.1, 0.15, "zoom")
    np.testing.assert_array_equal(ax.coordinates(), np.arange(200) * (299 / 199))
    g = make_grid((300, 300, 300), (0.1,) * 3, (0.1, 0.1, 0.15), "zoom")
    np.testing.assert_allclose(g.output_spacing((0.1,) * 3), [0.1, 0.1, 0.1 * 299 / 199])
    assert g.output_spacing((0.1,) * 3)[2] != pytest.approx(0.15, abs=1e-6)


def test_zoom_grid_axis_with_one_output_voxel_samples_index_zero_and_scales_by_the_ratio():
    ax = axis_map(3, 0.1, 10.0, "zoom")
    assert ax.m == 1
    np.testing.assert_array_equal(ax.coordinates(), [0.0])
    assert ax.affine_scale == pytest.approx(100.0)
    ax = axis_map(1, 0.1, 0.05, "zoom")
    np.testing.assert_array_equal(ax.coordinates(), [0.0, 0.0])
    assert ax.affine_scale == pytest.approx(0.5)


@pytest.mark.parametrize("bad", [0.0, -0.1, float("nan"), float("inf")])
def test_bad_spacings_are_refused_with_the_value(bad):
    with pytest.raises(GeometryError, match="> 0"):
        make_grid((4, 4, 4), (1, 1, 1), (1, 1, bad))


def test_wrong_number_of_spacings_is_refused():
    with pytest.raises(GeometryError, match="3 values; got 2"):
        make_grid((4, 4, 4), (1, 1, 1), (1, 1))


def test_unknown_grid_is_refused():
    with pytest.raises(GeometryError, match="grid must be one of"):
        make_grid((4, 4, 4), (1, 1, 1), (1, 1, 1), "corner")


def _oblique_affine(angles, spacing, origin):
    a, b, c = angles
    rx = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    ry = np.array([[np.cos(b), 0, np.sin(b)], [0, 1, 0], [-np.sin(b), 0, np.cos(b)]])
    rz = np.array([[np.cos(c), -np.sin(c), 0], [np.sin(c), np.cos(c), 0], [0, 0, 1]])
    aff = np.eye(4)
    aff[:3, :3] = rx @ ry @ rz @ np.diag(spacing)
    aff[:3, 3] = origin
    return aff


spacings = st.floats(0.01, 2.0)


@given(
    shape=st.tuples(*[st.integers(1, 60)] * 3),
    spacing=st.tuples(spacings, spacings, spacings),
    new_spacing=st.tuples(spacings, spacings, spacings),
    angles=st.tuples(*[st.floats(-3.1, 3.1)] * 3),
    origin=st.tuples(*[st.floats(-100, 100)] * 3),
    grid=st.sampled_from(["center", "origin", "zoom"]),
)
def test_the_output_affine_says_where_every_sample_came_from(shape, spacing, new_spacing, angles, origin, grid):
    """A_out @ [o, 1] == A_in @ [x(o), 1] for every output voxel, on oblique affines."""
    a_in = _oblique_affine(angles, spacing, origin)
    np.testing.assert_allclose(voxel_spacing(a_in), spacing, rtol=1e-12)
    g = make_grid(shape, voxel_spacing(a_in), new_spacing, grid)
    a_out = g.output_affine(a_in)
    for i, ax in enumerate(g.axes):
        if grid == "zoom" and ax.n == 1 and ax.m > 1:
            continue  # the documented exception: samples all at x = 0
        o = np.zeros((ax.m, 4))
        o[:, i] = np.arange(ax.m)
        o[:, 3] = 1
        x = np.zeros((ax.m, 4))
        x[:, :3] = [a.coordinates(0, 1)[0] for a in g.axes]  # x(0) on the other axes
        x[:, i] = ax.coordinates()
        x[:, 3] = 1
        np.testing.assert_allclose(o @ a_out.T, x @ a_in.T, atol=1e-9 * (1 + np.abs(origin).max()))
    # spacing in the header is the true spacing of the samples
    np.testing.assert_allclose(voxel_spacing(a_out), g.output_spacing(voxel_spacing(a_in)), rtol=1e-12)


def test_spacing_stored_in_float32_gives_the_shape_scipy_would_see():
    stored = np.float32(0.2)  # 0.20000000298...
    assert float(stored) != 0.2
    ax = axis_map(1000, float(stored), 0.3)
    assert ax.m == max(1, int(round(1000 * (float(stored) / 0.3))))


def _rot(axis, degrees):
    c, s = np.cos(np.radians(degrees)), np.sin(np.radians(degrees))
    i, j = [k for k in range(3) if k != axis]
    r = np.eye(3)
    r[i, i], r[i, j], r[j, i], r[j, j] = c, -s, s, c
    return r


@pytest.mark.parametrize("directions, axes, flipped, degrees, text", [
    (np.eye(3), (0, 1, 2), (False,) * 3, 0.0, "axes aligned with the input's"),
    (np.diag([-1.0, 1, 1]), (0, 1, 2), (True, False, False), 0.0, "x flipped relative to the input's axes"),
    (np.eye(3)[:, [1, 0, 2]], (1, 0, 2), (False,) * 3, 0.0, "axes permuted (y, x, z) relative to the input's axes"),
    (_rot(2, 90), (1, 0, 2), (False, True, False), 0.0,  # a quarter turn is a flip and a swap
     "x flipped, axes permuted (y, x, z) relative to the input's axes"),
    (np.diag([-1.0, 1, 1]) @ _rot(0, 9), (0, 1, 2), (True, False, False), 9.0,  # as nibabel's example4d.nii.gz
     "x flipped, then rotated 9.00 degrees relative to the input"),
    (_rot(2, 17) @ _rot(0, 9), (0, 1, 2), (False,) * 3, None, None),
])
def test_a_reference_is_described_as_flips_permutations_and_a_rotation(directions, axes, flipped, degrees, text):
    from bigresample.geometry import orientation

    a_in = np.diag([0.5, 0.7, 1.1])  # any spacing, any shear of the input's own
    o = orientation(a_in, directions @ np.diag([2.0, 3.0, 1.5]))
    assert (o.axes, o.flipped) == (axes, flipped)
    if degrees is not None:
        assert o.degrees == pytest.approx(degrees, abs=1e-9)
        assert o.describe() == text
    else:  # a rotation that is neither: its angle, that of the rotation matrix itself
        r = _rot(2, 17) @ _rot(0, 9)
        assert o.degrees == pytest.approx(np.degrees(np.arccos((np.trace(r) - 1) / 2)))
        assert o.describe() == f"rotated {o.degrees:.2f} degrees relative to the input"


def test_the_reference_grid_seen_from_a_flipped_input():
    """An input running right to left (as FSL's templates) and a RAS reference: x flipped, nothing else."""
    from bigresample.geometry import reference_grid

    a_in = np.diag([-2.0, 2.0, 2.0, 1.0])
    a_ref = np.diag([3.0, 3.0, 3.0, 1.0])
    g = reference_grid((91, 109, 91), a_in, (60, 72, 60), a_ref)
    assert g.orientation().describe() == "x flipped relative to the input's axes"
    assert g.orientation().degrees == 0.0
