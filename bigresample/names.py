"""The names the command line offers, in a module that imports nothing.

``bigresample --help`` and the parsing of a command line need these words
before anything numeric is imported (``import bigresample.cli`` loads no
numpy, nibabel or scipy: ``tests/test_startup.py``); the modules that act on
them (``splines``, ``bounds``, ``labels``) take them from here.
"""

#: scipy.ndimage's boundary modes.  'grid-mirror' is scipy's alias of 'reflect'.
SCIPY_MODES = (
    "nearest",
    "constant",
    "reflect",
    "grid-mirror",
    "mirror",
    "wrap",
    "grid-wrap",
    "grid-constant",
)
#: the name of ITK's rule outside the input (``--mode itk``: ``bounds``)
ITK = "itk"
#: every ``--mode``: scipy.ndimage's boundary modes and ITK's rule
MODES = SCIPY_MODES + (ITK,)
#: ``--labels METHOD``: nearest neighbour (``--labels`` alone), and the methods of ``labels``
LABEL_METHODS = ("nearest", "linear", "cubic", "mode")
