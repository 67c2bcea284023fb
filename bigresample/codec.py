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

import zlib

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
