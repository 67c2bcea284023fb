"""Stored axis orders seen as bigresample's: x, y, z first, then time, then channels.

A TIFF series or a plain Zarr array is usually stored C-ordered as (z, y, x),
(c, z, y, x) or (t, c, z, y, x), or in ImageJ's (t, z, c, y, x).  ``spatial_order``
names which stored axis each of bigresample's axes is (x, y, z, then t, then c,
as a 4-D/5-D NIfTI has them: time is dimension 4, channels dimension 5), and
``AxesView`` reads regions through that map, like ``ome.SpatialView`` does for
NGFF's (t, c, z, y, x).
"""

from __future__ import annotations

import numpy as np

from .errors import BigresampleError

#: what an axis name means: space, time, channel (lower-cased first letter or full name)
_KIND = {"x": "x", "y": "y", "z": "z", "t": "t", "time": "t", "c": "c", "channel": "c", "s": "c",
         "sample": "c"}
#: a sequence axis that stands for z when nothing else does (tifffile's I, Q: pages of a plain stack)
_SEQUENCE = {"i", "q"}


class AxesError(BigresampleError):
    """Stored axes that cannot be mapped onto x, y, z (and time, channels)."""


def spatial_order(names, shape) -> tuple[tuple[int | None, ...], list[dict]]:
    """``(order, extra_axes)`` for an array stored with the axes ``names`` (one per stored axis, e.g.
    tifffile's ``"CZYX"`` or zarr's ``dimension_names``) and ``shape``: ``order[k]`` is the stored axis of
    bigresample's axis k (x, y, z, then t, then c; None: z of a 2-D image, length 1), ``extra_axes`` the
    non-spatial axes as OME-Zarr names them (NGFF order: t, c).  Axes of length 1 that are none of these
    are left out; any other axis is refused, naming the axes."""
    names = [str(n).lower() for n in names]
    shape = tuple(int(n) for n in shape)
    if len(names) != len(shape):
        raise AxesError(f"{len(names)} axis names ({' '.join(names)}) for {len(shape)} dimensions")
    where = {}
    spare = []
    for i, name in enumerate(names):
        kind = _KIND.get(name)
        if kind is None or kind in where:
            if kind is None and name in _SEQUENCE:
                spare.append(i)
                continue
            if shape[i] == 1:
                continue
            raise AxesError(f"cannot map the stored axes {_show(names, shape)} onto x, y, z (time, channel): "
                            f"axis {name!r} of length {shape[i]}")
        where[kind] = i
    if "x" not in where or "y" not in where:
        raise AxesError(f"no x and y axes among the stored axes {_show(names, shape)}")
    if "z" not in where and spare:
        where["z"] = spare.pop(0)  # a plain page sequence: the pages are z
    long_spare = [i for i in spare if shape[i] > 1]
    if long_spare:
        raise AxesError(f"cannot map the stored axes {_show(names, shape)} onto x, y, z (time, channel): "
                        f"axis {names[long_spare[0]]!r} of length {shape[long_spare[0]]}")
    order = (where["x"], where["y"], where.get("z")) + tuple(where[k] for k in "tc" if k in where)
    extra = [{"name": "t", "type": "time", "scale": 1.0} if k == "t" else {"name": "c", "type": "channel", "scale": 1.0}
             for k in "tc" if k in where]
    return order, extra


def _show(names, shape) -> str:
    return "(" + ", ".join(f"{n}={s}" for n, s in zip(names, shape)) + ")"


def describe(names, shape, order, extra) -> str:
    """The report's note on how the stored axes were read (``spatial_order``'s ``order`` and ``extra``)."""
    stored = ", ".join(f"{str(n).lower()}={s}" for n, s in zip(names, shape))
    seen = ", ".join(["x", "y", "z"] + [a["name"] for a in extra])
    virtual = " (a 2-D image: z of length 1)" if order[2] is None else ""
    return f"axes: stored ({stored}), read as {seen}{virtual}"


class AxesView:
    """``array`` (``shape``, ``dtype``, ``__getitem__`` with a tuple of slices and integers, in its stored
    order) seen spatial-first through ``order`` (``spatial_order``); stored axes not in ``order`` have
    length 1 and are read at 0.  Picklable when ``array`` is."""

    def __init__(self, array, order):
        self.array = array
        self.order = tuple(order)
        stored = tuple(int(n) for n in array.shape)
        self.shape = tuple(stored[i] if i is not None else 1 for i in self.order)
        self.dtype = np.dtype(array.dtype)
        self.ndim = len(self.shape)
        kept = sorted(i for i in self.order if i is not None)
        self._perm = tuple(kept.index(i) for i in self.order if i is not None)
        self._stored_ndim = len(stored)

    def __getitem__(self, slices):
        slices = tuple(slices) + (slice(None),) * (self.ndim - len(slices))
        index = [0] * self._stored_ndim
        for s, i in zip(slices, self.order):
            if i is not None:
                index[i] = s
        values = np.asarray(self.array[tuple(index)]).transpose(self._perm)
        if self.order[2] is None:
            values = values[:, :, None]
        return values

    def close(self) -> None:
        close = getattr(self.array, "close", None)
        if close is not None:
            close()
