"""A big file read by two processes on SQLite (issue 16, goal 4; F12, N22–N26): the same store
content, the same rejected rows (line numbers, rules, messages) as when one process reads it,
and a failure of the second process fails the whole import (F12: nothing of it is imported)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

import engine.intake.importer as importer
from engine.clock import TestClock, local_today
from engine.config import Config
from engine.intake.importer import ImportReport, file_digest, import_file
from engine.plugins import load_plugins
from engine.plugins.format import FormatContext
from engine.store import Store
from plugins.formats.mailing import scan_bytes, split_point
from tests.helpers import load, name, write_config

HEADER = "nome;telefone;email;cpf;cidade\n"


def mailing(rows: int = 1500) -> str:
    """Good rows and, in both halves, every kind of bad one (N22–N26), plus an identity whose
    rows are in both halves (N25 merges them)."""
    out = [HEADER]
    for i in range(rows):
        if i % 97 == 5:
            out.append(f"Ruim {i};123;nope;{i};X\n")  # N26: neither address is usable
        elif i % 101 == 7:
            out.append(f"Extra {i};11988887777;e{i}@example.com;{i};X;mais\n")  # N22
        elif i % 89 == 3:
            out.append(";;;;\n")  # a blank row
        elif i % 83 == 11:
            out.append(f"Sem {i};;;{i};X\n")  # N24: no address
        elif i in (10, rows - 10):
            out.append(f"Repetido {i};(11) 9{i:04d}-0000;rep@example.com;42;Cidade {i}\n")
        else:
            out.append(
                f"  Cliente   {i} ;(21) 9{i:04d}-{i % 10000:04d};C{i}@Example.com;{i};C{i}\n"
            )
    out.insert(rows - 40, "Nul;11977776666;nul@example.com;nul\0;X\n")  # in the tail
    return "".join(out)


@pytest.fixture
def config(tmp_path: Path) -> Config:
    (tmp_path / "templates").mkdir()
    (tmp_path / "templates" / "brad.html").write_text("<p>Olá {{ nome }}</p>")
    return load(
        write_config(
            tmp_path,
            wallets={
                "BRAD": {"email_subject": "Novidades", "email_template": "templates/brad.html"}
            },
        )
    )


def run(
    tmp_path: Path, label: str, config: Config, clock: TestClock, path: str, content: str
) -> tuple[ImportReport, dict[str, list[Any]], str]:
    """Import ``content`` into a new SQLite store; its report, tables and rejected rows."""
    folder = tmp_path / label
    folder.mkdir()
    store = Store.open(f"sqlite:///{folder / 'store.db'}", clock=clock)
    try:
        spool = folder / "spool.csv"
        spool.write_text(content, encoding="utf-8")
        fmt = load_plugins().formats()["mailing"](
            FormatContext(config, "drop", local_today(clock, config.tz), clock.now())
        )
        report = import_file(
            store,
            fmt,
            source="drop",
            path=path,
            spool=spool,
            size=spool.stat().st_size,
            mtime=None,
            sha256=file_digest(spool),
        )
        tables: dict[str, list[Any]] = {}
        with store.read() as c:
            for table in ("contacts", "wallet_members", "contact_tags", "deliveries", "files"):
                tables[table] = [tuple(r) for r in c.execute(sa.text(f"SELECT * FROM {table}"))]
            assert list(c.exec_driver_sql("PRAGMA foreign_key_check")) == []
        rejected = report.rejected_csv.read_text("utf-8-sig") if report.rejected_csv else ""
        return report, tables, rejected
    finally:
        store.close()


@pytest.fixture
def tails(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """Counts the second processes started."""
    started: list[int] = []
    enter = importer._TailProcess.__enter__

    def counted(self: Any) -> Any:
        started.append(1)
        return enter(self)

    monkeypatch.setattr(importer._TailProcess, "__enter__", counted)
    yield started


@pytest.mark.parametrize("params", ["cBRAD_h", "cBRAD", "cBRAD_email_h"])
def test_two_processes_import_what_one_imports(
    tmp_path: Path,
    config: Config,
    clock: TestClock,
    monkeypatch: pytest.MonkeyPatch,
    tails: list[int],
    params: str,
) -> None:
    content = mailing()
    path = name(1, params)
    monkeypatch.setattr(importer, "SPLIT_BYTES", 1 << 40)
    one = run(tmp_path, "one", config, clock, path, content)
    assert tails == []
    monkeypatch.setattr(importer, "SPLIT_BYTES", 0)
    two = run(tmp_path, "two", config, clock, path, content)
    assert tails == [1]
    report = two[0]
    assert report.outcome == "imported" and report.rows == one[0].rows
    assert report.rejected_rows == one[0].rejected_rows and report.rejected_rows["nul-character"]
    assert (report.contacts, report.merged, report.recipients) == (
        one[0].contacts,
        one[0].merged,
        one[0].recipients,
    )
    assert report.recipients > 0 if "email" in params else report.recipients == 0
    assert two[1] == one[1]  # every table the same, row for row
    assert two[2] == one[2]  # the same rejected rows report, byte for byte
    lines = [line.split(";")[0] for line in two[2].splitlines()[1:]]
    assert lines == sorted(lines, key=int)  # in file order, head then tail


class BrokenTail:
    """A tail whose reading fails in the second process."""

    def chunks(self) -> Iterator[list[tuple[Any, ...]]]:
        raise ValueError("the tail cannot be read")


def test_a_failed_second_process_fails_the_import_and_leaves_nothing(
    tmp_path: Path, config: Config, clock: TestClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """F12: the second process's error is the import's; nothing of the file is in the store."""
    monkeypatch.setattr(importer, "_split", lambda store, spec, spool: BrokenTail())
    folders = set(Path(importer.tempfile.gettempdir()).glob("disparo-import-*"))
    with pytest.raises(ValueError, match="the tail cannot be read"):
        run(tmp_path, "broken", config, clock, name(1, "cBRAD"), mailing(200))
    store = Store.open(f"sqlite:///{tmp_path / 'broken' / 'store.db'}", clock=clock)
    try:
        with store.read() as c:
            for table in ("contacts", "files", "wallet_members"):
                assert c.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar() == 0
    finally:
        store.close()
    assert set(Path(importer.tempfile.gettempdir()).glob("disparo-import-*")) <= folders


def test_split_point_at_a_line_start_and_only_where_lines_are_records(tmp_path: Path) -> None:
    plain = tmp_path / "plain.csv"
    plain.write_bytes(b"a;b\r\n" + b"".join(b"%d;x\r\n" % i for i in range(100)))
    assert scan_bytes(plain).plain
    offset, line = split_point(plain, 0.5) or (0, 0)
    data = plain.read_bytes()
    assert data[offset - 1 : offset] == b"\n" and data.count(b"\n", 0, offset) == line - 1
    assert data[offset:].startswith(b"%d;x" % (line - 2))  # line 2 holds row 0
    assert split_point(plain, 0.0) is None  # no line starts after the last
    quoted = tmp_path / "quoted.csv"
    quoted.write_bytes(b'a;b\n1;"two\nlines"\n' * 50)
    assert not scan_bytes(quoted).plain  # a quoted cell may hold a line break
    bare = tmp_path / "bare.csv"
    bare.write_bytes(b"a;b\n1;x\r2;y\n" * 50)
    assert not scan_bytes(bare).plain  # the reader takes a lone CR for a line break


def test_a_file_whose_records_span_lines_is_read_by_one_process(
    tmp_path: Path,
    config: Config,
    clock: TestClock,
    monkeypatch: pytest.MonkeyPatch,
    tails: list[int],
) -> None:
    monkeypatch.setattr(importer, "SPLIT_BYTES", 0)
    rows = "".join(f'C{i};11988{i:06d};"c{i}\n@x";{i};X\n' for i in range(50))
    report, tables, _ = run(tmp_path, "quoted", config, clock, name(1, "cBRAD"), HEADER + rows)
    assert tails == [] and report.rows == 50 and len(tables["contacts"]) == 50
