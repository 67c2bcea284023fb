"""pytest's shared fixtures and the hypothesis profiles; the shared helpers are in helpers.py."""

import os

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

from bigresample.errors import one_line

from .helpers import bigresample_ome_groups, validate_ngff

settings.register_profile(
    "default", max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile(
    "thorough", max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


@pytest.fixture(autouse=True)
def _every_ome_zarr_written_is_valid_ngff(request):
    """After each test that had a ``tmp_path``: every OME-Zarr bigresample wrote there validates
    (ome-zarr-models), so no route (levels, labels, shards, URLs through file://) writes one that does not."""
    yield
    root = request.node.funcargs.get("tmp_path") if hasattr(request.node, "funcargs") else None
    if root is None:
        return
    for group in bigresample_ome_groups(root):
        try:
            validate_ngff(group)
        except Exception as exc:  # pydantic's ValidationError, or zarr's on a broken array
            pytest.fail(f"{group}: not valid OME-NGFF 0.5: {one_line(exc)[:400]}")
