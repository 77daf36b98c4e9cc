"""uvicorn options for the inference service, and the connection limits uvicorn lacks.

uvicorn bounds what happens after a response (`timeout_keep_alive`) and how many connections
and tasks it takes (`limit_concurrency`: 503 beyond), but not how long a client may take to
send a request: a connection that sends its headers one byte at a time (slowloris), or headers
and then no body, is held forever, and with httptools (uvicorn's parser when installed) the
header size has no limit either. `guarded_protocol` adds the three: headers within
`header_timeout_s` and `max_header_bytes` (408 / 431, then closed), the body within
`body_timeout_s` of the headers (408 if nothing was answered yet, then closed). A body whose
declared Content-Length is over MAX_BODY_BYTES is refused with a 413 naming that setting before
any of it is read (FastAPI's own limit, the backstop for undeclared lengths, answers a bare
"Content Too Large" only once it has read that much).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from forestops.config import Settings

_END_OF_HEADERS = b"\r\n\r\n"


class _GuardedProtocol(HttpToolsProtocol):
    header_timeout_s: float
    body_timeout_s: float
    max_header_bytes: int
    max_body_bytes: int

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._timer: asyncio.TimerHandle | None = None
        self._reading_headers = True
        self._header_bytes = 0
        self._tail = b""
        super().connection_made(transport)
        self._arm(self.header_timeout_s)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._reading_headers:
            if self._timer is None:  # the next request on a kept-alive connection
                self._arm(self.header_timeout_s)
            window = self._tail + data
            end = window.find(_END_OF_HEADERS)
            counted = len(data) if end == -1 else max(0, end + 4 - len(self._tail))
            self._header_bytes += counted
            self._tail = window[-3:]
            if self._header_bytes > self.max_header_bytes:
                self._refuse(431, "Request Header Fields Too Large")
                return
        super().data_received(data)

    def on_headers_complete(self) -> None:
        self._reading_headers = False
        self._header_bytes = 0
        self._tail = b""
        declared = dict(self.headers).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.max_body_bytes:
            detail = (
                f"request body of {int(declared):,} bytes is over MAX_BODY_BYTES "
                f"({self.max_body_bytes:,} bytes)"
            )
            self._refuse(413, "Content Too Large", json.dumps({"detail": detail}).encode())
            return
        self._arm(self.body_timeout_s)
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._disarm()
        self._reading_headers = True
        super().on_message_complete()

    def _arm(self, seconds: float) -> None:
        self._disarm()
        self._timer = self.loop.call_later(seconds, self._expired)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _expired(self) -> None:
        self._timer = None
        if self._reading_headers and self._header_bytes == 0:
            self.transport.close()  # idle: nothing was asked, nothing to answer
        elif not self._reading_headers and self.cycle is not None and self.cycle.response_started:
            self.transport.close()  # answered already (a 401 before the body, say): cut it
        else:
            self._refuse(408, "Request Timeout")

    def _refuse(self, status: int, reason: str, json_body: bytes | None = None) -> None:
        if self.transport.is_closing():
            return
        body = json_body or reason.encode()
        kind = b"application/json" if json_body else b"text/plain; charset=utf-8"
        self.transport.write(
            b"HTTP/1.1 %d %s\r\ncontent-type: %s\r\ncontent-length: %d\r\n"
            b"connection: close\r\n\r\n%s" % (status, reason.encode(), kind, len(body), body)
        )
        self.transport.close()


def guarded_protocol(
    header_timeout_s: float, body_timeout_s: float, max_header_bytes: int, max_body_bytes: int
) -> type[HttpToolsProtocol]:
    """uvicorn's httptools protocol with these header and body limits (uvicorn's `http=`)."""
    return type(
        "GuardedHttpToolsProtocol",
        (_GuardedProtocol,),
        {
            "header_timeout_s": header_timeout_s,
            "body_timeout_s": body_timeout_s,
            "max_header_bytes": max_header_bytes,
            "max_body_bytes": max_body_bytes,
        },
    )


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for `uvicorn.run` / `uvicorn.Config` serving the inference app."""
    return {
        "http": guarded_protocol(
            settings.inference_header_timeout_s,
            settings.inference_body_timeout_s,
            settings.inference_max_header_bytes,
            settings.max_body_bytes,
        ),
        "limit_concurrency": settings.inference_max_connections,
        "timeout_keep_alive": settings.inference_keep_alive_s,
    }
