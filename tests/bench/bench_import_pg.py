"""PostgreSQL import benchmark (issue 16, goal 4): the generated mailing of bench_import.py
(400,000 rows by default, BENCH_ROWS; name, phone, e-mail, cpf and three extra fields) imported
through the real ``import_file`` path into a fresh PostgreSQL store, as a plain import without
``_h`` and as an e-mail campaign (``_email``: memberships and deliveries too), each import in
its own process. The reference, in the same run: csv.reader over the same file and a psycopg
``COPY`` of the same parsed rows into a table with the columns and the indexes of ``contacts``
(the unique identity among them); for the campaign, the same plus a ``COPY`` of the
memberships and deliveries into tables with their indexes. Median of ``BENCH_ROUNDS`` (3)
paired runs, one PostgreSQL server (the machine's binaries, as the tests start it) for all.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
import tomli_w

from engine.testing.store import write_secret
from tests.bench.bench_import import generate
from tests.bench.conftest import rows
from tests.peers.postgres import PostgresServer, find_bindir, start_postgres

IMPORT = textwrap.dedent(
    """
    import json, sys, time
    from pathlib import Path
    from engine.clock import RealClock, local_today
    from engine.config import load_config
    from engine.plugins.format import FormatContext
    from engine.intake.importer import file_digest, import_file
    from engine.plugins import load_plugins
    from engine.store import Store

    if __name__ == "__main__":
        src, params, url, config_path = Path(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
        clock = RealClock()
        config = load_config(Path(config_path))
        today = local_today(clock, config.tz)
        name = f"mailing_{today:%d%m%y}_001_{params}.csv"
        store = Store.open(url, clock=clock)  # creates the schema: not timed
        context = FormatContext(config, "bench", today, clock.now())
        fmt = load_plugins().formats()["mailing"](context)
        digest = file_digest(src)  # the collector hashes while downloading: not timed
        start = time.perf_counter()
        report = import_file(store, fmt, source="bench", path=name, spool=src,
                             size=src.stat().st_size, mtime=None, sha256=digest)
        seconds = time.perf_counter() - start
        store.close()
        # VmHWM, not ru_maxrss: exec keeps the forking parent's peak (pytest's) in maxrss
        rss = next(int(l.split()[1]) / 1024 for l in open("/proc/self/status")
                   if l.startswith("VmHWM:"))
        print(json.dumps({"outcome": report.outcome, "rows": report.rows,
                          "contacts": report.contacts, "seconds": seconds, "rss_mb": rss,
                          "problems": [str(p) for p in report.problems]}))
    """
)

REFERENCE = textwrap.dedent(
    """
    import csv, json, sys, time
    import psycopg
    path, conninfo, campaign = sys.argv[1], sys.argv[2], sys.argv[3] == "campaign"
    con = psycopg.connect(conninfo)
    # the columns and indexes of contacts (schema.py): id, unique identity, phone, import_id,
    # last_interaction_at; for the campaign, wallet_members and deliveries with theirs
    con.execute(
        "CREATE TABLE c (id bigserial PRIMARY KEY, identity varchar(400) NOT NULL UNIQUE, "
        "external_key varchar(200), name varchar(300), email varchar(320), phone varchar(40), "
        "fields jsonb NOT NULL, last_interaction_at timestamp, import_id bigint, "
        "import_row integer, created_at timestamp NOT NULL, updated_at timestamp NOT NULL)")
    con.execute("CREATE INDEX ON c (phone)")
    con.execute("CREATE INDEX ON c (import_id)")
    con.execute("CREATE INDEX ON c (last_interaction_at) WHERE last_interaction_at IS NOT NULL")
    if campaign:
        con.execute(
            "CREATE TABLE m (wallet_id bigint NOT NULL, contact_id bigint NOT NULL "
            "REFERENCES c (id) ON DELETE CASCADE, added_at timestamp NOT NULL, "
            "removed_at timestamp, PRIMARY KEY (wallet_id, contact_id))")
        con.execute("CREATE INDEX ON m (contact_id)")
        con.execute(
            "CREATE TABLE d (id bigserial PRIMARY KEY, campaign_id bigint NOT NULL, "
            "contact_id bigint REFERENCES c (id) ON DELETE SET NULL, position integer NOT NULL,"
            " batch integer NOT NULL, address varchar(320) NOT NULL, payload jsonb, "
            "status varchar(12) NOT NULL, attempts integer NOT NULL, lease_until timestamp,"
            " next_attempt_at timestamp, provider_id varchar(200), "
            "UNIQUE (campaign_id, position))")
        con.execute("CREATE INDEX ON d (campaign_id, status, batch, position)")
        con.execute("CREATE INDEX ON d (lease_until) WHERE lease_until IS NOT NULL")
        con.execute("CREATE INDEX ON d (campaign_id, next_attempt_at) "
                    "WHERE next_attempt_at IS NOT NULL")
        con.execute("CREATE INDEX ON d (provider_id) WHERE provider_id IS NOT NULL")
    con.commit()
    start = time.perf_counter()
    now = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.reader(f, delimiter=";")
        next(reader)
        data = [
            (r[3], r[3], r[0], r[1], r[2],
             json.dumps({"cidade": r[4], "plano": r[5], "vencimento": r[6]}), 1, i, now, now)
            for i, r in enumerate(reader, 2)
        ]
    parsed = time.perf_counter() - start
    with con.cursor() as cur:
        with cur.copy("COPY c (identity, external_key, name, email, phone, fields, import_id, "
                      "import_row, created_at, updated_at) FROM STDIN") as copy:
            for row in data:
                copy.write_row(row)
        if campaign:
            ids = [r[0] for r in cur.execute("SELECT id FROM c ORDER BY id")]
            with cur.copy("COPY m (wallet_id, contact_id, added_at) FROM STDIN") as copy:
                for i in ids:
                    copy.write_row((1, i, now))
            with cur.copy("COPY d (campaign_id, contact_id, position, batch, address, status, "
                          "attempts) FROM STDIN") as copy:
                for k, (i, row) in enumerate(zip(ids, data)):
                    copy.write_row((1, i, k, 1, row[4], "pending", 0))
    con.commit()
    print(json.dumps({"csv_seconds": parsed, "seconds": time.perf_counter() - start,
                      "rows": len(data)}))
    """
)


@pytest.fixture(scope="module")
def postgres() -> Iterator[PostgresServer]:
    if find_bindir() is None:
        pytest.skip("PostgreSQL binaries (initdb, pg_ctl) not installed")
    server = start_postgres()
    yield server
    server.stop()


def conninfo(server: PostgresServer, database: str) -> str:
    return f"host={server.socket_dir} port={server.port} user=postgres dbname={database}"


def workspace(tmp: Path) -> Path:
    """A configuration with an e-mail account and the wallet's subject and body (the
    campaign variant needs them; nothing is sent)."""
    write_secret(tmp / "key", "k" * 32)
    (tmp / "body.html").write_text("<p>Olá {{ nome }}, uma oferta em {{ cidade }}.</p>")
    config = tmp / "disparo.toml"
    config.write_text(
        tomli_w.dumps(
            {
                "engine": {"log_level": "warning"},
                "tracking": {"public_url": "https://t.example.com", "secret_file": "key"},
                "accounts": {
                    "mail": {
                        "channel": "email",
                        "host": "127.0.0.1",
                        "port": 2525,
                        "tls": "none",
                        "from_address": "aviso@empresa.com.br",
                    }
                },
                "wallets": {
                    "BRAD": {
                        "email_subject": "Olá {{ nome }}, uma oferta",
                        "email_template": "body.html",
                    }
                },
            }
        )
    )
    return config


def run(script: str, *args: str) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-c", script, *args], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise AssertionError(f"{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def bench_import_postgres(postgres: PostgresServer, tmp_path: Path) -> None:
    """Issue 16, goal 4 on PostgreSQL: the import against a bare csv.reader + psycopg COPY of
    the same rows into a table with the columns and indexes of ``contacts``, median of 3 paired
    runs: ≥ 0.5×."""
    n = rows(400_000)
    rounds = int(os.environ.get("BENCH_ROUNDS", "3"))
    src = tmp_path / "mailing.csv"
    generate(src, n)
    config = workspace(tmp_path)
    size_mb = src.stat().st_size / 1e6
    print(
        f"\nPostgreSQL import benchmark: {n:,} rows, {size_mb:.0f} MB file (name, phone, "
        f"e-mail, cpf, 3 fields), median of {rounds} paired runs"
    )
    variants = {"without _h": ("cBRAD", "import"), "e-mail campaign": ("cBRAD_email", "campaign")}
    bare: dict[str, list[float]] = {kind: [] for _, kind in variants.values()}
    found: dict[str, list[dict[str, object]]] = {label: [] for label in variants}
    databases: list[str] = []
    try:
        for _ in range(rounds):
            for label, (params, kind) in variants.items():
                database = postgres.create_database()
                databases.append(database)
                ref = run(REFERENCE, str(src), conninfo(postgres, database), kind)
                bare[kind].append(n / float(ref["seconds"]))  # type: ignore[arg-type]
                database = postgres.create_database()
                databases.append(database)
                result = run(IMPORT, str(src), params, postgres.url(database), str(config))
                assert result["outcome"] == "imported" and result["rows"] == n, result
                found[label].append(result)
            for database in databases:
                postgres.drop_database(database)
            databases.clear()
    finally:
        for database in databases:
            postgres.drop_database(database)
    copy = statistics.median(bare["import"])
    print(
        f"  reference: csv.reader + COPY into a table with the contacts' indexes {copy:,.0f} "
        f"rows/s (runs {', '.join(f'{x:,.0f}' for x in bare['import'])})"
    )
    print(
        "  reference: the same + COPY of memberships and deliveries "
        f"{statistics.median(bare['campaign']):,.0f} rows/s "
        f"(runs {', '.join(f'{x:,.0f}' for x in bare['campaign'])})"
    )
    for label, (_, kind) in variants.items():
        rates = [n / float(x["seconds"]) for x in found[label]]  # type: ignore[arg-type]
        rate = statistics.median(rates)
        rss = max(float(x["rss_mb"]) for x in found[label])  # type: ignore[arg-type]
        # each round's import against the reference run just before it (paired)
        paired = [r / b for r, b in zip(rates, bare["import"], strict=True)]
        line = (
            f"  {label:15} {rate:9,.0f} rows/s (runs {', '.join(f'{x:,.0f}' for x in rates)}),"
            f" peak RSS {rss:.0f} MB: {statistics.median(paired):.2f}× the bare COPY (paired "
            f"rounds {', '.join(f'{x:.2f}' for x in paired)}; goal ≥ 0.5×)"
        )
        if kind == "campaign":
            full = [r / b for r, b in zip(rates, bare["campaign"], strict=True)]
            line += f", {statistics.median(full):.2f}× the COPY with memberships and deliveries"
        print(line)
