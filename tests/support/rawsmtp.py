"""A raw, scripted SMTP server on loopback: it says exactly the bytes a test gives it.

aiosmtpd (tests/support/smtp.py) is a correct server; this one can be broken on purpose:
answer ``DATA`` with 250, send an extra reply line, send garbage, stall in the middle of
a message and then resume. Each connection runs :class:`Session` in its own thread; a
test changes its behaviour by passing replies per command (``replies={"DATA": [...]}``,
consumed one per command, then the normal reply) or a ``stall_in_body`` schedule.

What it received is recorded: ``messages`` holds every message whose final dot arrived
(each is what a real server would have accepted), ``partial`` the bodies cut off.
"""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass, field

NORMAL = {
    "EHLO": b"250-raw.test\r\n250-8BITMIME\r\n250-SIZE 100000000\r\n250 DSN\r\n",
    "HELO": b"250 raw.test\r\n",
    "MAIL": b"250 2.1.0 Ok\r\n",
    "RCPT": b"250 2.1.5 Ok\r\n",
    "DATA": b"354 End data with <CR><LF>.<CR><LF>\r\n",
    "DOT": b"250 2.0.0 Ok: queued as RAW{n}\r\n",
    "RSET": b"250 2.0.0 Ok\r\n",
    "NOOP": b"250 2.0.0 Ok\r\n",
    "QUIT": b"221 2.0.0 Bye\r\n",
}


@dataclass
class Behaviour:
    """What the server does; reply lists are consumed one per command, then NORMAL."""

    greeting: bytes = b"220 raw.test ESMTP\r\n"
    replies: dict[str, list[bytes]] = field(default_factory=dict)
    # Read this many bytes of the next message body, then sleep this long, then go on.
    stall_in_body: list[tuple[int, float]] = field(default_factory=list)
    # After the reply to this command ("DOT": to the final dot), once, send these bytes
    # unasked (a reply to nothing), in the same write as the reply: the client has them
    # before it can send its next command, so the test does not depend on timing.
    unsolicited_after: dict[str, bytes] = field(default_factory=dict)
    # Wait this long before answering the final dot (a slow, distant server).
    dot_delay: float = 0.0


class RawServer:
    """``with RawServer(Behaviour(...)) as server: ... server.port``."""

    def __init__(self, behaviour: Behaviour | None = None) -> None:
        self.behaviour = behaviour or Behaviour()
        self.messages: list[bytes] = []
        self.partial: list[bytes] = []
        self.commands: list[str] = []
        self._lock = threading.Lock()
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # A small receive buffer, so a stalled reader really stops a sender.
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(16)
        self.port = int(self._sock.getsockname()[1])
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def __enter__(self) -> RawServer:
        thread = threading.Thread(target=self._accept, daemon=True)
        thread.start()
        self._threads.append(thread)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._sock.close()
        for thread in self._threads:
            thread.join(timeout=5)

    def pop(self, command: str) -> bytes:
        with self._lock:
            queue = self.behaviour.replies.get(command)
            if queue:
                return queue.pop(0)
        return NORMAL[command]

    def _accept(self) -> None:
        self._sock.settimeout(0.2)
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            thread = threading.Thread(target=Session(self, conn).run, daemon=True)
            thread.start()
            self._threads.append(thread)


class Session:
    """One connection: a line-oriented loop that answers what the behaviour says."""

    def __init__(self, server: RawServer, conn: socket.socket) -> None:
        self.server = server
        self.conn = conn
        self.buffer = b""
        conn.settimeout(30)

    def readline(self) -> bytes | None:
        while b"\r\n" not in self.buffer:
            chunk = self.conn.recv(65536)
            if not chunk:
                return None
            self.buffer += chunk
        line, _, self.buffer = self.buffer.partition(b"\r\n")
        return line

    def send(self, data: bytes) -> None:
        self.conn.sendall(data)

    def run(self) -> None:
        try:
            self._run()
        except OSError:
            pass
        finally:
            self.conn.close()

    def _run(self) -> None:
        server = self.server
        self.send(server.behaviour.greeting)
        if not server.behaviour.greeting.startswith(b"220"):
            return
        while True:
            line = self.readline()
            if line is None:
                return
            command = line.split(b" ", 1)[0].split(b":", 1)[0].upper().decode("ascii", "replace")
            verb = {"MAIL": "MAIL", "RCPT": "RCPT"}.get(command, command)
            server.commands.append(line.decode("utf-8", "replace"))
            if verb not in NORMAL:
                self.send(b"502 5.5.2 Error: command not recognized\r\n")
                continue
            reply = server.pop(verb)
            self.send(reply + server.behaviour.unsolicited_after.pop(verb, b""))
            if verb == "QUIT":
                return
            if verb == "DATA" and reply.startswith(b"354"):
                body = self._read_body()
                if body is None:
                    return
                server.messages.append(body)
                if server.behaviour.dot_delay:
                    time.sleep(server.behaviour.dot_delay)
                reply = server.pop("DOT").replace(b"{n}", str(len(server.messages)).encode())
                self.send(reply + server.behaviour.unsolicited_after.pop("DOT", b""))

    def _read_body(self) -> bytes | None:
        """Read up to the final dot (None if the client went away first)."""
        data = bytearray(self.buffer)
        self.buffer = b""
        stalls = self.server.behaviour.stall_in_body
        end = -1 if not data.startswith(b".\r\n") else 0
        while end < 0:
            end = data.find(b"\r\n.\r\n")
            if end >= 0:
                break
            if stalls and len(data) >= stalls[0][0]:
                _, seconds = stalls.pop(0)
                time.sleep(seconds)
            try:
                chunk = self.conn.recv(262144)
            except OSError:
                chunk = b""
            if not chunk:
                self.server.partial.append(bytes(data))
                return None
            seen = max(0, len(data) - 4)
            data += chunk
            found = data.find(b"\r\n.\r\n", seen)
            if found >= 0:
                end = found
        if end == 0 and data.startswith(b".\r\n"):
            self.buffer = bytes(data[3:])
            return b""
        self.buffer = bytes(data[end + 5 :])
        return bytes(data[: end + 2])
