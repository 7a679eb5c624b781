"""Host rules (F2, F3): bare host names only; private addresses refused unless allowed."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.hosts import (
    HostError,
    check_host_value,
    check_literal,
    embedded_ipv4,
    is_private,
    resolve,
)


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


# -- IPv6 forms of IPv4 addresses (F3) ---------------------------------------------------------


def _v4(address: str) -> int:
    return int(ipaddress.IPv4Address(address))


def sixtofour(v4: str) -> str:
    return str(ipaddress.IPv6Address((0x2002 << 112) | (_v4(v4) << 80) | 1))


def teredo(v4: str, server: str = "65.54.227.120") -> str:
    return str(
        ipaddress.IPv6Address(
            (0x20010000 << 96)
            | (_v4(server) << 64)
            | (0x8000 << 48)
            | (0x63BF << 32)
            | (~_v4(v4) & 0xFFFFFFFF)
        )
    )


def nat64(v4: str) -> str:
    return str(ipaddress.IPv6Address((0x64FF9B << 96) | _v4(v4)))


def compatible(v4: str) -> str:
    return str(ipaddress.IPv6Address(_v4(v4)))


def mapped(v4: str) -> str:
    return str(ipaddress.IPv6Address((0xFFFF << 32) | _v4(v4)))


FORMS = {
    "6to4": sixtofour,
    "Teredo": teredo,
    "NAT64": nat64,
    "IPv4-compatible": compatible,
    "IPv4-mapped": mapped,
}


@pytest.mark.parametrize(
    "address",
    [
        "2002:7f00:1::1",  # 6to4 for 127.0.0.1 (the case)
        "2002:a00:1::",  # 6to4 for 10.0.0.1
        "2002:c0a8:101::1",  # 6to4 for 192.168.1.1
        "2002:a9fe:a9fe::1",  # 6to4 for 169.254.169.254 (cloud metadata)
        "2001:0:4136:e378:8000:63bf:80ff:fffe",  # Teredo, client 127.0.0.1
        "2001:0:4136:e378:8000:63bf:f5ff:fffe",  # Teredo, client 10.0.0.1
        "64:ff9b::7f00:1",  # NAT64 for 127.0.0.1
        "64:ff9b::a9fe:a9fe",  # NAT64 for 169.254.169.254
        "64:ff9b:1::a00:1",  # NAT64 local-use prefix (RFC 8215)
        "::127.0.0.1",  # IPv4-compatible
        "::ffff:127.0.0.1",  # IPv4-mapped
        "::ffff:192.168.0.1",
    ],
)
def test_f3_ipv6_forms_of_private_addresses_are_refused(address: str) -> None:
    assert is_private(address)
    message = check_literal(address, allow_private=False)
    assert message is not None and "(F3)" in message and "allow_private = true" in message
    assert check_literal(address, allow_private=True) is None


def test_f3_the_refusal_names_the_carried_address() -> None:
    message = check_literal("2002:7f00:1::1", allow_private=False)
    assert message is not None and "(it carries 127.0.0.1)" in message


@pytest.mark.parametrize("form", sorted(FORMS))
@given(
    v4=st.sampled_from(
        ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "127.0.0.0/8", "169.254.0.0/16"]
    ).flatmap(lambda net: st.ip_addresses(network=net))
)
def test_f3_every_form_of_a_private_ipv4_is_private(form: str, v4: ipaddress.IPv4Address) -> None:
    """Property: whatever private IPv4 address a 6to4, Teredo, NAT64, compatible or mapped
    IPv6 address carries, F3 refuses it, and unwrapping gives that IPv4 address back."""
    address = FORMS[form](str(v4))
    assert is_private(address), (form, address, v4)
    assert embedded_ipv4(ipaddress.IPv6Address(address)) == v4


@given(v4=st.sampled_from(["8.8.8.8", "191.233.248.49", "200.160.2.3"]))
def test_f3_6to4_of_a_public_address_stays_public(v4: str) -> None:
    assert not is_private(sixtofour(v4))
