"""The ``local`` source kind: a folder on this machine (F1)."""

from __future__ import annotations

import errno
import os
import shutil
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO, ClassVar

from engine import hookimpl
from engine.config import Key, SourceSettings
from engine.plugins.source import RemoteFile, Source, SourceError, unsafe_reason


class LocalSource(Source):
    """Files dropped in a folder; results are written back into it."""

    name = "local"
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

    def close(self) -> None:
        return None

    def _local(self, path: str) -> Path:
        reason = unsafe_reason(path)
        if reason:
            raise SourceError("unsafe-name", f"{path!r}: {reason}")
        return self.root / path

    def list_files(self) -> list[RemoteFile]:
        found: list[RemoteFile] = []

        def walk(folder: Path, prefix: str) -> None:
            try:
                entries = list(os.scandir(folder))
            except PermissionError as exc:
                raise SourceError("permission", f"cannot list {folder}: {exc.strerror}") from None
            for entry in entries:
                relative = f"{prefix}{entry.name}"
                if self.skipped(relative):
                    continue
                if entry.is_dir(follow_symlinks=False):
                    walk(Path(entry.path), relative + "/")
                elif entry.is_file(follow_symlinks=False):
                    st = entry.stat(follow_symlinks=False)
                    found.append(
                        RemoteFile(relative, st.st_size, datetime.fromtimestamp(st.st_mtime, UTC))
                    )

        walk(self.root, "")
        return sorted(found, key=lambda f: f.path)

    def download(self, path: str, dest: BinaryIO) -> int:
        try:
            with self._local(path).open("rb") as handle:
                total = 0
                while chunk := handle.read(1 << 20):
                    dest.write(chunk)
                    total += len(chunk)
                return total
        except FileNotFoundError:
            raise SourceError("not-found", f"{path} is gone") from None
        except PermissionError:
            raise SourceError("permission", f"{path} cannot be read") from None

    def move(self, path: str, new_path: str) -> None:
        source, target = self._local(path), self._local(new_path)
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.exists():
            raise FileExistsError(new_path)
        try:
            source.rename(target)
        except FileNotFoundError:
            raise SourceError("not-found", f"{path} is gone") from None
        except OSError as exc:
            if exc.errno == errno.EXDEV:  # pragma: no cover - another file system
                shutil.move(source, target)
            else:
                raise SourceError("permission", f"cannot move {path}: {exc.strerror}") from None

    def upload(self, data: BinaryIO, path: str) -> None:
        target = self._local(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        temp = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.part")
        try:
            with temp.open("wb") as out:
                shutil.copyfileobj(data, out, 1 << 20)
            temp.replace(target)
        finally:
            temp.unlink(missing_ok=True)

    def exists(self, path: str) -> bool:
        return self._local(path).is_file()


@hookimpl
def register_source_kinds(register: Any) -> None:
    register(LocalSource)
