"""A .nii.gz input: inflated into memory when the budget holds it, else into a scratch file.

Either route gives the kernel the bytes the uncompressed file gives it (the outputs equal
bit for bit); a stream shorter than its header says is refused in one line and one longer
stops there, on both routes; the memory route makes no scratch file (files counted, not
seconds); inflating reads in chunks, so Ctrl-C is honoured between them.
"""

import gzip
import os
import zlib

import nibabel as nib
import numpy as np
import pytest

from bigresample import codec, job, resample
from bigresample.cli import main
from bigresample.errors import InputError
from bigresample.rawio import MemoryReader, RawReader

from .helpers import oblique_reference, write_nifti

ROUTES = ["memory", "scratch"]


@pytest.fixture
def route(request, monkeypatch):
    """The route taken, and the scratch files made (``tempfile.mkstemp`` counted)."""
    import bigresample.nibabel_input as nibabel_input

    made = []
    real = nibabel_input.tempfile.mkstemp

    def counted(*a, **kw):
        made.append(kw.get("dir"))
        return real(*a, **kw)
    monkeypatch.setattr(nibabel_input.tempfile, "mkstemp", counted)
    if request.param == "scratch":  # as when the budget does not hold the inflated input
        monkeypatch.setattr(job, "inflates_in_memory", lambda *a, **kw: False)
    return request.param, made


def _pair(tmp_path, dtype, shape=(30, 26, 17)):
    """The same image as .nii and .nii.gz (one gzip stream, as nibabel writes it)."""
    rng = np.random.default_rng(3)
    data = (rng.random(shape) * 900 - 100).astype(dtype)
    img = nib.Nifti1Image(data, np.diag([0.1, 0.1, 0.1, 1.0]), nib.Nifti1Header(endianness=dtype[0]))
    nib.save(img, tmp_path / "in.nii")
    assert img.header.endianness == dtype[0]
    (tmp_path / "in.nii.gz").write_bytes(gzip.compress((tmp_path / "in.nii").read_bytes(), compresslevel=1))
    return tmp_path / "in.nii", tmp_path / "in.nii.gz"


def _voxel_bytes(path) -> bytes:
    img = nib.load(path)
    return np.asarray(img.dataobj.get_unscaled()).tobytes(order="F")


@pytest.mark.parametrize("route", ROUTES, indirect=True)
@pytest.mark.parametrize("dtype, order, how", [
    ("<f4", 1, "zoom"), (">i2", 3, "zoom"), ("<f4", 1, "rotated"), (">f4", 0, "rotated")])
def test_each_route_gives_the_uncompressed_inputs_output_bit_for_bit(tmp_path, route, dtype, order, how):
    """The separable engine (``read_into``) and the general path (``mapped`` windows of whole
    planes), native and swapped byte orders."""
    name, made = route
    plain, packed = _pair(tmp_path, dtype)
    kw = dict(order=order, chunks=(30, 26, 4))
    if how == "zoom":
        kw["spacing"] = (None, 0.13, 0.07)
    else:
        ref = tmp_path / "ref.nii"
        shape, affine = oblique_reference((24, 20, 18))
        write_nifti(ref, np.zeros(shape, np.float32), affine)
        kw["reference"] = ref
    resample(plain, tmp_path / "a.nii", **kw)
    result = resample(packed, tmp_path / "b.nii", **kw)
    assert _voxel_bytes(tmp_path / "b.nii") == _voxel_bytes(tmp_path / "a.nii")
    assert ("inflate" in result.timings, "decompress" in result.timings) == (name == "memory", name == "scratch")
    assert len(made) == (0 if name == "memory" else 1)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".bigresample-")]


def test_the_budget_decides_the_route(tmp_path):
    """In memory when the inflated file and the run's peak fit the budget, and not a byte more."""
    from bigresample.request import Request

    _, packed = _pair(tmp_path, "<f4")
    base = Request.make(packed, tmp_path / "out.nii", spacing=(None, None, 0.2), memory_limit="400MB", workers=2)
    planned = job.plan_job(base)
    try:
        vol = planned.volume
        assert vol.in_memory
        peak = job.dry_run(planned).peak_bytes  # counts the inflated input
        assert peak - vol.decompressed_bytes < base.memory_limit
        for limit, expected in ((peak, True), (peak - 1, False)):
            r = Request.make(packed, tmp_path / "out.nii", spacing=(None, None, 0.2), memory_limit=limit, workers=2)
            assert job.inflates_in_memory(vol, r, planned.stages, planned.out_dtype, planned.executor) is expected
    finally:
        planned.volume.close()


def _gz_image(tmp_path, raw: bytes, name: str) -> str:
    path = tmp_path / name
    c = zlib.compressobj(1, zlib.DEFLATED, 31)
    path.write_bytes(c.compress(raw) + c.flush())
    return str(path)


@pytest.mark.parametrize("route", ROUTES, indirect=True)
def test_a_stream_shorter_than_its_header_says_is_refused_in_one_line(tmp_path, capsys, route):
    plain, _ = _pair(tmp_path, "<f4")
    raw = plain.read_bytes()
    os.unlink(plain)
    os.unlink(tmp_path / "in.nii.gz")
    short = _gz_image(tmp_path, raw[:-1000], "short.nii.gz")  # a whole stream, 1000 bytes of voxels short
    cut = tmp_path / "cut.nii.gz"  # a stream cut off
    cut.write_bytes(gzip.compress(raw)[:-5000])
    for src, message in ((short, "file is truncated"), (cut, "corrupted or truncated gzip stream")):
        before = set(os.listdir(tmp_path))
        code = main([str(src), str(tmp_path / "out.nii"), "--z-spacing", "0.2", "--no-progress"])
        err = capsys.readouterr().err
        assert code == 2 and err.count("\n") == 1 and message in err and "Traceback" not in err, err
        assert set(os.listdir(tmp_path)) == before
    assert len(route[1]) == (0 if route[0] == "memory" else 2)  # scratch: made, and removed


@pytest.mark.parametrize("route", ROUTES, indirect=True)
def test_a_longer_stream_stops_at_what_the_header_describes(tmp_path, capsys, route):
    plain, _ = _pair(tmp_path, "<f4")
    raw = plain.read_bytes()
    padded = _gz_image(tmp_path, raw + b"\x07" * 1000, "padded.nii.gz")  # a writer's padding: read, not kept
    resample(plain, tmp_path / "a.nii", spacing=(None, None, 0.2))
    resample(padded, tmp_path / "b.nii", spacing=(None, None, 0.2))
    assert _voxel_bytes(tmp_path / "b.nii") == _voxel_bytes(tmp_path / "a.nii")
    bomb = _gz_image(tmp_path, raw + b"\0" * (codec.TRAILING_SLACK + 1), "bomb.nii.gz")
    code = main([bomb, str(tmp_path / "out.nii"), "--z-spacing", "0.2", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and "decompression bomb" in err and err.count("\n") == 1, err


def test_inflating_reads_in_chunks_and_lets_an_interrupt_through(tmp_path):
    raw = os.urandom(300_000)
    src = _gz_image(tmp_path, raw, "x.gz")
    buf = np.empty(len(raw), np.uint8)
    calls = []
    assert codec.decompress(src, buf, len(raw), chunk=65536, on_bytes=calls.append) == len(raw)
    assert buf.tobytes() == raw and len(calls) == 5 and max(calls) == 65536

    def interrupt(n):
        raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):  # not turned into a refusal
        codec.decompress(src, np.empty(len(raw), np.uint8), len(raw), chunk=65536, on_bytes=interrupt)
    buf, have = codec.inflate(src, len(raw) + 10)  # the stream ends first: how much it gave
    assert have == len(raw) and buf.nbytes == len(raw) + 10


@pytest.mark.parametrize("dtype", ["<f4", ">i2"])
def test_the_memory_reader_reads_what_the_file_reader_reads(tmp_path, dtype):
    shape = (7, 6, 5, 2)
    data = np.arange(np.prod(shape)).reshape(shape).astype(dtype)
    blob = b"\xaa" * 48 + data.tobytes(order="F")
    (tmp_path / "raw").write_bytes(blob)
    disk = RawReader(tmp_path / "raw", 48, shape, dtype)
    mem = MemoryReader(np.frombuffer(blob, np.uint8).copy(), 48, shape, dtype)
    for sl in [(slice(1, 5), slice(0, 6), slice(2, 4)), (slice(None),) * 3, (slice(0, 7), slice(0, 6), slice(1, 2), slice(1, 2))]:
        n = [len(range(*s.indices(k))) for s, k in zip(sl + (slice(None),) * (4 - len(sl)), shape)]
        a, b = np.empty(n[::-1], dtype), np.empty(n[::-1], dtype)
        disk.read_into(sl, a)
        mem.read_into(sl, b)
        assert a.tobytes() == b.tobytes()
        assert np.array_equal(disk[sl], mem[sl])
        m = mem.mapped(sl)
        assert (m is None) == (disk.mapped(sl) is None)
        if m is not None:
            assert m.tobytes() == a.tobytes() and not m.flags.writeable
    with pytest.raises(ValueError, match="do not fit"):
        MemoryReader(np.zeros(100, np.uint8), 48, shape, dtype)
    with pytest.raises(TypeError, match="this process"):
        import pickle
        pickle.dumps(mem)
