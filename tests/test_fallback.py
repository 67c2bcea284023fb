"""The pure-Python fallback (bigresample/_pykernel.py) that runs without the C
extension: chosen in one place (``kernel._load``), forced by
``BIGRESAMPLE_KERNEL=python``, taken when the extension does not import, said
once in the report, and giving the whole-array call's values (CI also runs the
kernel, engine, transform and reference tests with it forced: .ci/run)."""

import importlib
import sys

import numpy as np
import pytest
from scipy import ndimage

import bigresample
from bigresample import _pykernel, engine, kernel
from bigresample.cli import main
from bigresample.engine import Resampler, Workspace
from bigresample.geometry import make_grid
from bigresample.inputs import open_input
from bigresample.provenance import of_volume
from bigresample.splines import poles, prefilter_gain, prefilter_planes, start_horizon
from bigresample.transform import AffineResampler

from .helpers import (assert_matches_reference, blockwise, check_general, engine_reference, kernel_volume,
                      make_volume, rotated_grid, whole)


@pytest.fixture
def reload_kernel():
    """``kernel`` chosen again (after the test's own environment); chosen once more
    afterwards, with the environment monkeypatch has restored (request this fixture
    before ``monkeypatch``: fixtures are torn down in the reverse order)."""
    yield lambda: importlib.reload(kernel)
    importlib.reload(kernel)


def _spy(monkeypatch, owner, name):
    calls = []
    real = getattr(owner, name)

    def spy(*args, **kwargs):
        calls.append(name)
        return real(*args, **kwargs)

    monkeypatch.setattr(owner, name, spy)
    return calls


def _run_both_paths(monkeypatch):
    """A rotated block-by-block run (the general path) and a zoom (the separable
    engine), each checked against the whole-array call; the fallback's functions
    counted as they run."""
    general = _spy(monkeypatch, _pykernel, "resample_block")
    separable = _spy(monkeypatch, engine, "_eval_axis_numpy")
    data = kernel_volume((40, 36, 30), np.float32, seed=1)
    g = rotated_grid(data.shape, (34, 31, 27), (8, -11, 23), (1.1, 0.9, 1.2), (-4, 3, -2))
    for order in (0, 1, 3):
        got = blockwise(AffineResampler(g, order, "mirror", cval=0.0), data, (13, 17, 9), np.float32)
        check_general(got, whole(data, g, order, "mirror", 0.0, np.float32), data, order, 0.0, g)
    z = make_grid(data.shape, (1.0, 1.0, 1.0), (1.3, 0.8, 1.1))
    got = Resampler(z, 3, "nearest").compute(data, tuple(slice(0, n) for n in z.out_shape), np.float32)
    assert_matches_reference(got, engine_reference(data, z, 3, "nearest", output=np.float32), data, 3)
    return general, separable


def test_the_environment_variable_switches_to_the_fallback(reload_kernel, monkeypatch):
    monkeypatch.setenv(kernel.ENV, "python")
    reload_kernel()
    assert kernel._kernel is _pykernel and not kernel.COMPILED
    assert kernel.describe().startswith("pure-Python fallback (no compiled kernel: BIGRESAMPLE_KERNEL=python)")
    general, separable = _run_both_paths(monkeypatch)
    assert len(general) > 10 and len(separable) >= 3  # every block of the general path, every axis of the zoom


@pytest.mark.skipif(not kernel.COMPILED, reason="the fallback runs already")
def test_unset_the_compiled_kernel_runs_and_the_fallback_does_not(reload_kernel, monkeypatch):
    monkeypatch.delenv(kernel.ENV, raising=False)
    reload_kernel()
    assert kernel.COMPILED and kernel._kernel.__name__ == "bigresample._kernel"
    general, separable = _run_both_paths(monkeypatch)
    assert general == [] and separable == []


def _without_extension(monkeypatch):
    """As if ``bigresample._kernel`` was never built: its import fails."""
    monkeypatch.delenv(kernel.ENV, raising=False)
    monkeypatch.setitem(sys.modules, "bigresample._kernel", None)  # import of it: ImportError
    monkeypatch.delattr(bigresample, "_kernel", raising=False)


def test_a_missing_extension_gives_the_fallback_and_the_report_says_so_once(reload_kernel, monkeypatch, tmp_path,
                                                                            capsys):
    _without_extension(monkeypatch)
    reload_kernel()
    assert kernel._kernel is _pykernel and not kernel.COMPILED
    general, separable = _run_both_paths(monkeypatch)
    assert general and separable
    make_volume(tmp_path / "in.nii")
    for extra in (["--dry-run"], []):
        assert main([str(tmp_path / "in.nii"), str(tmp_path / "out.nii"), "--spacing", "0.2", "0.1", "0.15",
                     "--no-progress", *extra]) == 0
        lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("Kernel:")]
        assert len(lines) == 1
        assert lines[0].startswith("Kernel: pure-Python fallback (no compiled kernel: bigresample._kernel was not "
                                   "built (no C compiler at install time?)), about ")
        assert "slower" in lines[0]
    steps = of_volume(open_input(tmp_path / "out.nii", read_data=False))["steps"]
    assert steps[-1]["resampling"]["kernel"] == "python"  # the provenance says it too


@pytest.mark.parametrize("value, message", [
    ("fast", "BIGRESAMPLE_KERNEL must be one of auto, compiled, python (or unset); got 'fast'"),
    ("compiled", "BIGRESAMPLE_KERNEL=compiled, but bigresample._kernel was not built (no C compiler at install "
                 "time?)"),
])
def test_a_kernel_it_cannot_give_is_refused_in_one_line(reload_kernel, monkeypatch, tmp_path, capsys, value,
                                                        message):
    if value == "compiled":
        _without_extension(monkeypatch)
    monkeypatch.setenv(kernel.ENV, value)
    reload_kernel()
    make_volume(tmp_path / "in.nii")
    assert main([str(tmp_path / "in.nii"), str(tmp_path / "out.nii"), "--spacing", "0.2", "0.1", "0.15"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"bigresample: error: {message}") and err.count("\n") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.nii"]


@pytest.mark.parametrize("xtype", ["u1", "i2", "f4", "f8"])
def test_the_fallbacks_axis_sum_is_the_engines_numpy_sum_bit_for_bit(xtype):
    rng = np.random.default_rng(3)
    x = (rng.standard_normal((3, 11, 7)) * 90).clip(0 if xtype == "u1" else -200, 200).astype(xtype)
    for ntaps in (1, 2, 4, 6):
        index = rng.integers(0, 11, size=(5, ntaps))
        weights = rng.standard_normal((5, ntaps))
        for out_type in ("f4", "f8"):
            got, want = np.empty((3, 5, 7), out_type), np.empty((3, 5, 7), out_type)
            _pykernel.axis_sum(x, got, index, weights)
            engine._eval_axis_numpy(x, 1, index, weights, want, Workspace(), "t")
            assert got.tobytes() == want.tobytes()
        got = np.empty((3, 5, 7), x.dtype)
        _pykernel.axis_take(x, got, index)
        np.testing.assert_array_equal(got, np.take(x, index[:, 0], axis=1))


def test_the_fallbacks_label_boxes_counts_and_boxes_every_key():
    keys = np.random.default_rng(3).integers(5, 12, (4, 6, 7)).astype(np.uint16)
    counts, boxes = np.zeros(9, np.int64), np.zeros((9, 6), np.int64)
    _pykernel.label_boxes(keys, 4, counts, boxes)
    for k in range(9):
        where = np.argwhere(keys == 4 + k)
        assert counts[k] == len(where)
        if len(where):
            assert boxes[k].tolist() == [int(v) for a, b in zip(where.min(0), where.max(0)) for v in (a, b)]
    with pytest.raises(ValueError, match="key"):
        _pykernel.label_boxes(keys, 4, counts[:7], boxes[:7])


@pytest.mark.parametrize("mode", ["nearest", "mirror", "reflect", "grid-wrap", "constant"])
def test_the_fallbacks_spline_filter_lines_is_scipys_spline_filter1d_bit_for_bit(mode):
    from bigresample.splines import start_kind

    data = np.random.default_rng(0).standard_normal((5, 23, 6)) * 1000
    for order in (2, 3, 5):
        got = data.copy()
        _pykernel.spline_filter_lines(got[:, ::-1], order, kernel.PREFILTER_KINDS[start_kind(mode)], np.empty(6))
        want = ndimage.spline_filter1d(data[:, ::-1], order, axis=1, mode=mode)
        assert got[:, ::-1].tobytes() == want.tobytes()


@pytest.mark.parametrize("mode", ["nearest", "mirror", "reflect", "grid-wrap", "constant"])
def test_the_fallbacks_prefilter_lines_is_the_planewise_prefilter_bit_for_bit(mode):
    from bigresample.splines import start_kind

    data = np.random.default_rng(0).standard_normal((5, 70, 6)) * 1000
    for order in (2, 3, 5):
        zs = poles(order)
        got, want = data.copy(), data.copy()
        _pykernel.prefilter_lines(got, prefilter_gain(zs), list(zs), [start_horizon(z, 70) for z in zs],
                                  kernel.PREFILTER_KINDS[start_kind(mode)], np.empty(6))
        prefilter_planes(want, want, order, mode, 1)
        assert got.tobytes() == want.tobytes()
