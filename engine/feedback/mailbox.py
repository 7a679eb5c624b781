"""The bounce mailbox poller (D14): DSNs and complaints that arrive by e-mail, over IMAP.

Every ``every`` (default 2 minutes) each enabled ``[mailboxes.NAME]`` is read:

1. connect (implicit TLS on 993 or STARTTLS on 143; the certificate and host name are always
   verified, the host vetted like a source's, F2/F3), log in, select ``folder``;
2. ``UID SEARCH UNKEYWORD $DisparoUnparsed``: every message not already given up on, oldest
   first, at most :data:`BATCH` per round; a poll runs round after round until no unread
   report is left (never stopping at a fixed count);
3. ``UID FETCH … BODY.PEEK[]`` (nothing is marked read), parse each message
   (:func:`engine.feedback.bounces.parse_report`) and map it to a delivery by the VERP return path,
   else by our signed Message-ID in the original's headers;
4. store what it says (one transaction per round, each event deduplicated by a key made of
   the message's SHA-256 and the recipient's position, so a message read twice counts once):
   hard bounce → ``bounced`` and the address suppressed, soft → ``failed``, complaint →
   suppressed, delivery report → ``delivered``, delay → ``deferred``;
5. only then move the handled messages to ``processed_folder`` (``UID MOVE``; without MOVE,
   ``COPY`` + ``\\Deleted`` + ``EXPUNGE``), creating it on first use. Folder names are
   written with ``/`` for hierarchy; the poller asks the server its separator
   (``LIST "" ""``) and spells them with it: ``disparo/handled`` is ``disparo.handled`` on
   a stock Dovecot Maildir++ account.

A message the parser cannot read, or one that names no delivery of ours, is *kept* where it
is, flagged ``$DisparoUnparsed`` so later polls skip it, and counted (``disparo mailboxes``,
the ``disparo_mailbox_unparsed`` metric): nothing is ever deleted or lost. A crash between
steps 4 and 5 only means the next poll reads the message again, and the dedupe key makes that
harmless. Two engines sharing a store never poll one mailbox at once (a lease in the store).

imaplib is blocking: every IMAP exchange runs in a worker thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import imaplib
import logging
import os
import socket
import ssl
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from engine import hosts
from engine.clock import Clock, wait_event
from engine.config import MailboxSettings
from engine.events import Signal
from engine.feedback.bounces import Report, parse_report
from engine.store import Store
from engine.store.feedback import Applied
from engine.tokens import Signer

log = logging.getLogger(__name__)

#: the keyword that marks a message the poller could not use (kept, skipped by later polls)
UNPARSED = "$DisparoUnparsed"
#: messages fetched and stored per round
BATCH = 200
#: kinds of report that are acted upon; ``feedback`` (not-spam…) and auto-replies are
#: recognised and filed away without changing anything
_ACTED = ("bounce", "delay", "delivered", "complaint")

ApplyFn = Callable[[Sequence[Signal]], Awaitable[list[Applied]]]


class MailboxError(Exception):
    """A poll that failed; the message says what went wrong in plain words."""


@dataclass
class PollResult:
    """What one poll of one mailbox did."""

    name: str
    ok: bool = True
    message: str = ""
    fetched: int = 0
    handled: int = 0
    unparsed: int = 0
    unknown: int = 0  # reports naming no delivery of ours (kept, counted as unparsed)
    events: int = 0
    duplicates: int = 0
    kinds: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Decoded:
    """One fetched message and what it became."""

    uid: str
    report: Report
    delivery_id: int | None
    signals: tuple[Signal, ...]

    @property
    def usable(self) -> bool:
        return bool(self.signals) or (
            self.report.kind in ("feedback", "auto-reply") and self.delivery_id is not None
        )


def quote(name: str) -> str:
    """A mailbox name as an IMAP quoted string (imaplib sends arguments as they are)."""
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def signals_of(report: Report, delivery_id: int, digest: str, at: datetime) -> list[Signal]:
    """The signals a report carries for one of our deliveries (one per recipient block)."""
    out: list[Signal] = []
    if report.kind == "complaint":
        recipient = next((r.address for r in report.recipients if r.address), None)
        out.append(
            Signal(
                "complaint",
                at,
                "mailbox",
                delivery_id=delivery_id,
                dedupe_key=f"imap:{digest}:0",
                detail={
                    "feedback_type": report.feedback_type or "abuse",
                    "reporter": report.reporter,
                    **({"recipient": recipient} if recipient else {}),
                },
            )
        )
        return out
    for i, r in enumerate(report.recipients):
        base = {
            "status": r.status,
            "diagnostic": (r.diagnostic or "")[:500] or None,
            "recipient": r.address,
            "reporter": report.reporter,
        }
        key = f"imap:{digest}:{i}"
        if r.action == "failed":
            out.append(
                Signal(
                    "bounce",
                    at,
                    "mailbox",
                    delivery_id=delivery_id,
                    dedupe_key=key,
                    detail={"hard": r.severity == "hard", **base},
                )
            )
        elif r.action == "delayed":
            out.append(Signal("deferred", at, "mailbox", delivery_id, dedupe_key=key, detail=base))
        elif r.action in ("delivered", "relayed", "expanded"):
            out.append(Signal("delivered", at, "mailbox", delivery_id, dedupe_key=key, detail=base))
    return out


def decode(signer: Signer, uid: str, raw: bytes, at: datetime) -> Decoded:
    """Parse one message and turn it into signals (pure; never raises)."""
    report = parse_report(raw)
    delivery = (
        signer.delivery_named(report.envelope_addresses, report.original_message_id)
        if report.kind != "unknown"
        else None
    )
    signals: list[Signal] = []
    if delivery is not None and report.kind in _ACTED:
        digest = hashlib.sha256(raw).hexdigest()[:32]
        signals = signals_of(report, delivery, digest, at)
    return Decoded(uid, report, delivery, tuple(signals))


# -- IMAP ------------------------------------------------------------------------------------


def _context(settings: MailboxSettings) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(settings.ca_file) if settings.ca_file else None)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


class _Plain(imaplib.IMAP4):
    """IMAP4 over a connection to the vetted address (F3)."""

    def __init__(self, target: hosts.Target, timeout: float) -> None:
        self._target = target
        super().__init__(target.host, target.port, timeout=timeout)

    def _create_socket(self, timeout: float | None) -> socket.socket:
        return hosts.connect(self._target, timeout or 30.0)


class _Implicit(imaplib.IMAP4_SSL):
    """IMAP4 over TLS to the vetted address, the certificate checked for the configured host."""

    def __init__(self, target: hosts.Target, context: ssl.SSLContext, timeout: float) -> None:
        self._target = target
        super().__init__(target.host, target.port, ssl_context=context, timeout=timeout)

    def _create_socket(self, timeout: float | None) -> socket.socket:
        sock = hosts.connect(self._target, timeout or 30.0)
        wrapped: socket.socket = self.ssl_context.wrap_socket(sock, server_hostname=self.host)
        return wrapped


def _ok(response: tuple[str, list[Any]], what: str) -> list[Any]:
    typ, data = response
    if typ != "OK":
        detail = b" ".join(d for d in data if isinstance(d, bytes)).decode(errors="replace")
        raise MailboxError(f"{what} failed: {detail or typ}")
    return data


def explain(exc: BaseException, settings: MailboxSettings) -> str:
    """A failure in plain words: DNS, refused, TLS, login, folder…"""
    where = f"{settings.host}:{settings.port}"
    if isinstance(exc, MailboxError):
        return str(exc)
    if isinstance(exc, hosts.HostError):
        return str(exc)
    if isinstance(exc, socket.gaierror):
        return f"cannot resolve {settings.host} (DNS): {exc.strerror or exc}"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return (
            f"the TLS certificate of {where} is not trusted: {exc.verify_message} "
            "(set `ca_file` for a private CA; verification is never turned off)"
        )
    if isinstance(exc, ssl.SSLError):
        return f"TLS handshake with {where} failed: {exc.reason or exc}"
    if isinstance(exc, ConnectionRefusedError):
        return f"connection to {where} refused (is the IMAP server running on that port?)"
    if isinstance(exc, TimeoutError | socket.timeout):
        return f"no answer from {where} within {settings.timeout.total_seconds():g} s"
    if isinstance(exc, imaplib.IMAP4.error):
        text = str(exc)
        if "AUTHENTICATIONFAILED" in text.upper() or "LOGIN" in text.upper():
            return f"login as {settings.user} refused: {text}"
        return f"IMAP error from {where}: {text}"
    if isinstance(exc, OSError):
        return f"network error talking to {where}: {exc.strerror or exc}"
    return f"{type(exc).__name__}: {exc}"


class Session:
    """One logged-in IMAP session on the mailbox's folder (blocking; use in a thread)."""

    def __init__(self, settings: MailboxSettings) -> None:
        self.settings = settings
        self.client: imaplib.IMAP4 | None = None
        self.capabilities: set[str] = set()
        self.folder_ready = False
        #: the server's hierarchy separator (``LIST "" ""``); ``None`` for a flat namespace
        self.separator: str | None = "/"

    def open(self) -> int:
        """Connect, log in and select the folder; return how many messages it holds."""
        s = self.settings
        timeout = s.timeout.total_seconds()
        target = hosts.resolve(s.host, s.port, allow_private=s.allow_private)
        context = _context(s)
        if s.tls == "implicit":
            client: imaplib.IMAP4 = _Implicit(target, context, timeout)
        else:
            client = _Plain(target, timeout)
            try:
                client.starttls(context)
            except BaseException:
                with contextlib.suppress(OSError):
                    client.shutdown()
                raise
        self.client = client
        try:
            _ok(client.login(s.user, s.password.reveal()), f"login as {s.user}")
        except imaplib.IMAP4.error as exc:
            raise MailboxError(f"login as {s.user} refused: {exc}") from None
        # imaplib keeps the pre-login list; MOVE and UIDPLUS often show only after LOGIN
        data = _ok(client.capability(), "CAPABILITY")
        self.capabilities = set(data[0].decode().upper().split()) if data and data[0] else set()
        self.separator = separator_of(_ok(client.list('""', '""'), 'LIST "" ""'))
        folder = self.server_name(s.folder)
        typ, data = client.select(quote(folder))
        if typ != "OK":
            spelled = f" (spelled {folder!r} on this server)" if folder != s.folder else ""
            raise MailboxError(f"folder {s.folder!r}{spelled} cannot be opened: {_text(data)}")
        return int(data[0] or 0) if data and data[0] else 0

    def server_name(self, name: str) -> str:
        """`name` as the server spells it: the configuration writes hierarchy with ``/``
        (``disparo/handled``), which becomes ``disparo.handled`` on a server whose separator
        is ``.`` (stock Dovecot with Maildir++)."""
        if self.separator and self.separator != "/":
            return self.separator.join(name.split("/"))
        return name

    def pending(self) -> list[str]:
        """UIDs of the messages not given up on, oldest first."""
        assert self.client is not None
        data = _ok(self.client.uid("SEARCH", "UNKEYWORD", UNPARSED), "SEARCH")
        return [u.decode() for u in (data[0] or b"").split()]

    def fetch(self, uids: Sequence[str]) -> list[tuple[str, bytes]]:
        """The raw messages (``BODY.PEEK[]``: left unread)."""
        assert self.client is not None
        if not uids:
            return []
        data = _ok(self.client.uid("FETCH", ",".join(uids), "(UID BODY.PEEK[])"), "FETCH")
        out: list[tuple[str, bytes]] = []
        for item in data:
            if not isinstance(item, tuple) or len(item) < 2:
                continue
            head = item[0].decode(errors="replace")
            marker = head.upper().find("UID ")
            if marker < 0:
                continue
            uid = head[marker + 4 :].split()[0].strip(")")
            out.append((uid, item[1]))
        return out

    def flag_unparsed(self, uids: Sequence[str]) -> None:
        assert self.client is not None
        if uids:
            _ok(self.client.uid("STORE", ",".join(uids), "+FLAGS", f"({UNPARSED})"), "STORE")

    def move(self, uids: Sequence[str]) -> None:
        """Move handled messages to the processed folder (created on first use)."""
        assert self.client is not None
        if not uids:
            return
        name = self.server_name(self.settings.processed_folder)
        target = quote(name)
        if not self.folder_ready:
            typ, data = self.client.create(target)
            if typ != "OK" and "EXISTS" not in _text(data).upper():
                raise MailboxError(
                    f"cannot create folder {name!r} (processed_folder "
                    f"{self.settings.processed_folder!r}, the server's hierarchy separator is "
                    f"{self.separator!r}): {_text(data)}"
                )
            self.folder_ready = True
        joined = ",".join(uids)
        if "MOVE" in self.capabilities:
            _ok(self.client.uid("MOVE", joined, target), "MOVE")
            return
        _ok(self.client.uid("COPY", joined, target), "COPY")
        _ok(self.client.uid("STORE", joined, "+FLAGS", r"(\Deleted)"), "STORE")
        if "UIDPLUS" in self.capabilities:
            _ok(self.client.uid("EXPUNGE", joined), "EXPUNGE")
        else:
            _ok(self.client.expunge(), "EXPUNGE")

    def close(self) -> None:
        if self.client is None:
            return
        with contextlib.suppress(Exception):
            self.client.logout()
        self.client = None


def separator_of(data: Sequence[Any]) -> str | None:
    """The hierarchy separator in the answer to ``LIST "" ""`` (RFC 3501 6.3.8), e.g.
    ``(\\Noselect) "." ""``; ``None`` when the server says ``NIL`` (a flat namespace), ``/``
    when the answer cannot be read."""
    for item in data:
        raw = item[0] if isinstance(item, tuple) else item
        if not isinstance(raw, bytes):
            continue
        text = raw.decode(errors="replace")
        rest = text[text.find(")") + 1 :].strip() if ")" in text else text.strip()
        if rest.upper().startswith("NIL"):
            return None
        if rest.startswith('"\\'):
            return rest[2:3]
        if rest.startswith('"') and len(rest) >= 3:
            return rest[1]
    return "/"


def _text(data: Any) -> str:
    if isinstance(data, list | tuple):
        return " ".join(_text(d) for d in data if d is not None)
    if isinstance(data, bytes):
        return data.decode(errors="replace")
    return str(data)


def check_mailbox(settings: MailboxSettings) -> str:
    """Connect, log in, open the folder and say how many messages wait (``mailboxes test``);
    raise :class:`MailboxError` with the failure in plain words."""
    session = Session(settings)
    try:
        total = session.open()
        waiting = len(session.pending())
    except Exception as exc:
        raise MailboxError(explain(exc, settings)) from exc
    finally:
        session.close()
    return (
        f"connected to {settings.host}:{settings.port} ({settings.tls} TLS, certificate "
        f"verified), logged in as {settings.user}, folder {settings.folder!r}: {total} "
        f"message(s), {waiting} to read"
    )


# -- the poller --------------------------------------------------------------------------------


class MailboxPoller:
    """Polls one mailbox on its schedule; ``poll()`` once, ``run_forever()`` until stopped."""

    def __init__(
        self,
        store: Store,
        settings: MailboxSettings,
        clock: Clock,
        signer: Signer,
        apply: ApplyFn,
        *,
        owner: str | None = None,
        on_result: Callable[[PollResult], None] | None = None,
    ) -> None:
        self.store = store
        self.settings = settings
        self.clock = clock
        self.signer = signer
        self.apply = apply
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}"
        self.on_result = on_result

    async def poll(self) -> PollResult:
        """Read the mailbox once, until no usable message is left."""
        s = self.settings
        result = PollResult(s.name)
        lease = max(s.every * 2, s.timeout * 4, timedelta(minutes=2))
        if not await self.store.run(self.store.mailboxes.lease, s.name, self.owner, lease):
            result.ok, result.message = True, "another engine is polling this mailbox"
            return result
        started = self.clock.now()
        session = Session(s)
        try:
            await asyncio.to_thread(session.open)
            seen: set[str] = set()
            while True:  # batch after batch until no unread report is left (bounded memory)
                pending = await asyncio.to_thread(session.pending)
                batch = [uid for uid in pending if uid not in seen][:BATCH]
                if not batch:
                    break
                seen.update(batch)  # a message the server failed to move is not read twice
                await self._round(session, batch, result)
        except Exception as exc:
            result.ok, result.message = False, explain(exc, s)
            log.warning("mailbox %s: %s", s.name, result.message)
        finally:
            await asyncio.to_thread(session.close)
        if result.ok:
            result.message = (
                f"{result.handled} handled, {result.unparsed} kept unread"
                if result.fetched
                else "no new messages"
            )
        await self.store.run(
            self.store.mailboxes.record_poll,
            s.name,
            status="ok" if result.ok else "error",
            message=result.message,
            polled_at=started,
            next_poll_at=self.clock.now() + s.every,
            handled=result.handled,
            unparsed=result.unparsed,
        )
        if self.on_result is not None:
            self.on_result(result)
        return result

    async def release(self) -> None:
        """Give the mailbox's lease back (a stopping engine): another engine, or ``disparo
        mailboxes poll``, may poll it at once instead of after the lease runs out."""
        await self.store.run(self.store.mailboxes.release, self.settings.name, self.owner)

    async def _round(self, session: Session, uids: Sequence[str], result: PollResult) -> None:
        fetched = await asyncio.to_thread(session.fetch, uids)
        result.fetched += len(fetched)
        now = self.clock.now()
        decoded = await asyncio.to_thread(
            lambda: [decode(self.signer, uid, raw, now) for uid, raw in fetched]
        )
        signals = [sig for d in decoded for sig in d.signals]
        if signals:
            applied = await self.apply(signals)  # stored before anything moves
            result.events += sum(len(a.events) for a in applied)
            result.duplicates += sum(a.duplicate for a in applied)
        handled = [d.uid for d in decoded if d.usable]
        kept = [d.uid for d in decoded if not d.usable]
        for d in decoded:
            result.kinds[d.report.kind] = result.kinds.get(d.report.kind, 0) + 1
            if not d.usable:
                if d.report.kind == "unknown":
                    log.info("mailbox %s: message %s is no report; kept", self.settings.name, d.uid)
                else:
                    result.unknown += 1
                    log.info(
                        "mailbox %s: %s report %s names no delivery of ours; kept",
                        self.settings.name,
                        d.report.kind,
                        d.uid,
                    )
        await asyncio.to_thread(session.flag_unparsed, kept)
        await asyncio.to_thread(session.move, handled)
        result.handled += len(handled)
        result.unparsed += len(kept)

    async def run_forever(self, stop: asyncio.Event) -> None:
        """Poll every ``every`` until ``stop`` is set; failures are recorded and retried."""
        while not stop.is_set():
            try:
                await self.poll()
            except Exception:
                log.exception("mailbox %s: poll failed", self.settings.name)
            await wait_event(self.clock, stop, self.settings.every.total_seconds())
