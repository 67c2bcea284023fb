"""bigresample: exact, chunked, out-of-core resampling of very large NIfTI volumes."""

__version__ = "0.1.0"

from .engine import Resampler
from .geometry import Grid, GeometryError, make_grid, voxel_spacing
from .lazy import resample_array
from .pipeline import ResampleResult, resample, resample_nifti_spacing
from .splines import MODES, SplineError, halo

__all__ = [
    "GeometryError",
    "Grid",
    "MODES",
    "ResampleResult",
    "Resampler",
    "SplineError",
    "__version__",
    "halo",
    "make_grid",
    "resample",
    "resample_array",
    "resample_nifti_spacing",
    "voxel_spacing",
]
