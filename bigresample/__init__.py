"""bigresample: exact, chunked, out-of-core resampling of very large NIfTI volumes."""

from . import _signals  # noqa: F401  first: the command line's signals during the imports below (see there)
from ._version import __version__

#: each public name and the module that defines it, imported when the name is first asked for
#: (PEP 562): ``import bigresample.cli`` (``bigresample --help``) loads no numpy, nibabel or scipy,
#: and only the lazy array API loads dask (0.6 s to import); tests/test_startup.py
_PUBLIC = {
    "AffineResampler": "transform",
    "BigresampleError": "errors",
    "GeometryError": "geometry",
    "Grid": "geometry",
    "MODES": "splines",
    "ReferenceGrid": "geometry",
    "ResampleResult": "pipeline",
    "Resampler": "engine",
    "SplineError": "splines",
    "halo": "splines",
    "make_grid": "geometry",
    "reference_grid": "geometry",
    "resample": "pipeline",
    "resample_array": "lazy",
    "resample_nifti_spacing": "pipeline",
    "voxel_spacing": "geometry",
}

__all__ = sorted([*_PUBLIC, "__version__"])


def __getattr__(name):
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module 'bigresample' has no attribute {name!r}")
    from importlib import import_module

    value = getattr(import_module(f".{module}", __name__), name)
    globals()[name] = value  # once: later lookups do not come here
    return value


def __dir__():
    return __all__
