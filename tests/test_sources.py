"""Source kinds against real peers on loopback (F1–F6, F13): local folders, FTP, explicit FTPS
(certificate, host name, TLS session reuse), SFTP (known_hosts, pinned key, changed key).
Each kind passes the source contract of the test kit (``engine.testing.check_source``), the
check third-party kinds run too."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from engine.config import ConfigError, SourceSettings
from engine.plugins import load_plugins
from engine.plugins.source import Source, SourceError, unsafe_reason
from engine.testing import FolderFiles, check_source
from tests.helpers import load, write_config
from tests.peers.ftp import FtpServer, start_ftp_server
from tests.peers.sftp import SftpServer, start_sftp_server


def settings(tmp_path: Path, table: dict[str, Any], name: str = "src") -> SourceSettings:
    config = load(write_config(tmp_path, sources={name: table}))
    return config.sources[name]


def make(tmp_path: Path, table: dict[str, Any]) -> Source:
    s = settings(tmp_path, table)
    source: Source = load_plugins().source_kinds()[s.kind](s)
    return source


def test_local_source(tmp_path: Path) -> None:
    root = tmp_path / "drop"
    root.mkdir()
    check_source(make(tmp_path, {"kind": "local", "path": "drop"}), FolderFiles(root))


def test_local_missing_folder(tmp_path: Path) -> None:
    (tmp_path / "nowhere").mkdir()  # the configuration names existing folders only
    source = make(tmp_path, {"kind": "local", "path": "nowhere"})
    (tmp_path / "nowhere").rmdir()  # removed while disparo runs
    with pytest.raises(SourceError) as info, source.session():
        pass
    assert info.value.category == "not-found"


def ftp_table(server: FtpServer, kind: str = "ftp", **extra: Any) -> dict[str, Any]:
    table = {
        "kind": kind,
        "host": server.host,
        "port": server.port,
        "user": server.user,
        "password_env": "FTP_PASSWORD",
        "allow_private": True,
    }
    if kind == "ftps":
        table["ca_file"] = str(server.ca_pem)
    return table | extra


@pytest.fixture(autouse=True)
def _passwords(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FTP_PASSWORD", "s3cret-ftp")
    monkeypatch.setenv("SFTP_PASSWORD", "s3cret-sftp")


def test_ftp_source(tmp_path: Path, ftp_server: FtpServer) -> None:
    check_source(make(tmp_path, ftp_table(ftp_server)), FolderFiles(ftp_server.root))


def test_ftps_source_reuses_the_tls_session(tmp_path: Path, ftps_server: FtpServer) -> None:
    """The peer refuses (522) data connections that do not resume the control session, as
    vsftpd, FileZilla Server and ProFTPD do (NOTES.md)."""
    check_source(make(tmp_path, ftp_table(ftps_server, "ftps")), FolderFiles(ftps_server.root))
    assert ftps_server.session_reuse_refusals == 0


def test_ftps_refuses_a_certificate_for_another_host(tmp_path: Path, ftp_root: Path) -> None:
    server = start_ftp_server(ftp_root, tls=True, cert_hostnames=("ftp.example.test",))
    try:
        source = make(tmp_path, ftp_table(server, "ftps"))
        with pytest.raises(SourceError) as info, source.session():
            pass
        assert info.value.category == "tls" and "127.0.0.1" in str(info.value)
    finally:
        server.stop()


def test_ftps_refuses_an_untrusted_certificate(tmp_path: Path, ftp_root: Path) -> None:
    server = start_ftp_server(ftp_root, tls=True, self_signed=True)
    try:
        source = make(tmp_path, ftp_table(server, "ftps"))
        with pytest.raises(SourceError) as info, source.session():
            pass
        assert info.value.category == "tls" and "certificate" in str(info.value)
    finally:
        server.stop()


def test_ftp_wrong_password_is_an_auth_failure(
    tmp_path: Path, ftp_server: FtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FTP_PASSWORD", "wrong")
    with pytest.raises(SourceError) as info, make(tmp_path, ftp_table(ftp_server)).session():
        pass
    assert info.value.category == "auth"
    assert "wrong" not in str(info.value)  # F5: secrets never in messages


def test_private_hosts_refused_unless_allowed(tmp_path: Path, ftp_server: FtpServer) -> None:
    with pytest.raises(ConfigError, match=r"sources\.src\.host: 127\.0\.0\.1 is a private"):
        settings(tmp_path, ftp_table(ftp_server, allow_private=False))
    # a name is checked after resolution, at connect time (F3)
    source = make(tmp_path, ftp_table(ftp_server, host="localhost", allow_private=False))
    with pytest.raises(SourceError) as info, source.session():
        pass
    assert info.value.category == "private-host" and "allow_private" in str(info.value)


def test_host_with_scheme_is_refused_with_the_fix(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r'host = "ftp\.example\.com"'):
        settings(tmp_path, {"kind": "ftp", "host": "ftp://ftp.example.com/in"})


def sftp_table(server: SftpServer, known_hosts: Path | None, **extra: Any) -> dict[str, Any]:
    table: dict[str, Any] = {
        "kind": "sftp",
        "host": server.host,
        "port": server.port,
        "user": server.user,
        "password_env": "SFTP_PASSWORD",
        "allow_private": True,
    }
    if known_hosts is not None:
        table["known_hosts"] = str(known_hosts)
    return table | extra


def known_hosts(tmp_path: Path, *lines: str) -> Path:
    path = tmp_path / "known_hosts"
    path.write_text("".join(line + "\n" for line in lines))
    return path


def test_sftp_source_with_known_hosts(tmp_path: Path, sftp_server: SftpServer) -> None:
    hosts = known_hosts(tmp_path, sftp_server.known_hosts_line)
    check_source(make(tmp_path, sftp_table(sftp_server, hosts)), FolderFiles(sftp_server.root))


def test_sftp_pinned_fingerprint_and_key_auth(tmp_path: Path, sftp_server: SftpServer) -> None:
    assert sftp_server.client_key_path is not None
    table = sftp_table(
        sftp_server,
        None,
        host_key_fingerprint=sftp_server.fingerprint,
        key_file=str(sftp_server.client_key_path),
    )
    del table["password_env"]
    source = make(tmp_path, table)
    with source.session():
        assert source.list_files() == []


def test_sftp_refuses_a_changed_host_key(tmp_path: Path, ftp_root: Path) -> None:
    first = start_sftp_server(ftp_root)
    hosts = known_hosts(tmp_path, first.known_hosts_line)
    port = first.port
    first.stop()
    second = start_sftp_server(ftp_root)  # a new key
    try:
        # the old key, recorded for the new server's port
        line = first.known_hosts_line.replace(f"]:{port} ", f"]:{second.port} ")
        hosts = known_hosts(tmp_path, line)
        with (
            pytest.raises(SourceError) as info,
            make(tmp_path, sftp_table(second, hosts)).session(),
        ):
            pass
        assert info.value.category == "hostkey" and "CHANGED" in str(info.value)
        pinned = sftp_table(second, None, host_key_fingerprint=first.fingerprint)
        with pytest.raises(SourceError) as info, make(tmp_path, pinned).session():
            pass
        assert info.value.category == "hostkey" and "not the pinned" in str(info.value)
    finally:
        second.stop()


def test_sftp_refuses_an_unknown_host(tmp_path: Path, sftp_server: SftpServer) -> None:
    hosts = known_hosts(tmp_path)
    with (
        pytest.raises(SourceError) as info,
        make(tmp_path, sftp_table(sftp_server, hosts)).session(),
    ):
        pass
    assert info.value.category == "hostkey"


def test_sftp_wrong_password(
    tmp_path: Path, sftp_server: SftpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SFTP_PASSWORD", "nope")
    hosts = known_hosts(tmp_path, sftp_server.known_hosts_line)
    with (
        pytest.raises(SourceError) as info,
        make(tmp_path, sftp_table(sftp_server, hosts)).session(),
    ):
        pass
    assert info.value.category == "auth"


@pytest.mark.parametrize(
    ("path", "why"),
    [
        ("../x.csv", ".."),
        ("/etc/passwd", "absolute"),
        ("a\x00b.csv", "control"),
        ("a\nb.csv", "control"),
        ("C:\\x.csv", "absolute"),
        ("a\\b.csv", "backslash"),
        ("a//b.csv", "empty"),
        ("./a.csv", ".."),
    ],
)
def test_f13_unsafe_names(path: str, why: str) -> None:
    reason = unsafe_reason(path)
    assert reason is not None and why.split()[0] in reason


# -- `disparo sources test` (F6) --------------------------------------------------------------


def run_test(run_cli: Any, tmp_path: Path, table: dict[str, Any]) -> Any:
    config = write_config(tmp_path, sources={"src": table})
    return run_cli("--config", str(config), "sources", "test", "src")


def test_sources_test_ok(run_cli: Any, tmp_path: Path, ftps_server: FtpServer) -> None:
    (ftps_server.root / "mailing_231126_001_c1.csv").write_text("nome;email\n")
    result = run_test(run_cli, tmp_path, ftp_table(ftps_server, "ftps"))
    assert result.exit_code == 0, result.output
    assert "OK" in result.output and "listed 1 file" in result.output
    assert "s3cret" not in result.output


@pytest.mark.parametrize(
    ("change", "category", "words"),
    [
        ({"host": "nonexistent.invalid"}, "dns", "could not be resolved"),
        ({"port": 1}, "refused", "refused the connection"),
        ({"host": "localhost", "allow_private": False}, "private-host", "private"),
    ],
)
def test_sources_test_failures_in_plain_words(
    run_cli: Any,
    tmp_path: Path,
    ftp_server: FtpServer,
    change: dict[str, Any],
    category: str,
    words: str,
) -> None:
    result = run_test(run_cli, tmp_path, ftp_table(ftp_server) | change)
    assert result.exit_code == 1
    assert f"FAILED ({category})" in result.output and words in result.output


def test_sources_test_tls_auth_and_permission(
    run_cli: Any, tmp_path: Path, ftp_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bad_cert = start_ftp_server(ftp_root, tls=True, self_signed=True)
    try:
        result = run_test(run_cli, tmp_path, ftp_table(bad_cert, "ftps"))
        assert "FAILED (tls)" in result.output and "certificate" in result.output
    finally:
        bad_cert.stop()
    no_list = start_ftp_server(ftp_root, permissions="e")
    try:
        result = run_test(run_cli, tmp_path, ftp_table(no_list))
        assert "FAILED (permission)" in result.output
        monkeypatch.setenv("FTP_PASSWORD", "wrong")
        result = run_test(run_cli, tmp_path, ftp_table(no_list))
        assert "FAILED (auth)" in result.output and "wrong" not in result.output
    finally:
        no_list.stop()


def test_sources_listing_command(run_cli: Any, tmp_path: Path) -> None:
    (tmp_path / "drop").mkdir()
    config = write_config(
        tmp_path, sources={"drop": {"kind": "local", "path": "drop", "cron": "0 * * * *"}}
    )
    assert run_cli("--config", str(config), "db", "upgrade").exit_code == 0
    result = run_cli("--config", str(config), "sources")
    assert result.exit_code == 0
    assert "drop" in result.output and "cron 0 * * * *" in result.output
    assert "never polled" in result.output
