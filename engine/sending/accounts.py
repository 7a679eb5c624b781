"""Which sender account sends a campaign (D10): the one named by ``_ce``, else the wallet's
default sender, else the only account of the channel."""

from __future__ import annotations

from engine.config import Config


def resolve_account(
    config: Config, channel: str, wallet: str | None, sender: str | None
) -> tuple[str | None, str | None]:
    """(account name, None), or (None, why no account can send it yet)."""
    candidates = [a for a in config.accounts.values() if a.channel == channel]
    if sender is not None:
        for account in candidates:
            if str(account.options.get("from_address", "")).lower() == sender.lower():
                return account.name, None
        return None, (
            f"no `{channel}` account sends as {sender} (the sender the file asks for: `_ce`, "
            "or a triplet CONF's REMETENTE_EMAIL): add one to the accounts of disparo.toml "
            "with that from_address"
        )
    if wallet is not None:
        default = config.wallet(wallet).default_sender
        chosen = config.accounts.get(default) if default else None
        if chosen is not None and chosen.channel == channel:
            return chosen.name, None
    if len(candidates) == 1:
        return candidates[0].name, None
    if not candidates:
        return None, f"no sender account for channel `{channel}`: add one to disparo.toml"
    names = ", ".join(sorted(a.name for a in candidates))
    return None, (
        f"several `{channel}` accounts ({names}) and wallet `{wallet}` names none: set "
        f"default_sender for the wallet"
    )
