"""A recording SMTP sink in its own process, for benchmarks and crash tests.

    python -m tests.support.sink --port 2525 [--delay-ms 10] [--record FILE] [--dsn]

Accepts everything on 127.0.0.1. With ``--delay-ms D`` every reply (greeting, EHLO,
MAIL, RCPT, 354, end of data, QUIT) waits D ms: a slow, distant server. With ``--record FILE`` it appends
one line per accepted message: ``<Message-ID> <SHA-256 of the data>``, flushed before the
250 goes out, so a line exists for every message a client may have seen accepted.
Prints ``ready <port>`` on stdout when listening.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import IO, Any

from aiosmtpd.smtp import SMTP, Envelope, Session

_MID = re.compile(rb"^Message-ID:\s*(<[^>]+>)", re.I | re.M)


class SinkHandler:
    def __init__(self, delay_ms: int, record: IO[bytes] | None, dsn: bool) -> None:
        self.delay = delay_ms / 1000
        self.record = record
        self.dsn = dsn
        self.count = 0

    async def handle_EHLO(
        self, server: SMTP, session: Session, envelope: Envelope, hostname: str, responses: list[str]
    ) -> list[str]:
        session.host_name = hostname
        if self.dsn:
            return [*responses[:-1], "250-DSN", responses[-1]]
        return responses

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 2.1.0 OK"

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        data = envelope.original_content or b""
        self.count += 1
        if self.record is not None:
            match = _MID.search(data[:8192])
            mid = match.group(1) if match else b"<none>"
            digest = hashlib.sha256(data).hexdigest().encode()
            self.record.write(mid + b" " + digest + b"\n")
            self.record.flush()
        return f"250 2.0.0 Ok: queued as S{self.count:07d}"


class _DsnSMTP(SMTP):
    def __init__(self, handler: SinkHandler, **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self._delay = handler.delay

    async def push(self, status: Any) -> None:
        # Every reply (greeting, EHLO, MAIL, RCPT, 354, end of data, QUIT) is D ms late; a
        # multi-line reply (EHLO) is pushed line by line, so only its last line waits.
        if self._delay and str(status)[3:4] != "-":
            await asyncio.sleep(self._delay)
        await super().push(status)

    def _getparams(self, params: Any) -> Any:
        result = super()._getparams(params)
        if result is None:
            return None
        for key in ("RET", "ENVID", "NOTIFY", "ORCPT"):
            result.pop(key, None)
        return result


async def serve(port: int, handler: SinkHandler) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: _DsnSMTP(handler, hostname="sink.example", data_size_limit=None, enable_SMTPUTF8=True),
        host="127.0.0.1",
        port=port,
        backlog=256,
    )
    print(f"ready {port}", flush=True)
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    await stop.wait()
    server.close()


def main() -> None:
    parser = argparse.ArgumentParser(description="Recording SMTP sink on 127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--delay-ms", type=int, default=0)
    parser.add_argument("--record", type=Path)
    parser.add_argument("--dsn", action="store_true")
    args = parser.parse_args()
    record = open(args.record, "ab") if args.record else None  # noqa: SIM115
    asyncio.run(serve(args.port, SinkHandler(args.delay_ms, record, args.dsn)))


class Sink:
    """Run the sink as a subprocess: ``with Sink(delay_ms=10, record=path) as sink: sink.port``."""

    def __init__(self, *, delay_ms: int = 0, record: Path | None = None, dsn: bool = True) -> None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = int(sock.getsockname()[1])
        self.args = [sys.executable, "-m", "tests.support.sink", "--port", str(self.port), "--delay-ms", str(delay_ms)]
        if record is not None:
            self.args += ["--record", str(record)]
        if dsn:
            self.args.append("--dsn")
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Sink:
        root = Path(__file__).resolve().parents[2]
        env = {**os.environ, "PYTHONPATH": str(root)}
        self.proc = subprocess.Popen(self.args, stdout=subprocess.PIPE, cwd=root, env=env)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line.startswith(b"ready"):
            raise RuntimeError("sink did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
            if self.proc.stdout is not None:
                self.proc.stdout.close()

    def cpu_seconds(self) -> float:
        """CPU time used by the sink process so far (Linux /proc)."""
        assert self.proc is not None
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks = os.sysconf("SC_CLK_TCK")
        return (int(fields[11]) + int(fields[12])) / ticks


def wait_port(port: int, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(port)


if __name__ == "__main__":
    main()
