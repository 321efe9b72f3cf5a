"""Where the local stand-ins listen: free ports and listening sockets."""

from __future__ import annotations

import errno
import socket


def find_free_port(host: str = "127.0.0.1") -> int:
    """A port that was free a moment ago on ``host`` (another process may take it)."""
    with listen(host, 0) as sock:
        return int(sock.getsockname()[1])


def listen(host: str, port: int, *, may_move: bool = False) -> socket.socket:
    """A socket listening on ``host:port``, or if ``may_move`` and it is taken, any."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        return socket.create_server((host, port), family=family)
    except OSError as error:
        if error.errno != errno.EADDRINUSE or not may_move:
            raise
        return socket.create_server((host, 0), family=family)
