"""The one base class of every error bigresample raises for bad arguments or input.

The command line catches ``BigresampleError`` and prints its message as one
line (exit status 2).  Each module keeps its own subclass, named after what
went wrong (``InputError``, ``UsageError``, ``GeometryError``...), and all of
them stay ``ValueError``s, as callers may already catch.
"""


class BigresampleError(ValueError):
    """Arguments or input that bigresample refuses; the message names the value."""


class InputError(BigresampleError):
    """An input file that cannot be resampled; the message names the file and the problem."""


class UsageError(BigresampleError):
    """Arguments that cannot describe a resampling (named with the value); defined here, not in ``request``,
    so that the command line parses its arguments before anything numeric is imported."""


class DiskSpaceError(InputError):
    """Not enough free space for what the run must write."""


def one_line(exc) -> str:
    """An exception's text on one line (or its type's name when it has none), for a message."""
    return " ".join(str(exc).split()) or type(exc).__name__
