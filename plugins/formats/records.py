"""The row work of a contact file (N22–N28): CSV records -> contact rows or rejected rows.

Light on purpose: the processes that do this work away from the engine (a big file's tail,
ImportSpec.split; the hygiene workers) import this module and ``engine.rows``, not the format
with its templates, accounts and store (~0.5 s of CPU), so they read their first row at once.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from engine.addresses import Checked, normalise_email, normalise_phone, phone_identity
from engine.mailing_names import WHATSAPP_CHANNELS
from engine.problems import Catalogue, Problem
from engine.rows import RejectedRow

MAX_LINE = 1 << 20  # characters; a longer line is refused, not read
TOO_LONG = "\ufdd0line-too-long\ufdd0"
TRUTHY = frozenset({"1", "s", "sim", "y", "yes", "true", "x"})
CHUNK = 2000

ROW_MESSAGES = Catalogue(
    {
        "missing-address": (
            "N24",
            "the row has no {what}, which the {channel} channel needs",
            "a linha não tem {what_pt}, necessário para o canal {channel}",
        ),
        "missing-contact": (
            "N24",
            "the row has neither a phone nor an e-mail",
            "a linha não tem telefone nem e-mail",
        ),
        "extra-values": (
            "N22",
            "the row has {count} values but the header has {columns} columns; check the "
            "delimiter and the quotes",
            "a linha tem {count} valores, mas o cabeçalho tem {columns} colunas; confira o "
            "separador e as aspas",
        ),
        "line-too-long": (
            "N22",
            "the line is longer than {limit} characters and was not read",
            "a linha tem mais de {limit} caracteres e não foi lida",
        ),
        "nul-character": (
            "N22",
            "the row has a NUL character (a zero byte) in column {column}: it cannot be stored, "
            "and usually means the file is damaged; fix the row",
            "a linha tem um caractere NUL (um byte zero) na coluna {column}: ele não pode ser "
            "gravado e costuma indicar um arquivo danificado; corrija a linha",
        ),
        "missing-message": (
            "N28",
            "the row has no message text and the wallet has no SMS template",
            "a linha não tem texto de mensagem e a carteira não tem modelo de SMS",
        ),
    }
)


@dataclass(frozen=True)
class RowRules:
    """What a row needs, per the file's header and name (pickled to hygiene workers)."""

    columns: int
    key: int | None
    name: int | None
    phone: int | None
    email: int | None
    message: int | None
    prospect: int | None
    fields: tuple[tuple[int, str], ...]
    channel: str | None
    #: the address the channel sends to: email | phone (None: no channel, import only)
    kind: str | None
    hygiene: bool
    needs_message: bool
    #: the file has a NUL byte somewhere: check each row for one
    nul: bool = False
    #: the header's titles (to name a column in a message)
    header: tuple[str, ...] = ()


def text_channel(channel: str | None, kind: str | None) -> bool:
    """A channel that sends a text to a phone (SMS, a plugin's): its text is the row's message
    column or the wallet's SMS template (N28). WhatsApp sends approved templates instead."""
    return kind == "phone" and channel not in WHATSAPP_CHANNELS


def _reject(line: int, key: str, values: Any, **fields: Any) -> RejectedRow:
    p: Problem = ROW_MESSAGES.make(key, **fields)
    return RejectedRow(line, p.code, p.rule, p.message, p.message_pt, tuple(values))


_encode = json.encoder.encode_basestring  # the C string escaper, non-ASCII kept as is


def process_records(rules: RowRules, records: list[tuple[int, list[str]]]) -> list[tuple[Any, ...]]:
    """Turn CSV records into contact rows (plain tuples laid out as ``ContactRow``) or
    rejected rows (``RejectedRow``), N22–N27. Pure: runs in a worker process for big files
    with hygiene. Written for speed (~2 µs a row without hygiene): cells are stripped once,
    and a missing column reads an always-empty extra cell."""
    out: list[tuple[Any, ...]] = []
    append = out.append
    columns, channel, hygiene = rules.columns, rules.channel, rules.hygiene
    phone_channel = rules.kind == "phone"
    email_channel = rules.kind == "email"
    sms_message = rules.needs_message

    def at(index: int | None) -> int:
        return columns if index is None else index  # `columns` is the extra empty cell

    key_i, name_i, phone_i, email_i = (
        at(rules.key),
        at(rules.name),
        at(rules.phone),
        at(rules.email),
    )
    message_i, prospect_i = at(rules.message), rules.prospect
    field_parts = [(i, _encode(k) + ":") for i, k in rules.fields]
    limit = f"{MAX_LINE:,}"
    nul = rules.nul
    for line, values in records:
        if nul and any("\0" in v for v in values):
            index = next(i for i, v in enumerate(values) if "\0" in v)
            title = rules.header[index] if index < len(rules.header) else ""
            column = f"{index + 1} (`{title.strip()}`)" if title.strip() else str(index + 1)
            append(_reject(line, "nul-character", values, column=column.replace("\0", "")))
            continue
        if len(values) != columns:
            if values and values[0].startswith(TOO_LONG):
                append(_reject(line, "line-too-long", (), limit=limit))
                continue
            if len(values) > columns:
                if any(v.strip() for v in values[columns:]):
                    append(
                        _reject(line, "extra-values", values, count=len(values), columns=columns)
                    )
                    continue
                values = values[:columns]
            else:
                values = values + [""] * (columns - len(values))
        cells = list(map(str.strip, values))
        cells.append("")
        phone, email = cells[phone_i], cells[email_i]
        # N24: the address the channel uses
        if phone_channel:
            if not phone:
                if any(cells):
                    append(
                        _reject(
                            line,
                            "missing-address",
                            values,
                            what="phone",
                            what_pt="telefone",
                            channel=channel,
                        )
                    )
                continue
        elif email_channel:
            if not email:
                if any(cells):
                    append(
                        _reject(
                            line,
                            "missing-address",
                            values,
                            what="e-mail",
                            what_pt="e-mail",
                            channel=channel,
                        )
                    )
                continue
        elif not phone and not email:
            if any(cells):
                append(_reject(line, "missing-contact", values))
            continue  # else a blank line
        name = cells[name_i]
        # N26: hygiene
        if hygiene:
            if name:
                name = " ".join(name.split())
            bad = dropped = None
            if phone:
                checked = normalise_phone(phone, mobile=phone_channel)
                if checked.value is not None:
                    phone = checked.value
                elif phone_channel or not email:
                    bad = checked
                else:
                    phone, dropped = "", checked  # not the channel's address: dropped
            if email and bad is None:
                checked = normalise_email(email)
                if checked.value is not None:
                    email = checked.value
                elif email_channel or not phone:
                    bad = checked
                    if dropped is not None:  # neither address is usable: say both
                        bad = Checked(
                            None,
                            f"{dropped.error}; {checked.error}",
                            f"{dropped.error_pt}; {checked.error_pt}",
                            "bad-contact",
                        )
                else:
                    email = ""
            if bad is not None:
                append(
                    RejectedRow(
                        line,
                        bad.code or "bad-address",
                        "N26",
                        bad.error or "",
                        bad.error_pt or "",
                        tuple(values),
                    )
                )
                continue
        message = cells[message_i]
        if sms_message and not message:
            append(_reject(line, "missing-message", values))
            continue
        key = cells[key_i]
        if key:
            identity = "key:" + key
        elif email_channel or (channel is None and email):
            identity = "email:" + email.lower()
        else:
            identity = "phone:" + (phone if hygiene else phone_identity(phone))
        prospect = None if prospect_i is None else cells[prospect_i].lower() in TRUTHY
        fields = ",".join([prefix + _encode(cells[i]) for i, prefix in field_parts if cells[i]])
        # laid out as a ContactRow; a plain tuple is cheaper to build and to bind
        append(
            (
                line,
                identity,
                key or None,
                name or None,
                email or None,
                phone or None,
                "{" + fields + "}",
                message or None,
                prospect,
            )
        )
    return out


def process_plain(rules: RowRules, records: list[tuple[int, list[str]]]) -> list[tuple[Any, ...]]:
    """``process_records`` in a worker: plain tuples pickle ~4x faster than named tuples."""
    return [tuple(row) for row in process_records(rules, records)]


@dataclass(frozen=True)
class CsvTail:
    """The rows of a contact file from ``offset`` (the start of line ``line``) to its end:
    what another process reads while this one reads the head (``ImportSpec.split``)."""

    path: str
    offset: int
    line: int
    encoding: str
    delimiter: str
    rules: RowRules

    def chunks(self) -> Iterator[list[tuple[Any, ...]]]:
        """The tail's chunks of contact rows and rejected rows, as ``read_rows`` makes them
        (the same line numbers)."""
        raw = open(self.path, "rb")  # noqa: SIM115 - closed with the text handle
        raw.seek(self.offset)
        encoding = "utf-8" if self.encoding == "utf-8-sig" else self.encoding
        handle = io.TextIOWrapper(raw, encoding=encoding, errors="replace", newline="")
        reader = csv.reader(handle, delimiter=self.delimiter, strict=False)
        first = self.line - 1  # the line before the tail's first
        try:
            chunk: list[tuple[int, list[str]]] = []
            previous = first
            for values in reader:
                chunk.append((previous + 1, values))
                previous = reader.line_num + first
                if len(chunk) >= CHUNK:
                    yield process_records(self.rules, chunk)
                    chunk = []
            if chunk:
                yield process_records(self.rules, chunk)
        finally:
            handle.close()


__all__ = [
    "CHUNK",
    "MAX_LINE",
    "ROW_MESSAGES",
    "TOO_LONG",
    "TRUTHY",
    "CsvTail",
    "RowRules",
    "process_plain",
    "process_records",
    "text_channel",
]
