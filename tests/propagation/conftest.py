"""A real HTTP server on 127.0.0.1 that records the headers of every request it gets."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator

import pytest


class HeaderServer:
    """``url``; ``requests``: (method, path, headers with lower-case names) of every request, in order."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        received = self.requests

        class Handler(http.server.BaseHTTPRequestHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                if length:
                    self.rfile.read(length)
                received.append((self.command, self.path, {k.lower(): v for k, v in self.headers.items()}))
                body = b"{}"
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = _answer

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def headers(self, path: str) -> list[dict[str, str]]:
        return [headers for _, got, headers in self.requests if got == path]

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def header_server() -> Iterator[HeaderServer]:
    server = HeaderServer()
    yield server
    server.close()


@pytest.fixture
def other_server() -> Iterator[HeaderServer]:
    server = HeaderServer()
    yield server
    server.close()
