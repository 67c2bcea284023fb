"""The --qc picture draws both rows in one world frame: an asymmetric marker lands at the same
world position in the input's row and the output's, whatever flips, permutations or rotations lie
between the grids (the drawn extents and pixels are read from the figure itself)."""

import nibabel as nib
import numpy as np
import pytest

pytest.importorskip("matplotlib")

from bigresample import qc  # noqa: E402
from bigresample.cli import main  # noqa: E402

SHAPE = (40, 44, 36)
A_IN = np.array([[1.0, 0, 0, -20], [0, 1.0, 0, -25], [0, 0, 1.0, -15], [0, 0, 0, 1]])
CENTRE = np.array([0.0, -3.0, 2.0])  # world mm, near the field of view's centre (the planes go through it)


def _marker_input(path):
    """Background 100 inside the volume and a box of 1000 off the centre by a different amount along
    each axis (+4, +6, +3 mm), wide enough that every plane through the centre cuts it whole: a flip
    moves its cross-section to the other side, a permutation swaps its sides."""
    data = np.full(SHAPE, 100.0, dtype=np.float32)
    c = np.rint(np.linalg.solve(A_IN, np.append(CENTRE, 1))[:3]).astype(int)
    data[c[0] - 2: c[0] + 11, c[1] - 3: c[1] + 16, c[2] - 3: c[2] + 10] = 1000
    nib.save(nib.Nifti1Image(data, A_IN), path)


def _rot(axis, degrees):
    t = np.radians(degrees)
    i, j = [k for k in range(3) if k != axis]
    r = np.eye(3)
    r[i, i], r[i, j], r[j, i], r[j, j] = np.cos(t), -np.sin(t), np.sin(t), np.cos(t)
    return r


def _reference(path, directions, spacing, shape):
    """A grid whose voxel axes run along ``directions`` (columns), centred on CENTRE."""
    a = np.eye(4)
    a[:3, :3] = directions @ np.diag(spacing)
    a[:3, 3] = CENTRE - a[:3, :3] @ ((np.array(shape) - 1) // 2)
    nib.save(nib.Nifti1Image(np.zeros(shape, np.uint8), a), path)


REFERENCES = {
    "x-flipped": (np.diag([-1.0, 1, 1]), (1.5, 1.5, 1.5), (30, 32, 26)),
    "permuted-yxz": (np.eye(3)[:, [1, 0, 2]], (1.2, 1.0, 1.3), (36, 34, 28)),
    "flipped-and-permuted": (np.diag([1.0, -1, -1]) @ np.eye(3)[:, [2, 0, 1]], (1.0, 1.4, 1.1), (30, 30, 34)),
    "rotated": (_rot(2, 20) @ _rot(0, 12), (1.3, 1.3, 1.3), (30, 32, 28)),
    "flipped-and-rotated": (np.diag([-1.0, 1, 1]) @ _rot(0, 9), (1.6, 1.6, 1.6), (28, 30, 24)),
}


def _marker_drawn(fig):
    """Per panel ([row][column]): the world (a, b) centroid and bounding box (a0, a1, b0, b1) of the
    marker's pixels, from the drawn image and its extent."""
    out = [[None] * 3 for _ in range(2)]
    for k, ax in enumerate(fig.axes[:6]):
        im = ax.get_images()[0]
        a0, a1, b0, b1 = im.get_extent()
        pix = np.ma.filled(im.get_array().astype(float), np.nan)
        nb, na = pix.shape
        jb, ja = np.nonzero(pix > 550)
        assert len(ja) > 4, f"no marker drawn in panel {k}"
        wa, wb = a0 + (ja + 0.5) * (a1 - a0) / na, b0 + (jb + 0.5) * (b1 - b0) / nb
        out[k // 3][k % 3] = (np.array([wa.mean(), wb.mean()]), np.array([wa.min(), wa.max(), wb.min(), wb.max()]))
    return out


def _marker_in_world(src):
    """What the input's voxels say, per view: the marker's centroid and the box of its voxel centres."""
    data = np.asanyarray(nib.load(src).dataobj)
    world = np.argwhere(data > 550) @ A_IN[:3, :3].T + A_IN[:3, 3]
    out = []
    for _, axis in qc.VIEWS:
        a, b = [i for i in range(3) if i != axis]
        out.append((world[:, [a, b]].mean(axis=0),
                    np.array([world[:, a].min(), world[:, a].max(), world[:, b].min(), world[:, b].max()])))
    return out


@pytest.mark.slow
@pytest.mark.parametrize("name", list(REFERENCES))
def test_the_marker_lands_at_the_same_world_position_in_both_rows(tmp_path, monkeypatch, name):
    src = tmp_path / "in.nii"
    _marker_input(src)
    _reference(tmp_path / "ref.nii", *REFERENCES[name])
    figures = []
    real_save = qc._save
    monkeypatch.setattr(qc, "_save", lambda fig, png: (figures.append(fig), real_save(fig, png))[1])
    png = tmp_path / "qc.png"
    assert main([str(src), str(tmp_path / "out.nii"), "--reference", str(tmp_path / "ref.nii"), "--order", "0",
                 "--qc", str(png), "--quiet"]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    fig = figures[0]
    # every panel's axes say the frame
    assert all("world RAS+" in ax.get_xlabel() and "world RAS+" in ax.get_ylabel() for ax in fig.axes[:6])
    drawn = _marker_drawn(fig)
    spacing = max(REFERENCES[name][1])
    for c, (centroid, box) in enumerate(_marker_in_world(src)):
        # the input row where the input's voxels put the marker (pixels of 1 mm, voxels of 1 mm)
        np.testing.assert_allclose(drawn[0][c][0], centroid, atol=0.6)
        np.testing.assert_allclose(drawn[0][c][1], box, atol=0.6)
        # and the output row at the same world position, within its own voxel size
        np.testing.assert_allclose(drawn[1][c][0], drawn[0][c][0], atol=spacing / 2 + 0.1)
        np.testing.assert_allclose(drawn[1][c][1], drawn[0][c][1], atol=spacing + 0.1)
    # each row is drawn over its own image's extent in world mm: the output's grid covers less
    for c in range(3):
        e_in, e_out = fig.axes[c].get_images()[0].get_extent(), fig.axes[3 + c].get_images()[0].get_extent()
        assert e_in != e_out


def test_a_plane_of_a_rotated_volume_is_read_in_small_boxes():
    """``gather`` reads boxes of at most ``limit`` voxels, and reads the right values."""
    data = np.arange(30 * 40 * 50, dtype=np.float64).reshape(30, 40, 50)
    reads = []

    class Source:
        def __getitem__(self, sl):
            reads.append(np.prod([s.stop - s.start for s in sl]))
            return data[sl]

    rng = np.random.default_rng(0)
    idx = np.stack([rng.integers(0, n, 500) for n in data.shape], axis=1)
    got = qc.gather(Source(), data.shape, idx, limit=1000)
    np.testing.assert_array_equal(got, data[idx[:, 0], idx[:, 1], idx[:, 2]])
    assert max(reads) <= 1000 or all(r == 1 for r in reads)


def _figure(tmp_path, monkeypatch, args):
    figures = []
    real_save = qc._save
    monkeypatch.setattr(qc, "_save", lambda fig, png: (figures.append(fig), real_save(fig, png))[1])
    assert main([*map(str, args), "--qc", str(tmp_path / "qc.png"), "--quiet"]) == 0
    return figures[0]


def test_both_rows_share_their_world_limits_the_union_of_both_extents(tmp_path, monkeypatch):
    src = tmp_path / "in.nii"
    _marker_input(src)
    _reference(tmp_path / "ref.nii", *REFERENCES["flipped-and-rotated"])
    fig = _figure(tmp_path, monkeypatch, [src, tmp_path / "out.nii", "--reference", tmp_path / "ref.nii"])
    for c in range(3):
        top, bottom = fig.axes[c], fig.axes[3 + c]
        extents = np.array([top.get_images()[0].get_extent(), bottom.get_images()[0].get_extent()])
        union = (extents[:, 0].min(), extents[:, 1].max(), extents[:, 2].min(), extents[:, 3].max())
        assert not np.allclose(extents[0], extents[1])  # the two images cover different worlds...
        for ax in (top, bottom):  # ... drawn in one frame
            np.testing.assert_allclose(ax.get_xlim() + ax.get_ylim(), union)


def test_subtitles_give_the_spacing_in_the_images_own_units_and_a_4d_picture_its_volume(tmp_path, monkeypatch):
    data = np.random.default_rng(0).random((20, 22, 18, 3)).astype(np.float32)
    img = nib.Nifti1Image(data, np.diag([1.0, 1.0, 1.0, 1.0]))
    img.header.set_xyzt_units("mm", "sec")
    nib.save(img, tmp_path / "in.nii")
    fig = _figure(tmp_path, monkeypatch, [tmp_path / "in.nii", tmp_path / "out.nii", "--spacing", "2", "1", "1.5"])
    titles = [ax.get_title().splitlines()[1] for ax in fig.axes[:6]]
    assert titles[:3] == ["20x22x18 voxels of 1 x 1 x 1 mm, volume 1 of 3"] * 3
    assert titles[3:] == ["10x22x12 voxels of 2 x 1 x 1.5 mm, volume 1 of 3"] * 3
    # microns stay microns
    img.header.set_xyzt_units("micron", "sec")
    nib.save(nib.Nifti1Image(data[..., 0], np.diag([1.0, 1.0, 1.0, 1.0]), img.header), tmp_path / "um.nii")
    fig = _figure(tmp_path, monkeypatch, [tmp_path / "um.nii", tmp_path / "out_um.nii", "--spacing", "0.002",
                                          "0.001", "0.0015"])
    assert fig.axes[3].get_title().splitlines()[1] == "10x22x12 voxels of 2 x 1 x 1.5 um"
