"""``--labels linear | cubic | mode``: each equal to its whole-array reference
(docs/grids-and-exactness.md, "Label maps"), for any block shape, grid and label type.

The references are the plain definitions, written here independently of
``bigresample.labels``: every label of the whole image (and the ``cval`` label
in the constant modes), one scipy call per label's indicator, then the
largest value, ties to the smallest label; for ``mode``, a numpy loop over the
output voxels counting the labels of each footprint.
"""

import os

import nibabel as nib
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import ndimage

from bigresample import labels as label_methods
from bigresample.cli import main
from bigresample.engine import Workspace
from bigresample.geometry import ReferenceGrid, make_grid, reference_grid, voxel_spacing
from bigresample.lazy import resample_array
from bigresample.pipeline import resample
from bigresample.request import UsageError

from .helpers import blockwise, interpolated_reference, mode_reference, scipy_reference

#: docs/grids-and-exactness.md, "Label maps": the output equals the reference wherever the
#: reference's two largest values differ by more than this
GAP = 1e-9
MODES = ("nearest", "constant", "grid-constant", "reflect", "mirror", "wrap", "grid-wrap")
DTYPES = (np.int8, np.uint8, np.int16, np.uint16, np.int32, np.uint32, np.int64)


@st.composite
def label_maps(draw, max_side=16):
    """A label map of regions a few voxels wide (some one voxel thin), in some integer type, with
    label values spread out (negative ones, and ranges too wide for a lookup table)."""
    shape = tuple(draw(st.integers(2, max_side)) for _ in range(3))
    n = draw(st.integers(1, 6))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, n, tuple(max(1, s // 3) for s in shape))
    ids = ndimage.zoom(coarse, [s / c for s, c in zip(shape, coarse.shape)], order=0, grid_mode=True, mode="nearest")
    ids = ids[: shape[0], : shape[1], : shape[2]]
    ids = np.pad(ids, [(0, s - d) for s, d in zip(shape, ids.shape)], mode="edge")
    ids[rng.integers(0, shape[0]), :, :] = n  # a one-voxel-thin sheet of its own label
    dtype = np.dtype(draw(st.sampled_from(DTYPES)))
    info = np.iinfo(dtype)
    step = draw(st.sampled_from([1, 3, 17] + ([2_000_000] if dtype.itemsize >= 4 else [])))
    first = draw(st.sampled_from([0, int(info.min)] if info.min < 0 else [0, 5]))
    return (first + ids * step).astype(dtype)


@st.composite
def grids(draw, shape, rotated=True):
    kind = draw(st.sampled_from(["center", "origin", "zoom", "reference", "rotated"] if rotated
                                else ["center", "origin", "zoom", "reference"]))
    if kind in ("reference", "rotated"):
        angle = np.deg2rad(draw(st.floats(-40, 40))) if kind == "rotated" else 0.0
        c, s = np.cos(angle), np.sin(angle)
        a_ref = np.eye(4)
        steps = [draw(st.floats(0.3, 3.0)) * draw(st.sampled_from([1, -1])) for _ in range(3)]
        a_ref[:3, :3] = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]]) @ np.diag(steps)
        a_ref[:3, 3] = [draw(st.floats(-3, 3)) for _ in range(3)]
        out_shape = tuple(draw(st.integers(1, 14)) for _ in range(3))
        return reference_grid(shape, np.eye(4), out_shape, a_ref)
    return make_grid(shape, (1.0, 1.0, 1.0), [draw(st.floats(0.3, 3.0)) for _ in range(3)], kind)


def blocks_of(draw, out_shape):
    """A block shape making at most 4 blocks per axis."""
    return tuple(draw(st.integers(-(-m // 4), m)) for m in out_shape)


@pytest.mark.slow
@settings(max_examples=40)
@given(st.data())
def test_linear_and_cubic_equal_the_whole_array_reference(data):
    labels = data.draw(label_maps())
    grid = data.draw(grids(labels.shape))
    method = data.draw(st.sampled_from(["linear", "cubic"]))
    mode = data.draw(st.sampled_from(MODES))
    cval = int(data.draw(st.sampled_from([v for v in (labels.min(), labels.max(), 0) if abs(int(v)) <= 2**53])))
    resampler = label_methods.make(method, grid.separable() or grid if isinstance(grid, ReferenceGrid) else grid,
                                   mode, cval)
    got = blockwise(resampler, labels, blocks_of(data.draw, grid.out_shape), ws=Workspace())
    expected, gap = interpolated_reference(labels, grid, label_methods.ORDERS[method], mode, cval)
    assert got.dtype == labels.dtype
    differ = got != expected
    # only where the two largest values are a near-tie, which rounding may break either way
    assert not differ.any() or gap[differ].max() <= GAP, (int(differ.sum()), float(gap[differ].min()))


@pytest.mark.slow
def test_cubic_on_a_volume_longer_than_the_halo_with_small_blocks():
    """Windows cut inside the volume (the prefilter's halo is 17 voxels at order 3): still the reference."""
    rng = np.random.default_rng(5)
    coarse = rng.integers(0, 5, (8, 7, 3)).astype(np.uint16) * 11
    labels = ndimage.zoom(coarse, (8, 8, 8), order=0)
    for grid, block in ((make_grid(labels.shape, (1, 1, 1), (0.45, 2.3, 1.7), "center"), (31, 9, 5)),
                        (reference_grid(labels.shape, np.eye(4), (40, 50, 20), np.array(
                            [[0.9, -0.8, 0, 3], [0.8, 0.9, 0, -5], [0, 0, 1.2, 1], [0, 0, 0, 1]])), (20, 25, 10))):
        for mode in ("nearest", "constant"):
            got = blockwise(label_methods.make("cubic", grid, mode, 0), labels, block, ws=Workspace())
            expected, gap = interpolated_reference(labels, grid, 3, mode, 0)
            differ = got != expected
            assert not differ.any() or gap[differ].max() <= GAP


@pytest.mark.slow
@settings(max_examples=40)
@given(st.data())
def test_mode_equals_the_footprint_reference(data):
    labels = data.draw(label_maps(max_side=20))
    grid = data.draw(grids(labels.shape, rotated=False))
    grid = grid.separable() if isinstance(grid, ReferenceGrid) else grid
    cval = int(labels.min()) if abs(int(labels.min())) <= 2**53 else 0
    try:
        label_methods.check("mode", labels.dtype, 1.0, 0.0, "nearest", cval, grid)
    except label_methods.LabelMapError:  # an upsampled axis: refused (test_refusals)
        assert any(abs(ax.affine_scale) < 1 for ax in grid.axes)
        return
    got = blockwise(label_methods.make("mode", grid, "nearest", cval), labels, blocks_of(data.draw, grid.out_shape),
                    ws=Workspace())
    np.testing.assert_array_equal(got, mode_reference(labels, grid, cval))


def test_mode_keeps_a_small_label_that_nearest_neighbour_drops():
    """A label filling one 3x3x3 footprint wins it; a single voxel in another is outvoted."""
    labels = np.zeros((9, 9, 9), np.uint8)
    labels[0:3, 0:3, 0:3] = 7  # one whole footprint of the 3x downsampling
    labels[4, 4, 4] = 9  # a single voxel at the centre of another: outvoted
    grid = make_grid(labels.shape, (1, 1, 1), (3, 3, 3), "center")
    got = blockwise(label_methods.make("mode", grid, "nearest", 0), labels, (2, 2, 2), ws=Workspace())
    assert got[0, 0, 0] == 7 and got[1, 1, 1] == 0 and (got == 7).sum() == 1


@pytest.mark.parametrize("path", ["separable", "general"])
def test_linear_exact_tie_between_two_labels_goes_to_the_smaller(path):
    """Labels 3 and 5 side by side on a background of 0 (the most frequent label, computed last):
    the output sample half-way between them has both indicators at exactly 0.5, a true tie in
    float64 that the reference's 1e-9 gap forgives; the smaller label, 3, must win it."""
    labels = np.zeros((6, 3, 3), np.int16)
    labels[1], labels[2] = 5, 3  # 5 first: the tie is not decided by the order of the voxels
    grid = make_grid(labels.shape, (1, 1, 1), (0.5, 1, 1), "origin")  # x(o) = o / 2: x(3) = 1.5, half-way
    if path == "general":  # the same samples through the general path: a matrix with a zero rotation
        grid = ReferenceGrid(labels.shape, grid.out_shape, np.diag([0.5, 1.0, 1.0]), np.zeros(3), np.eye(4))
    ind = {v: (labels == v).astype(np.float64) for v in (0, 3, 5)}
    half = {v: ndimage.affine_transform(a, [0.5, 1, 1], output_shape=grid.out_shape, order=1, mode="nearest")
            for v, a in ind.items()}
    assert half[3][3, 1, 1] == half[5][3, 1, 1] == 0.5 and half[0][3, 1, 1] == 0.0  # the tie is exact
    for block in ((12, 3, 3), (2, 2, 1)):
        got = blockwise(label_methods.make("linear", grid, "nearest", 0), labels, block)
        assert (got[3] == 3).all(), f"block {block}: the tie at x = 1.5 went to {np.unique(got[3])}, not 3"
        assert (got[2] == 5).all() and (got[4] == 3).all()


@pytest.mark.parametrize("dtype", [np.uint8, np.int16, np.uint32, np.int64, np.uint64])
def test_window_labels_finds_every_label_its_count_and_box(dtype):
    rng = np.random.default_rng(2)
    info = np.iinfo(dtype)
    pool = np.array([info.min, info.min + 1, 0, 7, info.max], dtype=dtype)
    win = pool[rng.integers(0, len(pool), (6, 5, 4))]
    found = label_methods.window_labels(win, Workspace())
    values, counts = np.unique(win, return_counts=True)
    np.testing.assert_array_equal(found.values, values)
    np.testing.assert_array_equal(found.counts, counts)
    for v, box in zip(values, found.boxes):
        where = np.argwhere(win == v)
        assert box == tuple(slice(int(a), int(b) + 1) for a, b in zip(where.min(axis=0), where.max(axis=0)))


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.uint16, ">i2", np.int32, np.uint64, np.int64])
@pytest.mark.parametrize("shape", [(6, 5, 9), (3, 4, 2, 7), (1, 1, 5), (11,)])
def test_window_labels_in_one_pass_finds_every_label_its_count_and_box(dtype, shape):
    """Labels within ``BOX_RANGE`` of each other (``kernel.label_boxes``'s single pass: runs
    along x, the leading axes once per row), negative ones, another byte order and a fourth
    axis included: the values, counts and boxes of numpy's own count and ``np.argwhere``."""
    rng = np.random.default_rng(len(shape))
    base = -3 if np.dtype(dtype).kind == "i" else 200
    pool = np.array([base, base + 1, base + 40, base + 41], dtype=dtype)
    ids = np.repeat(rng.integers(0, len(pool), shape[:-1] + ((shape[-1] + 2) // 3,)), 3, axis=-1)[..., :shape[-1]]
    win = pool[ids]  # runs of three along x
    found = label_methods.window_labels(win, Workspace())
    values, counts = np.unique(win, return_counts=True)
    assert found.values.dtype == win.dtype
    np.testing.assert_array_equal(found.values, values)
    np.testing.assert_array_equal(found.counts, counts)
    for v, box in zip(values, found.boxes):
        where = np.argwhere(win == v)
        assert box == tuple(slice(int(a), int(b) + 1) for a, b in zip(where.min(axis=0), where.max(axis=0)))


# --------------------------------------------------------------------------
# files, the command line and the API
# --------------------------------------------------------------------------


def _write(path, data, affine=None, slope=None):
    img = nib.Nifti1Image(data, np.diag([0.1, 0.1, 0.1, 1.0]) if affine is None else affine)
    if slope is not None:
        img.header.set_slope_inter(slope, 0.0)
    nib.save(img, path)
    return path


def _grid(src, target, kind="center"):
    """The grid a run makes: from the spacing as the file stores it (float32)."""
    img = nib.load(src)
    return make_grid(img.shape, voxel_spacing(img.affine), target, kind)


def _atlas(shape=(21, 19, 13), seed=0, dtype=np.uint16):
    rng = np.random.default_rng(seed)
    coarse = rng.choice(np.array([0, 0, 3, 41, 102 if np.dtype(dtype).itemsize == 1 else 1002, 7], dtype=dtype),
                        (7, 7, 5))
    return ndimage.zoom(coarse, [s / c for s, c in zip(shape, coarse.shape)], order=0, grid_mode=True,
                        mode="nearest")


@pytest.mark.parametrize("method", ["linear", "cubic"])
def test_cli_with_chunks_onto_a_rotated_reference_equals_the_reference(tmp_path, method):
    labels = _atlas()
    src = _write(tmp_path / "atlas.nii.gz", labels)
    a_ref = np.array([[0.08, -0.03, 0, -0.2], [0.03, 0.08, 0, 0.4], [0, 0, 0.15, 0.1], [0, 0, 0, 1]])
    ref = _write(tmp_path / "ref.nii", np.zeros((25, 22, 9), np.uint8), a_ref)
    out = tmp_path / "out.nii.gz"
    assert main([str(src), str(out), "--reference", str(ref), "--labels", method, "--chunks", "7", "9", "4",
                 "--mode", "constant", "--quiet"]) == 0
    got = np.asanyarray(nib.load(out).dataobj)
    grid = reference_grid(labels.shape, nib.load(src).affine, (25, 22, 9), nib.load(ref).affine)  # as stored
    expected, gap = interpolated_reference(labels, grid, label_methods.ORDERS[method], "constant", 0)
    assert got.dtype == np.uint16
    differ = got != expected
    assert not differ.any() or gap[differ].max() <= GAP


def test_cli_mode_with_chunks_equals_the_footprint_reference(tmp_path):
    labels = _atlas(dtype=np.int16)
    src = _write(tmp_path / "atlas.nii", labels)
    out = tmp_path / "out.nii"
    assert main([str(src), str(out), "--spacing", "0.25", "0.2", "0.3", "--labels", "mode", "--chunks", "3", "4", "2",
                 "--grid", "origin", "--quiet"]) == 0
    grid = _grid(src, (0.25, 0.2, 0.3), "origin")
    np.testing.assert_array_equal(np.asanyarray(nib.load(out).dataobj), mode_reference(labels, grid, 0))


def test_bare_labels_is_nearest_neighbour_before_or_after_the_paths(tmp_path, capsys):
    """``--labels`` alone keeps its meaning (order 0), even written before INPUT OUTPUT."""
    labels = _atlas()
    src = _write(tmp_path / "atlas.nii", labels)
    for i, argv in enumerate(([str(src), "OUT", "--labels"], ["--labels", str(src), "OUT"],
                              [str(src), "OUT", "--labels", "nearest"])):
        out = tmp_path / f"out{i}.nii"
        argv = [str(out) if a == "OUT" else a for a in argv]
        assert main(argv + ["--spacing", "0.07", "0.13", "0.2"]) == 0
        assert "Labels: a label map is resampled by nearest neighbour" in capsys.readouterr().out
        grid = _grid(src, (0.07, 0.13, 0.2))
        np.testing.assert_array_equal(np.asanyarray(nib.load(out).dataobj), scipy_reference(labels, grid, 0, "nearest"))


def test_api_and_report_spell_each_method(tmp_path, capsys):
    labels = _atlas()
    src = _write(tmp_path / "atlas.nii", labels)
    r = resample(src, tmp_path / "a.nii", spacing=(0.05, 0.05, 0.1), labels="cubic", order=3)
    assert r.order == 3
    grid = _grid(src, (0.05, 0.05, 0.1))
    expected, gap = interpolated_reference(labels, grid, 3, "nearest", 0)
    differ = np.asanyarray(nib.load(tmp_path / "a.nii").dataobj) != expected
    assert not differ.any() or gap[differ].max() <= GAP
    assert resample(src, tmp_path / "b.nii", spacing=(0.2, 0.2, 0.2), labels=True).order == 0
    assert main([str(src), str(tmp_path / "c.nii"), "--spacing", "0.2", "0.2", "0.2", "--labels", "mode",
                 "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "Interpolation method: none (--labels mode)\nLabels: the most frequent label among the input voxels" in out
    assert "Boundary mode: not used by --labels mode (an empty footprint gets cval=0)" in out
    with pytest.raises(UsageError, match="--labels method must be one of nearest, linear, cubic, mode; got 'bilinear'"):
        resample(src, tmp_path / "d.nii", spacing=(0.2, 0.2, 0.2), labels="bilinear")


def test_lazy_api_accepts_the_methods():
    labels = _atlas()
    grid = make_grid(labels.shape, (1, 1, 1), (0.6, 1.7, 2.0), "center")
    got = resample_array(labels, (1, 1, 1), (0.6, 1.7, 2.0), labels="linear", chunks=(5, 4, 3)).compute()
    expected, gap = interpolated_reference(labels, grid, 1, "nearest", 0)
    differ = got != expected
    assert not differ.any() or gap[differ].max() <= GAP
    grid = make_grid(labels.shape, (1, 1, 1), (2, 2.5, 3), "center")
    got = resample_array(labels, (1, 1, 1), (2, 2.5, 3), labels="mode", chunks=(3, 2, 2)).compute()
    np.testing.assert_array_equal(got, mode_reference(labels, grid, 0))


@pytest.mark.parametrize("case, argv, message", [
    ("float", ["--labels", "linear"], "--labels linear needs an integer label image; this one is float32"),
    ("scaled", ["--labels", "cubic"], "--labels cubic needs unscaled labels; this image has scl_slope 2 and "
                                      "scl_inter 0"),
    ("labels", ["--labels", "mode", "--spacing", "0.2", "0.05", "0.2"],
     "--labels mode is for downsampling: the y-axis output spacing is 0.5 input voxels, below 1"),
    ("labels", ["--labels", "linear", "--mode", "constant", "--cval", "0.5"],
     "--labels linear: --cval is the label outside the volume and must be a whole number in uint8's range "
     "(and within +-2**53); got 0.5"),
    ("labels", ["--labels", "mode", "--cval", "-1"],
     "--labels mode: --cval is the label outside the volume and must be a whole number in uint8's range "
     "(and within +-2**53); got -1"),
    ("labels", ["--labels", "linear", "--antialias"], "--labels cannot be combined with --antialias"),
    ("rotated", ["--labels", "mode"], "--labels mode needs a grid aligned with the input's axes; this reference (or "
                                      "registration) is rotated"),
])
def test_refusals_are_one_line_and_leave_nothing(tmp_path, capsys, case, argv, message):
    data = _atlas(dtype=np.uint8)
    src = _write(tmp_path / "in.nii", data.astype(np.float32) if case == "float" else data,
                 slope=2.0 if case == "scaled" else None)
    target = ["--spacing", "0.2", "0.2", "0.2"]
    if case == "rotated":
        a_ref = np.array([[0.2, -0.1, 0, 0], [0.1, 0.2, 0, 0], [0, 0, 0.2, 0], [0, 0, 0, 1]])
        target = ["--reference", str(_write(tmp_path / "ref.nii", np.zeros((5, 5, 5), np.uint8), a_ref))]
    elif "--spacing" in argv:
        target = []
    before = set(os.listdir(tmp_path))
    assert main([str(src), str(tmp_path / "out.nii"), *target, *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"bigresample: error: {message}") and err.count("\n") == 1, err
    assert set(os.listdir(tmp_path)) == before


# --------------------------------------------------------------------------
# where a label can win (splines.winning_reach) and the halo its indicator needs
# (InterpolatedLabels.label_halo): docs/grids-and-exactness.md, "Label maps"
# --------------------------------------------------------------------------


def _interior_atlas(shape=(84, 80, 76), seed=3, margin=27):
    """Blobs of a few labels (Voronoi cells of random seeds, some touching) on a background of 0,
    all at least ``margin`` voxels from every edge: windows cut inside the volume on every side."""
    rng = np.random.default_rng(seed)
    inner = tuple(s - 2 * margin for s in shape)
    seeds = rng.uniform(0, 1, (14, 3)) * np.array(inner)
    grid = np.stack(np.meshgrid(*[np.arange(n) for n in inner], indexing="ij"), axis=-1)
    d = np.linalg.norm(grid[..., None, :] - seeds, axis=-1)
    cell = np.argmin(d, axis=-1)
    ids = np.array([0, 3, 41, 7, 1002, 5, 600, 9, 12, 77, 0, 250, 31, 18], np.uint16)[cell]
    ids[d.min(axis=-1) > 7] = 0
    labels = np.zeros(shape, np.uint16)
    labels[tuple(slice(margin, margin + n) for n in inner)] = ids
    return labels


def _interpolated(order, grid, mode="nearest", cval=0):
    """``--labels cubic``'s machinery at any spline order (cubic is order 3)."""
    from bigresample.resampling import interpolating
    return label_methods.InterpolatedLabels(interpolating(grid, order, mode, 0.0), interpolating(grid, order, mode, 1.0),
                                            "cubic", float(cval))


@pytest.mark.slow
@pytest.mark.parametrize("order, kind, block", [
    (3, "spacing", (13, 11, 7)), (3, "rotated", (20, 17, 12)), (2, "spacing", (20, 24, 15)),
    (4, "rotated", (20, 17, 12)), (5, "spacing", (20, 24, 15))])
def test_interior_labels_with_the_derived_reach_and_halo_equal_the_reference(order, kind, block):
    """An atlas whose labels lie inside the volume, where the reach and the halo are cut down: the
    whole-array reference at every voxel (but near-ties), at orders 2 to 5, straight and rotated."""
    labels = _interior_atlas()
    if kind == "spacing":
        grid = make_grid(labels.shape, (1, 1, 1), (1.7, 1.3, 2.1), "center")
    else:
        a_ref = np.array([[1.2, -0.5, 0, 2], [0.5, 1.2, 0, -3], [0, 0, 1.6, 1], [0, 0, 0, 1]])
        grid = reference_grid(labels.shape, np.eye(4), (48, 46, 34), a_ref)
    got = blockwise(_interpolated(order, grid), labels, block, ws=Workspace())
    expected, gap = interpolated_reference(labels, grid, order, "nearest", 0)
    differ = got != expected
    assert not differ.any() or gap[differ].max() <= GAP, (int(differ.sum()), float(gap[differ].min()))
    assert len(np.unique(got)) >= 8  # the labels survive: the comparison is not of background only


def test_the_derived_reach_and_halo_shrink_the_work(monkeypatch):
    """Input voxels of the labels' indicators read (and prefiltered) for the interior atlas: under
    half of what the support plus the full halo around every label costs, for the same output."""
    labels = _interior_atlas()
    grid = make_grid(labels.shape, (1, 1, 1), (1.7, 1.3, 2.1), "center")
    read = []

    def counting(self, slices, out):
        read.append(out.size)
        np.equal(self.window[self._local(slices)[::-1]], self.label, out=out, casting="unsafe")

    monkeypatch.setattr(label_methods._Indicator, "read_into", counting)
    resampler = label_methods.make("cubic", grid, "nearest", 0)
    halos = []
    real_halo = label_methods.InterpolatedLabels.label_halo
    monkeypatch.setattr(label_methods.InterpolatedLabels, "label_halo",
                        lambda self, box, sub: halos.append(real_halo(self, box, sub)) or halos[-1])
    derived = blockwise(resampler, labels, (25, 31, 20), ws=Workspace())
    work = sum(read)
    assert any(h is not None and min(min(p) for p in h) < resampler.zero.halo for h in halos)
    read.clear()
    full = resampler.zero.halo
    monkeypatch.setattr(label_methods.InterpolatedLabels, "reach", lambda self, k: self.order + 1 + full)
    monkeypatch.setattr(label_methods.InterpolatedLabels, "label_halo", lambda self, box, sub: None)
    before = blockwise(resampler, labels, (25, 31, 20), ws=Workspace())
    np.testing.assert_array_equal(derived, before)
    assert 0 < work < sum(read) / 2, (work, sum(read))


@settings(max_examples=25, deadline=None)
@given(order=st.integers(2, 5), candidates=st.integers(1, 10**6), seed=st.integers(0, 2**32 - 1),
       side=st.sampled_from([-1, 1]))
def test_a_label_beyond_the_winning_reach_has_a_value_below_the_bound(order, candidates, seed, side):
    """splines.winning_reach: a label's indicator (random voxels in a box) interpolated by scipy at
    samples farther than the reach from its box along x has |value| <= 1/(4 * candidates); and one
    voxel less of reach would not have been proved enough (the reach is the least the bound allows)."""
    from bigresample import splines
    r = splines.winning_reach(order, 3, candidates)
    rng = np.random.default_rng(seed)
    n = 2 * r + 30
    ind = np.zeros((n, 9, 9))
    ind[n // 2 - 3:n // 2 + 3] = rng.integers(0, 2, (6, 9, 9))
    lo, hi = n // 2 - 3, n // 2 + 2
    x = np.linspace(lo - r - 0.999, hi - r - 8, 23) if side < 0 else np.linspace(hi + r + 0.001, hi + r + 8, 23)
    coords = np.stack(np.broadcast_arrays(x[:, None, None], rng.uniform(0, 8, (1, 5, 1)),
                                          rng.uniform(0, 8, (1, 1, 5))), axis=0).reshape(3, -1)
    far = np.abs(ndimage.map_coordinates(ind, coords, order=order, mode="mirror"))
    assert far.max() <= 1 / (4 * candidates)
    if r > 1 and r < order + 1 + splines.halo(order, 3):
        d = int(np.floor(r - 1 - (order + 1) / 2)) + 1
        assert d < 1 or splines._tails(order, 3)[d] > 1 / (4 * candidates)
