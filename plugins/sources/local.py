"""The ``local`` source kind: a folder on this machine (F1).

Whoever can drop files in the folder can also create symbolic links in it (``rejected ->
/etc``). So every file operation walks from the root one folder at a time with
``O_NOFOLLOW`` (``openat``), and renames and writes go through those folder descriptors: a
link anywhere on the way is refused (``SourceError("symlink")``), and swapping a folder for a
link between a check and the write cannot redirect it. Links are listed as such
(``RemoteFile(symlink=True)``), so the collector reports them.
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, BinaryIO, ClassVar

from engine import hookimpl
from engine.config import Key, SourceSettings
from engine.plugins.source import (
    NAME_MAX,
    RemoteFile,
    Source,
    SourceError,
    temporary_name,
    unsafe_reason,
)

_FOLDER = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
#: O_NONBLOCK: opening a FIFO put in the file's place must not hang the poll
_READ = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


class LocalSource(Source):
    """Files dropped in a folder; results are written back into it."""

    name = "local"
    # F8: the writer of a drop folder is usually a customer's upload arriving through this
    # machine's own SFTP/FTP daemon, or a copy from a network share: it stalls when the
    # network does. 10 s outlasts the usual TCP retransmission pauses (1 + 2 + 4 s) while
    # keeping `disparo run --until-idle` after a manual drop quick; remote kinds keep 30 s,
    # where listings are also further apart and clocks are not ours.
    default_min_age = timedelta(seconds=10)
    config_keys: ClassVar[dict[str, Key]] = {
        "path": Key("path", help="The folder files are dropped into.", target="folder"),
    }

    def __init__(self, settings: SourceSettings) -> None:
        super().__init__(settings)
        self.root: Path = settings.options["path"]

    def describe(self) -> str:
        return f"folder {self.root}"

    def open(self) -> None:
        if not self.root.is_dir():
            raise SourceError("not-found", f"the folder {self.root} does not exist")
        if not os.access(self.root, os.R_OK | os.X_OK):
            raise SourceError("permission", f"the folder {self.root} cannot be read")
        with suppress(OSError, ValueError):
            self.name_max = min(NAME_MAX, os.pathconf(self.root, "PC_NAME_MAX"))

    def close(self) -> None:
        return None

    # -- walking without following links ---------------------------------------------------

    def _parts(self, path: str) -> list[str]:
        reason = unsafe_reason(path)
        if reason:
            raise SourceError("unsafe-name", f"{path!r}: {reason}")
        return path.split("/")

    def _error(self, exc: OSError, what: str, path: str) -> SourceError:
        if exc.errno == errno.ENOENT:
            return SourceError("not-found", f"{path} is gone")
        if exc.errno in (errno.EACCES, errno.EPERM):
            return SourceError("permission", f"cannot {what} {path}: {exc.strerror}")
        if exc.errno == errno.ELOOP:
            return SourceError("symlink", f"{path} is a symbolic link: not followed")
        return SourceError("io", f"cannot {what} {path}: {exc.strerror}")

    @contextmanager
    def _folder(self, parts: list[str], *, create: bool) -> Iterator[int]:
        """A descriptor of the folder ``parts`` under the root, opened one level at a time
        without following a link (created when missing, with ``create``)."""
        fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            for depth, part in enumerate(parts, 1):
                where = "/".join(parts[:depth])
                try:
                    inner = os.open(part, _FOLDER, dir_fd=fd)
                except FileNotFoundError:
                    if not create:
                        raise SourceError(
                            "not-found", f"the folder {where} does not exist"
                        ) from None
                    with suppress(FileExistsError):
                        os.mkdir(part, dir_fd=fd)
                    inner = self._open_folder(part, fd, where)
                except OSError as exc:
                    raise self._not_a_folder(exc, part, fd, where) from None
                os.close(fd)
                fd = inner
            yield fd
        finally:
            os.close(fd)

    def _open_folder(self, part: str, fd: int, where: str) -> int:
        try:
            return os.open(part, _FOLDER, dir_fd=fd)
        except OSError as exc:
            raise self._not_a_folder(exc, part, fd, where) from None

    def _not_a_folder(self, exc: OSError, part: str, fd: int, where: str) -> SourceError:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            try:
                mode = os.stat(part, dir_fd=fd, follow_symlinks=False).st_mode
            except OSError:
                mode = 0
            if stat.S_ISLNK(mode):
                return SourceError(
                    "symlink", f"{where} is a symbolic link, never followed: make it a real folder"
                )
            return SourceError("io", f"{where} is not a folder")
        return self._error(exc, "open the folder", where)

    # -- the source contract -----------------------------------------------------------------

    def list_files(self) -> list[RemoteFile]:
        found: list[RemoteFile] = []

        def entry_file(entry: os.DirEntry[str], relative: str, link: bool = False) -> RemoteFile:
            st = entry.stat(follow_symlinks=False)
            mtime = datetime.fromtimestamp(st.st_mtime, UTC)
            return RemoteFile(relative, st.st_size, mtime, symlink=link)

        def walk(folder: Path, prefix: str) -> None:
            try:
                entries = list(os.scandir(folder))
            except PermissionError as exc:
                raise SourceError("permission", f"cannot list {folder}: {exc.strerror}") from None
            for entry in entries:
                relative = f"{prefix}{entry.name}"
                if entry.is_symlink():
                    top = relative.split("/", 1)[0]
                    if top in self.skip_folders or not self.skipped(relative):
                        # a link where processed/ or rejected/ should be is reported too
                        found.append(entry_file(entry, relative, link=True))
                    continue
                if self.skipped(relative):
                    continue
                if entry.is_dir(follow_symlinks=False):
                    walk(Path(entry.path), relative + "/")
                elif entry.is_file(follow_symlinks=False):
                    found.append(entry_file(entry, relative))

        walk(self.root, "")
        return sorted(found, key=lambda f: f.path)

    def download(self, path: str, dest: BinaryIO) -> int:
        parts = self._parts(path)
        with self._folder(parts[:-1], create=False) as folder:
            try:
                fd = os.open(parts[-1], _READ, dir_fd=folder)
            except OSError as exc:
                raise self._error(exc, "read", path) from None
        with os.fdopen(fd, "rb") as handle:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise SourceError("io", f"{path} is not a regular file")
            os.set_blocking(fd, True)
            total = 0
            while chunk := handle.read(1 << 20):
                dest.write(chunk)
                total += len(chunk)
            return total

    def move(self, path: str, new_path: str) -> None:
        source, target = self._parts(path), self._parts(new_path)
        with (
            self._folder(source[:-1], create=False) as here,
            self._folder(target[:-1], create=True) as there,
        ):
            if self._taken(target[-1], there):
                raise FileExistsError(new_path)
            try:
                os.rename(source[-1], target[-1], src_dir_fd=here, dst_dir_fd=there)
            except OSError as exc:
                if exc.errno != errno.EXDEV:
                    raise self._error(exc, "move", path) from None
                self._copy_across(source[-1], here, target[-1], there, path)  # pragma: no cover

    def _copy_across(  # pragma: no cover - processed/ on another file system
        self, leaf: str, here: int, new_leaf: str, there: int, path: str
    ) -> None:
        try:
            src = os.open(leaf, _READ, dir_fd=here)
            dst = os.open(new_leaf, _CREATE, 0o666, dir_fd=there)
        except OSError as exc:
            raise self._error(exc, "move", path) from None
        with os.fdopen(src, "rb") as a, os.fdopen(dst, "wb") as b:
            os.set_blocking(src, True)
            shutil.copyfileobj(a, b, 1 << 20)
            b.flush()
            os.fsync(b.fileno())
        os.unlink(leaf, dir_fd=here)

    def upload(self, data: BinaryIO, path: str) -> None:
        parts = self._parts(path)
        temp = temporary_name(parts[-1])
        with self._folder(parts[:-1], create=True) as folder:
            try:
                fd = os.open(temp, _CREATE, 0o666, dir_fd=folder)
                with os.fdopen(fd, "wb") as out:
                    shutil.copyfileobj(data, out, 1 << 20)
                # a link at the final name is replaced, never written through
                os.replace(temp, parts[-1], src_dir_fd=folder, dst_dir_fd=folder)
            except OSError as exc:
                raise self._error(exc, "write", path) from None
            finally:
                with suppress(FileNotFoundError):
                    os.unlink(temp, dir_fd=folder)

    def exists(self, path: str) -> bool:
        parts = self._parts(path)
        try:
            with self._folder(parts[:-1], create=False) as folder:
                return self._taken(parts[-1], folder)
        except SourceError as exc:
            if exc.category == "not-found":
                return False
            raise

    @staticmethod
    def _taken(leaf: str, folder: int) -> bool:
        """Whether anything (a file, a folder, a link) has that name."""
        try:
            os.stat(leaf, dir_fd=folder, follow_symlinks=False)
        except FileNotFoundError:
            return False
        return True


@hookimpl
def register_source_kinds(register: Any) -> None:
    register(LocalSource)
