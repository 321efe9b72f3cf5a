"""What the stand-ins share: free ports, lifecycle and address, the record of
a message they accepted, and how Exchange compares addresses."""

from __future__ import annotations

import errno
import socket
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage, Message
from email.parser import BytesParser
from email.utils import getaddresses
from typing import TypeVar, cast

from .certs import DEFAULT_HOSTNAMES, TestCertificate, make_test_certificate

_Server = TypeVar("_Server", bound="LocalServer")


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


class LocalServer:
    """Base of the stand-ins: ``with Server(...) as server:`` starts and stops
    it. ``host``, ``port`` (a free one if None was given) and ``certificate``
    (valid for ``host``) are fixed once :meth:`start` has run."""

    def _bind_address(
        self, host: str, port: int | None, certificate: TestCertificate | None
    ) -> None:
        self.host, self._auto_port = host, port is None
        self.port = find_free_port(host) if port is None else port
        extra = () if host in DEFAULT_HOSTNAMES else (host,)
        names = (*extra, *DEFAULT_HOSTNAMES)
        self.certificate = certificate or make_test_certificate(names)
        self._stops: list[Callable[[], None]] = []

    def start(self: _Server) -> _Server:
        """Start serving on background threads (returns ``self``)."""
        sock = listen(self.host, self.port, may_move=self._auto_port)
        self.port = sock.getsockname()[1]
        self._stops.append(self._serve(sock))
        return self

    def stop(self) -> None:
        """Stop serving; what the server recorded is kept."""
        while self._stops:
            self._stops.pop()()

    def _serve(self, sock: socket.socket) -> Callable[[], None]:
        """Serve on the listening ``sock``; return what stops that."""
        raise NotImplementedError

    def __enter__(self: _Server) -> _Server:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    @property
    def ca_bundle(self) -> str:
        """Path of the CA certificate that clients must trust."""
        return self.certificate.ca_path


@dataclass(frozen=True)
class ReceivedMessage:
    """A message the server accepted."""

    mail_from: str
    rcpt_tos: list[str]
    authenticated_as: str
    mechanism: str  # XOAUTH2, PLAIN, LOGIN, or "graph" (the Graph stand-in's)
    data: bytes = field(repr=False)
    session_id: int = 0  # which connection: 1, 2, ... since start or reset
    received_at: float = field(default_factory=time.time, compare=False)

    @property
    def message(self) -> EmailMessage:
        """The parsed message (``email.policy.default``, ``\\n`` line ends)."""
        data = self.data.replace(b"\r\n", b"\n")
        parsed = BytesParser(policy=policy.default).parsebytes(data)
        assert isinstance(parsed, EmailMessage)
        return parsed

    @property
    def subject(self) -> str:
        return str(self.message.get("Subject", ""))

    @property
    def text(self) -> str:
        """The ``text/plain`` body ("" if there is none)."""
        body = self.message.get_body(preferencelist=("plain",))
        return "" if body is None else str(body.get_content())

    @property
    def attachments(self) -> list[tuple[str, bytes]]:
        """``(filename, content)`` for each attachment."""
        return [
            (p.get_filename() or "", cast(bytes, p.get_payload(decode=True) or b""))
            for p in self.message.iter_attachments()
        ]


def casefolded(addresses: Iterable[str]) -> set[str]:
    """As Exchange compares addresses (a copy: tests may change the original)."""
    return {address.casefold() for address in tuple(addresses)}


def granted(grants: Mapping[str, Iterable[str]], key: str) -> set[str]:
    """What ``grants`` gives ``key`` (a mailbox or an app id), casefolded."""
    found = [vs for k, vs in tuple(grants.items()) if k.casefold() == key.casefold()]
    return casefolded(v for vs in found for v in tuple(vs))


def addresses(message: Message, *headers: str) -> list[str]:
    """The addresses in ``message``'s ``headers``."""
    values = [str(v) for name in headers for v in message.get_all(name, [])]
    return [address for _, address in getaddresses(values) if address]
