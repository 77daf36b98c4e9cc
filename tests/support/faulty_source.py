"""A course-like data API on a raw loopback socket that misbehaves on purpose, per script.

Raw sockets rather than FastAPI because some faults are below HTTP: a connection closed after
half a body, or accepted and never answered. Each `Fault` is one answer; the script's last answer
repeats, so `[Fault.status(503), Fault.status(503), Fault.good(body)]` is "503 twice, then data".
The server counts the requests it got so a test can check the client retried (and stopped).
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from forestops.source import protocol

_REASONS = {200: "OK", 400: "Bad Request", 500: "Internal Server Error", 502: "Bad Gateway"}


@dataclass(frozen=True)
class Fault:
    """One answer: a status and body, optionally cut after `cut` bytes or never sent (`hang`)."""

    status: int = 200
    body: bytes = b""
    content_type: str = "application/json"
    cut: int | None = None
    hang: bool = False

    @classmethod
    def good(cls, body: bytes) -> Fault:
        return cls(200, body)

    @classmethod
    def error(cls, status: int) -> Fault:
        return cls(status, json.dumps({"detail": f"upstream says {status}"}).encode())

    @classmethod
    def all_collected(cls) -> Fault:
        """The course server's own 400, word for word."""
        return cls(400, json.dumps({"detail": protocol.COURSE_ALL_COLLECTED}).encode())

    def response(self) -> bytes:
        head = (
            f"HTTP/1.1 {self.status} {_REASONS.get(self.status, 'Unavailable')}\r\n"
            f"Content-Type: {self.content_type}\r\nContent-Length: {len(self.body)}\r\n"
            "Connection: close\r\n\r\n"
        ).encode()
        whole = head + self.body
        return whole if self.cut is None else whole[: len(head) + self.cut]


def payload(rows: list[Any], batch: int = 1, group: int = 1) -> bytes:
    return json.dumps({"group_number": group, "batch_number": batch, "data": rows}).encode()


class FaultySource:
    """Serves `script` on 127.0.0.1 (free port); `url` and `requests` for the test."""

    def __init__(self, script: list[Fault]) -> None:
        self._script = script
        self.requests = 0
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.2)
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                connection, _ = self._listener.accept()
            except TimeoutError:
                continue
            fault = self._script[min(self.requests, len(self._script) - 1)]
            self.requests += 1
            # one thread per connection: a hanging answer must not block the client's retry
            threading.Thread(target=self._answer, args=(connection, fault), daemon=True).start()

    def _answer(self, connection: socket.socket, fault: Fault) -> None:
        with connection:
            connection.settimeout(2)
            try:
                connection.recv(65536)  # the GET; its content does not matter
                if fault.hang:
                    self._stop.wait(5)  # past the client's timeout, bounded so the test ends
                else:
                    connection.sendall(fault.response())
            except OSError:
                pass  # the client gave up first: that is the fault being tested

    def __enter__(self) -> FaultySource:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)
        self._listener.close()


@contextmanager
def refusing_url() -> Iterator[str]:
    """A loopback URL nobody listens on (the port was bound, then released)."""
    with socket.create_server(("127.0.0.1", 0)) as probe:
        port = probe.getsockname()[1]
    yield f"http://127.0.0.1:{port}"
