"""Exports from the terminal UI (E1), written only where the configuration says.

A UI session may be remote (``disparo ssh-serve``): whatever it types must never choose where
the server writes. So an export goes into ``[tui] export_folder`` only, under a name disparo
makes (``campaign-<id>-<YYYYmmdd-HHMMSS>.csv``) or a plain name the operator gives (letters,
digits, ``.``, ``-``, ``_``; no folder, no ``..``, no hidden name). The file is created next
to its final name with ``O_CREAT|O_EXCL|O_NOFOLLOW`` (never through a symbolic link, never
over a file), written, then linked to its final name (which fails when that name exists, so
nothing is ever overwritten) and the temporary name removed. The folder itself is opened with
``O_NOFOLLOW`` and made (mode 700) when missing. Every export is in the audit log.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from contextlib import suppress
from datetime import datetime
from pathlib import Path

from engine.publish.results import ENCODING, write_results
from tui.backend import Backend, Refused

#: a plain file name: no folder, nothing hidden, nothing a shell or spreadsheet reads oddly
PLAIN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,119}")
SUFFIX = ".csv"


class ExportRefused(Refused):
    """A name an export may not take (the message says why and what to give instead)."""


def default_name(campaign_id: int, at: datetime) -> str:
    """``campaign-<id>-<YYYYmmdd-HHMMSS>.csv`` (``at`` in the configured zone)."""
    return f"campaign-{campaign_id}-{at.strftime('%Y%m%d-%H%M%S')}{SUFFIX}"


def check_name(name: str) -> str | None:
    """What is wrong with ``name`` as an export's file name (with the fix), or None."""
    fix = (
        "give a plain file name such as campaign-12.csv (letters, digits, '.', '-', '_'); "
        "the file is written in the export folder ([tui] export_folder)"
    )
    if not name:
        return f"a file name is required: {fix}"
    if "/" in name or "\\" in name or name.startswith("~"):
        return f"{name!r} names a folder; exports go only into the export folder: {fix}"
    if ".." in name:
        return f"{name!r} contains '..': {fix}"
    if not PLAIN_NAME.fullmatch(name):
        return f"{name!r} is not a plain file name: {fix}"
    return None


def export_name(name: str) -> str:
    """The checked file name, with ``.csv`` added when it has another ending."""
    problem = check_name(name.strip())
    if problem:
        raise ExportRefused(problem)
    name = name.strip()
    return name if name.lower().endswith(SUFFIX) else name + SUFFIX


def open_folder(folder: Path) -> int:
    """The export folder as a directory descriptor (made, mode 700, when missing); a symbolic
    link in its place is refused."""
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    except FileExistsError:
        pass
    flags = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_NOFOLLOW", 0)
    try:
        return os.open(folder, flags)
    except OSError as exc:
        raise ExportRefused(
            f"the export folder {folder} cannot be used ({exc.strerror}); it must be a real "
            "folder, not a symbolic link: fix [tui] export_folder in disparo.toml"
        ) from exc


def write_export(
    backend: Backend,
    campaign_id: int,
    name: str,
    progress: Callable[[int], None] | None = None,
) -> tuple[Path, int]:
    """Write every recipient's results (D17, formula-safe cells, E2) as ``name`` in the export
    folder; return the file and how many rows. Never through a symbolic link, never over an
    existing file (``ExportRefused``); audited with the actor."""
    final = export_name(name)
    folder = backend.config.export_folder
    part = f".{final}.{os.getpid()}.part"
    dir_fd = open_folder(folder)
    try:
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
        try:
            fd = os.open(part, flags, 0o600, dir_fd=dir_fd)
        except FileExistsError as exc:
            raise ExportRefused(
                f"{part} exists in {folder}: another export of this name is being written"
            ) from exc
        try:
            with os.fdopen(fd, "w", encoding=ENCODING, newline="") as handle:
                written = write_results(
                    backend.store, campaign_id, handle, backend.config.tz, progress
                )
                handle.flush()
                os.fsync(handle.fileno())
            try:
                os.link(part, final, src_dir_fd=dir_fd, dst_dir_fd=dir_fd, follow_symlinks=False)
            except FileExistsError as exc:
                raise ExportRefused(
                    f"{final} exists in {folder}: an export never overwrites a file; choose "
                    "another name"
                ) from exc
        finally:
            with suppress(FileNotFoundError):
                os.unlink(part, dir_fd=dir_fd)
    finally:
        os.close(dir_fd)
    target = folder / final
    backend.store.audit.record(
        backend.actor,
        "campaign.export",
        f"campaign:{campaign_id}",
        {"file": str(target), "rows": written, "role": backend.role},
    )
    return target, written
