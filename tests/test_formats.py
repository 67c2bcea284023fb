"""Every image in nibabel's own test data that nibabel loads as a spatial
image is resampled, and equals the whole-array scipy call on the same grid:
NIfTI-1/2 (single and pair), Analyze, MGH, AFNI, and the formats read through
their own slicing (MINC1, MINC2, PAR/REC), plus ECAT through nibabel's ECAT
reader."""

import os
import subprocess
import sys
import warnings
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from bigresample import resample
from bigresample.errors import BigresampleError
from bigresample.geometry import make_grid
from bigresample.job import same_as_stored
from bigresample.inputs import open_input
from bigresample.nibabel_input import SlicedProxy

from .conftest import assert_matches_reference, scipy_reference

DATA = Path(os.path.dirname(nib.__file__)) / "tests" / "data"


def expected_refusal(name: str) -> str | None:
    """The words of the refusal expected for ``name``, or None: an Analyze or
    NIfTI pair's .hdr whose .img is not shipped with the installed nibabel."""
    if name.endswith(".hdr") and not (DATA / (name[:-4] + ".img")).exists():
        return f"its data file {name[:-4]}.img is missing"
    return None


def spatial_images():
    """(name, image) of each file nib.load opens as a spatial image of >= 3 dimensions."""
    out = []
    for path in sorted(DATA.iterdir()):
        if not path.is_file():
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                img = nib.load(path)
        except Exception:
            continue
        if isinstance(img, nib.spatialimages.SpatialImage) and len(img.shape) >= 3:
            out.append(path.name)
    return out


NAMES = spatial_images()


def check_one(path: Path, out: Path):
    """Resample ``path`` to 1.5 times its spacing; compare with scipy on the same data.

    Returns "ok: ..." or "refused: <the error line>"."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            vol = open_input(path, read_data=False)
        except BigresampleError as exc:
            return f"refused: {exc}"
        target = same_as_stored(vol.spacing * 1.5, vol.spacing)
        try:
            resample(path, out, spacing=list(target * vol.unit_to_mm), order=1, workers=1)
        except BigresampleError as exc:
            return f"refused: {exc}"
        grid = make_grid(vol.shape[:3], vol.spacing, target, "center")
        result_img = nib.load(out)
        if isinstance(vol.source, SlicedProxy):
            # scaled values, spatial axes first, resampled as float64 and written as a float
            data = vol.source[tuple(slice(None) for _ in vol.shape)]
            result = np.asarray(result_img.dataobj)
            how = "through its own slicing"
        else:
            data = np.asarray(vol.image.dataobj.get_unscaled())
            result = np.asarray(result_img.dataobj.get_unscaled())
            how = "raw values"
        expected = scipy_reference(data, grid, 1, "nearest", dtype=result.dtype)
        assert_matches_reference(result, expected, data, 1)
        assert np.all(np.isfinite(result_img.affine))
    return f"ok: {vol.shape} -> {result.shape}, {how}, {result.dtype}"


def test_the_walk_finds_the_formats():
    kinds = {type(nib.load(DATA / n)).__name__ for n in NAMES}
    assert {"Nifti1Image", "Nifti2Image", "Minc1Image", "PARRECImage", "MGHImage", "AFNIImage"} <= kinds
    assert "Minc2Image" in kinds or not _has_h5py()


def _has_h5py():
    try:
        import h5py  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.mark.parametrize("name", NAMES)
def test_every_nibabel_test_image(tmp_path, name):
    outcome = check_one(DATA / name, tmp_path / "out.nii")
    refusal = expected_refusal(name)
    if refusal:
        assert outcome.startswith("refused") and refusal in outcome, outcome
    else:
        assert outcome.startswith("ok"), outcome


def test_ecat_through_its_own_reader(tmp_path):
    outcome = check_one(DATA / "tinypet.v", tmp_path / "out.nii")
    assert outcome.startswith("ok"), outcome


def test_minc2_without_h5py_names_the_extra(tmp_path):
    """Without h5py a MINC2 file is refused in one line that says what to install."""
    code = ("import sys; sys.modules['h5py'] = None\n"  # import h5py now fails, as when it is not installed
            "from bigresample.cli import main\n"
            f"sys.exit(main([{str(DATA / 'minc2_4d.mnc')!r}, {str(tmp_path / 'o.nii')!r}, '--z-spacing', '3']))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1, proc.stderr
    assert "reading MINC2 files needs the h5py package: pip install 'bigresample[minc]'" in proc.stderr
    assert os.listdir(tmp_path) == []


class _ArrayOnly:
    """A data object with no slicing: only ``np.asarray`` reads it."""

    def __init__(self, data):
        self.data, self.shape, self.ndim = data, data.shape, data.ndim

    def __array__(self, dtype=None, copy=None):
        return self.data.astype(dtype) if dtype is not None else self.data


@pytest.mark.parametrize("budget, ok", [("512MB", True), ("1KB", False)])
def test_data_readable_only_whole_is_read_once_within_the_budget(tmp_path, monkeypatch, budget, ok):
    from bigresample import nibabel_input

    data = (np.arange(10 * 9 * 8) % 53).astype(np.float32).reshape(10, 9, 8)
    src = tmp_path / "in.mgz"
    nib.save(nib.MGHImage(data, np.diag([2.0, 2, 2, 1])), src)
    real = nibabel_input._load

    def load(path):
        img = real(path)
        return nib.MGHImage(_ArrayOnly(np.asarray(img.dataobj)), img.affine, img.header)

    monkeypatch.setattr(nibabel_input, "_load", load)
    lines = []
    kw = dict(spacing=[3.0, 3.0, 3.0], order=1, workers=1, memory_limit=budget, log=lines.append)
    if not ok:
        with pytest.raises(BigresampleError, match=r"can only be read whole \(5\.6 KiB as float64\), more than "
                                                   r"the memory budget"):
            resample(src, tmp_path / "out.nii", **kw)
        assert os.listdir(tmp_path) == ["in.mgz"]
        return
    resample(src, tmp_path / "out.nii", **kw)
    assert any(line.startswith("Note: Reading MGH whole, once (") for line in lines), lines
    vol = open_input(src, read_data=False)
    grid = make_grid(vol.shape[:3], vol.spacing, np.array([3.0, 3, 3]), "center")
    expected = scipy_reference(data.astype(np.float64), grid, 1, "nearest", dtype=np.float32)
    assert_matches_reference(np.asarray(nib.load(tmp_path / "out.nii").dataobj), expected, data, 1)


if __name__ == "__main__":  # the list for a closing note: python -m tests.test_formats
    import tempfile

    for name in NAMES + ["tinypet.v"]:
        with tempfile.TemporaryDirectory() as tmp:
            try:
                outcome = check_one(DATA / name, Path(tmp) / "out.nii")
            except AssertionError as exc:
                outcome = f"MISMATCH: {' '.join(str(exc).split())[:200]}"
        print(f"{name}: {type(nib.load(DATA / name)).__name__ if name != 'tinypet.v' else 'EcatImage'}: "
              f"{outcome}")
