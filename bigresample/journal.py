"""What a partial output was made for, and which of its blocks are finished.

Beside the partial output (``.NAME.bigresample-partial.nii[.gz]`` in the
output's folder) sits ``.NAME.bigresample-journal``: a first line with the
identity of the run (the input file's path, size, modification time and inode,
and every parameter that changes the output's bytes), then one line per
finished block, appended after the block's bytes are in the file.  A process
killed at any moment leaves at worst a block that is written but not yet
journaled; it is recomputed on the next run, which is harmless because writing
a block is idempotent.  A torn last line is ignored.

Runs through a zarr store (cluster, ``--keep-zarr``, OME-Zarr output) use
the same journal and block numbers (``blocks.BlockSet``'s file order),
recording a block when its task has returned; the store's address is part of
the identity.

For a .nii.gz the blocks are gzip members appended in order; a block's line
also records the file length after its member, so a rerun truncates the
partial file to the last journaled member and carries on from there.
"""

from __future__ import annotations

import glob
import json
import os
from pathlib import Path

from . import safefs

FORMAT = 1


def input_identity(path) -> dict:
    """What tells an input apart from an edited one.  A folder (OME-Zarr) is
    every file below it: chunks rewritten in place change no folder's stat.  A glob (TIFF slices) is
    the files it matches."""
    if glob.has_magic(str(path)) and not os.path.exists(path):
        files = sorted(glob.glob(str(path)))
        stats = [os.stat(f) for f in files]
        return {"pattern": str(Path(path).absolute()), "files": files, "bytes": sum(st.st_size for st in stats),
                "newest_mtime_ns": max((st.st_mtime_ns for st in stats), default=0)}
    st = os.stat(path)
    out = {
        "path": str(Path(path).resolve()),
        "size": st.st_size,
        "mtime_ns": st.st_mtime_ns,
        "inode": st.st_ino,
    }
    if Path(path).is_dir():
        files, size, newest = 0, 0, 0
        for folder, _, names in os.walk(path):
            for name in names:
                f = os.stat(os.path.join(folder, name))
                files, size, newest = files + 1, size + f.st_size, max(newest, f.st_mtime_ns)
        out.update(files=files, bytes=size, newest_mtime_ns=newest)
    return out


class Journal:
    def __init__(self, path, identity: dict):
        self.path = Path(path)
        self.identity = {"format": FORMAT, **identity}
        self._f = None

    def load(self) -> tuple[dict[int, int | None], str | None]:
        """Finished blocks of a previous run for the same identity.

        Returns ``(done, note)``: ``done`` maps block index to the file length
        after it (or None); ``note`` explains why an existing journal was not
        used (None when there was none or it matched).
        """
        if not os.path.lexists(self.path):
            return {}, None
        try:
            with os.fdopen(safefs.open_existing(self.path, os.O_RDONLY), encoding="utf-8") as f:
                lines = f.read().splitlines()
            head = json.loads(lines[0]) if lines else None
        except safefs.UnsafePathError:
            raise
        except (OSError, ValueError, UnicodeDecodeError):
            return {}, "its journal is unreadable"
        if head != self.identity:
            return {}, "it was made for another input file or other parameters"
        done: dict[int, int | None] = {}
        for line in lines[1:]:
            parts = line.split()
            try:
                if len(parts) == 1:
                    done[int(parts[0])] = None
                elif len(parts) == 2:
                    done[int(parts[0])] = int(parts[1])
            except ValueError:
                break  # a torn last line
        return done, None

    def start(self, keep: bool) -> None:
        """Open for appending; a fresh journal unless ``keep``.  Never through a
        link someone planted at the journal's name (``safefs``)."""
        if keep:
            self._f = os.fdopen(safefs.open_existing(self.path, os.O_WRONLY | os.O_APPEND), "a")
            return
        self._f = os.fdopen(safefs.create_file(self.path, os.O_WRONLY | os.O_APPEND), "a")
        self._f.write(json.dumps(self.identity, sort_keys=True) + "\n")
        self._f.flush()

    def record(self, index: int, length: int | None = None) -> None:
        self._f.write(f"{index}\n" if length is None else f"{index} {length}\n")
        self._f.flush()

    def close(self) -> None:
        if self._f is not None:
            self._f.close()
            self._f = None
