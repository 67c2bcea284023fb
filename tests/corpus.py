"""A corpus of corrupted NIfTI files, and a driver that runs the command line on each.

``cases(seed)`` makes, from a fixed seed, several hundred variants of small
NIfTI-1 and NIfTI-2 files (8x7x6): every header field set to extreme values,
random header bytes changed, truncations at every interesting offset,
corrupted header extensions and corrupted gzip streams.  Each is a
``(name, filename, bytes)``.

``python -m tests.corpus RESULTS.json CASE_DIR...`` runs the command line
(``bigresample.cli.main``, as ``python -m bigresample`` does) on each case
folder's input, each in its own forked process (imports are paid once per
driver, not per case) under an address-space limit of ``MEMORY_LIMIT`` and a
``TIMEOUT`` in seconds, and writes each case's exit status and stderr.  A
case that hangs is killed and recorded with status ``"timeout"``.
"""

from __future__ import annotations

import gzip
import json
import os
import resource
import signal
import sys
import time
import traceback
import zlib

import numpy as np

SHAPE = (8, 7, 6)
MEMORY_LIMIT = 2**30
TIMEOUT = 30
ARGS = ["--spacing", "3", "2.5", "3", "--workers", "1", "--no-progress"]


# --------------------------------------------------------------------------
# the base files
# --------------------------------------------------------------------------


def base_bytes(version: int, extension: bool = False, dtype=np.int16) -> bytes:
    """A small, valid NIfTI-1 or NIfTI-2 single file (.nii), 2 mm voxels,
    qform code 1 and sform code 2, units mm and s, scaled (slope 0.5, inter 10)."""
    import nibabel as nib

    data = (np.arange(np.prod(SHAPE)) % 97).astype(dtype).reshape(SHAPE)
    affine = np.array([[2.0, 0, 0, -7], [0, 2.0, 0, -6], [0, 0, 2.0, -5], [0, 0, 0, 1]])
    klass = nib.Nifti1Image if version == 1 else nib.Nifti2Image
    img = klass(data, affine)
    img.header.set_qform(affine, 1)
    img.header.set_sform(affine, 2)
    img.header.set_xyzt_units("mm", "sec")
    img.header.set_slope_inter(0.5, 10.0)
    if extension:
        img.header.extensions.append(nib.nifti1.Nifti1Extension(6, b"a comment for the corpus"))
    return img.to_bytes()


def _layout(version: int) -> np.dtype:
    import nibabel as nib

    return nib.nifti1.header_dtype if version == 1 else nib.nifti2.header_dtype


def _with_field(raw: bytes, version: int, field: str, value, index=None) -> bytes:
    buf = bytearray(raw)
    dt = _layout(version)
    hdr = np.ndarray((), dtype=dt, buffer=buf)
    with np.errstate(over="ignore", invalid="ignore"):
        if index is None:
            hdr[field] = value
        else:
            hdr[field][index] = value
    return bytes(buf)


# --------------------------------------------------------------------------
# the variants
# --------------------------------------------------------------------------

FLOATS = [0.0, -1.0, np.nan, np.inf, -np.inf, 1e30, 1e-30]


def _int_extremes(dtype) -> list[int]:
    info = np.iinfo(dtype)
    return sorted({0, 1, -1 if info.min < 0 else 2, int(info.max), int(info.min), 7, 255 if info.max >= 255 else 3})


def _field_cases(version: int, raw: bytes):
    """Every header field set to extreme values (sub-arrays element by element)."""
    dt = _layout(version)
    tag = f"n{version}"
    special = {
        "dim": [0, -1, -4, 8, 32767, 2**31 - 1 if version == 2 else 32767, 2**40 if version == 2 else -32768],
        "datatype": [0, 1, 3, 32, 128, 1234, 2048, 1792, -1],
        "bitpix": [0, 1, 8, 13, 64, -16, 32767],
        "vox_offset": [0, -1, 16, 348, 353, 351, 1e30 if version == 1 else 2**62, len(raw), len(raw) + 1,
                       np.nan if version == 1 else -(2**62)],
        "qform_code": [-1, 0, 3, 4, 5, 6, 7, 300],
        "sform_code": [-1, 0, 3, 5, 6, 7, 300],
        "xyzt_units": [0, 1, 3, 4, 5, 7, 56, 128, 255, 18],
        "quatern_b": [-1e6, 1.0, 2.0, np.nan, np.inf],
        "quatern_c": [-1e6, 0.8, np.nan],
        "quatern_d": [5.0, np.nan, -np.inf],
        "intent_code": [0, 2, 1001, 1007, 2005, 9999, -1, 32767],
        "dim_info": [0, 57, 255],
        "slice_code": [0, 1, 7, 255],
    }
    out = []
    for name in dt.names:
        sub, _ = dt.fields[name]
        base, shape = sub.base, sub.shape
        if base.kind == "S":
            size = base.itemsize
            values = [b"", b"\xff" * size, b"n+1\0", b"ni1\0", b"n+2\0", b"abcd"] if name == "magic" else [
                b"\xff\xfe\x80" * (size // 3), b"x" * size]
        elif base.kind == "V":  # NIfTI-2's eol_check
            values = [b"\0\0\0\0", b"\r\n\x1a\x0a"[::-1]]
        elif name in special:
            values = special[name]
        elif base.kind == "f":
            values = FLOATS
        else:
            values = _int_extremes(base)
        if name == "sizeof_hdr":
            values = [0, -1, 347, 349, 540 if version == 1 else 348, 2**31 - 1, 0x5C010000]
        indices = [None] if not shape else range(shape[0])
        for i in indices:
            if name == "dim" and i not in (0, 1, 3, 4):
                continue
            if name == "pixdim" and i not in (0, 1, 3, 4):
                continue
            if name in ("srow_x", "srow_y", "srow_z") and i not in (0, 1, 3):
                continue
            for v in values:
                if base.kind == "V":
                    buf = bytearray(raw)
                    off = dt.fields[name][1]
                    buf[off:off + 4] = v
                    data = bytes(buf)
                else:
                    data = _with_field(raw, version, name, v, i)
                label = f"{tag}-{name}{'' if i is None else f'[{i}]'}={v!r}"
                out.append((label, "in.nii", data))
    # whole forms at once: a singular or NaN sform (with and without a good qform)
    for qcode in (0, 1):
        for what, rows in (("zero", np.zeros((3, 4))), ("nan", np.full((3, 4), np.nan)),
                           ("rank2", np.array([[2.0, 0, 0, 1], [4.0, 0, 0, 1], [0, 0, 2, 1]]))):
            data = _with_field(raw, version, "qform_code", qcode)
            for r, row in zip(("srow_x", "srow_y", "srow_z"), rows):
                data = _with_field(data, version, r, row)
            out.append((f"{tag}-sform-{what}-qcode{qcode}", "in.nii", data))
    # a quaternion that is not a rotation, with the sform on and off
    for scode in (0, 2):
        data = _with_field(_with_field(raw, version, "quatern_b", -1e6), version, "sform_code", scode)
        out.append((f"{tag}-quat-not-rotation-scode{scode}", "in.nii", data))
    return out


def _random_byte_cases(version: int, raw: bytes, rng, n: int):
    hsize = 348 if version == 1 else 540
    out = []
    for k in range(n):
        buf = bytearray(raw)
        for _ in range(int(rng.integers(1, 9))):
            pos = int(rng.integers(0, hsize + 4))
            buf[pos] = int(rng.integers(0, 256))
        out.append((f"n{version}-random-bytes-{k}", "in.nii", bytes(buf)))
    return out


def _truncation_cases(version: int, raw: bytes):
    hsize = 348 if version == 1 else 540
    cuts = sorted({1, 2, 4, 40, 70, 100, 200, hsize - 1, hsize, hsize + 2, hsize + 4, hsize + 8, hsize + 20,
                   len(raw) // 2, len(raw) - 2, len(raw) - 1})
    return [(f"n{version}-truncated-at-{c}", "in.nii", raw[:c]) for c in cuts if c < len(raw)]


def _extension_cases(version: int, raw_ext: bytes):
    """The extension after the header: its esize and ecode corrupted."""
    hsize = 348 if version == 1 else 540
    out = []
    for esize in (-16, 0, 8, 17, 24, 4096, 2**31 - 1):
        buf = bytearray(raw_ext)
        buf[hsize + 4:hsize + 8] = np.int32(esize).tobytes()
        out.append((f"n{version}-ext-esize={esize}", "in.nii", bytes(buf)))
    for ecode in (-1, 9999, 2**31 - 1):
        buf = bytearray(raw_ext)
        buf[hsize + 8:hsize + 12] = np.int32(ecode).tobytes()
        out.append((f"n{version}-ext-ecode={ecode}", "in.nii", bytes(buf)))
    buf = bytearray(raw_ext)
    buf[hsize] = 1  # extension flag on
    out.append((f"n{version}-ext-flag-without-room", "in.nii", bytes(_with_field(bytes(buf), version, "vox_offset",
                                                                                 hsize + 4))))
    plain = bytearray(base_bytes(version))
    plain[hsize] = 1
    out.append((f"n{version}-ext-flag-set-no-extension", "in.nii", bytes(plain)))
    return out


def _gzip_cases(version: int, raw: bytes, rng, n_random: int):
    gz = gzip.compress(raw, compresslevel=6, mtime=0)
    out = [(f"n{version}-gz-intact", "in.nii.gz", gz)]
    for c in sorted({2, 10, 11, 20, len(gz) // 3, len(gz) // 2, len(gz) - 8, len(gz) - 4, len(gz) - 1}):
        out.append((f"n{version}-gz-truncated-at-{c}", "in.nii.gz", gz[:c]))
    for k in range(n_random):
        buf = bytearray(gz)
        pos = int(rng.integers(10, len(gz)))
        buf[pos] ^= int(rng.integers(1, 256))
        out.append((f"n{version}-gz-flipped-byte-{k}@{pos}", "in.nii.gz", bytes(buf)))
    buf = bytearray(gz)
    buf[-8:-4] = bytes(4)  # CRC-32 zeroed
    out.append((f"n{version}-gz-bad-crc", "in.nii.gz", bytes(buf)))
    buf = bytearray(gz)
    buf[-4:] = np.uint32(len(raw) + 7).tobytes()  # ISIZE wrong
    out.append((f"n{version}-gz-bad-isize", "in.nii.gz", bytes(buf)))
    out.append((f"n{version}-gz-trailing-garbage", "in.nii.gz", gz + b"garbage!" * 4))
    out.append((f"n{version}-gz-second-member-truncated", "in.nii.gz", gz + gzip.compress(b"x" * 100)[:15]))
    raw_deflate = zlib.compress(raw)
    out.append((f"n{version}-zlib-not-gzip", "in.nii.gz", raw_deflate))
    # a valid gzip stream of a corrupted header (the header checks behind the decompression)
    for field, value in (("xyzt_units", 4), ("quatern_b", -1e6), ("scl_slope", np.inf), ("dim", -3)):
        data = _with_field(raw, version, field, value, 2 if field == "dim" else None)
        if field == "quatern_b":
            data = _with_field(data, version, "sform_code", 0)
        out.append((f"n{version}-gz-{field}={value}", "in.nii.gz", gzip.compress(data, mtime=0)))
    # a header that claims more than the file holds, behind a valid gzip stream (nothing may be allocated for it)
    ext = bytearray(base_bytes(version, extension=True))
    hsize = 348 if version == 1 else 540
    ext[hsize + 4:hsize + 8] = np.int32(2**30).tobytes()
    ext = _with_field(bytes(ext), version, "vox_offset", 2**30 + hsize + 4)
    out.append((f"n{version}-gz-extension-of-1GiB", "in.nii.gz", gzip.compress(ext, mtime=0)))
    for i in (1, 2, 3):
        out.append((f"n{version}-gz-dim[{i}]=32767", "in.nii.gz",
                    gzip.compress(_with_field(raw, version, "dim", 32767, i), mtime=0)))
    return out


def cases(seed: int = 15) -> list[tuple[str, str, bytes]]:
    """Every variant, in a fixed order, from ``seed``."""
    rng = np.random.default_rng(seed)
    out = []
    for version in (1, 2):
        raw = base_bytes(version)
        out.append((f"n{version}-intact", "in.nii", raw))
        out += _field_cases(version, raw)
        out += _random_byte_cases(version, raw, rng, 40)
        out += _random_byte_cases(version, base_bytes(version, extension=True), rng, 10)
        out += _truncation_cases(version, raw)
        out += _extension_cases(version, base_bytes(version, extension=True))
        out += _gzip_cases(version, raw, rng, 12)
    out.append(("n1-float32-intact", "in.nii", base_bytes(1, dtype=np.float32)))
    return out


# --------------------------------------------------------------------------
# the driver
# --------------------------------------------------------------------------


def _child(folder: str, filename: str) -> None:
    """In the forked process: the command line on ``folder/filename``, as ``python -m bigresample``."""
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))
    err = os.open(os.path.join(folder + ".stderr"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    out = os.open(os.devnull, os.O_WRONLY)
    os.dup2(err, 2)
    os.dup2(out, 1)
    sys.stderr = open(2, "w", closefd=False)
    sys.stdout = open(1, "w", closefd=False)
    code = 1
    try:
        from bigresample.cli import main

        code = main([os.path.join(folder, filename), os.path.join(folder, "out.nii"), *ARGS])
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:  # what the interpreter would print
        traceback.print_exc()
        code = 1
    sys.stderr.flush()
    sys.stdout.flush()
    os._exit(code)


def run_cases(folders: list[str]) -> dict:
    """Each folder holds one input file; the command line runs on it in a forked child."""
    # imported once, before forking: the command line and all a run of it imports (bigresample.cli
    # imports its run path lazily; without these each child imported nibabel, scipy and the pipeline
    # again, ~0.5 s a case against ~0.05 s for the case itself)
    import bigresample.cli  # noqa: F401
    import bigresample.pipeline  # noqa: F401

    results = {}
    for folder in folders:
        filename = next(n for n in os.listdir(folder) if n.startswith("in."))
        t0 = time.perf_counter()
        pid = os.fork()
        if pid == 0:
            _child(folder, filename)
        status = None
        while time.perf_counter() - t0 < TIMEOUT:
            done, st = os.waitpid(pid, os.WNOHANG)
            if done:
                status = os.waitstatus_to_exitcode(st)
                break
            time.sleep(0.005)
        if status is None:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            status = "timeout"
        with open(folder + ".stderr", errors="replace") as f:
            stderr = f.read()
        os.unlink(folder + ".stderr")
        results[folder] = {"status": status, "stderr": stderr, "seconds": time.perf_counter() - t0}
    return results


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    json.dump(run_cases(sys.argv[2:]), open(sys.argv[1], "w"))
