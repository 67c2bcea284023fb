"""The one base class of every error bigresample raises for bad arguments or input.

The command line catches ``BigresampleError`` and prints its message as one
line (exit status 2).  Each module keeps its own subclass, named after what
went wrong (``InputError``, ``UsageError``, ``GeometryError``...), and all of
them stay ``ValueError``s, as callers may already catch.
"""


class BigresampleError(ValueError):
    """Arguments or input that bigresample refuses; the message names the value."""
