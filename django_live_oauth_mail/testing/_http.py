"""A small threaded HTTPS server that hands parsed requests to an app object.

Only the standard library is used so the fake identity platform and the fake
Graph API work without extra dependencies. The server never logs query strings
or bodies, because those carry codes and tokens.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import socket
import ssl
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol
from urllib.parse import parse_qs, urlsplit

__all__ = ["App", "HTTPSServer", "Reply", "Request"]

logger = logging.getLogger("django_live_oauth_mail.testing.http")

_QUERY = re.compile(r"\?\S*")


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
        cls,
        status: int,
        payload: Mapping[str, Any],
        headers: Mapping[str, str] | None = None,
    ) -> Reply:
        return cls(
            status,
            json.dumps(payload).encode(),
            "application/json; charset=utf-8",
            {"Cache-Control": "no-store", "Pragma": "no-cache", **(headers or {})},
        )

    @classmethod
    def html(cls, status: int, page: str) -> Reply:
        return cls(status, page.encode(), "text/html; charset=utf-8")

    @classmethod
    def redirect(cls, location: str) -> Reply:
        return cls(302, b"", headers={"Location": location})


class App(Protocol):
    def dispatch(self, request: Request) -> Reply: ...


class HTTPSServer:
    """Serve ``app`` over TLS on ``sock`` from a background daemon thread.

    With ``context=None`` it serves plain HTTP (only for pages a browser
    shows; see ``FakeIdentityPlatform(pages_over_http=True)``).
    """

    def __init__(self, app: App, sock: socket.socket, context: ssl.SSLContext | None):
        self._server = _Server(sock, app, context)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"{type(app).__name__}:{sock.getsockname()[1]}",
            daemon=True,
        )
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._server.drop_connections()
        self._thread.join(timeout=5)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, sock: socket.socket, app: App, context: ssl.SSLContext | None):
        # Adopt an already-bound socket so the caller controls port selection.
        super().__init__(sock.getsockname()[:2], _Handler, bind_and_activate=False)
        self.socket.close()
        self.socket = sock
        self.app = app
        self.tls = context
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()

    def get_request(self) -> tuple[socket.socket, Any]:
        sock, address = self.socket.accept()
        if self.tls is not None:
            # Handshake later, on the handler thread, so a slow client can't
            # block the accept loop.
            sock = self.tls.wrap_socket(
                sock, server_side=True, do_handshake_on_connect=False
            )
        with self._open_lock:
            self._open.add(sock)
        return sock, address

    def shutdown_request(self, request: Any) -> None:
        with self._open_lock:
            self._open.discard(request)
        super().shutdown_request(request)

    def drop_connections(self) -> None:
        """Close kept-alive connections so a stopped server really is gone."""
        with self._open_lock:
            for sock in list(self._open):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        logger.debug("connection from %s failed", client_address, exc_info=True)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes; don't let Nagle delay them.
    disable_nagle_algorithm = True
    sys_version = ""
    timeout = 30
    server: _Server

    def setup(self) -> None:
        super().setup()
        if isinstance(self.request, ssl.SSLSocket):
            self.request.do_handshake()

    def version_string(self) -> str:
        return f"{type(self.server.app).__name__}/1.0"

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def do_PUT(self) -> None:
        self._serve()

    def do_DELETE(self) -> None:
        self._serve()

    def _serve(self) -> None:
        url = urlsplit(self.path)
        body = b""
        if self.command in ("POST", "PUT", "DELETE"):
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        form: dict[str, str] = {}
        is_form = self.headers.get_content_type() == "application/x-www-form-urlencoded"
        if self.command == "POST" and (is_form or "Content-Type" not in self.headers):
            form = _first_values(body.decode("utf-8", "replace"))
        request = Request(
            method=self.command,
            path=url.path,
            query=_first_values(url.query),
            form=form,
            headers={k.lower(): v for k, v in self.headers.items()},
            body=body,
        )
        app_name = type(self.server.app).__name__
        try:
            reply = self.server.app.dispatch(request)
        except Exception:
            logger.exception("%s failed on %s", app_name, url.path)
            reply = Reply(500, f"internal error in {app_name}".encode())
        self.send_response(reply.status)
        self.send_header("Content-Type", reply.content_type)
        self.send_header("Content-Length", str(len(reply.body)))
        for name, value in reply.headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(reply.body)

    def log_message(self, format: str, *args: Any) -> None:
        # Request lines may carry codes in their query strings: drop those.
        logger.debug(_QUERY.sub("?...", format % args))


def _first_values(query: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(query, keep_blank_values=True).items()}
