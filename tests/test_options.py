"""The options are written once: ``Request.make``'s keywords are ``resample``'s, with the same defaults, and
every one ``resample`` is given reaches the request; the command line sets only keywords ``Request.make`` takes."""

import inspect

import pytest

from bigresample import cli, pipeline
from bigresample.request import Request

RENDERING = {"progress", "log", "report"}  # resample's own: how the report is shown, not what is asked


def _params(fn):
    return {k: p.default for k, p in inspect.signature(fn).parameters.items()}


def test_resample_and_request_make_take_the_same_keywords_with_the_same_defaults():
    ours = {k: v for k, v in _params(pipeline.resample).items() if k not in RENDERING}
    assert ours == _params(Request.make)


class _Caught(Exception):
    pass


def test_every_keyword_given_to_resample_reaches_the_request(monkeypatch):
    seen = {}

    def capture(cls, input, output, **kw):
        seen.update(kw, input=input, output=output)
        raise _Caught
    monkeypatch.setattr(Request, "make", classmethod(capture))
    names = [k for k in _params(pipeline.resample) if k not in RENDERING]
    sentinels = {k: object() for k in names}
    with pytest.raises(_Caught):
        pipeline.resample(**sentinels)
    assert {k for k in names if seen.get(k) is not sentinels[k]} == set()


def test_the_command_line_sets_only_keywords_the_request_takes():
    args = cli.build_parser().parse_args(["in.nii", "out.nii", "--spacing", "1", "1", "1"])
    assert set(cli._options(args)) <= set(_params(Request.make))
