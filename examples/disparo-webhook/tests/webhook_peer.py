"""A web hook on loopback: a real aiohttp server over TLS (its certificate from a CA made by
trustme, which the accounts trust with ``ca_file``), recording each POST and answering what
the test scripted for the message's address."""

from __future__ import annotations

import json
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trustme
from aiohttp import web

#: the token the accounts of the tests send (HOOK_TOKEN)
TOKEN = "t0ken-for-tests"


@dataclass(frozen=True)
class Post:
    """One POST the hook received."""

    headers: dict[str, str]
    body: dict[str, Any]


@dataclass
class Hook:
    """The running hook: its ``url``, the ``ca_file`` that trusts it, what it received."""

    url: str
    ca_file: Path
    posts: list[Post] = field(default_factory=list)
    #: address -> answers (status, headers, JSON body) given to its next POSTs, in order
    answers: dict[str, list[tuple[int, dict[str, str], Any]]] = field(default_factory=dict)

    def answer(self, to: str, status: int, body: Any = None, **headers: str) -> None:
        self.answers.setdefault(to, []).append((status, headers, body))

    def account(self, **extra: Any) -> dict[str, Any]:
        """An ``[accounts.NAME]`` table (without ``channel``) that sends to this hook."""
        return {"url": self.url, "token_env": "HOOK_TOKEN", "ca_file": str(self.ca_file)} | extra

    async def receive(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.posts.append(Post(dict(request.headers), body))
        queued = self.answers.get(body.get("to"))
        if queued:
            status, headers, answer = queued.pop(0)
            return web.Response(
                status=status, headers=headers, text=json.dumps(answer) if answer else "no"
            )
        return web.json_response({"id": f"msg-{len(self.posts)}"})


async def start_hook(ca: trustme.CA, folder: Path) -> tuple[Hook, web.AppRunner]:
    """Serve a hook on 127.0.0.1 (a free port) with a certificate from ``ca``, whose PEM it
    writes in ``folder``; ``await runner.cleanup()`` stops it."""
    ca_file = folder / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)  # a server's context
    ca.issue_cert("127.0.0.1").configure_cert(context)
    hook = Hook("", ca_file)
    app = web.Application()
    app.router.add_post("/disparo", hook.receive)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context).start()
    host, port = runner.addresses[0][:2]
    hook.url = f"https://{host}:{port}/disparo"
    return hook, runner
