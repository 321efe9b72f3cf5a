"""Where the local stand-ins listen: TCP ports and listening sockets."""

from __future__ import annotations

import errno
import socket

__all__ = ["find_free_port", "listen"]


def find_free_port(host: str = "127.0.0.1") -> int:
    """A port that was free a moment ago on ``host`` (the OS picks it).

    Another process may take it before you bind it, so the stand-ins move to
    a fresh port when binding one they picked themselves fails.
    """
    with socket.socket(_family(host), socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
    return port


def listen(host: str, port: int, *, may_move: bool = False) -> socket.socket:
    """A listening socket on ``host:port``; with ``may_move``, on a port the OS
    picks if that one is taken (read it from ``getsockname()``)."""
    try:
        return socket.create_server((host, port), family=_family(host))
    except OSError as error:
        if error.errno != errno.EADDRINUSE or not may_move:
            raise
        return socket.create_server((host, 0), family=_family(host))


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET
