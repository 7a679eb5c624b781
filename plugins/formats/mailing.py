"""The ``mailing`` format (spec/mailing-names.md): the name says what to do (N1–N21), the CSV
inside holds the contacts (N22–N28).

Reading streams: the file is checked for UTF-8 in one pass (else it is Windows-1252), then
parsed record by record, so memory stays flat whatever the file size. A line longer than
``MAX_LINE`` characters is skipped (and reported) without ever being held whole.

What is not CSV text is refused as what it is, before any row is read: a zip (an Excel
workbook is one), gzip or other compressed payload and an old Excel workbook by their magic
bytes, UTF-16 and UTF-32 (a BOM, or the zero bytes every other character has) by name — N22
takes UTF-8 and Windows-1252 only, and the report says how to save the file right. A file
whose first line is longer than ``MAX_LINE`` has no header (no line breaks, or not text).
A NUL character in a cell rejects that row (``nul-character``), on every database: PostgreSQL
cannot store one, and on SQLite it would cut text short in the exports.
"""

from __future__ import annotations

import codecs
import csv
import io
import os
import re
import time
import unicodedata
import zipfile
from collections import deque
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from contextlib import suppress
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import IO, Any, NamedTuple

from engine import hookimpl
from engine.campaign import Campaign, Content
from engine.lifeline import exit_with, forkserver
from engine.mailing_names import NameCheck, check_name
from engine.plugins.format import (
    FileRejected,
    Format,
    ImportSpec,
    MailingRecord,
    Verdict,
)
from engine.problems import Catalogue
from engine.render import compile_html, compile_text, trial_render
from engine.sending.accounts import resolve_account
from plugins.formats.records import (
    CHUNK,
    MAX_LINE,
    ROW_MESSAGES,
    TOO_LONG,
    CsvTail,
    RowRules,
    process_plain,
    process_records,
    text_channel,
)

BLOCK = MAX_LINE  # bytes read at a time by ``scan``: not more than ``MAX_LINE``
PARALLEL_BYTES = 4 << 20  # files with hygiene above this size may use worker processes
#: seconds of row work a row above which a big file's rows go to worker processes
SLOW_ROW = 20e-6
DELIMITERS = (";", ",", "\t", "|")

#: N23: role -> accepted headers (compared without case and accents)
ALIASES: dict[str, tuple[str, ...]] = {
    "name": ("nome", "name"),
    "phone": ("telefone", "celular", "fone", "phone", "whatsapp"),
    "email": ("email", "e-mail"),
    "key": ("cpf", "cnpj", "documento", "id", "codigo"),
    "message": ("mensagem", "message", "texto", "sms"),
    "prospect": ("prospect",),
}
_ROLE_OF = {alias: role for role, aliases in ALIASES.items() for alias in aliases}

MESSAGES = Catalogue(
    {
        "duplicate-sequence": (
            "N6",
            "this source already imported a file dated {date} with sequence {sequence}; "
            "the first one wins. Send new files with the next free sequence number",
            "esta origem já importou um arquivo do dia {date} com a sequência {sequence}; "
            "vale o primeiro. Envie arquivos novos com a próxima sequência livre",
        ),
        "no-prospects": (
            "N20",
            "`_whatsappprospect` needs prospect rows (a truthy `prospect` column, or phones new "
            "to the base) and this file has none; use `_whatsappexclusivo` with `_nw` instead",
            "`_whatsappprospect` precisa de linhas de prospects (coluna `prospect` marcada, ou "
            "telefones novos na base) e este arquivo não tem nenhuma; use `_whatsappexclusivo` "
            "com `_nw`",
        ),
        "missing-column": (
            "N24",
            "the file has no {what} column; the header must have one of: {aliases} "
            "(found: {found})",
            "o arquivo não tem coluna de {what_pt}; o cabeçalho precisa de uma destas: "
            "{aliases} (encontradas: {found})",
        ),
        "no-valid-rows": (
            "N24",
            "none of the {rows} rows can be used (see the rejected rows report); fix them and "
            "send the file again",
            "nenhuma das {rows} linhas pode ser usada (veja o relatório de linhas recusadas); "
            "corrija-as e envie o arquivo de novo",
        ),
        "empty-file": (
            "N22",
            "the file has no header or no rows; the first line must be the header, e.g. "
            "`nome;telefone;email`",
            "o arquivo não tem cabeçalho ou não tem linhas; a primeira linha deve ser o "
            "cabeçalho, ex.: `nome;telefone;email`",
        ),
        "line-too-long": (
            "N22",
            "the first line is longer than {limit} characters, so it cannot be the header: the "
            "file has no line breaks (it is one single line) or is not CSV text. Put the header "
            "(e.g. `nome;telefone;email`) on the first line and each contact on a line of its "
            "own",
            "a primeira linha tem mais de {limit} caracteres, então não pode ser o cabeçalho: o "
            "arquivo não tem quebras de linha (é uma linha só) ou não é um texto CSV. Coloque o "
            "cabeçalho (ex.: `nome;telefone;email`) na primeira linha e cada contato numa linha",
        ),
        "encoding": (
            "N22",
            "the file is encoded in {encoding} (how Excel saves “Unicode Text”), but a mailing "
            "must be UTF-8 or Windows-1252; save it as “CSV UTF-8 (comma delimited)” and send "
            "it again",
            "o arquivo está codificado em {encoding} (como o Excel salva “Texto Unicode”), mas "
            "um mailing deve ser UTF-8 ou Windows-1252; salve-o como “CSV UTF-8 (delimitado "
            "por vírgulas)” e envie de novo",
        ),
        "not-csv": (
            "N22",
            "the file is {what}, not CSV text; {fix}",
            "o arquivo é {what_pt}, não um texto CSV; {fix_pt}",
        ),
        "missing-message": (
            "N28",
            "an SMS campaign needs the text: add a `mensagem` column, or configure "
            "`sms_template` for wallet `{wallet}`",
            "uma campanha de SMS precisa do texto: inclua uma coluna `mensagem` ou configure "
            "`sms_template` na carteira `{wallet}`",
        ),
        "missing-body": (
            "N28",
            "an e-mail campaign needs a body: put `{html}` beside the file, or configure "
            "`email_template` for wallet `{wallet}`",
            "uma campanha de e-mail precisa do corpo: coloque `{html}` ao lado do arquivo, ou "
            "configure `email_template` na carteira `{wallet}`",
        ),
        "bad-template": (
            "N28",
            "the {what} is not a valid template: {error} (line {line}); write variables as "
            "`{{{{ nome }}}}`",
            "{what_pt} não é um template válido: {error} (linha {line}); escreva variáveis "
            "como `{{{{ nome }}}}`",
        ),
        "unreadable-body": (
            "N28",
            "the e-mail body {path} cannot be read: {error}",
            "o corpo do e-mail {path} não pode ser lido: {error}",
        ),
    }
)


def normalise_header(value: str) -> str:
    """Case- and accent-insensitive header (N23)."""
    text = unicodedata.normalize("NFKD", value.strip().lstrip("\ufeff"))
    text = "".join(ch for ch in text if not unicodedata.combining(ch))
    return text.lower()


def header_roles(
    header: Sequence[str], only: Collection[str] | None = None
) -> tuple[dict[str, int], dict[int, str]]:
    """A header read by its titles (N23): role -> the index of the first column whose title is
    one of the role's aliases, and index -> field name (``field_key``, ``_2`` when taken) for
    every other column. ``only`` limits the roles recognised; other aliases become fields."""
    roles: dict[str, int] = {}
    fields: dict[int, str] = {}
    for index, title in enumerate(header):
        role = _ROLE_OF.get(normalise_header(title))
        if role is not None and role not in roles and (only is None or role in only):
            roles[role] = index
        else:
            key = field_key(title, index)
            while key in fields.values():
                key += "_2"
            fields[index] = key
    return roles, fields


def field_key(header: str, index: int) -> str:
    """A template-friendly variable name for a column (``Cidade Natal`` -> ``cidade_natal``)."""
    key = re.sub(r"[^0-9a-z]+", "_", normalise_header(header)).strip("_")
    if not key or key[0].isdigit():
        key = f"coluna_{index + 1}" if not key else f"c_{key}"
    return key


#: magic bytes of payloads that are not CSV text: (prefix, what, what_pt, fix, fix_pt)
_FIX = "decompress it and send the CSV inside as `{name}`"
_FIX_PT = "descompacte-o e envie o CSV de dentro como `{name}`"
_EXCEL_FIX = (
    "in Excel, use “Save as” → “CSV UTF-8 (comma delimited)” and send that file as `{name}`"
)
_EXCEL_FIX_PT = (
    "no Excel, use “Salvar como” → “CSV UTF-8 (delimitado por vírgulas)” e envie esse "
    "arquivo como `{name}`"
)
MAGIC: tuple[tuple[bytes, str, str, str, str], ...] = (
    (b"PK\x03\x04", "a zip archive", "um arquivo zip", _FIX, _FIX_PT),
    (b"PK\x05\x06", "an empty zip archive", "um arquivo zip vazio", _FIX, _FIX_PT),
    (b"\x1f\x8b", "gzip-compressed", "compactado com gzip", _FIX, _FIX_PT),
    (b"BZh", "bzip2-compressed", "compactado com bzip2", _FIX, _FIX_PT),
    (b"\xfd7zXZ\x00", "xz-compressed", "compactado com xz", _FIX, _FIX_PT),
    (b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive", "um arquivo 7-Zip", _FIX, _FIX_PT),
    (b"Rar!\x1a\x07", "a RAR archive", "um arquivo RAR", _FIX, _FIX_PT),
    (
        b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1",
        "an old Excel workbook (.xls)",
        "uma planilha antiga do Excel (.xls)",
        _EXCEL_FIX,
        _EXCEL_FIX_PT,
    ),
    (
        b"%PDF-",
        "a PDF document",
        "um documento PDF",
        "send the contacts as a CSV file named `{name}`",
        "envie os contatos num arquivo CSV chamado `{name}`",
    ),
)
_BOMS = (
    (codecs.BOM_UTF32_LE, "UTF-32 (LE)"),
    (codecs.BOM_UTF32_BE, "UTF-32 (BE)"),
    (codecs.BOM_UTF16_LE, "UTF-16 (LE)"),
    (codecs.BOM_UTF16_BE, "UTF-16 (BE)"),
)


def wide_encoding(head: bytes) -> str | None:
    """UTF-16 or UTF-32 by its BOM, or by the zero bytes of ASCII text in it (the first KiB
    of a file without a BOM: a zero in the same place of most characters), else None."""
    for bom, encoding in _BOMS:
        if head.startswith(bom):
            return encoding
    sample = head[:1024]
    if len(sample) < 8 or b"\0" not in sample:
        return None
    for width, name in ((4, "UTF-32"), (2, "UTF-16")):
        units = len(sample) // width
        for offset, order in ((0, "BE"), (width - 1, "LE")):
            # ASCII in UTF-16 LE is `c 0`, in BE `0 c`; in UTF-32 LE `c 0 0 0`, BE `0 0 0 c`
            text_at = width - 1 - offset
            zeros = sum(
                1
                for i in range(units)
                if sample[i * width + text_at] != 0
                and all(sample[i * width + j] == 0 for j in range(width) if j != text_at)
            )
            if zeros >= 0.6 * units:
                return f"{name} ({order})"
    return None


def refuse_payload(path: Path, name: str) -> None:
    """N22: raise ``FileRejected`` naming what the file is when it is not CSV text in an
    accepted encoding (a compressed or binary payload, UTF-16 or UTF-32)."""
    with path.open("rb") as handle:
        head = handle.read(4096)
    leaf = name.rsplit("/", 1)[-1]
    for magic, what, what_pt, fix, fix_pt in MAGIC:
        if not head.startswith(magic):
            continue
        if magic.startswith(b"PK"):
            names: set[str] = set()
            # a damaged zip is still a zip: its names are only a hint
            with suppress(zipfile.BadZipFile, OSError, EOFError), zipfile.ZipFile(path) as zf:
                names = set(zf.namelist())
            if "xl/workbook.xml" in names:
                what, what_pt = "an Excel workbook (.xlsx)", "uma planilha do Excel (.xlsx)"
                fix, fix_pt = _EXCEL_FIX, _EXCEL_FIX_PT
        raise FileRejected(
            [
                MESSAGES.make(
                    "not-csv",
                    what=what,
                    what_pt=what_pt,
                    fix=fix.format(name=leaf),
                    fix_pt=fix_pt.format(name=leaf),
                )
            ]
        )
    encoding = wide_encoding(head)
    if encoding is not None:
        raise FileRejected([MESSAGES.make("encoding", encoding=encoding)])


class Scan(NamedTuple):
    """What one pass over a file's bytes found (``scan_bytes``)."""

    encoding: str
    #: the longest line, in bytes, when one is at least ``BLOCK`` long (what matters: the
    #: ``MAX_LINE`` limit); else a lower bound
    longest: int
    #: a NUL byte is in it (then rows are checked for one, else they need not be)
    nul: bool
    #: every record starts at a line's start: no quote (a quoted cell may hold a line break)
    #: and no carriage return that does not end a line (the reader takes it for a line break)
    plain: bool


def scan(path: Path) -> tuple[str, int, bool]:
    """One pass over the bytes: the encoding (N22: UTF-8 with or without BOM when the whole
    file decodes, else Windows-1252), the longest line, in bytes (``Scan.longest``), and
    whether a NUL byte is in it (then rows are checked for it, else they need not be)."""
    found = scan_bytes(path)
    return found.encoding, found.longest, found.nul


def scan_bytes(path: Path) -> Scan:
    """``scan``, and whether the file's lines are its records (``Scan.plain``)."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    utf8 = True
    nul = False
    plain = True
    longest = current = 0
    with path.open("rb") as handle:
        head = handle.read(3)
        bom = head == codecs.BOM_UTF8
        chunk = b"" if bom else head
        while True:
            # ASCII is UTF-8 (unless a sequence is cut at the block before): no decoding
            if utf8 and not (chunk.isascii() and not decoder.getstate()[0]):
                try:
                    decoder.decode(chunk)
                except UnicodeDecodeError:
                    utf8 = False
            nul = nul or b"\0" in chunk
            # (a CR LF cut by the chunk's end also says not plain: rare, harmless)
            plain = plain and b'"' not in chunk and chunk.count(b"\r") == chunk.count(b"\r\n")
            breaks = chunk.replace(b"\r", b"\n")
            first = breaks.find(b"\n")
            if first < 0:
                current += len(chunk)
            else:  # a line within the block is shorter than one: only these can reach it
                longest = max(longest, current + first)
                current = len(chunk) - 1 - breaks.rfind(b"\n")
            chunk = handle.read(BLOCK)
            if not chunk:
                break
        longest = max(longest, current)
        if utf8:
            try:
                decoder.decode(b"", final=True)
            except UnicodeDecodeError:
                utf8 = False
    if not utf8:
        return Scan("cp1252", longest, nul, plain)
    return Scan(("utf-8-sig" if bom else "utf-8"), longest, nul, plain)


def sniff_delimiter(header_line: str) -> str:
    """N22: the candidate (``;`` ``,`` TAB ``|``) seen most in the header, outside quotes."""
    outside = re.sub(r'"[^"]*"', "", header_line)
    counts = {d: outside.count(d) for d in DELIMITERS}
    best = max(DELIMITERS, key=lambda d: counts[d])  # ties keep the order: ';' first
    return best if counts[best] else ";"


def bounded_lines(handle: IO[str], limit: int = MAX_LINE) -> Iterator[str]:
    """Lines of ``handle``; a line longer than ``limit`` becomes the ``TOO_LONG`` marker, and
    its characters are skipped in chunks, never held whole."""
    while True:
        line = handle.readline(limit)
        if not line:
            return
        if len(line) >= limit and not line.endswith(("\n", "\r")):
            while True:
                rest = handle.readline(limit)
                if not rest or rest.endswith(("\n", "\r")):
                    break
            yield TOO_LONG + "\n"
        else:
            yield line


def check_template(text: str, what: str, what_pt: str) -> None:
    """Refuse a body or subject that is not a valid Jinja2 template, or that reaches for what
    the sandbox forbids (N28)."""
    from jinja2 import TemplateError, TemplateSyntaxError

    from engine.sandbox import TEXT

    try:
        TEXT.parse(text)
        trial_render(compile_html(text) if what == "e-mail body" else compile_text(text))
    except TemplateSyntaxError as exc:
        raise FileRejected(
            [
                MESSAGES.make(
                    "bad-template", what=what, what_pt=what_pt, error=exc.message, line=exc.lineno
                )
            ]
        ) from None
    except TemplateError as exc:
        raise FileRejected(
            [MESSAGES.make("bad-template", what=what, what_pt=what_pt, error=str(exc), line="?")]
        ) from None


class MailingFormat(Format):
    """``mailing_DDMMYY_SEQ[_PARAMS].csv`` files (spec/mailing-names.md)."""

    name = "mailing"

    def _check(self, path: str) -> NameCheck:
        ctx = self.context
        local_now = ctx.now.astimezone(ctx.config.tz).replace(tzinfo=None)
        if ctx.wallet and "/" not in path:
            path = f"{ctx.wallet}/{path}"  # `disparo import --wallet`: as if in that folder
        return check_name(
            path,
            today=ctx.today,
            now=local_now,
            default_subject=ctx.config.default_subject,
            words=ctx.words,
        )

    def _kind(self, channel: str | None) -> str | None:
        """The contact address a channel sends to (its word's ``address_kind``)."""
        return next(
            (w.address_kind for w in self.context.words.values() if w.channel == channel), None
        )

    def inspect(self, path: str, listing: set[str]) -> Verdict:
        if path.lower().endswith(".html"):
            stem = path[:-5]
            if any(p.lower() == f"{stem.lower()}.csv" for p in listing):
                return Verdict("ignore", "companion")
            return Verdict("ignore", "not-mailing")
        check = self._check(path)
        if check.status == "not-mailing":
            return Verdict("ignore", "not-mailing", check.errors)
        if not check.ok:
            return Verdict("reject", "rejected", check.errors)
        assert check.mailing is not None
        not_today = check.problem("not-today")
        if not_today is not None:
            later = check.mailing.date > self.context.today
            return Verdict(
                "wait" if later else "ignore", "waiting" if later else "ignored", (not_today,)
            )
        passed = check.problem("deadline-passed")
        if passed is not None:
            return Verdict("reject", "rejected", (passed,))
        companions: tuple[str, ...] = ()
        html = self._html_for(path, listing)
        if self._kind(check.mailing.channel) == "email" and html:
            companions = (html,)
        return Verdict("import", "ready", (), companions)

    @staticmethod
    def _html_for(path: str, listing: set[str]) -> str | None:
        stem = path[:-4] if path.lower().endswith(".csv") else path
        for candidate in listing:
            if candidate.lower() == f"{stem.lower()}.html":
                return candidate
        return None

    # -- reading ---------------------------------------------------------------------------

    def prepare(self, path: str, spool: Path, companions: Mapping[str, Path]) -> ImportSpec:
        check = self._check(path)
        if check.status == "not-mailing" or not check.ok:
            raise FileRejected(list(check.errors))
        passed = check.problem("deadline-passed")
        if passed is not None:
            raise FileRejected([passed])
        m = check.mailing
        assert m is not None
        wallet = check.wallet
        assert wallet is not None
        settings = self.context.config.wallet(wallet)
        channel = m.channel

        table = open_csv(spool, path)
        raw, handle, lines = table.raw, table.handle, table.lines
        delimiter, header, nul = table.delimiter, table.header, table.nul
        roles, fields = header_roles(header)
        found = ", ".join(h.strip() for h in header) or "(none)"

        def missing(what: str, what_pt: str, role: str) -> FileRejected:
            return FileRejected(
                [
                    MESSAGES.make(
                        "missing-column",
                        what=what,
                        what_pt=what_pt,
                        aliases=", ".join(ALIASES[role]),
                        found=found,
                    )
                ]
            )

        kind = self._kind(channel)
        if kind == "phone" and "phone" not in roles:
            handle.close()
            raise missing("phone", "telefone", "phone")
        if kind == "email" and "email" not in roles:
            handle.close()
            raise missing("e-mail", "e-mail", "email")
        if channel is None and "phone" not in roles and "email" not in roles:
            handle.close()
            raise missing("phone or e-mail", "telefone ou e-mail", "phone")

        campaign = None
        prospects = channel == "whatsapp-prospect"
        if channel is not None:
            try:
                campaign = self._campaign(check, wallet, path, companions, "message" in roles)
            except FileRejected:
                handle.close()
                raise

        rules = RowRules(
            columns=len(header),
            key=roles.get("key"),
            name=roles.get("name"),
            phone=roles.get("phone"),
            email=roles.get("email"),
            message=roles.get("message"),
            prospect=roles.get("prospect"),
            fields=tuple(sorted(fields.items())),
            channel=channel,
            hygiene=m.hygiene,
            kind=kind,
            needs_message=text_channel(channel, kind) and not settings.sms_template,
            nul=nul,
            header=tuple(header),
        )
        stop = Stop()
        rows = self._rows(lines, delimiter, rules, handle, workers_for(spool, m.hygiene), stop)
        mailing = MailingRecord(
            name=path,
            file_date=m.date,
            sequence=m.sequence,
            description=check.description,
            params=check.as_json()["mailing"],
            duplicate_problem=MESSAGES.make(
                "duplicate-sequence", date=m.date.strftime("%d/%m/%Y"), sequence=m.sequence
            ),
        )
        return ImportSpec(
            wallet=wallet,
            tag=check.description,
            header=list(header),
            rows=rows,
            replace_tags=m.replace_tags,
            remove_other_wallets=m.remove_other_wallets,
            mailing=mailing,
            campaign=campaign,
            prospects_only=prospects,
            empty_campaign_problem=MESSAGES.make("no-prospects") if prospects else None,
            progress=raw.tell,
            close=handle.close,
            split=splitter(table, spool, rules, stop),
        )

    def contacts(self, path: str, spool: Path) -> ImportSpec:
        """A plain contact file for a group (``disparo groups import``): the same CSV reading
        as a mailing's (N22: encoding and delimiter detected; N23: headers by alias) and the
        same hygiene (N24–N26), with no mailing and no campaign; e-mail or phone per row."""
        table = open_csv(spool, path)
        raw, handle, lines = table.raw, table.handle, table.lines
        delimiter, header, nul = table.delimiter, table.header, table.nul
        roles, fields = header_roles(header)
        if "phone" not in roles and "email" not in roles:
            handle.close()
            raise FileRejected(
                [
                    MESSAGES.make(
                        "missing-column",
                        what="phone or e-mail",
                        what_pt="telefone ou e-mail",
                        aliases=", ".join(ALIASES["email"] + ALIASES["phone"]),
                        found=", ".join(h.strip() for h in header) or "(none)",
                    )
                ]
            )
        rules = RowRules(
            columns=len(header),
            key=roles.get("key"),
            name=roles.get("name"),
            phone=roles.get("phone"),
            email=roles.get("email"),
            message=None,
            prospect=None,
            fields=tuple(sorted(fields.items())),
            channel=None,
            hygiene=True,
            kind=None,
            needs_message=False,
            nul=nul,
            header=tuple(header),
        )
        rows = self._rows(lines, delimiter, rules, handle, workers_for(spool, True))
        leaf = path.rsplit("/", 1)[-1]
        return ImportSpec(
            wallet="",
            tag=leaf,
            header=list(header),
            rows=rows,
            progress=raw.tell,
            close=handle.close,
        )

    def _campaign(
        self,
        check: NameCheck,
        wallet: str,
        path: str,
        companions: Mapping[str, Path],
        has_message_column: bool,
    ) -> Campaign:
        m = check.mailing
        assert m is not None and m.channel is not None
        config = self.context.config
        tz = config.tz
        settings = config.wallet(wallet)
        now = self.context.now
        start = now
        if m.start_at is not None:
            start = max(now, m.start_at.replace(tzinfo=tz))
        deadline = m.deadline.replace(tzinfo=tz) if m.deadline else None
        account, held = resolve_account(config, m.channel, wallet, m.sender)
        subject = body = None
        kind = self._kind(m.channel)
        if kind == "email":
            subject = m.subject or settings.email_subject
            assert subject is not None  # N17 was checked with the same defaults
            check_template(subject, "subject", "o assunto")
            body = self._email_body(path, wallet, companions, settings.email_template)
            check_template(body, "e-mail body", "o corpo do e-mail")
        elif text_channel(m.channel, kind):
            body = settings.sms_template
            if body is None and not has_message_column:
                raise FileRejected([MESSAGES.make("missing-message", wallet=wallet)])
            if body is not None:
                check_template(body, "SMS template", "o modelo de SMS")
        return Campaign(
            name=check.description,
            channel=m.channel,
            account=account,
            wallet=wallet,
            address_kind="email" if kind == "email" else "phone",
            status_reason=held,
            start_at=start,
            deadline=deadline,
            pacing=m.pacing,
            exclude_recent_hours=m.exclude_recent_hours,
            content=Content(
                subject=subject,
                body=body,
                template=m.template,
                whatsapp_number=m.whatsapp_number,
                sender=m.sender,
                from_name=settings.from_name,
                reply_to=settings.reply_to,
            ),
        )

    def _email_body(
        self, path: str, wallet: str, companions: Mapping[str, Path], template: Path | None
    ) -> str:
        stem = path.rsplit("/", 1)[-1]
        html_name = (stem[:-4] if stem.lower().endswith(".csv") else stem) + ".html"
        source = next(iter(companions.values()), None) or template
        if source is None:
            raise FileRejected([MESSAGES.make("missing-body", html=html_name, wallet=wallet)])
        try:
            data = source.read_bytes()
        except OSError as exc:
            raise FileRejected(
                [MESSAGES.make("unreadable-body", path=source.name, error=exc.strerror or exc)]
            ) from None
        try:
            return data.decode("utf-8-sig")
        except UnicodeDecodeError:
            return data.decode("cp1252", errors="replace")

    def _rows(
        self,
        lines: Iterator[str],
        delimiter: str,
        rules: RowRules,
        handle: IO[str],
        workers: int,
        stop: Stop | None = None,
    ) -> Iterator[list[tuple[Any, ...]]]:
        return read_rows(lines, delimiter, rules, handle, workers, stop)


@dataclass
class CsvFile:
    """A contact file opened for reading (N22): the encoding found, the delimiter sniffed,
    the header read; ``lines`` are the lines after it. ``handle.close()`` releases it."""

    raw: IO[bytes]
    handle: IO[str]
    lines: Iterator[str]
    header: list[str]
    delimiter: str
    #: a NUL byte is somewhere in the file (rows are checked for one)
    nul: bool
    #: the encoding found (N22) and the longest line, in bytes
    encoding: str = "utf-8"
    longest: int = 0
    #: the file's lines are its records (``Scan.plain``)
    plain: bool = False


def open_csv(spool: Path, name: str) -> CsvFile:
    """Open a downloaded contact file as N22 reads it: refuse what is not CSV text, find the
    encoding (UTF-8, else Windows-1252), read the header and sniff the delimiter; raise
    ``FileRejected`` with the reason. Every contact format reads its files through here."""
    refuse_payload(spool, name)
    encoding, longest, nul, plain = scan_bytes(spool)
    raw = spool.open("rb")
    # cp1252 leaves five bytes undefined: shown as U+FFFD rather than failing the file
    handle = io.TextIOWrapper(raw, encoding=encoding, errors="replace", newline="")
    # the careful reader only when a line is too long to hold (it is ~5x slower)
    lines = bounded_lines(handle) if longest >= MAX_LINE else iter(handle)
    first = next(lines, "")
    if first.startswith(TOO_LONG):
        handle.close()
        raise FileRejected([MESSAGES.make("line-too-long", limit=f"{MAX_LINE:,}")])
    if not first.strip():
        handle.close()
        raise FileRejected([MESSAGES.make("empty-file")])
    delimiter = sniff_delimiter(first)
    header = next(csv.reader([first], delimiter=delimiter))
    return CsvFile(raw, handle, lines, header, delimiter, nul, encoding, longest, plain)


@dataclass
class Stop:
    """Where ``read_rows`` stops: before the record that starts on ``line`` (None: at the
    end of the file). Set by ``ImportSpec.split`` before the rows are read."""

    line: int | None = None


def read_rows(
    lines: Iterator[str],
    delimiter: str,
    rules: RowRules,
    handle: IO[str],
    workers: int,
    stop: Stop | None = None,
) -> Iterator[list[tuple[Any, ...]]]:
    """Records -> chunks of contact rows and rejected rows (N22–N28), lazily, in order (in
    ``workers`` processes when there are any and a row's work is above ``SLOW_ROW``);
    closes ``handle`` when done. With ``stop``, the records before its line only."""
    reader = csv.reader(lines, delimiter=delimiter, strict=False)

    def chunks() -> Iterator[list[tuple[int, list[str]]]]:
        chunk: list[tuple[int, list[str]]] = []
        previous = 1  # the header's line
        end = stop.line if stop is not None and stop.line is not None else None
        for values in reader:
            if end is not None and previous + 1 >= end:
                break  # the record on `end` is the tail's (ImportSpec.split)
            chunk.append((previous + 1, values))
            previous = reader.line_num + 1
            if len(chunk) >= CHUNK:
                yield chunk
                chunk = []
        if chunk:
            yield chunk

    try:
        pending = chunks()
        if workers:
            # the first chunk pays the libraries' first use; the second tells what a row costs
            cost = 0.0
            for chunk in islice(pending, 2):
                started = time.thread_time()
                rows = process_records(rules, chunk)
                cost = (time.thread_time() - started) / len(chunk)
                yield rows
            if cost < SLOW_ROW:
                workers = 0
        if workers == 0:
            for chunk in pending:
                yield process_records(rules, chunk)
        else:
            yield from _in_processes(rules, pending, workers)
    finally:
        handle.close()


def split_point(path: Path, share: float) -> tuple[int, int] | None:
    """Where the tail of about ``share`` of a file's bytes begins: (byte offset, line number)
    of the first line starting there; None when no line does. For a file whose lines are its
    records (``Scan.plain``): then a record starts there."""
    size = path.stat().st_size
    wanted = int(size * (1 - share))
    lines = 1
    seen = 0
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            if seen + len(chunk) > wanted:
                at = chunk.find(b"\n", max(wanted - seen, 0))
                if at >= 0:
                    offset = seen + at + 1
                    if offset >= size:
                        return None
                    return offset, lines + chunk.count(b"\n", 0, at + 1)
            lines += chunk.count(b"\n")
            seen += len(chunk)
    return None


def splitter(
    table: CsvFile, spool: Path, rules: RowRules, stop: Stop
) -> Callable[[float], CsvTail | None]:
    """``ImportSpec.split`` for a file read by ``read_rows`` with ``stop``."""

    def split(share: float) -> CsvTail | None:
        if not table.plain or table.longest >= MAX_LINE:
            return None  # a record may span lines; the careful reader's are not the file's
        point = split_point(spool, share)
        if point is None:
            return None
        offset, line = point
        stop.line = line
        return CsvTail(str(spool), offset, line, table.encoding, table.delimiter, rules)

    return split


def workers_for(spool: Path, hygiene: bool) -> int:
    """Worker processes for the row work of a file (0: in this process); ``read_rows`` uses
    them only when its rows turn out slow (``SLOW_ROW``).

    Hygiene through the libraries' parsers costs ~30 µs a row: a big file of such rows gets
    a worker per core while this process reads the CSV and writes the staging table. The
    usual rows take the fast paths (~8 µs with hygiene, ~2 µs without), cheaper than sending
    them to another process and back: measured on the loaded 2-core machine, 400,000 rows
    with `_h` went 1.5–2x faster in this process than with two workers.
    """
    cores = os.cpu_count() or 1
    if not hygiene or cores < 2 or spool.stat().st_size < PARALLEL_BYTES:
        return 0
    return cores if forkserver() is not None else 0


def _in_processes(
    rules: RowRules, chunks: Iterator[list[tuple[int, list[str]]]], workers: int
) -> Iterator[list[tuple[Any, ...]]]:
    """Row work in worker processes while this one reads the CSV and writes the staging
    table: chunks come back in order, at most two per worker in flight (flat memory)."""
    # forkserver, not fork: the engine has threads, and a forked child could inherit a lock
    context = forkserver()
    assert context is not None  # workers_for gives workers only when the fork server runs
    # the workers are the fork server's children, not this process's: each ends by itself
    # when this process is gone (kill -9 included), else it would wait forever on its queue
    with ProcessPoolExecutor(
        workers, mp_context=context, initializer=exit_with, initargs=(os.getpid(),)
    ) as pool:
        window: deque[Future[list[tuple[Any, ...]]]] = deque()
        for chunk in chunks:
            window.append(pool.submit(process_plain, rules, chunk))
            if len(window) >= 2 * workers:
                yield window.popleft().result()
        while window:
            yield window.popleft().result()


@hookimpl
def register_formats(register: Any) -> None:
    register(MailingFormat)


__all__ = [
    "MESSAGES",
    "ROW_MESSAGES",
    "CsvFile",
    "CsvTail",
    "MailingFormat",
    "RowRules",
    "Scan",
    "Stop",
    "open_csv",
    "process_records",
    "read_rows",
    "scan_bytes",
    "split_point",
    "splitter",
    "workers_for",
]
