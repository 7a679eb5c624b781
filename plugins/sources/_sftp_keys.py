"""The host-key policy of the ``sftp`` source, a paramiko class: imported when a source
connects, so loading the plugins (every ``disparo`` process does) does not import paramiko."""

from __future__ import annotations

import hmac

import paramiko

from plugins.sources.sftp import fingerprint


class PinnedKey(paramiko.MissingHostKeyPolicy):
    """Accept a host absent from known_hosts only when its key has the pinned fingerprint."""

    def __init__(self, expected: str) -> None:
        self.expected = expected

    def missing_host_key(
        self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey
    ) -> None:
        actual = fingerprint(key)
        if not hmac.compare_digest(actual, self.expected):
            raise paramiko.SSHException(
                f"the host key of {hostname} has fingerprint {actual}, not the pinned "
                f"{self.expected}: refused (the key changed, or this is not the right server)"
            )
        client.get_host_keys().add(hostname, key.get_name(), key)
