"""A file format: ``<wallet>/contatos_<tag>.csv`` files whose contacts join the wallet's
list under a tag, without a campaign (the format example of docs/plugins.md)."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from engine import hookimpl
from engine.addresses import normalise_phone
from engine.plugins.format import ContactRow, FileRejected, Format, ImportSpec, RejectedRow, Verdict
from engine.problems import Problem

CHUNK = 1000  # rows handed to the importer at a time


def no_wallet(path: str) -> Problem:
    return Problem(
        "no-wallet",
        "contacts-1",
        f"{path} is not in a wallet's folder: put it in <WALLET>/ (contacts-1)",
        f"{path} não está na pasta de uma carteira: coloque-o em <CARTEIRA>/ (contacts-1)",
    )


class ContactsFormat(Format):
    """``BRAD/contatos_vip.csv``: ``nome;telefone[;…]`` rows tagged ``vip`` in wallet BRAD."""

    name = "contacts"  # [sources.NAME] says format = "contacts"

    def inspect(self, path: str, listing: set[str]) -> Verdict:
        wallet, _, leaf = path.rpartition("/")
        if not (leaf.startswith("contatos_") and leaf.endswith(".csv")):
            return Verdict("ignore", "not-mailing")  # not ours: left alone
        if not wallet or "/" in wallet:
            return Verdict("reject", "rejected", (no_wallet(path),))
        return Verdict("import", "ready")

    def prepare(self, path: str, spool: Path, companions: Mapping[str, Path]) -> ImportSpec:
        wallet, _, leaf = path.rpartition("/")
        raw = spool.open("rb")
        text = io.TextIOWrapper(raw, encoding="utf-8-sig", newline="")
        reader = csv.reader(text, delimiter=";")
        header = [h.strip().lower() for h in next(reader, [])]
        if "telefone" not in header:
            text.close()
            raise FileRejected(
                [
                    Problem(
                        "missing-column",
                        "contacts-2",
                        "the file has no `telefone` column (contacts-2)",
                        "o arquivo não tem a coluna `telefone` (contacts-2)",
                    )
                ]
            )
        return ImportSpec(
            wallet=wallet,
            tag=leaf.removeprefix("contatos_").removesuffix(".csv"),
            header=header,
            rows=self._rows(reader, header),  # read lazily, while the importer writes
            progress=raw.tell,  # bytes read so far, for progress bars
            close=text.close,  # the importer calls it whatever happens
        )

    def _rows(self, reader: Iterator[list[str]], header: list[str]) -> Iterator[list[Any]]:
        phone_at = header.index("telefone")
        name_at = header.index("nome") if "nome" in header else None
        chunk: list[Any] = []
        for line, cells in enumerate(reader, start=2):
            if not any(c.strip() for c in cells):
                continue  # a blank line
            cells += [""] * (len(header) - len(cells))
            checked = normalise_phone(cells[phone_at], mobile=True)
            if checked.value is None:
                chunk.append(
                    RejectedRow(
                        line,
                        checked.code or "bad-phone",
                        "contacts-3",
                        checked.error or "not a mobile number",
                        checked.error_pt or "não é um celular",
                        tuple(cells),
                    )
                )
            else:
                extra = {h: cells[i] for i, h in enumerate(header) if i not in (phone_at, name_at)}
                chunk.append(
                    ContactRow(
                        line=line,
                        identity="phone:" + checked.value,  # the same phone, the same contact
                        external_key=None,
                        name=(cells[name_at].strip() or None) if name_at is not None else None,
                        email=None,
                        phone=checked.value,
                        fields=json.dumps(extra, ensure_ascii=False),  # {{ cidade }} in templates
                    )
                )
            if len(chunk) == CHUNK:
                yield chunk
                chunk = []
        if chunk:
            yield chunk


@hookimpl
def register_formats(register: Any) -> None:
    register(ContactsFormat)
