"""The ``mailing`` file-name grammar (spec/mailing-names.md, N1–N21): parse, check and render.

Pure: no I/O, no clock. The caller passes the processing day (N5) and, when it wants the
import-time deadline check, the current local time.

    [WALLET/]mailing_DDMMYY_SEQ[_PARAM…].csv
"""

from __future__ import annotations

import difflib
import re
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any, Literal, NamedTuple

from engine.problems import Catalogue, Problem
from engine.schedule import Pacing

# phonenumbers and email_validator are imported where a number or an address in a name is
# checked, so that what only lists campaigns starts without them (issue 16, goal 7)

# --------------------------------------------------------------------------------------------
# Vocabulary

#: keyword of a channel piece -> channel id used everywhere else in disparo
CHANNEL_WORDS: dict[str, str] = {
    "smslong": "sms-long",
    "smsshort": "sms-short",
    "whatsappexclusivo": "whatsapp-exclusive",
    "whatsappcompartilhado": "whatsapp-shared",
    "whatsappprospect": "whatsapp-prospect",
    "email": "email",
}
CHANNELS: tuple[str, ...] = tuple(CHANNEL_WORDS.values())


class ChannelWord(NamedTuple):
    """A word that selects a channel in a file name (``_smslong``), and the contact address
    the channel sends to. Channel plugins declare theirs (``Channel.file_word``)."""

    word: str
    channel: str
    address_kind: str  # "email" | "phone"


#: the built-in channels' words; a channel plugin adds its own (``Plugins.channel_words``)
BUILTIN_WORDS: dict[str, ChannelWord] = {
    w: ChannelWord(w, c, "email" if c == "email" else "phone") for w, c in CHANNEL_WORDS.items()
}
WORD_OF_CHANNEL: dict[str, str] = {v: k for k, v in CHANNEL_WORDS.items()}
WHATSAPP_CHANNELS = frozenset({"whatsapp-exclusive", "whatsapp-shared", "whatsapp-prospect"})
PHONE_CHANNELS = frozenset({"sms-long", "sms-short"}) | WHATSAPP_CHANNELS

#: exact flags other than the channel words
FLAG_WORDS: dict[str, str] = {
    "h": "h",
    "limpartag": "limpartag",
    "removercarteiras": "removercarteiras",
}

#: every keyword a parameter can start with, for "did you mean" hints
KEYWORDS: tuple[str, ...] = (
    *FLAG_WORDS,
    *CHANNEL_WORDS,
    "nt",
    "nw",
    "ce",
    "te",
    "LE",
    "i",
    "q",
    "x",
    "d",
    "c",
)

_DIGITS = re.compile(r"[0-9]+")
_STAMP = re.compile(r"[0-9]{10}")
_WALLET = re.compile(r"(?:[^\W_]|[.\-])+")  # letters and digits of any script, '-', '.'
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


# --------------------------------------------------------------------------------------------
# Values


@dataclass(frozen=True)
class MailingName:
    """The parameters carried by a name, exactly as written (defaults are not filled in).

    ``start_at`` and ``deadline`` are naive local times in the engine's time zone.
    """

    date: date
    sequence: int
    wallet: str | None = None
    description: str | None = None
    hygiene: bool = False
    channel: str | None = None
    whatsapp_number: str | None = None
    template: str | None = None
    sender: str | None = None
    subject: str | None = None
    start_at: datetime | None = None
    pacing: Pacing | None = None
    exclude_recent_hours: int | None = None
    replace_tags: bool = False
    remove_other_wallets: bool = False
    deadline: datetime | None = None


Status = Literal["valid", "invalid", "not-mailing"]


@dataclass(frozen=True)
class NameCheck:
    """The outcome of checking one name (the ``check-name`` JSON object, N1–N21)."""

    file: str
    status: Status
    errors: tuple[Problem, ...] = ()
    warnings: tuple[Problem, ...] = ()
    mailing: MailingName | None = None
    #: the folder holding the file, relative to the source root (the wallet when ``_c`` is absent)
    folder: str | None = None
    #: the file name without folder and extension (the description when ``_d`` is absent, N14)
    stem: str = ""

    @property
    def ok(self) -> bool:
        return self.status == "valid"

    @property
    def wallet(self) -> str | None:
        """The effective wallet: ``_c``, else the folder (N13)."""
        if self.mailing is None:
            return None
        return self.mailing.wallet or self.folder

    @property
    def description(self) -> str:
        """The effective description: ``_d``, else the file name without extension (N14)."""
        if self.mailing is not None and self.mailing.description:
            return self.mailing.description
        return self.stem

    def problem(self, code: str) -> Problem | None:
        for p in (*self.errors, *self.warnings):
            if p.code == code:
                return p
        return None

    def as_json(self) -> dict[str, Any]:
        """The object documented in the spec's ``check-name`` section."""
        m = self.mailing
        body: dict[str, Any] | None = None
        if m is not None:
            body = {
                "date": m.date.isoformat(),
                "sequence": m.sequence,
                "wallet": self.wallet,
                "wallet_from_folder": m.wallet is None and self.folder is not None,
                "description": self.description,
                "hygiene": m.hygiene,
                "channel": m.channel,
                "whatsapp_number": m.whatsapp_number,
                "template": m.template,
                "sender": m.sender,
                "subject": m.subject,
                "start_at": _local(m.start_at),
                "pacing": (m.pacing.as_json() if m.pacing else None),
                "exclude_recent_hours": m.exclude_recent_hours,
                "replace_tags": m.replace_tags,
                "remove_other_wallets": m.remove_other_wallets,
                "deadline": _local(m.deadline),
            }
        return {
            "file": self.file,
            "status": self.status,
            "errors": [p.as_json() for p in self.errors],
            "warnings": [p.as_json() for p in self.warnings],
            "mailing": body,
        }


def _local(value: datetime | None) -> str | None:
    return value.strftime("%Y-%m-%dT%H:%M") if value is not None else None


# --------------------------------------------------------------------------------------------
# Messages. Every one says which piece, what rule, and how to write it right.

MESSAGES = Catalogue(
    {
        "not-mailing": (
            "N1",
            "`{file}` does not start with `mailing_`, so it is not a mailing file and is left "
            "alone; name it `mailing_DDMMYY_SEQ[_PARAMS].csv`, e.g. `mailing_221126_001.csv`",
            "`{file}` não começa com `mailing_`, então não é um arquivo de mailing e é ignorado; "
            "nomeie-o `mailing_DDMMYY_SEQ[_PARAMETROS].csv`, ex.: `mailing_221126_001.csv`",
        ),
        "bad-extension": (
            "N2",
            "the extension is `{ext}` but a mailing must end in `.csv`; rename it to `{fixed}`",
            "a extensão é `{ext}`, mas um mailing deve terminar em `.csv`; renomeie para `{fixed}`",
        ),
        "bad-extension:compressed": (
            "N2",
            "the file is compressed (`{ext}`), and a mailing is sent as plain CSV text; "
            "decompress it and send `{fixed}`",
            "o arquivo está compactado (`{ext}`), e um mailing é enviado como texto CSV "
            "simples; descompacte-o e envie `{fixed}`",
        ),
        "bad-date": (
            "N3",
            "the date piece `{piece}` is not a real DDMMYY date; write the day the file was "
            "generated as 6 digits, e.g. `221126` for 22/11/2026",
            "o trecho de data `{piece}` não é uma data DDMMYY válida; informe o dia em que o "
            "arquivo foi gerado com 6 dígitos, ex.: `221126` para 22/11/2026",
        ),
        "bad-sequence": (
            "N4",
            "the sequence piece `{piece}` must be the file's number in the day, 1 to 3 digits, "
            "right after the date, e.g. `mailing_221126_001.csv`",
            "o trecho de sequência `{piece}` deve ser o número do arquivo no dia, com 1 a 3 "
            "dígitos, logo após a data, ex.: `mailing_221126_001.csv`",
        ),
        "not-today": (
            "N5",
            "the file is dated {date} but the processing day is {today}; it is left where it "
            "is and imported only on its own day. To import it today, rename it with `_{ddmmyy}`",
            "o arquivo é do dia {date}, mas o dia de processamento é {today}; ele fica onde está "
            "e só é importado no seu próprio dia. Para importar hoje, renomeie-o com `_{ddmmyy}`",
        ),
        "not-today:past": (
            "N5",
            "the file is dated {date}, a day already past (the processing day is {today}); it "
            "is left where it is and never imported under this name. To import it today, "
            "rename it with `_{ddmmyy}`; otherwise remove it",
            "o arquivo é do dia {date}, um dia que já passou (o dia de processamento é "
            "{today}); ele fica onde está e nunca é importado com este nome. Para importar "
            "hoje, renomeie-o com `_{ddmmyy}`; caso contrário, remova-o",
        ),
        "unknown-parameter": (
            "N7",
            "the piece `_{piece}` is not a parameter{hint}; see the parameter table in the "
            "mailing naming guide",
            "o trecho `_{piece}` não é um parâmetro{hint_pt}; veja a tabela de parâmetros do "
            "guia de nomes de mailing",
        ),
        "unknown-parameter:empty": (
            "N7",
            "the name has an empty piece (two underscores in a row, or an underscore before "
            "`.csv`); remove the extra `_`",
            "o nome tem um trecho vazio (dois sublinhados seguidos, ou um sublinhado antes de "
            "`.csv`); remova o `_` a mais",
        ),
        "duplicate-parameter": (
            "N8",
            "the parameter {what} is given twice (`_{first}` and `_{piece}`); keep only one",
            "o parâmetro {what_pt} aparece duas vezes (`_{first}` e `_{piece}`); deixe só um",
        ),
        "bad-value:c": (
            "N9",
            "the wallet code in `_{piece}` must be letters, digits, `-` or `.`, not empty, "
            "e.g. `_cBRAD`",
            "o código de carteira em `_{piece}` deve ter letras, dígitos, `-` ou `.`, sem ficar "
            "vazio, ex.: `_cBRAD`",
        ),
        "bad-value:folder": (
            "N9",
            "the folder `{piece}` names the wallet but a wallet code must be letters, digits, "
            "`-` or `.`; rename the folder or give the wallet with `_c<CODE>`",
            "a pasta `{piece}` indica a carteira, mas um código de carteira deve ter letras, "
            "dígitos, `-` ou `.`; renomeie a pasta ou informe a carteira com `_c<CODIGO>`",
        ),
        "bad-value:d": (
            "N9",
            "the description in `_{piece}` is empty; write it after `_d`, e.g. `_dRégua 60 dias`",
            "a descrição em `_{piece}` está vazia; escreva-a depois de `_d`, ex.: "
            "`_dRégua 60 dias`",
        ),
        "bad-value:text": (
            "N9",
            "the {what} in `_{piece}` contains a control character or a slash; use plain text",
            "{what_pt} em `_{piece}` contém um caractere de controle ou uma barra; use texto "
            "simples",
        ),
        "bad-value:nw": (
            "N9",
            "the WhatsApp number in `_{piece}` must be 10 to 13 digits, national (DDD + number, "
            "e.g. `_nw11998877665`) or with the country code (e.g. `_nw5511998877665`){why}",
            "o número de WhatsApp em `_{piece}` deve ter de 10 a 13 dígitos, nacional (DDD + "
            "número, ex.: `_nw11998877665`) ou com o código do país (ex.: "
            "`_nw5511998877665`){why_pt}",
        ),
        "bad-value:nt": (
            "N9",
            "the template name after `_nt` is empty; write the approved template's name, "
            "e.g. `_ntTEMPLATE_HOMOLOGADO`",
            "o nome do template depois de `_nt` está vazio; informe o nome do template aprovado, "
            "ex.: `_ntTEMPLATE_HOMOLOGADO`",
        ),
        "bad-value:ce": (
            "N9",
            "the sender in `_{piece}` is not a valid e-mail address ({why}); write it as "
            "`_ceAVISO@EMPRESA.COM.BR`",
            "o remetente em `_{piece}` não é um endereço de e-mail válido ({why}); escreva-o "
            "como `_ceAVISO@EMPRESA.COM.BR`",
        ),
        "bad-value:te": (
            "N9",
            "the e-mail subject in `_{piece}` is empty; write it after `_te`, "
            "e.g. `_teSua fatura chegou`",
            "o assunto do e-mail em `_{piece}` está vazio; escreva-o depois de `_te`, "
            "ex.: `_teSua fatura chegou`",
        ),
        "bad-value:i": (
            "N9",
            "the start in `_{piece}` must be a real local date and time as 10 digits "
            "DDMMYYHHMM, e.g. `_i0102180820` for 01/02/2018 08:20",
            "o início em `_{piece}` deve ser uma data e hora locais válidas com 10 dígitos "
            "DDMMYYHHMM, ex.: `_i0102180820` para 01/02/2018 08:20",
        ),
        "bad-value:le": (
            "N9",
            "the deadline in `_{piece}` must be a real local date and time as 10 digits "
            "DDMMYYHHMM, e.g. `_LE2211261800` for 22/11/2026 18:00",
            "o limite em `_{piece}` deve ser uma data e hora locais válidas com 10 dígitos "
            "DDMMYYHHMM, ex.: `_LE2211261800` para 22/11/2026 18:00",
        ),
        "bad-value:q": (
            "N9",
            "the pacing in `_{piece}` must be exactly 5 digits PPMMM: percent per batch 01–99 "
            "then minutes between batches 001–999, e.g. `_q15020` = 15 % every 20 minutes",
            "o envio parcelado em `_{piece}` deve ter exatamente 5 dígitos PPMMM: percentual "
            "por lote 01–99 e minutos entre lotes 001–999, ex.: `_q15020` = 15% a cada 20 minutos",
        ),
        "bad-value:x": (
            "N9",
            "the exclusion window in `_{piece}` must be 1 to 4 digits of hours, e.g. `_x36`",
            "a janela de exclusão em `_{piece}` deve ter de 1 a 4 dígitos de horas, ex.: `_x36`",
        ),
        "param-after-template": (
            "N10",
            "`_nt` takes the rest of the name, so `_{piece}` became part of the template name "
            "`{template}`; if `_{piece}` was meant as a parameter, move it before `_nt`",
            "`_nt` consome o resto do nome, então `_{piece}` virou parte do nome do template "
            "`{template}`; se `_{piece}` era um parâmetro, coloque-o antes de `_nt`",
        ),
        "conflicting-channels": (
            "N12",
            "the name asks for several channels ({channels}); a mailing creates at most one "
            "campaign, so keep a single channel word",
            "o nome pede vários canais ({channels}); um mailing cria no máximo uma campanha, "
            "então deixe uma única palavra de canal",
        ),
        "missing-wallet": (
            "N13",
            "no wallet: the name has no `_c<CODE>` and the file is not inside a wallet folder; "
            "add e.g. `_cBRAD` or put the file in the folder `BRAD/`",
            "sem carteira: o nome não tem `_c<CODIGO>` e o arquivo não está numa pasta de "
            "carteira; acrescente ex.: `_cBRAD` ou coloque o arquivo na pasta `BRAD/`",
        ),
        "missing-whatsapp-number": (
            "N15",
            "`_whatsappexclusivo` needs the exclusive number; add `_nw` with it, "
            "e.g. `_nw11998877665`",
            "`_whatsappexclusivo` precisa do número exclusivo; acrescente `_nw` com ele, "
            "ex.: `_nw11998877665`",
        ),
        "whatsapp-number-without-exclusive": (
            "N15",
            "`_{piece}` gives an exclusive WhatsApp number but the channel is {channel}; "
            "use `_whatsappexclusivo` or remove `_nw`",
            "`_{piece}` informa um número exclusivo de WhatsApp, mas o canal é {channel_pt}; "
            "use `_whatsappexclusivo` ou remova `_nw`",
        ),
        "missing-template": (
            "N16",
            "the WhatsApp channel `_{word}` needs an approved template; end the name with "
            "`_nt<TEMPLATE>`",
            "o canal de WhatsApp `_{word}` precisa de um template aprovado; termine o nome com "
            "`_nt<TEMPLATE>`",
        ),
        "template-without-whatsapp": (
            "N16",
            "`_nt` names a WhatsApp template but the channel is {channel}; add a WhatsApp "
            "channel (`_whatsappexclusivo`, `_whatsappcompartilhado`, `_whatsappprospect`) "
            "or remove `_nt`",
            "`_nt` indica um template de WhatsApp, mas o canal é {channel_pt}; acrescente um "
            "canal de WhatsApp (`_whatsappexclusivo`, `_whatsappcompartilhado`, "
            "`_whatsappprospect`) ou remova `_nt`",
        ),
        "email-params-without-email": (
            "N17",
            "`_{piece}` is an e-mail setting but the channel is {channel}; add `_email` or "
            "remove `_{piece}`",
            "`_{piece}` é uma configuração de e-mail, mas o canal é {channel_pt}; acrescente "
            "`_email` ou remova `_{piece}`",
        ),
        "missing-subject": (
            "N17",
            "an e-mail campaign needs a subject and wallet `{wallet}` has no default subject "
            "in the configuration; add `_te<SUBJECT>` or set `email_subject` for the wallet",
            "uma campanha de e-mail precisa de assunto e a carteira `{wallet}` não tem assunto "
            "padrão na configuração; acrescente `_te<ASSUNTO>` ou configure `email_subject` "
            "na carteira",
        ),
        "campaign-params-without-channel": (
            "N18",
            "`_{piece}` sets how a campaign is sent but the name has no channel, so no campaign "
            "is created; add a channel (`_email`, `_smslong`, …) or remove `_{piece}`",
            "`_{piece}` define como a campanha é enviada, mas o nome não tem canal e nenhuma "
            "campanha é criada; acrescente um canal (`_email`, `_smslong`, …) ou remova "
            "`_{piece}`",
        ),
        "deadline-before-start": (
            "N19",
            "the deadline {deadline} is not after the start {start}; write an `_LE` later than "
            "`_i`",
            "o limite {deadline} não é posterior ao início {start}; informe um `_LE` depois do "
            "`_i`",
        ),
        "deadline-passed": (
            "N19",
            "the deadline {deadline} has already passed ({now}); nothing could be sent, so the "
            "import rejects the file. Send it again with a later `_LE`",
            "o limite {deadline} já passou ({now}); nada poderia ser enviado, então a importação "
            "recusa o arquivo. Envie-o de novo com um `_LE` posterior",
        ),
    }
)

_WHAT = {
    "c": ("the wallet `_c`", "a carteira `_c`"),
    "d": ("the description `_d`", "a descrição `_d`"),
    "h": ("hygiene `_h`", "a higienização `_h`"),
    "channel": ("channel", "canal"),
    "nw": ("the WhatsApp number `_nw`", "o número de WhatsApp `_nw`"),
    "nt": ("the template `_nt`", "o template `_nt`"),
    "ce": ("the sender `_ce`", "o remetente `_ce`"),
    "te": ("the subject `_te`", "o assunto `_te`"),
    "i": ("the start `_i`", "o início `_i`"),
    "q": ("the pacing `_q`", "o envio parcelado `_q`"),
    "x": ("the exclusion `_x`", "a exclusão `_x`"),
    "limpartag": ("`_limpartag`", "`_limpartag`"),
    "removercarteiras": ("`_removercarteiras`", "`_removercarteiras`"),
    "le": ("the deadline `_LE`", "o limite `_LE`"),
}


def _word_of(channel: str, words: Mapping[str, ChannelWord]) -> str:
    return next((w for w, c in words.items() if c.channel == channel), channel)


def _channel_words(channel: str | None, words: Mapping[str, ChannelWord]) -> tuple[str, str]:
    if channel is None:
        return "not set (no channel)", "não informado (sem canal)"
    word = f"`_{_word_of(channel, words)}`"
    return word, word


_WORD = re.compile(r"[a-z][a-z0-9]{2,29}")


def check_channel_word(word: str, channel: str) -> str | None:
    """Why ``word`` cannot select ``channel`` in file names (N7), or None when it can: it
    must be 3–30 lower-case letters and digits starting with a letter, not a flag, not the
    word of another built-in channel, and not read as a parameter (``_q15020``…)."""
    if not _WORD.fullmatch(word):
        return "a word is 3–30 lower-case letters and digits, starting with a letter"
    if word in FLAG_WORDS:
        return f"`_{word}` is a flag of the grammar"
    if word in CHANNEL_WORDS and CHANNEL_WORDS[word] != channel:
        return f"`_{word}` selects the built-in channel `{CHANNEL_WORDS[word]}`"
    if word not in CHANNEL_WORDS and _strong_parameter(word):
        return f"`_{word}` reads as a parameter of the grammar"
    return None


# --------------------------------------------------------------------------------------------
# Parsing


def parse_stamp(digits: str) -> datetime | None:
    """``DDMMYYHHMM`` -> naive local datetime, or None when not a real date and time."""
    if not _STAMP.fullmatch(digits):
        return None
    try:
        return datetime(  # noqa: DTZ001 - a local wall time; the caller applies the zone
            2000 + int(digits[4:6]),
            int(digits[2:4]),
            int(digits[0:2]),
            int(digits[6:8]),
            int(digits[8:10]),
        )
    except ValueError:
        return None


def parse_day(digits: str) -> date | None:
    """``DDMMYY`` -> date (year 2000+YY, N3), or None when not a real calendar date."""
    if not re.fullmatch(r"[0-9]{6}", digits):
        return None
    try:
        return date(2000 + int(digits[4:6]), int(digits[2:4]), int(digits[0:2]))
    except ValueError:
        return None


def normalise_whatsapp_number(digits: str) -> str | None:
    """10–13 digits -> E.164 (default country BR), or None when not a valid number."""
    if not re.fullmatch(r"[0-9]{10,13}", digits):
        return None
    import phonenumbers

    for text, region in ((digits, "BR"), ("+" + digits, None)):
        try:
            number = phonenumbers.parse(text, region)
        except phonenumbers.NumberParseException:
            continue
        if phonenumbers.is_valid_number(number):
            return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    return None


def _strong_parameter(piece: str) -> bool:
    """Does a piece inside a template name look unmistakably like a parameter (N10)?

    Free-text parameters (``c``, ``d``, ``te``) are left out: ``TEMPLATE`` is not a subject.
    """
    low = piece.lower()
    if low in FLAG_WORDS or low in CHANNEL_WORDS:
        return True
    if low.startswith("le") and _STAMP.fullmatch(piece[2:]):
        return True
    if low.startswith("nw") and re.fullmatch(r"[0-9]{10,13}", piece[2:]):
        return True
    if low.startswith("ce") and "@" in piece:
        return True
    return bool(re.fullmatch(r"[iI][0-9]{10}|[qQ][0-9]{5}|[xX][0-9]{1,4}", piece))


def _bad_text(value: str) -> bool:
    return bool(_CONTROL.search(value)) or "/" in value or "\\" in value


def _split_path(name: str) -> tuple[str | None, str]:
    parts = [p for p in re.split(r"[/\\]", name) if p not in ("", ".")]
    if not parts:
        return None, ""
    base = parts[-1] if not re.search(r"[/\\]$", name) else ""
    folders = parts[:-1] if base else parts
    folder = folders[-1] if folders and folders[-1] != ".." else None
    return folder, base


@dataclass
class _Parser:
    errors: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)
    seen: dict[str, str] = field(default_factory=dict)  # parameter key -> the piece that set it
    values: dict[str, Any] = field(default_factory=dict)
    channels: list[str] = field(default_factory=list)
    words: Mapping[str, ChannelWord] = field(default_factory=lambda: BUILTIN_WORDS)

    def error(self, key: str, piece: str | None = None, **fields: object) -> None:
        self.errors.append(MESSAGES.make(key, piece, **fields))

    def warn(self, key: str, piece: str | None = None, **fields: object) -> None:
        self.warnings.append(MESSAGES.make(key, piece, **fields))

    def take(self, key: str, piece: str) -> bool:
        """Record that ``piece`` sets parameter ``key``; False (and N8) when already set."""
        if key in self.seen:
            what, what_pt = _WHAT.get(key, (f"`_{key}`", f"`_{key}`"))
            self.error(
                "duplicate-parameter", piece, first=self.seen[key], what=what, what_pt=what_pt
            )
            return False
        self.seen[key] = piece
        return True

    def parameter(self, pieces: list[str], index: int) -> int:
        """Parse the parameter at ``pieces[index]``; return the index of the next one."""
        piece = pieces[index]
        low = piece.lower()
        if piece == "":
            self.errors.append(MESSAGES.make("unknown-parameter:empty", ""))
            return index + 1
        if low in self.words:
            channel = self.words[low].channel
            if self.take("channel:" + channel, piece):
                self.channels.append(channel)
        elif low in FLAG_WORDS:
            if self.take(low, piece):
                self.values[low] = True
        elif low.startswith("nt"):
            value = "_".join([piece[2:], *pieces[index + 1 :]])
            # greedy (N10): it consumes every later piece, so it can never be seen twice
            self.take("nt", piece)
            self.template(value)
            return len(pieces)
        elif low.startswith("nw"):
            if self.take("nw", piece):
                number = normalise_whatsapp_number(piece[2:])
                if number is None:
                    why = (
                        ""
                        if not re.fullmatch(r"[0-9]{10,13}", piece[2:])
                        else "; it has the right length but is not a valid phone number"
                    )
                    why_pt = "" if not why else "; tem o tamanho certo, mas não é um número válido"
                    self.error("bad-value:nw", piece, why=why, why_pt=why_pt)
                else:
                    self.values["nw"] = number
        elif low.startswith("ce") and "@" in piece[2:]:
            if self.take("ce", piece):
                from email_validator import EmailNotValidError, validate_email

                try:
                    validate_email(piece[2:], check_deliverability=False)
                except EmailNotValidError as exc:
                    self.error("bad-value:ce", piece, why=str(exc).rstrip("."))
                else:
                    self.values["ce"] = piece[2:]
        elif low.startswith("te"):
            if self.take("te", piece):
                self.text("te", piece, "bad-value:te", "the subject", "o assunto")
        elif low.startswith("le") and _STAMP.fullmatch(piece[2:]):
            if self.take("le", piece):
                stamp = parse_stamp(piece[2:])
                if stamp is None:
                    self.error("bad-value:le", piece)
                else:
                    self.values["le"] = stamp
        elif low.startswith("i"):
            if self.take("i", piece):
                stamp = parse_stamp(piece[1:])
                if stamp is None:
                    self.error("bad-value:i", piece)
                else:
                    self.values["i"] = stamp
        elif low.startswith("q"):
            if self.take("q", piece):
                digits = piece[1:]
                if re.fullmatch(r"[0-9]{5}", digits) and int(digits[:2]) and int(digits[2:]):
                    self.values["q"] = Pacing.percent(
                        int(digits[:2]), timedelta(minutes=int(digits[2:]))
                    )
                else:
                    self.error("bad-value:q", piece)
        elif low.startswith("x"):
            if self.take("x", piece):
                if re.fullmatch(r"[0-9]{1,4}", piece[1:]):
                    self.values["x"] = int(piece[1:])
                else:
                    self.error("bad-value:x", piece)
        elif low.startswith("d"):
            if self.take("d", piece):
                self.text("d", piece, "bad-value:d", "description", "a descrição")
        elif low.startswith("c"):
            if self.take("c", piece):
                if _WALLET.fullmatch(piece[1:]):
                    self.values["c"] = piece[1:]
                else:
                    self.error("bad-value:c", piece)
        else:
            self.unknown(piece)
        return index + 1

    def text(self, key: str, piece: str, empty_key: str, what: str, what_pt: str) -> None:
        value = piece[len(key) :]
        if not value.strip():
            self.error(empty_key, piece)
        elif _bad_text(value):
            self.error("bad-value:text", piece, what=what, what_pt=what_pt)
        else:
            self.values[key] = value

    def template(self, value: str) -> None:
        if not value.strip():
            self.errors.append(MESSAGES.make("bad-value:nt", "nt"))
            return
        if _bad_text(value):
            self.error("bad-value:text", "nt" + value, what="template name", what_pt="o template")
            return
        self.values["nt"] = value
        for inner in value.split("_")[1:]:
            if _strong_parameter(inner):
                self.warn("param-after-template", inner, template=value)

    def unknown(self, piece: str) -> None:
        low = piece.lower()
        hint = hint_pt = ""
        if low.startswith("le"):
            hint = " (a deadline is `_LE` followed by 10 digits DDMMYYHHMM, e.g. `_LE2211261800`)"
            hint_pt = " (o limite é `_LE` seguido de 10 dígitos DDMMYYHHMM, ex.: `_LE2211261800`)"
        else:
            known = [k.lower() for k in (*KEYWORDS, *self.words) if len(k) > 2]
            close = difflib.get_close_matches(low, known)
            if close:
                hint = f" (did you mean `_{close[0]}`?)"
                hint_pt = f" (você quis dizer `_{close[0]}`?)"
        self.error("unknown-parameter", piece, hint=hint, hint_pt=hint_pt)


#: extensions of compressed files (N2: decompress, rather than rename)
COMPRESSED = frozenset({".gz", ".zip", ".bz2", ".xz", ".7z", ".rar", ".tgz", ".zst"})


def check_name(
    name: str,
    *,
    today: date | None = None,
    now: datetime | None = None,
    default_subject: Callable[[str], str | None] | None = None,
    words: Mapping[str, ChannelWord] | None = None,
) -> NameCheck:
    """Check one file name against N1–N21.

    ``name`` may carry a relative folder (``BRAD/mailing_…csv``). ``today`` is the processing
    day (N5: another day gives the warning ``not-today``); ``now`` (naive local time), when
    given, also reports a deadline already past as the warning ``deadline-passed`` (N19 is an
    import-time rejection). ``default_subject(wallet)`` answers the wallet's configured
    default e-mail subject (N17). ``words`` are the channel words known (the built-in ones and
    the channel plugins', ``Plugins.channel_words()``; default: the built-in ones). Never
    raises, whatever the input.
    """
    shown = name
    name = unicodedata.normalize("NFC", name)
    folder, base = _split_path(name)
    if not base.lower().startswith("mailing_"):
        problem = MESSAGES.make("not-mailing", None, file=base or shown)
        return NameCheck(shown, "not-mailing", (problem,), (), None, folder, base)

    p = _Parser(words=words if words is not None else BUILTIN_WORDS)
    if base.lower().endswith(".csv"):
        stem = base[:-4]
    else:
        match = re.search(r"\.([A-Za-z0-9]{1,5})$", base)
        stem = base[: match.start()] if match else base
        ext = base[len(stem) :]
        if stem.lower().endswith(".csv"):  # `….csv.gz`: the fix is `….csv`, not `….csv.csv`
            stem = stem[:-4]
        key = "bad-extension:compressed" if ext.lower() in COMPRESSED else "bad-extension"
        p.error(key, None, ext=ext or "(none)", fixed=stem + ".csv")

    pieces = stem.split("_")
    date_piece = pieces[1] if len(pieces) > 1 else ""
    seq_piece = pieces[2] if len(pieces) > 2 else ""
    day = parse_day(date_piece)
    if day is None:
        p.error("bad-date", date_piece or "(missing)")
    sequence = int(seq_piece) if re.fullmatch(r"[0-9]{1,3}", seq_piece) else None
    if sequence is None:
        p.error("bad-sequence", seq_piece or "(missing)")

    # Only read parameters when the head has the right shape; otherwise every piece after a
    # missing date or sequence would be reported as a misplaced parameter.
    head_shaped = re.fullmatch(r"[0-9]{6}", date_piece) and sequence is not None
    if head_shaped:
        index = 3
        while index < len(pieces):
            index = p.parameter(pieces, index)

    channel = p.channels[0] if p.channels else None
    mailing = None
    if day is not None and sequence is not None:
        v = p.values
        mailing = MailingName(
            date=day,
            sequence=sequence,
            wallet=v.get("c"),
            description=v.get("d"),
            hygiene=bool(v.get("h")),
            channel=channel,
            whatsapp_number=v.get("nw"),
            template=v.get("nt"),
            sender=v.get("ce"),
            subject=v.get("te"),
            start_at=v.get("i"),
            pacing=v.get("q"),
            exclude_recent_hours=v.get("x"),
            replace_tags=bool(v.get("limpartag")),
            remove_other_wallets=bool(v.get("removercarteiras")),
            deadline=v.get("le"),
        )
    if head_shaped:
        _combinations(p, channel, folder, default_subject)
        if folder is not None and "c" not in p.seen and not _WALLET.fullmatch(folder):
            p.error("bad-value:folder", folder)

    if day is not None and today is not None and day != today:
        p.warn(
            "not-today:past" if day < today else "not-today",
            date_piece,
            date=day.strftime("%d/%m/%Y"),
            today=today.strftime("%d/%m/%Y"),
            ddmmyy=today.strftime("%d%m%y"),
        )
    deadline = p.values.get("le")
    if now is not None and deadline is not None and deadline <= now:
        p.warn(
            "deadline-passed",
            p.seen.get("le"),
            deadline=deadline.strftime("%d/%m/%Y %H:%M"),
            now="now " + now.strftime("%d/%m/%Y %H:%M"),
        )

    status: Status = "invalid" if p.errors else "valid"
    return NameCheck(shown, status, tuple(p.errors), tuple(p.warnings), mailing, folder, stem)


def _combinations(
    p: _Parser,
    channel: str | None,
    folder: str | None,
    default_subject: Callable[[str], str | None] | None,
) -> None:
    """Rules between parameters: N12–N19."""
    seen, values = p.seen, p.values
    channel_en, channel_pt = _channel_words(channel, p.words)
    kind = next((w.address_kind for w in p.words.values() if w.channel == channel), None)
    if len(p.channels) > 1:
        p.error(
            "conflicting-channels",
            None,
            channels=", ".join(f"`_{_word_of(c, p.words)}`" for c in p.channels),
        )
    if "c" not in seen and folder is None:
        p.error("missing-wallet")
    if channel == "whatsapp-exclusive" and "nw" not in seen:
        p.error("missing-whatsapp-number")
    if "nw" in seen and channel != "whatsapp-exclusive":
        p.error(
            "whatsapp-number-without-exclusive",
            seen["nw"],
            channel=channel_en,
            channel_pt=channel_pt,
        )
    if channel in WHATSAPP_CHANNELS and "nt" not in seen:
        p.error("missing-template", None, word=WORD_OF_CHANNEL[channel])
    if "nt" in seen and channel not in WHATSAPP_CHANNELS:
        p.error("template-without-whatsapp", None, channel=channel_en, channel_pt=channel_pt)
    if kind != "email":
        for key in ("ce", "te"):
            if key in seen:
                p.error(
                    "email-params-without-email",
                    seen[key],
                    channel=channel_en,
                    channel_pt=channel_pt,
                )
    elif "te" not in seen:
        wallet = values.get("c") or folder
        if wallet is None or default_subject is None or not default_subject(wallet):
            p.error("missing-subject", None, wallet=wallet or "(none)")
    if channel is None:
        for key in ("i", "q", "x", "le"):
            if key in seen:
                p.error("campaign-params-without-channel", seen[key])
    start, deadline = values.get("i"), values.get("le")
    if start is not None and deadline is not None and deadline <= start:
        p.error(
            "deadline-before-start",
            seen["le"],
            deadline=deadline.strftime("%d/%m/%Y %H:%M"),
            start=start.strftime("%d/%m/%Y %H:%M"),
        )


# --------------------------------------------------------------------------------------------
# Rendering


def _stamp(value: datetime) -> str:
    return value.strftime("%d%m%y%H%M")


def render_name(
    m: MailingName,
    *,
    folder: str | None = None,
    width: int = 3,
    words: Mapping[str, ChannelWord] | None = None,
) -> str:
    """The canonical file name for ``m`` (``_nt`` last, N10); ``check_name`` reads it back."""
    parts = [f"mailing_{m.date.strftime('%d%m%y')}_{m.sequence:0{width}d}"]
    if m.wallet is not None:
        parts.append("c" + m.wallet)
    if m.description is not None:
        parts.append("d" + m.description)
    if m.hygiene:
        parts.append("h")
    if m.channel is not None:
        parts.append(_word_of(m.channel, words if words is not None else BUILTIN_WORDS))
    if m.whatsapp_number is not None:
        parts.append("nw" + m.whatsapp_number.lstrip("+"))
    if m.sender is not None:
        parts.append("ce" + m.sender)
    if m.subject is not None:
        parts.append("te" + m.subject)
    if m.start_at is not None:
        parts.append("i" + _stamp(m.start_at))
    if m.pacing is not None:
        parts.append(f"q{m.pacing.value:02d}{m.pacing.interval_minutes:03d}")
    if m.exclude_recent_hours is not None:
        parts.append(f"x{m.exclude_recent_hours}")
    if m.replace_tags:
        parts.append("limpartag")
    if m.remove_other_wallets:
        parts.append("removercarteiras")
    if m.deadline is not None:
        parts.append("LE" + _stamp(m.deadline))
    if m.template is not None:
        parts.append("nt" + m.template)
    name = "_".join(parts) + ".csv"
    return f"{folder}/{name}" if folder else name
