"""Writing the blocks of a run: into the output file directly, or through a zarr store.

Direct (the default): worker threads write each finished block into the
partial output, at its offsets for .nii or as a gzip member appended in file
order for .nii.gz, and the journal records it (``bigresample.journal``).
Through a zarr store (cluster runs, ``--keep-zarr``): blocks are tasks of a
dask graph writing whole chunks of a file-order store, streamed out afterwards.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import nibabel as nib
import numpy as np

from . import store as store_location
from .cluster import compute_blocks
from .engine import thread_workspace
from .codec import gzip_member
from .nifti import NiftiWriter, create_raw_output, header_bytes
from .ome import NgffWriter
from .rawio import RawWriter
from .runner import block_regions, run_blocks


class _NoBar:
    def update(self, n=1):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def _bar(total, desc, enabled, unit="block"):
    if not enabled:
        return _NoBar()
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit=unit, leave=False, dynamic_ncols=True)


def _file_contiguous(block, out_shape) -> bool:
    """Blocks of this shape, in file order, are consecutive stretches of the file."""
    bx, by, bz = block
    x, y, _ = out_shape
    return (bx == x and by == y) or (bx == x and bz == 1) or (by == 1 and bz == 1)


class Interrupted(KeyboardInterrupt):
    """Stopped by Ctrl-C or SIGTERM; the partial output and its journal are kept."""

    def __init__(self, partial: Path, done: int, total: int):
        super().__init__(f"{done} of {total} blocks done")
        self.partial, self.done, self.total = partial, done, total


def compute_direct(resampler, source, out_dtype, plan, out_full, hdr, tmp_out, kind, workers, progress,
                    journal, done) -> int:
    """Blocks straight into the partial output: at their offsets (.nii), or as
    gzip members appended in file order (.nii.gz).  Blocks in ``done`` (from
    the journal of an interrupted run) are not computed again.  Returns how
    many blocks were reused."""
    regions = block_regions(out_full, plan.block)
    size = int(np.prod(out_full, dtype=np.int64)) * hdr.get_data_dtype().itemsize
    head = header_bytes(hdr)
    finished = [0]
    if kind == ".nii":
        resume = bool(done) and tmp_out.exists() and tmp_out.stat().st_size == len(head) + size
        done = done if resume else {}
    else:
        # members are appended in order: keep the unbroken prefix 0..k-1
        k = 0
        while k in done:
            k += 1
        length = done[k - 1] if k else None
        resume = k > 0 and tmp_out.exists() and tmp_out.stat().st_size >= length
        done = {i: done[i] for i in range(k)} if resume else {}
    journal.start(keep=resume)
    reused = len(done)
    try:
        with _bar(len(regions), "resampling", progress) as bar:
            bar.update(reused)

            def counted(i):
                finished[0] += 1
                bar.update(1)

            if kind == ".nii":
                if resume:
                    fd, offset = os.open(tmp_out, os.O_RDWR), len(head)
                else:
                    fd, offset = create_raw_output(tmp_out, hdr)
                try:
                    writer = RawWriter(fd, offset, out_full, hdr.get_data_dtype())

                    def commit(i, _):
                        journal.record(i)
                        counted(i)

                    run_blocks(resampler, source, out_dtype, regions, workers,
                               work=writer.write_from, commit=commit, skip=done.__contains__)
                    os.fsync(fd)
                finally:
                    os.close(fd)
            else:
                mode = "r+b" if resume else "wb"
                with open(tmp_out, mode) as f:
                    if resume:
                        f.truncate(length)
                        f.seek(length)
                    else:
                        f.write(gzip_member(head))

                    if _file_contiguous(plan.block, out_full[:3]):

                        def commit(i, member):
                            f.write(member)
                            journal.record(i, f.tell())
                            counted(i)

                        work = lambda region, block: gzip_member(block)  # noqa: E731
                    else:
                        work, commit = _slab_assembler(regions, out_full, hdr.get_data_dtype(), f, journal, counted)
                    run_blocks(resampler, source, out_dtype, regions, workers, work=work, commit=commit,
                               skip=done.__contains__)
                    f.flush()
                    os.fsync(f.fileno())
    except KeyboardInterrupt:
        journal.close()
        raise Interrupted(tmp_out, reused + finished[0], len(regions)) from None
    finally:
        journal.close()
    return reused


def _slab_assembler(regions, out_full, dtype, f, journal, counted):
    """``work``/``commit`` for .nii.gz blocks that are not stretches of the file.

    Workers copy their block into the buffer of its slab (whole x-y planes,
    as thick as the block); when a slab's last block is committed, the slab is
    compressed into one gzip member and appended, and all its blocks are
    journaled.  Buffers are reused; at most a few slabs are open at a time.
    """
    keys = [(r[2].start,) + tuple(s.start for s in r[3:]) for r in regions]
    first, last = {}, {}
    for i, key in enumerate(keys):
        first.setdefault(key, i)
        last[key] = i
    open_slabs, free, lock = {}, [], threading.Lock()

    def work(region, block):
        key = (region[2].start,) + tuple(s.start for s in region[3:])
        shape = block.shape[:-2] + (out_full[1], out_full[0])
        with lock:
            buf = open_slabs.get(key)
            if buf is None:
                spare = free.pop() if free else None
                n = int(np.prod(shape)) * dtype.itemsize
                if spare is None or spare.nbytes < n:
                    spare = np.empty(n, dtype=np.uint8)
                buf = open_slabs[key] = spare[:n].view(dtype).reshape(shape)
        buf[..., region[1], region[0]] = block

    def commit(i, _):
        counted(i)
        key = keys[i]
        if i == last[key]:
            buf = open_slabs.pop(key)
            f.write(gzip_member(buf))
            length = f.tell()
            for j in range(first[key], i + 1):
                journal.record(j, length)
            free.append(buf.reshape(-1).view(np.uint8))

    return work, commit


def store_tasks(resampler, source, out_dtype, out_full, block, store) -> list:
    """One dask task per block of ``out_full`` (in file order): compute the
    block in the worker thread's reused buffers and write it as one whole
    chunk of the file-order ``store``, so a rerun of the task writes the same
    bytes.  The graph holds the resampler, the source's reader and the
    store's address once each, never voxels."""
    import uuid

    from dask import delayed

    token = uuid.uuid4().hex
    res = delayed(resampler, name=f"resampler-{token}")
    src = delayed(source, name=f"source-{token}")
    dst = delayed(store, name=f"store-{token}")
    write = delayed(_compute_and_store, pure=False)
    return [write(res, src, region, out_dtype, dst, dask_key_name=f"block-{token}-{i}")
            for i, region in enumerate(block_regions(out_full, block))]


def _compute_and_store(resampler, source, region, dtype, store) -> None:
    block = resampler.compute_into(source, region, dtype, thread_workspace())  # file order, C-contiguous
    store[tuple(region)[::-1]] = block


def compute_to_zarr(resampler, source, out_dtype, out_full, plan, store_path, workers, progress, journal, done,
                    client=None, ngff=False):
    """Blocks into a zarr v3 store through a dask graph: on local threads
    (``--keep-zarr``) or on a dask.distributed cluster.

    A block is one whole chunk of the store.  The journal records a block
    once its task has returned, i.e. once its chunk is written (zarr writes a
    chunk equal to the fill value not at all, so the store itself cannot tell
    a finished block from a missing one).  Blocks in ``done``, from the
    journal of an interrupted run, are not computed again when the store they
    went to is still there.  Returns ``(store, reused)``.

    ``ngff``: the array of an OME-Zarr image, in NGFF order (leading axes
    such as ``t, c`` in order, then ``z, y, x``; the file order reverses the
    leading axes too, which only matters with two of them).
    """
    import dask
    import zarr
    from dask.callbacks import Callback

    # the store is in file order (axes reversed, C-ordered): its chunks are
    # the blocks' bytes as they go into the NIfTI, no transposing either way
    chunks = tuple(plan.block) + (1,) * (len(out_full) - len(plan.block))
    order = list(range(len(out_full)))[::-1]
    if ngff:
        order = list(range(3, len(out_full))) + [2, 1, 0]
    layout = dict(shape=tuple(out_full[k] for k in order), chunks=tuple(chunks[k] for k in order),
                  dtype=np.dtype(out_dtype))
    options = store_location.storage_options(str(store_path))
    store = None
    if done:
        try:
            store = zarr.open_array(str(store_path), mode="r+", storage_options=options)
        except (FileNotFoundError, ValueError, KeyError):
            store = None
        if store is not None and (store.shape, store.chunks, store.dtype) != tuple(layout.values()):
            store = None
    if store is None:
        done = {}
        store = zarr.create_array(store=str(store_path), storage_options=options, **layout, fill_value=0,
                                  compressors=None, zarr_format=3, overwrite=True)
    tasks = store_tasks(resampler, source, out_dtype, out_full, plan.block, NgffWriter(store) if ngff else store)
    todo = [i for i in range(len(tasks)) if i not in done]
    journal.start(keep=bool(done))
    finished = [0]

    with _bar(len(tasks), "resampling", progress) as bar:
        bar.update(len(tasks) - len(todo))

        def finish(i):
            journal.record(i)
            finished[0] += 1
            bar.update(1)

        class Record(Callback):
            def _posttask(self, key, result, dsk, state, id):
                if isinstance(key, str) and key.startswith("block-"):
                    finish(int(key.rsplit("-", 1)[1]))

        try:
            if client is not None:
                compute_blocks(client, [tasks[i] for i in todo], todo, finish)
            else:
                with Record():
                    dask.compute(*[tasks[i] for i in todo], scheduler="threads", num_workers=workers)
        except KeyboardInterrupt:
            raise Interrupted(Path(str(store_path)), len(tasks) - len(todo) + finished[0], len(tasks)) from None
        finally:
            journal.close()
    return store, len(tasks) - len(todo)


def check_written(path: Path, hdr, kind: str) -> None:
    """The file at ``path`` has a readable header of the right shape and, for
    .nii, exactly the right size."""
    img = nib.load(path)
    if tuple(img.shape) != tuple(int(d) for d in hdr.get_data_shape()):
        raise RuntimeError(f"written file has shape {img.shape}, expected {hdr.get_data_shape()}")
    if kind == ".nii":
        need = int(hdr.get_data_offset()) + int(np.prod(hdr.get_data_shape())) * hdr.get_data_dtype().itemsize
        if path.stat().st_size != need:
            raise RuntimeError(f"written file has {path.stat().st_size} bytes, expected {need}")


def stream_store(store, path, hdr, progress) -> None:
    """Stream a file-order zarr store into the NIfTI ``path``, slab by slab."""
    zaxis = len(store.shape) - 3  # z in file order (..., z, y, x)
    slabs = [
        idx + (slice(z0, min(z0 + store.chunks[zaxis], store.shape[zaxis])),)
        for idx in np.ndindex(*store.shape[:zaxis])
        for z0 in range(0, store.shape[zaxis], store.chunks[zaxis])
    ]
    from zarr.core.buffer.cpu import NDBuffer

    # one reused slab buffer: reading into fresh arrays costs 4-7x more here
    # (first-touch page faults; 0.06 s vs 0.24-0.42 s for 200 MB)
    buf = np.empty((store.chunks[zaxis],) + tuple(store.shape[zaxis + 1:]), dtype=store.dtype)
    with _bar(len(slabs), "writing", progress, unit="slab") as bar, NiftiWriter(path, hdr) as w:
        for region in slabs:
            slab = buf[: region[-1].stop - region[-1].start]
            store.get_basic_selection(region, out=NDBuffer.from_ndarray_like(slab))
            w.write_file_order(slab)
            bar.update(1)
