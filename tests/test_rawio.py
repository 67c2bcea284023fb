"""rawio.RawReader on its own: positional reads into buffers, and windows mapped without a copy."""

import numpy as np
import pytest

from bigresample.rawio import RawReader


def _raw(tmp_path, shape, dtype, offset=352):
    """An x-fastest file of ``shape`` (spatial-first) after ``offset`` bytes; the array in file order."""
    data = (np.arange(np.prod(shape)) % 251).astype(dtype).reshape(shape[::-1])
    path = tmp_path / "in.raw"
    path.write_bytes(b"\x07" * offset + data.tobytes())
    return RawReader(path, offset, shape, dtype), data


@pytest.mark.parametrize("dtype", [np.float32, np.int16, np.uint8, np.float64])
def test_a_window_of_whole_planes_is_a_read_only_view_of_the_file_equal_to_a_read(tmp_path, dtype):
    reader, data = _raw(tmp_path, (37, 11, 9), dtype, offset=4099)  # not a multiple of any page size
    for z in [(0, 9), (3, 7), (8, 9)]:
        region = (slice(0, 37), slice(0, 11), slice(*z))
        view = reader.mapped(region)
        read = np.empty((z[1] - z[0], 11, 37), dtype)
        reader.read_into(region, read)
        assert view.dtype == np.dtype(dtype) and view.flags.c_contiguous and not view.flags.writeable
        np.testing.assert_array_equal(view, read)
        np.testing.assert_array_equal(view, data[z[0]:z[1]])
    # whole rows of consecutive planes' parts are one stretch too: x whole, y part, one plane
    np.testing.assert_array_equal(reader.mapped((slice(0, 37), slice(2, 5), slice(4, 5))), data[4:5, 2:5])


def test_a_window_that_is_not_one_stretch_or_not_native_or_past_the_end_is_read_instead(tmp_path):
    reader, _ = _raw(tmp_path, (37, 11, 9), np.float32)
    assert reader.mapped((slice(0, 36), slice(0, 11), slice(0, 9))) is None  # rows cut short
    assert reader.mapped((slice(0, 37), slice(0, 5), slice(0, 2))) is None  # planes cut short
    swapped, _ = _raw(tmp_path, (37, 11, 9), np.dtype(np.float32).newbyteorder())
    assert swapped.mapped((slice(0, 37), slice(0, 11), slice(0, 9))) is None
    short = RawReader(reader.path, reader.offset, (37, 11, 10), np.float32)  # the file ends a plane early
    assert short.mapped((slice(0, 37), slice(0, 11), slice(0, 10))) is None
    assert short.mapped((slice(0, 37), slice(0, 11), slice(0, 9))) is not None
    with pytest.raises(OSError, match="truncated"):
        short.read_into((slice(0, 37), slice(0, 11), slice(0, 10)), np.empty((10, 11, 37), np.float32))


def test_the_general_path_reads_a_window_of_whole_planes_through_the_map(tmp_path):
    """AffineResampler takes a window that is one stretch of the file as the mapped view
    (no window buffer in its workspace), with the values a copied window gives."""
    from bigresample.engine import Workspace
    from bigresample.geometry import ReferenceGrid
    from bigresample.transform import AffineResampler

    reader, _ = _raw(tmp_path, (40, 30, 20), np.float32)
    t = np.radians(12.0)
    matrix = np.array([[np.cos(t), -np.sin(t), 0], [np.sin(t), np.cos(t), 0], [0, 0, 1.0]])
    g = ReferenceGrid((40, 30, 20), (40, 30, 20), matrix, np.array([3.0, -2.0, 0.5]), np.eye(4))

    class Copied:  # the same file, read into a buffer
        shape, dtype, read_into = reader.shape, reader.dtype, reader.read_into

    region = (slice(0, 40), slice(0, 30), slice(4, 9))
    for order in (0, 1, 3):
        ws = Workspace()
        mapped = AffineResampler(g, order).compute_into(reader, region, np.float32, ws).copy()
        assert "win" not in ws._bufs
        copied = AffineResampler(g, order).compute_into(Copied(), region, np.float32, Workspace())
        np.testing.assert_array_equal(mapped, copied)


@pytest.mark.parametrize("dtype", [np.float32, np.dtype(">i2"), np.uint8])
def test_rows_cut_short_are_read_a_stretch_of_whole_rows_at_a_time_equal_to_a_row_by_row_read(
        tmp_path, dtype, monkeypatch):
    """Issue 34: a window that cuts every input row (a P-I-L reference's) was one preadv a row,
    ~10 us of Python each (153,600 a block of the 512x512x300 job).  Rows at most ROW_GAP bytes
    apart are read together, in stretches of at most ROW_STRETCH bytes, then copied out."""
    import os

    from bigresample import rawio
    reader, data = _raw(tmp_path, (37, 11, 9, 2), dtype, offset=4099)
    calls = []
    real = os.preadv
    monkeypatch.setattr(rawio.os, "preadv", lambda *a: calls.append(a) or real(*a))
    monkeypatch.setattr(rawio, "ROW_STRETCH", 37 * np.dtype(dtype).itemsize * 4)  # 4 rows a stretch
    for x, y, z, t in [((3, 9), (0, 11), (0, 9), (0, 2)), ((0, 36), (2, 7), (4, 5), (1, 2)),
                       ((36, 37), (10, 11), (8, 9), (0, 1)), ((5, 6), (1, 10), (2, 8), (0, 2))]:
        calls.clear()
        region = (slice(*x), slice(*y), slice(*z), slice(*t))
        out = np.full((t[1] - t[0], z[1] - z[0], y[1] - y[0], x[1] - x[0]), 99, dtype)
        reader.read_into(region, out)
        np.testing.assert_array_equal(out, data[t[0]:t[1], z[0]:z[1], y[0]:y[1], x[0]:x[1]])
        planes = (t[1] - t[0]) * (z[1] - z[0])
        assert len(calls) == planes * -(-(y[1] - y[0]) // 4)  # a read per 4 rows of each plane, not one a row
    monkeypatch.setattr(rawio, "ROW_GAP", 0)  # rows further apart: a read each, as before
    calls.clear()
    out = np.empty((2, 9, 11, 6), dtype)
    reader.read_into((slice(3, 9), slice(0, 11), slice(0, 9), slice(0, 2)), out)
    np.testing.assert_array_equal(out, data[:, :, :, 3:9])
    assert len(calls) == 2 * 9 * 11
