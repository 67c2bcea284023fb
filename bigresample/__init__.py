"""bigresample: exact, chunked, out-of-core resampling of very large NIfTI volumes."""

__version__ = "0.1.0"

from .engine import Resampler
from .geometry import Grid, GeometryError, make_grid, voxel_spacing
from .lazy import resample_array
from .splines import MODES, SplineError, halo

__all__ = [
    "GeometryError",
    "Grid",
    "MODES",
    "Resampler",
    "SplineError",
    "__version__",
    "halo",
    "make_grid",
    "resample_array",
    "voxel_spacing",
]
