"""registration: the chain's order (the last listed applied first), affines and fields as points maps."""

import numpy as np
import pytest

from bigresample.registration import AffineMap, Chain, DisplacementField, RegistrationError


def _affine(seed):
    rng = np.random.default_rng(seed)
    m = np.eye(4)
    m[:3, :3] += 0.2 * rng.standard_normal((3, 3))
    m[:3, 3] = rng.standard_normal(3) * 5
    return m


def test_chain_applies_the_last_listed_first():
    a, b = AffineMap(_affine(1), "a"), AffineMap(_affine(2), "b")
    p = np.random.default_rng(3).standard_normal((10, 3)) * 20
    expected = a.apply(b.apply(p))  # antsApplyTransforms -t a -t b: b first
    assert np.allclose(Chain((a, b)).apply(p), expected, atol=1e-12)
    assert np.allclose((Chain((a, b)).affine @ np.c_[p, np.ones(10)].T).T[:, :3], expected, atol=1e-9)
    assert not np.allclose(Chain((b, a)).apply(p), expected)


def test_field_is_trilinear_between_samples_and_nearest_at_the_edge():
    rng = np.random.default_rng(4)
    d = rng.standard_normal((5, 6, 7, 3))
    aff = np.diag([2.0, 2.0, 3.0, 1.0])
    aff[:3, 3] = (-4, 1, 0)
    f = DisplacementField((5, 6, 7), aff, lambda r: d[r], "f")
    v = np.array([[1.25, 2.5, 3.75], [-0.5, 0.0, 6.5], [2.0, 3.0, 4.0]])
    world = v @ aff[:3, :3].T + aff[:3, 3]
    got = f.apply(world) - world
    i = np.array([1, 2, 3])
    t = np.array([0.25, 0.5, 0.75])
    corner = sum(d[tuple(i + c)] * np.prod(np.where(c, t, 1 - t))
                 for c in np.array(np.meshgrid([0, 1], [0, 1], [0, 1])).reshape(3, -1).T)
    assert np.allclose(got[0], corner)
    assert np.allclose(got[1], d[0, 0, 6])  # half a voxel beyond: the edge sample
    assert np.allclose(got[2], d[2, 3, 4])
    assert np.allclose(f.bound(), np.abs(d).reshape(-1, 3).max(axis=0))
    assert f.covers((-0.5, 0, 0), (4.5, 5.5, 6.5)) and not f.covers((-0.6, 0, 0), (1, 1, 1))


def test_a_field_refuses_an_inverse_and_affines_refuse_bad_matrices():
    f = DisplacementField((2, 2, 2), np.eye(4), lambda r: np.zeros((2, 2, 2, 3)), "warp.nii.gz")
    with pytest.raises(RegistrationError, match="warp.nii.gz"):
        f.inverse()
    with pytest.raises(RegistrationError, match="singular"):
        AffineMap(np.diag([1.0, 0.0, 1.0, 1.0]), "m.txt")
    with pytest.raises(RegistrationError, match="4x4"):
        AffineMap(np.full((4, 4), np.nan), "m.txt")
