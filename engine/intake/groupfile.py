"""``disparo groups import``: a plain contact file into a group, read by the mailing format's
CSV reader (N22–N26) and written in one transaction (the group's members are added to)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from engine.intake.importer import CONTACT_FIELDS
from engine.plugins.format import FileRejected, Format, RejectedRow
from engine.problems import Problem
from engine.store import Store
from engine.store.imports import StagedRow


@dataclass
class GroupImport:
    """What ``groups import`` did: rows read, rows used, rejected rows by code (with the first
    few, to show), and the group's members after it."""

    group: str
    rows: int = 0
    imported: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    examples: list[RejectedRow] = field(default_factory=list)
    members: int = 0


def import_group_file(
    store: Store,
    fmt: Format,
    group: str,
    file: Path,
    *,
    actor: str,
    progress: Callable[[int], None] | None = None,
) -> GroupImport:
    """Add the contacts of ``file`` to ``group``; ``FileRejected`` when the file cannot be
    read or has no usable row (nothing is written then)."""
    spec = fmt.contacts(file.name, file)
    report = GroupImport(group)
    try:
        with store.groups.session() as session:
            for chunk in spec.rows:
                report.rows += len(chunk)
                good: list[StagedRow] = []
                for row in chunk:
                    if len(row) == CONTACT_FIELDS:
                        good.append(tuple(row))
                    else:
                        bad = RejectedRow._make(row)
                        report.rejected[bad.code] += 1
                        if len(report.examples) < 5:
                            report.examples.append(bad)
                session.stage(good)
                report.imported += len(good)
                if progress is not None:
                    progress(spec.progress())
            if report.imported == 0:
                raise FileRejected(
                    [
                        Problem(
                            "no-valid-rows",
                            "N24",
                            f"none of the file's {report.rows} row(s) has a usable e-mail or "
                            "phone; fix them and import the file again",
                            f"nenhuma das {report.rows} linha(s) do arquivo tem e-mail ou "
                            "telefone utilizável; corrija-as e importe o arquivo de novo",
                        )
                    ]
                )
            report.members = session.write_members(
                group,
                replace=False,
                source="file",
                actor=actor,
                detail={"file": file.name, "rejected": sum(report.rejected.values())},
            )
    finally:
        spec.close()
    return report
