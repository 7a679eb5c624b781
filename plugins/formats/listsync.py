"""The ``listsync`` format (S1, spec/triplet-and-sync.md; MailUp's FTP batch sync, seed 003):
contact files whose name matches the source's ``pattern`` feed the source's ``list`` (a
wallet), their columns mapped to contact fields by ``columns``; inserts and updates, or, in
``replace`` mode, the list becomes exactly the file.

The file is read as a mailing's contacts are (N22–N27: the encoding and delimiter found, the
hygiene, a row per contact, big files in worker processes): this module maps the columns and
leaves the rest to ``plugins.formats.mailing``. Its exports (S2, S3) are the
``listsync-exports`` publisher's (``plugins/publishers/listsync.py``).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any, ClassVar

from engine import hookimpl
from engine.config import Key, SourceSettings
from engine.plugins.format import FileRejected, Format, ImportSpec, Verdict
from engine.problems import Catalogue
from plugins.formats.mailing import (
    RowRules,
    header_roles,
    normalise_header,
    open_csv,
    read_rows,
    workers_for,
)

#: the contact fields a column can be mapped to besides the custom ones (``columns``)
CORE_FIELDS = {
    "email": "the e-mail address",
    "phone": "the phone number",
    "name": "the name",
    "key": "the external key (a customer id, CPF…): the contact's identity when present",
    "optout": "the opt-out flag (1, s, sim, y, yes, true, x: the contact opted out)",
}
_FIELD = re.compile(r"[a-z][a-z0-9_]{0,59}")
_WALLET_CODE = re.compile(r"(?:[^\W_]|[.\-])+")
MODES = ("upsert", "replace")
#: N23's header aliases of the roles a list file uses, without a mapping
#: the roles a header names without ``columns`` (as a mailing's, N23)
_HEADER_ROLES = ("name", "phone", "email", "key")

MESSAGES = Catalogue(
    {
        "missing-mapped-column": (
            "S1",
            "the file has no column {missing}, which the list sync of source `{source}` maps "
            "to contact fields (`columns` in its configuration); the header has: {found}. "
            "Send the file with those column titles, or ask for the mapping to be changed",
            "o arquivo não tem a coluna {missing}, que a sincronização de lista da origem "
            "`{source}` associa a campos do contato (`columns` na configuração); o cabeçalho "
            "tem: {found}. Envie o arquivo com esses títulos de coluna, ou peça que a "
            "associação seja alterada",
        ),
        "missing-address-column": (
            "S1",
            "the file has no e-mail or phone column; its header needs one of: {aliases} "
            "(found: {found})",
            "o arquivo não tem coluna de e-mail nem de telefone; o cabeçalho precisa de uma "
            "destas: {aliases} (encontradas: {found})",
        ),
        "not-configured": (
            "S1",
            'source `{source}` is not a list sync source (`format = "listsync"` with a '
            "`list`): the file cannot be imported as one",
            'a origem `{source}` não é de sincronização de lista (`format = "listsync"` com '
            "`list`): o arquivo não pode ser importado assim",
        ),
    }
)


def _plain(value: str) -> str:
    """A header as matched (N23): no case, no accents, inner spaces as they are."""
    return normalise_header(unicodedata.normalize("NFC", value))


def check_columns(columns: Mapping[str, str]) -> str | None:
    """What is wrong with a ``columns`` mapping (contact field = file header), with the fix."""
    for name, header in columns.items():
        if not _FIELD.fullmatch(name):
            return (
                f"`{name}` is not a field name: lower-case letters, digits and `_`, starting "
                "with a letter (e.g. `city`)"
            )
        if not header.strip():
            return f"`{name}` maps to an empty header; write the file's column title"
    if not {"email", "phone"} & set(columns):
        return (
            'map the e-mail or the phone column (`email = "E-mail"` or `phone = "Celular"`): '
            "a contact needs an address"
        )
    seen: dict[str, str] = {}
    for name, header in columns.items():
        plain = _plain(header)
        if plain in seen:
            return f'`{seen[plain]}` and `{name}` map the same header "{header}"'
        seen[plain] = name
    return None


def check_pattern(pattern: str) -> str | None:
    if pattern.startswith("/") or ".." in pattern.split("/"):
        return f'a pattern is matched on names under the source\'s folder; got "{pattern}"'
    return None


def check_list(code: str) -> str | None:
    if not _WALLET_CODE.fullmatch(code):
        return f'a list (wallet) code is letters, digits, "-" and "."; got "{code}"'
    return None


def exports_folder(settings: SourceSettings) -> str | None:
    """The folder the source's exports are written to (S2), when it has exports."""
    exports = settings.options.get("exports")
    if isinstance(exports, Mapping) and exports.get("folder"):
        return str(exports["folder"]).strip("/")
    return None


class ListSyncFormat(Format):
    """Contact files feeding one list (S1): names matching `pattern`, columns mapped by
    `columns`, inserts and updates (`mode = "upsert"`) or the list made exactly the file
    (`"replace"`)."""

    name = "listsync"
    publishers = ("listsync-exports",)
    config_keys: ClassVar[dict[str, Key]] = {
        "list": Key(
            "str",
            help="The list (wallet code) the files feed: their contacts become its members.",
            check=check_list,
        ),
        "pattern": Key(
            "str",
            "*.csv",
            "Which files are list files: a glob on the file name, case-insensitive "
            '("contatos_*.csv"; with a "/", on the path under the source\'s folder). Other '
            "files are left alone.",
            check=check_pattern,
        ),
        "columns": Key(
            "table",
            None,
            'Contact field = the file\'s column title: `{ email = "E-mail", name = '
            '"Nominativo", city = "Citta" }`. Fields `email`, `phone`, `name`, `key` (the '
            "external key), `optout` (a truthy value opts the contact out; a file may leave "
            "it out); any other name is a custom field. Titles match without case and "
            "accents; a file without one of them is rejected; other columns are not read. "
            "Without it, the headers are read as a mailing's (N23) and every other "
            "column is a field.",
            check=check_columns,
        ),
        "mode": Key(
            "choice",
            "upsert",
            "upsert: the file's contacts are added or updated, other members stay; replace: "
            "the list becomes exactly the file (members it does not hold leave the list; "
            "their history stays).",
            choices=MODES,
        ),
        "hygiene": Key(
            "bool",
            False,
            "Normalise and check the addresses (E.164 phones, checked e-mails) and names, as "
            "a mailing's `_h` does (N26); rows with an unusable address are rejected.",
        ),
    }

    @classmethod
    def validate_settings(cls, settings: SourceSettings) -> list[tuple[str, str]]:
        folder = exports_folder(settings)
        problems: list[tuple[str, str]] = []
        if folder is not None:
            for key in ("processed_dir", "rejected_dir"):
                taken = getattr(settings, key).strip("/")
                if folder == taken or folder.startswith(taken + "/"):
                    problems.append(
                        (
                            "exports.folder",
                            f'the exports go to "{folder}", which is the source\'s {key} '
                            f'("{taken}"); name another folder',
                        )
                    )
        return problems

    # -- which files ---------------------------------------------------------------------

    def _settings(self) -> SourceSettings | None:
        settings = self.context.config.sources.get(self.context.source)
        if settings is None or settings.format != self.name:
            return None
        return settings

    def inspect(self, path: str, listing: set[str]) -> Verdict:
        settings = self._settings()
        if settings is None:
            return Verdict("reject", "rejected", (self._not_configured(),))
        folder = exports_folder(settings)
        if folder is not None and (path == folder or path.startswith(folder + "/")):
            return Verdict("ignore", "export")  # the list's own exports (S2)
        pattern = str(settings.options.get("pattern") or "*.csv")
        target = path if "/" in pattern else path.rsplit("/", 1)[-1]
        if not fnmatchcase(target.lower(), pattern.lower()):
            return Verdict("ignore", "not-matching")
        return Verdict("import", "ready")

    def _not_configured(self) -> Any:
        return MESSAGES.make("not-configured", source=self.context.source)

    # -- reading -------------------------------------------------------------------------

    def prepare(self, path: str, spool: Path, companions: Mapping[str, Path]) -> ImportSpec:
        settings = self._settings()
        if settings is None:
            raise FileRejected([self._not_configured()])
        options = settings.options
        hygiene = bool(options.get("hygiene", False))
        table = open_csv(spool, path)
        try:
            roles, fields = self._map(table.header, options.get("columns"))
        except FileRejected:
            table.handle.close()
            raise
        optout = roles.get("optout")
        rules = RowRules(
            columns=len(table.header),
            key=roles.get("key"),
            name=roles.get("name"),
            phone=roles.get("phone"),
            email=roles.get("email"),
            message=None,
            # a row's boolean slot carries the opt-out flag (ImportSpec.opt_out_column)
            prospect=optout,
            fields=tuple(sorted(fields.items())),
            channel=None,
            kind=None,
            hygiene=hygiene,
            needs_message=False,
            nul=table.nul,
            header=tuple(table.header),
        )
        code = str(options["list"])
        return ImportSpec(
            wallet=code,
            # one tag per list, not per file: a daily file would otherwise add a tag row per
            # contact per day
            tag=f"list:{code}",
            header=list(table.header),
            rows=read_rows(
                table.lines, table.delimiter, rules, table.handle, workers_for(spool, hygiene)
            ),
            replace_list=options.get("mode") == "replace",
            opt_out_column=table.header[optout].strip() if optout is not None else None,
            progress=table.raw.tell,
            close=table.handle.close,
        )

    def _map(
        self, header: list[str], columns: Mapping[str, str] | None
    ) -> tuple[dict[str, int], dict[int, str]]:
        """(role → column index, column index → custom field name) for the file's header."""
        plain = [_plain(h) for h in header]
        found = ", ".join(h.strip() for h in header) or "(none)"
        roles: dict[str, int] = {}
        fields: dict[int, str] = {}
        if columns:
            missing: list[str] = []
            for name, title in columns.items():
                want = _plain(title)
                index = next((i for i, h in enumerate(plain) if h == want), None)
                if index is None:
                    if name != "optout":  # the opt-out column is optional (S1)
                        missing.append(f'"{title}" ({name})')
                elif name in CORE_FIELDS:
                    roles[name] = index
                else:
                    fields[index] = name
            if missing:
                raise FileRejected(
                    [
                        MESSAGES.make(
                            "missing-mapped-column",
                            missing=", ".join(missing),
                            source=self.context.source,
                            found=found,
                        )
                    ]
                )
            return roles, fields
        roles, fields = header_roles(header, only=_HEADER_ROLES)
        if "email" not in roles and "phone" not in roles:
            aliases = "email, e-mail, telefone, celular, fone, phone, whatsapp"
            raise FileRejected(
                [MESSAGES.make("missing-address-column", aliases=aliases, found=found)]
            )
        return roles, fields


@hookimpl
def register_formats(register: Any) -> None:
    register(ListSyncFormat)


__all__ = ["CORE_FIELDS", "MESSAGES", "ListSyncFormat", "exports_folder"]
