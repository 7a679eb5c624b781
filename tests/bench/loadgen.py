"""An HTTP/1.1 load generator for the tracking benchmark, run as its own process so that it
never shares a core's GIL with the server it measures: raw asyncio streams, keep-alive
connections, each with ``depth`` requests pipelined (pre-built request bytes, responses only
counted by their status lines). Its ceiling is measured against ``canned``, a server that
answers every request with the same bytes without parsing them.

    python -m tests.bench.loadgen HOST PORT PATHS_FILE CONNECTIONS DEPTH EXPECTED_STATUS
    python -m tests.bench.loadgen --canned PORT

prints one JSON line: when it began (``time.time()``), requests, seconds, the rate, and how
many answered the expected status.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

STATUS = b"HTTP/1.1 "


async def _connection(
    host: str, port: int, requests: list[bytes], depth: int, expect: bytes
) -> int:
    reader, writer = await asyncio.open_connection(host, port)
    sent = answered = ok = 0
    tail = tail_ok = b""
    wanted = STATUS + expect
    while answered < len(requests):
        if sent - answered < depth and sent < len(requests):
            upto = min(len(requests), answered + depth)
            writer.write(b"".join(requests[sent:upto]))
            sent = upto
        data = await reader.read(262144)
        if not data:
            raise RuntimeError(f"connection closed after {answered} of {len(requests)} answers")
        # a status line split across two reads: each pattern keeps its own tail, one byte
        # shorter than itself, so nothing is counted twice
        answered += (tail + data).count(STATUS)
        ok += (tail_ok + data).count(wanted)
        tail = (tail + data)[-(len(STATUS) - 1) :]
        tail_ok = (tail_ok + data)[-(len(wanted) - 1) :]
    writer.close()
    return ok


async def _run(
    host: str, port: int, paths: list[str], conns: int, depth: int, expect: str
) -> dict[str, float]:
    head = f" HTTP/1.1\r\nHost: {host}:{port}\r\nUser-Agent: loadgen\r\n\r\n".encode()
    requests = [b"GET " + p.encode() + head for p in paths]
    shares = [requests[i::conns] for i in range(conns)]
    began = time.time()  # the wall clock: the benchmark compares it with its own
    started = time.perf_counter()
    oks = await asyncio.gather(
        *(_connection(host, port, share, depth, expect.encode()) for share in shares if share)
    )
    seconds = time.perf_counter() - started
    return {
        "began": began,
        "requests": len(paths),
        "seconds": seconds,
        "rate": len(paths) / seconds,
        "ok": sum(oks),
    }


class _Canned(asyncio.Protocol):
    ANSWER = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: image/gif\r\n\r\nok"

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.tail = b""

    def data_received(self, data: bytes) -> None:
        chunk = self.tail + data
        n = chunk.count(b"\r\n\r\n")
        self.tail = chunk[chunk.rfind(b"\r\n\r\n") + 4 :] if n else chunk
        if n:
            self.transport.write(self.ANSWER * n)  # type: ignore[attr-defined]


async def _canned(port: int) -> None:
    server = await asyncio.get_running_loop().create_server(_Canned, "127.0.0.1", port)
    async with server:
        await server.serve_forever()


def main(argv: list[str]) -> None:
    if argv[0] == "--canned":
        asyncio.run(_canned(int(argv[1])))
        return
    host, port, paths_file, conns, depth, expect = argv
    with open(paths_file) as handle:
        paths = handle.read().split()
    print(json.dumps(asyncio.run(_run(host, int(port), paths, int(conns), int(depth), expect))))


if __name__ == "__main__":
    main(sys.argv[1:])
