"""Creating files and folders in folders other users can write (shared lab storage, cluster scratch).

A run's partial output, journal and zarr store have predictable names beside
the output, so that a rerun finds them.  Someone else who can write that
folder could plant a symbolic link at such a name and make the run write
through it into any file the user can write.  So every file or folder
bigresample makes is created here:

* ``create_file`` / ``make_dir``: exclusively (``O_CREAT | O_EXCL |
  O_NOFOLLOW``, ``mkdir``), after removing a leftover that this user's
  earlier run made; a leftover that is a link, of another type, or another
  user's is refused with one line naming it;
* ``open_existing``: a leftover reopened to resume, never through a link,
  only when it is a regular file of this user;
* ``remove``: never follows a link (a link is removed itself; a folder's
  tree is removed with ``shutil.rmtree``, which does not follow links inside);
* ``check_leftover``: the same rules, asked before a run starts, so that a
  planted link refuses the run before anything is computed.

Names that need not be found again (a decompressed input, a picture written
before it is renamed into place) are random (``tempfile.mkstemp``).  What this
cannot prevent: someone who can write the output's folder can always replace
the finished output after the run (docs/files.md, "Shared folders").
"""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

from .errors import BigresampleError, DiskSpaceError


class UnsafePathError(BigresampleError):
    """A file or folder at a name bigresample uses that it did not make."""


def _problem(path: Path, want_dir: bool) -> str | None:
    """Why the leftover at ``path`` may not be reused or removed, or None."""
    st = os.lstat(path)
    if stat.S_ISLNK(st.st_mode):
        return "is a symbolic link"
    if want_dir and not stat.S_ISDIR(st.st_mode):
        return "is not a folder"
    if not want_dir and not stat.S_ISREG(st.st_mode):
        return "is not a regular file"
    if st.st_uid != os.geteuid():
        return f"belongs to another user (uid {st.st_uid})"
    if not want_dir and st.st_nlink > 1:
        return "has other hard links"
    return None


def _refuse(path, why: str):
    return UnsafePathError(f"{path} {why}, so bigresample did not make it: remove it, or write the output elsewhere")


def check_leftover(path, want_dir: bool = False) -> None:
    """Refuse a run whose file (or folder) name ``path`` is taken by something
    this user's bigresample cannot have made."""
    path = Path(path)
    if os.path.lexists(path):
        why = _problem(path, want_dir)
        if why:
            raise _refuse(path, why)


def remove(path) -> None:
    """Remove ``path`` (a file, a link, or a folder's tree) without following links; gone already is fine."""
    path = Path(path)
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _clear(path: Path, want_dir: bool) -> None:
    """Remove a leftover of this user's own at ``path``; refuse anything else."""
    if os.path.lexists(path):
        why = _problem(path, want_dir)
        if why:
            raise _refuse(path, why)
        remove(path)


def create_file(path, flags: int = os.O_WRONLY, mode: int = 0o644) -> int:
    """A new, empty regular file at ``path`` (a leftover of this user's is
    replaced); returns its descriptor.  Never opens through a link."""
    path = Path(path)
    _clear(path, want_dir=False)
    try:
        return os.open(path, flags | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
    except FileExistsError:  # planted between the removal and the creation
        raise _refuse(path, "appeared while bigresample was making it") from None


def open_existing(path, flags: int) -> int:
    """Reopen this user's regular file at ``path`` (to resume, or to read a
    journal); never through a link, never blocking on a FIFO planted there."""
    path = Path(path)
    try:
        fd = os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError as exc:
        if os.path.islink(path):
            raise _refuse(path, "is a symbolic link") from None
        raise exc
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid() or st.st_nlink > 1:
        os.close(fd)
        raise _refuse(path, "is not a regular file of this user's alone")
    os.set_blocking(fd, True)
    return fd


def make_dir(path) -> None:
    """A new, empty folder at ``path`` (a leftover folder of this user's is replaced)."""
    path = Path(path)
    _clear(path, want_dir=True)
    try:
        os.mkdir(path)
    except FileExistsError:
        raise _refuse(path, "appeared while bigresample was making it") from None


def check_free_space(folder, need: int, what: str) -> None:
    """Refuse before starting when ``folder``'s filesystem lacks ``need`` bytes."""
    try:
        st = os.statvfs(folder)
    except OSError:
        return
    free = st.f_bavail * st.f_frsize
    if free < need:
        raise DiskSpaceError(
            f"not enough disk space in {folder} for {what}: need {need / 2**30:.2f} GiB, "
            f"{free / 2**30:.2f} GiB free"
        )
