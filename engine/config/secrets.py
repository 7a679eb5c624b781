"""Secrets by reference (F5): an environment variable or a file, read when used, never shown."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

SECRET_WORDS = frozenset(
    {
        "password",
        "passwd",
        "secret",
        "token",
        "auth_token",
        "api_key",
        "apikey",
        "passphrase",
        "private_key",
        "signing_secret",
    }
)


class SecretError(Exception):
    """A referenced secret cannot be read (the message never contains a secret)."""


@dataclass(frozen=True, repr=False)
class SecretRef:
    """A reference to a secret: an environment variable or a file. Never holds the value."""

    key: str
    env: str | None = None
    file: Path | None = None

    def describe(self) -> str:
        return f"environment variable {self.env}" if self.env else f"file {self.file}"

    def reveal(self) -> str:
        """Read the secret now (from the environment or the file), without trailing newline."""
        if self.env is not None:
            value = os.environ.get(self.env)
            if value is None:
                raise SecretError(
                    f"`{self.key}_env` names the environment variable {self.env}, which is "
                    f"not set; export it before starting disparo"
                )
            return value
        assert self.file is not None
        try:
            return self.file.read_text(encoding="utf-8").rstrip("\r\n")
        except OSError as exc:
            raise SecretError(
                f"`{self.key}_file` names {self.file}, which cannot be read "
                f"({exc.strerror or exc}); check the path and its permissions"
            ) from None

    def __repr__(self) -> str:
        return f"SecretRef({self.key}: {self.describe()})"


# --------------------------------------------------------------------------------------------
