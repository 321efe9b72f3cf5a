"""Pick TCP ports for the local test servers."""

from __future__ import annotations

import errno
import socket

__all__ = ["find_free_port", "listen"]


def find_free_port(host: str = "127.0.0.1") -> int:
    """Return a port that was free a moment ago on ``host``.

    The operating system picks the port (bind to port 0); the socket is closed
    again, so another process could grab the port before you do. The servers in
    this package therefore retry with a fresh port when binding fails.
    """
    with socket.socket(_family_for(host), socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
    return port


def listen(host: str, port: int, *, may_move: bool = False) -> socket.socket:
    """A listening socket on ``host:port`` (``SO_REUSEADDR`` on POSIX).

    With ``may_move``, a port taken in the meantime is replaced by one the
    operating system picks; read the real port from ``getsockname()``.
    """
    try:
        return socket.create_server((host, port), family=_family_for(host))
    except OSError as error:
        if error.errno != errno.EADDRINUSE or not may_move:
            raise
        return socket.create_server((host, 0), family=_family_for(host))


def _family_for(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET
