"""Problems in user input: a code, the spec rule, and what to do, in English and Portuguese."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    """One thing wrong (or worth a warning) in a name, a file, a row, a config key or a command.

    ``message`` says what was wrong and how to write it right, in English, and ends with the
    rule id; ``message_pt`` says the same in Portuguese (used in the ``.erro.txt`` reports
    published back to customers).
    """

    code: str
    rule: str
    message: str
    message_pt: str
    piece: str | None = None

    def as_json(self) -> dict[str, str]:
        """The ``{"code", "message"}`` shape used by ``--json`` outputs."""
        return {"code": self.code, "message": self.message}


class Catalogue:
    """Message templates per problem code, filled with ``str.format`` fields at the call site."""

    def __init__(self, entries: dict[str, tuple[str, str, str]]) -> None:
        # key -> (rule, English template, Portuguese template). The problem code is the key up
        # to an optional ":variant" (``bad-value:q`` is a ``bad-value`` about ``_q``).
        self._entries = entries

    def __contains__(self, key: str) -> bool:
        return key in self._entries

    def entries(self) -> list[str]:
        return list(self._entries)

    def rule(self, key: str) -> str:
        return self._entries[key][0]

    def make(self, key: str, piece: str | None = None, **fields: object) -> Problem:
        rule, en, pt = self._entries[key]
        fields.setdefault("piece", piece)
        return Problem(
            code=key.split(":", 1)[0],
            rule=rule,
            message=f"{en.format(**fields)} ({rule})",
            message_pt=f"{pt.format(**fields)} ({rule})",
            piece=piece,
        )
