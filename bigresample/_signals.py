"""SIGTERM and SIGINT in the command-line process, from its first import to its exit.

``cli.main`` turns SIGTERM into ``KeyboardInterrupt`` while it runs (exit
143, finished blocks kept, one line).  Before it runs -- while ``python -m
bigresample`` or the ``bigresample`` script imports the package, or
``cli._main`` the modules a run needs (numpy, nibabel: about half a second,
several under load) -- a signal used to take
its default action, or for Ctrl-C print a traceback from inside an import.
This module is imported first by ``bigresample/__init__.py`` and, only in the
command-line process (``sys.argv[0]`` is ``-m`` while runpy imports the
package, or the script's path ends in ``bigresample``), handles both signals
in three stages:

* importing: nothing exists yet: one line, exit 143 or 130 at once;
* running (``cli.main``, ``running()``): ``KeyboardInterrupt``, as before;
* done (``leave()``): the exit status is decided; a late signal is ignored
  (SIG_IGN: a handled signal would be put back to its default action by the
  interpreter's finalisation and kill the process: -15/-2).

``leave(status)`` then ends the command-line process with ``os._exit`` once
the ``atexit`` functions have run and stdout and stderr are flushed: whatever
the status, the interpreter's finalisation (tearing down every module numpy,
nibabel and the package loaded) is work nobody needs, 0.05-0.1 s of CPU at
the end of every run (benchmarks/README.md, "Start-up and per-block
overheads").  After an interruption it is also the only safe end: the worker threads are
daemons (executors.Threads) that may still be inside compiled code (the
kernel, zlib, numpy) with the GIL released; an interpreter finalising around
them ends each one that asks for the GIL back with ``pthread_exit``, whose
forced unwinding through C frames can abort the process (SIGABRT) instead of
exiting 143 (issue 28; tools/kill_stress.py).  Nothing is lost: the journal
is closed and every block it names was flushed to the partial output before
it was named (sinks: ``commit``).  A library caller (``cli.main([...])``
in-process, tests) is never exited: ``leave`` just returns the status.
"""

import _signal  # the C module: signal.py would first import enum
import os
import sys

_STATUS = {_signal.SIGTERM: 128 + _signal.SIGTERM, _signal.SIGINT: 130}
_stage = "importing"
received: set[int] = set()  # the signals that raised KeyboardInterrupt while running


def is_command_line() -> bool:
    argv0 = sys.argv[0] if sys.argv else ""
    return argv0 == "-m" or os.path.basename(argv0) in ("bigresample", "bigresample.exe")


def _handle(signum, frame):
    if _stage == "importing":
        try:
            os.write(2, b"bigresample: interrupted\n")
        finally:
            os._exit(_STATUS.get(signum, 130))
    if _stage == "running":
        received.add(signum)
        raise KeyboardInterrupt
    # done: the exit status is decided; let the process end with it


# at once, and with modules CPython has already loaded (_signal, os, sys): a
# Ctrl-C during a further import here would still be Python's own traceback
_active = False
if is_command_line():
    try:
        _signal.signal(_signal.SIGTERM, _handle)
        _signal.signal(_signal.SIGINT, _handle)
        _active = True
    except ValueError:  # not the main thread: the caller's signals are not ours to take
        pass


def running() -> None:
    """``cli.main`` has started: signals become ``KeyboardInterrupt`` (it installs its own SIGTERM handler too)."""
    global _stage
    if _active:
        _stage = "running"


def leave(status: int) -> int:
    """``cli.main``'s exit status: later signals are ignored; the command-line
    process ends here (see the module's docstring)."""
    global _stage
    if not _active:
        return status
    _stage = "done"
    for signum in _STATUS:  # ignored, not handled: the exit status is decided
        _signal.signal(signum, _signal.SIG_IGN)
    import atexit

    atexit._run_exitfuncs()  # what libraries registered (and timeline's record), as a normal exit would
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(status)
