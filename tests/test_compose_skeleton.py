"""``EmailChannel.compose`` with the campaign's constant header lines made once (``_Skeleton``,
issue 16, goal 1) writes the bytes the header-by-header composition wrote before it — kept
below as the reference — with and without tracking, unsubscribe, Reply-To, a non-ASCII
subject and address, and a DKIM signature over the same headers."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from channels.email import (
    LINK_VARIABLE,
    OPEN_VARIABLE,
    SIGNED_HEADERS,
    EmailChannel,
    PreparedEmail,
    _header,
    _qp,
)
from engine.plugins.channel import DeliveryInfo
from tests.bench.bench_compose import NEWSLETTER, ONE_LINE, channel, deliveries, oferta


def reference(
    email: EmailChannel, prepared: PreparedEmail, delivery: DeliveryInfo, to: str
) -> tuple[str, bytes, str, list[bytes]]:
    """The composition before the skeleton (and the headers its DKIM signature covered)."""
    signer = email.context.signer
    variables = dict(delivery.variables)
    headers: list[tuple[str, str]] = [("From", prepared.from_header), ("To", to)]
    if signer is not None:
        envelope = signer.verp(delivery.id, prepared.envelope_from)
        message_id = signer.message_id(delivery.id, email.domain)
    else:
        envelope = prepared.envelope_from
        message_id = f"<disparo.{prepared.campaign_id}.{delivery.id}@{email.domain}>"
    tracking = email.context.config.tracking
    if prepared.unsubscribe and signer is not None and tracking is not None:
        url = f"{tracking.public_url}/u/{signer.sign('u', delivery.id)}"
        variables["unsubscribe_url"] = url
        headers.append(("List-Unsubscribe", f"<{url}>"))
        headers.append(("List-Unsubscribe-Post", "List-Unsubscribe=One-Click"))
    if signer is not None and tracking is not None:
        base = tracking.public_url
        if prepared.opens:
            variables[OPEN_VARIABLE] = f"{base}/o/{signer.sign('o', delivery.id)}.gif"
        for i in range(1, len(prepared.links) + 1):
            token = signer.sign("c", prepared.campaign_id, delivery.id, i)
            variables[LINK_VARIABLE.format(i)] = f"{base}/c/{token}"
    subject = prepared.subject.render(variables).strip().replace("\n", " ")
    headers += [
        ("Subject", _header(subject)),
        ("Date", email._date_header()),
        ("Message-ID", message_id),
    ]
    if prepared.reply_to:
        headers.append(("Reply-To", prepared.reply_to))
    headers.append(("Feedback-ID", f"{prepared.campaign_id}:{email.account.name}:disparo"))
    boundary = f"=_disparo_{delivery.id}"
    headers += [
        ("MIME-Version", "1.0"),
        ("Content-Type", f'multipart/alternative; boundary="{boundary}"'),
    ]
    head = "".join(f"{k}: {v}\r\n" for k, v in headers).encode("utf-8")
    part = (
        b'\r\nContent-Type: text/%s; charset="utf-8"\r\n'
        b"Content-Transfer-Encoding: quoted-printable\r\n\r\n"
    )
    b = boundary.encode()
    body = b"".join(
        [
            b"\r\n--",
            b,
            part % b"plain",
            prepared.text_part.encode(variables)
            if prepared.text_part is not None
            else _qp(prepared.text.render(variables)),
            b"\r\n--",
            b,
            part % b"html",
            prepared.html_part.encode(variables)
            if prepared.html_part is not None
            else _qp(prepared.html.render(variables)),
            b"\r\n--",
            b,
            b"--\r\n",
        ]
    )
    present = {name.lower().encode() for name, _ in headers}
    return envelope, head + body, message_id, [h for h in SIGNED_HEADERS if h in present]


def variants(prepared: PreparedEmail) -> list[PreparedEmail]:
    return [
        prepared,
        replace(prepared, reply_to="Resposta <resp@empresa.com.br>"),
        replace(prepared, unsubscribe=False, opens=False, links=()),
        replace(prepared, text_part=None, html_part=None),
    ]


@pytest.mark.parametrize("body", [ONE_LINE, NEWSLETTER])
@pytest.mark.parametrize("subject", ["Olá {{ nome }}, uma oferta", "Oferta {{ cidade }}"])
def test_compose_writes_the_bytes_it_wrote_header_by_header(
    body: str, subject: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    email = channel(tmp_path)
    campaign = oferta(subject, body)
    signed: list[Any] = []

    def sign(data: bytes, *args: Any, include_headers: list[bytes]) -> bytes:
        signed.append(include_headers)
        return b"DKIM-Signature: x\r\n"

    batch = deliveries(6)
    batch[2].variables["nome"] = "<b>Zé</b> & 'Cia'"
    for prepared in variants(email.prepare(campaign)):
        for d in batch:
            to = d.address if d.id % 2 else "joão@exemplo.com.br"
            envelope, data, message_id, headers = reference(email, prepared, d, to)
            assert email.compose(prepared, d, to) == (envelope, data, message_id)
            email._dkim_key = b"key"
            monkeypatch.setattr("dkim.sign", sign)
            assert email.compose(prepared, d, to) == (
                envelope,
                b"DKIM-Signature: x\r\n" + data,
                message_id,
            )
            assert signed.pop() == headers
            email._dkim_key = None
    without = EmailChannel(email.account, replace(email.context, signer=None))
    prepared = without.prepare(campaign)
    for d in batch:
        assert (
            without.compose(prepared, d, d.address)
            == reference(without, prepared, d, d.address)[:3]
        )
