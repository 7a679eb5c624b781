"""Bounce and complaint parsing: one raw message from the bounce mailbox becomes a :class:`Report`.

Pure logic, no I/O: :func:`parse_report` takes the bytes fetched over IMAP and never raises;
input it cannot make sense of (garbage, broken MIME, a newsletter) yields kind ``"unknown"``.

What is recognised, most trustworthy first:

1. **Feedback reports** (ARF, RFC 5965): a ``message/feedback-report`` part. Feedback-Type
   ``abuse``, ``fraud``, ``virus`` or ``other`` is a ``"complaint"``; any other type (``not-spam``,
   ``auth-failure`` of RFC 6591, a missing type…) is ``"feedback"``. Recipients come from
   ``Original-Rcpt-To`` (else ``Removal-Recipient``, else the single ``To`` of the attached
   original, which mailbox providers may have redacted).
2. **Delivery status notifications** (RFC 3464): the per-recipient blocks of a
   ``message/delivery-status`` (or ``message/global-delivery-status``, RFC 6533) part. A missing
   ``Action`` is inferred from the class of ``Status``. Kind ``"bounce"`` when any recipient
   failed, else ``"delay"`` when any was delayed, else ``"delivered"``.
3. **Text bounces**: old Exim, qmail, Postfix without its report part, Exchange plain NDRs,
   Gmail-like prose, Portuguese providers. Recipients and codes are read from the text with
   line-based patterns; the message is a ``"bounce"`` (or ``"delay"``) only when it is
   *confident*: the text says delivery failed (or was delayed), at least one recipient was
   found, and the message comes from a mail system (``MAILER-DAEMON``/``postmaster``, a null
   ``Return-Path``, ``report-type=delivery-status``, a product banner such as "This is the
   qmail-send program") or carries a bounce subject ("Undelivered Mail Returned to Sender",
   "Mensagem não entregue"…). A person writing "my message was not delivered" is neither.
4. **Complaint loops without ARF** (Microsoft JMRP and the like): a message with the original
   attached as ``message/rfc822`` and no DSN is a ``"complaint"`` when the original carries
   Microsoft's ``X-HmXmrOriginalRecipient`` header, or the report comes from ``staff@`` a
   Microsoft consumer domain, or it says ``report-type=feedback-report`` without the part, or
   its subject or text speaks of an abuse/spam complaint ("complaint about message from…").
5. **Auto-replies** (RFC 3834): ``Auto-Submitted: auto-replied``, ``X-Autoreply``,
   ``X-Autorespond``, ``Precedence: auto_reply``, or an out-of-office subject in English,
   Portuguese, Spanish, Italian, French or German — unless the sender is a mail system
   (``MAILER-DAEMON``/``postmaster`` or a delivery-status report; a null ``Return-Path`` is no
   sign of one here: RFC 3834 and Sieve vacation send auto-replies with it).

Severity of a recipient (:func:`classify`, enhanced codes of RFC 3463): ``"hard"`` only when
the address itself is bad — 5.1.0, 5.1.1, 5.1.2, 5.1.3, 5.1.6, 5.1.10, 5.2.1 (disabled) and
5.4.4 (no route, null MX); or, without an informative enhanced code, SMTP reply 550/551/553/554
worded as an unknown user ("user unknown", "no such user", "does not exist", "usuário
desconhecido", "caixa postal inexistente"…). Two refinements keep a list from being wrongly
suppressed: a text that blames the *sender* ("Sender address rejected: User unknown", a
rejected MAIL FROM) is never hard, and the wording rule ignores texts that also speak of
policy, spam, quota or size. ``X.0.0`` says nothing, so a more specific code of the same class
in the diagnostic is used instead (Exim writes ``Status: 5.0.0`` for "550 5.1.1 …"). 5.1.7 and
5.1.8 are the sender's address, 5.1.4/5.1.5/5.1.9 are not bad addresses: soft. Every other
failure or delay is ``"soft"`` (4.x.x, 5.2.2 mailbox full, 5.3.4 too big, 5.7.x policy);
delivered, relayed, expanded and complaints are ``"none"``.

Cost is bounded whatever arrives: the first :data:`MAX_BYTES` of the message are parsed (the
report parts and the original's headers come first), at most :data:`MAX_PARTS` MIME parts are
walked, at most :data:`MAX_SCAN` characters of text are scanned, patterns run line by line
with bounded repetition, and every field of the result has a maximum size.
"""

from __future__ import annotations

import email
import email.header
import html
import re
import unicodedata
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from email.message import Message
from email.parser import HeaderParser
from email.policy import compat32
from typing import Literal

Severity = Literal["hard", "soft", "none"]
Kind = Literal["bounce", "delay", "delivered", "complaint", "feedback", "auto-reply", "unknown"]

#: bytes of the raw message that are parsed; the rest is usually the returned attachment
MAX_BYTES = 1 << 20
#: MIME parts walked
MAX_PARTS = 200
#: characters of decoded text scanned with patterns
MAX_SCAN = 200_000
#: recipients in one report
MAX_RECIPIENTS = 1000
#: characters of a diagnostic
MAX_DIAGNOSTIC = 500
#: characters of an address
MAX_ADDRESS = 320
#: characters of the subject, reporter, Message-ID and feedback type
MAX_FIELD = 500
#: envelope addresses kept
MAX_ENVELOPE = 32
#: characters of one header value looked at
MAX_HEADER = 4096
#: lines of text looked at, and characters of one line
MAX_LINES = 5000
MAX_LINE = 2000

_COMPLAINT_TYPES = frozenset({"abuse", "fraud", "virus", "other"})
_DONE = frozenset({"delivered", "relayed", "expanded"})
_ACTIONS = frozenset({"failed", "delayed", "delivered", "relayed", "expanded"})
#: subject.detail of the 5.x.x codes that say the address itself is bad
_HARD_DETAILS = frozenset({"1.0", "1.1", "1.2", "1.3", "1.6", "1.10", "2.1", "4.4"})
_HARD_REPLIES = frozenset({550, 551, 553, 554})

_DSN_TYPES = frozenset(
    {"message/delivery-status", "message/global-delivery-status", "text/delivery-status"}
)
_ARF_TYPES = frozenset({"message/feedback-report", "text/feedback-report"})
_BINARY_TYPES = ("image/", "audio/", "video/", "application/", "model/", "font/")
_ORIGINAL_TYPES = frozenset(
    {
        "message/rfc822",
        "message/global",
        "text/rfc822",
        "text/rfc822-headers",
        "message/rfc822-headers",
        "message/global-headers",
    }
)


@dataclass(frozen=True)
class Recipient:
    """One recipient named by a report, and how bad its failure is."""

    address: str | None
    action: str
    status: str | None
    diagnostic: str | None
    severity: Severity


@dataclass(frozen=True)
class Report:
    """What one message from the bounce mailbox says (see the module docstring)."""

    kind: Kind
    recipients: tuple[Recipient, ...]
    original_message_id: str | None
    envelope_addresses: tuple[str, ...]
    feedback_type: str | None
    reporter: str | None
    subject: str | None


UNKNOWN = Report("unknown", (), None, (), None, None, None)

# --- patterns ---------------------------------------------------------------------------------

_ENHANCED = re.compile(r"(?<![\d.])([245])\.(\d{1,3})\.(\d{1,3})(?!\.?\d)")
_REPLY = re.compile(r"(?<![\w.])([245]\d\d)(?![\w.])")
_ADDR = r"[\w.!#$%&'*+/=?^`{|}~-]{1,64}@[\w-]{1,63}(?:\.[\w-]{1,63}){1,8}"
_ADDRESS = re.compile(_ADDR)
_BRACKETED = re.compile(rf"<({_ADDR})>")
_MESSAGE_ID = re.compile(r"<[^<>\s]{1,490}>")
_BARE_ID = re.compile(r"[^<>\s@]{1,245}@[^<>\s@]{1,245}")
_TYPE_PREFIX = re.compile(r"^\s*[A-Za-z0-9][A-Za-z0-9.+-]{0,30}\s*;\s*")
_FIELD_LINE = re.compile(r"^([A-Za-z0-9][A-Za-z0-9-]{0,76})\s*:\s?(.*)$")
_UNSAFE = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff\ufeff]")
_SPACES = re.compile(r"\s+")
_TAG = re.compile(r"<[^<>]{0,2000}>")
_BREAK_TAG = re.compile(r"<\s*(?:br|/p|/div|/tr|/li|/h\d)\b[^<>]{0,200}>", re.IGNORECASE)
_INLINE_ID = re.compile(r"^message-id:\s*(<[^<>\s]{1,490}>)", re.IGNORECASE)

# Everything below runs on folded text: accents stripped, lower case, ASCII only.
_USER_UNKNOWN = re.compile(
    r"user unknown|unknown (?:user|recipient|mailbox|address)|recipient unknown"
    r"|(?:mailbox|address) unknown|no such (?:user|mailbox|recipient|address|account)"
    r"|does ?n[o']?t exist|user does ?n[o']?t have an? [\w.-]{1,60} account"
    r"|mailbox (?:is )?unavailable|mailbox not found|user not found"
    r"|recipient not found|address not found|invalid (?:recipient|mailbox|address|user)"
    r"|address rejected|no mailbox here|not our customer"
    r"|usuario (?:desconhecido|inexistente|invalido)|nao existe"
    r"|(?:caixa postal|conta|endereco|destinatario|e-?mail)"
    r" (?:inexistente|desconhecid[oa]|invalid[oa])"
    r"|usuario desconocido|no existe|utente sconosciuto|unbekannt"
)
_NOT_ADDRESS = re.compile(
    r"spam|junk|block|black ?list|deny ?list|\brbl\b|dnsbl|reputation|polic|rate limit"
    r"|too many|throttl|access denied|relay|gr[ae]ylist|try again|later|quota|\bfull\b"
    r"|insufficient|size|too (?:big|large)|exceed|temporar|dmarc|\bspf\b|dkim|authenticat"
    r"|virus|malware|sender|remetente|cheia|lotad|bloquead|excedid|tente novamente|limite"
)
_SENDER_BLAME = re.compile(
    r"sender (?:address )?(?:rejected|verify|denied|domain|unknown|invalid|not)"
    r"|(?:rejected|invalid|unknown|bad) sender|mail from|return[- ]path|remetente"
)
_DELAY_TEXT = re.compile(
    r"this is a warning only|not yet been delivered|delivery (?:is |has been )?delayed"
    r"|delivery to the following recipients? (?:has been )?delayed|will (?:continue|keep) "
    r"(?:trying|to try|retrying)|still being retried|will be retried|address\(es\) deferred"
    r"|message (?:is |has been )?delayed|temporarily deferred|ainda nao foi entregue"
    r"|entrega (?:foi )?adiada|atrasad|continuaremos tentando|tentaremos novamente"
)
_FAIL_TEXT = re.compile(
    r"could ?n[o']?t be delivered|could not deliver|was ?n[o']?t delivered|unable to deliver"
    r"|undeliverable|delivery (?:has )?failed|delivery to the following recipients? failed"
    r"|failed permanently|permanent (?:error|failure|fatal)|address\(es\) failed"
    r"|wasn'?t able to deliver|returned to sender|message not delivered|address not found"
    r"|nao (?:foi possivel|pode ser|pode|foi) entreg|falha (?:na|de) entrega|erro permanente"
    r"|mensagem devolvida|no se pudo entregar|nicht zugestellt|non e stato possibile"
)
_BANNER = re.compile(
    r"this is the qmail-send program|created automatically by mail delivery software"
    r"|this is the mail system at host|delivery has failed to these recipients"
    r"|diagnostic information for administrators|mail delivery subsystem"
)
_BOUNCE_SUBJECT = re.compile(
    r"undeliver|delivery status notification|returned mail|returned to sender|failure notice"
    r"|non[- ]?delivery|mail delivery (?:failed|failure|system|subsystem)|delivery (?:failure"
    r"|failed|has failed|problem|delayed|notification)|could not be delivered|delayed mail"
    r"|warning: message .{0,200} delayed|message not delivered|mail system error"
    r"|nao entregue|falha (?:na|de) entrega|entrega (?:falhou|atrasada)|mensagem devolvida"
    r"|retorno de mensagem|nicht zustellbar|non recapitabile|no se puede entregar"
)
_AUTO_SUBJECT = re.compile(
    r"out of (?:the )?office|automatic reply|auto[- ]?reply|auto[- ]?respon|autoresposta"
    r"|resposta automatica|ausencia temporaria|fora do escritorio|fuori sede"
    r"|risposta automatica|fuera de la oficina|respuesta automatica|abwesenheitsnotiz"
    r"|automatische antwort|reponse automatique|absent du bureau|vacation reply|on vacation"
    r"|away from (?:the )?office|notice of absence|absence notice"
)
_COMPLAINT_TEXT = re.compile(
    r"complaint about message|abuse report|spam complaint|reported (?:as|this message as) spam"
    r"|marked as spam|denuncia de (?:spam|abuso)|relatorio de abuso|feedback loop"
)
_DAEMON_LOCAL = re.compile(r"^(?:mailer[-_]?daemon|mail[-_]?daemon|postmaster|maildelivery)$")
_DAEMON_NAME = re.compile(r"mail delivery (?:system|subsystem|service)|mailer[-_ ]daemon")
_MICROSOFT = re.compile(r"^staff@(?:hotmail|outlook|live|msn)\.[a-z.]{2,12}$")
#: where a text bounce starts copying the original message
_COPY_MARKER = re.compile(
    r"this is a copy of the message|below this line is a copy of the message"
    r"|original message headers|^-+ ?original message ?-+|^-* ?(?:cabecalhos da )?mensagem original"
    r"|header of the original message|the original message was received|^received: "
)
_LIST_MARKER = re.compile(
    r"address\(es\) (?:failed|deferred)|delivery (?:has failed|is delayed) to these recipients"
    r"|falha na entrega para estes destinatarios|following recipients? (?:failed|could not)"
    r"|diagnostic information for administrators|destinatarios? abaixo|seguintes destinatarios"
    r"|address(?:es)? to which the message has not yet been delivered"
)
_SENTENCE = re.compile(
    rf"(?:was ?n[o']?t|could ?n[o']?t be|could not be|n[aã]o (?:foi|p[oô]de ser) entregue)"
    rf" (?:delivered )?(?:to|a|para) <?({_ADDR})>?"
    rf"|(?:your )?message to <?({_ADDR})>? could ?n[o'’]?t be delivered",
    re.IGNORECASE,
)
_BRACKET_LINE = re.compile(
    rf"^\s{{0,4}}<({_ADDR})>(?:\s*\(expanded from <[^<>]{{0,320}}>\))?:\s*(.*)$"
)
_ADDRESS_LINE = re.compile(
    rf"^\s{{0,6}}(?:[^<>()@:\"]{{0,80}}[(<]|\"[^\"]{{0,80}}\"\s*<)?\s*({_ADDR})\s*[)>]?"
    rf"(?:\s*[(<]{_ADDR}[)>])?\s*:?\s*$"
)


# --- small helpers ----------------------------------------------------------------------------


def _clean(text: str | None, limit: int = MAX_FIELD) -> str | None:
    """One line without control characters or lone surrogates, at most ``limit`` characters."""
    if not text:
        return None
    one = _SPACES.sub(" ", _UNSAFE.sub(" ", text[: limit * 4])).strip()
    return one[:limit].rstrip() or None


def _fold(text: str) -> str:
    """Accents off, lower case, ASCII only: what the wording patterns run on."""
    normal = unicodedata.normalize("NFKD", text.replace("\u2019", "'"))
    return normal.encode("ascii", "ignore").decode("ascii").lower()


def _decode_bytes(data: bytes, charset: str | None = None) -> str:
    """Text in the declared charset, else UTF-8, else Windows-1252 (what "latin-1" means)."""
    names: list[str] = []
    if charset:
        lowered = charset.strip().strip("\"'").lower()
        if lowered in {"iso-8859-1", "iso8859-1", "latin1", "latin-1", "l1", "cp819"}:
            lowered = "cp1252"
        if lowered not in {"us-ascii", "ascii", "unknown-8bit", "x-unknown", "cp1252"}:
            names.append(lowered[:40])
    names += ["utf-8", "cp1252"]
    for name in names:
        try:
            return data.decode(name)
        except Exception:  # noqa: S112 -- any codec may fail on any bytes; try the next
            continue
    return data.decode("cp1252", errors="replace")


def _surrogates_to_text(text: str) -> str:
    """compat32 keeps 8-bit bytes as surrogate escapes; decode them as text."""
    try:
        data = text.encode("ascii", "surrogateescape")
    except UnicodeEncodeError:
        return text
    return _decode_bytes(data)


def _header_text(value: object) -> str:
    """A header value decoded (RFC 2047 words, raw 8-bit) and unfolded to one line."""
    if value is None:
        return ""
    if isinstance(value, email.header.Header):
        chunks: list[str] = []
        for chunk, charset in email.header.decode_header(value):
            if isinstance(chunk, bytes):
                chunks.append(_decode_bytes(chunk[:MAX_HEADER], charset))
            else:
                chunks.append(str(chunk)[:MAX_HEADER])
        text = "".join(chunks)
    else:
        text = _surrogates_to_text(str(value)[:MAX_HEADER])
    text = text[:MAX_HEADER]
    if "=?" in text:
        try:
            decoded = "".join(
                _decode_bytes(chunk, charset) if isinstance(chunk, bytes) else chunk
                for chunk, charset in email.header.decode_header(text)
            )
            text = decoded
        except Exception:  # noqa: S110 -- a broken encoded word stays as written
            pass
    return _SPACES.sub(" ", text).strip()


def _headers(msg: Message, name: str) -> list[str]:
    """Every value of header ``name``, decoded; at most 50."""
    try:
        values = msg.get_all(name) or []
    except Exception:
        return []
    return [_header_text(v) for v in values[:50]]


def _header(msg: Message, name: str) -> str:
    """The first value of header ``name``, decoded; empty when absent."""
    values = _headers(msg, name)
    return values[0] if values else ""


def _addresses(text: str) -> list[str]:
    """Addresses in a header-like text: those in <…> when any, else bare ones."""
    found = _BRACKETED.findall(text)
    if not found:
        found = _ADDRESS.findall(text)
    return [a for a in found[:MAX_ENVELOPE] if len(a) <= MAX_ADDRESS]


def _strip_type(value: str) -> str:
    """``rfc822; <a@b>`` → ``a@b``; ``dns; mx.example`` → ``mx.example``."""
    return _TYPE_PREFIX.sub("", value, count=1).strip()


def _dsn_address(value: str | None) -> str | None:
    if not value:
        return None
    text = _strip_type(value)
    inside = re.search(r"<([^<>]{1,320})>", text)
    if inside:
        text = inside.group(1)
    text = text.split()[0] if text.split() else ""
    return _clean(text.strip("<>\"'"), MAX_ADDRESS)


def _message_id(value: str | None) -> str | None:
    """The first ``<…>`` of a header, or a bare ``id@host`` put in brackets."""
    if not value:
        return None
    found = _MESSAGE_ID.search(value)
    if found:
        return _clean(found.group(0))
    bare = _BARE_ID.search(value)
    return _clean(f"<{bare.group(0)}>") if bare else None


def enhanced_code(text: str | None) -> str | None:
    """The first RFC 3463 enhanced status code in ``text`` (``"5.1.1"``), normalised."""
    if not text:
        return None
    found = _ENHANCED.search(text[:MAX_SCAN])
    if found is None:
        return None
    return f"{found.group(1)}.{int(found.group(2))}.{int(found.group(3))}"


def _specific_code(text: str) -> str | None:
    """The first enhanced code in ``text`` that is not the uninformative ``X.0.0``."""
    for count, found in enumerate(_ENHANCED.finditer(text[:MAX_SCAN])):
        if count >= 20:
            break
        code = f"{found.group(1)}.{int(found.group(2))}.{int(found.group(3))}"
        if not code.endswith(".0.0"):
            return code
    return None


def _reply_codes(text: str) -> set[int]:
    codes: set[int] = set()
    for count, found in enumerate(_REPLY.finditer(text)):
        if count >= 20:
            break
        codes.add(int(found.group(1)))
    return codes


# --- classification ---------------------------------------------------------------------------


def classify(status: str | None, diagnostic: str | None, action: str) -> Severity:
    """How bad one recipient's outcome is: ``"hard"`` only when the address itself is bad.

    ``status`` is an enhanced code (RFC 3463), ``diagnostic`` the remote server's text and
    ``action`` the DSN action (RFC 3464) or ``"complaint"``. The rules are in the module
    docstring; never raises.
    """
    act = (action or "").strip().lower()
    if act in _DONE or act == "complaint":
        return "none"
    diag = _fold(diagnostic[:MAX_SCAN]) if diagnostic else ""
    code = enhanced_code(status)
    if code is None or code.endswith(".0.0"):
        better = _specific_code(diag)
        if better is not None and (code is None or better[0] == code[0]):
            code = better
    if act == "delayed":
        return "soft"
    if code is not None and not code.endswith(".0.0"):
        klass, _, detail = code.partition(".")
        if klass == "2":
            return "soft" if act == "failed" else "none"
        if klass == "5" and detail in _HARD_DETAILS and not _SENDER_BLAME.search(diag):
            return "hard"
        return "soft"
    replies = _reply_codes(diag)
    if (
        (code is None or code.startswith("5"))
        and replies & _HARD_REPLIES
        and _USER_UNKNOWN.search(diag)
        and not _NOT_ADDRESS.search(diag)
        and not _SENDER_BLAME.search(diag)
    ):
        return "hard"
    if act == "failed":
        return "soft"
    if code is not None:
        return "none" if code.startswith("2") else "soft"
    if any(400 <= r < 600 for r in replies):
        return "soft"
    return "none"


def _recipient(address: str | None, action: str, status: str | None, diag: str | None) -> Recipient:
    clean_diag = _clean(diag, MAX_DIAGNOSTIC)
    clean_status = enhanced_code(status)
    act = action if action in _ACTIONS or action == "complaint" else "unknown"
    return Recipient(
        address=_clean(address, MAX_ADDRESS),
        action=act,
        status=clean_status,
        diagnostic=clean_diag,
        severity=classify(clean_status, clean_diag, act),
    )


# --- the MIME walk ----------------------------------------------------------------------------


@dataclass
class _Scan:
    """What the walk found: report parts, the original's headers, human-readable text."""

    dsn: list[str] = field(default_factory=list)
    arf: list[str] = field(default_factory=list)
    original: Message | None = None
    texts: list[str] = field(default_factory=list)
    budget: int = MAX_SCAN

    def add_text(self, text: str) -> None:
        if self.budget <= 0 or not text.strip():
            return
        text = text[: self.budget]
        self.budget -= len(text)
        self.texts.append(text)


def _charset(part: Message) -> str | None:
    try:
        return part.get_content_charset()
    except Exception:
        return None


def _content_type(part: Message) -> str:
    try:
        return part.get_content_type()
    except Exception:
        return "text/plain"


def _decoded_payload(part: Message, limit: int = MAX_SCAN) -> str:
    """The text of a leaf part, transfer-decoded and charset-decoded."""
    try:
        data = part.get_payload(decode=True)
    except Exception:
        data = None
    if isinstance(data, bytes):
        return _decode_bytes(data[: limit * 2], _charset(part))[:limit]
    try:
        payload = part.get_payload()
    except Exception:
        return ""
    return _surrogates_to_text(payload[:limit]) if isinstance(payload, str) else ""


def _block_text(sub: Message) -> str:
    lines = [f"{name}: {_header_text(value)}" for name, value in sub.items()[:200]]
    text = "\n".join(lines)
    body = sub.get_payload()
    if isinstance(body, str) and body.strip():
        text += "\n\n" + _surrogates_to_text(body[:MAX_SCAN])
    return text


def _part_text(part: Message) -> str:
    """The text of a report part; the parser splits ``message/*`` parts into sub-messages."""
    try:
        payload = part.get_payload()
    except Exception:
        return ""
    if isinstance(payload, list):
        blocks = [
            _block_text(sub) for sub in payload[: MAX_RECIPIENTS + 1] if isinstance(sub, Message)
        ]
        return "\n\n".join(blocks)[:MAX_SCAN]
    return _decoded_payload(part)


def _html_text(text: str) -> str:
    return html.unescape(_TAG.sub(" ", _BREAK_TAG.sub("\n", text)))


def _original_of(part: Message) -> Message | None:
    try:
        payload = part.get_payload()
    except Exception:
        return None
    if isinstance(payload, list):
        first = payload[0] if payload else None
        return first if isinstance(first, Message) else None
    text = _decoded_payload(part)
    if not text.strip():
        return None
    return HeaderParser(policy=compat32).parsestr(text)


def _scan(msg: Message) -> _Scan:
    """Walk at most :data:`MAX_PARTS` parts; the original message is not walked into."""
    scan = _Scan()
    stack: list[Message] = [msg]
    walked = 0
    while stack and walked < MAX_PARTS:
        part = stack.pop()
        walked += 1
        try:
            _visit(part, scan, stack)
        except Exception:  # noqa: S112 -- one broken part does not spoil the others
            continue
    return scan


def _visit(part: Message, scan: _Scan, stack: list[Message]) -> None:
    ctype = _content_type(part)
    payload = part.get_payload()
    if ctype.startswith("multipart/"):
        if isinstance(payload, list):
            children = [p for p in payload[:MAX_PARTS] if isinstance(p, Message)]
            stack.extend(reversed(children))
        else:  # no usable boundary: the body is all there is
            scan.add_text(_decoded_payload(part))
    elif ctype in _DSN_TYPES:
        scan.dsn.append(_part_text(part))
    elif ctype in _ARF_TYPES:
        scan.arf.append(_part_text(part))
    elif ctype in _ORIGINAL_TYPES:
        if scan.original is None:
            scan.original = _original_of(part)
    elif ctype == "text/html":
        scan.add_text(_html_text(_decoded_payload(part)))
    elif isinstance(payload, str) and not ctype.startswith(_BINARY_TYPES):
        scan.add_text(_decoded_payload(part))


# --- report parts ------------------------------------------------------------------------------

_Block = list[tuple[str, str]]


def _field_blocks(text: str) -> list[_Block]:
    """RFC 822-style field blocks separated by blank lines; continuation lines unfolded."""
    blocks: list[_Block] = []
    current: _Block = []
    for count, raw in enumerate(text[:MAX_SCAN].splitlines()):
        if count >= MAX_LINES * 4 or len(blocks) > MAX_RECIPIENTS + 1:
            break
        line = raw[:MAX_LINE]
        if not line.strip():
            if current:
                blocks.append(current)
                current = []
            continue
        if line[:1] in (" ", "\t") and current:
            name, value = current[-1]
            if len(value) < MAX_LINE * 2:
                current[-1] = (name, f"{value} {line.strip()}")
            continue
        found = _FIELD_LINE.match(line)
        if found:
            current.append((found.group(1).lower(), found.group(2).strip()))
    if current:
        blocks.append(current)
    return blocks


def _first(block: _Block, name: str) -> str | None:
    for key, value in block:
        if key == name and value:
            return value
    return None


def _dsn_recipients(texts: Iterable[str]) -> tuple[list[Recipient], str | None]:
    """Per-recipient blocks of delivery-status parts, and the Reporting-MTA."""
    recipients: list[Recipient] = []
    reporter: str | None = None
    for text in texts:
        for block in _field_blocks(text):
            if reporter is None and (mta := _first(block, "reporting-mta")):
                reporter = _strip_type(mta)
            names = {key for key, _ in block}
            if not names & {"final-recipient", "original-recipient", "action", "status"}:
                continue
            if len(recipients) >= MAX_RECIPIENTS:
                break
            address = _dsn_address(_first(block, "final-recipient")) or _dsn_address(
                _first(block, "original-recipient")
            )
            raw_diag = _first(block, "diagnostic-code")
            diag = _strip_type(raw_diag) if raw_diag else None
            status = enhanced_code(_first(block, "status")) or _specific_code(diag or "")
            status = status or enhanced_code(diag)
            action = (_first(block, "action") or "").split(" ")[0].strip(" ;,.").lower()
            if action not in _ACTIONS:
                action = _action_from_status(status)
            recipients.append(_recipient(address, action, status, diag))
    return recipients, reporter


def _action_from_status(status: str | None) -> str:
    if status is None:
        return "unknown"
    return {"5": "failed", "4": "delayed", "2": "delivered"}.get(status[0], "unknown")


def _arf_fields(texts: Iterable[str]) -> _Block | None:
    fields: _Block = []
    for text in texts:
        for block in _field_blocks(text):
            fields.extend(block)
    return fields or None


def _kind_of(recipients: Iterable[Recipient]) -> Kind:
    actions = {r.action for r in recipients}
    if "failed" in actions:
        return "bounce"
    if "delayed" in actions:
        return "delay"
    if actions & _DONE:
        return "delivered"
    return "unknown"


# --- text bounces ------------------------------------------------------------------------------


def _lines(text: str) -> list[str]:
    return [line[:MAX_LINE] for line in text[:MAX_SCAN].splitlines()[:MAX_LINES]]


def _human_part(text: str) -> str:
    """The text before the copy of the original message, if it is inlined."""
    lines = _lines(text)
    for index, line in enumerate(lines):
        if index > 0 and _COPY_MARKER.search(_fold(line).strip()):
            return "\n".join(lines[:index])
    return "\n".join(lines)


class _Found:
    """Addresses found in a text, in order, each with the lines that speak of it."""

    def __init__(self) -> None:
        self.blocks: dict[str, tuple[str, list[str]]] = {}

    def add(self, address: str, lines: Iterable[str]) -> None:
        key = address.lower()
        if key not in self.blocks:
            if len(self.blocks) >= MAX_RECIPIENTS:
                return
            self.blocks[key] = (address, [])
        kept = self.blocks[key][1]
        for line in lines:
            stripped = line.strip()
            if stripped and stripped not in kept and len(kept) < 40:
                kept.append(stripped)

    def __iter__(self) -> Iterator[tuple[str, list[str]]]:
        return iter(self.blocks.values())


def _bracketed_blocks(lines: list[str], found: _Found) -> None:
    """Postfix, qmail and their imitators: ``<a@b>: reason`` then lines up to a blank one."""
    index = 0
    while index < len(lines):
        match = _BRACKET_LINE.match(lines[index])
        index += 1
        if match is None:
            continue
        block = [match.group(2)]
        while index < len(lines) and lines[index].strip():
            if _BRACKET_LINE.match(lines[index]):
                break
            block.append(lines[index])
            index += 1
        found.add(match.group(1), block)


def _listed_blocks(lines: list[str], found: _Found) -> None:
    """Exim and Exchange: after "address(es) failed:" or "failed to these recipients", lines
    naming only an address, each followed by more indented lines or lines up to a blank one."""
    index = 0
    in_list = False
    while index < len(lines):
        line = lines[index]
        folded = _fold(line)
        index += 1
        if _LIST_MARKER.search(folded):
            in_list = True
            continue
        if not in_list:
            continue
        if _COPY_MARKER.search(folded.strip()):
            break
        match = _ADDRESS_LINE.match(line)
        if match is None:
            continue
        indent = len(line) - len(line.lstrip())
        block: list[str] = []
        while index < len(lines):
            nxt = lines[index]
            if not nxt.strip():
                if indent > 0 or block:
                    break
                index += 1
                continue
            nxt_indent = len(nxt) - len(nxt.lstrip())
            if _ADDRESS_LINE.match(nxt) or (indent > 0 and nxt_indent <= indent):
                break
            block.append(nxt)
            index += 1
        found.add(match.group(1), block)


def _code_lines(lines: Iterable[str]) -> list[str]:
    """Lines carrying an SMTP reply or enhanced code, at most five."""
    kept: list[str] = []
    for line in lines:
        if _ENHANCED.search(line) or _REPLY.search(line):
            kept.append(line.strip())
            if len(kept) >= 5:
                break
    return kept


def _sentence_addresses(text: str, lines: list[str], found: _Found) -> None:
    """Gmail and Exchange prose: "Your message wasn't delivered to a@b because…"."""
    codes = _code_lines(lines)
    for count, match in enumerate(_SENTENCE.finditer(text[:MAX_SCAN])):
        if count >= 20:
            break
        address = match.group(1) or match.group(2)
        if address:
            found.add(address, codes)


def _text_sense(folded: str) -> str | None:
    """``"delayed"``, ``"failed"`` or None: what the prose says happened."""
    if _DELAY_TEXT.search(folded):
        return "delayed"
    if _FAIL_TEXT.search(folded):
        return "failed"
    return None


def _text_recipients(human: str, sense: str) -> list[Recipient]:
    lines = _lines(human)
    found = _Found()
    _bracketed_blocks(lines, found)
    _listed_blocks(lines, found)
    _sentence_addresses(human, lines, found)
    recipients: list[Recipient] = []
    for address, block in found:
        ordered = _code_lines(block) + [line for line in block if line not in _code_lines(block)]
        diag = " ".join(ordered) or None
        status = _specific_code(diag or "") or enhanced_code(diag)
        recipients.append(_recipient(address, sense, status, diag))
    return recipients


# --- the report --------------------------------------------------------------------------------


@dataclass
class _Head:
    """The report's own headers that matter."""

    subject: str
    from_address: str | None
    from_text: str
    #: a mail system sent it: From or report type (below), or a null Return-Path
    daemon: bool
    #: From names a mail system (MAILER-DAEMON, postmaster…) or report-type=delivery-status
    mail_system: bool
    auto_reply: bool
    envelope: list[str]
    in_reply_to: str
    references: str
    report_type: str


def _head(msg: Message) -> _Head:
    subject = _header(msg, "Subject")
    from_text = _header(msg, "From")
    from_addresses = _addresses(from_text)
    from_address = from_addresses[0] if from_addresses else None
    local = (from_address or "").rpartition("@")[0].lower()
    return_path = _header(msg, "Return-Path")
    report_type = ""
    try:
        param = msg.get_param("report-type")
        if isinstance(param, str):
            report_type = param.strip().lower()[:64]
    except Exception:
        report_type = ""
    mail_system = bool(
        _DAEMON_LOCAL.match(local)
        or _DAEMON_NAME.search(_fold(from_text))
        or report_type == "delivery-status"
    )
    daemon = mail_system or return_path.replace(" ", "") == "<>"
    auto_submitted = _fold(_header(msg, "Auto-Submitted"))
    precedence = _fold(_header(msg, "Precedence"))
    auto_reply = bool(
        auto_submitted.startswith("auto-replied")
        or _headers(msg, "X-Autoreply")
        or _headers(msg, "X-Autorespond")
        or precedence.startswith("auto_reply")
        or _AUTO_SUBJECT.search(_fold(subject))
    )
    envelope: list[str] = []
    for name in ("Delivered-To", "X-Original-To", "Envelope-To", "X-Envelope-To", "To"):
        for value in _headers(msg, name):
            envelope.extend(_addresses(value))
    return _Head(
        subject=subject,
        from_address=from_address,
        from_text=from_text,
        daemon=daemon,
        mail_system=mail_system,
        auto_reply=auto_reply,
        envelope=envelope,
        in_reply_to=_header(msg, "In-Reply-To"),
        references=_header(msg, "References"),
        report_type=report_type,
    )


def _dedupe(addresses: Iterable[str]) -> tuple[str, ...]:
    seen: set[str] = set()
    kept: list[str] = []
    for address in addresses:
        clean = _clean(address.strip("<> "), MAX_ADDRESS)
        if clean is None or clean.lower() in seen:
            continue
        seen.add(clean.lower())
        kept.append(clean)
        if len(kept) >= MAX_ENVELOPE:
            break
    return tuple(kept)


def _original_recipient(original: Message | None) -> str | None:
    """Who received the original: Microsoft's JMRP header, else a single To address."""
    if original is None:
        return None
    for value in _headers(original, "X-HmXmrOriginalRecipient"):
        found = _addresses(value)
        if found:
            return found[0]
    to = [a for value in _headers(original, "To") for a in _addresses(value)]
    return to[0] if len(to) == 1 else None


def _inline_message_id(text: str) -> str | None:
    for line in _lines(text):
        found = _INLINE_ID.match(line.strip())
        if found:
            return _message_id(found.group(1))
    return None


def _last_id(references: str) -> str | None:
    found = _MESSAGE_ID.findall(references)
    return _clean(found[-1]) if found else None


def _parse(raw: bytes) -> Report:
    msg = email.message_from_bytes(bytes(raw[:MAX_BYTES]), policy=compat32)
    head = _head(msg)
    scan = _scan(msg)
    original = scan.original
    text = "\n".join(scan.texts)
    folded = _fold(text)

    original_id = _message_id(_header(original, "Message-ID")) if original is not None else None
    original_id = original_id or _inline_message_id(text)
    original_id = original_id or _message_id(head.in_reply_to) or _last_id(head.references)

    envelope = list(head.envelope)
    feedback_type: str | None = None
    reporter: str | None = None
    recipients: list[Recipient] = []
    kind: Kind = "unknown"

    arf = _arf_fields(scan.arf)
    dsn, reporting_mta = _dsn_recipients(scan.dsn)
    if arf is not None:
        feedback_type = _clean((_first(arf, "feedback-type") or "").split(" ")[0].lower(), 64)
        kind = "complaint" if feedback_type in _COMPLAINT_TYPES else "feedback"
        reporter = _first(arf, "user-agent") or _first(arf, "reporting-mta")
        reporter = _strip_type(reporter) if reporter else None
        envelope.extend(_addresses(_first(arf, "original-mail-from") or ""))
        rcpts = [a for k, v in arf if k == "original-rcpt-to" for a in _addresses(v)]
        rcpts = rcpts or [a for k, v in arf if k == "removal-recipient" for a in _addresses(v)]
        if not rcpts and (fallback := _original_recipient(original)):
            rcpts = [fallback]
        recipients = [_recipient(a, "complaint", None, None) for a in rcpts[:MAX_RECIPIENTS]]
    elif dsn and _kind_of(dsn) != "unknown":
        kind = _kind_of(dsn)
        recipients = dsn
        reporter = reporting_mta
    else:
        kind, recipients = _text_bounce(head, text, folded, original)
        if kind == "unknown":
            recipients = dsn
            reporter = reporting_mta
            if _is_complaint_loop(head, original, folded):
                kind = "complaint"
                fallback = _original_recipient(original)
                recipients = [_recipient(fallback, "complaint", None, None)] if fallback else []
            elif head.auto_reply and not head.mail_system:
                kind = "auto-reply"
                recipients = []

    if original is not None:
        envelope.extend(_addresses(_header(original, "Return-Path")))
    return Report(
        kind=kind,
        recipients=tuple(recipients[:MAX_RECIPIENTS]),
        original_message_id=original_id,
        envelope_addresses=_dedupe(envelope),
        feedback_type=feedback_type,
        reporter=_clean(reporter or head.from_address or head.from_text),
        subject=_clean(head.subject),
    )


def _text_bounce(
    head: _Head, text: str, folded: str, original: Message | None
) -> tuple[Kind, list[Recipient]]:
    """A bounce or delay told in prose, when confident (see the module docstring)."""
    human = _human_part(text)
    folded_human = _fold(human)
    sense = _text_sense(folded_human) or _text_sense(_fold(head.subject))
    if sense is None:
        return "unknown", []
    system = head.daemon or bool(_BANNER.search(folded_human))
    if not (system or _BOUNCE_SUBJECT.search(_fold(head.subject))):
        return "unknown", []
    inline, _ = _dsn_recipients([human]) if "final-recipient" in folded_human else ([], None)
    if inline and _kind_of(inline) != "unknown":
        return _kind_of(inline), inline
    recipients = _text_recipients(human, sense)
    if not recipients and system:
        fallback = _original_recipient(original)
        if fallback:
            diag = " ".join(_code_lines(_lines(human))) or None
            status = _specific_code(diag or "") or enhanced_code(diag)
            recipients = [_recipient(fallback, sense, status, diag)]
    if not recipients:
        return "unknown", []
    return ("delay" if sense == "delayed" else "bounce"), recipients


def _is_complaint_loop(head: _Head, original: Message | None, folded: str) -> bool:
    """JMRP and other non-ARF complaint loops: the original attached, plus a sign."""
    if original is None:
        return False
    return bool(
        _headers(original, "X-HmXmrOriginalRecipient")
        or _MICROSOFT.match((head.from_address or "").lower())
        or head.report_type == "feedback-report"
        or _COMPLAINT_TEXT.search(_fold(head.subject))
        or _COMPLAINT_TEXT.search(folded[:MAX_SCAN])
    )


def parse_report(raw: bytes) -> Report:
    """The :class:`Report` of one raw message from the bounce mailbox; never raises.

    Anything that cannot be read — not bytes, broken MIME, no recognisable report — is
    :data:`UNKNOWN` or a report of kind ``"unknown"``.
    """
    try:
        return _parse(raw)
    except Exception:
        return UNKNOWN
