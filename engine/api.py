"""The send API ("Envios por API", seed 002): client systems create campaigns and read their
status and results over HTTP. Served by ``disparo run`` (when ``[api.clients.NAME]`` are
configured) and by ``disparo api serve``, on ``[api] listen`` (default 127.0.0.1:8081): not the
public tracking endpoint.

- ``POST /api/v1/campaigns``: the options of ``disparo campaign new`` as JSON, plus
  ``recipients`` inline (up to ``[api] max_recipients``); ``201 {"id": N}``. An
  ``Idempotency-Key`` header makes a retried POST answer the same campaign (``200``).
- ``GET /api/v1/campaigns/ID``: status and totals (D18).
- ``GET /api/v1/campaigns/ID/results``: one JSON object per recipient and line (D17), streamed.
- ``GET /api/v1/openapi.json``: this description, as OpenAPI 3.1.

Every request but the description carries ``Authorization: Bearer <token>`` of a client
(compared in constant time with every client's). A client sees only its own campaigns
(origin ``api:<client>``). 401 without or with a wrong token, 413 over a size limit, 422 with
each invalid field, its rule and the fix.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import Any

from aiohttp import web

from engine.campaign import COUNTERS, Campaign
from engine.config import Config, SecretError
from engine.intake.compose import CampaignRequest, ComposeError, create
from engine.store import Store
from engine.web import serve

log = logging.getLogger(__name__)

#: the body fields of a POST (the CLI's options)
FIELDS = (
    "account",
    "name",
    "subject",
    "html",
    "text",
    "template",
    "groups",
    "recipients",
    "start",
    "deadline",
    "pace",
    "priority",
)
NO_STORE = {"Cache-Control": "no-store"}


def _error(status: int, code: str, message: str, **extra: Any) -> web.Response:
    return web.json_response(
        {"error": code, "message": message, **extra}, status=status, headers=NO_STORE
    )


def _t(value: datetime | None) -> str | None:
    return value.isoformat(timespec="seconds") if value else None


def campaign_status(c: Campaign) -> dict[str, Any]:
    """A campaign as ``GET /api/v1/campaigns/ID`` answers it: status and totals (D18)."""
    return {
        "id": c.id,
        "name": c.name,
        "origin": c.origin,
        "account": c.account,
        "channel": c.channel,
        "status": c.status,
        "reason": c.status_reason,
        "priority": c.priority,
        "created_at": _t(c.created_at),
        "start_at": _t(c.start_at),
        "deadline": _t(c.deadline),
        "started_at": _t(c.started_at),
        "finished_at": _t(c.finished_at),
        "recipients": c.recipients,
        "remaining": c.remaining,
        "totals": {name: int(c.counters.get(name, 0)) for name in COUNTERS},
    }


def openapi(config: Config) -> dict[str, Any]:
    """The API's description (OpenAPI 3.1)."""
    error = {"$ref": "#/components/schemas/Error"}
    return {
        "openapi": "3.1.0",
        "info": {"title": "disparo send API", "version": "1"},
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Error": {
                    "type": "object",
                    "properties": {
                        "error": {"type": "string"},
                        "message": {"type": "string"},
                        "problems": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "properties": {
                                    "field": {"type": "string"},
                                    "message": {"type": "string"},
                                },
                            },
                        },
                    },
                },
                "NewCampaign": {
                    "type": "object",
                    "required": ["account"],
                    "additionalProperties": False,
                    "properties": {
                        "account": {"type": "string", "description": "[accounts.NAME]"},
                        "name": {"type": "string"},
                        "subject": {"type": "string", "description": "e-mail; a template"},
                        "html": {"type": "string", "description": "e-mail body; a template"},
                        "text": {"type": "string", "description": "SMS text; a template"},
                        "template": {"type": "string", "description": "WhatsApp template"},
                        "groups": {"type": "array", "items": {"type": "string"}},
                        "recipients": {
                            "type": "array",
                            "maxItems": config.api.max_recipients,
                            "items": {
                                "type": "object",
                                "description": "`email` or `phone`, `nome`/`name`, and fields "
                                "for the templates",
                            },
                        },
                        "start": {"type": "string", "format": "date-time"},
                        "deadline": {"type": "string", "format": "date-time"},
                        "pace": {"type": "string", "examples": ["15/20m"]},
                        "priority": {"type": "integer"},
                    },
                },
            },
        },
        "security": [{"bearer": []}],
        "paths": {
            "/api/v1/campaigns": {
                "post": {
                    "summary": "Create a campaign (Idempotency-Key makes a retry safe)",
                    "parameters": [
                        {
                            "name": "Idempotency-Key",
                            "in": "header",
                            "required": False,
                            "schema": {"type": "string", "maxLength": 200},
                        }
                    ],
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {"$ref": "#/components/schemas/NewCampaign"}
                            }
                        },
                    },
                    "responses": {
                        "201": {"description": '{"id": N}'},
                        "200": {"description": '{"id": N}: the same Idempotency-Key again'},
                        "401": {"description": "no or wrong token", "content": _json(error)},
                        "413": {"description": "over a size limit", "content": _json(error)},
                        "422": {"description": "invalid fields", "content": _json(error)},
                    },
                }
            },
            "/api/v1/campaigns/{id}": {
                "get": {
                    "summary": "A campaign's status and totals (D18)",
                    "parameters": [_id_parameter()],
                    "responses": {"200": {"description": "the campaign"}, "404": {}},
                }
            },
            "/api/v1/campaigns/{id}/results": {
                "get": {
                    "summary": "Per-recipient results (D17), one JSON object per line",
                    "parameters": [_id_parameter()],
                    "responses": {
                        "200": {"content": {"application/x-ndjson": {}}},
                        "404": {},
                    },
                }
            },
        },
    }


def _json(schema: Mapping[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": dict(schema)}}


def _id_parameter() -> dict[str, Any]:
    return {"name": "id", "in": "path", "required": True, "schema": {"type": "integer"}}


class SendApi:
    """The send API's aiohttp application."""

    def __init__(self, store: Store, config: Config, address_kinds: Mapping[str, str]) -> None:
        self.store = store
        self.config = config
        self.address_kinds = dict(address_kinds)
        self.runner: web.AppRunner | None = None
        self.app = web.Application(client_max_size=config.api.max_body_bytes)
        self.app.router.add_post("/api/v1/campaigns", self.post_campaign)
        self.app.router.add_get("/api/v1/campaigns/{id:\\d+}", self.get_campaign)
        self.app.router.add_get("/api/v1/campaigns/{id:\\d+}/results", self.get_results)
        self.app.router.add_get("/api/v1/openapi.json", self.describe)

    def _tokens(self) -> list[tuple[str, bytes]]:
        """Each client's token, read now (a rotated token file applies at once)."""
        found = []
        for name, client in self.config.api.clients.items():
            try:
                found.append((name, client.token.reveal().encode()))
            except SecretError as exc:
                log.warning("api client %s: its token cannot be read: %s", name, exc)
        return found

    def _client(self, request: web.Request) -> str | None:
        header = request.headers.get("Authorization", "")
        scheme, _, given = header.partition(" ")
        if scheme.lower() != "bearer" or not given.strip():
            return None
        offered = given.strip().encode()
        match = None
        for name, token in self._tokens():
            # every client is compared, in constant time: the answer's timing says nothing
            if hmac.compare_digest(offered, token) and match is None:
                match = name
        return match

    def _unauthorised(self) -> web.Response:
        return web.Response(
            status=401,
            text=json.dumps(
                {
                    "error": "unauthorised",
                    "message": "send `Authorization: Bearer <token>` with the token of one of "
                    "[api.clients] (its token_file); the token given is missing or wrong (F5)",
                }
            ),
            content_type="application/json",
            headers={"WWW-Authenticate": 'Bearer realm="disparo"', **NO_STORE},
        )

    async def describe(self, request: web.Request) -> web.Response:
        return web.json_response(openapi(self.config))

    async def post_campaign(self, request: web.Request) -> web.Response:
        client = self._client(request)
        if client is None:
            return self._unauthorised()
        limit = self.config.api.max_body_bytes
        try:
            raw = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return _error(
                413,
                "too-large",
                f"the body is larger than {limit:,} bytes ([api] max_body_bytes); put the "
                "recipients in a group and name it in `groups`",
            )
        try:
            body = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            return _error(422, "invalid", f"the body is not JSON ({exc}); send a JSON object")
        if not isinstance(body, dict):
            return _error(422, "invalid", "the body must be a JSON object of the campaign")
        recipients = body.get("recipients") or []
        most = self.config.api.max_recipients
        if isinstance(recipients, list) and len(recipients) > most:
            return _error(
                413,
                "too-many-recipients",
                f"{len(recipients):,} recipients inline, more than {most:,} ([api] "
                "max_recipients); put them in a group and name it in `groups`",
            )
        problems = self._shape(body)
        if problems:
            return _error(422, "invalid", "the campaign was not created", problems=problems)
        key = request.headers.get("Idempotency-Key")
        if key is not None and not 1 <= len(key) <= 200:
            return _error(422, "invalid", "Idempotency-Key must be 1 to 200 characters")
        if key is not None:
            earlier = await asyncio.to_thread(self.store.groups.idempotent, client, key)
            if earlier is not None:
                return web.json_response({"id": earlier}, status=200, headers=NO_STORE)
        try:
            req = self._request(body, client)
        except ValueError as exc:
            return _error(422, "invalid", "the campaign was not created", problems=exc.args[0])
        try:
            campaign_id, created = await asyncio.to_thread(
                create,
                self.store,
                self.config,
                req,
                self.address_kinds,
                actor=f"api:{client}",
                client=client,
                idempotency_key=key,
                max_recipients=most,
            )
        except ComposeError as exc:
            return _error(
                422,
                "invalid",
                "the campaign was not created",
                problems=[{"field": p.field, "message": p.message} for p in exc.problems],
            )
        log.info(
            "api client %s: campaign %d %s", client, campaign_id, "created" if created else "again"
        )
        return web.json_response(
            {"id": campaign_id}, status=201 if created else 200, headers=NO_STORE
        )

    def _shape(self, body: Mapping[str, Any]) -> list[dict[str, str]]:
        problems = []
        unknown = sorted(set(body) - set(FIELDS))
        for name in unknown:
            problems.append(
                {"field": name, "message": f"unknown field; the fields are {', '.join(FIELDS)}"}
            )
        for name in ("account", "name", "subject", "html", "text", "template", "pace"):
            if name in body and not isinstance(body[name], str):
                problems.append({"field": name, "message": "expected a string"})
        if "account" not in body:
            problems.append({"field": "account", "message": "required: one of [accounts] (D10)"})
        for name in ("groups", "recipients"):
            if name in body and not isinstance(body[name], list):
                problems.append({"field": name, "message": "expected a list"})
        groups = body.get("groups")
        if isinstance(groups, list) and not all(isinstance(g, str) for g in groups):
            problems.append({"field": "groups", "message": "expected group names"})
        if "priority" in body and (
            not isinstance(body["priority"], int) or isinstance(body["priority"], bool)
        ):
            problems.append({"field": "priority", "message": "expected a whole number"})
        return problems

    def _request(self, body: Mapping[str, Any], client: str) -> CampaignRequest:
        problems = []
        times: dict[str, datetime | None] = {}
        for name in ("start", "deadline"):
            value = body.get(name)
            times[name] = None
            if value is None:
                continue
            try:
                parsed = datetime.fromisoformat(str(value))
            except ValueError:
                problems.append(
                    {
                        "field": name,
                        "message": f"`{value}` is not a time: write ISO 8601 such as "
                        "2026-12-07T09:00 (local time) or 2026-12-07T09:00-03:00 (D2, D8)",
                    }
                )
                continue
            times[name] = parsed if parsed.tzinfo else parsed.replace(tzinfo=self.config.tz)
        if problems:
            raise ValueError(problems)
        return CampaignRequest(
            account=body["account"],
            groups=list(body.get("groups") or []),
            recipients=list(body.get("recipients") or []),
            name=body.get("name"),
            subject=body.get("subject"),
            html=body.get("html"),
            text=body.get("text"),
            template=body.get("template"),
            start=times["start"],
            deadline=times["deadline"],
            pace=body.get("pace"),
            priority=int(body.get("priority") or 0),
            origin=f"api:{client}",
        )

    async def _own(self, request: web.Request) -> Campaign | web.Response:
        client = self._client(request)
        if client is None:
            return self._unauthorised()
        campaign_id = int(request.match_info["id"])
        found = await asyncio.to_thread(self.store.campaigns.get, campaign_id, content=False)
        if found is None or found.origin != f"api:{client}":
            # another client's campaign is as absent as one that does not exist
            return _error(404, "not-found", f"client {client} has no campaign {campaign_id}")
        return found

    async def get_campaign(self, request: web.Request) -> web.Response:
        found = await self._own(request)
        if isinstance(found, web.Response):
            return found
        return web.json_response(campaign_status(found), headers=NO_STORE)

    async def get_results(self, request: web.Request) -> web.StreamResponse:
        found = await self._own(request)
        if isinstance(found, web.Response):
            return found
        response = web.StreamResponse(
            headers={"Content-Type": "application/x-ndjson; charset=utf-8", **NO_STORE}
        )
        await response.prepare(request)
        chunks: Iterator[list[Any]] = self.store.results.all(found.id)
        while True:
            chunk = await asyncio.to_thread(next, chunks, None)
            if chunk is None:
                break
            lines = "".join(
                json.dumps(
                    {
                        "position": r.position,
                        "code": r.code,
                        "name": r.name,
                        "address": r.address,
                        "status": r.status,
                        "provider_status": r.provider_status,
                        "reason": r.reason,
                        "sent_at": _t(r.sent_at),
                        "delivered_at": _t(r.delivered_at),
                        "opened_at": _t(r.opened_at),
                        "clicked_at": _t(r.clicked_at),
                        "clicks": r.clicks,
                        "urls": list(r.urls),
                        "unsubscribed": r.unsubscribed,
                    },
                    ensure_ascii=False,
                )
                + "\n"
                for r in chunk
            )
            await response.write(lines.encode("utf-8"))
        await response.write_eof()
        return response

    async def start(self, listen: str | None = None) -> str:
        """Bind ``listen`` (default ``[api] listen``); return the bound ``host:port``."""
        self.runner, bound = await serve(self.app, listen or self.config.api.listen, "[api] listen")
        return bound

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None
