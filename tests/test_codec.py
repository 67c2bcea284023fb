"""codec: a block's gzip member and the reader of a .nii.gz, checked with Python's gzip and zlib."""

import gzip
import struct
import zlib

import numpy as np
import pytest

from bigresample.codec import gzip_member, open_gzip


def _one_member(member: bytes) -> bytes:
    """The data of exactly one gzip member (zlib's reader, which stops at the member's end)."""
    d = zlib.decompressobj(zlib.MAX_WBITS | 16)
    data = d.decompress(member) + d.flush()
    assert d.eof and d.unused_data == b"", "not exactly one complete member"
    return data


@pytest.mark.parametrize("dtype", ["float32", "int16", "uint8", "float64"])
def test_a_member_holds_the_block_bytes_in_c_order(dtype):
    rng = np.random.default_rng(1)
    block = (rng.standard_normal((5, 7, 3)) * 100).astype(dtype)
    member = gzip_member(block)
    assert member[:3] == b"\x1f\x8b\x08"  # RFC 1952: magic, deflate
    crc, size = struct.unpack("<II", member[-8:])  # the trailer: CRC-32 and length of the data
    assert size == block.nbytes
    assert crc == zlib.crc32(block.tobytes())
    assert _one_member(member) == block.tobytes()
    assert gzip.decompress(member) == block.tobytes()


def test_a_member_of_plain_bytes_and_of_nothing():
    assert _one_member(gzip_member(b"header bytes")) == b"header bytes"
    assert _one_member(gzip_member(b"")) == b""


def test_the_default_level_compresses():
    """A compressible block comes out much smaller than stored (level 0 would not)."""
    block = np.zeros((64, 64, 8), np.float32)
    block[10:20] = 3.5
    assert len(gzip_member(block)) < block.nbytes // 20


def test_members_back_to_back_read_as_one_stream(tmp_path):
    parts = [np.arange(i, i + 1000, dtype=np.int32) for i in range(3)]
    path = tmp_path / "x.gz"
    path.write_bytes(gzip_member(b"head") + b"".join(gzip_member(p) for p in parts))
    with open_gzip(path) as f:
        got = f.read()
    assert got == b"head" + b"".join(p.tobytes() for p in parts)
    assert got == gzip.decompress(path.read_bytes())  # the standard library agrees


def test_the_reader_checks_each_member_crc(tmp_path):
    member = bytearray(gzip_member(np.arange(1000, dtype=np.int32)))
    member[-8] ^= 0xFF  # the first member's CRC-32
    path = tmp_path / "bad.gz"
    path.write_bytes(bytes(member) + gzip_member(b"tail"))
    with open_gzip(path) as f, pytest.raises((OSError, EOFError)):
        f.read()
