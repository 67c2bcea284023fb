"""gzip for .nii.gz: zlib against ISA-L (what bigresample writes), deflate and inflate.

    python benchmarks/bench_codec.py [--size 144] [--repeats 3]

A .nii.gz output is written as gzip members, one per block
(``bigresample.codec.gzip_member``: ISA-L, ``codec.LEVEL``).  This takes a slab
of whole planes from the middle of the 512x512x300 brain phantom
(``bigresample.demo.phantom_slab``), in NIfTI byte order, once as float32 and
once rounded to int16 as ``make_phantom(dtype=np.int16)`` stores it (``--size``
MiB for the two together), and compresses each into one gzip member with

* ``zlib-6``    -- ``zlib.compressobj(6, DEFLATED, 31)``: zlib's default level
                   (and GNU gzip's; Python's ``gzip.compress`` defaults to 9);
* ``zlib-1``    -- the same at level 1;
* ``isal-1``    -- ``bigresample.codec.gzip_member`` (ISA-L level ``codec.LEVEL``).

Each member is then inflated by zlib and by ISA-L (``isal_zlib``; bigresample
reads .nii.gz through ``isal.igzip``), and checked to give the slab back.
Speeds are MB/s (1e6 bytes) of *uncompressed* data; ratio is uncompressed /
compressed.  Medians of ``--repeats``; the candidates' order is rotated every
repeat, and ratios of speeds are medians of the ratios within each repeat.
Nothing is written to disk.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
import zlib

import numpy as np

from bigresample import codec
from bigresample.demo import DEMO_SHAPE, phantom_slab

try:
    from isal import isal_zlib
except ImportError:  # pragma: no cover
    isal_zlib = None

GZIP_WBITS = 31


def zlib_member(level):
    def member(data) -> bytes:
        c = zlib.compressobj(level, zlib.DEFLATED, GZIP_WBITS)
        return c.compress(memoryview(data).cast("B")) + c.flush()

    return member


COMPRESSORS = {
    "zlib-6": zlib_member(6),
    "zlib-1": zlib_member(1),
    f"{codec.BACKEND}-{codec.LEVEL} (codec.gzip_member)": codec.gzip_member,
}


def inflaters():
    out = {"zlib": lambda b: zlib.decompressobj(GZIP_WBITS).decompress(b)}
    if isal_zlib is not None:
        out["isal"] = lambda b: isal_zlib.decompressobj(GZIP_WBITS).decompress(b)
    return out


def slabs(size_mib: int):
    """float32 and int16 slabs of whole 512x512 planes from the phantom's middle, file order."""
    nx, ny, _ = DEMO_SHAPE
    planes = max(1, int(size_mib * 2**20 // (nx * ny * 6)))  # 4 + 2 bytes per voxel
    shape = (nx, ny, max(DEMO_SHAPE[2], planes))
    z0 = (shape[2] - planes) // 2
    parts = [phantom_slab(shape, z, min(z + 16, z0 + planes)) for z in range(z0, z0 + planes, 16)]
    f32 = np.ascontiguousarray(np.concatenate(parts, axis=2).T)  # (z, y, x): the NIfTI's bytes
    i16 = np.rint(f32).astype(np.int16)
    return {"float32": f32, "int16": i16}, (nx, ny, planes)


def timed(fn, arg):
    t0 = time.perf_counter()
    out = fn(arg)
    return time.perf_counter() - t0, out


def rotate(seq, k):
    k %= len(seq)
    return seq[k:] + seq[:k]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", type=int, default=144, help="MiB of float32 + int16 slab together (default 144)")
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args(argv)

    data, shape = slabs(args.size)
    infl = inflaters()
    names = list(COMPRESSORS)
    print(f"# {' '.join([sys.executable] + sys.argv)}")
    print(f"# {cpu_name()}, Python {platform.python_version()}, "
          f"zlib {zlib.ZLIB_RUNTIME_VERSION}, isal {_version('isal')}, numpy {np.__version__}")
    print(f"Slabs: phantom planes {shape} (x, y, z) from the middle of {DEMO_SHAPE}; "
          + ", ".join(f"{k} {v.nbytes / 2**20:.0f} MiB" for k, v in data.items())
          + f"; median of {args.repeats}")
    print()
    print("| slab | compressor | ratio | deflate (MB/s) | deflate speed / zlib-6 | inflate zlib (MB/s) "
          "| inflate ISA-L (MB/s) | inflate ISA-L / zlib |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for kind, arr in data.items():
        nbytes = arr.nbytes
        raw = memoryview(arr).cast("B")
        deflate = {n: [] for n in names}
        inflate = {(n, i): [] for n in names for i in infl}
        sizes = {}
        for r in range(args.repeats):
            members = {}
            for n in rotate(names, r):
                dt, members[n] = timed(COMPRESSORS[n], arr)
                deflate[n].append(dt)
                sizes[n] = len(members[n])
            for n in rotate(names, r):
                for i in rotate(list(infl), r):
                    dt, back = timed(infl[i], members[n])
                    if back != raw:
                        raise SystemExit(f"{n} inflated by {i} does not give the {kind} slab back")
                    inflate[n, i].append(dt)
            del members, back
        for n in names:
            speed = nbytes / statistics.median(deflate[n]) / 1e6
            rel = statistics.median(a / b for a, b in zip(deflate["zlib-6"], deflate[n]))
            iz = nbytes / statistics.median(inflate[n, "zlib"]) / 1e6
            if "isal" in infl:
                ii = nbytes / statistics.median(inflate[n, "isal"]) / 1e6
                irel = statistics.median(a / b for a, b in zip(inflate[n, "zlib"], inflate[n, "isal"]))
                tail = f"{ii:.0f} | {irel:.2f}"
            else:  # pragma: no cover
                tail = "- | -"
            print(f"| {kind} | {n} | {nbytes / sizes[n]:.3f} | {speed:.1f} | {rel:.1f} | {iz:.0f} | {tail} |")
        sys.stdout.flush()
    return 0


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            names = [ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")]
        return f"{len(names)} x {names[0]}"
    except (OSError, IndexError):
        return platform.processor() or platform.machine()


def _version(dist: str) -> str:
    try:
        from importlib.metadata import version

        return version(dist)
    except Exception:  # pragma: no cover
        return "?"


if __name__ == "__main__":
    sys.exit(main())
