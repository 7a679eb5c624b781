"""Host rules (F2, F3): bare host names only; private addresses refused unless allowed."""

from __future__ import annotations

import pytest

from engine.hosts import HostError, check_host_value, check_literal, is_private, resolve


@pytest.mark.parametrize(
    ("value", "fixed"),
    [
        ("https://ftp.example.com", 'host = "ftp.example.com"'),
        ("ftp://ftp.example.com/in/", 'host = "ftp.example.com"'),
        ("sftp://user@sftp.example.com:22", 'host = "sftp.example.com"'),
        ("ftp.example.com/pasta", 'host = "ftp.example.com"'),
        ("ftp.example.com:2121", 'host = "ftp.example.com"'),
        ("joao@ftp.example.com", 'host = "ftp.example.com"'),
    ],
)
def test_f2_scheme_path_user_port_refused_with_the_fix(value: str, fixed: str) -> None:
    message = check_host_value(value)
    assert message is not None and fixed in message and "(F2)" in message


@pytest.mark.parametrize("value", ["ftp.example.com", "203.0.113.7", "2001:db8::1", "robbu.com.br"])
def test_f2_bare_hosts_pass(value: str) -> None:
    assert check_host_value(value) is None


def test_f2_garbage_is_not_a_host() -> None:
    assert "not a valid host name" in (check_host_value("ftp example com") or "")


@pytest.mark.parametrize(
    "address",
    [
        "10.1.2.3",
        "172.16.0.1",
        "172.31.255.254",
        "192.168.0.10",
        "127.0.0.1",
        "169.254.1.1",
        "0.0.0.0",
        "::1",
        "fc00::1",
        "fd12::3",
        "fe80::1",
        "::ffff:10.0.0.1",
        "100.64.0.1",
    ],
)
def test_f3_private_addresses(address: str) -> None:
    assert is_private(address)
    message = check_literal(address, allow_private=False)
    assert message is not None and "allow_private = true" in message and "(F3)" in message
    assert check_literal(address, allow_private=True) is None


@pytest.mark.parametrize("address", ["8.8.8.8", "172.32.0.1", "191.233.248.49", "2606:4700::1"])
def test_f3_public_addresses(address: str) -> None:
    assert not is_private(address)


def test_f3_a_name_resolving_to_loopback_is_refused_at_connect_time() -> None:
    with pytest.raises(HostError, match=r"localhost resolves to .*(127\.0\.0\.1|::1).*\(F3\)"):
        resolve("localhost", 21, allow_private=False)
    target = resolve("localhost", 21, allow_private=True)
    assert target.host == "localhost" and is_private(target.address)
