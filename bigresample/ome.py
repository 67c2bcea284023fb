"""OME-Zarr output (NGFF 0.5: a zarr v3 group with an ``ome`` attribute).

An OUTPUT ending in ``.zarr`` is written as one image: array ``0`` holds the
resampled volume in NGFF axis order (``t``, then ``z, y, x``: NIfTI's file
order, so the blocks go in as whole chunks exactly as for the intermediate
store), with ``scale`` (the output spacing) and ``translation`` (where voxel
0's centre is) as its coordinateTransformations, in the header's unit.

NGFF 0.5 has no rotation: for an axis-aligned affine with positive diagonal
the transformations are exact; otherwise ``scale`` holds the voxel spacing
(the affine's column norms) and ``translation`` the world position of voxel
0, and the full NIfTI affine is kept in the group attribute
``bigresample.nifti_affine`` (x, y, z order) so that nothing is lost.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .geometry import voxel_spacing

NGFF_VERSION = "0.5"
UNITS = {"mm": "millimeter", "micron": "micrometer", "meter": "meter", "unknown": "millimeter"}
TIME_UNITS = {"sec": "second", "msec": "millisecond", "usec": "microsecond"}


def is_axis_aligned(affine) -> bool:
    a = np.asarray(affine, dtype=np.float64)[:3, :3]
    return bool(np.all(a[~np.eye(3, dtype=bool)] == 0) and np.all(np.diag(a) > 0))


def metadata(name: str, affines, units: str, extra_shape=(), time_step=None, time_unit="sec") -> dict:
    """The group's attributes for one image whose levels ``0, 1, ...`` have
    the output ``affines`` (spatial axes x, y, z)."""
    if len(extra_shape) > 1:
        raise ValueError("OME-Zarr output takes 3D or 4D (time) images")
    unit = UNITS.get(units, "millimeter")
    axes = [{"name": ax, "type": "space", "unit": unit} for ax in "zyx"]
    if extra_shape:
        axes.insert(0, {"name": "t", "type": "time", "unit": TIME_UNITS.get(time_unit, "second")})
    datasets = []
    for level, affine in enumerate(affines):
        a = np.asarray(affine, dtype=np.float64)
        scale = [float(v) for v in voxel_spacing(a)[::-1]]
        translation = [float(v) for v in a[:3, 3][::-1]]
        if extra_shape:
            scale.insert(0, float(time_step) if time_step and time_step > 0 else 1.0)
            translation.insert(0, 0.0)
        datasets.append({"path": str(level), "coordinateTransformations": [
            {"type": "scale", "scale": scale},
            {"type": "translation", "translation": translation},
        ]})
    a0 = np.asarray(affines[0], dtype=np.float64)
    return {
        "ome": {"version": NGFF_VERSION, "multiscales": [{"name": name, "axes": axes, "datasets": datasets}]},
        "bigresample": {"nifti_affine": a0.tolist(), "axis_aligned": is_axis_aligned(a0)},
    }


def create_group(path, attrs: dict) -> None:
    import zarr

    group = zarr.open_group(str(path), mode="w", zarr_format=3)
    group.attrs.update(attrs)


class SpatialView:
    """A file-order (``..., z, y, x``) array seen spatial-first, like a nibabel proxy."""

    def __init__(self, array):
        self.array = array
        self.shape = tuple(array.shape)[::-1]
        self.dtype = array.dtype
        self.ndim = len(self.shape)

    def __getitem__(self, slices):
        slices = tuple(slices) + (slice(None),) * (self.ndim - len(slices))
        return np.asarray(self.array[slices[::-1]]).T


def open_image(path) -> SpatialView:
    import zarr

    return SpatialView(zarr.open_array(str(Path(path) / "0"), mode="r"))


def written_scale(path) -> list[float]:
    """The level-0 scale as written in the group's metadata (NGFF axis order)."""
    import zarr

    ms = zarr.open_group(str(path), mode="r").attrs["ome"]["multiscales"][0]
    return list(ms["datasets"][0]["coordinateTransformations"][0]["scale"])
