"""Channels in tests: ``Scripted``, a channel that records what it is asked to send and
answers from a script, and ``check_channel``, the contract check for a channel class."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, ClassVar, Literal

from jinja2 import TemplateError

from engine.addresses import Checked, normalise_email, normalise_phone
from engine.campaign import Campaign, Content
from engine.config import SecretError, SecretRef, parse_config
from engine.plugins.channel import (
    Channel,
    ChannelContext,
    DeliveryInfo,
    Failed,
    Message,
    Retry,
    SendResult,
    Sent,
    Templates,
)
from engine.render import variables
from engine.testing.plugins import Registers, hermetic_plugins
from engine.testing.store import make_clock


@dataclass(frozen=True)
class Record:
    """One send a ``Scripted`` channel was asked for: when (on the engine's clock), through
    which account, for which campaign and delivery, to which address, with which message."""

    at: datetime
    account: str
    campaign_id: int
    delivery_id: int
    address: str
    message: Message


class Scripted(Channel):
    """A channel that sends nothing: it records each send in ``Scripted.log`` and answers
    ``Sent(provider_id="P<delivery id>")``, unless ``Scripted.script[address]`` holds answers
    for that (normalised) address: those are given first, in order.

    Use it where the provider is not what the test is about (pacing, retries, your observer
    or format). Subclass it to give it another ``name``, ``address_kind`` or ``file_word``;
    ``log`` and ``script`` are shared by every subclass, and ``Scripted.reset()`` empties them
    (call it at the start of each test)."""

    name = "scripted"
    address_kind: ClassVar[Literal["email", "phone"]] = "phone"
    log: ClassVar[list[Record]] = []
    script: ClassVar[dict[str, list[SendResult]]] = {}

    @classmethod
    def reset(cls) -> None:
        """Forget every recorded send and scripted answer."""
        Scripted.log.clear()
        Scripted.script.clear()

    @classmethod
    def sends(cls, campaign_id: int | None = None) -> list[Record]:
        """The recorded sends, in order (of one campaign, when given)."""
        return [r for r in Scripted.log if campaign_id is None or r.campaign_id == campaign_id]

    def normalise(self, address: str) -> Checked:
        if self.address_kind == "email":
            return normalise_email(address)
        return normalise_phone(address, mobile=True)

    async def send(self, prepared: Templates, delivery: DeliveryInfo) -> SendResult:
        try:
            message = prepared.render(delivery)
        except TemplateError as exc:
            return Failed(f"the message cannot be rendered: {exc}")
        Scripted.log.append(
            Record(
                self.context.clock.now(),
                self.account.name,
                delivery.campaign_id,
                delivery.id,
                delivery.address,
                message,
            )
        )
        answers = Scripted.script.get(delivery.address)
        if answers:
            return answers.pop(0)
        return Sent(provider_id=f"P{delivery.id}")


# -- the channel contract --------------------------------------------------------------------

#: an address of each kind that every channel should take
SAMPLE_ADDRESSES = {"phone": "+5511998877665", "email": "ana@example.com"}


@dataclass(frozen=True)
class ChannelCheck:
    """What ``check_channel`` saw: the channel it made, the normalised address, the campaign
    it prepared and what ``send`` answered (assert more on them in your test)."""

    channel: Channel
    checked: Checked
    campaign: Campaign
    result: SendResult


def sample_campaign(cls: type[Channel], *, campaign_id: int = 1) -> Campaign:
    """A campaign for a channel class as a mailing file would make it: subject and HTML body
    for an e-mail channel, a text for a phone one, both saying ``Olá {{ nome }}``."""
    email = cls.address_kind == "email"
    return Campaign(
        id=campaign_id,
        name="check",
        channel=cls.name,
        account="check",
        address_kind=cls.address_kind,
        status="sending",
        start_at=make_clock().now(),
        content=Content(
            subject="Olá {{ nome }}" if email else None,
            body="<p>Olá {{ nome }}</p>" if email else "Olá {{ nome }}",
        ),
    )


class ChannelContractError(AssertionError):
    """A channel class does not keep the channel contract (the message says what and why)."""


async def check_channel(
    cls: type[Channel],
    account: Mapping[str, Any],
    *,
    address: str | None = None,
    root: Path | None = None,
) -> ChannelCheck:
    """Check that ``cls`` keeps the channel contract, once, through its real code:

    - a hermetic plugin manager with disparo's built-ins accepts its registration (a
      subclass of ``Channel`` implementing it, a valid ``name``, ``address_kind`` and a free
      ``file_word``), else ``PluginError``;
    - ``account`` (its ``[accounts.NAME]`` table without ``channel``; secrets as
      ``token_env``/``token_file``) passes its ``config_keys``, else ``ConfigError``;
    - ``describe()`` is a string that shows no secret of the account;
    - ``normalise(address)`` answers a usable ``Checked`` (``address``: a sample of its
      ``address_kind`` by default);
    - ``open()``, ``prepare()`` of a sample campaign, ``send()`` of one delivery to the
      normalised address, ``close()``: ``send`` answers a ``Sent``, ``Retry`` or ``Failed``.

    It does not check what your provider received: your tests against a real peer (a
    loopback server) do. Relative paths in ``account`` are relative to ``root`` (default:
    the current folder). Returns what it saw; raises ``ChannelContractError`` (an
    ``AssertionError``) when the contract is broken."""
    plugins = hermetic_plugins()
    if plugins.channels().get(cls.name) is not cls:
        plugins.register(Registers(cls), f"check-{cls.name}")
    folder = root or Path.cwd()
    config = parse_config(
        {"accounts": {"check": {"channel": cls.name, **account}}},
        file=str(folder / "disparo.toml"),
        root=folder,
        plugins=plugins,
    )
    settings = config.accounts["check"]
    channel = cls(settings, ChannelContext(config, make_clock()))
    described = channel.describe()
    if not isinstance(described, str) or not described:
        raise ChannelContractError(f"{cls.__name__}.describe() must answer a line of text")
    for value in settings.options.values():
        if isinstance(value, SecretRef):
            try:
                secret = value.reveal()
            except SecretError:
                continue
            if secret and secret in described:
                raise ChannelContractError(
                    f"{cls.__name__}.describe() shows the secret `{value.key}` (F5)"
                )
    raw = address or SAMPLE_ADDRESSES[cls.address_kind]
    checked = channel.normalise(raw)
    if not isinstance(checked, Checked) or checked.value is None:
        raise ChannelContractError(
            f"{cls.__name__}.normalise({raw!r}) must answer a Checked with a value, got {checked!r}"
        )
    campaign = sample_campaign(cls)
    delivery = DeliveryInfo(
        id=1,
        campaign_id=campaign.id,
        address=checked.value,
        variables=variables(
            name="Ana",
            email=checked.value if cls.address_kind == "email" else None,
            phone=checked.value if cls.address_kind == "phone" else None,
            external_key="111",
            fields={"cidade": "São Paulo"},
        ),
    )
    await channel.open()
    try:
        prepared = channel.prepare(campaign)
        result = await channel.send(prepared, delivery)
    finally:
        await channel.close()
    if not isinstance(result, Sent | Retry | Failed):
        raise ChannelContractError(
            f"{cls.__name__}.send() must answer Sent, Retry or Failed "
            f"(engine.plugins.channel), got {result!r}"
        )
    if isinstance(result, Retry) and result.scope not in ("delivery", "account"):
        raise ChannelContractError(f"Retry.scope is `delivery` or `account`, not {result.scope!r}")
    return ChannelCheck(channel, checked, campaign, result)
