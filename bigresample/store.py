"""Where the intermediate zarr store lives: a local folder or a URL.

``--tmp-dir`` names a folder, or a URL that zarr opens through fsspec
(``s3://bucket/scratch``, ``gs://...``, ``file:///shared/scratch``): zarr 3
turns a string with ``://`` into an ``FsspecStore``.  The protocol's library
(s3fs, gcsfs, ...) must be installed on the client and on every worker; its
credentials come from the usual places (environment, config files), as fsspec
reads them.  A URL holds only the zarr store: the other scratch files (a
decompressed ``.nii.gz`` input, the partial output) stay in local folders.
"""

from __future__ import annotations

import os
from pathlib import Path

from . import safefs


def is_url(location) -> bool:
    return isinstance(location, str) and "://" in location


def address(root, name: str) -> str:
    """The store called ``name`` under the folder or URL ``root``."""
    if is_url(root):
        return root.rstrip("/") + "/" + name
    return str(Path(root) / name)


def storage_options(addr: str) -> dict | None:
    """fsspec options for ``zarr.create_array(store=addr, ...)``."""
    if is_url(addr) and addr.split("://", 1)[0] in ("file", "local"):
        return {"auto_mkdir": True}  # the local filesystem does not make folders on write by itself
    return None


def _filesystem(url: str):
    import fsspec

    return fsspec.core.url_to_fs(url, **(storage_options(url) or {}))


def problem(location: str) -> str | None:
    """Why ``location`` (a folder or URL to put a store in) cannot be used, or None."""
    if not is_url(location):
        return None if os.path.isdir(location) else "no such folder"
    try:
        fs, path = _filesystem(location)
    except (ImportError, ValueError) as e:  # unknown protocol, its library missing, a bad URL
        return " ".join(str(e).split()) or type(e).__name__
    protocols = fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,)
    if "file" in protocols and not os.path.isdir(path):
        return "no such folder"
    return None


def remove(addr: str) -> None:
    """Delete the store at ``addr``; a store already gone is fine."""
    if not is_url(addr):
        safefs.remove(addr)  # never follows a link
        return
    try:
        fs, path = _filesystem(addr)
        if fs.exists(path):
            fs.rm(path, recursive=True)
    except OSError:
        pass
