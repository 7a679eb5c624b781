"""The source contract, as a check a source-kind author runs against their kind: listing
(recursive, leaving out the processed/rejected folders, hidden and temporary names),
downloads, F13 unsafe names, and moves, uploads and ``exists`` for a writable kind (a
read-only kind leaves them out). disparo runs the same check on its own kinds."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from engine.plugins.source import RemoteFile, Source, SourceError


class SourceContractError(AssertionError):
    """A source kind does not keep the source contract (the message says what and why)."""


class RemoteFiles(Protocol):
    """The files behind a source as the test sees them, not through the source: how the
    check puts files there and looks at what the source did. Paths are relative to the
    source's root, POSIX style."""

    def put(self, path: str, data: bytes) -> None:
        """Create the file ``path`` (and its folders) holding ``data``."""
        ...

    def get(self, path: str) -> bytes | None:
        """The bytes of the file ``path``, or None when there is none."""
        ...

    def names(self) -> set[str]:
        """Every file there, hidden ones included."""
        ...


class FolderFiles:
    """``RemoteFiles`` in a local folder: the folder a ``local`` source points at, or the one
    a loopback test server (FTP, SFTP, HTTP…) serves."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def put(self, path: str, data: bytes) -> None:
        target = self.root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)

    def get(self, path: str) -> bytes | None:
        target = self.root / path
        return target.read_bytes() if target.is_file() else None

    def names(self) -> set[str]:
        return {p.relative_to(self.root).as_posix() for p in self.root.rglob("*") if p.is_file()}


#: names every source must refuse to use as paths (F13), whatever it is asked to do
UNSAFE_NAMES = ("../etc/passwd", "/etc/passwd", "BRAD/../../x.csv")


def _fail(source: Source, message: str) -> SourceContractError:
    return SourceContractError(f"source kind `{source.name}` ({type(source).__name__}): {message}")


def _refuses(
    source: Source, what: str, name: str, call: Callable[..., object], *args: object
) -> None:
    """``call(*args)``, which uses ``name``, must raise ``SourceError("unsafe-name")``."""
    try:
        call(*args)
    except SourceError as exc:
        if exc.category != "unsafe-name":
            raise _fail(
                source, f"{what} with {name!r} raised `{exc.category}`, not `unsafe-name`"
            ) from exc
        return
    raise _fail(source, f"{what} with the unsafe name {name!r} was not refused (F13)")


def check_source(source: Source, files: RemoteFiles, *, mtimes: bool = True) -> None:
    """Check that ``source`` keeps the source contract against ``files``, the remote side
    it reads (empty to begin with); the check runs one ``session()`` (the host rules, then
    ``open()`` … ``close()``) and raises ``SourceContractError`` (an ``AssertionError``)
    saying what is wrong.

    Every kind: ``list_files()`` walks folders, leaves out the processed and rejected
    folders, hidden names and temporary upload names (``.part``…), and gives sizes (and
    timezone-aware modification times, unless ``mtimes=False``: a kind that cannot know
    them gives None); ``download()`` copies the bytes and answers how many; an unsafe name
    (``..``, absolute) is refused with ``SourceError("unsafe-name")`` (F13).

    A writable kind (``writable = True``): ``exists()``; ``move()`` creates folders and
    raises ``FileExistsError`` on a taken name; ``upload()`` creates folders, replaces a file
    and leaves no temporary file behind; unsafe names are refused by each. A read-only kind
    (``writable = False``) must leave ``move``, ``upload`` and ``exists`` to the base
    class, which refuses them."""
    files.put("BRAD/a.csv", b"x" * 1000)
    files.put("b.csv", b"hello")
    files.put(".hidden", b"h")
    files.put("c.csv.part", b"p")
    files.put("processed/old.csv", b"old")
    writable = type(source).writable
    with source.session():
        _listing(source, mtimes)
        out = io.BytesIO()
        count = source.download("BRAD/a.csv", out)
        if count != 1000 or out.getvalue() != b"x" * 1000:
            raise _fail(
                source,
                f"download('BRAD/a.csv') wrote {len(out.getvalue())} bytes and answered "
                f"{count}, not the file's 1000",
            )
        for name in UNSAFE_NAMES:
            _refuses(source, "download", name, source.download, name, io.BytesIO())
        if writable:
            _writable(source)
        else:
            _read_only(source)
    if writable:
        _written(source, files)
    elif {"BRAD/a.csv", "b.csv"} - files.names():
        raise _fail(source, "a read-only kind removed files it listed")


def _listing(source: Source, mtimes: bool) -> None:
    found = source.list_files()
    if not all(isinstance(f, RemoteFile) for f in found):
        raise _fail(source, "list_files() must answer RemoteFile values")
    listing = {f.path: f for f in found}
    if set(listing) != {"BRAD/a.csv", "b.csv"}:
        raise _fail(
            source,
            f"list_files() answered {sorted(listing)}, not ['BRAD/a.csv', 'b.csv']: it walks "
            "folders (wallets) and leaves out processed/, rejected/, hidden names and .part "
            "files (use self.skipped())",
        )
    if listing["BRAD/a.csv"].size != 1000 or listing["b.csv"].size != 5:
        raise _fail(source, "list_files() gives the wrong sizes")
    for f in listing.values():
        if f.mtime is None and mtimes:
            raise _fail(source, f"list_files() gives no mtime for {f.path} (mtimes=False?)")
        if f.mtime is not None and f.mtime.tzinfo is None:
            raise _fail(source, f"the mtime of {f.path} is not timezone-aware")


def _writable(source: Source) -> None:
    if not source.exists("b.csv") or source.exists("nope.csv"):
        raise _fail(source, "exists() answers wrongly")
    source.move("b.csv", "processed/sub/b.csv")
    try:
        source.move("BRAD/a.csv", "processed/sub/b.csv")
    except FileExistsError:
        pass
    else:
        raise _fail(source, "move() onto a taken name must raise FileExistsError")
    source.upload(io.BytesIO(b"report"), "rejected/BRAD/x.erro.txt")
    source.upload(io.BytesIO(b"report 2"), "rejected/BRAD/x.erro.txt")  # replaced
    for name in UNSAFE_NAMES:
        _refuses(source, "move", name, source.move, name, "processed/x.csv")
        _refuses(source, "move", name, source.move, "BRAD/a.csv", name)
        _refuses(source, "upload", name, source.upload, io.BytesIO(b"x"), name)


def _written(source: Source, files: RemoteFiles) -> None:
    if files.get("processed/sub/b.csv") != b"hello" or files.get("b.csv") is not None:
        raise _fail(source, "move('b.csv', 'processed/sub/b.csv') did not move the file")
    if files.get("BRAD/a.csv") != b"x" * 1000:
        raise _fail(source, "a refused move() changed the file")
    if files.get("rejected/BRAD/x.erro.txt") != b"report 2":
        raise _fail(source, "upload() did not write (or replace) rejected/BRAD/x.erro.txt")
    left = sorted(n for n in files.names() if n.startswith("rejected/") and n.endswith(".part"))
    if left:
        raise _fail(source, f"upload() left temporary files behind: {left}")


def _read_only(source: Source) -> None:
    kind = type(source)
    overridden = [
        m for m in ("move", "upload", "exists") if getattr(kind, m) is not getattr(Source, m)
    ]
    if overridden:
        raise _fail(
            source,
            f"a read-only kind (writable = False) leaves out {', '.join(overridden)}: the "
            "engine never moves or writes its files",
        )
    try:
        source.move("b.csv", "processed/b.csv")
    except SourceError as exc:
        if exc.category != "permission":
            raise _fail(source, f"move() on a read-only kind raised `{exc.category}`") from exc
    else:
        raise _fail(source, "move() on a read-only kind did not refuse")
