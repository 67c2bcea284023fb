"""bigresample: exact, chunked, out-of-core resampling of very large NIfTI volumes."""

from . import _signals  # noqa: F401  first: the command line's signals during the imports below (see there)
from ._version import __version__

from .engine import Resampler
from .errors import BigresampleError
from .geometry import Grid, GeometryError, ReferenceGrid, make_grid, reference_grid, voxel_spacing
from .pipeline import ResampleResult, resample, resample_nifti_spacing
from .splines import MODES, SplineError, halo
from .transform import AffineResampler

__all__ = [
    "AffineResampler",
    "BigresampleError",
    "GeometryError",
    "Grid",
    "MODES",
    "ReferenceGrid",
    "ResampleResult",
    "Resampler",
    "SplineError",
    "__version__",
    "halo",
    "make_grid",
    "reference_grid",
    "resample",
    "resample_array",
    "resample_nifti_spacing",
    "voxel_spacing",
]


def __getattr__(name):
    # dask.array costs 0.6 s to import; only the lazy array API needs it
    if name == "resample_array":
        from .lazy import resample_array

        return resample_array
    raise AttributeError(f"module 'bigresample' has no attribute {name!r}")
