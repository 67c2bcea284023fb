"""Positional reads and writes of uncompressed image data into reused buffers.

A NIfTI (or Analyze, MGH) image's voxels are one array on disk at a byte
offset, x fastest.  Reading a region with ``os.preadv`` straight into a buffer
the worker already owns costs a copy from the page cache and nothing else,
where going through a fresh array costs a page fault per 4 KiB: 3.2x the time
for a 128 MiB slab on these machines, 1.6x with numpy's huge pages
(benchmarks/bench_engine.py).  Writing a block of the
output is the same in reverse (``os.pwrite`` at the block's offsets), so
blocks can be written by the threads that computed them, in any order.

Arrays handed to ``read_into`` / ``write_from`` are in *file order*: C-ordered
with the axes reversed (``(..., z, y, x)``).  A window that is one stretch of
the file (whole planes) can also be had without a copy, mapped into memory
(``RawReader.mapped``): the general path reads its windows so.
"""

from __future__ import annotations

import itertools
import mmap
import os
import threading

import numpy as np

from . import timeline

def _spans(shape, slices):
    """Contiguous file spans of a region of an x-fastest array.

    Yields ``(element_offset, count, index)``: ``index`` selects the piece of
    the file-order region array (axes reversed) that the span fills.
    """
    rshape = tuple(shape)[::-1]
    rsl = [s.indices(n)[:2] for s, n in zip(tuple(slices)[::-1], rshape)]
    nd = len(rshape)
    j = nd - 1
    while j > 0 and rsl[j] == (0, rshape[j]):
        j -= 1
    inner = int(np.prod(rshape[j + 1 :], dtype=np.int64))
    strides = [int(np.prod(rshape[i + 1 :], dtype=np.int64)) for i in range(nd)]
    a_j, b_j = rsl[j]
    count = (b_j - a_j) * inner
    for idx in itertools.product(*[range(a, b) for a, b in rsl[:j]]):
        off = sum(i * st for i, st in zip(idx, strides)) + a_j * strides[j]
        local = tuple(i - a for i, (a, _) in zip(idx, rsl[:j]))
        yield off, count, local


#: Rows of a region cut short in x closer than this in the file are read a stretch at a time
#: (``RawReader._read_rows_together``) ...
ROW_GAP = 64 * 2**10
#: ... of at most this many bytes
ROW_STRETCH = 4 * 2**20


class RawReader:
    """Array-like over an uncompressed, x-fastest image file.

    ``reader[slices]`` returns a new array (spatial-first axes, like nibabel's
    proxy); ``reader.read_into(slices, out)`` fills a file-order buffer.  It
    pickles as its path and layout, so dask tasks can carry it: each process
    opens the file itself.
    """

    def __init__(self, path, offset: int, shape, dtype):
        self.path = str(path)
        self.offset = int(offset)
        self.shape = tuple(int(n) for n in shape)
        self.dtype = np.dtype(dtype)
        self.ndim = len(self.shape)
        self._local = threading.local()

    def __getstate__(self):
        return {"path": self.path, "offset": self.offset, "shape": self.shape, "dtype": self.dtype.str}

    def __setstate__(self, state):
        self.__init__(state["path"], state["offset"], state["shape"], state["dtype"])

    def __repr__(self):
        return f"RawReader({self.path!r}, offset={self.offset}, shape={self.shape}, dtype={self.dtype.str!r})"

    def _fd(self) -> int:
        # a file object per thread, closed with the thread's local data (a
        # bare descriptor would leak one per worker thread and run)
        f = getattr(self._local, "file", None)
        if f is None:
            f = self._local.file = open(self.path, "rb", buffering=0)
        return f.fileno()

    def read_into(self, slices, out: np.ndarray) -> np.ndarray:
        slices = tuple(slices) + (slice(None),) * (self.ndim - len(slices))
        if self._read_rows_together(slices, out):
            return out
        fd = self._fd()
        item = self.dtype.itemsize
        for off, count, local in _spans(self.shape, slices):
            self._pread(fd, memoryview(out[local].reshape(-1)).cast("B"), self.offset + off * item)
        return out

    def _pread(self, fd: int, view: memoryview, pos: int) -> None:
        got, want = 0, len(view)
        while got < want:
            n = os.preadv(fd, [view[got:]], pos + got)
            if n <= 0:
                raise OSError(f"{self.path}: file ends before its data does (truncated?)")
            got += n

    def _read_rows_together(self, slices, out: np.ndarray) -> bool:
        """Read a region that cuts the file's rows (part of x) a stretch of whole rows at a
        time, through a reused buffer, when the rows are at most ``ROW_GAP`` bytes apart: a
        read per row costs ~10 us of Python and a system call, copying 64 KiB from the page
        cache about as much (a P-I-L reference's window is every input row cut short).
        False (nothing read) for any other region."""
        if self.ndim < 2:
            return False
        item, nx = self.dtype.itemsize, self.shape[0]
        (x0, x1), (y0, y1) = (s.indices(n)[:2] for s, n in zip(slices[:2], self.shape[:2]))
        if (x0, x1) == (0, nx) or x1 <= x0 or y1 <= y0 or (nx - (x1 - x0)) * item > ROW_GAP:
            return False
        rows = max(1, min(y1 - y0, ROW_STRETCH // (nx * item)))
        buf = getattr(self._local, "rows", None)
        if buf is None or buf.size < rows * nx * item:
            buf = self._local.rows = np.empty(rows * nx * item, np.uint8)
        fd = self._fd()
        outer = [s.indices(n)[:2] for s, n in zip(slices[2:], self.shape[2:])]
        strides = np.cumprod((1,) + self.shape[:-1], dtype=np.int64)  # elements per step of each axis
        for idx in itertools.product(*[range(a, b) for a, b in outer]):
            base = sum(int(i) * int(st) for i, st in zip(idx, strides[2:]))
            dst = out[tuple(i - a for i, (a, _) in zip(idx, outer))[::-1]]  # (y, x) of this plane
            for r0 in range(y0, y1, rows):
                r1 = min(r0 + rows, y1)
                chunk = buf[: (r1 - r0) * nx * item]
                self._pread(fd, memoryview(chunk), self.offset + (base + r0 * nx) * item)
                np.copyto(dst[r0 - y0 : r1 - y0], chunk.view(self.dtype).reshape(r1 - r0, nx)[:, x0:x1])
        return True

    def mapped(self, slices) -> np.ndarray | None:
        """``source[slices]`` in file order as a read-only view of the file
        mapped into memory (no copy), if the region is one stretch of the file
        in the machine's byte order; else None (``read_into`` it).  The
        mapping ends when the array is dropped.  The file's size is checked
        first (a file cut short is read, and its error raised, by
        ``read_into``); one cut short *while* mapped would end the process
        (SIGBUS), as it would any reader of a memory-mapped NIfTI."""
        slices = tuple(slices) + (slice(None),) * (self.ndim - len(slices))
        spans = list(itertools.islice(_spans(self.shape, slices), 2))
        if len(spans) != 1 or not self.dtype.isnative:
            return None
        off, count, _ = spans[0]
        shape = tuple(len(range(*s.indices(n))) for s, n in zip(slices, self.shape))[::-1]
        start, length = self.offset + off * self.dtype.itemsize, count * self.dtype.itemsize
        fd = self._fd()
        if length == 0 or os.fstat(fd).st_size < start + length:
            return None  # read_into says what is missing
        skip = start % mmap.ALLOCATIONGRANULARITY
        m = mmap.mmap(fd, skip + length, offset=start - skip, access=mmap.ACCESS_READ)
        return np.frombuffer(m, dtype=self.dtype, count=count, offset=skip).reshape(shape)

    def __getitem__(self, slices):
        slices = tuple(slices) + (slice(None),) * (self.ndim - len(slices))
        shape = tuple(len(range(*s.indices(n))) for s, n in zip(slices, self.shape))
        if any(s.step not in (None, 1) for s in slices):
            full = tuple(slice(*s.indices(n)[:2]) for s, n in zip(slices, self.shape))
            base = self[full]
            return base[tuple(slice(None, None, s.step) for s in slices)]
        out = np.empty(shape[::-1], dtype=self.dtype)
        self.read_into(slices, out)
        return out.T


class PathWriter:
    """Writes a file-order block at its offsets into the file at ``path``, which
    it opens for the one block (never through a link) and closes before
    returning (on a network filesystem, closing flushes to the server):
    picklable (its path and layout), so that a dask worker on another node
    writes its own blocks into a file on a shared filesystem.  As for local
    runs, a block is journaled once its bytes are in the file, and the file
    is flushed to disk once, when it is finished."""

    def __init__(self, path, offset: int, shape, dtype):
        self.path, self.offset = str(path), int(offset)
        self.shape, self.dtype = tuple(int(n) for n in shape), np.dtype(dtype)

    def __call__(self, slices, block: np.ndarray) -> None:
        fd = os.open(self.path, os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            RawWriter(fd, self.offset, self.shape, self.dtype).write_from(slices, block)
        finally:
            os.close(fd)


class RawWriter:
    """Positional writes of file-order blocks into an x-fastest data array."""

    def __init__(self, fd: int, offset: int, shape, dtype):
        self.fd, self.offset = fd, int(offset)
        self.shape = tuple(int(n) for n in shape)
        self.dtype = np.dtype(dtype)

    def write_from(self, slices, block: np.ndarray) -> None:
        if block.dtype != self.dtype or not block.flags.c_contiguous:
            block = np.ascontiguousarray(block, dtype=self.dtype)
        item = self.dtype.itemsize
        for off, count, local in _spans(self.shape, slices):
            view = memoryview(block[local].reshape(-1)).cast("B")
            pos, done = self.offset + off * item, 0
            while done < count * item:
                done += os.pwrite(self.fd, view[done:], pos + done)


#: ``fdatasync`` where the system has it (macOS has ``fsync`` only).
_datasync = getattr(os, "fdatasync", os.fsync)


class BackgroundSync:
    """Hands a file to the disk while it is being written: ``fdatasync`` of
    ``fd`` every ``interval`` seconds in a daemon thread, until ``stop``.

    Left to the end, the final ``fsync`` of a freshly written output waits for
    all of it, and the writers meet the kernel's dirty-page throttling on the
    way; flushed as it grows, the disk works while the blocks are computed
    (a .nii onto a rotated grid, 512x512x300 float32, order 1, 2 threads:
    1.60 -> 1.12 s median of 5, benchmarks/README.md).  The first error is
    kept and returned by ``stop`` (the call that meets a writeback error is
    the one it is reported to, so the final ``fsync`` may not see it)."""

    def __init__(self, fd: int, interval: float = 0.05):
        self._fd, self._interval = fd, interval
        self._stopping = threading.Event()
        self.error: OSError | None = None
        self._thread = threading.Thread(target=self._run, name="bigresample-sync", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stopping.wait(self._interval):
            try:
                t = timeline.now()
                _datasync(self._fd)
                timeline.span("flush", t)
            except OSError as exc:
                self.error = exc
                return

    def stop(self) -> OSError | None:
        """Stop (after the flush under way, if any) and return the error met, if any."""
        self._stopping.set()
        self._thread.join()
        return self.error


class MemoryReader:
    """``RawReader``'s reads over an x-fastest image held in memory instead of a file (a
    gzip-compressed input inflated whole, ``codec.inflate``): ``read_into`` copies the same
    bytes into a file-order buffer, ``mapped`` gives a window that is one stretch of the data
    as a read-only view, ``reader[slices]`` a new array.  It is not picklable: the buffer is
    this process's (a remote executor reads a scratch copy instead, ``nibabel_input.attach``).
    """

    path = None  # no file

    def __init__(self, buffer: np.ndarray, offset: int, shape, dtype):
        self.offset = int(offset)
        self.shape = tuple(int(n) for n in shape)
        self.dtype = np.dtype(dtype)
        self.ndim = len(self.shape)
        count = int(np.prod(self.shape, dtype=np.int64))
        if self.offset < 0 or self.offset + count * self.dtype.itemsize > buffer.nbytes:
            raise ValueError(f"{count} values of {self.dtype} at byte {self.offset} do not fit a buffer of "
                             f"{buffer.nbytes} bytes")
        data = np.frombuffer(buffer, dtype=self.dtype, count=count, offset=self.offset)
        self.data = data.reshape(self.shape[::-1])  # file order
        self.data.flags.writeable = False

    def __reduce__(self):
        raise TypeError("an input held in memory is read by this process's threads only")

    def __repr__(self):
        return f"MemoryReader(offset={self.offset}, shape={self.shape}, dtype={self.dtype.str!r})"

    def _window(self, slices) -> np.ndarray:
        slices = tuple(slices) + (slice(None),) * (self.ndim - len(slices))
        return self.data[tuple(slice(*s.indices(n)[:2]) for s, n in zip(slices, self.shape))[::-1]]

    def read_into(self, slices, out: np.ndarray) -> np.ndarray:
        np.copyto(out, self._window(slices), casting="no")
        return out

    def mapped(self, slices) -> np.ndarray | None:
        """As ``RawReader.mapped``: the window as a read-only view when it is one stretch of the
        data in the machine's byte order, else None (``read_into`` it)."""
        win = self._window(slices)
        return win if win.size and win.flags.c_contiguous and self.dtype.isnative else None

    def __getitem__(self, slices):
        slices = tuple(slices) + (slice(None),) * (self.ndim - len(slices))
        return self.data[tuple(slices)[::-1]].copy().T
