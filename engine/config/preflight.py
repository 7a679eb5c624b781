"""Checks made before a long-running command (``disparo run``, ``tracking serve``) says it
runs: every secret the configuration names can be read now, and the tracking endpoint's
address can be bound. Loading the configuration already checked every file it names; these
checks need the process's environment and the machine's sockets."""

from __future__ import annotations

import errno
import os
import socket
from collections.abc import Iterator, Mapping
from typing import Any

from engine.config.keys import ConfigProblem
from engine.config.secrets import SecretError, SecretRef
from engine.config.settings import Config

#: the shortest tracking secret ``engine.tokens.Signer`` takes
MIN_TRACKING_SECRET = 16


def _file(config: Config) -> str:
    return str(config.path) if config.path is not None else "(defaults)"


def secret_refs(config: Config) -> Iterator[tuple[str, SecretRef]]:
    """Every secret reference of ``config`` with the dotted key it was written as
    (``tracking.secret_file``, ``accounts.sms.auth_token_env``…)."""

    def written(where: str, ref: SecretRef) -> str:
        return f"{where}.{ref.key}_{'env' if ref.env is not None else 'file'}"

    def options(where: str, values: Mapping[str, Any]) -> Iterator[tuple[str, SecretRef]]:
        for value in values.values():
            if isinstance(value, SecretRef):
                yield written(where, value), value

    if config.engine.database_password is not None:
        yield written("engine", config.engine.database_password), config.engine.database_password
    if config.tracking is not None:
        yield written("tracking", config.tracking.secret), config.tracking.secret
    for name, source in config.sources.items():
        yield from options(f"sources.{name}", source.options)
    for name, account in config.accounts.items():
        yield from options(f"accounts.{name}", account.options)
    for name, mailbox in config.mailboxes.items():
        yield written(f"mailboxes.{name}", mailbox.password), mailbox.password


def secret_problems(config: Config) -> list[ConfigProblem]:
    """Every secret that cannot be read now: an environment variable not set (or empty), a
    file gone since the configuration was loaded; the tracking secret too short."""
    problems = []
    file = _file(config)
    for key, ref in secret_refs(config):
        if ref.env is not None:
            value = os.environ.get(ref.env)
            if value is None or not value.strip():
                state = "is not set" if value is None else "is empty"
                problems.append(
                    ConfigProblem(
                        file,
                        key,
                        f"the environment variable {ref.env} {state}; export it before "
                        "starting disparo (under systemd: in the unit's EnvironmentFile, see "
                        "docs/operations.md)",
                    )
                )
                continue
        else:
            try:
                value = ref.reveal()
            except SecretError as exc:
                problems.append(ConfigProblem(file, key, str(exc)))
                continue
        if (
            config.tracking is not None
            and ref is config.tracking.secret
            and len(value.encode()) < MIN_TRACKING_SECRET
        ):
            problems.append(
                ConfigProblem(
                    file,
                    key,
                    f"the tracking secret is {len(value.encode())} bytes; it must be at least "
                    f"{MIN_TRACKING_SECRET} (32 random bytes are best: `head -c 32 "
                    "/dev/urandom | base64`)",
                )
            )
    return problems


def bind_problem(address: str) -> str | None:
    """Why ``host:port`` cannot be bound for listening now, with the fix; None when it can.

    Binds and closes at once, as the server will bind (``SO_REUSEADDR``, IPv6 only on an
    IPv6 address): a port another process listens on is refused here, before anything starts.
    """
    host, _, port_text = address.strip().rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    try:
        port = int(port_text)
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except ValueError:
        return f'expected host:port such as "127.0.0.1:8080"; got "{address}"'
    except socket.gaierror as exc:
        return f"{host} is not an address of this machine ({exc.strerror}); fix the host"
    for family, kind, proto, _, sockaddr in infos:
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                probe.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                probe.bind(sockaddr)
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    return (
                        f"{address} is already in use (another disparo, or another program, "
                        "listens there); stop it, or choose another port here"
                    )
                if exc.errno == errno.EACCES:
                    return (
                        f"binding {address} needs privileges this user does not have (ports "
                        "below 1024); choose a port above 1023 and let your reverse proxy "
                        "forward to it"
                    )
                if exc.errno == errno.EADDRNOTAVAIL:
                    return f"{host} is not an address of this machine; fix the host"
                return f"{address} cannot be bound ({exc.strerror or exc})"
    return None


def listen_problem(config: Config, address: str) -> ConfigProblem | None:
    """``bind_problem`` for the tracking endpoint, as a problem of ``[tracking] listen``."""
    problem = bind_problem(address)
    if problem is None:
        return None
    return ConfigProblem(_file(config), "tracking.listen", problem)
