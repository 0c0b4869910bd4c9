"""A real HTTP server standing in for Sentry's ingest endpoint, recording every envelope.

sentry-sdk posts envelopes to ``/api/<project>/envelope/`` (gzip-compressed, or brotli when
the ``brotli`` module is installed). An envelope is a JSON header line followed by items,
each a JSON item header line and a payload (of ``length`` bytes when given, else up to the
next newline).
"""

from __future__ import annotations

import gzip
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self

from tests.support.wait import poll_until


@dataclass(frozen=True)
class Envelope:
    path: str
    raw: bytes  # decompressed
    items: list[tuple[dict[str, Any], bytes]] = field(default_factory=list)

    def payloads(self, item_type: str) -> list[dict[str, Any]]:
        return [json.loads(body) for header, body in self.items if header.get("type") == item_type]


def parse_envelope(raw: bytes) -> list[tuple[dict[str, Any], bytes]]:
    _, _, rest = raw.partition(b"\n")
    items: list[tuple[dict[str, Any], bytes]] = []
    while rest.strip():
        header_line, _, rest = rest.partition(b"\n")
        header = json.loads(header_line)
        length = header.get("length")
        if length is None:
            body, _, rest = rest.partition(b"\n")
        else:
            body, rest = rest[:length], rest[length:].removeprefix(b"\n")
        items.append((header, body))
    return items


def _decompress(body: bytes, encoding: str) -> bytes:
    if encoding == "gzip":
        return gzip.decompress(body)
    if encoding == "br":
        import brotli  # type: ignore[import-not-found]  # only sent when installed

        return bytes(brotli.decompress(body))
    if encoding in ("", "identity"):
        return body
    raise ValueError(f"unexpected content-encoding {encoding!r}")


class SentryIngest:
    """``with SentryIngest() as ingest:`` ... ``ingest.dsn`` ... ``ingest.events()``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._envelopes: list[Envelope] = []
        self._errors: list[str] = []
        ingest = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length)
                try:
                    raw = _decompress(body, self.headers.get("content-encoding", "").lower())
                    envelope = Envelope(self.path, raw, parse_envelope(raw))
                except Exception as exc:
                    with ingest._lock:
                        ingest._errors.append(repr(exc))
                    self.send_response(400)
                    self.end_headers()
                    return
                with ingest._lock:
                    ingest._envelopes.append(envelope)
                reply = b"{}"
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # the test asserts on what arrived, not on access lines

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def dsn(self) -> str:
        return f"http://publickey@127.0.0.1:{self._server.server_address[1]}/1"

    def envelopes(self) -> list[Envelope]:
        with self._lock:
            if self._errors:
                raise AssertionError(f"undecodable envelope: {self._errors}")
            return list(self._envelopes)

    def raw(self) -> bytes:
        """Every envelope received so far, decompressed and concatenated."""
        return b"\n".join(envelope.raw for envelope in self.envelopes())

    def events(self) -> list[dict[str, Any]]:
        return [event for envelope in self.envelopes() for event in envelope.payloads("event")]

    def wait_for_events(self, count: int, within_s: float = 10.0) -> list[dict[str, Any]]:
        poll_until(lambda: len(self.events()) >= count, within_s)
        return self.events()

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)
