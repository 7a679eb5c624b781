"""The send API ("Envios por API"): bearer auth in constant time, idempotency, size limits,
validation with the rule, status and streamed results, each client seeing its own campaigns;
a campaign created over the API is sent to the SMTP sink."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from engine.api import SendApi
from engine.clock import RealClock
from engine.config import load_config
from engine.plugins import builtin_plugins
from engine.service import Engine
from engine.store import Store
from engine.testing import start_smtp_sink, write_config, write_secret

POLO = "polo-9c2e1d7a55b04f3e"
OUTRO = "outro-4b1a0f6c2d9e8a71"


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[dict[str, Any]]:
    write_secret(tmp_path / "secrets" / "polo.token", POLO + "\n")
    write_secret(tmp_path / "secrets" / "outro.token", OUTRO)
    with start_smtp_sink() as sink:
        cfg_path = write_config(
            tmp_path,
            engine={"database_url": f"sqlite:///{tmp_path}/d.db"},
            accounts={
                "avisos": {
                    "channel": "email",
                    "from_address": "avisos@empresa.com.br",
                    "sandbox": True,
                    "sink": sink.address,
                }
            },
            api={
                "listen": "127.0.0.1:0",
                "max_recipients": 3,
                "max_body_bytes": 4096,
                "clients": {
                    "polo": {"token_file": "secrets/polo.token"},
                    "outro": {"token_file": "secrets/outro.token"},
                },
            },
        )
        plugins = builtin_plugins()
        config = load_config(cfg_path, plugins=plugins)
        store = Store.open(config.engine.database_url)
        kinds = {n: c.address_kind for n, c in plugins.channels().items()}
        server = SendApi(store, config, kinds)
        bound = await server.start()
        async with aiohttp.ClientSession(f"http://{bound}") as http:
            yield {
                "http": http,
                "store": store,
                "config": config,
                "plugins": plugins,
                "sink": sink,
            }
        await server.stop()
        store.close()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


BODY = {
    "account": "avisos",
    "name": "Boas-vindas",
    "subject": "Olá {{ nome }}",
    "html": "<p>Olá {{ nome }}, seu curso é {{ curso }}.</p>",
    "recipients": [
        {"email": "ana@example.com", "nome": "Ana", "curso": "Leitura"},
        {"email": "bia@example.com", "nome": "Bia", "curso": "Escrita"},
    ],
    "priority": 2,
}


async def test_auth_is_required_and_checked(api: dict[str, Any]) -> None:
    http = api["http"]
    described = await http.get("/api/v1/openapi.json")
    assert described.status == 200
    assert "/api/v1/campaigns" in (await described.json())["paths"]
    for headers in ({}, bearer("nope"), {"Authorization": POLO}, bearer(POLO + "x")):
        answer = await http.post("/api/v1/campaigns", json=BODY, headers=headers)
        assert answer.status == 401
        assert answer.headers["WWW-Authenticate"].startswith("Bearer")
        assert "token" in (await answer.json())["message"]
    assert (await http.get("/api/v1/campaigns/1")).status == 401


async def test_a_client_creates_a_campaign_once_and_it_is_sent(api: dict[str, Any]) -> None:
    http = api["http"]
    key = {"Idempotency-Key": "pedido-42"}
    first = await http.post("/api/v1/campaigns", json=BODY, headers={**bearer(POLO), **key})
    assert first.status == 201, await first.text()
    cid = (await first.json())["id"]
    again = await http.post("/api/v1/campaigns", json=BODY, headers={**bearer(POLO), **key})
    assert again.status == 200 and (await again.json())["id"] == cid
    other = await http.post("/api/v1/campaigns", json=BODY, headers=bearer(POLO))
    assert other.status == 201 and (await other.json())["id"] != cid
    status = await (await http.get(f"/api/v1/campaigns/{cid}", headers=bearer(POLO))).json()
    assert (status["origin"], status["recipients"], status["priority"]) == ("api:polo", 2, 2)
    assert status["totals"]["sent"] == 0
    # another client sees none of it
    hidden = await http.get(f"/api/v1/campaigns/{cid}", headers=bearer(OUTRO))
    assert hidden.status == 404
    engine = Engine(api["store"], api["plugins"], api["config"], RealClock(), mode="until-idle")
    await engine.run_until_idle(settle=0.05)
    status = await (await http.get(f"/api/v1/campaigns/{cid}", headers=bearer(POLO))).json()
    assert status["status"] == "completed" and status["totals"]["sent"] == 2
    results = await http.get(f"/api/v1/campaigns/{cid}/results", headers=bearer(POLO))
    assert results.headers["Content-Type"].startswith("application/x-ndjson")
    lines = [json.loads(line) for line in (await results.text()).splitlines()]
    assert [(r["address"], r["status"]) for r in lines] == [
        ("ana@example.com", "sent"),
        ("bia@example.com", "sent"),
    ]
    sent = {m.rcpt_tos[0]: m.parsed() for m in api["sink"].messages}
    body = sent["ana@example.com"].get_body(("html",)).get_content()
    assert "Olá Ana, seu curso é Leitura." in body


async def test_limits_and_validation(api: dict[str, Any]) -> None:
    http = api["http"]
    many = {**BODY, "recipients": [{"email": f"p{i}@example.com"} for i in range(4)]}
    answer = await http.post("/api/v1/campaigns", json=many, headers=bearer(POLO))
    assert answer.status == 413 and "max_recipients" in (await answer.json())["message"]
    big = {**BODY, "html": "x" * 5000}
    answer = await http.post("/api/v1/campaigns", json=big, headers=bearer(POLO))
    assert answer.status == 413 and "max_body_bytes" in (await answer.json())["message"]
    answer = await http.post(
        "/api/v1/campaigns",
        data=b"{nope",
        headers={**bearer(POLO), "Content-Type": "application/json"},
    )
    assert answer.status == 422 and "not JSON" in (await answer.json())["message"]
    wrong = {
        **BODY,
        "account": "nada",
        "pace": "200/1h",
        "cor": "azul",
        "recipients": [{"email": "bad@"}, {"nome": "sem endereço"}],
    }
    answer = await http.post("/api/v1/campaigns", json=wrong, headers=bearer(POLO))
    assert answer.status == 422
    problems = {p["field"]: p["message"] for p in (await answer.json())["problems"]}
    assert "unknown field" in problems["cor"]
    wrong.pop("cor")
    answer = await http.post("/api/v1/campaigns", json=wrong, headers=bearer(POLO))
    problems = {p["field"]: p["message"] for p in (await answer.json())["problems"]}
    assert "(D10)" in problems["account"] and "(D5)" in problems["pace"]
    wrong["account"] = "avisos"
    answer = await http.post("/api/v1/campaigns", json=wrong, headers=bearer(POLO))
    problems = {p["field"]: p["message"] for p in (await answer.json())["problems"]}
    assert "(N26)" in problems["recipients[0].email"] and "(N24)" in problems["recipients[1]"]
    late = {**BODY, "deadline": "2001-01-01T00:00"}
    answer = await http.post("/api/v1/campaigns", json=late, headers=bearer(POLO))
    assert answer.status == 422 and "(D8)" in json.dumps(await answer.json())
    assert api["store"].campaigns.recent() == []
