"""The zarr store's codec and chunk layout: write speed, read-back speed, disk used.

    python benchmarks/bench_store.py [--shape 512 512 200] [--repeats 3]

The store holds the output blocks of a cluster run (``--scheduler`` /
``--local-cluster``) or of ``--keep-zarr``; the NIfTI is then streamed out of
it slab by slab.  This writes the 512x512x200 float32 phantom output into
stores with each codec and two chunk layouts, reads it back in NIfTI order,
and prints a table.  Layouts: *file order* (array axes reversed, whole x-y
planes per chunk: a chunk's bytes are the NIfTI's bytes) and *cubes*
(spatial-first axes, 128^3 chunks: reading a NIfTI slab gathers and transposes).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import zarr
from zarr.codecs import BloscCodec, GzipCodec, ZstdCodec

from bigresample.demo import phantom_slab

CODECS = {
    "none": None,
    "blosc-lz4": BloscCodec(cname="lz4", clevel=1, shuffle="shuffle"),
    "zstd-1": ZstdCodec(level=1),
    "gzip-1": GzipCodec(level=1),
}


def du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shape", nargs=3, type=int, default=[512, 512, 200])
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args(argv)
    shape = tuple(args.shape)
    data = np.concatenate([phantom_slab(shape, z, min(z + 25, shape[2])) for z in range(0, shape[2], 25)], axis=2)
    file_order = np.ascontiguousarray(data.T)  # (z, y, x): NIfTI byte order
    dz = 16
    work = Path(tempfile.mkdtemp(prefix="bench_store_"))
    print(f"# {' '.join([sys.executable] + sys.argv)}")
    print(f"Output {shape} float32 ({data.nbytes / 2**20:.0f} MiB); median of {args.repeats}")
    print()
    print("| layout | codec | write (s) | read in NIfTI order (s) | disk (MiB) |")
    print("|---|---|---:|---:|---:|")
    for layout in ("file order", "cubes"):
        for name, codec in CODECS.items():
            w, r = [], []
            for _ in range(args.repeats):
                path = work / "s.zarr"
                shutil.rmtree(path, ignore_errors=True)
                if layout == "file order":
                    arr = zarr.create_array(store=str(path), shape=file_order.shape, chunks=(dz,) + shape[1::-1],
                                            dtype=data.dtype, compressors=codec)
                    t0 = time.perf_counter()
                    for z0 in range(0, shape[2], dz):
                        arr[z0 : z0 + dz] = file_order[z0 : z0 + dz]
                    w.append(time.perf_counter() - t0)
                    t0 = time.perf_counter()
                    for z0 in range(0, shape[2], dz):
                        memoryview(np.ascontiguousarray(arr[z0 : z0 + dz])).cast("B")
                    r.append(time.perf_counter() - t0)
                else:
                    arr = zarr.create_array(store=str(path), shape=shape, chunks=(128, 128, 128),
                                            dtype=data.dtype, compressors=codec)
                    t0 = time.perf_counter()
                    arr[...] = data
                    w.append(time.perf_counter() - t0)
                    t0 = time.perf_counter()
                    for z0 in range(0, shape[2], dz):
                        np.ascontiguousarray(arr[:, :, z0 : z0 + dz].T)
                    r.append(time.perf_counter() - t0)
            print(f"| {layout} | {name} | {statistics.median(w):.2f} | {statistics.median(r):.2f} | "
                  f"{du(path) / 2**20:.0f} |", flush=True)
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
