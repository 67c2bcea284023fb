"""TIFF inputs (bigresample/tiff.py): files the tests write with tifffile, each resampled equal to scipy on the
whole array; their spacing and axes as the metadata give them; bad files refused in one line."""

from __future__ import annotations

import pickle

import nibabel as nib
import numpy as np
import pytest
import tifffile

from bigresample import make_grid, resample
from bigresample.cli import main
from bigresample.inputs import open_input

from .helpers import assert_matches_reference, scipy_reference

RNG = np.random.default_rng(7)


def _stack(shape, dtype=np.float32):
    """A (.., z, y, x) array of varied values."""
    if np.dtype(dtype).kind == "f":
        return (RNG.random(shape) * 100).astype(dtype)
    return RNG.integers(0, 4000, shape).astype(dtype)


def _check(out, data_xyz, spacing, target, order, dtype=None):
    """``out`` (a NIfTI) equals scipy on the whole spatial-first ``data_xyz`` on the center grid."""
    got = np.asanyarray(nib.load(out).dataobj)
    g = make_grid(data_xyz.shape[:3], spacing, target, "center")
    assert_matches_reference(got, scipy_reference(data_xyz, g, order, "nearest", dtype=dtype), data_xyz, order)


@pytest.mark.parametrize("order", [1, 3])
def test_an_ome_tiff_with_channels_resamples_as_scipy_with_its_physical_sizes(tmp_path, order):
    czyx = _stack((2, 9, 20, 16))
    src = tmp_path / "in.ome.tif"
    tifffile.imwrite(src, czyx, ome=True, metadata={"axes": "CZYX", "PhysicalSizeX": 0.5, "PhysicalSizeY": 0.25,
                                                    "PhysicalSizeZ": 2.0, "PhysicalSizeZUnit": "µm"})
    out = tmp_path / "out.nii"
    resample(src, out, spacing=(0.7, 0.3, 1.5), units="um", order=order, chunks=(5, 7, 3))
    _check(out, czyx.transpose(3, 2, 1, 0), (0.5, 0.25, 2.0), (0.7, 0.3, 1.5), order)
    hdr = nib.load(out).header
    assert hdr.get_xyzt_units()[0] == "micron" and np.allclose(hdr.get_zooms()[:3], (0.7, 0.3, 1.5), rtol=1e-6)


def test_an_imagej_hyperstack_takes_its_spacing_from_the_resolution_tags(tmp_path):
    zcyx = _stack((7, 2, 18, 14), np.uint16)
    src = tmp_path / "in.tif"
    tifffile.imwrite(src, zcyx, imagej=True, resolution=(1 / 0.4, 1 / 0.3),
                     metadata={"axes": "ZCYX", "spacing": 1.2, "unit": "um"})
    vol = open_input(src, read_data=False)
    assert vol.format == "ImageJ TIFF" and vol.units == "micron" and np.allclose(vol.spacing, (0.4, 0.3, 1.2))
    assert "stored (z=7, c=2, y=18, x=14), read as x, y, z, c" in vol.notes[0]
    out = tmp_path / "out.nii"
    resample(src, out, spacing=(0.5, 0.5, 0.9), units="um", order=1, chunks=(4, 5, 3))
    _check(out, zcyx.transpose(3, 2, 0, 1), (0.4, 0.3, 1.2), (0.5, 0.5, 0.9), 1)


@pytest.mark.parametrize("layout", [dict(tile=(16, 16), compression="zlib", bigtiff=True),
                                    dict(rowsperstrip=3, compression="zlib"), dict(rowsperstrip=5),
                                    dict(byteorder=">")])
def test_bigtiff_tiled_striped_and_deflated_pages_read_region_by_region(tmp_path, layout):
    zyx = _stack((11, 37, 29), np.int16)
    src = tmp_path / "in.tif"
    tifffile.imwrite(src, zyx, photometric="minisblack", **layout)
    out = tmp_path / "out.nii"
    resample(src, out, spacing=(0.3, 0.45, 0.8), input_spacing=(0.25, 0.4, 1.0), order=3, chunks=(9, 8, 4),
             dtype=np.float32)
    _check(out, zyx.T, (0.25, 0.4, 1.0), (0.3, 0.45, 0.8), 3, dtype=np.float32)


def _packbits(raw: bytes) -> bytes:
    """PackBits with literal runs only (valid, if not small)."""
    out = bytearray()
    for i in range(0, len(raw), 128):
        out.append(len(raw[i:i + 128]) - 1)
        out += raw[i:i + 128]
    return bytes(out)


def _write_encoded(path, data, compression, monkeypatch, encoded=None):
    """``data`` (z, y, x) written one row per strip, each strip already encoded (tifffile only looks the
    encoder up: it needs imagecodecs for PackBits and LZW, which are not needed to write given bytes)."""
    tag = {"packbits": 32773, "lzw": 5}[compression]
    monkeypatch.setitem(tifffile.TIFF.COMPRESSORS._codecs, tag, lambda *a, **k: b"")
    strips = encoded or [_packbits(data[z, y].tobytes()) for z in range(data.shape[0]) for y in range(data.shape[1])]
    tifffile.imwrite(path, iter(strips), shape=data.shape, dtype=data.dtype, compression=compression,
                     rowsperstrip=1, photometric="minisblack")


def test_packbits_pages_decode_without_imagecodecs(tmp_path, monkeypatch):
    zyx = _stack((6, 13, 21), np.uint8)
    src = tmp_path / "in.tif"
    _write_encoded(src, zyx, "packbits", monkeypatch)
    out = tmp_path / "out.nii"
    resample(src, out, spacing=(0.7, 0.7, 0.7), input_spacing=(0.5, 0.5, 1.0), order=0, chunks=(5, 4, 3))
    _check(out, zyx.T, (0.5, 0.5, 1.0), (0.7, 0.7, 0.7), 0)


def test_lzw_pages_without_imagecodecs_are_refused_in_one_line_naming_it(tmp_path, monkeypatch, capsys):
    try:
        import imagecodecs  # noqa: F401
        pytest.skip("imagecodecs is installed: LZW decodes")
    except ImportError:
        pass
    src = tmp_path / "in.tif"
    _write_encoded(src, np.zeros((2, 3, 4), np.uint8), "lzw", monkeypatch, encoded=[b"\x80\x00"] * 6)
    assert main([str(src), str(tmp_path / "o.nii"), "--spacing", "1", "1", "1", "--input-spacing", "1", "1", "1",
                 "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "LZW-compressed" in err and "imagecodecs" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.tif"]


def _slices(folder, zyx, names=None, **kw):
    folder.mkdir()
    for k, plane in enumerate(zyx):
        tifffile.imwrite(folder / (names[k] if names else f"slice_{k}.tif"), plane, **kw)


def test_a_folder_of_slices_is_one_volume_in_natural_order_and_a_glob_too(tmp_path):
    zyx = _stack((12, 15, 17))
    _slices(tmp_path / "stack", zyx)  # slice_0 ... slice_11: "slice_10" sorts after "slice_9"
    out = tmp_path / "out.nii"
    assert main([str(tmp_path / "stack"), str(out), "--spacing", "0.3", "0.3", "0.3", "--input-spacing", "0.2", "0.25",
                 "0.4", "--order", "3", "--chunks", "6", "5", "4", "--quiet"]) == 0
    _check(out, zyx.T, (0.2, 0.25, 0.4), (0.3, 0.3, 0.3), 3)
    resample(str(tmp_path / "stack" / "slice_*.tif"), tmp_path / "glob.nii", spacing=(0.3, 0.3, 0.3),
             input_spacing=(0.2, 0.25, 0.4), order=3, chunks=(6, 5, 4))
    assert np.array_equal(nib.load(tmp_path / "glob.nii").dataobj, nib.load(out).dataobj)
    _slices(tmp_path / "deflated", zyx, compression="zlib", tile=(16, 16), byteorder=">")  # decoded page by page
    resample(tmp_path / "deflated", tmp_path / "deflated.nii", spacing=(0.3, 0.3, 0.3), input_spacing=(0.2, 0.25, 0.4),
             order=3, chunks=(6, 5, 4))
    assert np.array_equal(nib.load(tmp_path / "deflated.nii").dataobj, nib.load(out).dataobj)
    assert not list(tmp_path.glob(".*"))


def test_the_readers_are_picklable_for_a_cluster_and_read_the_same_regions(tmp_path):
    zyx = _stack((5, 9, 8))
    tifffile.imwrite(tmp_path / "in.tif", zyx, tile=(16, 16))  # tiled: through tifffile's zarr view
    tifffile.imwrite(tmp_path / "raw.tif", zyx, photometric="minisblack")  # one contiguous block: a memory map
    _slices(tmp_path / "stack", zyx)
    for path in (tmp_path / "in.tif", tmp_path / "raw.tif", tmp_path / "stack"):
        vol = open_input(path)
        copy = pickle.loads(pickle.dumps(vol.source))
        assert np.array_equal(copy[1:7, 2:9, 1:4], zyx.T[1:7, 2:9, 1:4])
        vol.close()


def test_no_spacing_anywhere_is_refused_naming_the_option_and_info_says_so(tmp_path, capsys):
    tifffile.imwrite(tmp_path / "in.tif", _stack((4, 6, 5)), photometric="minisblack")
    assert main([str(tmp_path / "in.tif"), str(tmp_path / "o.nii"), "--spacing", "1", "1", "1", "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--input-spacing X Y Z" in err and "gives no voxel spacing" in err
    assert main(["info", str(tmp_path / "in.tif")]) == 0
    assert "Spacing: none in the file" in capsys.readouterr().out


def test_the_report_info_and_provenance_say_where_the_spacing_came_from(tmp_path, capsys):
    src = tmp_path / "in.ome.tif"
    tifffile.imwrite(src, _stack((5, 8, 6)), ome=True, metadata={"axes": "ZYX", "PhysicalSizeX": 0.5,
                                                                 "PhysicalSizeY": 0.5, "PhysicalSizeZ": 1.0})
    assert main(["info", str(src)]) == 0
    assert "(from OME-XML PhysicalSizeX/Y/Z)" in capsys.readouterr().out
    out = tmp_path / "out.zarr"
    assert main([str(src), str(out), "--spacing", "0.002", "0.002", "0.002", "--input-spacing", "0.001", "0.001",
                 "0.002", "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert "Loading OME-TIFF: " in text and "Spacing from --input-spacing" in text
    import zarr
    step = zarr.open_group(str(out), mode="r").attrs["bigresample"]["provenance"]["steps"][-1]
    assert step["input"]["format"] == "OME-TIFF" and step["input"]["spacing_from"] == "--input-spacing"
    assert step["input"]["spacing"] == [0.001, 0.001, 0.002] and step["input"]["units"] == "mm"


def test_a_dry_run_reads_no_pixel(tmp_path, monkeypatch):
    from bigresample import tiff
    tifffile.imwrite(tmp_path / "in.tif", _stack((4, 6, 5)), photometric="minisblack")

    def refuse(*a):
        raise AssertionError("a pixel was read")
    monkeypatch.setattr(tiff.TiffArray, "__getitem__", refuse)
    assert main([str(tmp_path / "in.tif"), str(tmp_path / "o.nii"), "--spacing", "1", "1", "1", "--input-spacing",
                 "2", "2", "2", "--dry-run", "--quiet"]) == 0


def _refused(capsys, tmp_path, src, *words):
    assert main([str(src), str(tmp_path / "o.nii"), "--spacing", "1", "1", "1", "--input-spacing", "1", "1", "1",
                 "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("bigresample: error:"), err
    for w in words:
        assert w in err, err
    assert not (tmp_path / "o.nii").exists() and not list(tmp_path.glob(".o.nii*"))


def test_a_truncated_tiff_is_refused_in_one_line(tmp_path, capsys):
    src = tmp_path / "in.tif"
    tifffile.imwrite(src, _stack((6, 20, 20)))
    raw = src.read_bytes()
    src.write_bytes(raw[: len(raw) * 2 // 3])
    _refused(capsys, tmp_path, src, "truncated")


def test_a_slice_folder_with_mismatched_shapes_or_types_or_a_missing_slice_is_refused(tmp_path, capsys):
    zyx = _stack((4, 6, 5))
    _slices(tmp_path / "shapes", [zyx[0], zyx[1], zyx[2, :5], zyx[3]])
    _refused(capsys, tmp_path, tmp_path / "shapes", "slice_2.tif", "one shape and type", "(5, 5)")
    _slices(tmp_path / "types", [zyx[0], zyx[1].astype(np.float64), zyx[2]])
    _refused(capsys, tmp_path, tmp_path / "types", "slice_1.tif", "float64")
    _slices(tmp_path / "gap", zyx, names=["s001.tif", "s002.tif", "s004.tif", "s005.tif"])
    _refused(capsys, tmp_path, tmp_path / "gap", "slice number 3 is missing")


def test_a_time_series_with_channels_keeps_t_and_c_as_a_5d_nifti_does(tmp_path):
    """ImageJ's TZCYX becomes x, y, z, t, c (NIfTI's dimensions 4 and 5); an OME-Zarr output names them t, c."""
    tzcyx = _stack((2, 5, 3, 12, 10))
    src = tmp_path / "in.tif"
    tifffile.imwrite(src, tzcyx, imagej=True, resolution=(2.0, 2.0),
                     metadata={"axes": "TZCYX", "spacing": 1.0, "unit": "um", "finterval": 0.5})
    vol = open_input(src, read_data=False)
    assert vol.shape == (10, 12, 5, 2, 3) and [a["name"] for a in vol.extra_axes] == ["t", "c"]
    out = tmp_path / "out.zarr"
    resample(src, out, spacing=(0.7, 0.7, 0.7), units="um", order=1, chunks=(4, 5, 2))
    import zarr
    group = zarr.open_group(str(out), mode="r")
    axes = group.attrs["ome"]["multiscales"][0]["axes"]
    assert [a["name"] for a in axes] == ["t", "c", "z", "y", "x"] and axes[0]["unit"] == "second"
    assert group.attrs["ome"]["multiscales"][0]["datasets"][0]["coordinateTransformations"][0]["scale"][0] == 0.5
    got = np.asarray(group["0"][...]).transpose(4, 3, 2, 0, 1)  # t c z y x -> x y z t c
    data = tzcyx.transpose(4, 3, 1, 0, 2)
    g = make_grid(data.shape[:3], (0.5, 0.5, 1.0), (0.7, 0.7, 0.7), "center")
    assert_matches_reference(got, scipy_reference(data, g, 1, "nearest"), data, 1)
