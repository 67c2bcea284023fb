"""The run loop: a planned ``Job``'s stages through its executor into its sink.

For each stage (the one resampling of a NIfTI output; each pyramid level of an
OME-Zarr) the journal says which blocks an interrupted run finished; the sink
says which of those its partial output still holds; the executor computes the
others and the sink commits them, and the journal records each block once its
bytes are in the partial output.  Ctrl-C or SIGTERM (raised as
``KeyboardInterrupt`` in the main thread) closes the journal with every
finished block in it and becomes ``Interrupted``, which says where they are.
"""

from __future__ import annotations

from . import timeline
from .executors import BlockTask
from .journal import Journal
from .report import NotResuming, Report


class Interrupted(KeyboardInterrupt):
    """Stopped by Ctrl-C or SIGTERM; the partial output and its journal are kept."""

    def __init__(self, partial, done: int, total: int):
        super().__init__(f"{done} of {total} blocks done")
        self.partial, self.done, self.total = partial, done, total


def resume(job, stage, report: Report) -> tuple[Journal, dict]:
    """The stage's journal and the blocks it says are done; when an earlier
    run's journal cannot be used, says why (for the first stage)."""
    journal = Journal(stage.journal, job.identity(stage))
    done, note = journal.load()
    if note and stage.level == 0 and job.sink.has_leftover():
        report(NotResuming(job.sink.describe(), note))
    return journal, done


def run_stage(job, stage, journal: Journal, done: dict, executor, data, report: Report) -> int:
    """Compute every block of ``stage`` that the partial output does not hold
    yet; returns how many it held."""
    sink = job.sink
    t = timeline.now()
    write, done = sink.begin(stage, done)
    timeline.span("begin", t)
    journal.start(keep=bool(done))
    total, journaled = len(stage.blocks), 0
    ok = False
    try:
        with report.bar(total, "resampling") as bar:
            bar.update(len(done))

            def commit(i, payload):
                nonlocal journaled
                for j, length in sink.commit(i, payload):
                    journal.record(j, length)
                    journaled += 1
                bar.update(1)

            task = BlockTask(stage.resampler, stage.source(data), job.out_dtype, stage.blocks, write)
            executor.run(task, (i for i in range(total) if i not in done), commit)
        ok = True
    except KeyboardInterrupt:
        raise Interrupted(sink.where(stage), len(done) + journaled, total) from None  # what a rerun keeps
    finally:
        journal.close()
        # after an interruption, blocks still being computed may still write into the sink
        executor.after_running(lambda: _end(sink, ok))
    return len(done)


def _end(sink, ok: bool) -> None:
    t = timeline.now()
    sink.end(ok)  # a local .nii's final fsync
    timeline.span("end", t)
