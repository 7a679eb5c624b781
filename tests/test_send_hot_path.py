"""The e-mail hot path's shortcuts (issue 16, goal 1) give exactly what the general code gives:
templates of text and ``{{ name }}`` rendered by substitution, the DATA payload without
aiosmtplib's regular expressions, tokens from a copied keyed HMAC; and the token bucket keeps
rate + burst (D10) over a second plus a start's jitter, without lowering the sustained rate."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiosmtplib.protocol import PERIOD_REGEX, SMTPProtocol, normalize_message_line_endings
from hypothesis import given
from hypothesis import strategies as st
from markupsafe import Markup, escape

from channels.email import _dot_stuffed, _one_line_first
from engine.clock import TestClock
from engine.plugins.channel import Retry
from engine.render import Substitution, compile_html, compile_text, html_escape, substitution
from engine.sending.bucket import TokenBucket
from engine.tokens import MAC_LENGTH, Signer
from tests.test_smtp_faults import account, config_with, send_once

VALUES: list[dict[str, Any]] = [
    {"nome": "Ana", "cidade": "São Paulo"},
    {"nome": "<b>Zé</b> & 'Cia' \"x\"", "cidade": None},
    {"nome": 42, "cidade": 3.5},
    {"nome": Markup("<i>ok</i>")},
    {},
]


@pytest.mark.parametrize(
    "source",
    [
        "Olá {{ nome }}, uma oferta em {{cidade}}!",
        "<p>Olá {{ nome }}</p>\n<p>{{ cidade }}</p>\n",
        "sem variáveis\n\n",
        "{{ nome }}{{ nome }}",
        "",
    ],
)
@pytest.mark.parametrize("compile_", [compile_html, compile_text])
def test_a_template_of_text_and_names_renders_by_substitution_as_jinja_does(
    source: str, compile_: Any
) -> None:
    template = compile_(source)
    fast = substitution(template)
    assert isinstance(fast, Substitution)
    for values in VALUES:
        assert fast.render(values) == template.render(values)


@given(st.text(alphabet=st.sampled_from("&<>'\"aé\n;#3 ")) | st.text())
def test_the_plain_escape_is_markupsafes_for_every_str(value: str) -> None:
    assert html_escape(value) == str(escape(value))
    assert type(html_escape(value)) is str


@pytest.mark.parametrize(
    "source",
    [
        "Olá {{ nome | upper }}",
        "{% if nome %}Olá {{ nome }}{% endif %}",
        "{{ nome.title() }}",
        "{{ range }}",
        "{{ 'x' }}",
        "{{ nome ~ cidade }}",
        "{# a comment #}{% for x in [1] %}{{ x }}{% endfor %}",
    ],
)
def test_anything_else_stays_a_jinja_template(source: str) -> None:
    template = compile_html(source)
    assert substitution(template) is template


@pytest.mark.parametrize(
    "data",
    [
        b"Subject: x\r\n\r\nbody\r\n",
        b"Subject: x\r\n\r\nno final line end",
        b"Subject: x\n\nbare line feeds\n",
        b"Subject: x\r\rbare returns\r",
        b".starts with a dot\r\n.. and another\r\nmiddle . dot\r\n",
        b"mixed\r\n.dot\nline\rend",
        b"",
    ],
)
def test_the_data_payload_is_what_aiosmtplib_would_write(data: bytes) -> None:
    expected = PERIOD_REGEX.sub(b"..", normalize_message_line_endings(data)) + b".\r\n"
    assert _dot_stuffed(data, normalize_message_line_endings, PERIOD_REGEX) == expected


@pytest.mark.parametrize(
    "received",
    [
        b"250 2.0.0 Ok\r\n",
        b"250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n354 End data with <CR><LF>.<CR><LF>\r\n",
        b"250-PIPELINING\r\n250 SIZE 10240000\r\n",
        b"550 5.1.1 <x@y> \xc3\xa9 \xff unknown\t \r\n",
        b"250 ok",
        b"250\r\n",
        b"2x0 malformed\r\n",
        b"+25 odd\r\n",
        b"250  spaces  \n",
        b"250 " + b"x" * 9000 + b"\r\n",
        b"",
    ],
)
def test_the_one_line_reply_shortcut_parses_as_aiosmtplib_does(received: bytes) -> None:
    def outcome(parse: Any) -> Any:
        try:
            return parse()
        except Exception as exc:
            return type(exc), str(exc)

    loop = asyncio.new_event_loop()  # the protocols' (never run)
    try:
        plain, fast = SMTPProtocol(loop=loop), SMTPProtocol(loop=loop)
        plain._buffer.extend(received)
        fast._buffer.extend(received)
        shortcut = _one_line_first(fast._read_response_from_buffer, fast._buffer)
        for _ in range(4):  # each reply in turn, and what is left in the buffer
            assert outcome(shortcut) == outcome(plain._read_response_from_buffer)
            assert fast._buffer == plain._buffer
    finally:
        loop.close()


def test_tokens_are_the_hmac_they_always_were() -> None:
    signer = Signer("s" * 32)
    mac = hmac.new(b"s" * 32, b"c:12.345.3", hashlib.sha256).hexdigest()[:MAC_LENGTH]
    assert signer.sign("c", 12, 345, 3) == f"c-12.345.3-{mac}"
    assert signer.verify("c", signer.sign("c", 12, 345, 3)) == (12, 345, 3)
    for bad in ("", "ab", "A", "1"):
        with pytest.raises(ValueError, match="one lower-case letter"):
            signer.sign(bad, 1)


async def start_until(bucket: TokenBucket, clock: TestClock, starts: list[float], n: int) -> None:
    """Start as fast as ``bucket`` lets (waiting on ``clock``) until ``starts`` holds ``n``."""
    while len(starts) < n:
        wait = bucket.try_take()
        if wait == 0:
            starts.append(clock.monotonic())
        else:
            await clock.advance(wait)


def assert_at_most(starts: list[float], span: float, most: float) -> None:
    """No window of ``span`` seconds holds more than ``most`` of ``starts`` (sorted; D10)."""
    j = 0
    for i, at in enumerate(starts):
        while j < len(starts) and starts[j] < at + span - 1e-9:
            j += 1
        assert j - i <= most, f"{j - i} starts within {span} s of {at}"


@pytest.mark.parametrize(("rate", "burst"), [(10, 10), (100, 10), (20, 20), (400, 10), (0.5, 1)])
async def test_d10_the_bucket_leaves_room_for_a_start_late_on_its_way_out(
    rate: float, burst: int
) -> None:
    """Over any window of 1 s plus the slack (what a start may be late by at the provider)
    no more than rate + burst start, and the sustained rate is the configured one."""
    clock = TestClock(datetime(2026, 1, 5, 12, tzinfo=UTC))
    bucket = TokenBucket(rate, burst, clock)
    starts: list[float] = []
    total = int(rate * 20) + burst
    await start_until(bucket, clock, starts, total)
    assert_at_most(starts, bucket.span, rate + burst)
    assert bucket.span > 1.0
    # the burst at once, then the rate: as long as the bucket alone would take
    assert starts[-1] - starts[0] == pytest.approx((total - burst) / rate, abs=0.06)


@pytest.mark.parametrize("before", [5, 60, 150])
@pytest.mark.parametrize("elapsed", [0.0, 0.02, 0.2])
async def test_d10_the_slack_holds_across_a_hand_over(before: int, elapsed: float) -> None:
    """An account handed over (``TokenBucket.adopt``: the tokens the other holder left, not
    its starts) keeps the slack: no window of 1 s plus the slack holds more than rate + burst
    starts of both holders (D10). When the carried tokens were not lowered by the slack's
    refill, a holder that sent its burst then the rate for 0.5 s, followed at once by one
    continuing its tokens, put up to 114 starts in 1.05 s (rate 100, burst 10)."""
    rate, burst = 100, 10
    clock = TestClock(datetime(2026, 1, 5, 12, tzinfo=UTC))
    first = TokenBucket(rate, burst, clock)
    starts: list[float] = []
    await start_until(first, clock, starts, before)
    tokens = first.level()
    await clock.advance(elapsed)
    second = TokenBucket(rate, burst, clock)
    second.adopt(tokens, elapsed)
    await start_until(second, clock, starts, before + 3 * rate)
    assert_at_most(starts, second.span, rate + burst)
    # the sustained rate after the hand-over is the configured one
    assert starts[-1] - starts[-rate - 1] == pytest.approx(1.0, abs=0.02)


async def test_a_relay_silent_after_the_message_is_a_timeout_of_the_account(
    tmp_path: Path,
) -> None:
    """A pipelining relay that takes the envelope and the message, then never answers: the
    send gives up after the account's timeout (the reply's own timer) and the account is
    retried, as with any relay that stops answering; the connection is not reused."""
    received: list[bytes] = []
    writers: list[asyncio.StreamWriter] = []

    async def relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        writer.write(b"220 silent ESMTP\r\n")
        while line := await reader.readline():
            received.append(line)
            if line.upper().startswith(b"EHLO"):
                writer.write(b"250-silent\r\n250-PIPELINING\r\n250 8BITMIME\r\n")
            elif line.upper().startswith(b"DATA"):
                writer.write(b"354 go on\r\n")
            elif line == b".\r\n":
                continue  # the message is in: no reply, ever
            elif line.upper().startswith((b"MAIL", b"RCPT")):
                writer.write(b"250 ok\r\n")
        writer.close()

    server = await asyncio.start_server(relay, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    mail = account(None, port=port, tls="none", timeout="1s")
    clock = TestClock(datetime(2026, 1, 5, 12, tzinfo=UTC))
    try:
        result = await send_once(config_with(tmp_path, mail), clock)
    finally:
        server.close()
        for writer in writers:  # the relay's side of each connection, closed before the loop
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
        await server.wait_closed()
    assert isinstance(result, Retry), result
    assert result.scope == "account"
    assert "Timed out waiting for server response" in result.reason
    assert b".\r\n" in received  # it was the reply to the message that never came
