"""Where data lives: a local path, or a URL read and written through fsspec.

Every location bigresample takes may be a URL (``s3://bucket/key``,
``gs://...``, ``az://...``, ``https://...`` read-only, ``file:///...``):

* an OME-Zarr input or ``--reference``, and an OME-Zarr output: zarr 3 opens a
  string with ``://`` as an ``FsspecStore``;
* a NIfTI input (``.nii``, ``.nii.gz``): its header is read from the first
  bytes of the object, its voxels copied once into the local scratch folder
  when the run starts (``volume.InputVolume.attach_data``);
* ``--tmp-dir``: the intermediate zarr store of cluster and ``--keep-zarr``
  runs (the other scratch files, a decompressed or copied input, stay in
  local folders).

The protocol's library (s3fs, gcsfs, adlfs, aiohttp) must be installed on the
client and on every worker.  Credentials come from where that library looks
(environment, its config files, fsspec's config, ``FSSPEC_S3_...``
variables); ``--storage-option KEY=VALUE`` passes options to it
(``storage_options``), the same options for every URL of a run.  Nothing here
prints an option's value: messages name the URL without any user:password
part (``display``) and errors are reduced to one line (``why``) with the
options' values masked.

This module decides what is a URL and what an object store can do; the other
modules ask it.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from . import safefs
from .errors import BigresampleError, one_line

#: The package a protocol needs, and the pip command that installs it.
PACKAGES = {
    "s3": ("s3fs", "pip install 'bigresample[s3]'"),
    "s3a": ("s3fs", "pip install 'bigresample[s3]'"),
    "gs": ("gcsfs", "pip install gcsfs"),
    "gcs": ("gcsfs", "pip install gcsfs"),
    "az": ("adlfs", "pip install adlfs"),
    "abfs": ("adlfs", "pip install adlfs"),
    "abfss": ("adlfs", "pip install adlfs"),
    "http": ("aiohttp", "pip install aiohttp"),
    "https": ("aiohttp", "pip install aiohttp"),
}
READ_ONLY = ("http", "https")
#: Object stores: no folders, no rename; the first path component is the bucket (container).
BUCKETS = ("s3", "s3a", "gs", "gcs", "az", "abfs", "abfss")


class StoreError(BigresampleError):
    """A URL that cannot be read or written (the message names it, never a secret)."""


def is_url(location) -> bool:
    return isinstance(location, str) and "://" in location


def protocol(url: str) -> str:
    return url.split("://", 1)[0].lower()


def display(location) -> str:
    """``location`` as it may be printed: a URL without any ``user:password@``."""
    if not is_url(location):
        return str(location)
    return re.sub(r"^([A-Za-z0-9+.-]+://)[^/@]*@", r"\1", location)


def name(location) -> str:
    """The last component of a path or URL (``s3://b/x/in.nii.gz`` -> ``in.nii.gz``)."""
    if is_url(location):
        return location.rstrip("/").rsplit("/", 1)[-1]
    return Path(location).name


def join(root, name: str) -> str:
    """``name`` under the folder or URL ``root``."""
    if is_url(root):
        return str(root).rstrip("/") + "/" + name
    return str(Path(root) / name)


address = join  # the store called ``name`` under the folder or URL ``root``


def storage_options(addr, given: dict | None = None) -> dict | None:
    """fsspec options for ``addr`` (for ``zarr.open_*(store=addr, storage_options=...)``):
    None for a local path (zarr refuses options there)."""
    if not is_url(addr):
        return None
    if protocol(addr) in ("file", "local"):
        return {"auto_mkdir": True}  # the local filesystem does not make folders on write by itself
    return dict(given or {})


def parse_option(item: str) -> tuple[str, object]:
    """``KEY=VALUE`` of ``--storage-option``: ``true``/``false`` become booleans,
    a value starting with ``{`` or ``[`` is read as JSON (``config_kwargs={...}``),
    anything else stays a string (an access key of digits too).  ValueError
    names the item without its value."""
    import json

    key, sep, value = str(item).partition("=")
    key = key.strip()
    if not sep or not key or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
        # the item itself is not shown: it may be a secret without its KEY=
        raise ValueError("--storage-option must be KEY=VALUE with KEY a name"
                         + (f"; got the key {key[:40]!r}" if sep else "; got an item without '='"))
    if value.lower() in ("true", "false"):
        return key, value.lower() == "true"
    if value[:1] in "{[" and value:
        try:
            return key, json.loads(value)
        except ValueError:
            raise ValueError(f"--storage-option {key}: the value starts like JSON but is not JSON") from None
    return key, value


def _missing_library(url: str, exc: Exception) -> str:
    proto = protocol(url)
    if proto in PACKAGES:
        package, pip = PACKAGES[proto]
        return f"the {proto}:// protocol needs {package}: {pip}"
    return one_line(exc)


def filesystem(url: str, given: dict | None = None):
    """``(fs, path)`` for ``url``; StoreError (one line, with the pip command
    when the protocol's library is missing) for an unknown protocol or a bad URL."""
    import fsspec

    try:
        fs, path = fsspec.core.url_to_fs(url, **(storage_options(url, given) or {}))
    except ImportError as exc:
        raise StoreError(f"{display(url)}: {_missing_library(url, exc)}") from None
    except (ValueError, TypeError) as exc:  # unknown protocol, a bad URL, an option the library does not take
        raise StoreError(f"{display(url)}: {redact(one_line(exc), given)}") from None
    # fsspec shares one instance per set of options; its listings may predate what
    # zarr (another instance) or another process wrote since
    fs.invalidate_cache()
    return fs, path


def problem(location: str, given: dict | None = None, write: bool = False) -> str | None:
    """Why ``location`` (a folder or URL to read, or with ``write`` to write,
    a store in) cannot be used, or None.  Connects to nothing."""
    if not is_url(location):
        return None if os.path.isdir(location) else "no such folder"
    if write and protocol(location) in READ_ONLY:
        return f"{protocol(location)}:// is read-only"
    try:
        fs, path = filesystem(location, given)
    except StoreError as exc:
        return str(exc).split(": ", 1)[-1]
    protocols = fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,)
    if "file" in protocols and not os.path.isdir(path):
        return "no such folder"
    return None


#: Exception types (by name: each protocol's library has its own) that mean no credentials were found.
NO_CREDENTIALS = ("NoCredentialsError", "PartialCredentialsError", "NoAuthTokenError", "CredentialRetrievalError")
#: ... that mean the endpoint did not answer.
UNREACHABLE = ("EndpointConnectionError", "ConnectTimeoutError", "ConnectionClosedError", "ClientConnectorError",
               "ServerDisconnectedError")
#: The stores' error codes for a bucket (container) that does not exist: S3's and GCS's, Azure's.
NO_BUCKET = ("NoSuchBucket", "ContainerNotFound")


def _chain(exc: BaseException):
    """``exc`` and the exceptions it was raised from (s3fs keeps botocore's
    ``ClientError`` as the ``__cause__`` of the ``OSError`` it raises)."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def error_code(exc: BaseException) -> tuple[str | None, int | None]:
    """The store's error code and HTTP status behind ``exc`` (botocore's
    ``response``, Azure's ``error_code``/``status_code``, gcsfs's and
    aiohttp's ``code``/``status``), or None for what is not known."""
    code = status = None
    for e in _chain(exc):
        response = getattr(e, "response", None)
        if isinstance(response, dict):
            code = code or (response.get("Error") or {}).get("Code")
            status = status or (response.get("ResponseMetadata") or {}).get("HTTPStatusCode")
        code = code or (getattr(e, "error_code", None) if isinstance(getattr(e, "error_code", None), str) else None)
        for attr in ("status_code", "status", "code"):
            value = getattr(e, attr, None)
            if status is None and isinstance(value, int) and 100 <= value < 600:
                status = value
    return (str(code) if code is not None else None), status


def _kinds(exc: BaseException) -> set:
    return {type(e).__name__ for e in _chain(exc)}


def no_bucket(exc: BaseException) -> bool:
    """``exc`` says the bucket (container) does not exist: by the store's error code."""
    return error_code(exc)[0] in NO_BUCKET


def why(exc: BaseException, given: dict | None = None) -> str:
    """What went wrong talking to a store, in a few words (no traceback, no
    secret).  Told apart by the exceptions' types and the store's error codes
    and status, never by words of a message (which names the path: a bucket
    may be called "bucket")."""
    kind, kinds = type(exc).__name__, _kinds(exc)
    text = one_line(exc)
    code, status = error_code(exc)
    if kinds & set(NO_CREDENTIALS):
        return ("no credentials found (set them in the environment, e.g. AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY, in the library's config files, or with --storage-option)")
    if kinds & set(UNREACHABLE) or any(isinstance(e, ConnectionError) for e in _chain(exc)):
        return f"cannot reach the object store ({redact(text, given)})"
    if code in NO_BUCKET:
        return "the bucket does not exist"
    if isinstance(exc, FileNotFoundError) or status == 404:
        return "not found"
    if isinstance(exc, PermissionError) or status == 403:
        return f"access denied ({redact(text, given)})"
    return f"{kind}: {redact(text, given)}" if text != kind else kind


def redact(text: str, given: dict | None) -> str:
    """``text`` with every string value of the storage options masked."""
    for value in (given or {}).values():
        if isinstance(value, str) and len(value) >= 4:
            text = text.replace(value, "***")
    return text


def info(url: str, given: dict | None = None) -> dict:
    """fsspec's ``info`` of the object at ``url``; StoreError naming the URL
    and the problem (missing, unreachable, no credentials)."""
    fs, path = filesystem(url, given)
    try:
        return fs.info(path)
    except Exception as exc:
        raise StoreError(f"{display(url)}: {why(exc, given)}") from None


def exists(url: str, given: dict | None = None) -> bool:
    fs, path = filesystem(url, given)
    try:
        return fs.exists(path)
    except Exception as exc:
        raise StoreError(f"{display(url)}: {why(exc, given)}") from None


def check_reachable(url: str, given: dict | None = None) -> None:
    """StoreError unless the store that would hold ``url`` answers (its bucket
    exists, the endpoint is reachable, credentials are found).  Asked before
    anything is written."""
    fs, path = filesystem(url, given)
    try:
        fs.info(path)
        return
    except FileNotFoundError as exc:  # a missing key is fine; a missing bucket is not
        if no_bucket(exc):
            raise StoreError(f"{display(url)}: the bucket does not exist") from None
    except Exception as exc:
        raise StoreError(f"{display(url)}: {why(exc, given)}") from None
    if protocol(url) in BUCKETS:
        bucket = path.strip("/").split("/", 1)[0]
        try:
            found = fs.exists(bucket)
        except Exception as exc:
            raise StoreError(f"{display(url)}: {why(exc, given)}") from None
        if not found:
            raise StoreError(f"{display(url)}: the bucket {bucket!r} does not exist or cannot be reached")


def identity(url: str, given: dict | None = None) -> dict:
    """What tells an object (or a zarr prefix, every object below it) apart
    from an edited one: its URL, sizes, and ETags or modification times as
    fsspec reports them."""
    import hashlib

    fs, path = filesystem(url, given)
    try:
        top = fs.info(path)
        entries = fs.find(path, detail=True) if top.get("type") == "directory" else {path: top}
    except Exception as exc:
        raise StoreError(f"{display(url)}: {why(exc, given)}") from None
    digest = hashlib.sha256()
    size = 0
    for key in sorted(entries):
        e = entries[key]
        tag = e.get("ETag") or e.get("etag") or e.get("LastModified") or e.get("mtime") or e.get("last_modified")
        size += int(e.get("size") or 0)
        digest.update(f"{key}\0{e.get('size')}\0{tag}\n".encode())
    return {"url": display(url), "objects": len(entries), "size": size, "tags": digest.hexdigest()}


def remove(addr: str, given: dict | None = None) -> None:
    """Delete the store at ``addr``; a store already gone is fine."""
    if not is_url(addr):
        safefs.remove(addr)  # never follows a link
        return
    try:
        fs, path = filesystem(addr, given)
        if fs.exists(path):
            fs.rm(path, recursive=True)
    except (OSError, StoreError):
        pass


def remove_image(url: str, given: dict | None = None) -> None:
    """Remove the zarr group at ``url`` so that no reader sees it any more:
    its metadata first (``zarr.json``, ``.zattrs``, ``.zgroup``), then
    everything below.  StoreError when the store refuses."""
    fs, path = filesystem(url, given)
    try:
        for meta in ("zarr.json", ".zattrs", ".zgroup"):
            if fs.exists(f"{path.rstrip('/')}/{meta}"):
                fs.rm(f"{path.rstrip('/')}/{meta}")
        if fs.exists(path):
            fs.rm(path, recursive=True)
    except Exception as exc:
        raise StoreError(f"{display(url)}: cannot remove the existing image: {why(exc, given)}") from None


