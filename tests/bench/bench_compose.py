"""Composing e-mails (issue 16, goal 1): ``BENCH_COMPOSE`` messages (default 20,000) through
the real ``EmailChannel.prepare``/``compose`` path, tracking on (signed unsubscribe, open pixel
and link tokens), with a campaign's templates: the one-line body of ``bench_dispatch`` and a
multi-line newsletter. Paired, interleaved rounds (median of ``BENCH_ROUNDS``, 3) against the
full encoder (the campaign's parts rendered whole and quoted-printable encoded whole, what
compose did before the compiled skeleton): CPU µs per message and the ratio."""

from __future__ import annotations

import os
import statistics
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import tomli_w

from channels.email import EmailChannel
from engine.campaign import Campaign, Content
from engine.clock import TestClock
from engine.config import load_config
from engine.plugins import load_plugins
from engine.plugins.channel import ChannelContext, DeliveryInfo
from engine.render import variables
from engine.testing import write_secret
from engine.tokens import Signer

SECRET = "0123456789abcdef0123456789abcdef"
ONE_LINE = (
    "<html><body><p>Olá {{ nome }},</p><p>Temos uma oferta para você em {{ cidade }}."
    "</p><p><a href='https://loja.example/oferta'>Ver a oferta</a></p></body></html>"
)
NEWSLETTER = "\n".join(
    ["<html><head><style>p { font-family: Arial, sans-serif; color: #333333; }</style></head>"]
    + ["<body>", "<p>Olá {{ nome }},</p>"]
    + [
        f"<p>Parágrafo {i}: as condições desta oferta valem até o fim do mês, para clientes "
        f"de todo o país; consulte o regulamento completo no nosso sítio. Preço = R$ {i},90.</p>"
        for i in range(12)
    ]
    + ["<p>Sua cidade: {{ cidade }}</p>"]
    + [f'<p><a href="https://loja.example/p/{i}">Produto {i}</a></p>' for i in range(4)]
    + ["</body></html>", ""]
)


def channel(tmp: Path) -> EmailChannel:
    write_secret(tmp / "tracking.key", SECRET)
    path = tmp / "disparo.toml"
    account = {
        "channel": "email",
        "from_address": "aviso@empresa.com.br",
        "from_name": "Empresa Ação",
        "host": "127.0.0.1",
        "tls": "none",
    }
    path.write_text(
        tomli_w.dumps(
            {
                "engine": {"spool_dir": "spool"},
                "tracking": {
                    "public_url": "https://t.empresa.com.br",
                    "secret_file": "tracking.key",
                },
                "accounts": {"avisos": account},
            }
        )
    )
    load_plugins()
    config = load_config(path)
    clock = TestClock(datetime(2026, 12, 6, 12, tzinfo=UTC))
    return EmailChannel(config.accounts["avisos"], ChannelContext(config, clock, Signer(SECRET)))


def deliveries(n: int) -> list[DeliveryInfo]:
    return [
        DeliveryInfo(
            id=1000 + i,
            campaign_id=7,
            address=f"cliente{i}@example.com",
            variables=variables(
                name=f"Cliente Número {i}",
                email=f"cliente{i}@example.com",
                phone=None,
                external_key=str(i),
                fields={"cidade": "São Paulo" if i % 2 else "Belo Horizonte"},
            ),
        )
        for i in range(n)
    ]


def cpu_us(email: EmailChannel, prepared: Any, batch: list[DeliveryInfo]) -> float:
    start = time.process_time()
    for d in batch:
        email.compose(prepared, d, d.address)
    return (time.process_time() - start) / len(batch) * 1e6


def oferta(subject: str, body: str) -> Campaign:
    """The e-mail campaign these benches and the compose tests send: ``subject`` and ``body``
    as its templates."""
    return Campaign(
        id=7,
        name="Oferta",
        channel="email",
        account="avisos",
        start_at=datetime(2026, 11, 23, 12, tzinfo=UTC),
        content=Content(subject=subject, body=body),
    )


def bench_compose(tmp_path: Path) -> None:
    n = int(os.environ.get("BENCH_COMPOSE", "20000"))
    rounds = int(os.environ.get("BENCH_ROUNDS", "3"))
    email = channel(tmp_path)
    batch = deliveries(n)
    for label, body in (("one-line body", ONE_LINE), ("newsletter", NEWSLETTER)):
        campaign = oferta("Olá {{ nome }}, uma oferta", body)
        fast = email.prepare(campaign)
        full = replace(fast, text_part=None, html_part=None)  # the full encoder, as before
        for d in batch[:50]:  # the same bytes either way
            assert email.compose(fast, d, d.address) == email.compose(full, d, d.address)
        new, old = [], []
        for _ in range(rounds):
            old.append(cpu_us(email, full, batch))
            new.append(cpu_us(email, fast, batch))
        o, w = statistics.median(old), statistics.median(new)
        print(
            f"\ncompose {label}, {n:,} messages x {rounds} rounds (load {os.getloadavg()[0]:.1f}):"
            f" full encoder {o:.1f} µs/msg, compiled {w:.1f} µs/msg, ratio {o / w:.2f}x"
        )
