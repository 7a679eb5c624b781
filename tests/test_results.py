"""Per-recipient results (D17): every recipient not sent says why, and an address that
unsubscribed from all campaigns (D19) says so in the campaigns after."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import sqlalchemy as sa

from engine.clock import TestClock
from engine.events import Signal
from engine.publish.results import write_results
from engine.store import Store
from engine.store import schema as t
from engine.testing import Registers, Scripted, World, hermetic_plugins


class ResultsMail(Scripted):
    """An e-mail channel that records what it sends."""

    name = "results-mail"
    address_kind = "email"
    file_word = "resultsmail"


def results(world: World, campaign_id: int) -> dict[str, dict[str, str]]:
    """The results file of a campaign, as rows by address."""
    out = io.StringIO()
    write_results(world.store, campaign_id, out, world.config.tz)
    rows = list(csv.DictReader(io.StringIO(out.getvalue()), delimiter=";"))
    return {r["endereco"]: r for r in rows}


def delivery_of(store: Store, campaign_id: int, address: str) -> int:
    with store.read() as c:
        return int(
            c.execute(
                sa.select(t.deliveries.c.id).where(
                    t.deliveries.c.campaign_id == campaign_id, t.deliveries.c.address == address
                )
            ).scalar_one()
        )


async def test_every_unsent_recipient_says_why(
    tmp_path: Path, store: Store, clock: TestClock
) -> None:
    """D17/D19: Ana unsubscribes from all campaigns in the first campaign; in the second she
    is suppressed at import, her row says why (``motivo_nao_enviado``) and
    ``descadastrado_todas=sim``; Eve, suppressed by an operator, says so too (and ``nao``);
    recipients waiting for their batch say they were not sent yet; sent ones say nothing."""
    Scripted.reset()
    (tmp_path / "body.html").write_text("<p>Olá {{ nome }}</p>")
    world = World.open(
        tmp_path,
        hermetic_plugins(Registers(ResultsMail)),
        store=store,
        clock=clock,
        accounts={"m": {"channel": "results-mail"}},
        wallets={"BRAD": {"email_subject": "Oi", "email_template": "body.html"}},
    )
    try:
        first = world.import_file(
            world.mailing_name(1, "cBRAD", "resultsmail"),
            "nome;email\nAna;ana@example.com\nCaio;caio@example.com\n",
        )
        assert first.campaign_id is not None
        await world.run_until_idle()
        ana = delivery_of(store, first.campaign_id, "ana@example.com")
        signal = Signal("unsubscribe", clock.now(), "tracking", ana, detail={"scope": "all"})
        await store.run(store.feedback.apply, [signal])
        store.suppressions.add("email", "eve@example.com", origin="manual", actor="test")

        second = world.import_file(
            world.mailing_name(2, "cBRAD", "resultsmail"),
            "nome;email\nAna;ana@example.com\nCaio;caio@example.com\nEve;eve@example.com\n",
        )
        assert second.campaign_id is not None and second.suppressed == 2
        rows = results(world, second.campaign_id)
        assert rows["ana@example.com"]["status"] == "suppressed"
        assert rows["ana@example.com"]["motivo_nao_enviado"] == (
            "the address is suppressed: unsubscribed from all campaigns (D4, D19)"
        )
        assert rows["ana@example.com"]["descadastrado_todas"] == "sim"
        assert rows["eve@example.com"]["motivo_nao_enviado"] == (
            "the address is suppressed by an operator (D4)"
        )
        assert rows["eve@example.com"]["descadastrado_todas"] == "nao"
        assert rows["caio@example.com"]["motivo_nao_enviado"].startswith("not sent yet")
        assert all(r["motivo_nao_enviado"] for r in rows.values())

        await world.run_until_idle()
        rows = results(world, second.campaign_id)
        assert rows["caio@example.com"]["status"] == "sent"
        assert rows["caio@example.com"]["motivo_nao_enviado"] == ""
        assert rows["caio@example.com"]["descadastrado_todas"] == "nao"
        # the campaign she unsubscribed in says so as well
        before = results(world, first.campaign_id)["ana@example.com"]
        assert (before["descadastrado_campanha"], before["descadastrado_todas"]) == ("sim", "sim")
    finally:
        await world.close()


class ResultsSms(Scripted):
    """A phone channel that records what it sends."""

    name = "results-sms"
    address_kind = "phone"
    file_word = "resultssms"


async def test_phone_unsubscribed_from_all_matches_numbers_as_written(
    tmp_path: Path, store: Store, clock: TestClock
) -> None:
    """D19 on a phone campaign imported without hygiene (no ``_h``): the numbers stay as
    written, ``(11) 98765-4321``, while the unsubscribe left ``+5511987654321``; the later
    campaign's row still says ``descadastrado_todas=sim``, whatever the number's spelling
    (with the country code, with a trunk 0), and a number that never opted out says ``nao``."""
    Scripted.reset()
    (tmp_path / "sms.txt").write_text("Oi {{ nome }}")
    world = World.open(
        tmp_path,
        hermetic_plugins(Registers(ResultsSms)),
        store=store,
        clock=clock,
        accounts={"s": {"channel": "results-sms"}},
        wallets={"BRAD": {"sms_template": "sms.txt"}},
    )
    try:
        first = world.import_file(
            world.mailing_name(1, "cBRAD", "resultssms"),
            "nome;telefone\nAna;(11) 98765-4321\nCaio;21 99876-5432\n",
        )
        assert first.campaign_id is not None
        await world.run_until_idle()
        ana = delivery_of(store, first.campaign_id, "(11) 98765-4321")
        signal = Signal("unsubscribe", clock.now(), "tracking", ana, detail={"scope": "all"})
        await store.run(store.feedback.apply, [signal])
        with store.read() as c:
            kept = c.execute(sa.select(t.suppressions.c.address)).scalars().all()
        assert kept == ["+5511987654321"]

        second = world.import_file(
            world.mailing_name(2, "cBRAD", "resultssms"),
            "nome;telefone\nAna;55 11 98765-4321\nAna2;011987654321\nCaio;(21) 99876-5432\n",
        )
        assert second.campaign_id is not None
        await world.run_until_idle()
        rows = results(world, second.campaign_id)
        assert rows["55 11 98765-4321"]["descadastrado_todas"] == "sim"
        assert rows["011987654321"]["descadastrado_todas"] == "sim"
        assert rows["(21) 99876-5432"]["descadastrado_todas"] == "nao"
        assert rows["(21) 99876-5432"]["status"] == "sent"
        before = results(world, first.campaign_id)["(11) 98765-4321"]
        assert (before["descadastrado_campanha"], before["descadastrado_todas"]) == ("sim", "sim")
    finally:
        await world.close()
