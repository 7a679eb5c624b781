"""The second process of a big file's import on SQLite (issue 16, goal 4): it stages the
file's tail (``ImportSpec.split``) into a ``StagingFile`` while the importing process reads
the head.

Light on purpose: the process imports this module, ``engine.rows`` and the format's row
module (``RowsTail``), not the store or the engine's services, so it reads its first row
~0.5 s of CPU sooner.
"""

from __future__ import annotations

import gc
import pickle
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import TYPE_CHECKING

from engine.rows import ContactRow, StagedRow, StagingFile

if TYPE_CHECKING:
    from engine.plugins.format import RowsTail

CONTACT_FIELDS = len(ContactRow._fields)
#: the young generation's threshold while rows are staged (Python's default is 700)
STAGING_GC_THRESHOLD = 50_000


@dataclass
class TailDone:
    """What the second process did: the tail's rows read, those staged (in ``staged``)."""

    rows: int
    staged: StagingFile


def stage_tail(tail: RowsTail, folder: Path) -> TailDone:
    """In the second process: the tail's contact rows into a staging file, its rejected rows
    pickled, a chunk at a time, to ``rejected.pickle`` (memory stays flat)."""
    gc.set_threshold(STAGING_GC_THRESHOLD, *gc.get_threshold()[1:])
    staged = StagingFile(folder / "tail.db")
    rows = 0
    with (folder / "rejected.pickle").open("wb") as out:
        for chunk in tail.chunks():
            rows += len(chunk)
            contacts: Sequence[StagedRow] = chunk
            if not all(map(CONTACT_FIELDS.__eq__, map(len, chunk))):
                contacts = [r for r in chunk if len(r) == CONTACT_FIELDS]
                pickle.dump([r for r in chunk if len(r) != CONTACT_FIELDS], out)
            staged.stage(contacts)
    staged.close()
    return TailDone(rows, staged)


def tail_process(tail: RowsTail, folder: str, pipe: Connection) -> None:
    """The second process's entry point: sends back ``TailDone`` or the exception, then
    waits for the importing process to be done with its files (it closes the pipe) and
    removes them — they are gone already, unless that process was killed (kill -9)."""
    try:
        try:
            done: object = stage_tail(tail, Path(folder))
        except BaseException as exc:  # whatever it is, the importer re-raises it
            done = exc
        try:
            pipe.send(done)
        except (pickle.PicklingError, TypeError, AttributeError) as exc:  # say it in words
            pipe.send(RuntimeError(f"{type(done).__name__}: {done} ({exc})"))
        pipe.recv()  # nothing comes: returns at the end (EOFError)
    except (EOFError, OSError):
        pass
    finally:
        pipe.close()
        shutil.rmtree(folder, ignore_errors=True)


__all__ = ["STAGING_GC_THRESHOLD", "TailDone", "stage_tail", "tail_process"]
