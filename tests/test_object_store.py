"""Object stores end to end: a local S3-compatible server (moto) on 127.0.0.1.

Every S3 client of these tests and of the command lines they run is pointed
at that server: the endpoint is passed as ``--storage-option endpoint_url=...``
(and set as ``AWS_ENDPOINT_URL`` too, so a client that missed the option still
stays on this machine), the credentials are moto's dummies, and the AWS
config files and the instance metadata service are switched off.  The results
must equal, byte for byte, the same runs on local files.
"""

import json
import os
import socket
import subprocess
import sys

import nibabel as nib
import numpy as np
import pytest

from bigresample import resample

from .helpers import make_volume, same_but_provenance

pytest.importorskip("s3fs", reason="s3fs is not installed (pip install 'bigresample[s3]')")
moto_server = pytest.importorskip("moto.server", reason="moto[server] is not installed (the test extra)")
pytestmark = pytest.mark.slow  # a local S3 server and command lines in subprocesses: 95 s in all on a loaded 2-core machine

BUCKET = "bigresample-test"
#: a secret given on the command line: it must never show in a report or an error
SECRET = "sEcReT-9f2c41d7e3b6"
CLEAN_ENV = ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_ENDPOINT_URL_S3",
             "FSSPEC_S3_ENDPOINT_URL", "AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def s3():
    """(endpoint, environment for subprocesses); the server stops after the module."""
    import logging

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request otherwise
    port = _free_port()
    endpoint = f"http://127.0.0.1:{port}"
    env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
           "AWS_ENDPOINT_URL": endpoint, "AWS_EC2_METADATA_DISABLED": "true",
           "AWS_CONFIG_FILE": os.devnull, "AWS_SHARED_CREDENTIALS_FILE": os.devnull}
    saved = {k: os.environ.get(k) for k in (*env, *CLEAN_ENV)}
    os.environ.update(env)
    for k in CLEAN_ENV:
        os.environ.pop(k, None)
    try:
        server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
        server.start()
    except Exception as exc:  # no sockets, a port taken, werkzeug missing...
        _restore(saved)
        pytest.skip(f"the local S3 server (moto) cannot start: {exc}")
    try:
        import s3fs

        fs = s3fs.S3FileSystem(endpoint_url=endpoint, skip_instance_cache=True)
        fs.mkdir(BUCKET)
        yield endpoint, fs
    finally:
        server.stop()
        _restore(saved)


def _restore(saved):
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def _cli(s3, cwd, *args, env=None, options=True):
    endpoint, _ = s3
    extra = ["--storage-option", f"endpoint_url={endpoint}"] if options else []
    return subprocess.run([sys.executable, "-m", "bigresample", *map(str, args), *extra], cwd=cwd,
                          env={**os.environ, **(env or {})}, capture_output=True, text=True, timeout=300)


def _data(path):
    return np.asanyarray(nib.load(path).dataobj.get_unscaled()).tobytes()


def _zarr(url, endpoint, level=0):
    import zarr

    return zarr.open_array(f"{url}/{level}", mode="r", storage_options={"endpoint_url": endpoint})


def _attrs(url, endpoint=None):
    import zarr

    opts = {"endpoint_url": endpoint} if endpoint else None
    return dict(zarr.open_group(url, mode="r", storage_options=opts).attrs)


def test_an_ome_zarr_input_and_reference_on_s3_give_the_local_nifti(tmp_path, s3):
    endpoint, fs = s3
    make_volume(tmp_path / "src.nii", shape=(40, 36, 30))
    resample(tmp_path / "src.nii", tmp_path / "in.zarr", spacing=(None, None, 0.12), chunks=(20, 18, 10))
    resample(tmp_path / "src.nii", tmp_path / "ref.zarr", spacing=(0.31, 0.27, 0.4))
    fs.put(str(tmp_path / "in.zarr"), f"{BUCKET}/a/in.zarr", recursive=True)
    fs.put(str(tmp_path / "ref.zarr"), f"{BUCKET}/a/ref.zarr", recursive=True)
    work = tmp_path / "work"
    work.mkdir()
    args = ["--spacing", "0.13", "0.2", "0.07", "--order", "3", "--chunks", "16", "36", "5"]
    proc = _cli(s3, work, f"s3://{BUCKET}/a/in.zarr", work / "out.nii.gz", *args)
    assert proc.returncode == 0, proc.stderr
    assert f"Loading OME-Zarr image: s3://{BUCKET}/a/in.zarr" in proc.stdout
    resample(tmp_path / "in.zarr", tmp_path / "local.nii.gz", spacing=(0.13, 0.2, 0.07), order=3,
             chunks=(16, 36, 5))
    assert _data(work / "out.nii.gz") == _data(tmp_path / "local.nii.gz")
    # a reference on S3 gives its grid
    proc = _cli(s3, work, f"s3://{BUCKET}/a/in.zarr", work / "onto.nii", "--reference",
                f"s3://{BUCKET}/a/ref.zarr", "--order", "1")
    assert proc.returncode == 0, proc.stderr
    resample(tmp_path / "in.zarr", tmp_path / "onto.nii", reference=tmp_path / "ref.zarr", order=1)
    assert _data(work / "onto.nii") == _data(tmp_path / "onto.nii")
    assert sorted(p.name for p in work.iterdir()) == ["onto.nii", "out.nii.gz"]


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii"])
def test_a_nifti_on_s3_into_an_ome_zarr_pyramid_on_s3_equals_the_local_run(tmp_path, s3, suffix):
    endpoint, fs = s3
    src = tmp_path / f"in{suffix}"
    make_volume(src, shape=(40, 36, 30), dtype=np.int16)
    fs.put(str(src), f"{BUCKET}/b/in{suffix}")
    url = f"s3://{BUCKET}/b/out{suffix.replace('.', '-')}.zarr"
    work = tmp_path / "work"
    work.mkdir()
    args = ["--spacing", "0.1", "0.1", "0.07", "--order", "3", "--levels", "2", "--chunks", "20", "36", "6"]
    proc = _cli(s3, work, f"s3://{BUCKET}/b/in{suffix}", url, *args)
    assert proc.returncode == 0, proc.stderr
    assert "Done!" in proc.stdout
    resample(src, tmp_path / "local.zarr", spacing=(0.1, 0.1, 0.07), order=3, levels=2, chunks=(20, 36, 6))
    import zarr

    for level in (0, 1):
        local = zarr.open_array(str(tmp_path / "local.zarr" / str(level)), mode="r")
        remote = _zarr(url, endpoint, level)
        assert remote.dtype == local.dtype and remote.shape == local.shape
        assert np.asarray(remote[...]).tobytes() == np.asarray(local[...]).tobytes()
    meta, local_meta = _attrs(url, endpoint), _attrs(str(tmp_path / "local.zarr"))
    meta["ome"]["multiscales"][0].pop("name"), local_meta["ome"]["multiscales"][0].pop("name")
    # the provenance records differ (the invocation, the date); the input is the same file
    record, local_record = meta["bigresample"].pop("provenance"), local_meta["bigresample"].pop("provenance")
    assert record["steps"][-1]["input"]["header_sha256"] == local_record["steps"][-1]["input"]["header_sha256"]
    assert record["steps"][-1]["input"]["bytes"] == src.stat().st_size
    assert meta == local_meta
    assert list(work.iterdir()) == []  # the copied input and the journal are gone
    # and it reads back as NIfTI, through the OME-Zarr input path
    proc = _cli(s3, work, url, work / "back.nii", "--spacing", "0.1", "0.1", "0.07", "--order", "0")
    assert proc.returncode == 0, proc.stderr
    np.testing.assert_array_equal(np.asanyarray(nib.load(work / "back.nii").dataobj),
                                  np.asarray(zarr.open_array(str(tmp_path / "local.zarr" / "0"))[...]).T)


@pytest.mark.slow
@pytest.mark.cluster
def test_a_cluster_run_with_its_scratch_store_on_s3_equals_the_threads(tmp_path, s3):
    pytest.importorskip("distributed")
    endpoint, fs = s3
    src = tmp_path / "in.nii.gz"
    make_volume(src, shape=(40, 36, 30))
    args = ["--spacing", "0.07", "0.1", "0.13", "--order", "3", "--chunks", "20", "36", "8"]
    proc = _cli(s3, tmp_path, src, tmp_path / "cluster.nii", *args, "--local-cluster", "2",
                "--tmp-dir", f"s3://{BUCKET}/scratch")
    assert proc.returncode == 0, proc.stderr
    assert f"zarr store s3://{BUCKET}/scratch/.cluster.nii.bigresample.zarr" in proc.stdout
    resample(src, tmp_path / "threads.nii", spacing=(0.07, 0.1, 0.13), order=3, chunks=(20, 36, 8))
    assert same_but_provenance(tmp_path / "cluster.nii") == same_but_provenance(tmp_path / "threads.nii")
    assert not fs.exists(f"{BUCKET}/scratch/.cluster.nii.bigresample.zarr")  # removed on success


def test_an_interrupted_s3_output_has_no_image_until_a_rerun_finishes_it(tmp_path, s3, monkeypatch):
    """The group metadata comes last: a run stopped before it leaves arrays a
    reader does not take for an image; the rerun resumes from its journal."""
    import zarr

    from bigresample import ome

    endpoint, fs = s3
    src = tmp_path / "in.nii"
    make_volume(src, shape=(30, 26, 20))
    url = f"s3://{BUCKET}/c/out.zarr"
    kw = dict(spacing=(None, None, 0.07), order=1, chunks=(30, 26, 4), tmp_dir=tmp_path,
              storage_options={"endpoint_url": endpoint})
    real = ome.create_group

    def stop(path, attrs, options=None):
        raise KeyboardInterrupt

    monkeypatch.setattr(ome, "create_group", stop)
    with pytest.raises(KeyboardInterrupt):
        resample(src, url, **kw)
    assert fs.exists(f"{BUCKET}/c/out.zarr/0/zarr.json") and not fs.exists(f"{BUCKET}/c/out.zarr/zarr.json")
    with pytest.raises(Exception):
        zarr.open_group(url, mode="r", storage_options={"endpoint_url": endpoint})
    monkeypatch.setattr(ome, "create_group", real)
    lines = []
    resample(src, url, log=lines.append, **kw)
    assert any(line.startswith("Resumed: 8 of 8 blocks") for line in lines), lines
    resample(src, tmp_path / "local.zarr", **{k: v for k, v in kw.items() if k != "storage_options"})
    local = zarr.open_array(str(tmp_path / "local.zarr" / "0"), mode="r")
    assert np.asarray(_zarr(url, endpoint)[...]).tobytes() == np.asarray(local[...]).tobytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.nii", "local.zarr"]
    # an existing image is replaced whole (a smaller one: no chunk of the old one is left)
    resample(src, url, **{**kw, "spacing": (None, None, 0.2)})
    assert _zarr(url, endpoint).shape == (10, 26, 30)
    chunks = [key for key in fs.find(f"{BUCKET}/c/out.zarr") if "/0/c/" in key]
    assert max(int(key.split("/0/c/")[1].split("/")[0]) for key in chunks) == 2  # z chunks 0-2 of 4 planes


@pytest.fixture(scope="module")
def volume_on_s3(s3, tmp_path_factory):
    folder = tmp_path_factory.mktemp("src")
    make_volume(folder / "in.nii.gz")
    s3[1].put(str(folder / "in.nii.gz"), f"{BUCKET}/d/in.nii.gz")
    return f"s3://{BUCKET}/d/in.nii.gz"


@pytest.mark.parametrize("case", ["missing key", "missing bucket", "unreachable endpoint", "no credentials",
                                  "nifti output url", "http output", "bad option", "corrupted gzip"])
def test_object_store_problems_are_one_line_naming_the_url_never_the_secret(tmp_path, s3, volume_on_s3, case):
    endpoint, fs = s3
    local = tmp_path / "in.nii"
    make_volume(local)
    out = tmp_path / "out.nii"
    env, options = None, True
    extra = ["--storage-option", f"secret={SECRET}", "--storage-option", "key=testing"]
    if case == "missing key":
        args, message = [f"s3://{BUCKET}/d/nothing.nii.gz", out], f"input not found: s3://{BUCKET}/d/nothing.nii.gz"
    elif case == "missing bucket":
        args, message = [local, "s3://no-such-bucket/x/out.zarr"], \
            "s3://no-such-bucket/x/out.zarr: the bucket does not exist"
    elif case == "unreachable endpoint":
        extra = [*extra, "--storage-option", f"endpoint_url=http://127.0.0.1:{_free_port()}",
                 "--storage-option", 'config_kwargs={"retries": {"max_attempts": 1}, "connect_timeout": 2}']
        options = False
        args, message = [volume_on_s3, out], f"cannot read the input {volume_on_s3}: cannot reach the object store"
    elif case == "no credentials":
        extra = []
        env = {"AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": ""}
        args, message = [volume_on_s3, out], f"cannot read the input {volume_on_s3}: no credentials found"
    elif case == "nifti output url":
        args, message = [local, f"s3://{BUCKET}/d/out.nii"], "an output URL must be an OME-Zarr (.zarr)"
    elif case == "http output":
        args, message = [local, "https://example.org/out.zarr"], \
            "output URL cannot be used: https://example.org/out.zarr: https:// is read-only"
    elif case == "bad option":
        extra = ["--storage-option", f"{SECRET}"]
        args, message = [volume_on_s3, out], "--storage-option must be KEY=VALUE"
    else:
        fs.pipe(f"{BUCKET}/d/bad.nii.gz", _corrupted(tmp_path))
        args, message = [f"s3://{BUCKET}/d/bad.nii.gz", out], \
            f"s3://{BUCKET}/d/bad.nii.gz: corrupted or truncated gzip stream"
    before = sorted(fs.find(BUCKET))
    proc = _cli(s3, tmp_path, *args, "--z-spacing", "0.2", *extra, env=env, options=options)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("bigresample: error:"), proc.stderr
    assert message in proc.stderr, proc.stderr
    assert SECRET not in proc.stdout + proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.nii"]  # nothing left behind here...
    assert sorted(fs.find(BUCKET)) == before  # ... nor in the bucket


def _corrupted(tmp_path) -> bytes:
    make_volume(tmp_path / "c.nii.gz", shape=(20, 20, 20))
    data = bytearray((tmp_path / "c.nii.gz").read_bytes())
    (tmp_path / "c.nii.gz").unlink()
    data[len(data) // 2] ^= 0xFF
    return bytes(data)


def test_the_secret_never_shows_in_a_report(tmp_path, s3, volume_on_s3):
    proc = _cli(s3, tmp_path, volume_on_s3, tmp_path / "out.nii", "--z-spacing", "0.2", "--dry-run",
                "--storage-option", f"secret={SECRET}", "--storage-option", "key=testing")
    assert proc.returncode == 0, proc.stderr
    assert "input copied and decompressed" in proc.stdout
    assert SECRET not in proc.stdout + proc.stderr
    assert list(tmp_path.iterdir()) == []


def test_an_output_records_no_secret_and_info_reads_a_url(tmp_path, s3, volume_on_s3):
    proc = _cli(s3, tmp_path, volume_on_s3, tmp_path / "out.nii", "--z-spacing", "0.2", "--quiet",
                "--storage-option", f"secret={SECRET}", "--storage-option", "key=testing")
    assert proc.returncode == 0, proc.stderr
    assert SECRET.encode() not in (tmp_path / "out.nii").read_bytes()
    ext = [e for e in nib.load(tmp_path / "out.nii").header.extensions if e.get_code() == 6][0]
    command = json.loads(ext.get_content())["steps"][-1]["invocation"]["command"]
    assert "secret=***" in command and volume_on_s3 in command
    proc = _cli(s3, tmp_path, "info", volume_on_s3, "--json")
    assert proc.returncode == 0, proc.stderr
    described = json.loads(proc.stdout)
    assert described["shape"] == [24, 20, 14] and described["format"] == "NIfTI-1 image (gzip-compressed)"


def test_storage_options_parse_booleans_and_json_and_keep_the_rest_strings():
    from bigresample.request import parse_storage_options

    assert parse_storage_options(["anon=true", "key=0123", 'config_kwargs={"retries": {"max_attempts": 1}}',
                                  "endpoint_url=http://h:9000/?a=b"]) == {
        "anon": True, "key": "0123", "config_kwargs": {"retries": {"max_attempts": 1}},
        "endpoint_url": "http://h:9000/?a=b"}


def test_a_missing_protocol_library_names_the_pip_command(tmp_path):
    """Without s3fs (hidden from a fresh interpreter) the command line says what to install."""
    make_volume(tmp_path / "in.nii")
    code = ("import sys; sys.modules['s3fs'] = None; from bigresample.cli import main; "
            f"sys.exit(main([{str(tmp_path / 'in.nii')!r}, 's3://bucket/out.zarr', '--z-spacing', '0.2']))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr == ("bigresample: error: output URL cannot be used: s3://bucket/out.zarr: the s3:// protocol "
                           "needs s3fs: pip install 'bigresample[s3]'\n")


def test_a_url_is_shown_without_its_user_and_password():
    from bigresample import location

    assert location.display("https://user:pw@host/x.zarr") == "https://host/x.zarr"
    assert location.display("s3://bucket/x.zarr") == "s3://bucket/x.zarr"


@pytest.mark.parametrize("bucket, key", [("bucket", "out.zarr"), ("lab-bucket", "bucket-test/out.zarr")])
def test_the_word_bucket_in_a_bucket_or_key_is_no_reason_to_refuse(tmp_path, s3, bucket, key):
    """Store errors are told apart by the store's error code (NoSuchBucket), not
    by words of a message that names the path: a bucket or key with "bucket"
    in its name is written, a missing key there is "not found", and a missing
    bucket is still "does not exist"."""
    from bigresample import BigresampleError, location

    endpoint, fs = s3
    if not fs.exists(bucket):
        fs.mkdir(bucket)
    src = tmp_path / "in.nii"
    make_volume(src)
    options = {"endpoint_url": endpoint}
    url = f"s3://{bucket}/{key}"
    location.check_reachable(url, options)
    resample(src, url, spacing=(None, None, 0.2), storage_options=options, tmp_dir=tmp_path)
    assert _zarr(url, endpoint).shape == (7, 20, 24)
    missing = f"s3://{bucket}/{key.replace('out.zarr', 'bucket.nii.gz')}"
    with pytest.raises(BigresampleError, match=f"^input not found: {missing}$"):
        resample(missing, tmp_path / "out.nii", spacing=(None, None, 0.2), storage_options=options)
    with pytest.raises(BigresampleError, match="^s3://labdata-gone/out.zarr: the bucket does not exist"):
        location.check_reachable("s3://labdata-gone/out.zarr", options)


def test_store_errors_are_classified_by_type_and_code_never_by_the_words_of_their_message():
    from botocore.exceptions import ClientError

    from bigresample import location

    def translated(code, status, message):
        exc = FileNotFoundError(message)
        exc.__cause__ = ClientError({"Error": {"Code": code, "Message": message},
                                     "ResponseMetadata": {"HTTPStatusCode": status}}, "HeadObject")
        return exc

    assert location.why(FileNotFoundError("bucket/bucket-test/in.nii.gz")) == "not found"
    assert location.why(translated("NoSuchKey", 404, "The specified bucket key does not exist")) == "not found"
    assert location.why(translated("NoSuchBucket", 404, "gone")) == "the bucket does not exist"
    assert location.why(OSError("Unable to locate credentials for bucket")).startswith("OSError: ")
    assert location.why(PermissionError("bucket")).startswith("access denied")
