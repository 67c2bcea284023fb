"""gzip for .nii.gz: fast deflate (ISA-L) and one member per block.

zlib -6 compresses about 20 MB/s here (12 MB/s on int16); ISA-L's level 1
about 350 MB/s (230 on int16), at the same ratio on float32 and 5% larger on
int16 (benchmarks/bench_codec.py), and inflates 1.8-2.4x as fast as zlib.  A
.nii.gz is written as concatenated gzip members, one per block, compressed by
the worker threads in parallel: RFC 1952 allows members back to back and
zlib's gzread, Python's gzip, nibabel and SimpleITK read them as one stream
(nibabel in tests/test_cli.py, Python's gzip in tests/test_reliability.py,
SimpleITK in benchmarks/bench_speed.py).
"""

from __future__ import annotations

import mmap
import os
import zlib
from pathlib import Path

import numpy as np

from . import location
from .errors import InputError, one_line

try:  # ISA-L: a core dependency; zlib only if a platform lacks its wheel
    from isal import igzip as _igzip
    from isal import isal_zlib as _zlib

    LEVEL = 1  # isal levels are 0-3; 1 matches zlib -6 in ratio on float32, 5% larger on int16 (bench_codec.py)
    BACKEND = "isal"
except ImportError:  # pragma: no cover
    import gzip as _igzip

    _zlib = zlib
    LEVEL = 1
    BACKEND = "zlib"

GZIP_WBITS = 31  # deflate with a gzip header and trailer


def gzip_member(data, level: int = LEVEL) -> bytes:
    """One complete gzip member (header, deflate stream, CRC-32, size)."""
    c = _zlib.compressobj(level, _zlib.DEFLATED, GZIP_WBITS)
    return c.compress(memoryview(data).cast("B")) + c.flush()


def open_gzip(path):
    """A reader that decompresses ``path`` and checks each member's CRC at its end."""
    return _igzip.open(path, "rb")


GZIP_MAGIC = b"\x1f\x8b"


def is_gzip(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(2) == GZIP_MAGIC


#: Bytes a compressed file may hold after its voxels (an MGH footer's tags,
#: a writer's padding); never written out, and no room for a bomb.
TRAILING_SLACK = 2**20


def decompress(src, out, limit: int, slack: int = TRAILING_SLACK, chunk: int = 16 * 2**20, name=None,
               on_bytes=None) -> int:
    """Sequentially decompress ``src`` (a path, or a file object read from the
    start) into ``out``: the first ``limit`` bytes (what the header
    describes), and nothing more; returns how many there were (fewer: the
    stream ends early).  ``out``: an open file descriptor (closed afterwards),
    or a writable buffer of ``limit`` bytes filled in place (``inflate``).

    A stream that holds more than ``limit + slack`` bytes is refused as soon
    as the first byte past that shows (a decompression bomb fills no disk);
    the ``slack`` bytes after the voxels are read but not written.  A stream
    within that bound is read to its end, so that the gzip reader checks each
    member's CRC-32 and length: a corrupted stream raises here, not silently
    later.  The stream is read ``chunk`` bytes at a time, so that Ctrl-C
    (``KeyboardInterrupt``) is honoured between chunks.  ``on_bytes(n)``:
    called as bytes are written (a progress bar).
    """
    name = src if name is None else name
    try:
        with open_gzip(src) as fin:
            if isinstance(out, int):
                written = copy_stream(fin, out, limit, chunk, on_bytes)
            else:
                written = fill_buffer(fin, out, limit, chunk, on_bytes)
            more = len(fin.read(slack + 1)) if written == limit else 0  # to the end, when within bounds
    except Exception as exc:  # zlib.error, isal's error, EOFError, BadGzipFile...
        if from_store(exc):
            raise InputError(f"{name}: reading failed: {location.why(exc)}") from None
        raise InputError(f"{name}: corrupted or truncated gzip stream ({one_line(exc)})") from None
    if more > slack:
        raise InputError(f"{name}: the gzip stream holds more than {slack} bytes past the {limit} bytes its "
                         "header describes (header and voxels): refused, as a decompression bomb would be")
    return written


def inflate(src, limit: int, name=None, on_bytes=None) -> tuple[np.ndarray, int]:
    """``src`` inflated into memory (``decompress``): one buffer of ``limit`` bytes, allocated
    once, and how many bytes the stream filled.

    The buffer is a private anonymous mapping, not ``np.empty``: numpy asks for transparent huge
    pages on large arrays, and where the kernel compacts memory to find them on first touch
    (``defrag`` set to ``madvise``, as here) touching 2.2 GB took 2-3x the wall time and 2x
    the system time of plain pages (benchmarks/bench_gzip_input.py)."""
    flags = getattr(mmap, "MAP_PRIVATE", None)
    if limit == 0:
        buf = np.empty(0, dtype=np.uint8)
    else:
        buf = np.frombuffer(mmap.mmap(-1, limit, **({"flags": flags} if flags is not None else {})), np.uint8)
    return buf, decompress(src, buf, limit, name=name, on_bytes=on_bytes)


def from_store(exc) -> bool:
    """An error of the network or the object store (not of the gzip stream)."""
    module = type(exc).__module__.split(".")[0]
    return module in ("botocore", "aiobotocore", "aiohttp", "s3fs", "gcsfs", "adlfs", "fsspec") or isinstance(
        exc, (ConnectionError, PermissionError, FileNotFoundError, TimeoutError))


def copy_stream(fin, fd: int, limit: int, chunk: int = 16 * 2**20, on_bytes=None) -> int:
    """Copy the first ``limit`` bytes of the file object ``fin`` into ``fd``
    (closed afterwards) with one reused buffer; returns how many there were.
    ``on_bytes(n)``: called as bytes are written (a progress bar)."""
    buf = bytearray(chunk)
    written = 0
    with os.fdopen(fd, "wb") as fout:
        while written < limit:
            n = fin.readinto(memoryview(buf)[: min(chunk, limit - written)])
            if not n:
                break
            fout.write(memoryview(buf)[:n])
            written += n
            if on_bytes is not None:
                on_bytes(n)
    return written


def fill_buffer(fin, buf, limit: int, chunk: int = 16 * 2**20, on_bytes=None) -> int:
    """Fill ``buf`` with the first ``limit`` bytes of the file object ``fin``, at most ``chunk``
    bytes a call; returns how many there were."""
    view = memoryview(buf).cast("B")[:limit]
    written = 0
    while written < limit:
        n = fin.readinto(view[written: written + min(chunk, limit - written)])
        if not n:
            break
        written += n
        if on_bytes is not None:
            on_bytes(n)
    return written
