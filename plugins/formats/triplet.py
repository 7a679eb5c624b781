"""The ``triplet`` format (spec/triplet-and-sync.md T1–T7; seed 001, MediaPost's FTP
integration): a send is three files without extension, ``SEND_CONF_YYYYMMDD`` (what to send,
from whom, when), ``SEND_HTML_YYYYMMDD`` (the message) and ``SEND_MAIL_YYYYMMDD`` (the
contacts), taken together once all three are there and stable (T2), once per send name (T3).

The MAIL file is the one the collector takes (the contacts are what is imported, and its
rejected rows report is named after it); CONF and HTML are its companions, read and moved
with it. A send still missing a file waits, shown as ``incomplete`` with what is missing,
and after ``incomplete_after`` is reported and its files rejected; a send with a fourth
file, a type other than CONF/HTML/MAIL or an extension is rejected at once, whole.

The result files published back (T8) are the ``triplet-results`` publisher's
(``plugins/publishers/triplet_results.py``); this module names them (``RESULT_TYPES``) so
that they are left alone when they are listed beside the sends.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any, BinaryIO, ClassVar

from engine import hookimpl
from engine.addresses import normalise_email
from engine.campaign import Campaign, Content
from engine.config import Config, Key, SourceSettings
from engine.plugins.format import (
    ContactRow,
    FileRejected,
    Format,
    ImportSpec,
    RejectedRow,
    Verdict,
)
from engine.problems import Catalogue, Problem
from engine.render import compile_html, compile_text, trial_render
from engine.schedule import Pacing, interval_text
from plugins.formats.mailing import (
    MAGIC,
    MAX_LINE,
    TOO_LONG,
    bounded_lines,
    normalise_header,
    scan,
    wide_encoding,
)

#: T1: the three types of a send, in the order reports name them
TYPES = ("CONF", "HTML", "MAIL")
#: T8: the result files published back beside the sends (left alone when listed)
RESULT_TYPES = ("ABERTURA", "ABERTURAUNICA", "CLIQUE", "CLIQUEUNICO", "RETORNADO", "CANCELADO")
#: T4: the CONF file's header, exactly
CONF_HEADER = (
    "CAMPANHA",
    "ASSUNTO",
    "REMETENTE_NOME",
    "REMETENTE_EMAIL",
    "RESPONDER_PARA",
    "DATA_ENVIO",
)
#: T1: ``SEND_TYPE_YYYYMMDD`` (SEND may hold ``_``: the type is the last word but one)
NAME = re.compile(r"(?P<send>.+)_(?P<type>[^_]+)_(?P<date>\d{8})")
#: CONF and HTML are small; a bigger file is not what it should be
MAX_CONF = 64 << 10
MAX_HTML = 5 << 20
CHUNK = 2000

MESSAGES = Catalogue(
    {
        "incomplete": (
            "T2",
            "send `{send}` of {day} waits for {missing}: a send is taken when its CONF, HTML "
            "and MAIL files are all there",
            "o envio `{send}` de {day} aguarda {missing}: um envio é recebido quando os "
            "arquivos CONF, HTML e MAIL estão todos lá",
        ),
        "incomplete-send": (
            "T2",
            "send `{send}` of {day} stayed incomplete for {waited}: {missing} never arrived, so "
            "nothing of it was imported. Send the three files together: {expected}",
            "o envio `{send}` de {day} ficou incompleto por {waited}: {missing} não chegou, "
            "então nada dele foi importado. Envie os três arquivos juntos: {expected}",
        ),
        "bad-type": (
            "T2",
            "`{name}` has the type `{type}`, but the files of a send are only CONF, HTML and "
            "MAIL{hint}; nothing of send `{send}` of {day} was imported. Remove or rename it "
            "and send the three files again",
            "`{name}` tem o tipo `{type}`, mas os arquivos de um envio são só CONF, HTML e "
            "MAIL{hint_pt}; nada do envio `{send}` de {day} foi importado. Remova-o ou "
            "renomeie-o e envie os três arquivos de novo",
        ),
        "extension": (
            "T1",
            "`{name}` has an extension, and the files of a send have none: rename it `{fixed}` "
            "and send the three files again",
            "`{name}` tem extensão, e os arquivos de um envio não têm: renomeie-o para "
            "`{fixed}` e envie os três arquivos de novo",
        ),
        "too-many-files": (
            "T2",
            "send `{send}` of {day} has {count} files ({names}); a send is exactly three: "
            "{expected}",
            "o envio `{send}` de {day} tem {count} arquivos ({names}); um envio tem exatamente "
            "três: {expected}",
        ),
        "bad-date": (
            "T1",
            "`{date}` in `{name}` is not a date: write the date as YYYYMMDD (e.g. 20261123)",
            "`{date}` em `{name}` não é uma data: escreva a data como AAAAMMDD (ex.: 20261123)",
        ),
        "already-processed": (
            "T3",
            "send `{send}` of {day} was already processed on {when}; a send's name is never "
            "processed twice, even with other content. Give a new send a new name (or date)",
            "o envio `{send}` de {day} já foi processado em {when}; o nome de um envio nunca "
            "é processado duas vezes, mesmo com outro conteúdo. Dê outro nome (ou data) a um "
            "envio novo",
        ),
        "bad-conf-header": (
            "T4",
            "the header of `{name}` must be exactly `{expected}` (columns neither changed, "
            "added nor removed); found `{found}`",
            "o cabeçalho de `{name}` deve ser exatamente `{expected}` (sem mudar, incluir ou "
            "tirar colunas); encontrado `{found}`",
        ),
        "conf-rows": (
            "T4",
            "`{name}` must have one line of data below its header; it has {count}",
            "`{name}` deve ter uma linha de dados abaixo do cabeçalho; tem {count}",
        ),
        "conf-values": (
            "T4",
            "the data line of `{name}` has {count} values; it needs 6, one for each column of "
            "`{expected}` (a `;` inside a value must be between quotes)",
            "a linha de dados de `{name}` tem {count} valores; precisa de 6, um para cada "
            "coluna de `{expected}` (um `;` dentro de um valor deve ficar entre aspas)",
        ),
        "conf-missing": (
            "T4",
            "`{column}` is empty in `{name}`: it is the {what}",
            "`{column}` está vazio em `{name}`: é {what_pt}",
        ),
        "conf-email": (
            "T4",
            "`{column}` in `{name}` is not a valid e-mail address: {why}",
            "`{column}` em `{name}` não é um endereço de e-mail válido: {why_pt}",
        ),
        "bad-send-date": (
            "T4",
            "DATA_ENVIO `{value}` in `{name}` is not a date and time: write DD/MM/YYYY HH:MM "
            "({zone} time, e.g. 25/11/2026 14:30), or leave it empty to send at once",
            "DATA_ENVIO `{value}` em `{name}` não é uma data e hora: escreva DD/MM/AAAA HH:MM "
            "(horário de {zone}, ex.: 25/11/2026 14:30), ou deixe vazio para enviar já",
        ),
        "not-text": (
            "T1",
            "`{name}` is {what}, not text; the files of a send are plain text ({fix})",
            "`{name}` é {what_pt}, não um texto; os arquivos de um envio são texto simples "
            "({fix_pt})",
        ),
        "too-big": (
            "T1",
            "`{name}` has {size:,} bytes, more than a {type} file can have ({limit:,}); check "
            "that it is the right file",
            "`{name}` tem {size:,} bytes, mais do que um arquivo {type} pode ter ({limit:,}); "
            "confira se é o arquivo certo",
        ),
        "empty-html": (
            "T5",
            "`{name}` is empty: it is the message's HTML body",
            "`{name}` está vazio: é o corpo HTML da mensagem",
        ),
        "bad-template": (
            "T5",
            "the {what} is not a valid template: {error} (line {line}); write the MAIL columns "
            "as `{{{{ NOME }}}}`",
            "{what_pt} não é um template válido: {error} (linha {line}); escreva as colunas do "
            "MAIL como `{{{{ NOME }}}}`",
        ),
        "missing-email-column": (
            "T5",
            "the header of `{name}` has no EMAIL column (found: {found}); its first line names "
            "the columns, separated by `;`, one of them EMAIL",
            "o cabeçalho de `{name}` não tem a coluna EMAIL (encontradas: {found}); a primeira "
            "linha dá os nomes das colunas, separados por `;`, uma delas EMAIL",
        ),
        "empty-mail": (
            "T5",
            "`{name}` has no contact with a usable e-mail address (the rows that could not be "
            "used are listed in the rejected rows report): add the contacts, one a line below "
            "the header, and send the three files again",
            "`{name}` não tem nenhum contato com um e-mail utilizável (as linhas que não "
            "puderam ser usadas estão no relatório de linhas recusadas): inclua os contatos, "
            "um por linha abaixo do cabeçalho, e envie os três arquivos de novo",
        ),
    }
)

ROW_MESSAGES = Catalogue(
    {
        "missing-email": (
            "T5",
            "the row has no e-mail (column EMAIL)",
            "a linha não tem e-mail (coluna EMAIL)",
        ),
        "extra-values": (
            "T5",
            "the row has {count} values but the header has {columns} columns; check the `;` "
            "and the quotes",
            "a linha tem {count} valores, mas o cabeçalho tem {columns} colunas; confira os "
            "`;` e as aspas",
        ),
        "line-too-long": (
            "T5",
            "the line is longer than {limit} characters and was not read",
            "a linha tem mais de {limit} caracteres e não foi lida",
        ),
        "nul-character": (
            "T5",
            "the row has a NUL character (a zero byte): the file is probably damaged",
            "a linha tem um caractere NUL (um byte zero): o arquivo provavelmente está danificado",
        ),
    }
)


@dataclass(frozen=True)
class Member:
    """One listed file that belongs to a send (by its name)."""

    path: str
    folder: str
    send: str
    type: str
    day: str
    #: the part of the name after its first dot (T1: a send's files have none)
    extension: str | None

    @property
    def name(self) -> str:
        return self.path.rpartition("/")[2]

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.folder, self.send, self.day)


def parse_member(path: str) -> Member | None:
    """The send a listed file belongs to, from its name (None: not a send's file, or a result
    file published beside the sends)."""
    folder, _, leaf = path.rpartition("/")
    base, dot, extension = leaf.partition(".")
    match = NAME.fullmatch(base)
    if match is None:
        return None
    kind = match["type"]
    if kind in RESULT_TYPES:
        return None  # T8: what disparo published here
    return Member(path, folder, match["send"], kind, match["date"], extension if dot else None)


def send_path(folder: str, send: str, day: str) -> str:
    """``folder/SEND_YYYYMMDD``: a send's identity on its source (T3)."""
    leaf = f"{send}_{day}"
    return f"{folder}/{leaf}" if folder else leaf


def member_path(folder: str, send: str, kind: str, day: str) -> str:
    leaf = f"{send}_{kind}_{day}"
    return f"{folder}/{leaf}" if folder else leaf


def _day(day: str) -> str:
    """``20261123`` -> ``23/11/2026`` (as written when it is not a date)."""
    try:
        return datetime.strptime(day, "%Y%m%d").strftime("%d/%m/%Y")  # noqa: DTZ007 - a day
    except ValueError:
        return day


def _valid_day(day: str) -> bool:
    try:
        date(int(day[:4]), int(day[4:6]), int(day[6:]))
    except ValueError:
        return False
    return True


def _and(items: list[str], word: str = "and") -> str:
    quoted = [f"`{i}`" for i in items]
    return quoted[0] if len(quoted) == 1 else f"{', '.join(quoted[:-1])} {word} {quoted[-1]}"


def _decode(data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return data.decode("cp1252", errors="replace")


def _small_text(
    remote: str, local: Path, kind: str, limit: int, problems: list[Problem]
) -> str | None:
    """A CONF or HTML file's text, read whole; None (with the problem added) when it is over
    ``limit`` bytes or not text."""
    name = remote.rpartition("/")[2]
    size = local.stat().st_size
    if size > limit:
        problems.append(MESSAGES.make("too-big", name=name, size=size, type=kind, limit=limit))
        return None
    data = local.read_bytes()
    wrong = _not_text(data[:4096], name)
    if wrong is not None:
        problems.append(wrong)
        return None
    return _decode(data)


def _not_text(head: bytes, name: str) -> Problem | None:
    """T1: a compressed or binary payload, or UTF-16/32, where plain text is expected."""
    fix, fix_pt = "save it as plain UTF-8 text", "salve-o como texto simples UTF-8"
    for magic, what, what_pt, _f, _fp in MAGIC:
        if head.startswith(magic):
            return MESSAGES.make(
                "not-text", name=name, what=what, what_pt=what_pt, fix=fix, fix_pt=fix_pt
            )
    encoding = wide_encoding(head)
    if encoding is not None:
        return MESSAGES.make(
            "not-text",
            name=name,
            what=f"text encoded in {encoding}",
            what_pt=f"um texto codificado em {encoding}",
            fix=fix,
            fix_pt=fix_pt,
        )
    return None


def _template_problem(text: str, html: bool, what: str, what_pt: str) -> Problem | None:
    """T5: a body or subject that is not a valid template, or that reaches for what the
    sandbox forbids."""
    from jinja2 import TemplateError, TemplateSyntaxError

    try:
        trial_render(compile_html(text) if html else compile_text(text))
    except TemplateSyntaxError as exc:
        return MESSAGES.make(
            "bad-template", what=what, what_pt=what_pt, error=exc.message, line=exc.lineno
        )
    except TemplateError as exc:
        return MESSAGES.make("bad-template", what=what, what_pt=what_pt, error=exc, line="?")
    return None


@dataclass(frozen=True)
class Conf:
    """The CONF file's one data row (T4)."""

    campaign: str
    subject: str
    from_name: str | None
    from_address: str
    reply_to: str | None
    #: DATA_ENVIO, local time; None: at once
    send_at: datetime | None


class TripletFormat(Format):
    """``SEND_CONF_YYYYMMDD``, ``SEND_HTML_YYYYMMDD`` and ``SEND_MAIL_YYYYMMDD``: an e-mail
    campaign per send (T1–T7)."""

    name = "triplet"
    publishers = ("triplet-results",)
    default_cron = "0 * * * *"  # T6: every hour, on the hour
    config_keys: ClassVar[dict[str, Key]] = {
        "incomplete_after": Key(
            "duration",
            timedelta(hours=24),
            help="How long a send missing a file waits before it is reported (T2).",
        ),
        "account": Key(
            "str",
            None,
            help="The e-mail account of sends whose REMETENTE_EMAIL no account sends as (T5).",
        ),
        "wallet": Key(
            "str",
            None,
            help="The wallet contacts go to (default: the send's folder, else the source's name).",
        ),
        "batch_size": Key(
            "int", None, minimum=1, help="Size pacing (T7, D6): at most this many per batch."
        ),
        "batch_every": Key("duration", timedelta(hours=1), help="…one batch every this long."),
    }

    @classmethod
    def check_settings(
        cls, settings: SourceSettings, accounts: Mapping[str, str]
    ) -> list[tuple[str, str]]:
        name = settings.options.get("account")
        if name is None or accounts.get(name) == "email":
            return []
        emails = ", ".join(sorted(a for a, c in accounts.items() if c == "email")) or "none"
        what = "is not an e-mail account" if name in accounts else "is not in [accounts]"
        return [("account", f"`{name}` {what} (e-mail accounts: {emails})")]

    @classmethod
    def source_pacing(cls, settings: SourceSettings) -> Pacing | None:
        size = settings.options.get("batch_size")
        if size is None:
            return None
        return Pacing.size(int(size), settings.options["batch_every"])

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._listing: set[str] | None = None
        self._groups: dict[tuple[str, str, str], list[Member]] = {}

    @property
    def settings(self) -> SourceSettings | None:
        return self.context.config.sources.get(self.context.source)

    def option(self, key: str) -> Any:
        settings = self.settings
        if settings is not None and key in settings.options:
            return settings.options[key]
        return self.config_keys[key].default

    # -- what to do with a listed file (T1–T3) ----------------------------------------------

    def _group(self, member: Member, listing: set[str]) -> list[Member]:
        """Every listed file of ``member``'s send (worked out once per listing)."""
        if self._listing is not listing:
            self._listing = listing
            self._groups = {}
            for path in listing:
                found = parse_member(path)
                if found is not None:
                    self._groups.setdefault(found.key, []).append(found)
            for group in self._groups.values():
                group.sort(key=lambda m: m.path)
        return self._groups.get(member.key, [member])

    def inspect(self, path: str, listing: set[str]) -> Verdict:
        member = parse_member(path)
        if member is None:
            leaf = path.rpartition("/")[2]
            match = NAME.fullmatch(leaf)
            if match is not None and match["type"] in RESULT_TYPES:
                return Verdict("ignore", "result")
            return Verdict("ignore", "not-triplet")
        group = self._group(member, listing | {path})
        problems = self._group_problems(member, group)
        exact = {m.type: m for m in group if m.extension is None}
        if problems:
            # rejected whole, once: by its MAIL (else CONF, else HTML, else the first name)
            primary = next((exact[t] for t in ("MAIL", "CONF", "HTML") if t in exact), group[0])
            if member.path != primary.path:
                return Verdict("ignore", "companion")
            others = tuple(m.path for m in group if m.path != primary.path)
            return Verdict("reject", "rejected", tuple(problems), others)
        if len(exact) == len(TYPES):
            if member.type != "MAIL":
                return Verdict("ignore", "companion")
            return Verdict("import", "ready", (), (exact["CONF"].path, exact["HTML"].path))
        missing = [
            member_path(member.folder, member.send, t, member.day).rpartition("/")[2]
            for t in TYPES
            if t not in exact
        ]
        day = _day(member.day)
        waiting = MESSAGES.make(
            "incomplete", send=member.send, day=day, missing=_and(missing), piece=member.send
        )
        primary = next(exact[t] for t in ("MAIL", "CONF", "HTML") if t in exact)
        if member.path != primary.path:
            return Verdict("wait", "incomplete", (waiting,))
        after: timedelta = self.option("incomplete_after")
        expected = ", ".join(
            f"`{member_path(member.folder, member.send, t, member.day).rpartition('/')[2]}`"
            for t in TYPES
        )
        give_up = MESSAGES.make(
            "incomplete-send",
            send=member.send,
            day=day,
            waited=interval_text(after),
            missing=_and(missing),
            expected=expected,
        )
        others = tuple(m.path for m in group if m.path != member.path)
        return Verdict(
            "wait",
            "incomplete",
            (waiting,),
            others,
            give_up_after=after,
            give_up=(give_up,),
        )

    def _group_problems(self, member: Member, group: list[Member]) -> list[Problem]:
        """T1, T2: what makes a send unusable by its names alone."""
        problems: list[Problem] = []
        day = _day(member.day)
        if not _valid_day(member.day):
            problems.append(MESSAGES.make("bad-date", date=member.day, name=member.name))
        for m in group:
            if m.extension is not None:
                fixed = m.name.partition(".")[0]
                problems.append(MESSAGES.make("extension", name=m.name, fixed=fixed))
            elif m.type not in TYPES:
                upper = m.type.upper()
                hint = hint_pt = ""
                if upper in TYPES:
                    hint = f" (the type is written in upper case: `{upper}`)"
                    hint_pt = f" (o tipo é escrito em maiúsculas: `{upper}`)"
                problems.append(
                    MESSAGES.make(
                        "bad-type",
                        name=m.name,
                        type=m.type,
                        send=m.send,
                        day=day,
                        hint=hint,
                        hint_pt=hint_pt,
                    )
                )
        if len(group) > len(TYPES):
            expected = ", ".join(
                f"`{member_path(member.folder, member.send, t, member.day).rpartition('/')[2]}`"
                for t in TYPES
            )
            problems.append(
                MESSAGES.make(
                    "too-many-files",
                    send=member.send,
                    day=day,
                    count=len(group),
                    names=", ".join(f"`{m.name}`" for m in group),
                    expected=expected,
                )
            )
        return problems

    def dedupe_key(self, path: str, sha256: str) -> str:
        """T3: the send's name (its folder, SEND and date), whatever the content."""
        member = parse_member(path)
        if member is None:  # pragma: no cover - only a send's MAIL is ever imported
            return super().dedupe_key(path, sha256)
        return "triplet:" + send_path(member.folder, member.send, member.day)

    def duplicate_problem(self, path: str, imported_at: datetime) -> Problem | None:
        member = parse_member(path)
        if member is None:  # pragma: no cover
            return None
        when = imported_at.astimezone(self.context.config.tz).strftime("%d/%m/%Y %H:%M")
        return MESSAGES.make("already-processed", send=member.send, day=_day(member.day), when=when)

    # -- reading (T4, T5) -------------------------------------------------------------------

    def prepare(self, path: str, spool: Path, companions: Mapping[str, Path]) -> ImportSpec:
        member = parse_member(path)
        assert member is not None and member.type == "MAIL", path
        files = {(parse_member(p) or member).type: (p, local) for p, local in companions.items()}
        problems: list[Problem] = []
        conf = self._conf(*files["CONF"], problems)
        body = self._html(*files["HTML"], problems)
        if conf is not None:
            subject = _template_problem(conf.subject, False, "subject (ASSUNTO)", "o assunto")
            if subject is not None:
                problems.append(subject)
        # the MAIL's header is checked even when the others are wrong: everything at once
        head = self._mail_head(member, spool, problems)
        if problems or conf is None or body is None or head is None:
            if head is not None:
                head[0].close()
            raise FileRejected(problems)
        handle, raw, header, email_at, nul = head
        wallet = self._wallet(member)
        campaign = self._campaign(member, conf, body, wallet)
        rules = _Rules(
            header=tuple(header),
            email=email_at,
            name=next(
                (i for i, h in enumerate(header) if normalise_header(h) in ("nome", "name")),
                None,
            ),
            keys=_field_keys(header),
            nul=nul,
        )
        return ImportSpec(
            wallet=wallet,
            tag=send_path("", member.send, member.day),
            header=list(header),
            rows=_rows(handle, rules),
            campaign=campaign,
            progress=raw.tell,
            close=handle.close,
            empty_problem=MESSAGES.make("empty-mail", name=member.name),
            keep_rejected=email_at,
        )

    def _conf(self, remote: str, local: Path, problems: list[Problem]) -> Conf | None:
        """T4: the CONF file's header, exactly, and its one data row."""
        text = _small_text(remote, local, "CONF", MAX_CONF, problems)
        if text is None:
            return None
        name = remote.rpartition("/")[2]
        lines = [line for line in text.splitlines() if line.strip()]
        expected = ";".join(CONF_HEADER)
        rows = list(csv.reader(lines, delimiter=";"))
        header = [h.strip() for h in rows[0]] if rows else []
        if tuple(header) != CONF_HEADER:
            found = lines[0].strip() if lines else "(an empty file)"
            problems.append(
                MESSAGES.make("bad-conf-header", name=name, expected=expected, found=found)
            )
            return None
        if len(rows) != 2:
            problems.append(MESSAGES.make("conf-rows", name=name, count=len(rows) - 1))
            return None
        values = [v.strip() for v in rows[1]]
        while len(values) > len(CONF_HEADER) and not values[-1]:
            values.pop()  # a trailing `;`
        if len(values) != len(CONF_HEADER):
            problems.append(
                MESSAGES.make("conf-values", name=name, count=len(values), expected=expected)
            )
            return None
        row = dict(zip(CONF_HEADER, values, strict=True))
        found = len(problems)
        if not row["ASSUNTO"]:
            problems.append(
                MESSAGES.make(
                    "conf-missing",
                    column="ASSUNTO",
                    name=name,
                    what="message's subject",
                    what_pt="o assunto da mensagem",
                )
            )
        addresses: dict[str, str | None] = {}
        for column, required in (("REMETENTE_EMAIL", True), ("RESPONDER_PARA", False)):
            value = row[column]
            if not value:
                addresses[column] = None
                if required:
                    problems.append(
                        MESSAGES.make(
                            "conf-missing",
                            column=column,
                            name=name,
                            what="sender's address (From)",
                            what_pt="o endereço do remetente (From)",
                        )
                    )
                continue
            checked = normalise_email(value)
            if checked.value is None:
                problems.append(
                    MESSAGES.make(
                        "conf-email",
                        column=column,
                        name=name,
                        why=checked.error,
                        why_pt=checked.error_pt,
                    )
                )
            addresses[column] = checked.value
        send_at = None
        if row["DATA_ENVIO"]:
            try:
                naive = datetime.strptime(row["DATA_ENVIO"], "%d/%m/%Y %H:%M")  # noqa: DTZ007
                send_at = naive.replace(tzinfo=self.context.config.tz)
            except ValueError:
                problems.append(
                    MESSAGES.make(
                        "bad-send-date",
                        value=row["DATA_ENVIO"],
                        name=name,
                        zone=self.context.config.tz,
                    )
                )
        if len(problems) > found:
            return None
        sender = addresses["REMETENTE_EMAIL"]
        assert sender is not None
        return Conf(
            campaign=row["CAMPANHA"],
            subject=row["ASSUNTO"],
            from_name=row["REMETENTE_NOME"] or None,
            from_address=sender,
            reply_to=addresses["RESPONDER_PARA"],
            send_at=send_at,
        )

    def _html(self, remote: str, local: Path, problems: list[Problem]) -> str | None:
        """T5: the message's body, a template checked in the sandbox."""
        body = _small_text(remote, local, "HTML", MAX_HTML, problems)
        if body is None:
            return None
        name = remote.rpartition("/")[2]
        if not body.strip():
            problems.append(MESSAGES.make("empty-html", name=name))
            return None
        bad = _template_problem(body, True, f"HTML body `{name}`", f"o corpo HTML `{name}`")
        if bad is not None:
            problems.append(bad)
            return None
        return body

    def _mail_head(
        self, member: Member, spool: Path, problems: list[Problem]
    ) -> tuple[_Rest, BinaryIO, list[str], int, bool] | None:
        """T5: the MAIL file opened for streaming, its header and where EMAIL is."""
        with spool.open("rb") as peek:
            wrong = _not_text(peek.read(4096), member.name)
        if wrong is not None:
            problems.append(wrong)
            return None
        encoding, longest, nul = scan(spool)
        raw = spool.open("rb")
        handle = io.TextIOWrapper(raw, encoding=encoding, errors="replace", newline="")
        lines = bounded_lines(handle) if longest >= MAX_LINE else iter(handle)
        first = next(lines, "")
        header = (
            [h.strip().lstrip("\ufeff") for h in next(csv.reader([first], delimiter=";"))]
            if first.strip() and not first.startswith(TOO_LONG)
            else []
        )
        email_at = next(
            (i for i, h in enumerate(header) if normalise_header(h) in ("email", "e-mail")), None
        )
        if email_at is None:
            handle.close()
            found = ", ".join(f"`{h}`" for h in header if h) or "(none)"
            problems.append(MESSAGES.make("missing-email-column", name=member.name, found=found))
            return None
        # the rows are read from the same handle, lazily, while the importer writes
        return _Rest(handle, lines), raw, header, email_at, nul

    def _wallet(self, member: Member) -> str:
        configured = self.option("wallet")
        if configured:
            return str(configured)
        return member.folder.partition("/")[0] if member.folder else self.context.source

    def _campaign(self, member: Member, conf: Conf, body: str, wallet: str) -> Campaign:
        """T5: an e-mail campaign from the CONF and the HTML; T7: the source's size pacing."""
        now = self.context.now
        start = now if conf.send_at is None else max(now, conf.send_at)
        account, held = self._account(conf.from_address)
        settings = self.settings
        return Campaign(
            name=conf.campaign or send_path("", member.send, member.day),
            channel="email",
            account=account,
            wallet=wallet,
            address_kind="email",
            status_reason=held,
            start_at=start,
            pacing=self.source_pacing(settings) if settings is not None else None,
            content=Content(
                subject=conf.subject,
                body=body,
                sender=conf.from_address,
                from_name=conf.from_name,
                reply_to=conf.reply_to,
            ),
        )

    def _account(self, sender: str) -> tuple[str | None, str | None]:
        """T5: the e-mail account whose ``from_address`` is REMETENTE_EMAIL, else the source's
        ``account``, else the only e-mail account; else None and why."""
        return triplet_account(self.context.config, self.context.source, sender)


def triplet_account(config: Config, source: str, sender: str) -> tuple[str | None, str | None]:
    """T5's choice of the sending account: (name, None) or (None, why none can send)."""
    emails = [a for a in config.accounts.values() if a.channel == "email"]
    for account in emails:
        if str(account.options.get("from_address", "")).lower() == sender.lower():
            return account.name, None
    settings = config.sources.get(source)
    named = settings.options.get("account") if settings is not None else None
    if named is not None and named in config.accounts:
        return str(named), None
    if len(emails) == 1:
        return emails[0].name, None
    if not emails:
        return None, (
            f"no e-mail account to send as {sender}: add an [accounts.NAME] with channel = "
            '"email" and that from_address to disparo.toml (T5)'
        )
    names = ", ".join(sorted(a.name for a in emails))
    return None, (
        f"no e-mail account sends as {sender} and source {source} names none: add an account "
        f'with that from_address, or set account = "NAME" on the source (accounts: {names}; T5)'
    )


class _Rest:
    """The rest of a file already read from: the lines the header left (``close`` closes
    the file)."""

    def __init__(self, handle: io.TextIOWrapper, lines: Iterator[str]) -> None:
        self.handle = handle
        self.lines = lines

    def __iter__(self) -> Iterator[str]:
        return self.lines

    def close(self) -> None:
        self.handle.close()


@dataclass(frozen=True)
class _Rules:
    header: tuple[str, ...]
    email: int
    name: int | None
    #: (column, template variable) of every column but the empty-titled
    keys: tuple[tuple[int, str], ...]
    nul: bool


def _field_keys(header: list[str]) -> tuple[tuple[int, str], ...]:
    """T5: each column is a contact field under its own title (``{{ NOME }}``,
    ``{{ CIDADE }}``); an untitled column is ``COLUNA_<n>``, a repeated title gets ``_2``."""
    keys: list[tuple[int, str]] = []
    taken: set[str] = set()
    for index, title in enumerate(header):
        key = title or f"COLUNA_{index + 1}"
        while key in taken:
            key += "_2"
        taken.add(key)
        keys.append((index, key))
    return tuple(keys)


def _reject(line: int, key: str, values: Any, **fields: Any) -> RejectedRow:
    p = ROW_MESSAGES.make(key, **fields)
    return RejectedRow(line, p.code, p.rule, p.message, p.message_pt, tuple(values))


def _rows(handle: Any, rules: _Rules) -> Iterator[list[ContactRow | RejectedRow]]:
    """T5: each row a contact with the address in EMAIL and every column as a field, or a
    rejected row with why (an invalid address is listed in RETORNADO, T8)."""
    reader = csv.reader(handle, delimiter=";", strict=False)
    columns = len(rules.header)
    limit = f"{MAX_LINE:,}"
    chunk: list[ContactRow | RejectedRow] = []
    previous = 1
    try:
        for values in reader:
            line = previous + 1
            previous = reader.line_num + 1
            row = _row(line, values, rules, columns, limit)
            if row is not None:
                chunk.append(row)
            if len(chunk) >= CHUNK:
                yield chunk
                chunk = []
        if chunk:
            yield chunk
    finally:
        handle.close()


def _row(
    line: int, values: list[str], rules: _Rules, columns: int, limit: str
) -> ContactRow | RejectedRow | None:
    if values and values[0].startswith(TOO_LONG):
        return _reject(line, "line-too-long", (), limit=limit)
    if rules.nul and any("\0" in v for v in values):
        return _reject(line, "nul-character", [v.replace("\0", "") for v in values])
    if len(values) > columns:
        if any(v.strip() for v in values[columns:]):
            return _reject(line, "extra-values", values, count=len(values), columns=columns)
        values = values[:columns]
    cells = [v.strip() for v in values] + [""] * (columns - len(values))
    if not any(cells):
        return None  # a blank line
    written = cells[rules.email]
    if not written:
        return _reject(line, "missing-email", values)
    checked = normalise_email(written)
    if checked.value is None:
        return RejectedRow(
            line,
            checked.code or "bad-email",
            "T5",
            checked.error or "",
            checked.error_pt or "",
            tuple(values),
        )
    name = cells[rules.name] if rules.name is not None else ""
    fields = {key: cells[i] for i, key in rules.keys if cells[i]}
    return ContactRow(
        line=line,
        identity="email:" + checked.value.lower(),
        external_key=None,
        name=" ".join(name.split()) or None,
        email=checked.value,
        phone=None,
        fields=json.dumps(fields, ensure_ascii=False),
    )


@hookimpl
def register_formats(register: Any) -> None:
    register(TripletFormat)


__all__ = [
    "CONF_HEADER",
    "MESSAGES",
    "RESULT_TYPES",
    "ROW_MESSAGES",
    "TYPES",
    "TripletFormat",
    "member_path",
    "parse_member",
    "send_path",
    "triplet_account",
]
