"""Where a run's blocks go: one small class per output route.

Every sink keeps the finished blocks in a partial output beside the final
one (a hidden file or folder in the output's folder, or a zarr store), and
the run's journal (``bigresample.journal``) says which blocks it holds.  The
run loop (``bigresample.runner``) drives a sink through one interface:

``begin(stage, done)``
    open the partial output, or resume it: returns the writer that a worker
    calls with each computed block, and the journaled blocks that the partial
    output still holds (the others are computed again);
``commit(i, payload)``
    in the calling thread, once block ``i``'s payload is written or ready:
    returns the ``(block, file length)`` pairs to journal now;
``end(ok)``
    close what ``begin`` opened (flushed to disk when ``ok``);
``finish()``
    the blocks are all there: complete, check and move the output into place
    (atomically: nothing but a complete, checked file is ever found at the
    output path);
``cleanup()``
    after success: remove what only served the run (an unkept zarr store).

Routes:

* ``RawNifti`` (.nii): workers write each block at its file offsets;
* ``GzipNifti`` (.nii.gz): workers compress each block into a gzip member,
  appended in file order (blocks that are not stretches of the file are first
  assembled into slabs of whole planes);
* ``StoreThenNifti`` (a cluster's or ``--keep-zarr``'s zarr store, then a
  NIfTI streamed out of it): workers write whole chunks of a file-order zarr
  v3 store, wherever they run;
* ``OmeZarr`` (.zarr): workers write the chunks of level 0 (then of each
  pyramid level) of an NGFF image; the finished folder replaces the output.

A new format is an ``outputs.OutputFormat`` whose ``make_sink`` returns one of
these, or a class of its own.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import threading
from pathlib import Path

import nibabel as nib
import numpy as np

from . import ome
from . import safefs
from . import location
from .codec import gzip_member
from .errors import BigresampleError, one_line
from .geometry import voxel_spacing
from .nifti import NiftiWriter, create_raw_output, header_bytes, written_header
from .provenance import without
from .rawio import BackgroundSync, PathWriter, RawWriter


def partial_path(output: Path, kind: str) -> Path:
    """The partial output beside ``output``: ``.NAME.bigresample-partial.EXT``."""
    return output.parent / f".{output.name[: -len(kind)]}.bigresample-partial{kind}"


class Sink:
    """The interface (see the module docstring); ``remote``: its writer may run
    in another process (it writes to storage every worker sees)."""

    remote = False
    #: the partial output was found in an intermediate zarr store (report wording)
    in_store = False

    def __init__(self, output: Path, header, kind: str):
        self.output, self.header, self.kind = output, header, kind
        self.partial = partial_path(output, kind)

    def where(self, stage) -> str:
        """Where ``stage``'s finished blocks are kept (named when a run is interrupted)."""
        return str(self.partial)

    def describe(self) -> str:
        """The partial output, for 'not resuming ...' notes."""
        return f"the partial output {self.partial.name}"

    def has_leftover(self) -> bool:
        """Something an earlier run left is there (so a journal that cannot be used is worth a note)."""
        return True

    def kept_in(self, stage) -> str | None:
        """Where ``stage``'s finished blocks are kept when that is not the partial output
        itself (a store, a folder of members), for the journal's identity; else None."""
        return None

    def begin(self, stage, done: dict):
        raise NotImplementedError

    def commit(self, i: int, payload) -> list[tuple[int, int | None]]:
        return [(i, None)]

    def end(self, ok: bool) -> None:
        pass

    def finish(self, progress) -> None:
        """``progress(total, desc, unit)``: a progress bar for long steps (``Report.bar``)."""
        raise NotImplementedError

    def cleanup(self) -> None:
        pass

    def written(self):
        """(data, affine, spacing in header units) of the finished output, read back."""
        img = nib.load(self.output)
        return img.dataobj, img.affine, voxel_spacing(img.affine)


class OutputError(BigresampleError):
    """The partial output is not what the run wrote (changed behind its back)."""


def _check_nifti(path: Path, hdr, kind: str) -> None:
    """The file at ``path`` has a readable header of the right shape and, for
    .nii, exactly the right size; else it is removed (a rerun starts over)."""
    try:
        img = nib.load(path)
        shape = tuple(img.shape)
    except Exception as exc:  # nibabel raises many types for an unreadable file
        why = f"it cannot be read back ({one_line(exc)})"
    else:
        why = None
        if shape != tuple(int(d) for d in hdr.get_data_shape()):
            why = f"it has shape {shape}, expected {tuple(hdr.get_data_shape())}"
        elif kind == ".nii":
            need = int(hdr.get_data_offset()) + int(np.prod(hdr.get_data_shape())) * hdr.get_data_dtype().itemsize
            if path.stat().st_size != need:
                why = f"it has {path.stat().st_size} bytes, expected {need}"
    if why:
        path.unlink(missing_ok=True)
        raise OutputError(f"the partial output {path} was changed while the run wrote it: {why}; it is "
                          "removed, run the same command again")


class _NiftiFile(Sink):
    def has_leftover(self) -> bool:
        return self.partial.exists()

    def finish(self, progress) -> None:
        _check_nifti(self.partial, self.header, self.kind)
        os.replace(self.partial, self.output)


class RawNifti(_NiftiFile):
    """.nii: the partial file has its full size from the start; blocks are
    written at their offsets, in any order: by the local threads through one
    descriptor, or (``remote``) by dask workers that open the file by its path
    on a filesystem they all see.  Locally the file is flushed to disk while it
    is written (``rawio.BackgroundSync``), and once more at the end."""

    def __init__(self, output, header, kind, remote: bool = False):
        super().__init__(output, header, kind)
        self.remote = remote

    def begin(self, stage, done):
        data = int(np.prod(stage.blocks.shape, dtype=np.int64)) * self.header.get_data_dtype().itemsize
        self._fd = self._resumable(data) if done and self.partial.exists() else None
        if self._fd is not None:
            offset = int(self.header.get_data_offset())
        else:
            done = {}
            self._fd, offset = create_raw_output(self.partial, self.header)
        if self.remote:
            return PathWriter(self.partial.resolve(), offset, stage.blocks.shape, self.header.get_data_dtype()), done
        self._sync = BackgroundSync(self._fd)
        return RawWriter(self._fd, offset, stage.blocks.shape, self.header.get_data_dtype()).write_from, done

    def _resumable(self, data: int) -> int | None:
        """The partial output opened for resuming, if it begins with this run's
        header (but for the provenance record: its own is kept, with the date
        the output was started) and has its full size; else None."""
        fd = safefs.open_existing(self.partial, os.O_RDWR)
        kept = written_header(fd)
        if (kept is not None and os.fstat(fd).st_size == int(kept.get_data_offset()) + data
                and header_bytes(without(kept)) == header_bytes(without(self.header))):
            self.header = kept  # what finish() checks the file against
            return fd
        os.close(fd)
        return None

    def end(self, ok):
        sync, self._sync = getattr(self, "_sync", None), None
        error = sync.stop() if sync is not None else None
        fd, self._fd = getattr(self, "_fd", None), None
        if fd is not None:
            try:
                if ok:
                    os.fsync(fd)
                    if error is not None:  # met by the background flush: the fsync above may not see it
                        raise error
            finally:
                os.close(fd)


class GzipNifti(_NiftiFile):
    """.nii.gz: a gzip member for the header, then one per block (or per slab
    of whole planes), appended in file order; a block's journal line records
    the file length after its member, so a rerun truncates to the last one."""

    def begin(self, stage, done):
        # members are appended in order: keep the unbroken prefix 0..k-1
        k = 0
        while k in done:
            k += 1
        length = done[k - 1] if k else None
        resume = k > 0 and self.partial.exists() and self.partial.stat().st_size >= length
        done = {i: done[i] for i in range(k)} if resume else {}
        if resume:
            f = self._f = os.fdopen(safefs.open_existing(self.partial, os.O_RDWR), "r+b")
        else:
            f = self._f = os.fdopen(safefs.create_file(self.partial), "wb")
        if resume:
            f.truncate(length)
            f.seek(length)
        else:
            f.write(gzip_member(header_bytes(self.header)))
        if stage.blocks.is_file_stretch:
            self._assembler = None
            return _compress, done
        self._assembler = _SlabAssembler(stage.blocks, self.header.get_data_dtype(), f)
        return self._assembler.work, done

    def commit(self, i, payload):
        if self._assembler is not None:
            return self._assembler.commit(i)
        self._f.write(payload)
        self._f.flush()  # in the file before the journal names it (a kill then loses nothing journaled)
        return [(i, self._f.tell())]

    def end(self, ok):
        f, self._f = getattr(self, "_f", None), None
        if f is not None:
            try:
                if ok:
                    f.flush()
                    os.fsync(f.fileno())
            finally:
                f.close()


def _compress(region, block) -> bytes:
    return gzip_member(block)


class GzipMembers(_NiftiFile):
    """.nii.gz on a cluster: each worker compresses its block (a stretch of the
    file) into a gzip member file in ``.NAME.bigresample-members/`` beside the
    output, on a filesystem every worker sees; at the end the client
    concatenates the header's member and the blocks' in file order, byte
    copies that never decompress (RFC 1952 allows members back to back).  A
    member file appears whole (written under a temporary name, then renamed),
    so a block is journaled once its file is there, and a rerun keeps them."""

    remote = True

    def __init__(self, output, header, kind):
        super().__init__(output, header, kind)
        self.members = output.parent / f".{output.name[: -len(kind)]}.bigresample-members"

    def where(self, stage) -> str:
        return str(self.members)

    kept_in = where

    def describe(self) -> str:
        return f"the compressed blocks in {self.members.name}"

    def has_leftover(self) -> bool:
        return os.path.lexists(self.members)

    def begin(self, stage, done):
        self.blocks = stage.blocks
        if done and os.path.lexists(self.members):
            safefs.check_leftover(self.members, want_dir=True)
            done = {i: None for i in done if (self.members / f"{i}.gz").is_file()}
        else:
            done = {}
            safefs.make_dir(self.members)
        return MemberWriter(self.members.resolve(), stage.blocks), done

    def finish(self, progress) -> None:
        with os.fdopen(safefs.create_file(self.partial), "wb") as out, \
                progress(len(self.blocks), "concatenating", unit="block") as bar:
            out.write(gzip_member(header_bytes(self.header)))
            out.flush()
            for i in range(len(self.blocks)):
                with open(self.members / f"{i}.gz", "rb") as member:
                    _append(member, out)
                bar.update(1)
            out.flush()
            os.fsync(out.fileno())
        super().finish(progress)

    def cleanup(self) -> None:
        safefs.remove(self.members)


def _append(src, dst) -> None:
    """Append the file ``src`` to ``dst`` (both unbuffered at this point): in
    the kernel (``copy_file_range``, no bytes through this process) where the
    filesystem allows, else by ``shutil.copyfileobj``."""
    size = os.fstat(src.fileno()).st_size
    try:
        while size > 0:
            n = os.copy_file_range(src.fileno(), dst.fileno(), size)
            if n == 0:
                break
            size -= n
    except OSError:  # another filesystem, an old kernel
        if size:
            src.seek(os.fstat(src.fileno()).st_size - size)
            shutil.copyfileobj(src, dst)
            dst.flush()


class MemberWriter:
    """A worker's half of ``GzipMembers``: block ``i`` compressed into
    ``FOLDER/i.gz`` (atomically; a task dask reruns writes the same file).
    Picklable: the folder's path and the block set."""

    def __init__(self, folder, blocks):
        self.folder, self.blocks = str(folder), blocks

    def __call__(self, region, block) -> None:
        name = os.path.join(self.folder, f"{self.blocks.index(region)}.gz")
        tmp = f"{name}.{secrets.token_hex(6)}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
        try:
            with os.fdopen(fd, "wb") as f:  # no fsync per block: the output is flushed once, when finished
                f.write(gzip_member(block))
            os.replace(tmp, name)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise


class _SlabAssembler:
    """For .nii.gz blocks that are not stretches of the file: workers copy
    their block into the buffer of its slab (whole x-y planes, as thick as the
    block); when a slab's last block is committed, the slab is compressed into
    one gzip member and appended, and all its blocks are journaled.  Buffers
    are reused; at most a few slabs are open at a time."""

    def __init__(self, blocks, dtype, f):
        self.blocks, self.dtype, self.f = blocks, np.dtype(dtype), f
        self.open, self.free, self.lock = {}, [], threading.Lock()

    def work(self, region, block) -> None:
        s = self.blocks.slab(self.blocks.index(region))
        x, y = self.blocks.shape[:2]
        shape = block.shape[:-2] + (y, x)
        with self.lock:
            buf = self.open.get(s)
            if buf is None:
                spare = self.free.pop() if self.free else None
                n = int(np.prod(shape)) * self.dtype.itemsize
                if spare is None or spare.nbytes < n:
                    spare = np.empty(n, dtype=np.uint8)
                buf = self.open[s] = spare[:n].view(self.dtype).reshape(shape)
        buf[..., region[1], region[0]] = block

    def commit(self, i):
        s = self.blocks.slab(i)
        members = self.blocks.slab_blocks(s)
        if i != members[-1]:
            return []
        buf = self.open.pop(s)
        self.f.write(gzip_member(buf))
        self.f.flush()  # in the file before the journal names its blocks
        length = self.f.tell()
        self.free.append(buf.reshape(-1).view(np.uint8))
        return [(j, length) for j in members]


class StoreWriter:
    """Writes a block as one whole chunk of a file-order zarr array (so a task
    that dask reruns writes the same bytes); picklable: the array's address."""

    def __init__(self, array):
        self.array = array

    def __call__(self, region, block) -> None:
        self.array[tuple(region)[::-1]] = block  # block: file order, C-contiguous


def _open_store(address: str, layout: dict, done: dict, given: dict | None = None):
    """The zarr v3 array at ``address`` for ``layout`` (shape, chunks, dtype):
    reopened when ``done`` says it holds finished blocks and its layout
    matches, else created afresh.  Returns ``(array, done)``.  ``given``: the
    run's fsspec options, for a URL."""
    import zarr

    options = location.storage_options(address, given)
    local = not location.is_url(address)
    if local:
        safefs.check_leftover(address, want_dir=True)
    array = None
    if done:
        try:
            array = zarr.open_array(address, mode="r+", storage_options=options)
        except (FileNotFoundError, ValueError, KeyError):
            array = None
        if array is not None and ((array.shape, array.chunks, array.dtype, array.shards) !=
                                  (layout["shape"], layout["chunks"], layout["dtype"], layout.get("shards"))):
            array = None
    if array is None:
        done = {}
        if local:
            safefs.make_dir(address)  # a folder of this run's own, never through a planted link
        array = zarr.create_array(store=address, storage_options=options, **layout, fill_value=0,
                                  compressors=None, zarr_format=3, overwrite=True)
    return array, done


def store_layout(out_shape, block, dtype, ngff: bool = False, shard=None, names=None) -> dict:
    """A zarr array whose chunks are the blocks: in file order (axes reversed,
    C-ordered: the chunks are the blocks' bytes as they go into the NIfTI), or
    in NGFF order (leading axes such as ``t, c`` in order, then ``z, y, x``).
    ``shard``: a sharded array, ``block`` its chunk and ``shard`` its shards
    (``plan.shard_plan``: each block a whole shard).  ``names``: the axes'
    ``dimension_names`` in the array's order (NGFF 0.5 requires them)."""
    n = len(out_shape)
    chunks = tuple(block) + (1,) * (n - len(block))
    order = list(range(n))[::-1]
    if ngff:
        order = list(range(3, n)) + [2, 1, 0]
    layout = dict(shape=tuple(out_shape[k] for k in order), chunks=tuple(chunks[k] for k in order),
                  dtype=np.dtype(dtype))
    if shard is not None:
        shards = tuple(shard) + (1,) * (n - len(shard))
        layout["shards"] = tuple(shards[k] for k in order)
    if names is not None:
        layout["dimension_names"] = tuple(names)
    return layout


class StoreThenNifti(_NiftiFile):
    """A file-order zarr store that workers anywhere write (a cluster's, or
    ``--keep-zarr``'s), streamed into the NIfTI at the end.  A block is one
    whole chunk; the journal records a block once its task has returned
    (zarr does not write a chunk equal to the fill value, so the store itself
    cannot tell a finished block from a missing one)."""

    remote = True
    in_store = True

    def __init__(self, output, header, kind, store: str, keep: bool, options: dict | None = None):
        super().__init__(output, header, kind)
        self.store, self.keep, self.options = store, keep, options

    def where(self, stage) -> str:
        return location.display(self.store)

    def kept_in(self, stage) -> str:
        return self.store

    def describe(self) -> str:
        return f"the zarr store {location.display(self.store)}"

    def begin(self, stage, done):
        layout = store_layout(stage.blocks.shape, stage.blocks.block, self.header.get_data_dtype())
        self.array, done = _open_store(self.store, layout, done, self.options)
        return StoreWriter(self.array), done

    def finish(self, progress) -> None:
        try:
            stream_store(self.array, self.partial, self.header, progress)
            super().finish(progress)
        except BaseException:
            self.partial.unlink(missing_ok=True)
            raise

    def cleanup(self) -> None:
        if not self.keep:
            location.remove(self.store, self.options)


def stream_store(array, path, hdr, progress) -> None:
    """Stream a file-order zarr array into the NIfTI ``path``, slab by slab."""
    from zarr.core.buffer.cpu import NDBuffer

    zaxis = len(array.shape) - 3  # z in file order (..., z, y, x)
    slabs = [
        idx + (slice(z0, min(z0 + array.chunks[zaxis], array.shape[zaxis])),)
        for idx in np.ndindex(*array.shape[:zaxis])
        for z0 in range(0, array.shape[zaxis], array.chunks[zaxis])
    ]
    # one reused slab buffer: reading into fresh arrays costs 4-7x more here
    # (first-touch page faults; 0.06 s vs 0.24-0.42 s for 200 MB)
    buf = np.empty((array.chunks[zaxis],) + tuple(array.shape[zaxis + 1:]), dtype=array.dtype)
    with progress(len(slabs), "writing", unit="slab") as bar, NiftiWriter(path, hdr) as w:
        for region in slabs:
            slab = buf[: region[-1].stop - region[-1].start]
            array.get_basic_selection(region, out=NDBuffer.from_ndarray_like(slab))
            w.write_file_order(slab)
            bar.update(1)


class OmeZarr(Sink):
    """An NGFF 0.5 image: a group with level 0 (then each pyramid level) as
    arrays in NGFF order, written chunk by chunk by the workers.

    In a folder, the partial folder (group metadata first) replaces the
    output when finished.  At a URL (an object store has no rename), the
    arrays are written under the output's own prefix and the group's
    ``zarr.json``, which holds the multiscales metadata, last: a reader finds
    no image there until every array is complete.  An image already at the
    URL is removed when the run starts (its metadata first), so that no reader
    sees old metadata over new chunks."""

    remote = True

    def __init__(self, output, header, kind, attrs: dict, dtype, affine, options: dict | None = None):
        self.url = location.is_url(output)
        if self.url:
            self.output, self.header, self.kind, self.partial = output, header, kind, None
        else:
            super().__init__(output, header, kind)
        self.attrs, self.dtype, self.affine, self.options = attrs, np.dtype(dtype), affine, options

    @property
    def root(self):
        """Where the arrays are written: the partial folder, or the output URL itself."""
        return self.output if self.url else self.partial

    def where(self, stage) -> str:
        return location.display(location.join(self.root, str(stage.level)))

    kept_in = where

    def describe(self) -> str:
        if self.url:
            return f"the arrays at {location.display(self.output)}"
        return super().describe()

    def begin(self, stage, done):
        if self.url:
            if stage.level == 0 and not done:
                location.remove_image(self.output, self.options)
        elif stage.level == 0 and not (done and (self.partial / "zarr.json").exists()):
            done = {}
            safefs.make_dir(self.partial)
            ome.create_group(self.partial, self.attrs)
        axes = self.attrs.get("ome", {}).get("multiscales", [{}])[0].get("axes")
        names = [a["name"] for a in axes] if axes else None
        if getattr(stage, "shard", None) is not None:  # a job.Stage; a test's stand-in may have none
            layout = store_layout(stage.blocks.shape, stage.chunk, self.dtype, ngff=True, shard=stage.shard,
                                  names=names)
        else:
            layout = store_layout(stage.blocks.shape, stage.blocks.block, self.dtype, ngff=True, names=names)
        array, done = _open_store(location.join(self.root, str(stage.level)), layout, done, self.options)
        return StoreWriter(ome.NgffWriter(array)), done

    def finish(self, progress) -> None:
        written = ome.open_image(self.root, self.options)
        if written.shape != tuple(int(n) for n in self.header.get_data_shape()):
            raise RuntimeError(f"written OME-Zarr has shape {written.shape}, expected "
                               f"{tuple(self.header.get_data_shape())}")
        if self.url:
            levels = len(self.attrs["ome"]["multiscales"][0]["datasets"])
            for level in range(1, levels):
                ome.open_image(self.output, self.options, level)  # every level's array is there
            ome.create_group(self.output, self.attrs, self.options)  # the metadata last: now the image exists
            return
        _replace_folder(self.partial, self.output)

    def written(self):
        scale = ome.written_scale(self.output, self.options)
        return ome.open_image(self.output, self.options), self.affine, np.array(scale[-3:][::-1])


def _replace_folder(new: Path, target: Path) -> None:
    """Put the finished folder ``new`` at ``target``; an existing ``target``
    stays whole until then (moved aside under a random name, removed after)."""
    old = None
    if os.path.lexists(target):
        old = target.parent / f".{target.name}.bigresample-old-{secrets.token_hex(8)}"
        os.replace(target, old)
    os.replace(new, target)
    if old is not None:
        safefs.remove(old)
