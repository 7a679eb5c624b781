"""A real PostgreSQL server for tests, started from the machine's own binaries.

``initdb`` refuses to run as root, so as root the server runs as the ``postgres`` user. Each
server has its own temporary folder (its data directory) and listens only on a Unix socket
in that folder, not on a TCP port: servers of parallel test processes (pytest-xdist workers)
share nothing, and no port picked as free can be taken by someone else before the server
binds it.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

import psycopg


def find_bindir() -> Path | None:
    """The folder holding initdb and pg_ctl, or None when PostgreSQL is not installed."""
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), reverse=True)
    return Path(candidates[0]).parent if candidates else None


#: the port names the socket file (.s.PGSQL.5432) in the server's own folder: no TCP port
PORT = 5432


@dataclass
class PostgresServer:
    bindir: Path
    datadir: Path
    socket_dir: Path  # where the server's Unix socket is
    port: int
    user: str | None  # the OS user the server runs as (None: the current one)
    options: str = ""  # what pg_ctl start passes to the server (port, socket folder…)

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.bindir / args[0]), *args[1:]],
            check=True,
            capture_output=True,
            text=True,
            user=self.user,
        )

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://postgres@/{database}?host={self.socket_dir}&port={self.port}"

    def _connect(self) -> psycopg.Connection[tuple[object, ...]]:
        return psycopg.connect(
            host=str(self.socket_dir),
            port=self.port,
            user="postgres",
            dbname="postgres",
            autocommit=True,
        )

    def create_database(self) -> str:
        name = "t_" + uuid.uuid4().hex[:12]
        with self._connect() as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return name

    def drop_database(self, name: str) -> None:
        with self._connect() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def halt(self) -> None:
        """Stop the server (fast: sessions are terminated), keeping its data: ``resume()``
        starts it again on the same port (an outage of the database)."""
        self._run("pg_ctl", "-D", str(self.datadir), "-m", "fast", "-w", "stop")

    def resume(self) -> None:
        log = str(self.datadir.parent / "log")
        self._run("pg_ctl", "-D", str(self.datadir), "-o", self.options, "-l", log, "-w", "start")

    def stop(self) -> None:
        try:
            self._run("pg_ctl", "-D", str(self.datadir), "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self.datadir.parent, ignore_errors=True)


def start_postgres() -> PostgresServer:
    bindir = find_bindir()
    if bindir is None:
        raise FileNotFoundError("PostgreSQL binaries (initdb, pg_ctl) not found")
    base = Path(tempfile.mkdtemp(prefix="disparo-pg-"))
    user = None
    if os.geteuid() == 0:
        user = "postgres"
        pw = pwd.getpwnam(user)
        os.chown(base, pw.pw_uid, pw.pw_gid)
    datadir = base / "data"
    server = PostgresServer(bindir, datadir, base, PORT, user)
    server._run(
        "initdb",
        "-D",
        str(datadir),
        "-A",
        "trust",
        "-U",
        "postgres",
        "-E",
        "UTF8",
        "--locale=C",
        "--no-sync",
    )
    options = (
        f"-p {server.port} -k {base} -c listen_addresses='' -c fsync=off "
        "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
    )
    server.options = options
    server._run("pg_ctl", "-D", str(datadir), "-o", options, "-l", str(base / "log"), "-w", "start")
    return server
