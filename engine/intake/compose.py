"""Campaigns composed by an operator (``disparo campaign new``, the UI's form) or an API client
(``POST /api/v1/campaigns``): checked here, then written by the importer's campaign writer, so
pacing, deadline, guard, priority and suppressions are those of file campaigns.

The audience is frozen when the campaign starts: the groups' members (and the inline
recipients of an API call) minus suppressions (D3, D4). A draft has none until
``campaign start``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from engine.addresses import normalise_email, normalise_phone
from engine.campaign import Campaign, Content
from engine.config import Config, parse_duration
from engine.mailing_names import WHATSAPP_CHANNELS
from engine.render import compile_html, compile_text, trial_render
from engine.schedule import Pacing
from engine.store import Store
from engine.store.groups import GroupError
from engine.store.imports import StagedRow

_PACE = re.compile(r"\s*(\d{1,3})\s*%?\s*/\s*(\S+)\s*")
#: the fields of an inline recipient that are its addresses and name, not template fields
_ADDRESS_KEYS = frozenset({"email", "phone", "name", "nome"})


@dataclass(frozen=True)
class FieldProblem:
    """One field of a request that cannot be used: which, why and how to fix it (with the
    rule)."""

    field: str
    message: str


class ComposeError(ValueError):
    """A composed campaign that cannot be created; ``problems`` lists every field at once."""

    def __init__(self, problems: Sequence[FieldProblem]) -> None:
        self.problems = list(problems)
        super().__init__("; ".join(f"{p.field}: {p.message}" for p in self.problems))


@dataclass
class CampaignRequest:
    """What ``campaign new`` and the API's POST ask for (the same options)."""

    account: str
    groups: list[str] = field(default_factory=list)
    recipients: list[Mapping[str, Any]] = field(default_factory=list)
    name: str | None = None
    subject: str | None = None
    html: str | None = None
    text: str | None = None
    template: str | None = None
    start: datetime | None = None
    deadline: datetime | None = None
    pace: str | None = None
    priority: int = 0
    draft: bool = False
    #: ``operator`` or ``api:<client>``
    origin: str = "operator"


def parse_pace(value: str) -> Pacing:
    """``15/20m``: 15 % of the recipients every 20 minutes (D5); ``ValueError`` with the fix."""
    m = _PACE.fullmatch(value)
    interval = parse_duration(m.group(2)) if m else None
    if m is None or interval is None or not 1 <= int(m.group(1)) <= 100 or not interval:
        raise ValueError(
            f"`{value}` is not a pace: write PERCENT/INTERVAL, e.g. 15/20m (15 % of the "
            "recipients every 20 minutes) or 50/1h (D5)"
        )
    return Pacing.percent(int(m.group(1)), interval)


def _template_problem(source: str, *, html: bool) -> str | None:
    try:
        trial_render(compile_html(source) if html else compile_text(source))
    except Exception as exc:
        line = getattr(exc, "lineno", None)
        where = f" (line {line})" if line else ""
        return (
            f"is not a valid template: {getattr(exc, 'message', None) or exc}{where}; write "
            "variables as {{ nome }} (N28)"
        )
    return None


def recipient_rows(
    recipients: Sequence[Mapping[str, Any]], address_kind: str
) -> tuple[list[StagedRow], list[FieldProblem]]:
    """Inline recipients (``{"email"|"phone", "name", fields…}``) as staged contact rows, after
    hygiene (N26); every unusable one is a problem naming its index."""
    rows: list[StagedRow] = []
    problems: list[FieldProblem] = []
    for i, r in enumerate(recipients):
        where = f"recipients[{i}]"
        if not isinstance(r, Mapping):
            problems.append(FieldProblem(where, 'expected an object such as {"email": "…"}'))
            continue
        raw = r.get(address_kind)
        if not isinstance(raw, str) or not raw.strip():
            problems.append(
                FieldProblem(
                    where,
                    f"has no `{address_kind}`, the address this account's channel sends to (N24)",
                )
            )
            continue
        if address_kind == "email":
            checked = normalise_email(raw)
        else:
            checked = normalise_phone(raw, mobile=True)
        if checked.value is None:
            problems.append(FieldProblem(f"{where}.{address_kind}", f"{checked.error} (N26)"))
            continue
        name = r.get("name", r.get("nome"))
        fields = {
            str(k): v
            for k, v in r.items()
            if k not in _ADDRESS_KEYS and isinstance(v, str | int | float | bool)
        }
        email = checked.value if address_kind == "email" else None
        phone = checked.value if address_kind == "phone" else None
        identity = f"{address_kind}:{checked.value.lower()}"
        rows.append(
            (
                i + 1,
                identity,
                None,
                name if isinstance(name, str) and name.strip() else None,
                email,
                phone,
                json.dumps(fields, ensure_ascii=False),
                None,
                None,
            )
        )
    return rows, problems


def build(
    config: Config,
    request: CampaignRequest,
    now: datetime,
    address_kinds: Mapping[str, str],
    *,
    max_recipients: int | None = None,
) -> tuple[Campaign, list[StagedRow]]:
    """Check a request; the campaign to write and its inline recipients, or ``ComposeError``
    listing every problem."""
    problems: list[FieldProblem] = []
    settings = config.accounts.get(request.account)
    channel = settings.channel if settings else ""
    kind = address_kinds.get(channel, "email")
    if settings is None:
        known = ", ".join(sorted(config.accounts)) or "none configured"
        problems.append(
            FieldProblem(
                "account",
                f"there is no account `{request.account}` (accounts: {known}); name one of "
                "[accounts] of disparo.toml (D10)",
            )
        )
    if not request.groups and not request.recipients:
        problems.append(
            FieldProblem(
                "groups", "name at least one group (or, over the API, list recipients) (D3)"
            )
        )
    if request.draft and request.recipients:
        problems.append(
            FieldProblem("recipients", "a draft is sent to groups only; drop `draft` (D3)")
        )
    if max_recipients is not None and len(request.recipients) > max_recipients:
        problems.append(
            FieldProblem(
                "recipients",
                f"{len(request.recipients):,} recipients inline, more than the limit "
                f"({max_recipients:,}, [api] max_recipients); put them in a group instead",
            )
        )
    subject = body = template = None
    if settings is not None and kind == "email":
        if not request.subject or not request.subject.strip():
            problems.append(FieldProblem("subject", "an e-mail campaign needs a subject (N17)"))
        else:
            subject = request.subject
            why = _template_problem(subject, html=False)
            if why:
                problems.append(FieldProblem("subject", why))
        if not request.html:
            problems.append(
                FieldProblem("html", "an e-mail campaign needs its HTML body (--html FILE)")
            )
        else:
            body = request.html
            why = _template_problem(body, html=True)
            if why:
                problems.append(FieldProblem("html", why))
    elif settings is not None and channel in WHATSAPP_CHANNELS:
        if not request.template:
            problems.append(
                FieldProblem(
                    "template",
                    f"a WhatsApp campaign sends an approved template: name one of "
                    f"[templates] ({', '.join(sorted(config.templates)) or 'none configured'}) "
                    "(N16)",
                )
            )
        elif request.template not in config.templates:
            problems.append(
                FieldProblem(
                    "template",
                    f"`{request.template}` is not in [templates] of disparo.toml (N16)",
                )
            )
        template = request.template
    elif settings is not None:
        if not request.text:
            problems.append(
                FieldProblem("text", "an SMS campaign needs its text (--text FILE) (N28)")
            )
        else:
            body = request.text
            why = _template_problem(body, html=False)
            if why:
                problems.append(FieldProblem("text", why))
    pacing = None
    if request.pace:
        try:
            pacing = parse_pace(request.pace)
        except ValueError as exc:
            problems.append(FieldProblem("pace", str(exc)))
    start = request.start or now
    if request.deadline is not None and request.deadline <= max(start, now):
        problems.append(
            FieldProblem(
                "deadline",
                "the deadline must be after the start and after now: nothing would be sent (D8)",
            )
        )
    if not -1000 <= request.priority <= 1000:
        problems.append(FieldProblem("priority", "expected a whole number from -1000 to 1000"))
    rows: list[StagedRow] = []
    if request.recipients and settings is not None:
        rows, bad = recipient_rows(request.recipients, kind)
        problems += bad
    name = (request.name or "").strip() or (
        subject or f"{', '.join(request.groups) or 'API'} {now:%d/%m/%Y %H:%M}"
    )
    if problems:
        raise ComposeError(problems)
    campaign = Campaign(
        name=name[:1000],
        channel=channel,
        account=request.account,
        origin=request.origin,
        address_kind="email" if kind == "email" else "phone",
        status="draft" if request.draft else "scheduled",
        priority=request.priority,
        start_at=max(start, now),
        deadline=request.deadline,
        pacing=pacing,
        content=Content(
            subject=subject,
            body=body,
            template=template,
            from_name=None,
        ),
    )
    return campaign, rows


def create(
    store: Store,
    config: Config,
    request: CampaignRequest,
    address_kinds: Mapping[str, str],
    *,
    actor: str,
    client: str | None = None,
    idempotency_key: str | None = None,
    max_recipients: int | None = None,
) -> tuple[int, bool]:
    """Check and write a composed campaign; (id, created): with an idempotency key the client
    used before, the earlier campaign and False. ``ComposeError`` when it cannot be."""
    spec, rows = build(
        config, request, store.clock.now(), address_kinds, max_recipients=max_recipients
    )
    try:
        group_ids = store.groups.ids(request.groups)
    except GroupError as exc:
        raise ComposeError([FieldProblem("groups", str(exc))]) from None
    with store.groups.session() as session:
        session.stage(rows)
        return session.write_campaign(
            spec, group_ids, actor=actor, client=client, idempotency_key=idempotency_key
        )
