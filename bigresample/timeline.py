"""An opt-in timeline of one run: ``BIGRESAMPLE_TIMELINE=FILE`` (for benchmarks, not a user option).

With the variable set, the run records where its time goes -- the imports a
run needs, planning, the worker threads' start, each block's read, compute
and write, the calling thread's wait for the next block in order and its
commit (sink and journal), the background and final flushes, the output's
check and rename -- and writes them to FILE as JSON when the process exits:
``{"origin": S, "spans": [[thread, phase, block, start, end], ...]}`` in
``time.perf_counter`` seconds, ``origin`` the process's start on that clock
(from ``/proc/self/stat``, to 10 ms).  ``benchmarks/bench_timeline.py`` runs
jobs with it and prints the sums.

Without it, ``now()`` returns None and ``span`` does nothing: two calls per
recorded step, no clock read, nothing kept.
"""

import os
import threading
import time

_PATH = os.environ.get("BIGRESAMPLE_TIMELINE") or None
on = _PATH is not None
_spans: list = []  # list.append is atomic: the worker threads append without a lock


def now():
    """The start of a span (``time.perf_counter()``), or None when the timeline is off."""
    return time.perf_counter() if on else None


def span(phase: str, start, block=None):
    """Record ``phase`` from ``start`` (``now()``) until now, in this thread; returns now (the next
    span's start), or None when the timeline is off."""
    if start is None:
        return None
    end = time.perf_counter()
    _spans.append((threading.current_thread().name, phase, block, start, end))
    return end


def _origin():
    """The process's start on ``time.perf_counter``'s clock (CLOCK_MONOTONIC; boot time, which
    ``/proc/self/stat`` counts from, differs from it only by time suspended), or None."""
    try:
        with open("/proc/self/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        started = int(fields[19]) / os.sysconf("SC_CLK_TCK")  # field 22: starttime, in clock ticks since boot
        return started - (time.clock_gettime(time.CLOCK_BOOTTIME) - time.perf_counter())
    except (OSError, ValueError, IndexError, AttributeError):
        return None


def _save():
    import json

    with open(_PATH, "w") as f:
        json.dump({"origin": _origin(), "saved": time.perf_counter(), "spans": _spans}, f)


if on:
    import atexit

    atexit.register(_save)
