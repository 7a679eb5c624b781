"""Address hygiene (N26): phones to E.164 with ``phonenumbers``, e-mails with ``email-validator``.

Domain validation is the expensive part of e-mail checking (IDNA, length and label rules);
it is cached per domain, while every local part is still checked by the library. Measured
on the 2-core machine: full ``validate_email`` ~55,000/s, with the domain cache ~265,000/s.

Fast paths (issue 16, goal 4): the common shapes are decided without the libraries' parsers,
with results identical to theirs (a property test compares both on generated inputs):

- an e-mail whose local part is plain ASCII (RFC 5322 dot-atom, as the library's own first
  check) and whose domain is ASCII: the local part is what the library returns, the domain
  goes through the same per-domain cache;
- a Brazilian phone written with digits, spaces, ``()``, ``-`` and ``.`` only (``+55`` in
  front or not), whose national number has 10 or 11 digits: ``phonenumbers.parse`` would
  find exactly that national number, so only its type is asked (~3 µs instead of ~20).

Anything else, and every address the fast path would refuse, takes the full path (the
error messages are the libraries').
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache
from typing import NamedTuple

# phonenumbers and email_validator are imported where a number or an address is checked:
# a command that checks none (``disparo campaigns``…) starts without them (issue 16, goal 7)

DEFAULT_REGION = "BR"
_NOT_DIGITS = re.compile(r"[^0-9+]")
_NOT_ASCII_DIGITS = re.compile(r"[^0-9]")
#: a phone written with ASCII digits and `()-. ` only, maybe after `+55` (the fast path)
_PLAIN_PHONE = re.compile(r"(\+55)?[0-9 ().\-]{10,30}")
#: email_validator's ATEXT: the local part's dot-atom, and an ASCII domain (the fast path)
_ATEXT = r"a-zA-Z0-9_!#$%&'*+\-/=?^`{|}~"
_PLAIN_EMAIL = re.compile(rf"([{_ATEXT}]+(?:\.[{_ATEXT}]+)*)@([a-zA-Z0-9.\-]+)")


class Checked(NamedTuple):
    """The normalised address, or why it is not usable (English and Portuguese)."""

    value: str | None
    error: str | None = None
    error_pt: str | None = None
    code: str | None = None

    @property
    def ok(self) -> bool:
        return self.value is not None


def phone_identity(value: str) -> str:
    """A light normalisation for identities without hygiene: digits (and a leading +)."""
    digits = _NOT_DIGITS.sub("", value)
    return digits


def _br_national_number(text: str) -> str | None:
    """The national number ``phonenumbers.parse(text, "BR")`` finds, for the shapes where it
    is just the digits (after ``+55``): 10 or 11 of them, not starting with ``0`` or ``90``
    (the national and carrier prefixes) nor, without ``+55``, with ``55`` (the country code
    the parser may strip). None: let the parser decide."""
    match = _PLAIN_PHONE.fullmatch(text)
    if match is None:
        return None
    plus = match.group(1) is not None
    digits = _NOT_ASCII_DIGITS.sub("", text[3:] if plus else text)
    if len(digits) not in (10, 11) or digits[0] == "0" or digits.startswith("90"):
        return None
    if not plus and digits.startswith("55"):
        return None
    return digits


def normalise_phone(value: str, *, mobile: bool = False, region: str = DEFAULT_REGION) -> Checked:
    """E.164 for ``value`` (national numbers in ``region``); ``mobile`` requires a mobile number."""
    import phonenumbers

    text = value.strip()
    national = _br_national_number(text) if region == "BR" else None
    if national is not None:
        number = phonenumbers.PhoneNumber(country_code=55, national_number=int(national))
        kind = phonenumbers.number_type(number)
        if kind != phonenumbers.PhoneNumberType.UNKNOWN and (not mobile or kind in _MOBILE):
            return Checked("+55" + national)
    return _normalise_phone(text, mobile=mobile, region=region)


def _normalise_phone(text: str, *, mobile: bool, region: str) -> Checked:
    """``normalise_phone`` by ``phonenumbers.parse`` (the full path)."""
    import phonenumbers

    if not text:
        return Checked(None, "the phone is empty", "o telefone está vazio", "missing-address")
    try:
        number = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException:
        return Checked(
            None,
            f"`{text}` is not a phone number",
            f"`{text}` não é um número de telefone",
            "bad-phone",
        )
    # number_type() is UNKNOWN exactly when is_valid_number() is False (both match the
    # number against its region's patterns): one pass instead of two, ~3 µs a number
    kind = phonenumbers.number_type(number)
    if kind == phonenumbers.PhoneNumberType.UNKNOWN:
        return Checked(
            None,
            f"`{text}` is not a valid phone number (check the area code and the digits)",
            f"`{text}` não é um número de telefone válido (confira o DDD e os dígitos)",
            "bad-phone",
        )
    if mobile and kind not in _MOBILE:
        return Checked(
            None,
            f"`{text}` is not a mobile number; SMS and WhatsApp need a mobile",
            f"`{text}` não é um celular; SMS e WhatsApp precisam de celular",
            "not-mobile",
        )
    return Checked(phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164))


#: phonenumbers.PhoneNumberType.MOBILE and FIXED_LINE_OR_MOBILE (their values, so that this
#: module imports without phonenumbers)
_MOBILE = (1, 2)


@lru_cache(maxsize=200_000)
def _domain(domain: str) -> tuple[str, str | None]:
    """(normalised domain, error) for a domain, validated once."""
    from email_validator import EmailNotValidError
    from email_validator.syntax import validate_email_domain_name

    try:
        info = validate_email_domain_name(domain, test_environment=False, globally_deliverable=True)
    except EmailNotValidError as exc:
        return "", str(exc)
    return str(info["domain"]), None


def normalise_email(value: str) -> Checked:
    """The normalised address (library normalisation, domain lower-cased), or why not."""
    text = value.strip()
    plain = _PLAIN_EMAIL.fullmatch(text)
    if plain is not None:
        local, domain = plain.groups()
        normal_domain, problem = _domain(domain)
        normalized = f"{local}@{normal_domain}"
        if problem is None and len(local) <= 64 and len(normalized.encode("utf-8")) <= 254:
            return Checked(normalized)
    return _normalise_email(text)


def _normalise_email(text: str) -> Checked:
    """``normalise_email`` by email-validator's parser (the full path)."""
    from email_validator import EmailNotValidError, validate_email
    from email_validator.syntax import split_email, validate_email_local_part

    if not text:
        return Checked(None, "the e-mail is empty", "o e-mail está vazio", "missing-address")
    try:
        display, _original, local, quoted, domain = split_email(text)
        if display or quoted or domain.startswith("["):
            # rare shapes: let the full validator decide (and refuse what it refuses)
            full = validate_email(text, check_deliverability=False)
            return Checked(full.normalized)
        local_info = validate_email_local_part(local, allow_smtputf8=True)
        nfc = unicodedata.normalize("NFC", local)
        if nfc != local:
            local_info = validate_email_local_part(nfc, allow_smtputf8=True)
        normal_domain, problem = _domain(domain)
        if problem:
            raise EmailNotValidError(problem)
        normalized = f"{local_info['local_part']}@{normal_domain}"
        if len(local) > 64 or len(normalized.encode("utf-8")) > 254:
            full = validate_email(text, check_deliverability=False)  # the library's length rules
            normalized = full.normalized
        return Checked(normalized)
    except EmailNotValidError as exc:
        why = str(exc).rstrip(".")
        return Checked(
            None,
            f"`{text}` is not a valid e-mail address ({why})",
            f"`{text}` não é um endereço de e-mail válido ({why})",
            "bad-email",
        )


def email_identity(value: str) -> str:
    """The address as an identity: trimmed and lower-cased."""
    return value.strip().lower()


def suppression_key(kind: str, address: str) -> str:
    """How an address is stored and matched in suppressions: e-mails lower-cased (mailbox
    names are case-insensitive in practice), phones in E.164 as given."""
    return address.strip().lower() if kind == "email" else address.strip()
