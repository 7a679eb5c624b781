"""What a channel provides: one async interface to send a message through a sender account
(plugin API v1, see docs/plugins.md).

``open()`` once, ``prepare()`` once per campaign, ``send()`` per delivery, ``close()`` at the
end. ``send`` gets the recipient's address already normalised by ``normalise()`` and answers
``Sent`` (with the provider's id), ``Retry`` (a temporary failure: of this delivery, or of the
whole account, with how long to wait when the provider says) or ``Failed`` (permanent, saying
whether it is a hard bounce and whether the address must be suppressed). It never raises for a
delivery's own problem: exceptions are for broken channels (the dispatcher retries those
deliveries). ``Templates`` compiles a campaign's content once, in the sandbox, and renders the
``Message`` of each recipient: the default ``prepare()`` returns it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal, NamedTuple

from engine.addresses import Checked
from engine.campaign import Campaign
from engine.clock import Clock
from engine.config import AccountSettings, Config, Configurable
from engine.render import compile_html, compile_text, html_to_text, trial_render
from engine.tokens import Signer

if TYPE_CHECKING:
    from jinja2 import Template


class Sent(NamedTuple):
    """Handed to the provider (its id for the message; the e-mail's Message-ID)."""

    provider_id: str | None = None
    message_id: str | None = None


class Retry(NamedTuple):
    """A temporary failure (SMTP 4xx, connection errors, HTTP 429/5xx, D13): the delivery is
    tried again later (first after a minute, doubling, at least ``retry_after`` seconds).

    ``scope`` says what failed: ``"delivery"`` (this recipient: a greylisting 4xx, a full
    mailbox…) or ``"account"`` (the provider is down, throttles the account, refused its
    credentials): then the whole account holds off for ``retry_after`` seconds (a minute
    when not given) before it sends anything else."""

    reason: str
    retry_after: float | None = None
    scope: Literal["delivery", "account"] = "delivery"


class Failed(NamedTuple):
    """A permanent failure (D13). ``bounce``: a hard bounce (the address is suppressed);
    ``suppress``: another reason to suppress the address (``stop``: the recipient opted out)."""

    reason: str
    bounce: bool = False
    suppress: str | None = None


SendResult = Sent | Retry | Failed


@dataclass(frozen=True)
class DeliveryInfo:
    """One recipient of a campaign, as the channel sees it."""

    id: int
    campaign_id: int
    #: the address as ``Channel.normalise`` returned it (E.164, a checked e-mail…)
    address: str
    #: what templates see for this recipient (``engine.render.variables``): the file's
    #: columns and the contact's name, e-mail, phone and key
    variables: Mapping[str, Any]
    #: per-recipient content from the file (the row's SMS text, N28)
    message: str | None = None
    #: True when the engine already ran ``address`` through ``Channel.normalise`` (it does
    #: before the suppression check): the channel need not check it again
    normalised: bool = False


@dataclass(frozen=True)
class Message:
    """One recipient's message, rendered: ``text`` for text channels (the row's own text
    when the file gave one, N28), ``subject`` and ``html`` (with ``text`` made from it) for
    e-mail-like ones."""

    subject: str | None
    text: str | None
    html: str | None = None


class Templates:
    """A campaign's content compiled once in the template sandbox (``{{ nome }}``), rendered
    per recipient with ``render()``. ``compile()`` raises ``CampaignProblem`` when a template
    is broken or reaches for what the sandbox forbids, once, before anyone is sent to."""

    def __init__(self, subject: Template | None, body: Template | None, html: bool) -> None:
        self.subject = subject
        self.body = body
        self.html = html

    @classmethod
    def compile(cls, campaign: Campaign, *, html: bool | None = None) -> Templates:
        """``html``: the body is HTML (default: the campaign sends to e-mail addresses)."""
        is_html = campaign.address_kind == "email" if html is None else html
        content = campaign.content
        from jinja2 import TemplateError

        try:
            subject = compile_text(content.subject) if content.subject else None
            body = None
            if content.body:
                body = compile_html(content.body) if is_html else compile_text(content.body)
            for template in (subject, body):
                if template is not None:
                    trial_render(template)
        except TemplateError as exc:
            raise CampaignProblem(f"the campaign's template cannot be used: {exc}") from None
        return cls(subject, body, is_html)

    def render(self, delivery: DeliveryInfo) -> Message:
        """The recipient's message; raises a Jinja2 error when it cannot be rendered (answer
        ``Failed`` with the reason)."""
        values = dict(delivery.variables)
        subject = self.subject.render(values).strip() if self.subject is not None else None
        if self.html:
            html = self.body.render(values) if self.body is not None else None
            text = delivery.message or (html_to_text(html) if html else None)
            return Message(subject, text, html)
        if delivery.message:
            return Message(subject, delivery.message)
        return Message(subject, self.body.render(values).strip() if self.body else None)


@dataclass(frozen=True)
class ChannelContext:
    """What a channel may use besides its account: the configuration, the clock, the signer of
    tracking and bounce tokens (None without ``[tracking]``)."""

    config: Config
    clock: Clock
    signer: Signer | None = None


class CampaignProblem(Exception):
    """A campaign cannot be sent as configured (no approved template…): it is held."""


class Channel(Configurable, ABC):
    """A way of sending. Subclasses set:

    - ``name``: what an ``[accounts.NAME]`` table says in ``channel = "…"``;
    - ``address_kind``: ``"email"`` or ``"phone"``, the contact address it sends to;
    - ``file_word``: the word that selects it in a mailing file name (``"telegram"`` for
      ``mailing_…_telegram.csv``, N7), or None when no name selects it;
    - ``config_keys``: its own account keys (``Key("str")``, ``Key("secret")``…), checked at
      load with the common ones (``rate``, ``burst``, ``concurrency``, ``sandbox``…) and
      handed back in ``self.account.options`` (a secret as a ``SecretRef``: ``reveal()`` it
      when connecting, never log it);
    - ``default_rate``: messages per second when the account sets no ``rate``.
    """

    name: ClassVar[str]
    address_kind: ClassVar[Literal["email", "phone"]]
    file_word: ClassVar[str | None] = None
    default_concurrency: ClassVar[int] = 8
    default_rate: ClassVar[float] = 10.0

    def __init__(self, account: AccountSettings, context: ChannelContext) -> None:
        self.account = account
        self.context = context

    @classmethod
    def validate_account(cls, account: AccountSettings) -> list[tuple[str, str]]:
        """Checks across keys at config load: (key, message) pairs."""
        return []

    @property
    def concurrency(self) -> int:
        """How many messages may be in flight at once on this account."""
        return self.account.concurrency or self.default_concurrency

    def describe(self) -> str:
        """One line for operators: where this account sends (never a secret)."""
        return f"{self.name} ({'sandbox' if self.account.sandbox else 'live'})"

    @abstractmethod
    def normalise(self, address: str) -> Checked:
        """The address in the form the provider takes (E.164, a valid e-mail), or why not."""

    async def open(self) -> None:
        """Connect (a pool of SMTP connections, an HTTP session…)."""

    async def close(self) -> None:
        """Disconnect; never raises."""

    async def ready(self, sends: int) -> None:
        """Get ready to start up to ``sends`` messages without waiting (open the pool's
        connections): the engine calls it before taking their tokens from the account's
        bucket, so that no token is spent waiting for a connection and the rate holds at
        the provider from the first second (D10). Never raises: a failure is left for the
        sends to report. Nothing by default."""

    def prepare(self, campaign: Campaign) -> Any:
        """Compile what is the same for every recipient (templates, headers); raise
        ``CampaignProblem`` when the campaign cannot be sent (it is held with the reason).
        Called once per campaign and account; what it returns is handed to every ``send``.
        By default, the campaign's ``Templates``."""
        return Templates.compile(campaign)

    @abstractmethod
    async def send(self, prepared: Any, delivery: DeliveryInfo) -> SendResult:
        """Render (``prepared.render(delivery)`` with the default ``prepare``) and send one
        message to ``delivery.address``."""

    def tracked_links(self, prepared: Any) -> Sequence[str]:
        """The URLs of the tracked links a prepared campaign carries, by position from 1:
        the engine records them before the first send, and the click endpoint redirects to
        them (never to a URL read from the request). None by default."""
        return ()
