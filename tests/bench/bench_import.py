"""Import benchmark (issue 16, goal 4): a generated 400,000-row mailing (BENCH_ROWS; name, phone,
e-mail, cpf and three extra fields) into a fresh SQLite store, without and with hygiene (`_h`):
rows per second and peak RSS, each import in its own process. For scale, the same run measures
a plain reference: csv.reader over the file and the driver's executemany of the same rows into
a table with one (unique) index, with the store's pragmas (issue 16, goal 4). disparo reads a
file this big with two processes (the importing one reads the head, a second one the tail:
README, "read by two processes"); the reference is one process.

Memory: one e-mail campaign import of 1,000,000 rows (BENCH_BIG_ROWS) in its own process, its
peak RSS next to that of a 100,000-row one (goal: < 200 MB, not growing with the audience).
"""

from __future__ import annotations

import json
import os
import random
import statistics
import subprocess
import sys
import textwrap
from pathlib import Path

from tests.bench.conftest import rows

DDDS = [
    11,
    12,
    13,
    14,
    15,
    16,
    17,
    18,
    19,
    21,
    22,
    24,
    27,
    28,
    31,
    32,
    33,
    34,
    35,
    37,
    38,
    41,
    42,
    43,
    44,
    45,
    46,
    47,
    48,
    49,
    51,
    53,
    54,
    55,
    61,
    62,
    63,
    64,
    65,
    66,
    67,
    68,
    69,
    71,
    73,
    74,
    75,
    77,
    79,
    81,
    82,
    83,
    84,
    85,
    86,
    87,
    88,
    89,
    91,
    92,
    93,
    94,
    95,
    96,
    97,
    98,
    99,
]
DOMAINS = [
    "gmail.com",
    "hotmail.com",
    "yahoo.com.br",
    "uol.com.br",
    "bol.com.br",
    "outlook.com",
    "empresa.com.br",
]


def generate(path: Path, n: int) -> None:
    rng = random.Random(7)
    with path.open("w", encoding="utf-8") as out:
        out.write("nome;telefone;email;cpf;cidade;plano;vencimento\n")
        for i in range(n):
            out.write(
                f"Cliente {i};({rng.choice(DDDS)}) 9{rng.randint(1000, 9999)}-"
                f"{rng.randint(1000, 9999)};cliente.{i}@{rng.choice(DOMAINS)};{i:011d};"
                f"Cidade {i % 500};Plano {i % 7};{1 + i % 28:02d}/12/2026\n"
            )


IMPORT = textwrap.dedent(
    """
    import json, os, sys, time
    from datetime import date
    from pathlib import Path
    from engine.clock import RealClock, local_today
    from engine.config import load_config
    from engine.plugins.format import FormatContext
    from engine.intake.importer import file_digest, import_file
    from engine.plugins import load_plugins
    from engine.store import Store

    if __name__ == "__main__":
        # src params db [html]: with html, an e-mail campaign's body (beside the file)
        src, params, db = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
        companions = {}
        if len(sys.argv) > 4:
            html = Path(sys.argv[4])
            companions[html.name] = html
        clock = RealClock()
        config = load_config(None)
        today = local_today(clock, config.tz)
        name = f"mailing_{today:%d%m%y}_001_{params}.csv"
        store = Store.open(f"sqlite:///{db}", clock=clock)
        mode = os.environ.get("BENCH_SYNCHRONOUS")  # another `PRAGMA synchronous`, to compare
        if mode:
            from sqlalchemy import event
            event.listen(store.engine, "connect",
                         lambda conn, record: conn.execute(f"PRAGMA synchronous={mode}"))
            store.engine.dispose()
        context = FormatContext(config, "bench", today, clock.now())
        fmt = load_plugins().formats()["mailing"](context)
        digest = file_digest(src)  # the collector hashes while downloading: not timed
        start = time.perf_counter()
        report = import_file(store, fmt, source="bench", path=name, spool=src,
                             size=src.stat().st_size, mtime=None, sha256=digest,
                             companions=companions)
        seconds = time.perf_counter() - start
        store.close()  # joins the background WAL checkpoint
        total = time.perf_counter() - start
        # VmHWM, not ru_maxrss: exec keeps the forking parent's peak (pytest's) in maxrss
        rss = next(int(l.split()[1]) / 1024 for l in open("/proc/self/status")
                   if l.startswith("VmHWM:"))
        print(json.dumps({"outcome": report.outcome, "rows": report.rows,
                          "contacts": report.contacts, "recipients": report.recipients,
                          "seconds": seconds, "with_checkpoint": total, "rss_mb": rss}))
    """
)

REFERENCE = textwrap.dedent(
    """
    import csv, json, sqlite3, sys, time
    path, db = sys.argv[1], sys.argv[2]
    con = sqlite3.connect(db, isolation_level=None)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA synchronous=FULL")
    con.execute("CREATE TABLE t (a, b, c, d, e, f, g)")
    con.execute("CREATE UNIQUE INDEX t_d ON t (d)")  # the one index: the key (cpf)
    start = time.perf_counter()
    with open(path, newline="", encoding="utf-8") as f:
        data = [tuple(r) for r in csv.reader(f, delimiter=";")][1:]
    parsed = time.perf_counter() - start
    con.execute("BEGIN")
    con.executemany("INSERT INTO t VALUES (?,?,?,?,?,?,?)", data)
    con.execute("COMMIT")
    print(json.dumps({"csv_seconds": parsed, "seconds": time.perf_counter() - start,
                      "rows": len(data)}))
    """
)


def run(script: str, *args: str) -> dict[str, float]:
    done = subprocess.run(
        [sys.executable, "-c", script, *args], capture_output=True, text=True, check=True
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def bench_import_rows(tmp_path: Path) -> None:
    """Issue 16, goal 4: the import against a bare csv.reader + sqlite3 executemany into a
    single-index table (the same file, the store's pragmas), median of 3 paired runs each:
    ≥ 0.5× without hygiene, ≥ 0.12× with ``_h``."""
    n = rows(400_000)
    src = tmp_path / "mailing.csv"
    generate(src, n)
    size_mb = src.stat().st_size / 1e6
    print(
        f"\nimport benchmark: {n:,} rows, {size_mb:.0f} MB file (name, phone, e-mail, cpf, "
        "3 fields), SQLite, median of 3 paired runs"
    )
    bare: list[float] = []
    found: dict[str, list[dict[str, float]]] = {"without _h": [], "with _h": []}
    for r in range(3):
        ref = run(REFERENCE, str(src), str(tmp_path / f"reference{r}.db"))
        bare.append(n / ref["seconds"])
        for label, params in (("without _h", "cBRAD"), ("with _h", "cBRAD_h")):
            result = run(IMPORT, str(src), params, str(tmp_path / f"{params}{r}.db"))
            assert result["outcome"] == "imported" and result["rows"] == n
            found[label].append(result)
    reference = statistics.median(bare)
    print(
        f"  reference: csv.reader + executemany into a single-index table {reference:,.0f} "
        f"rows/s (runs {', '.join(f'{x:,.0f}' for x in bare)})"
    )
    for label, goal in (("without _h", 0.5), ("with _h", 0.12)):
        rates = [n / x["seconds"] for x in found[label]]
        rate = statistics.median(rates)
        rss = max(x["rss_mb"] for x in found[label])
        print(
            f"  {label:11} {rate:9,.0f} rows/s (runs {', '.join(f'{x:,.0f}' for x in rates)}),"
            f" peak RSS {rss:.0f} MB: {rate / reference:.2f}× the reference (goal ≥ {goal}×)"
        )


def bench_import_campaign_memory(tmp_path: Path) -> None:
    """Issue 16, goal 4: an e-mail campaign import's peak RSS stays flat — < 200 MB at
    1,000,000 rows (BENCH_BIG_ROWS), not growing with the audience: each import in its own
    process, the big one next to a tenth of it."""
    big = int(os.environ.get("BENCH_BIG_ROWS", 1_000_000))
    small = max(big // 10, 1)
    html = tmp_path / "body.html"
    html.write_text("<p>Olá {{ nome }}, seu plano {{ plano }} vence em {{ vencimento }}.</p>")
    print("\nimport memory: e-mail campaign imports (SQLite), each in its own process")
    found: dict[int, dict[str, float]] = {}
    for n in (small, big):
        src = tmp_path / f"campaign{n}.csv"
        generate(src, n)
        result = run(IMPORT, str(src), "cBRAD_email_teAviso", str(tmp_path / f"c{n}.db"), str(html))
        assert result["outcome"] == "imported" and result["recipients"] == n
        found[n] = result
        src.unlink()
    rate = big / found[big]["seconds"]
    print(
        f"  {big:,} rows: peak RSS {found[big]['rss_mb']:.0f} MB ({rate:,.0f} rows/s); "
        f"{small:,} rows: {found[small]['rss_mb']:.0f} MB (goal < 200 MB at 1,000,000, flat)"
    )
