"""Reports published beside a customer's file (F11): ``<name>.erro.txt`` in plain Portuguese
and English, and ``<name>.rejeitados.csv`` listing the rows that could not be used."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import datetime, tzinfo
from pathlib import Path
from typing import IO

from engine.csvsafe import SafeWriter
from engine.plugins.format import RejectedRow
from engine.plugins.source import NAME_MAX
from engine.problems import Problem


def report_stem(path: str) -> str:
    """``BRAD/mailing_x.csv`` -> ``BRAD/mailing_x`` (reports are ``<name>.erro.txt``)."""
    folder, _, leaf = path.rpartition("/")
    stem = leaf.rsplit(".", 1)[0] if "." in leaf else leaf
    return f"{folder}/{stem}" if folder else stem


def fit_name(stem: str, tail: str, limit: int = NAME_MAX) -> str:
    """The file name ``stem + tail`` when it fits in ``limit`` UTF-8 bytes; else the stem cut
    short (never inside a character) and marked ``~`` + the first 8 hex digits of the
    SHA-256 of the whole stem, so that two long names cut alike still differ.

    A customer's name may use up to the file system's 255 bytes; ``<name>.erro.txt`` and
    ``<name>.rejeitados.csv`` are longer than the name they report on.
    """
    whole = stem + tail
    if len(whole.encode()) <= limit:
        return whole
    mark = "~" + hashlib.sha256(stem.encode()).hexdigest()[:8]
    room = max(0, limit - len(tail.encode()) - len(mark))
    cut = stem.encode()[:room].decode("utf-8", errors="ignore")
    return cut + mark + tail


def fitted(path: str, tail: str, limit: int = NAME_MAX) -> str:
    """``report_stem(path) + tail``, its last component fitted to ``limit`` bytes."""
    folder, _, stem = report_stem(path).rpartition("/")
    leaf = fit_name(stem, tail, limit)
    return f"{folder}/{leaf}" if folder else leaf


def numbered(path: str, n: int, limit: int = NAME_MAX) -> str:
    """``processed/a.csv`` -> ``processed/a.2.csv``; a name without an extension (a triplet's
    ``X_MAIL_20261123``) -> ``X_MAIL_20261123-2``, so that its reports, named after the part
    before an extension (``report_stem``), are its own (fitted to ``limit`` bytes)."""
    folder, _, leaf = path.rpartition("/")
    stem, dot, ext = leaf.rpartition(".")
    leaf = fit_name(stem, f".{n}.{ext}", limit) if dot else fit_name(leaf, f"-{n}", limit)
    return f"{folder}/{leaf}" if folder else leaf


def error_report(path: str, problems: Sequence[Problem], received_at: datetime, tz: tzinfo) -> str:
    """The ``.erro.txt`` text: what was wrong, the rule, and how to fix it, in both languages."""
    when = received_at.astimezone(tz).strftime("%d/%m/%Y %H:%M")
    name = path.rsplit("/", 1)[-1]
    lines = [
        f"Arquivo: {name}",
        f"Recebido em: {when} ({tz})",
        "Situação: RECUSADO — nada deste arquivo foi importado.",
        "",
        "O que está errado e como corrigir:",
    ]
    lines += [f"  - [{p.rule}] {p.code}: {p.message_pt}" for p in problems]
    lines += [
        "",
        "Corrija o arquivo e envie-o novamente.",
        "",
        "-" * 72,
        "",
        f"File: {name}",
        f"Received: {when} ({tz})",
        "Status: REJECTED — nothing from this file was imported.",
        "",
        "What was wrong and how to fix it:",
    ]
    lines += [f"  - [{p.rule}] {p.code}: {p.message}" for p in problems]
    lines += ["", "Fix the file and send it again.", ""]
    return "\n".join(lines)


class RejectedRows:
    """Writes ``<name>.rejeitados.csv`` while rows stream by (created on the first row)."""

    def __init__(self, target: Path, header: Sequence[str]) -> None:
        self.target = target
        self.header = list(header)
        self.count = 0
        self._handle: IO[str] | None = None
        self._writer: SafeWriter | None = None

    def add(self, row: RejectedRow) -> None:
        if self._writer is None:
            # UTF-8 with BOM so spreadsheet programs pick the encoding
            self._handle = self.target.open("w", encoding="utf-8-sig", newline="")
            self._writer = SafeWriter(self._handle)
            self._writer.writerow(["linha", "regra", "codigo", "motivo", "reason", *self.header])
        self._writer.writerow(
            [row.line, row.rule, row.code, row.reason_pt, row.reason, *row.values]
        )
        self.count += 1

    def close(self) -> Path | None:
        """The report's path, or None when no row was rejected."""
        if self._handle is not None:
            self._handle.close()
            self._handle = None
        return self.target if self.count else None
