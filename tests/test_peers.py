"""The loopback FTP/FTPS and SFTP test peers behave like the real servers they stand in for."""

from __future__ import annotations

import base64
import ftplib
import hashlib
import io
import shutil
import socket
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paramiko
import pytest

from tests.peers.ftp import FtpServer, make_ca, start_ftp_server
from tests.peers.sftp import SftpServer, start_sftp_server

PAYLOAD = bytes(range(256)) * 1200  # 300 KiB: several data-channel writes
TLS_VERSIONS = [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3]


class ReusingFTP_TLS(ftplib.FTP_TLS):
    """Explicit FTPS client that resumes the control connection's TLS session on data
    connections (stdlib ``FTP_TLS`` does not: CPython issue 63699)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.reused: list[bool] = []  # per data connection: did the session resume?

    def ntransfercmd(
        self, cmd: str, rest: int | str | None = None
    ) -> tuple[socket.socket, int | None]:
        conn, size = ftplib.FTP.ntransfercmd(self, cmd, rest)
        if self._prot_p:  # type: ignore[attr-defined]  # set by prot_p()
            assert isinstance(self.sock, ssl.SSLSocket)
            conn = self.context.wrap_socket(
                conn, server_hostname=self.host, session=self.sock.session
            )
            self.reused.append(bool(conn.session_reused))
        return conn, size


def ftps_client(
    server: FtpServer,
    cls: type[ftplib.FTP_TLS] = ReusingFTP_TLS,
    tls_version: ssl.TLSVersion = ssl.TLSVersion.TLSv1_3,
) -> ftplib.FTP_TLS:
    assert server.ca_pem is not None
    context = ssl.create_default_context(cafile=str(server.ca_pem))
    context.maximum_version = tls_version
    ftp = cls(context=context, timeout=5)
    ftp.connect(server.host, server.port)
    ftp.auth()
    ftp.login(server.user, server.password)
    ftp.prot_p()
    return ftp


@pytest.fixture
def files(tmp_path: Path) -> Path:
    root = tmp_path / "served"
    root.mkdir()
    (root / "big.bin").write_bytes(PAYLOAD)
    (root / "hello.txt").write_text("olá\n")
    return root


@pytest.fixture
def ftp_server(files: Path) -> Iterator[FtpServer]:
    server = start_ftp_server(files)
    yield server
    server.stop()


@pytest.fixture
def ftps_server(files: Path) -> Iterator[FtpServer]:
    server = start_ftp_server(files, tls=True)
    yield server
    server.stop()


# --- plain FTP


def test_ftp_login_list_upload_download_rename(ftp_server: FtpServer, files: Path) -> None:
    with ftplib.FTP() as ftp:
        ftp.connect(ftp_server.host, ftp_server.port, timeout=5)
        ftp.login(ftp_server.user, ftp_server.password)
        assert sorted(ftp.nlst()) == ["big.bin", "hello.txt"]
        assert dict(ftp.mlsd())["big.bin"]["size"] == str(len(PAYLOAD))

        ftp.storbinary("STOR up.csv", io.BytesIO(b"email\na@example.test\n"))
        ftp.rename("up.csv", "done.csv")
        got = bytearray()
        ftp.retrbinary("RETR big.bin", got.extend)

    assert got == PAYLOAD
    assert (files / "done.csv").read_bytes() == b"email\na@example.test\n"
    assert not (files / "up.csv").exists()
    assert ftp_server.transfers == 1


def test_ftp_wrong_password_is_refused(ftp_server: FtpServer) -> None:
    with ftplib.FTP() as ftp:
        ftp.connect(ftp_server.host, ftp_server.port, timeout=5)
        with pytest.raises(ftplib.error_perm, match=r"^530"):
            ftp.login(ftp_server.user, "wrong")


def test_ftp_drop_mid_transfer_cuts_data_and_control_once(ftp_server: FtpServer) -> None:
    ftp_server.drop_next_transfer(after_bytes=1000)
    got = bytearray()
    with ftplib.FTP() as ftp:
        ftp.connect(ftp_server.host, ftp_server.port, timeout=5)
        ftp.login(ftp_server.user, ftp_server.password)
        with pytest.raises(EOFError):  # the control connection closed without a reply
            ftp.retrbinary("RETR big.bin", got.extend)
    assert got == PAYLOAD[:1000]

    with ftplib.FTP() as ftp:  # only once: the retry gets everything
        ftp.connect(ftp_server.host, ftp_server.port, timeout=5)
        ftp.login(ftp_server.user, ftp_server.password)
        again = bytearray()
        ftp.retrbinary("RETR big.bin", again.extend)
    assert again == PAYLOAD
    assert ftp_server.transfers == 1


def test_ftp_stop_frees_the_port(files: Path) -> None:
    server = start_ftp_server(files)
    server.stop()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((server.host, server.port), timeout=2).close()


# --- explicit FTPS


@pytest.mark.parametrize("tls_version", TLS_VERSIONS, ids=["tls1.2", "tls1.3"])
def test_ftps_verified_transfers_with_session_reuse(
    ftps_server: FtpServer, files: Path, tls_version: ssl.TLSVersion
) -> None:
    with ftps_client(ftps_server, tls_version=tls_version) as ftp:
        assert isinstance(ftp.sock, ssl.SSLSocket)
        assert ftp.sock.version() == {"TLSv1_2": "TLSv1.2", "TLSv1_3": "TLSv1.3"}[tls_version.name]
        got = bytearray()
        ftp.retrbinary("RETR big.bin", got.extend)
        assert sorted(ftp.nlst()) == ["big.bin", "hello.txt"]
        assert "hello.txt" in dict(ftp.mlsd())
        ftp.storbinary("STOR up.bin", io.BytesIO(b"\x00\x01" * 5000))
        ftp.rename("up.bin", "kept.bin")
        assert isinstance(ftp, ReusingFTP_TLS)
        assert ftp.reused == [True] * 4
    assert got == PAYLOAD
    assert (files / "kept.bin").read_bytes() == b"\x00\x01" * 5000
    assert ftps_server.transfers == 1
    assert ftps_server.session_reuse_refusals == 0


@pytest.mark.parametrize("tls_version", TLS_VERSIONS, ids=["tls1.2", "tls1.3"])
@pytest.mark.parametrize(
    "transfer",
    [
        lambda ftp: ftp.retrbinary("RETR big.bin", lambda _: None),
        lambda ftp: ftp.nlst(),
        lambda ftp: list(ftp.mlsd()),
    ],
    ids=["retrbinary", "nlst", "mlsd"],
)
def test_ftps_refuses_data_connection_without_session_reuse(
    ftps_server: FtpServer, tls_version: ssl.TLSVersion, transfer: Any
) -> None:
    with ftps_client(ftps_server, ftplib.FTP_TLS, tls_version) as ftp:
        with pytest.raises(ftplib.error_perm, match=r"^522 "):
            transfer(ftp)
        assert ftp.voidcmd("NOOP").startswith("200")  # the control connection stays usable
    assert ftps_server.session_reuse_refusals == 1
    assert ftps_server.transfers == 0


def test_ftps_refuses_upload_without_session_reuse(ftps_server: FtpServer, files: Path) -> None:
    ftp = ftps_client(ftps_server, ftplib.FTP_TLS)
    try:
        # The server hangs up while the client writes: a reset or, if everything was already
        # buffered, the 522 itself (vsftpd behaves the same).
        with pytest.raises((OSError, ftplib.error_perm)):
            ftp.storbinary("STOR up.bin", io.BytesIO(PAYLOAD))
    finally:
        ftp.close()  # not quit(): the 522 may still be waiting on the control connection
    assert ftps_server.session_reuse_refusals == 1
    assert not (files / "up.bin").exists() or (files / "up.bin").stat().st_size == 0


def test_ftps_refuses_a_session_from_another_control_connection(ftps_server: FtpServer) -> None:
    class Borrowing(ReusingFTP_TLS):
        lender: ftplib.FTP_TLS

        def ntransfercmd(
            self, cmd: str, rest: int | str | None = None
        ) -> tuple[socket.socket, int | None]:
            conn, size = ftplib.FTP.ntransfercmd(self, cmd, rest)
            assert isinstance(self.lender.sock, ssl.SSLSocket)
            wrapped = self.lender.context.wrap_socket(  # a session belongs to its context
                conn, server_hostname=self.host, session=self.lender.sock.session
            )
            return wrapped, size

    with ftps_client(ftps_server) as lender, ftps_client(ftps_server, Borrowing) as borrower:
        assert isinstance(borrower, Borrowing)
        borrower.lender = lender
        with pytest.raises(ftplib.error_perm, match=r"^522 "):
            borrower.nlst()
    assert ftps_server.session_reuse_refusals == 1


def test_ftps_lenient_mode_accepts_stdlib_client(files: Path) -> None:
    server = start_ftp_server(files, tls=True, strict_session_reuse=False)
    try:
        with ftps_client(server, ftplib.FTP_TLS) as ftp:
            got = bytearray()
            ftp.retrbinary("RETR big.bin", got.extend)
        assert got == PAYLOAD
        assert server.session_reuse_refusals == 0
    finally:
        server.stop()


def test_ftps_requires_tls_on_control_and_data(ftps_server: FtpServer) -> None:
    with ftplib.FTP() as ftp:
        ftp.connect(ftps_server.host, ftps_server.port, timeout=5)
        with pytest.raises(ftplib.error_perm, match=r"^550 SSL/TLS required on the control"):
            ftp.login(ftps_server.user, ftps_server.password)
    assert ftps_server.ca_pem is not None
    context = ssl.create_default_context(cafile=str(ftps_server.ca_pem))
    with ftplib.FTP_TLS(context=context, timeout=5) as ftps:
        ftps.connect(ftps_server.host, ftps_server.port)
        ftps.login(ftps_server.user, ftps_server.password)  # AUTH TLS, but no PROT P
        with pytest.raises(ftplib.error_perm, match=r"^550 SSL/TLS required on the data"):
            ftps.nlst()


@pytest.mark.parametrize(
    ("options", "reason"),
    [
        ({"cert_hostnames": ("ftp.example.test",)}, "IP address mismatch"),
        ({"self_signed": True}, "unable to get local issuer certificate"),
    ],
    ids=["hostname-mismatch", "untrusted-issuer"],
)
def test_ftps_certificate_verification_refuses(
    files: Path, options: dict[str, Any], reason: str
) -> None:
    server = start_ftp_server(files, tls=True, **options)
    try:
        assert server.ca_pem is not None
        context = ssl.create_default_context(cafile=str(server.ca_pem))
        with ftplib.FTP_TLS(context=context, timeout=5) as ftp:
            ftp.connect(server.host, server.port)
            with pytest.raises(ssl.SSLCertVerificationError, match=reason):
                ftp.auth()
    finally:
        server.stop()


def test_ftps_accepts_a_caller_supplied_ca(files: Path) -> None:
    ca = make_ca()
    server = start_ftp_server(files, tls=True, ca=ca, cert_hostnames=("localhost",))
    try:
        context = ssl.create_default_context()
        ca.configure_trust(context)
        with ftplib.FTP_TLS(context=context, timeout=5) as ftp:
            ftp.connect("localhost", server.port)
            ftp.auth()
            ftp.login(server.user, server.password)
            assert ftp.pwd() == "/"
    finally:
        server.stop()


def test_ftps_drop_mid_transfer(ftps_server: FtpServer) -> None:
    ftps_server.drop_next_transfer(after_bytes=1000)
    got = bytearray()
    with ftps_client(ftps_server) as ftp, pytest.raises((OSError, EOFError)):
        ftp.retrbinary("RETR big.bin", got.extend)
    assert got == PAYLOAD[:1000]
    with ftps_client(ftps_server) as ftp:
        again = bytearray()
        ftp.retrbinary("RETR big.bin", again.extend)
    assert again == PAYLOAD
    assert ftps_server.transfers == 1


# --- SFTP


@pytest.fixture
def sftp_server(files: Path) -> Iterator[SftpServer]:
    server = start_sftp_server(files)
    yield server
    server.stop()


def known_hosts(tmp_path: Path, *lines: str) -> Path:
    path = tmp_path / "known_hosts"
    path.write_text("".join(f"{line}\n" for line in lines))
    return path


def ssh_client(server: SftpServer, known: Path, **auth: Any) -> paramiko.SSHClient:
    client = paramiko.SSHClient()
    client.load_host_keys(str(known))
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    options = auth or {"password": server.password}
    try:
        client.connect(
            server.host,
            server.port,
            username=options.pop("username", server.user),
            look_for_keys=False,
            allow_agent=False,
            timeout=5,
            **options,
        )
    except BaseException:
        client.close()
        raise
    return client


def test_sftp_list_get_put_rename_with_pinned_host_key(
    sftp_server: SftpServer, files: Path, tmp_path: Path
) -> None:
    known = known_hosts(tmp_path, sftp_server.known_hosts_line)
    with ssh_client(sftp_server, known) as client, client.open_sftp() as sftp:
        key = client.get_transport().get_remote_server_key()
        digest = base64.b64encode(hashlib.sha256(key.asbytes()).digest()).rstrip(b"=")
        assert f"SHA256:{digest.decode()}" == sftp_server.fingerprint

        assert sorted(sftp.listdir(".")) == ["big.bin", "hello.txt"]
        assert sftp.listdir("/..") == sftp.listdir("/")  # chrooted to the served folder
        got = io.BytesIO()
        sftp.getfo("big.bin", got)
        sftp.putfo(io.BytesIO(b"phone\n+5511999999999\n"), "up.csv")
        sftp.rename("up.csv", "done.csv")
    assert got.getvalue() == PAYLOAD
    assert (files / "done.csv").read_bytes() == b"phone\n+5511999999999\n"
    assert not (files / "up.csv").exists()
    assert sftp_server.reads_completed == 1


def test_sftp_key_auth(sftp_server: SftpServer, tmp_path: Path) -> None:
    known = known_hosts(tmp_path, sftp_server.known_hosts_line)
    assert sftp_server.client_key_path is not None
    key = paramiko.Ed25519Key.from_private_key_file(str(sftp_server.client_key_path))
    with ssh_client(sftp_server, known, pkey=key) as client, client.open_sftp() as sftp:
        assert "hello.txt" in sftp.listdir(".")


def test_sftp_has_no_shell(sftp_server: SftpServer, tmp_path: Path) -> None:
    known = known_hosts(tmp_path, sftp_server.known_hosts_line)
    with ssh_client(sftp_server, known) as client, pytest.raises(paramiko.SSHException):
        client.exec_command("id")


@pytest.mark.parametrize(
    "auth",
    [{"password": "wrong"}, {"username": "intruder", "password": "s3cret-sftp"}],
    ids=["wrong-password", "unknown-user"],
)
def test_sftp_bad_credentials_are_refused(
    sftp_server: SftpServer, tmp_path: Path, auth: dict[str, str]
) -> None:
    known = known_hosts(tmp_path, sftp_server.known_hosts_line)
    with pytest.raises(paramiko.AuthenticationException):
        ssh_client(sftp_server, known, **auth)


def test_sftp_unknown_host_is_refused(sftp_server: SftpServer, tmp_path: Path) -> None:
    known = known_hosts(tmp_path)
    with pytest.raises(paramiko.SSHException, match="not found in known_hosts"):
        ssh_client(sftp_server, known)


def test_sftp_changed_host_key_is_refused_and_kept_key_is_accepted(
    files: Path, tmp_path: Path
) -> None:
    first = start_sftp_server(files)
    first.stop()
    pinned = first.known_hosts_line.split(" ", 1)[1]  # "ssh-ed25519 AAAA..."

    changed = start_sftp_server(files)  # a new key
    try:
        assert changed.fingerprint != first.fingerprint
        known = known_hosts(tmp_path, f"[{changed.host}]:{changed.port} {pinned}")
        with pytest.raises(paramiko.BadHostKeyException):
            ssh_client(changed, known)
    finally:
        changed.stop()

    same = start_sftp_server(files, host_key_path=first.host_key_path)
    try:
        assert same.fingerprint == first.fingerprint
        known = known_hosts(tmp_path, f"[{same.host}]:{same.port} {pinned}")
        with ssh_client(same, known) as client, client.open_sftp() as sftp:
            assert "big.bin" in sftp.listdir(".")
    finally:
        same.stop()


@pytest.mark.parametrize("key_type", ["ssh-ed25519", "ecdsa-sha2-nistp256"])
def test_sftp_known_hosts_line_and_fingerprint_match_ssh_keygen(
    files: Path, tmp_path: Path, key_type: str
) -> None:
    ssh_keygen = shutil.which("ssh-keygen")
    if ssh_keygen is None:
        pytest.skip("ssh-keygen (OpenSSH client) not installed")
    server = start_sftp_server(files, key_type=key_type)
    try:
        assert server.known_hosts_line.startswith(f"[127.0.0.1]:{server.port} {key_type} ")
        known = known_hosts(tmp_path, server.known_hosts_line)
        listed = subprocess.run(
            [ssh_keygen, "-lf", str(known)], check=True, capture_output=True, text=True
        ).stdout.split()
        assert listed[1] == server.fingerprint
        with ssh_client(server, known) as client:
            assert client.get_transport().get_remote_server_key().get_name() == key_type
    finally:
        server.stop()


def test_sftp_drop_mid_transfer_closes_the_connection_once(
    sftp_server: SftpServer, tmp_path: Path
) -> None:
    known = known_hosts(tmp_path, sftp_server.known_hosts_line)
    sftp_server.drop_next_transfer(after_bytes=5000)
    got = bytearray()
    with ssh_client(sftp_server, known) as client, client.open_sftp() as sftp:
        dropped = pytest.raises((OSError, EOFError, paramiko.SSHException))
        with dropped, sftp.open("big.bin", "rb") as remote:
            while chunk := remote.read(1000):
                got += chunk
        assert not client.get_transport().is_active()
    assert 0 < len(got) <= 5000
    assert got == PAYLOAD[: len(got)]

    with ssh_client(sftp_server, known) as client, client.open_sftp() as sftp:
        again = io.BytesIO()
        sftp.getfo("big.bin", again)
    assert again.getvalue() == PAYLOAD
    assert sftp_server.reads_completed == 1
