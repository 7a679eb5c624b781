"""Bounce and complaint parsing (engine.feedback.bounces), D14.

The guard's rates (D14) count *hard* bounces and complaints, and a hard bounce suppresses the
address (D4, D13): a report read as hard when the address is fine wrongly shrinks a list, and a
complaint or a user-unknown missed lets an account keep mailing where it should pause. So the
parser is tested on a corpus of reports written the way each mail system writes them
(``tests/data/feedback``), on the severity rules one by one, and on whatever else may land in a
bounce mailbox (garbage, broken MIME, huge messages), where it must never raise.

The corpus names deliveries 4201… the way disparo does: VERP return paths
``bounces+b-<delivery>-<mac>@bounce.example.com`` and Message-IDs ``<m-<delivery>-<mac>@…>``
signed with :data:`CORPUS_SECRET`, so a test can check that each report leads back to its
delivery.
"""

from __future__ import annotations

import base64
import email
import email.policy
import quopri
import re
import time
from dataclasses import dataclass
from email.message import EmailMessage, Message
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.feedback.bounces import (
    MAX_ADDRESS,
    MAX_DIAGNOSTIC,
    MAX_ENVELOPE,
    MAX_FIELD,
    MAX_RECIPIENTS,
    UNKNOWN,
    Report,
    classify,
    parse_report,
)
from engine.tokens import Signer

CORPUS = Path(__file__).parent / "data" / "feedback"
#: the secret the corpus' VERP addresses and Message-IDs were signed with
CORPUS_SECRET = "disparo-bounce-corpus-secret"
SIGNER = Signer(CORPUS_SECRET)
MESSAGE_ID_DOMAIN = "disparo.example.com"
BOUNCE_ADDRESS = "bounces@bounce.example.com"

KINDS = {"bounce", "delay", "delivered", "complaint", "feedback", "auto-reply", "unknown"}
SEVERITIES = {"hard", "soft", "none"}
ACTIONS = {"failed", "delayed", "delivered", "relayed", "expanded", "complaint", "unknown"}
STATUS = re.compile(r"[245]\.\d{1,3}\.\d{1,3}")
CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def verp(delivery: int) -> str:
    return SIGNER.verp(delivery, BOUNCE_ADDRESS)


def message_id(delivery: int) -> str:
    return SIGNER.message_id(delivery, MESSAGE_ID_DOMAIN)


def delivery_of(report: Report) -> int | None:
    """What the mailbox poller does with a report: VERP first, then our Message-ID."""
    return SIGNER.delivery_named(report.envelope_addresses, report.original_message_id)


def load(name: str) -> bytes:
    return (CORPUS / name).read_bytes()


# --- the corpus --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rcpt:
    """One expected recipient: address, DSN action, enhanced status and severity."""

    address: str | None
    action: str
    status: str | None
    severity: str
    #: a piece of the diagnostic that must be there (decoded, unfolded)
    says: str | None = None


@dataclass(frozen=True)
class Case:
    """What one sample of the corpus must parse to."""

    kind: str
    recipients: tuple[Rcpt, ...]
    #: the delivery the sample is about (its VERP and Message-ID); None: none of ours
    delivery: int | None
    feedback_type: str | None = None
    #: default: the VERP address of ``delivery`` alone
    envelope: tuple[str, ...] | None = None
    #: default: the Message-ID of ``delivery``
    original_message_id: str | None = None
    reporter: str | None = None
    subject: str | None = None


def bounce(address: str, status: str | None, severity: str, says: str | None = None) -> Rcpt:
    return Rcpt(address, "failed", status, severity, says)


CASES: dict[str, Case] = {
    # Postfix: RFC 3464 report, 5.1.1 from the remote server
    "postfix-user-unknown.eml": Case(
        "bounce",
        (
            bounce(
                "joao.pereira@example.net",
                "5.1.1",
                "hard",
                "550 5.1.1 <joao.pereira@example.net>: Recipient address rejected: User unknown"
                " in virtual mailbox table",
            ),
        ),
        4201,
        reporter="mx1.example.net",
        subject="Undelivered Mail Returned to Sender",
    ),
    # Postfix delay warning: headers only attached (text/rfc822-headers)
    "postfix-delayed.eml": Case(
        "delay",
        (
            Rcpt(
                "carla.mendes@example.org",
                "delayed",
                "4.4.1",
                "soft",
                "connect to mx.example.org[203.0.113.40]:25: Connection timed out",
            ),
        ),
        4202,
        reporter="mx1.example.net",
    ),
    # Exim with DSN: Status 5.0.0, the real code is in the diagnostic (X.0.0 refinement)
    "exim-dsn-5.0.0.eml": Case(
        "bounce",
        (bounce("rafael.lima@example.org", "5.0.0", "hard", "550 5.1.1"),),
        4203,
        reporter="mail.example.org",
    ),
    # Exim without MIME: the recipient list and the 550 wording are read from the prose
    "exim-legacy-text.eml": Case(
        "bounce",
        (bounce("tiago.alves@example.com", None, "hard", "550 No such user here"),),
        4204,
    ),
    # Gmail: multipart/related prose, 550-5.1.1 continued over several lines in the report
    "gmail-address-not-found.eml": Case(
        "bounce",
        (
            bounce(
                "bruna.costa@example.com",
                "5.1.1",
                "hard",
                "550-5.1.1 The email account that you tried to reach does not exist. Please try"
                " 550-5.1.1 double-checking",
            ),
        ),
        4205,
        reporter="googlemail.example",
        subject="Delivery Status Notification (Failure)",
    ),
    # Exchange Online: 5.1.10 RecipientNotFound, subject in base64 encoded words
    "outlook-5.1.10.eml": Case(
        "bounce",
        (bounce("marcos.rocha@example.net", "5.1.10", "hard", "RESOLVER.ADR.RecipientNotFound"),),
        4206,
        reporter="CP5PR80MB1234.lamprd80.prod.outlook.example",
        subject="Undeliverable: Black Friday: até 70% de desconto",
    ),
    # Yahoo ARF: Original-Rcpt-To wins over the redacted To of the attached original
    "yahoo-arf-abuse.eml": Case(
        "complaint",
        (Rcpt("patricia.nunes@yahoo.example", "complaint", None, "none"),),
        4207,
        feedback_type="abuse",
        envelope=("fbl@bounce.example.com", verp(4207)),
        reporter="Yahoo!-Mail-Feedback/2.0",
    ),
    # Microsoft JMRP without ARF: the recipient is X-HmXmrOriginalRecipient of the original
    "jmrp-complaint.eml": Case(
        "complaint",
        (Rcpt("rodrigo.teixeira@hotmail.example", "complaint", None, "none"),),
        4208,
        envelope=("jmrp@bounce.example.com", verp(4208)),
        reporter="staff@hotmail.example",
    ),
    # ARF not-spam: feedback, not a complaint; recipient from the original's single To
    "arf-not-spam.eml": Case(
        "feedback",
        (Rcpt("eduardo.moreira@example.org", "complaint", None, "none"),),
        4209,
        feedback_type="not-spam",
        envelope=("fbl@bounce.example.com", verp(4209)),
        reporter="ExampleFBL/1.4",
    ),
    # Amazon SES feedback forwarding
    "ses-dsn.eml": Case(
        "bounce",
        (bounce("lucas.ferreira@example.com", "5.1.1", "hard", "550 5.1.1 user unknown"),),
        4210,
        reporter="a8-50.smtp-out.amazonses.example",
    ),
    # qmail: no MIME, "<address>:" then the remote's words; the copy is cut off
    "qmail.eml": Case(
        "bounce",
        (bounce("diego.martins@example.net", "5.1.1", "hard", "Remote host said: 550 5.1.1"),),
        4211,
        subject="failure notice",
    ),
    # sendmail: 5.7.1 blocklisted client: policy, not the address (soft)
    "sendmail-policy-5.7.1.eml": Case(
        "bounce",
        (bounce("helena.prado@example.com", "5.7.1", "soft", "blocked using bl.example.org"),),
        4212,
        reporter="relay.example.com",
    ),
    # mailbox full (Dovecot LMTP behind Postfix): 5.2.2 is soft
    "mailbox-full-5.2.2.eml": Case(
        "bounce",
        (bounce("ana.oliveira@example.org", "5.2.2", "soft", "Quota exceeded"),),
        4213,
    ),
    # UOL-like: ISO-8859-1 quoted-printable prose, "550 Conta inexistente" without enhanced code
    "uol-mensagem-nao-entregue.eml": Case(
        "bounce",
        (
            bounce(
                "fernanda.ribeiro@uol.example",
                None,
                "hard",
                "550 Conta inexistente. Verifique o endereço do destinatário.",
            ),
        ),
        4214,
        subject="Mensagem não entregue",
    ),
    # Locaweb-like Postfix in Portuguese; "A mensagem original está anexada abaixo" is prose,
    # not the start of the copy
    "locaweb-usuario-desconhecido.eml": Case(
        "bounce",
        (bounce("ricardo.gomes@example.com", "5.1.1", "hard", "usuário desconhecido"),),
        4215,
    ),
    "locaweb-caixa-postal-inexistente.eml": Case(
        "bounce",
        (bounce("paulo.henrique@example.org", None, "hard", "550 caixa postal inexistente"),),
        4224,
    ),
    # Exchange out-of-office in Portuguese, sent with a null Return-Path (RFC 3834)
    "ptbr-out-of-office-exchange.eml": Case(
        "auto-reply",
        (),
        4216,
        reporter="beatriz.carvalho@example.com",
        subject="Resposta automática: Black Friday: até 70% de desconto",
    ),
    # Sieve vacation (null Return-Path, Auto-Submitted: auto-replied)
    "ptbr-out-of-office-sieve.eml": Case(
        "auto-reply", (), 4225, reporter="jose.freitas@example.net", subject="Ausência temporária"
    ),
    # NOTIFY=SUCCESS report
    "postfix-delivered.eml": Case(
        "delivered",
        (Rcpt("sofia.araujo@example.net", "delivered", "2.0.0", "none", "delivered to mailbox"),),
        4217,
    ),
    # old Exchange in Portuguese, windows-1252 quoted-printable, no report part
    "exchange-ptbr-cp1252-qp.eml": Case(
        "bounce",
        (
            bounce(
                "goncalo.araujo@empresa.example.com",
                "5.1.1",
                "hard",
                "O endereço de email inserido não pôde ser encontrado",
            ),
        ),
        4218,
        reporter="postmaster@empresa.example.com",
        subject="Não é possível entregar: Black Friday",
    ),
    # Gmail's 5.7.26 over many folded lines: unfolded, capped, still soft
    "postfix-long-folded-diagnostic.eml": Case(
        "bounce",
        (
            bounce(
                "leticia.moura@example.com",
                "5.7.26",
                "soft",
                "550-5.7.26 This mail has been blocked because the sender is unauthenticated."
                " 550-5.7.26 Gmail requires all senders",
            ),
        ),
        4219,
    ),
    # multipart/report whose delivery-status is inlined in the text part (IIS SMTP-like)
    "report-missing-delivery-status.eml": Case(
        "bounce",
        (bounce("andre.castro@example.org", "5.1.1", "hard", "User unknown"),),
        4220,
        reporter="postmaster@example.org",
    ),
    # a customer writing that their message was not delivered: not a report
    "person-message-not-delivered.eml": Case(
        "unknown",
        (),
        4221,
        envelope=(BOUNCE_ADDRESS, "ofertas@loja.example.com"),
        reporter="roberto.dias@example.org",
    ),
    # a newsletter someone subscribed the bounce address to
    "newsletter.eml": Case("unknown", (), None, envelope=(BOUNCE_ADDRESS,)),
    # the remote rejected our MAIL FROM (sender verification): never the recipient's fault
    "postfix-sender-address-rejected.eml": Case(
        "bounce",
        (bounce("vinicius.barros@example.org", "5.1.0", "soft", "Sender address rejected"),),
        4223,
    ),
    # Exim delay warning without MIME: "The address to which the message has not yet been…"
    "exim-delay-warning.eml": Case(
        "delay",
        (Rcpt("marina.lopes@example.org", "delayed", "4.3.0", "soft", "Temporary lookup failure"),),
        4226,
    ),
}


def test_the_corpus_is_complete() -> None:
    """Every sample has its expectations, and there are enough of them."""
    on_disk = {p.name for p in CORPUS.glob("*.eml")}
    assert on_disk == set(CASES)
    assert len(on_disk) >= 22


@pytest.mark.parametrize("name", sorted(CASES))
def test_corpus(name: str) -> None:
    """Each sample parses to its kind, recipients, severities and the delivery it names (D14:
    hard bounces and complaints are what the guard counts)."""
    case = CASES[name]
    report = parse_report(load(name))
    assert report.kind == case.kind
    got = [(r.address, r.action, r.status, r.severity) for r in report.recipients]
    assert got == [(r.address, r.action, r.status, r.severity) for r in case.recipients]
    for expected, recipient in zip(case.recipients, report.recipients, strict=True):
        if expected.says is not None:
            assert recipient.diagnostic is not None
            assert expected.says in recipient.diagnostic
    assert report.feedback_type == case.feedback_type
    if case.delivery is not None:
        envelope = case.envelope or (verp(case.delivery),)
        assert report.envelope_addresses == envelope
        assert report.original_message_id == (case.original_message_id or message_id(case.delivery))
    else:
        assert report.envelope_addresses == case.envelope
        assert report.original_message_id == case.original_message_id
    assert delivery_of(report) == case.delivery
    if case.reporter is not None:
        assert report.reporter == case.reporter
    if case.subject is not None:
        assert report.subject == case.subject
    assert_bounded(report)


def test_long_folded_diagnostic_is_unfolded_and_capped() -> None:
    """A Diagnostic-Code folded over eight lines comes back as one line of at most
    :data:`MAX_DIAGNOSTIC` characters, whitespace collapsed."""
    raw = load("postfix-long-folded-diagnostic.eml")
    folded = raw[raw.index(b"Diagnostic-Code:") :].split(b"\n\n")[0]
    assert folded.count(b"\n") == 7 and len(folded) > MAX_DIAGNOSTIC
    (recipient,) = parse_report(raw).recipients
    assert recipient.diagnostic is not None
    assert len(recipient.diagnostic) == MAX_DIAGNOSTIC
    assert "\n" not in recipient.diagnostic and "  " not in recipient.diagnostic
    assert recipient.diagnostic.startswith("550-5.7.26 This mail has been blocked")


@pytest.mark.parametrize("name", sorted(CASES))
def test_corpus_with_crlf_line_endings(name: str) -> None:
    """IMAP servers hand messages over with CRLF line endings: same report either way."""
    raw = load(name)
    crlf = raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    assert parse_report(crlf) == parse_report(raw)


def _without_delivery_status(msg: Message) -> Message:
    if msg.is_multipart():
        kept = [
            _without_delivery_status(part)
            for part in msg.get_payload()
            if part.get_content_type() != "message/delivery-status"
        ]
        msg.set_payload(kept)
    return msg


@pytest.mark.parametrize(
    "name",
    [
        "postfix-user-unknown.eml",
        "exim-dsn-5.0.0.eml",
        "gmail-address-not-found.eml",
        "outlook-5.1.10.eml",
        "sendmail-policy-5.7.1.eml",
        "mailbox-full-5.2.2.eml",
        "postfix-long-folded-diagnostic.eml",
        "postfix-sender-address-rejected.eml",
    ],
)
def test_text_fallback_agrees_with_the_report_part(name: str) -> None:
    """With its delivery-status part taken out, a bounce read from the prose alone names the
    same recipient with the same severity (D14: a lost report part must not turn a hard bounce
    soft, nor a soft one hard)."""
    msg = email.message_from_bytes(load(name), policy=email.policy.compat32)
    stripped = _without_delivery_status(msg).as_bytes()
    assert b"message/delivery-status" not in stripped
    full, text = parse_report(load(name)), parse_report(stripped)
    assert text.kind == full.kind
    assert [(r.address, r.action, r.severity) for r in text.recipients] == [
        (r.address, r.action, r.severity) for r in full.recipients
    ]
    assert text.original_message_id == full.original_message_id


# --- classify -----------------------------------------------------------------------------------

HARD_CODES = ["5.1.0", "5.1.1", "5.1.2", "5.1.3", "5.1.6", "5.1.10", "5.2.1", "5.4.4"]
SOFT_CODES = [
    "5.0.0",
    "5.1.4",
    "5.1.5",
    "5.1.7",
    "5.1.8",
    "5.1.9",
    "5.2.0",
    "5.2.2",
    "5.2.3",
    "5.3.4",
    "5.4.1",
    "5.4.6",
    "5.5.0",
    "5.7.0",
    "5.7.1",
    "5.7.26",
]


@pytest.mark.parametrize("code", HARD_CODES)
def test_classify_hard_codes(code: str) -> None:
    """The codes that say the address itself is bad are hard, from the status or, without one,
    from the diagnostic (D14 counts them; D4 suppresses the address)."""
    assert classify(code, None, "failed") == "hard"
    assert classify(None, f"smtp; 550 {code} rejected", "failed") == "hard"
    assert classify(code, f"550 {code} <a@example.com>: rejected", "failed") == "hard"


@pytest.mark.parametrize("code", HARD_CODES)
def test_classify_hard_codes_are_soft_when_temporary_or_delayed(code: str) -> None:
    """The same subject.detail in class 4 is a temporary failure; a delay is never hard."""
    temporary = "4" + code[1:]
    assert classify(temporary, None, "failed") == "soft"
    assert classify(temporary, None, "delayed") == "soft"
    assert classify(code, None, "delayed") == "soft"


@pytest.mark.parametrize("code", SOFT_CODES)
def test_classify_soft_codes(code: str) -> None:
    """Mailbox full, too big, policy, the sender's own address…: soft, not the address."""
    assert classify(code, None, "failed") == "soft"
    assert classify(None, f"550 {code} rejected", "failed") == "soft"


@pytest.mark.parametrize(
    ("status", "diagnostic", "expected"),
    [
        ("5.0.0", "smtp; 550 5.1.1 <a@example.org>: Recipient address rejected", "hard"),
        ("5.0.0", "550-5.1.1 The email account that you tried to reach does not exist", "hard"),
        ("5.0.0", "smtp; 552 5.2.2 Mailbox full", "soft"),
        ("5.0.0", "550 5.7.1 Message rejected as spam", "soft"),
        ("5.0.0", "smtp; 550 5.0.0 5.4.4 unrouteable address", "hard"),
        # a code of another class says nothing about this failure
        ("5.0.0", "smtp; 450 4.1.1 try later", "soft"),
        ("4.0.0", "smtp; 550 5.1.1 user unknown", "soft"),
        # only X.0.0 is refined: a specific status is what the MTA decided
        ("5.7.1", "550 5.1.1 user unknown", "soft"),
        ("5.1.1", "550 5.7.1 blocked", "hard"),
        # no status: the first specific code of the diagnostic
        (None, "smtp; 550 5.0.0 <a@example.org>... 5.1.1 User unknown", "hard"),
    ],
)
def test_classify_refines_x00(status: str | None, diagnostic: str, expected: str) -> None:
    """X.0.0 says nothing: Exim writes Status 5.0.0 for "550 5.1.1 …" (D14 must count it)."""
    assert classify(status, diagnostic, "failed") == expected


@pytest.mark.parametrize(
    "diagnostic",
    [
        "smtp; 550 No such user here",
        "550 User unknown",
        "550 <a@example.com>... User unknown",
        "550 Requested action not taken: mailbox unavailable",
        "550 Unknown recipient",
        "550 Address does not exist",
        "550 The mailbox doesn't exist",
        "551 no such mailbox",
        "553 Invalid recipient a@example.com",
        "550 sorry, no mailbox here by that name. (#5.1.1)",
        "550 Usuário desconhecido",
        "550 usuario inexistente",
        "550 Caixa postal inexistente",
        "550 Conta inexistente",
        "550 O endereço não existe",
        "550 destinatário desconhecido",
        "550 E-mail inválido",
        "550 Usuario desconocido",
        # Yahoo answers 554 for an address that does not exist
        "554 delivery error: dd This user doesn't have a yahoo.com account "
        "(someone@yahoo.com) [0] - mta1234.mail.bf1.yahoo.com",
    ],
)
def test_classify_550_wording_is_hard(diagnostic: str) -> None:
    """Without an informative code, 550/551/553/554 worded as an unknown user (English,
    Portuguese, Spanish) is hard."""
    assert classify(None, diagnostic, "failed") == "hard"
    assert classify("5.0.0", diagnostic, "failed") == "hard"
    assert classify(None, diagnostic, "unknown") == "hard"


@pytest.mark.parametrize(
    "diagnostic",
    [
        # not 550/551/553
        "552 user unknown",
        "450 user unknown",
        # 550 but not about the address
        "550 Message rejected",
        "554 Transaction failed: spam message rejected",
        "554 5.7.1 Service unavailable; client host blocked",
        "550 Relaying denied",
        "550 Service unavailable",
        "550 Mensagem recusada",
    ],
)
def test_classify_other_failures_are_soft(diagnostic: str) -> None:
    assert classify(None, diagnostic, "failed") == "soft"


@pytest.mark.parametrize(
    ("status", "diagnostic"),
    [
        ("5.1.0", "550 5.1.0 <b@bounce.example.com>: Sender address rejected: User unknown"),
        ("5.1.1", "550 5.1.1 <b@bounce.example.com>: Sender address rejected: User unknown"),
        (None, "550 5.1.0 <b@bounce.example.com>: Sender address rejected: User unknown"),
        (None, "550 Sender address rejected: User unknown in local recipient table"),
        (None, "553 5.1.8 <b@bounce.example.com>... Domain of sender address does not exist"),
        ("5.1.1", "550 5.1.1 Sender verify failed"),
        ("5.1.1", "550 5.1.1 Rejected sender: no such user"),
        (None, "550 MAIL FROM rejected: no such user"),
        (None, "550 Return-Path does not exist"),
        (None, "550 remetente inexistente: usuário desconhecido"),
        ("5.1.7", "550 5.1.7 Invalid address"),
        ("5.1.8", "553 5.1.8 Bad sender address domain"),
    ],
)
def test_classify_sender_blame_is_never_hard(status: str | None, diagnostic: str) -> None:
    """A text that blames our own envelope sender does not make the recipient's address bad
    (D14 would pause the account and D4 suppress good addresses otherwise)."""
    assert classify(status, diagnostic, "failed") == "soft"


@pytest.mark.parametrize(
    "diagnostic",
    [
        "550 Recipient address rejected: Access denied",
        "550 user unknown or blocked by policy",
        "550 High probability of spam; mailbox unavailable",
        "550 Mailbox unavailable: rate limit exceeded",
        "550 Address rejected: try again later",
        "550 no such user (message size exceeds limit)",
        "550 mailbox unavailable - listed in an RBL",
        "550 Invalid recipient: DMARC policy reject",
        "550 usuário desconhecido ou caixa postal cheia",
        "550 caixa postal inexistente ou bloqueada",
        "550 endereço inválido: limite de envio excedido",
        "550 5.0.0 mailbox unavailable, quota exceeded",
    ],
)
def test_classify_policy_wording_is_not_hard(diagnostic: str) -> None:
    """The wording rule ignores texts that also speak of policy, spam, quota or size."""
    assert classify(None, diagnostic, "failed") == "soft"


@pytest.mark.parametrize(
    ("status", "diagnostic", "action"),
    [
        ("4.4.1", "connect to mx.example.org: Connection timed out", "delayed"),
        ("4.2.2", "452 4.2.2 Mailbox full", "delayed"),
        ("4.7.1", "451 4.7.1 Greylisted, try again later", "failed"),
        ("4.1.1", "450 4.1.1 user unknown", "failed"),
        (None, "421 4.7.0 Try again later", "unknown"),
        (None, "450 mailbox unavailable", "unknown"),
        (None, "550 5.1.1 user unknown", "delayed"),
        ("5.1.1", "550 5.1.1 user unknown", "delayed"),
    ],
)
def test_classify_temporary_is_soft(status: str | None, diagnostic: str, action: str) -> None:
    """4.x.x and every delay are soft: the address may work tomorrow."""
    assert classify(status, diagnostic, action) == "soft"


@pytest.mark.parametrize(
    ("status", "diagnostic", "action"),
    [
        ("2.0.0", "250 2.0.0 Ok: queued as 4ZkR", "delivered"),
        ("2.0.0", "delivered to mailbox", "Delivered"),
        ("2.1.5", None, "relayed"),
        ("2.0.0", None, "expanded"),
        ("5.1.1", "550 5.1.1 user unknown", "delivered"),
        ("5.1.1", "550 5.1.1 user unknown", "complaint"),
        (None, None, "complaint"),
        (None, None, "unknown"),
        ("2.0.0", None, "unknown"),
        (None, "250 OK", "unknown"),
    ],
)
def test_classify_done_is_none(status: str | None, diagnostic: str | None, action: str) -> None:
    """Delivered, relayed, expanded and complaints have no severity (a complaint is counted as
    a complaint by D14, never as a bounce)."""
    assert classify(status, diagnostic, action) == "none"


def test_classify_odd_inputs() -> None:
    """Statuses as MTAs write them, and nonsense, never raise."""
    assert classify("5.01.001", None, "failed") == "hard"
    assert classify(" 5.1.1 (user unknown)", None, "failed") == "hard"
    assert classify("2.0.0", None, "failed") == "soft"
    assert classify(None, None, "failed") == "soft"
    assert classify("", "", "") == "none"
    assert classify("9.9.9", "x" * 1_000_000, "failed") == "soft"
    assert classify("5.1.1", None, "FAILED ") == "hard"


_HARD_TEXT = st.sampled_from(
    [
        "550 5.1.1 user unknown",
        "550 No such user",
        "550 usuário desconhecido",
        "5.1.10 RecipientNotFound",
        "553 invalid recipient",
        "",
    ]
)


@settings(max_examples=300, deadline=None)
@given(
    status=st.one_of(st.none(), st.text(max_size=20), st.sampled_from(HARD_CODES + SOFT_CODES)),
    diagnostic=st.one_of(st.none(), st.text(max_size=200), _HARD_TEXT),
    action=st.one_of(st.text(max_size=12), st.sampled_from(sorted(ACTIONS))),
)
def test_classify_never_raises(status: str | None, diagnostic: str | None, action: str) -> None:
    assert classify(status, diagnostic, action) in SEVERITIES


@settings(max_examples=200, deadline=None)
@given(
    status=st.one_of(st.none(), st.sampled_from(HARD_CODES)),
    before=st.text(max_size=30),
    blame=st.sampled_from(
        [
            "Sender address rejected: User unknown",
            "sender verify failed",
            "MAIL FROM: no such user",
            "Rejected sender: user unknown",
            "remetente desconhecido",
        ]
    ),
    after=st.text(max_size=30),
)
def test_classify_sender_blame_property(
    status: str | None, before: str, blame: str, after: str
) -> None:
    """Whatever surrounds it, a sender-blaming text is never hard (D14)."""
    assert classify(status, f"550 {before} {blame} {after}", "failed") != "hard"


@settings(max_examples=200, deadline=None)
@given(
    status=st.from_regex(r"4\.\d{1,3}\.\d{1,3}", fullmatch=True),
    diagnostic=st.one_of(st.none(), st.text(max_size=100), _HARD_TEXT),
    action=st.sampled_from(["failed", "delayed", "unknown", ""]),
)
def test_classify_temporary_status_is_never_hard(
    status: str, diagnostic: str | None, action: str
) -> None:
    assert classify(status, diagnostic, action) != "hard"


# --- never raises, bounded, fast ----------------------------------------------------------------


def assert_bounded(report: Report) -> None:
    """Every field of a report has a known shape and a maximum size."""
    assert isinstance(report, Report)
    assert report.kind in KINDS
    assert len(report.recipients) <= MAX_RECIPIENTS
    for r in report.recipients:
        assert r.address is None or 0 < len(r.address) <= MAX_ADDRESS
        assert r.diagnostic is None or 0 < len(r.diagnostic) <= MAX_DIAGNOSTIC
        assert r.status is None or STATUS.fullmatch(r.status)
        assert r.action in ACTIONS
        assert r.severity in SEVERITIES
        assert r.severity == classify(r.status, r.diagnostic, r.action)
        for text in (r.address, r.diagnostic):
            assert text is None or not CONTROL.search(text)
    assert len(report.envelope_addresses) <= MAX_ENVELOPE
    assert len({a.lower() for a in report.envelope_addresses}) == len(report.envelope_addresses)
    for address in report.envelope_addresses:
        assert 0 < len(address) <= MAX_ADDRESS and not CONTROL.search(address)
    for text in (report.original_message_id, report.reporter, report.subject):
        assert text is None or (0 < len(text) <= MAX_FIELD and not CONTROL.search(text))
    assert report.feedback_type is None or 0 < len(report.feedback_type) <= 64
    if report.original_message_id is not None:
        assert report.original_message_id.startswith("<")
        assert report.original_message_id.endswith(">")
    if report.kind in ("complaint", "feedback", "delivered"):
        assert all(r.severity == "none" for r in report.recipients)
    if report.kind == "auto-reply":
        assert report.recipients == ()
    if report.kind == "bounce":
        assert any(r.action == "failed" for r in report.recipients)
    if report.kind == "delay":
        assert any(r.action == "delayed" for r in report.recipients)


def parse_checked(raw: bytes, budget: float = 2.0) -> Report:
    """Parse ``raw``: a bounded report, the same for the same bytes, at a bounded cost.

    The cost is this thread's CPU time, which the rest of a busy machine does not inflate
    (wall-clock time would), and the budget is far above what a linear parse needs (the
    slowest case here takes ~0.3 s; `make bench` prints each one, bench_bounces.py): it
    catches a parse gone super-linear (quadratic on 20 MB runs for hours), not a slow CPU.
    """
    started = time.thread_time()
    report = parse_report(raw)
    spent = time.thread_time() - started
    assert spent < budget, f"{spent:.2f} s of CPU time for {len(raw)} bytes"
    assert_bounded(report)
    assert parse_report(raw) == report  # the same bytes, the same report
    return report


SAMPLES = [load(name) for name in sorted(CASES)]


def test_not_bytes_and_empty() -> None:
    """Whatever the poller hands over, a Report comes back."""
    for raw in (b"", b"\n", b"\r\n\r\n", b"\x00" * 100, bytearray(SAMPLES[0])):
        parse_checked(bytes(raw))
    assert parse_report(bytearray(load("ses-dsn.eml"))).kind == "bounce"
    assert parse_report(memoryview(load("ses-dsn.eml"))).kind == "bounce"  # type: ignore[arg-type]
    for odd in (None, "Subject: x\n\nhello", 42, [b"x"]):
        assert parse_report(odd) == UNKNOWN  # type: ignore[arg-type]


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=4096))
def test_fuzz_arbitrary_bytes(raw: bytes) -> None:
    """Garbage in the bounce mailbox: a report (unknown), never an exception."""
    parse_checked(raw)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=3000))
def test_fuzz_arbitrary_text(text: str) -> None:
    parse_checked(text.encode("utf-8", "surrogatepass"))


@st.composite
def mutated_samples(draw: st.DrawFn) -> bytes:
    """A corpus sample with bytes flipped, inserted, deleted, repeated, or cut short."""
    data = bytearray(draw(st.sampled_from(SAMPLES)))
    for _ in range(draw(st.integers(1, 8))):
        if not data:
            break
        at = draw(st.integers(0, len(data) - 1))
        op = draw(st.sampled_from(["flip", "byte", "insert", "delete", "repeat", "truncate"]))
        if op == "flip":
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif op == "byte":
            data[at] = draw(st.sampled_from(b'\x00\r\n\t :;<>=-"\\\xff\x80'))
        elif op == "insert":
            data[at:at] = draw(
                st.one_of(
                    st.binary(max_size=64),
                    st.sampled_from(
                        [
                            b"\n\n",
                            b"\n--",
                            b"Content-Type: message/delivery-status\n\n",
                            b'Content-Type: multipart/mixed; boundary=""\n',
                            b"Content-Transfer-Encoding: base64\n",
                            b"=?utf-8?b?////?=",
                            b"=?x-bogus?q?=FF?=",
                            b"Status: 5.1.1\nAction: failed\n",
                            b"Final-Recipient: rfc822;\n",
                            b"\n\t\t\t\t",
                        ]
                    ),
                )
            )
        elif op == "delete":
            del data[at : at + draw(st.integers(1, 200))]
        elif op == "repeat":
            chunk = data[at : at + draw(st.integers(1, 300))]
            data[at:at] = chunk * draw(st.integers(1, 20))
        else:
            del data[at:]
    return bytes(data)


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_samples())
def test_fuzz_mutated_corpus(raw: bytes) -> None:
    """Corpus samples damaged in transit or by a broken MTA still give a bounded report."""
    parse_checked(raw)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from(SAMPLES),
    st.sampled_from(SAMPLES),
    st.floats(0, 1),
    st.floats(0, 1),
    st.booleans(),
)
def test_fuzz_spliced_corpus(a: bytes, b: bytes, cut_a: float, cut_b: float, insert: bool) -> None:
    """The head of one report on the tail of another (or one inside the other)."""
    i, j = int(len(a) * cut_a), int(len(b) * cut_b)
    raw = a[:i] + b[j:] + (a[i:] if insert else b"")
    parse_checked(raw)


_CONTENT_TYPES = [
    "text/plain",
    "text/html",
    "message/delivery-status",
    "message/global-delivery-status",
    "text/delivery-status",
    "message/feedback-report",
    "text/rfc822-headers",
    "message/rfc822",
    "message/global",
    "application/octet-stream",
    "image/png",
    "multipart/report",
    "multipart/mixed",
    "multipart/alternative",
    "multipart/related",
]
_LEAF_TYPES = [t for t in _CONTENT_TYPES if not t.startswith("multipart/") and t[-6:] != "rfc822"]
_CHARSETS = [
    "utf-8",
    "iso-8859-1",
    "windows-1252",
    "us-ascii",
    "utf-16",
    "utf-7",
    "gb2312",
    "x-unknown",
    "no-such-charset",
    "",
]
_ENCODINGS = ["7bit", "8bit", "binary", "base64", "quoted-printable", "x-uuencode", "bogus"]
_HEADERS = [
    "From",
    "To",
    "Subject",
    "Return-Path",
    "Message-ID",
    "In-Reply-To",
    "References",
    "Auto-Submitted",
    "Precedence",
    "X-Autoreply",
    "Delivered-To",
    "X-Original-To",
    "Envelope-To",
    "X-HmXmrOriginalRecipient",
    "X-Failed-Recipients",
    "Content-Description",
]
_HEADER_VALUES = [
    "MAILER-DAEMON@example.net (Mail Delivery System)",
    "<>",
    "staff@hotmail.example",
    "auto-replied",
    "auto_reply",
    "Undelivered Mail Returned to Sender",
    "Resposta automática: Black Friday",
    "complaint about message from 192.0.2.45",
    "=?utf-8?q?Mensagem_n=C3=A3o_entregue?=",
    "=?bogus?b?////?=",
    f"<{verp(4201)}>",
    message_id(4201),
    "<" * 300,
]
_LINES = [
    "Reporting-MTA: dns; mx.example.net",
    "Final-Recipient: rfc822; a@example.com",
    "Original-Recipient: rfc822;<b@example.org>",
    "Action: failed",
    "Action: delayed",
    "Action: delivered",
    "Status: 5.1.1",
    "Status: 5.0.0",
    "Status: 4.4.1",
    "Diagnostic-Code: smtp; 550 5.1.1 user unknown",
    "Diagnostic-Code: smtp; 550-5.7.1 blocked",
    "    continued diagnostic",
    "Feedback-Type: abuse",
    "Feedback-Type: not-spam",
    "Original-Rcpt-To: <c@example.net>",
    "Original-Mail-From: <bounces+b-1-00@bounce.example.com>",
    "Message-ID: <m-1-00@disparo.example.com>",
    "<d@example.com>: host mx said: 550 5.1.1 User unknown",
    "The following address(es) failed:",
    "  e@example.com",
    "Hi. This is the qmail-send program at example.net.",
    "This message was created automatically by mail delivery software.",
    "Sua mensagem não pôde ser entregue aos seguintes destinatários:",
    "Your message wasn't delivered to f@example.com because the address couldn't be found",
    "--- Below this line is a copy of the message.",
    "Mensagem original",
    "",
    "<b>html</b><br><p>paragraph</p>&amp;&#0;&#xffffff;",
]


def _encode_body(text: str, charset: str, encoding: str) -> str:
    """The body as it travels: charset bytes, transfer-encoded, held as surrogate escapes."""
    try:
        data = text.encode(charset or "utf-8", "replace")
    except LookupError:
        data = text.encode("utf-8", "surrogatepass")
    if encoding == "base64":
        data = base64.encodebytes(data)
    elif encoding == "quoted-printable":
        data = quopri.encodestring(data)
    return data.decode("ascii", "surrogateescape")


@st.composite
def mime_trees(draw: st.DrawFn, depth: int = 0) -> EmailMessage:
    """A random MIME tree: random headers, content types, charsets, encodings, nesting."""
    part = EmailMessage()
    for name in draw(st.lists(st.sampled_from(_HEADERS), max_size=5)):
        value = draw(st.one_of(st.sampled_from(_HEADER_VALUES), st.text(max_size=40)))
        try:
            part[name] = value
        except Exception:  # the email package refuses some values: leave them out
            continue
    types = _CONTENT_TYPES if depth < 3 else _LEAF_TYPES
    ctype = draw(st.sampled_from(types))
    if ctype.startswith("multipart/"):
        report_type = draw(st.sampled_from(["", "delivery-status", "feedback-report", "x"]))
        boundary = draw(st.sampled_from(["b", "=_b", "b b", "", "--", "4ZkR.179/mx.example"]))
        params = f'; boundary="{boundary}"' + (f"; report-type={report_type}" * bool(report_type))
        part["Content-Type"] = ctype + params
        part.set_payload(draw(st.lists(mime_trees(depth + 1), max_size=4)))
    elif ctype in ("message/rfc822", "message/global"):
        part["Content-Type"] = ctype
        part.set_payload([draw(mime_trees(depth + 1))])
    else:
        charset = draw(st.sampled_from(_CHARSETS))
        encoding = draw(st.sampled_from(_ENCODINGS))
        lines = draw(
            st.lists(st.one_of(st.sampled_from(_LINES), st.text(max_size=60)), max_size=10)
        )
        newline = draw(st.sampled_from(["\n", "\r\n", "\r"]))
        part["Content-Type"] = f'{ctype}; charset="{charset}"' if charset else ctype
        part["Content-Transfer-Encoding"] = encoding
        part.set_payload(_encode_body(newline.join(lines), charset, encoding))
    return part


def _serialise(part: Message, closed: bool = True) -> bytes:
    """The tree as bytes. Written by hand: the email package's generator wants report parts
    split into blocks, and a fuzz tree should keep whatever boundary it was given."""
    head = "".join(f"{name}: {value}\n" for name, value in part.items())
    payload = part.get_payload()
    if isinstance(payload, list) and part.get_content_maintype() == "multipart":
        boundary = (part.get_boundary() or "").encode("utf-8", "surrogateescape")
        body = b"preamble\n" + b"".join(
            b"--" + boundary + b"\n" + _serialise(child, closed) + b"\n" for child in payload
        )
        body += b"--" + boundary + b"--\n" if closed else b""
    elif isinstance(payload, list):
        body = b"".join(_serialise(child, closed) for child in payload)
    else:
        body = str(payload).encode("utf-8", "surrogateescape")
    return head.encode("utf-8", "surrogateescape") + b"\n" + body


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(mime_trees(), st.booleans(), st.floats(0, 1), st.booleans())
def test_fuzz_random_mime_trees(
    msg: EmailMessage, closed: bool, cut: float, truncate: bool
) -> None:
    """Random MIME trees (nested message/rfc822, report parts in the wrong places, unknown
    charsets and transfer encodings), whole or cut short: bounded reports, no exception."""
    raw = _serialise(msg, closed)
    if truncate:
        raw = raw[: int(len(raw) * cut)]
    parse_checked(raw)


# --- huge and pathological messages -------------------------------------------------------------

HUGE = 20 * 1024 * 1024


def huge_returned_message() -> tuple[bytes, bytes]:
    """A DSN, and the same DSN whose returned original carries a 20 MB attachment."""
    raw = load("postfix-user-unknown.eml")
    cut = raw.rindex(b"\n--4ZkR2l6VbNz9sTq")
    padding = (b"QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWZnaGlqa2xtbm9wcXJzdHV2d3h5\n") * (
        HUGE // 69
    )
    return raw, raw[:cut] + b"\n" + padding + raw[cut:]


def test_huge_returned_message_is_parsed_in_bounded_time() -> None:
    """A DSN whose returned original carries a 20 MB attachment: the report parts come first,
    so the bounce is still read (D14 counts it), in bounded time."""
    raw, huge = huge_returned_message()
    assert len(huge) > HUGE
    report = parse_checked(huge, budget=5.0)
    assert report == parse_report(raw)


#: whatever their size and shape, these cost bounded time (bench_bounces.py times them)
PATHOLOGICAL = [
    pytest.param(b"Subject: " + b"x" * HUGE, id="one-20MB-header-line"),
    pytest.param(b"Subject: x\n\n" + b"a" * HUGE, id="one-20MB-body-line"),
    pytest.param(
        b"From: MAILER-DAEMON@example.net\nSubject: Undelivered Mail Returned to Sender\n\n"
        + b"Delivery has failed to these recipients or groups:\n\n"
        + b"".join(
            b"<user%d@example.com>: host mx said: 550 5.1.1 User unknown\n\n" % i
            for i in range(HUGE // 60)
        ),
        id="350k-bracketed-recipients",
    ),
    pytest.param(
        b"Content-Type: multipart/report; report-type=delivery-status; boundary=b\n\n"
        + b"--b\nContent-Type: message/delivery-status\n\nReporting-MTA: dns; x\n\n"
        + b"Final-Recipient: rfc822; a@example.com\nAction: failed\nStatus: 5.1.1\n\n"
        * (HUGE // 70),
        id="a-report-with-300k-recipients",
    ),
    pytest.param(
        b"".join(
            b"Content-Type: multipart/mixed; boundary=b%d\n\n--b%d\n" % (i, i)
            for i in range(100_000)
        ),
        id="100k-nested-multiparts",
    ),
    pytest.param(
        b"Content-Type: multipart/mixed; boundary=b\n\n"
        + b"--b\nContent-Type: text/plain\n\nmessage not delivered to a@example.com\n" * 200_000,
        id="200k-sibling-parts",
    ),
    pytest.param(b"<" * HUGE, id="20MB-of-angle-brackets"),
    pytest.param(b"Received: " + b"5.1.1 550 " * (HUGE // 10), id="20MB-of-codes"),
    pytest.param(
        b"Subject: x\n\n" + b"a@" * (HUGE // 2) + b"example.com", id="20MB-address-prefix"
    ),
    pytest.param(b"\n" * HUGE, id="20MB-of-newlines"),
]


@pytest.mark.parametrize("raw", PATHOLOGICAL)
def test_pathological_messages_are_parsed_in_bounded_time(raw: bytes) -> None:
    """Whatever size and shape, a message costs bounded time and gives a bounded report."""
    parse_checked(raw, budget=5.0)
