"""Fixtures: disparo's test kit (``engine.testing.pytest_plugin``) and a web hook on
loopback (``webhook_peer``)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trustme
from webhook_peer import TOKEN, Hook, start_hook

pytest_plugins = ["engine.testing.pytest_plugin"]


@pytest.fixture
async def hook(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Hook]:
    """A running hook; the accounts of ``hook.account()`` send to it with ``TOKEN``."""
    monkeypatch.setenv("HOOK_TOKEN", TOKEN)
    hook, runner = await start_hook(trustme.CA(), tmp_path)
    yield hook
    await runner.cleanup()
