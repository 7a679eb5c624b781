"""The benches' minimal asyncio SMTP sink (EHLO offers PIPELINING), one for every bench that
needs one when Postfix's ``smtp-sink`` is not installed (bench_dispatch, bench_scaleout).

It runs in its own process (``command(port, record)``): it accepts every message and, on
SIGTERM, writes one line per message it accepted to ``record`` (when given): its arrival time
(``time.time()``), its recipient, its Message-ID (``-`` without one) and the client's port,
separated by spaces (``arrival()`` reads one).
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import NamedTuple, Self

_MID = re.compile(rb"\r\nmessage-id:[ \t]*(<[^>\r\n]*>)", re.I)


class SinkProcess:
    """An SMTP sink running in its own process (Postfix's ``smtp-sink``, or ``command()``'s):
    the CPU it used so far; ``stop()`` ends it with SIGTERM (the asyncio sink writes its record
    then); as a context manager, stopped on leaving."""

    process: subprocess.Popen[bytes]

    def cpu(self) -> float:
        """User + system CPU seconds the sink used so far (0 once it is gone)."""
        try:
            stat = Path(f"/proc/{self.process.pid}/stat").read_text()
        except OSError:
            return 0.0
        fields = stat.rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(timeout=120)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class Arrival(NamedTuple):
    at: float
    recipient: str
    message_id: str
    connection: int  # the client's port (0: the sink does not say)


def command(port: int, record: Path | None = None) -> list[str]:
    """The command line running the sink on ``port`` (recording to ``record``)."""
    return [sys.executable, str(Path(__file__)), str(port), *([str(record)] if record else [])]


def arrival(line: str) -> Arrival:
    """One line of the record."""
    at, recipient, message_id, port = line.split(" ")
    return Arrival(float(at), recipient, message_id, int(port))


_seen: list[tuple[float, bytes, bytes, int]] = []


class _Sink(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.t, self.buf, self.data, self.rcpt = transport, b"", False, b""
        self.peer = int(transport.get_extra_info("peername")[1])
        transport.write(b"220 sink ESMTP\r\n")

    def data_received(self, chunk: bytes) -> None:
        self.buf += chunk
        out = []
        while True:
            if self.data:
                end = self.buf.find(b"\r\n.\r\n")
                if end < 0:
                    break
                body, self.buf, self.data = self.buf[:end], self.buf[end + 5 :], False
                m = _MID.search(body)
                _seen.append((time.time(), self.rcpt, m.group(1) if m else b"-", self.peer))
                out.append(b"250 2.0.0 queued\r\n")
                continue
            end = self.buf.find(b"\r\n")
            if end < 0:
                break
            raw, self.buf = self.buf[:end], self.buf[end + 2 :]
            line = raw.upper()
            if line.startswith(b"EHLO"):
                out.append(b"250-sink\r\n250-PIPELINING\r\n250-8BITMIME\r\n250 SMTPUTF8\r\n")
            elif line.startswith(b"RCPT"):
                self.rcpt = raw[raw.find(b"<") + 1 : raw.rfind(b">")]
                out.append(b"250 ok\r\n")
            elif line.startswith(b"DATA"):
                self.data = True
                self.buf = b"\r\n" + self.buf
                out.append(b"354 go\r\n")
            elif line.startswith(b"QUIT"):
                out.append(b"221 bye\r\n")
            else:
                out.append(b"250 ok\r\n")
        if out:
            self.t.write(b"".join(out))


async def _main(port: int) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    server = await loop.create_server(_Sink, "127.0.0.1", port, backlog=1024)
    await stop.wait()
    server.close()


if __name__ == "__main__":
    asyncio.run(_main(int(sys.argv[1])))
    if len(sys.argv) > 2:  # what it accepted, once stopped
        Path(sys.argv[2]).write_bytes(b"\n".join(b"%r %s %s %d" % seen for seen in _seen))
