"""The loopback IMAP server answers the bounce poller's commands as a real one would (imaplib)."""

from __future__ import annotations

import contextlib
import imaplib
import re
import ssl
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import trustme

from tests.peers.imap import ImapServer, start_imap_server

UNPARSED = "$DisparoUnparsed"
INBOX_LIST = b'(\\HasNoChildren) "/" INBOX'
BOUNCE = (
    b"From: MAILER-DAEMON@mx.example\r\n"
    b"To: bounces@disparo.example\r\n"
    b"Subject: Undelivered Mail Returned to Sender\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"\r\n"
    b"<maria@cliente.example>: host mx.cliente.example said: 550 5.1.1 unknown user\r\n"
)


def bounce(n: int) -> bytes:
    return BOUNCE.replace(b"Returned to Sender", b"Returned to Sender #%d" % n)


@pytest.fixture
def start_imap() -> Iterator[Callable[..., ImapServer]]:
    """Start IMAP peers; at teardown check every client logged out, then stop them."""
    servers: list[ImapServer] = []

    def start(**kwargs: Any) -> ImapServer:
        servers.append(start_imap_server(**kwargs))
        return servers[-1]

    yield start
    try:
        for server in servers:
            server.wait_idle()
    finally:
        for server in servers:
            server.stop()


def client_context(server: ImapServer) -> ssl.SSLContext:
    """A verifying client context that trusts the peer's CA, as the engine builds it."""
    assert server.ca_pem is not None
    return ssl.create_default_context(cafile=str(server.ca_pem))


def connect(server: ImapServer, context: ssl.SSLContext | None = None) -> imaplib.IMAP4:
    """Connect (and upgrade, for STARTTLS) the way the engine does; not logged in yet."""
    if server.tls == "implicit":
        return imaplib.IMAP4_SSL(
            server.host, server.port, ssl_context=context or client_context(server), timeout=5
        )
    client = imaplib.IMAP4(server.host, server.port, timeout=5)
    if server.tls == "starttls":
        try:
            client.starttls(context or client_context(server))
        except BaseException:
            with contextlib.suppress(OSError):  # the failed handshake already closed the socket
                client.shutdown()
            raise
    return client


def ok(response: tuple[str, list[Any]]) -> list[Any]:
    typ, data = response
    assert typ == "OK", response
    return data


def uids(response: tuple[str, list[Any]]) -> list[int]:
    return [int(u) for u in ok(response)[0].split()]


def capabilities(client: imaplib.IMAP4) -> set[str]:
    """CAPABILITY again: imaplib keeps the pre-LOGIN list, and MOVE only shows after LOGIN."""
    return set(ok(client.capability())[0].decode().upper().split())


@pytest.mark.parametrize("tls", ["implicit", "starttls"])
def test_bounce_poll_cycle(start_imap: Callable[..., ImapServer], tls: str) -> None:
    server = start_imap(tls=tls)
    first = server.deliver(bounce(1))
    server.deliver(bounce(2), flags={UNPARSED})  # a previous poll gave up on it
    server.deliver(bounce(3))

    with connect(server) as client:
        ok(client.login(server.user, server.password))
        assert {"MOVE", "UIDPLUS"} <= capabilities(client)
        assert ok(client.select("INBOX")) == [b"3"]
        assert uids(client.uid("SEARCH", "ALL")) == [first, first + 1, first + 2]
        assert uids(client.uid("SEARCH", "UNKEYWORD", UNPARSED)) == [first, first + 2]
        assert uids(client.uid("SEARCH", "KEYWORD", UNPARSED)) == [first + 1]

        # BODY.PEEK[] returns the message byte for byte and leaves it unread ...
        data = ok(client.uid("FETCH", str(first), "(BODY.PEEK[])"))
        assert data[0][1] == bounce(1)
        assert server.messages()[0] == (bounce(1), set())
        # ... RFC822 marks it \Seen
        data = ok(client.uid("FETCH", str(first + 2), "(RFC822)"))
        assert data[0][1] == bounce(3)
        assert server.messages()[2] == (bounce(3), {"\\Seen"})

        # A bounce the parser cannot read is marked, so the next poll skips it
        ok(client.uid("STORE", str(first), "+FLAGS", rf"(\Seen {UNPARSED})"))
        assert server.messages()[0] == (bounce(1), {"\\Seen", UNPARSED})
        assert uids(client.uid("SEARCH", "UNKEYWORD", UNPARSED)) == [first + 2]

        # Parsed ones go to a folder created on first use
        assert ok(client.list()) == [INBOX_LIST]
        typ, _ = client.select("Processed")
        assert typ == "NO"
        ok(client.select("INBOX"))
        ok(client.create("Processed"))
        assert client.create("Processed")[0] == "NO"  # [ALREADYEXISTS]
        assert ok(client.list()) == [INBOX_LIST, b'(\\HasNoChildren) "/" Processed']
        ok(client.uid("MOVE", str(first + 2), "Processed"))
        assert uids(client.uid("SEARCH", "ALL")) == [first, first + 1]

    assert server.folders() == ["INBOX", "Processed"]
    assert server.messages("Processed") == [(bounce(3), {"\\Seen"})]
    assert [raw for raw, _ in server.messages()] == [bounce(1), bounce(2)]

    # The keyword is stored with the message: a later session still sees it
    with connect(server) as client:
        ok(client.login(server.user, server.password))
        ok(client.select("INBOX"))
        assert uids(client.uid("SEARCH", "KEYWORD", UNPARSED)) == [first, first + 1]
        assert client.uid("SEARCH", "UNKEYWORD", UNPARSED) == ("OK", [b""])
    assert server.connections == 2


def test_copy_delete_expunge_when_move_is_not_offered(
    start_imap: Callable[..., ImapServer],
) -> None:
    server = start_imap(tls="implicit", move=False)
    server.create_folder("Processed")
    uid = server.deliver(bounce(1))
    server.deliver(bounce(2))

    with connect(server) as client:
        ok(client.login(server.user, server.password))
        assert "MOVE" not in capabilities(client)
        assert "UIDPLUS" in capabilities(client)
        ok(client.select("INBOX"))
        with pytest.raises(imaplib.IMAP4.error, match="Unknown command"):
            client.uid("MOVE", str(uid), "Processed")  # BAD
        ok(client.uid("COPY", str(uid), "Processed"))
        ok(client.uid("STORE", str(uid), "+FLAGS", r"(\Deleted)"))
        assert server.messages()[0] == (bounce(1), {"\\Deleted"})
        ok(client.expunge())
        assert uids(client.uid("SEARCH", "ALL")) == [uid + 1]

    assert server.messages("Processed") == [(bounce(1), set())]
    assert server.messages() == [(bounce(2), set())]


def test_new_mail_shows_up_in_a_selected_session(start_imap: Callable[..., ImapServer]) -> None:
    server = start_imap(tls="none")
    assert server.ca_pem is None
    with connect(server) as client:
        ok(client.login(server.user, server.password))
        ok(client.select("INBOX"))
        assert client.uid("SEARCH", "ALL") == ("OK", [b""])
        uid = server.deliver(bounce(1))
        ok(client.noop())
        assert uids(client.uid("SEARCH", "UNSEEN")) == [uid]


def test_deliver_to_other_folders(start_imap: Callable[..., ImapServer]) -> None:
    server = start_imap(tls="none")
    assert server.folders() == ["INBOX"]
    server.deliver(bounce(1), "Bounces/2025")
    server.deliver(bounce(2), "inbox", flags={"\\Seen"})
    assert server.folders() == ["INBOX", "Bounces/2025"]
    assert server.messages("Bounces/2025") == [(bounce(1), set())]
    assert server.messages("INBOX") == [(bounce(2), {"\\Seen"})]
    with pytest.raises(KeyError):
        server.messages("Nowhere")
    with connect(server) as client:
        ok(client.login(server.user, server.password))
        assert ok(client.select('"Bounces/2025"')) == [b"1"]


def test_server_without_keywords_keeps_them_for_the_session_only(
    start_imap: Callable[..., ImapServer],
) -> None:
    server = start_imap(tls="none", keywords=False)
    uid = server.deliver(bounce(1))
    with connect(server) as client:
        ok(client.login(server.user, server.password))
        ok(client.select("INBOX"))
        permanent = client.response("PERMANENTFLAGS")[1][0]
        assert b"\\*" not in permanent
        ok(client.uid("STORE", str(uid), "+FLAGS", rf"(\Seen {UNPARSED})"))
    assert server.messages() == [(bounce(1), {"\\Seen"})]


def test_keywords_are_permanent_flags(start_imap: Callable[..., ImapServer]) -> None:
    server = start_imap(tls="none")
    with connect(server) as client:
        ok(client.login(server.user, server.password))
        ok(client.select("INBOX"))
        assert b"\\*" in client.response("PERMANENTFLAGS")[1][0]
        assert b"\\*" not in client.response("FLAGS")[1][0]


@pytest.mark.parametrize("tls", ["implicit", "starttls", "none"])
def test_wrong_password_is_refused(start_imap: Callable[..., ImapServer], tls: str) -> None:
    server = start_imap(tls=tls)
    with connect(server) as client:
        with pytest.raises(imaplib.IMAP4.error, match="AUTHENTICATIONFAILED"):
            client.login(server.user, "wrong-password")
        with pytest.raises(imaplib.IMAP4.error, match="AUTHENTICATIONFAILED"):
            client.login("someone-else", server.password)
        ok(client.login(server.user, server.password))  # the connection is still usable


def test_starttls_server_refuses_login_in_the_clear(start_imap: Callable[..., ImapServer]) -> None:
    server = start_imap(tls="starttls")
    with imaplib.IMAP4(server.host, server.port, timeout=5) as client:
        assert {"STARTTLS", "LOGINDISABLED"} <= set(client.capabilities)
        with pytest.raises(imaplib.IMAP4.error, match="LOGIN is disabled"):
            client.login(server.user, server.password)
    for tls in ("implicit", "none"):  # neither offers STARTTLS
        other = start_imap(tls=tls)
        with connect(other) as client:
            assert "STARTTLS" not in client.capabilities
            assert "LOGINDISABLED" not in client.capabilities


@pytest.mark.parametrize("tls", ["implicit", "starttls"])
def test_tls_handshake_fails_without_the_peers_ca(
    start_imap: Callable[..., ImapServer], tls: str
) -> None:
    server = start_imap(tls=tls)
    untrusted = ssl.create_default_context()
    trustme.CA().configure_trust(untrusted)
    with pytest.raises(ssl.SSLCertVerificationError, match="certificate verify failed"):
        connect(server, untrusted)

    # The certificate is for the names it was issued for, and the server survives the failure
    other = start_imap(tls=tls, cert_hostnames=("imap.disparo.test",))
    with pytest.raises(ssl.SSLCertVerificationError, match=re.escape("IP address mismatch")):
        connect(other)
    with connect(server) as client:
        ok(client.login(server.user, server.password))
