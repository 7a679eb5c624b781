"""Signed tokens (engine.tokens): HMAC-SHA256 as RFC 2104 defines it, whatever the key's
length, checked in constant time; a token for one purpose or one id never verifies for
another."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from engine.tokens import MAC_LENGTH, Signer


@pytest.mark.parametrize("length", [16, 32, 63, 64, 65, 128, 300])
def test_tokens_carry_the_standard_hmac_of_kind_and_ids(length: int) -> None:
    """The signer's MAC (two SHA-256 states keyed once) is hmac.new(key, "kind:ids",
    sha256), its first MAC_LENGTH hex digits: tokens made before stay valid."""
    key = bytes((7 * i + length) % 256 for i in range(length))
    signer = Signer(key)
    for kind, ids in (("o", (5,)), ("c", (1, 22, 3)), ("m", (10**12,)), ("u", (0,))):
        joined = ".".join(map(str, ids))
        mac = hmac.new(key, f"{kind}:{joined}".encode(), hashlib.sha256).hexdigest()
        token = signer.sign(kind, *ids)
        assert token == f"{kind}-{joined}-{mac[:MAC_LENGTH]}"
        assert signer.verify(kind, token) == ids
        assert signer.verify(kind, token.upper()) == ids  # a mail system upper-cased it


def test_tampered_foreign_or_malformed_tokens_do_not_verify() -> None:
    signer = Signer("k" * 32)
    token = signer.sign("c", 1, 22, 3)
    last = token[-1]
    assert signer.verify("c", token[:-1] + ("0" if last != "0" else "1")) is None
    assert signer.verify("o", token) is None  # another purpose
    assert signer.verify("c", token.replace(".22.", ".23.")) is None  # another delivery
    assert Signer("x" * 32).verify("c", token) is None  # another secret
    for bad in ("", "c-1-", "c--" + "0" * MAC_LENGTH, "c-1.x-" + "0" * MAC_LENGTH, token + "0"):
        assert signer.verify("c", bad) is None, bad
    with pytest.raises(ValueError, match="16 bytes"):
        Signer("short")
