"""Input and output statistics for ``--compare``, computed block by block."""

from __future__ import annotations

import numpy as np

from .volume import InputVolume
from .plan import Plan


def compare_stats(vol: InputVolume, out_data, plan: Plan, workers: int) -> dict:
    """min/max/mean/std of input and output in scaled units, block by block.

    Slab by slab over each file (never whole); moments accumulated in float64
    around each slab's mean (Chan et al.'s parallel update), so the standard
    deviation is accurate for large volumes.
    """
    res = {}  # out_data: the written output, scaled values, spatial axes first (nibabel proxy or ome.SpatialView)
    sources = (("input", vol.source, vol.slope, vol.inter), ("output", out_data, 1.0, 0.0))
    for label, src, slope, inter in sources:
        shape = src.shape
        mn, mx, n, mean, m2 = np.inf, -np.inf, 0, 0.0, 0.0
        dz = max(1, plan.block[2])
        for idx in np.ndindex(*shape[3:]):
            for z0 in range(0, shape[2], dz):
                sl = (slice(None), slice(None), slice(z0, min(z0 + dz, shape[2]))) + tuple(
                    slice(i, i + 1) for i in idx
                )
                a = np.asarray(src[sl], dtype=np.float64)
                if a.size == 0:
                    continue
                mn, mx = min(mn, a.min()), max(mx, a.max())
                k, am = a.size, a.mean()
                d = am - mean
                tot = n + k
                mean += d * k / tot
                m2 += ((a - am) ** 2).sum() + d * d * n * k / tot
                n = tot
        std = np.sqrt(m2 / n) if n else 0.0
        lo, hi = sorted([mn * slope + inter, mx * slope + inter])
        res[label] = {"min": lo, "max": hi, "mean": mean * slope + inter, "std": std * abs(slope)}
    return res
