"""Every output records how it was made (bigresample.provenance): read back by nibabel and zarr, chained
across runs and formats, unchanged by a resume, and without secrets."""

import datetime
import gzip
import hashlib
import json

import nibabel as nib
import numpy as np
import pytest

from bigresample import provenance, resample
from bigresample.cli import main
from bigresample.job import plan_job
from bigresample.report import Report
from bigresample.request import Request
from bigresample.runner import Interrupted

from .helpers import InterruptAfter, assert_matches_reference, make_volume, run_job_stages, scipy_reference


def _record(path):
    """The provenance document of a file, read with nibabel or zarr only."""
    if str(path).endswith(".zarr"):
        import zarr

        return zarr.open_group(str(path), mode="r").attrs["bigresample"]["provenance"]
    exts = [e for e in nib.load(path).header.extensions if e.get_code() == 6]
    assert len(exts) == 1  # NIfTI's "comment" extension
    return json.loads(exts[0].get_content())


def _head(path):
    """The first vox_offset bytes of a NIfTI as stored (decompressed), read independently."""
    raw = open(path, "rb").read()
    raw = gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw
    return raw[: int(np.frombuffer(raw[108:112], "<f4")[0])]


@pytest.mark.parametrize("kind", [".nii", ".nii.gz"])
def test_a_nifti_output_records_how_it_was_made(tmp_path, kind):
    src = tmp_path / "in.nii.gz"
    make_volume(src, shape=(24, 20, 14))
    out = tmp_path / f"out{kind}"
    before = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    argv = [str(src), str(out), "--spacing", "0.2", "0.13", "0.07", "--order", "3", "--mode", "constant",
            "--cval", "-1", "--antialias", "--quiet"]
    assert main(argv) == 0
    doc = _record(out)
    assert doc["bigresample_provenance"] == 1 and len(doc["steps"]) == 1
    step = doc["steps"][0]
    assert step["tool"] == "bigresample" and step["version"] == __import__("bigresample").__version__
    date = datetime.datetime.fromisoformat(step["date"].replace("Z", "+00:00"))
    assert before <= date <= datetime.datetime.now(datetime.timezone.utc)
    assert step["invocation"] == {"command": ["bigresample", *argv]}
    inp, out_rec, how = step["input"], step["output"], step["resampling"]
    assert inp["name"] == "in.nii.gz" and inp["bytes"] == src.stat().st_size
    assert inp["header_sha256"] == hashlib.sha256(_head(src)).hexdigest()
    src_img, out_img = nib.load(src), nib.load(out)
    assert inp["shape"] == list(src_img.shape)
    np.testing.assert_allclose(inp["affine"], src_img.affine)
    assert out_rec["name"] == out.name and out_rec["shape"] == list(out_img.shape)
    np.testing.assert_allclose(out_rec["affine"], out_img.affine, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(out_rec["spacing"], out_img.header.get_zooms()[:3], rtol=1e-6)
    assert out_rec["dtype"] == out_img.get_data_dtype().name
    assert how["grid"] == "center" and how["order"] == 3 and how["mode"] == "constant" and how["cval"] == -1.0
    assert how["labels"] is None and step["reference"] is None
    # --antialias: sigma (r - 1) / 2 input voxels on the downsampled axes (x: 0.1 -> 0.2, y: 0.1 -> 0.13)
    np.testing.assert_allclose(how["antialias_sigmas"], [0.5, 0.15, 0.0], atol=1e-6)
    # the extension moved the voxels: nibabel reads them where the header says, and they are scipy's
    assert int(out_img.dataobj.offset) == len(_head(out)) > 352
    if kind == ".nii":
        assert out.stat().st_size == len(_head(out)) + np.prod(out_img.shape) * 4


def test_an_api_call_is_recorded_with_its_arguments_and_a_reference_with_its_affine(tmp_path):
    src, ref = tmp_path / "in.nii", tmp_path / "ref.nii"
    make_volume(src, shape=(20, 18, 12))
    affine = np.array([[0, -0.15, 0, 2], [0.15, 0, 0, -1], [0, 0, 0.2, 0.5], [0, 0, 0, 1]], dtype=float)
    nib.save(nib.Nifti1Image(np.zeros((9, 11, 5), np.uint8), affine), ref)
    resample(src, tmp_path / "out.nii", reference=ref, order=0, storage_options=None, workers=1)
    step = _record(tmp_path / "out.nii")["steps"][-1]
    assert step["invocation"] == {"function": "bigresample.resample", "arguments": {
        "input": str(src), "output": str(tmp_path / "out.nii"), "reference": str(ref), "order": 0, "workers": 1}}
    assert step["reference"]["name"] == "ref.nii" and step["reference"]["shape"] == [9, 11, 5]
    np.testing.assert_allclose(step["reference"]["affine"], affine, atol=1e-6)
    assert step["resampling"]["grid"] == "reference"
    np.testing.assert_allclose(step["output"]["affine"], nib.load(tmp_path / "out.nii").affine, atol=1e-6)


def test_the_seed_call_is_recorded(tmp_path):
    src = tmp_path / "in.nii"
    make_volume(src, shape=(20, 18, 12))
    from bigresample import resample_nifti_spacing

    resample_nifti_spacing(src, tmp_path / "out.nii.gz", new_z_spacing=0.15, verbose=False, order=0)
    step = _record(tmp_path / "out.nii.gz")["steps"][-1]
    assert step["invocation"] == {"function": "bigresample.resample_nifti_spacing", "arguments": {
        "input_path": str(src), "output_path": str(tmp_path / "out.nii.gz"), "new_z_spacing": 0.15, "order": 0,
        "verbose": False}}
    assert step["resampling"]["labels"] is None and step["resampling"]["order"] == 0


def test_an_ome_zarr_output_records_it_in_its_attributes_and_stays_an_ome_image(tmp_path):
    src = tmp_path / "in.nii"
    make_volume(src, shape=(24, 20, 14))
    out = tmp_path / "out.zarr"
    assert main([str(src), str(out), "--z-spacing", "0.2", "--levels", "2", "--quiet"]) == 0
    doc = _record(out)
    step = doc["steps"][-1]
    assert step["output"]["format"] == ".zarr" and step["output"]["levels"] == [[24, 20, 7], [12, 10, 4]]
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Reader

    node = next(iter(Reader(parse_url(str(out)))()))
    assert tuple(node.data[0].shape) == (7, 20, 24)  # z, y, x: the image is readable as before


def test_provenance_chains_across_runs_and_formats(tmp_path):
    """in.nii (none) -> a.nii.gz (1 step) -> b.zarr (2 steps) -> c.nii (3 steps): each step's input is
    the previous output, its digest that file's header."""
    src = tmp_path / "in.nii"
    make_volume(src, shape=(24, 20, 14), dtype=np.uint16)
    files = [src, tmp_path / "a.nii.gz", tmp_path / "b.zarr", tmp_path / "c.nii"]
    for k, (a, b) in enumerate(zip(files, files[1:]), start=1):
        labels = ["--labels"] if k == 3 else []  # the last step on a label map (its default method)
        assert main([str(a), str(b), "--z-spacing", str(0.1 + 0.05 * k), "--quiet", *labels]) == 0
        steps = _record(b)["steps"]
        assert len(steps) == k
        assert [s["output"]["name"] for s in steps] == [f.name for f in files[1:k + 1]]
        assert [s["input"]["name"] for s in steps] == [f.name for f in files[:k]]
    steps = _record(files[3])["steps"]
    assert steps[1]["input"]["header_sha256"] == hashlib.sha256(_head(files[1])).hexdigest()
    assert steps[2]["input"]["format"] == "OME-Zarr image"
    assert steps[2]["resampling"]["labels"] == "nearest" and steps[1]["resampling"]["labels"] is None
    assert steps[0] == _record(files[1])["steps"][0]  # kept as it was


@pytest.mark.parametrize("kind", [".nii", ".nii.gz"])
def test_resuming_keeps_the_record_of_the_run_that_started_the_output(tmp_path, monkeypatch, kind):
    """Another date and another command line resume the same partial output; the file keeps the header it
    was started with (its voxels sit behind it) and equals scipy."""
    src = tmp_path / "in.nii"
    data, _ = make_volume(src, shape=(40, 30, 24))
    out = tmp_path / f"out{kind}"
    kw = dict(spacing=(0.1, 0.13, 0.07), order=3, chunks=(40, 30, 2))
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1000000000")
    job = plan_job(Request.make(src, out, **kw, invocation=provenance.command_line(["first", "run"])))
    job.volume.attach_data()
    with pytest.raises(Interrupted):
        run_job_stages(job, InterruptAfter(5))
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "2000000000")
    job = plan_job(Request.make(src, out, **kw, invocation=provenance.command_line(["a", "longer", "second", "run"])))
    job.volume.attach_data()
    assert run_job_stages(job, InterruptAfter(10**6))[0] >= 5  # resumed, not started over
    job.sink.finish(Report().bar)
    step = _record(out)["steps"][0]
    assert step["date"] == "2001-09-09T01:46:40Z" and step["invocation"]["command"] == ["bigresample", "first", "run"]
    assert_matches_reference(np.asanyarray(nib.load(out).dataobj), scipy_reference(data, job.grid, 3, "nearest"),
                             data, 3)


def test_one_date_per_job_and_the_same_command_gives_the_same_bytes(tmp_path, monkeypatch):
    src = tmp_path / "in.nii"
    make_volume(src, shape=(20, 18, 12))
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    outs = []
    for name in ("one", "two"):
        (tmp_path / name).mkdir()
        outs.append(tmp_path / name / "out.nii.gz")
        assert main([str(src), str(outs[-1]), "--z-spacing", "0.15", "--quiet"]) == 0
    assert _record(outs[0])["steps"][0]["date"] == "2023-11-14T22:13:20Z"
    # the command lines differ in the output's folder only
    a, b = (json.dumps(_record(o)).replace(str(o.parent), "") for o in outs)
    assert a == b


def test_storage_option_values_and_url_passwords_are_never_recorded():
    argv = ["s3://user:pw@bucket/in.zarr", "out.nii", "--storage-option", "secret=HUSH1", "--storage-opt=key=HUSH2",
            "--storage-option", "HUSH3", "--spacing", "1", "1", "1"]
    text = json.dumps(provenance.command_line(argv))
    assert "HUSH" not in text and "pw" not in text
    assert "secret=***" in text and "--storage-opt=key=***" in text and "s3://bucket/in.zarr" in text
    call = provenance.api_call(resample, {"input": "s3://u:pw@b/x.zarr", "output": "o.nii", "spacing": (1, None, 2),
                                          "storage_options": {"key": "HUSH4"}, "order": 1, "dtype": np.dtype("<f4")})
    assert call == {"function": "bigresample.resample", "arguments": {
        "input": "s3://b/x.zarr", "output": "o.nii", "spacing": [1, None, 2], "storage_options": {"key": "***"},
        "order": 1, "dtype": "float32"}}  # order's default is None (not given): 1 is kept


def test_another_tools_comment_is_kept_and_not_read_as_provenance(tmp_path):
    src = tmp_path / "in.nii"
    data, _ = make_volume(src, shape=(20, 18, 12))
    img = nib.load(src)
    img.header.extensions.append(nib.nifti1.Nifti1Extension("comment", b'{"steps": "not ours"}'))
    nib.save(nib.Nifti1Image(np.asanyarray(img.dataobj), img.affine, img.header), tmp_path / "c.nii")
    resample(tmp_path / "c.nii", tmp_path / "out.nii", spacing=(None, None, 0.15))
    exts = nib.load(tmp_path / "out.nii").header.extensions
    assert [e.get_content() for e in exts][0] == b'{"steps": "not ours"}'
    assert len(provenance.from_header(nib.load(tmp_path / "out.nii").header)["steps"]) == 1


def test_a_nifti2_output_carries_the_record_too(tmp_path):
    src = tmp_path / "long.nii"
    nib.save(nib.Nifti1Image(np.arange(3400 * 2 * 2, dtype=np.float32).reshape(3400, 2, 2),
                             np.diag([0.1, 0.1, 0.1, 1.0])), src)
    out = tmp_path / "out.nii"
    resample(src, out, spacing=(0.01, None, None), chunks=(4096, 2, 2))
    img = nib.load(out)
    assert isinstance(img.header, nib.Nifti2Header) and img.shape == (34000, 2, 2)
    step = _record(out)["steps"][-1]
    assert step["output"]["shape"] == [34000, 2, 2] and step["input"]["name"] == "long.nii"
    assert out.stat().st_size == int(img.dataobj.offset) + 34000 * 2 * 2 * 4


def test_a_pairs_size_is_both_files_and_its_digest_the_whole_hdr(tmp_path):
    nib.save(nib.Nifti1Pair(np.arange(6 * 5 * 4, dtype=np.float32).reshape(6, 5, 4), np.eye(4)), tmp_path / "p.img")
    resample(tmp_path / "p.hdr", tmp_path / "out.nii", spacing=(0.5, None, None))
    inp = _record(tmp_path / "out.nii")["steps"][-1]["input"]
    assert inp["bytes"] == (tmp_path / "p.hdr").stat().st_size + (tmp_path / "p.img").stat().st_size
    assert inp["header_sha256"] == hashlib.sha256((tmp_path / "p.hdr").read_bytes()).hexdigest()
    assert inp["format"] == "NIfTI-1 pair (.hdr/.img)"
