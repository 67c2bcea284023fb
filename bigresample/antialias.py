"""Anti-aliasing: Gaussian smoothing along the downsampled axes before sampling.

Sigma rule, in input voxels, per axis downsampled by ``r = t / s > 1``:
``sigma = (r - 1) / 2`` -- the default of scikit-image's
``skimage.transform.resize(..., anti_aliasing=True)`` (``anti_aliasing_sigma
= max(0, (factor - 1) / 2)``).  Axes that are kept or upsampled are not
smoothed.  The filter is ``scipy.ndimage.gaussian_filter1d`` with
``mode='nearest'`` and ``truncate=4`` along each such axis in turn, in
float64; the resampling then runs on the smoothed values.

Chunked exactly: ``Smoothed`` is an array-like over the raw source whose
regions are read with the filter's own halo (``int(4 * sigma + 0.5)``
voxels per side, clamped at the volume's edges and padded with the edge
value, which is what ``mode='nearest'`` does), filtered, and cropped, so any
block equals the same block of the whole-array filter.
"""

from __future__ import annotations

import numpy as np

TRUNCATE = 4.0


def sigmas(ratios) -> tuple[float, ...]:
    """Gaussian sigma (input voxels) per axis for the ratios ``t / s``."""
    return tuple(max(0.0, (float(r) - 1.0) / 2.0) for r in ratios)


def radius(sigma: float) -> int:
    """Half-width of scipy's gaussian_filter1d kernel."""
    return int(TRUNCATE * float(sigma) + 0.5) if sigma > 0 else 0


class Smoothed:
    """The source after the anti-aliasing filter, read region by region
    (spatial axes first, like the source; float64 values)."""

    def __init__(self, source, sigma):
        self.source = source
        self.sigma = tuple(float(s) for s in sigma)
        self.shape = tuple(int(n) for n in source.shape)
        self.dtype = np.dtype(np.float64)
        self.ndim = len(self.shape)

    def __getitem__(self, slices):
        from scipy.ndimage import gaussian_filter1d

        slices = tuple(slices) + (slice(None),) * (self.ndim - len(slices))
        if any(s.step not in (None, 1) for s in slices):
            base = self[tuple(slice(*s.indices(n)[:2]) for s, n in zip(slices, self.shape))]
            return base[tuple(slice(None, None, s.step) for s in slices)]
        bounds = [s.indices(n)[:2] for s, n in zip(slices, self.shape)]
        want, read, pads = [], [], []
        for ax, ((a, b), n) in enumerate(zip(bounds, self.shape)):
            h = radius(self.sigma[ax]) if ax < len(self.sigma) else 0
            lo, hi = a - h, b + h
            rlo, rhi = max(lo, 0), min(hi, n)
            want.append(slice(h, h + (b - a)))
            read.append(slice(rlo, rhi))
            pads.append((rlo - lo, hi - rhi))
        x = np.asarray(self.source[tuple(read)], dtype=np.float64)
        if any(p != (0, 0) for p in pads):
            x = np.pad(x, pads, mode="edge")
        for ax, s in enumerate(self.sigma):
            if s > 0:
                x = gaussian_filter1d(x, s, axis=ax, mode="nearest", truncate=TRUNCATE)
        return x[tuple(want)]

    def __getstate__(self):
        return {"source": self.source, "sigma": self.sigma}

    def __setstate__(self, state):
        self.__init__(state["source"], state["sigma"])
