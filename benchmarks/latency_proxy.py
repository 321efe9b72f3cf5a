"""A loopback TCP proxy that adds a fixed one-way delay in each direction.

Each chunk is written ``one_way_delay`` seconds after it was read, whatever
came before it: a delay line, like a long cable, not a sleep per chunk, so
latency is added without capping throughput. Order is kept per direction,
and the server accepts a new connection 1.5 round trips late, as over TCP.
"""

from __future__ import annotations

import contextlib
import queue
import socket
import threading
import time
from collections.abc import Callable

Line = queue.SimpleQueue[tuple[float, bytes]]


class LatencyProxy:
    """Forward 127.0.0.1:<free port> to ``upstream``, delaying both directions."""

    def __init__(self, upstream: tuple[str, int], one_way_delay: float = 0.015) -> None:
        self.upstream = upstream
        self.one_way_delay = one_way_delay
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.host, self.port = self._listener.getsockname()[:2]
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self._threads: list[threading.Thread] = []
        self._acceptor = threading.Thread(target=self._accept_loop, daemon=True)

    def start(self) -> LatencyProxy:
        self._acceptor.start()
        return self

    def stop(self) -> None:
        """Stop accepting, cut the open connections, and wait for the threads."""
        self._stopping.set()
        self._acceptor.join()
        with self._lock:
            for sock in self._open:
                _shut(sock)
            threads = list(self._threads)
        for thread in threads:
            thread.join(timeout=5)
        self._listener.close()

    def _spawn(self, target: Callable[..., None], *args: object) -> threading.Thread:
        thread = threading.Thread(target=target, args=args, daemon=True)
        with self._lock:
            self._threads = [t for t in self._threads if t.is_alive()]
            self._threads.append(thread)
        thread.start()
        return thread

    def _accept_loop(self) -> None:
        self._listener.settimeout(0.1)  # to notice stop(): close() wakes no accept()
        while not self._stopping.is_set():
            with contextlib.suppress(TimeoutError):
                self._spawn(self._serve, self._listener.accept()[0])

    def _serve(self, client: socket.socket) -> None:
        # Over a real link the server accepts after SYN, SYN-ACK and ACK.
        time.sleep(3 * self.one_way_delay)
        try:
            server = socket.create_connection(self.upstream, timeout=5)
        except OSError:
            client.close()  # the client sees the refusal as a hang-up
            return
        for sock in (client, server):
            sock.settimeout(None)
            # Nagle would hold small replies for the peer's delayed ACK.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self._lock:
            self._open.update((client, server))
            if self._stopping.is_set():  # stop() has cut the others already
                _shut(client)
        ends = [(client, server), (server, client)]
        for pipe in [self._spawn(self._pipe, *pair) for pair in ends]:
            pipe.join()
        with self._lock:
            self._open.difference_update((client, server))
        client.close()
        server.close()

    def _pipe(self, source: socket.socket, target: socket.socket) -> None:
        """Read ``source`` on a thread of its own; write to ``target`` on time."""
        line: Line = queue.SimpleQueue()
        reader = self._spawn(self._read, source, line)
        try:
            while True:
                due, data = line.get()
                pause = due - time.monotonic()
                if pause > 0:
                    time.sleep(pause)
                if not data:
                    target.shutdown(socket.SHUT_WR)
                    break
                target.sendall(data)
        except OSError:
            _shut(source)  # the far side is gone: stop reading, too
        reader.join()

    def _read(self, source: socket.socket, line: Line) -> None:
        data = b"-"
        while data:
            try:
                data = source.recv(65536)
            except OSError:
                data = b""
            line.put((time.monotonic() + self.one_way_delay, data))


def _shut(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
