"""Signed tokens (HMAC-SHA256) for everything that comes back from outside: tracking links, the
one-click unsubscribe, the VERP bounce address, the Message-ID.

A token names what it is for (``kind``) and carries ids, e.g. ``c-12345.3-<mac>`` for link 3 of
delivery 12345. The MAC covers the kind and the ids, so a token for one purpose or one
delivery never works for another; it is lower-case hex, so it survives mail systems that
lower-case the local part of an address. Checking is constant-time (``hmac.compare_digest``).
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Iterable
from typing import Any

#: hex characters of the MAC kept in a token: 80 bits, far beyond guessing
MAC_LENGTH = 20
_KINDS = frozenset("abcdefghijklmnopqrstuvwxyz")
_TOKEN = re.compile(rf"([a-z])-([0-9]+(?:\.[0-9]+)*)-([0-9a-f]{{{MAC_LENGTH}}})")


class Signer:
    """Makes and checks tokens with one secret."""

    def __init__(self, secret: str | bytes) -> None:
        key = secret.encode() if isinstance(secret, str) else secret
        if len(key) < 16:
            raise ValueError("the signing secret must be at least 16 bytes")
        self._key = key
        keyed = hmac.new(key, digestmod=hashlib.sha256)
        # the OpenSSL HMAC object inside (when there is one): copied, fed and read in C,
        # without hmac.HMAC's Python wrapper around each call (five tokens per e-mail); the
        # same MAC either way
        self._keyed: Any = getattr(keyed, "_hmac", None) or keyed

    def _mac(self, kind: str, ids: str) -> str:
        # a copy of the keyed HMAC (its key schedule done once): cheaper than hmac.new() per
        # token, and a message carries four or five tokens
        mac = self._keyed.copy()
        mac.update(f"{kind}:{ids}".encode())
        digest: str = mac.hexdigest()
        return digest[:MAC_LENGTH]

    def sign(self, kind: str, *ids: int) -> str:
        """A token for ``ids`` (non-negative integers) used as ``kind`` (one letter)."""
        one = len(ids) == 1  # four of an e-mail's five tokens: no min() and join for them
        if kind not in _KINDS or not ids or (ids[0] if one else min(ids)) < 0:
            raise ValueError("kind is one lower-case letter; ids are non-negative integers")
        joined = str(ids[0]) if one else ".".join(map(str, ids))
        mac = self._keyed.copy()
        mac.update(f"{kind}:{joined}".encode())
        return f"{kind}-{joined}-{mac.hexdigest()[:MAC_LENGTH]}"

    def verify(self, kind: str, token: str) -> tuple[int, ...] | None:
        """The ids of a genuine ``kind`` token, else None (tampered, unknown or malformed)."""
        match = _TOKEN.fullmatch(token.lower())
        if match is None:
            return None
        named, joined, mac = match.groups()
        if named != kind or not hmac.compare_digest(mac, self._mac(kind, joined)):
            return None
        # one id (an open, an unsubscribe, a bounce): no split
        return (int(joined),) if "." not in joined else tuple(map(int, joined.split(".")))

    def message_id(self, delivery_id: int, domain: str) -> str:
        """A stable Message-ID for a delivery (D12: a duplicate after a crash carries the same)."""
        return f"<{self.sign('m', delivery_id)}@{domain}>"

    def verp(self, delivery_id: int, bounce_address: str) -> str:
        """The bounce (Return-Path) address that names the delivery: ``local+b-…@domain``."""
        local, _, domain = bounce_address.rpartition("@")
        return f"{local}+{self.sign('b', delivery_id)}@{domain}"

    def delivery_from_verp(self, address: str) -> int | None:
        """The delivery a VERP bounce address names, if the address is genuine."""
        local = address.strip("<>").rpartition("@")[0]
        token = local.rpartition("+")[2]
        ids = self.verify("b", token)
        return ids[0] if ids else None

    def delivery_named(self, addresses: Iterable[str], message_id: str | None) -> int | None:
        """The delivery a report (a DSN, a complaint, an SES notification) is about: by the
        first genuine VERP address among ``addresses``, else by our signed Message-ID."""
        for address in addresses:
            found = self.delivery_from_verp(address)
            if found is not None:
                return found
        if message_id:
            ids = self.verify("m", message_id.strip().strip("<>").partition("@")[0])
            if ids:
                return ids[0]
        return None
