"""The webhook channel against a real hook on loopback: the JSON and the token it posts, how
the hook's answers map to Sent, Retry and Failed, its settings, and a mailing file sent
through it by disparo's dispatcher, the receipts and replies the hook sends back to the
tracking endpoint. disparo's test kit (``engine.testing``) does the rest."""

from __future__ import annotations

import json
import socket
from datetime import timedelta
from email.utils import format_datetime
from pathlib import Path

import aiohttp
import pytest
from disparo_webhook import WebhookChannel
from disparo_webhook.receipts import signature
from webhook_peer import TOKEN, Hook

from engine.config import ConfigError
from engine.plugins.channel import Failed, Retry, Sent
from engine.testing import START, World, check_channel, hermetic_plugins, write_secret

NUMBER = "+5511998877665"  # the address check_channel sends to


async def test_it_keeps_the_channel_contract_and_posts_json_with_the_token(hook: Hook) -> None:
    check = await check_channel(WebhookChannel, hook.account())
    assert check.result == Sent(provider_id="msg-1")
    [post] = hook.posts
    assert post.body == {
        "to": NUMBER,
        "subject": None,
        "text": "Olá Ana",
        "campaign_id": check.campaign.id,
        "delivery_id": 1,
    }
    assert post.headers["Authorization"] == f"Bearer {TOKEN}"
    assert post.headers["Idempotency-Key"] == "disparo-1"
    assert TOKEN not in check.channel.describe()


@pytest.mark.parametrize(
    ("status", "headers", "expected"),
    [
        (201, {}, Sent(provider_id=None)),  # no id in the answer
        (503, {}, Retry("HTTP 503: no", None, scope="account")),
        (429, {"Retry-After": "120"}, Retry("HTTP 429: no", 120.0, scope="account")),
        (
            429,
            {"Retry-After": format_datetime(START + timedelta(seconds=90), usegmt=True)},
            Retry("HTTP 429: no", 90.0, scope="account"),
        ),
        (400, {}, Failed("HTTP 400: no")),
        (404, {}, Failed("HTTP 404: no")),
        (301, {"Location": "https://elsewhere.example/"}, Failed("HTTP 301: no")),
    ],
)
async def test_answers_map_to_sent_retry_and_failed(
    hook: Hook, status: int, headers: dict[str, str], expected: object
) -> None:
    hook.answer(NUMBER, status, **headers)
    check = await check_channel(WebhookChannel, hook.account())
    assert check.result == expected
    assert len(hook.posts) == 1  # a redirect is not followed


async def test_a_refused_token_holds_the_account(
    hook: Hook, monkeypatch: pytest.MonkeyPatch
) -> None:
    hook.answer(NUMBER, 401)
    monkeypatch.setenv("HOOK_TOKEN", "wrong")
    check = await check_channel(WebhookChannel, hook.account())
    assert isinstance(check.result, Retry) and check.result.scope == "account"
    assert "refused the token" in check.result.reason
    assert hook.posts[0].headers["Authorization"] == "Bearer wrong"


async def test_a_hook_out_of_reach_or_untrusted_holds_the_account(hook: Hook) -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    down = await check_channel(
        WebhookChannel, hook.account(url=f"https://127.0.0.1:{port}/disparo")
    )
    assert isinstance(down.result, Retry) and down.result.scope == "account"
    assert "cannot be reached" in down.result.reason
    untrusted = hook.account()
    del untrusted["ca_file"]  # the system's CAs do not know the test CA
    refused = await check_channel(WebhookChannel, untrusted)
    assert isinstance(refused.result, Retry) and refused.result.scope == "account"
    assert "certificate is not trusted" in refused.result.reason
    assert hook.posts == []


async def test_a_sandbox_account_posts_nothing(hook: Hook) -> None:
    check = await check_channel(WebhookChannel, hook.account(sandbox=True))
    assert check.result == Sent(provider_id="sandbox-1") and hook.posts == []
    assert "sandbox" in check.channel.describe()


async def test_its_settings_are_checked(hook: Hook) -> None:
    with pytest.raises(ConfigError, match=r"accounts\.check\.url: expected an https:// URL"):
        await check_channel(WebhookChannel, hook.account(url="http://hooks.example.com/"))
    with pytest.raises(ConfigError, match="secrets are never written"):
        await check_channel(WebhookChannel, {"url": hook.url, "token": TOKEN})
    with pytest.raises(ConfigError, match=r"accounts\.check\.token: missing"):
        await check_channel(WebhookChannel, {"url": hook.url})


async def test_a_webhook_mailing_is_imported_and_sent_through_the_hook(
    tmp_path: Path, hook: Hook
) -> None:
    # the package as installed: its entry point, next to disparo's own plugins
    plugins = hermetic_plugins(entry_points=("webhook",))
    world = World.open(
        tmp_path,
        plugins,
        accounts={"hook": {"channel": "webhook", **hook.account()}},
        wallets={"BRAD": {"sms_template": "Olá {{ nome }}, seu código é {{ cpf }}"}},
    )
    hook.answer("+5511988880002", 400, {"error": "unknown number"})
    try:
        report = world.import_file(
            world.mailing_name(1, "cBRAD", "webhook"),
            "nome;telefone;cpf\nAna;(11) 98888-0001;111\nBia;11988880002;222\n",
        )
        assert report.outcome == "imported", report.problems
        assert report.channel == "webhook" and report.campaign_id is not None
        await world.run_until_idle()
        await world.run(2)
        texts = {p.body["to"]: p.body["text"] for p in hook.posts}
        assert texts == {
            "+5511988880001": "Olá Ana, seu código é 111",
            "+5511988880002": "Olá Bia, seu código é 222",
        }
        assert {p.body["campaign_id"] for p in hook.posts} == {report.campaign_id}
        assert world.campaign(report.campaign_id).status == "completed"
        assert world.statuses(report.campaign_id) == {"sent": 1, "failed": 1}
    finally:
        await world.close()


async def test_receipts_and_replies_come_back_through_the_tracking_endpoint(
    tmp_path: Path, hook: Hook
) -> None:
    write_secret(tmp_path / "tracking.key", "k" * 32)
    world = World.open(
        tmp_path,
        hermetic_plugins(entry_points=("webhook",)),
        accounts={"hook": {"channel": "webhook", **hook.account()}},
        wallets={"BRAD": {"sms_template": "Olá {{ nome }}"}},
        tracking={"public_url": "https://t.example.com", "secret_file": "tracking.key"},
    )
    try:
        report = world.import_file(
            world.mailing_name(1, "cBRAD", "webhook"),
            "nome;telefone\nAna;11988880001\nBia;11988880002\n",
        )
        assert report.campaign_id is not None
        await world.run_until_idle()
        ids = {p.body["to"]: f"msg-{i}" for i, p in enumerate(hook.posts, 1)}
        async with world.tracking() as base, aiohttp.ClientSession() as http:

            async def post(
                body: dict[str, object], token: str = TOKEN, account: str = "hook"
            ) -> int:
                data = json.dumps(body).encode()
                async with http.post(
                    f"{base}/webhook/{account}/receipts",
                    data=data,
                    headers={"X-Hook-Signature": signature(token, data)},
                ) as response:
                    return response.status

            ana, bia = ids["+5511988880001"], ids["+5511988880002"]
            assert await post({"type": "status", "id": ana, "status": "delivered"}) == 204
            assert await post({"type": "status", "id": ana, "status": "delivered"}) == 204
            failed = {"type": "status", "id": bia, "status": "failed", "permanent": True}
            assert await post(failed, token="forged") == 403
            assert await post(failed, account="nobody") == 404
            assert await post({"type": "status", "id": bia, "status": "lost"}) == 400
            assert await post(failed) == 204
            reply = {"type": "reply", "id": "in-1", "from": "+5511988880001", "text": "Parar."}
            assert await post(reply) == 204
        campaign = world.campaign(report.campaign_id)
        assert campaign.counters["delivered"] == 1 and campaign.counters["bounced"] == 1
        assert world.statuses(report.campaign_id) == {"sent": 1, "bounced": 1}
        assert world.suppressions() == {"+5511988880002": "bounce", "+5511988880001": "stop"}
    finally:
        await world.close()
