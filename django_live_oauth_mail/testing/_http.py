"""A small threaded HTTPS server that hands parsed requests to a stand-in. It
logs a stand-in's failures and nothing else: requests carry codes and tokens."""

from __future__ import annotations

import json
import logging
import socket
import ssl
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol
from urllib.parse import parse_qsl, urlsplit

logger = logging.getLogger("django_live_oauth_mail.testing.http")


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: dict[str, str]
    form: dict[str, str]
    headers: dict[str, str]
    body: bytes = field(default=b"", repr=False)


@dataclass
class Reply:
    status: int
    body: bytes = b""
    content_type: str = "text/plain; charset=utf-8"
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def json(
        cls, status: int, data: Any, headers: dict[str, str] | None = None
    ) -> Reply:
        body, kind = json.dumps(data).encode(), "application/json; charset=utf-8"
        return cls(status, body, kind, dict(headers or {}))

    @classmethod
    def html(cls, status: int, page: str) -> Reply:
        return cls(status, page.encode(), "text/html; charset=utf-8")


class App(Protocol):
    def dispatch(self, request: Request) -> Reply: ...


class HTTPSServer(ThreadingHTTPServer):
    """Serve ``app`` on the bound ``sock`` from a daemon thread, over TLS (or
    plain HTTP with ``context=None``, for pages a demo's browser shows)."""

    daemon_threads = True

    def __init__(self, app: App, sock: socket.socket, context: ssl.SSLContext | None):
        super().__init__(sock.getsockname()[:2], _Handler, bind_and_activate=False)
        self.socket.close()
        self.socket, self.app, self.tls = sock, app, context
        # stop() ends the thread; so does the end of the process.
        threading.Thread(target=self.serve_forever, args=(0.05,), daemon=True).start()

    def close(self) -> None:
        self.shutdown()
        self.server_close()

    def handle_error(self, request: Any, client_address: Any) -> None:
        logger.debug("connection from %s failed", client_address, exc_info=True)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body are separate writes
    timeout = 30
    server: HTTPSServer

    def setup(self) -> None:
        # On the connection's own thread: a slow TLS handshake can't hold up
        # the accept loop.
        if self.server.tls is not None:
            self.request = self.server.tls.wrap_socket(self.request, server_side=True)
        super().setup()

    def finish(self) -> None:
        super().finish()
        self.request.close()

    def do_GET(self) -> None:
        url, app = urlsplit(self.path), self.server.app
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        form = {}
        if self.headers.get_content_type() == "application/x-www-form-urlencoded":
            form = dict(parse_qsl(body.decode(), keep_blank_values=True))
        query = dict(parse_qsl(url.query, keep_blank_values=True))
        headers = {name.lower(): value for name, value in self.headers.items()}
        try:
            reply = app.dispatch(
                Request(self.command, url.path, query, form, headers, body)
            )
        except Exception:
            logger.exception("%s failed on %s", type(app).__name__, url.path)
            reply = Reply(500, b"internal error in the stand-in")
        self.send_response(reply.status)
        length = str(len(reply.body))
        sent = {"Content-Type": reply.content_type, "Content-Length": length}
        for name, value in (sent | reply.headers).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(reply.body)

    do_POST = do_PUT = do_DELETE = do_GET

    def log_message(self, format: str, *args: Any) -> None:
        """Nothing: request lines carry codes in their query strings."""
