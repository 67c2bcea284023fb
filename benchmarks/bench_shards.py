"""File counts of an OME-Zarr pyramid written unsharded and sharded (--shards), both validated by
ome-zarr-models and read back equal, with their wall times.

    python benchmarks/bench_shards.py --shape 61 60 48 --spacing 0.06 --chunks 2 2 2 --shards auto

The default makes level 0 102x100x80 voxels in 2x2x2 chunks: 102,000 chunk files unsharded.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import zarr

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.conftest import make_volume, validate_ngff  # noqa: E402

from bigresample import resample  # noqa: E402


def files(folder: Path) -> int:
    return sum(len(names) for _, _, names in os.walk(folder))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shape", nargs=3, type=int, default=[61, 60, 48], help="input shape at 0.1 mm")
    p.add_argument("--spacing", type=float, default=0.06)
    p.add_argument("--chunks", nargs=3, type=int, default=[2, 2, 2])
    p.add_argument("--shards", nargs="+", default=["auto"])
    p.add_argument("--levels", type=int, default=2)
    p.add_argument("--workers", type=int, default=2)
    a = p.parse_args(argv)
    shards = "auto" if a.shards == ["auto"] else tuple(int(v) for v in a.shards)
    scratch = Path(tempfile.mkdtemp(prefix="bench-shards-"))
    try:
        make_volume(scratch / "in.nii", shape=tuple(a.shape))
        outs = {}
        for name, kw in (("unsharded", {}), ("sharded", {"shards": shards})):
            out = scratch / f"{name}.zarr"
            t0 = time.perf_counter()
            resample(scratch / "in.nii", out, spacing=(a.spacing,) * 3, chunks=tuple(a.chunks), levels=a.levels,
                     workers=a.workers, **kw)
            seconds = time.perf_counter() - t0
            validate_ngff(out)
            outs[name] = zarr.open_group(str(out), mode="r")
            counts = [files(out / str(k)) for k in range(a.levels)]
            arr = outs[name]["0"]
            print(f"{name:>9}: level 0 {arr.shape[::-1]} chunks {arr.chunks[::-1]} shards "
                  f"{arr.shards[::-1] if arr.shards else None}; files per level {counts}; {seconds:.1f} s; "
                  f"valid NGFF 0.5")
        for k in range(a.levels):
            assert np.array_equal(outs["unsharded"][str(k)][...], outs["sharded"][str(k)][...])
        print("read back equal, every level")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
