"""What the stand-ins share: lifecycle, address, and Exchange's address rules."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from email.message import Message
from email.utils import getaddresses
from types import TracebackType
from typing import Any, TypeVar

from .certs import DEFAULT_HOSTNAMES, TestCertificate, make_test_certificate
from .ports import find_free_port

_Server = TypeVar("_Server", bound="LocalServer")


class LocalServer:
    """Base of the stand-ins: ``with Server(...) as server:`` starts and stops it."""

    _host: str
    _port: int
    _auto_port: bool
    _certificate: TestCertificate

    def _bind_address(
        self, host: str, port: int | None, certificate: TestCertificate | None
    ) -> None:
        """Choose the port (a free one if None) and a certificate valid for host."""
        self._host, self._auto_port = host, port is None
        self._port = find_free_port(host) if port is None else port
        names = (
            DEFAULT_HOSTNAMES
            if host in DEFAULT_HOSTNAMES
            else (host, *DEFAULT_HOSTNAMES)
        )
        self._certificate = certificate or make_test_certificate(names)

    def start(self: _Server) -> _Server:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self: _Server) -> _Server:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: Any,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def host(self) -> str:
        return self._host

    @property
    def port(self) -> int:
        return self._port

    @property
    def certificate(self) -> TestCertificate:
        return self._certificate

    @property
    def ca_bundle(self) -> str:
        """Path of the CA certificate that clients must trust."""
        return self._certificate.ca_path


def casefolded(addresses: Iterable[str]) -> set[str]:
    """The addresses as Exchange compares them (a copy: tests may change them)."""
    return {address.casefold() for address in tuple(addresses)}


def granted(grants: Mapping[str, Iterable[str]], key: str) -> set[str]:
    """What ``grants`` gives ``key`` (a mailbox or an app id), casefolded."""
    folded = key.casefold()
    return {
        v.casefold()
        for k, vs in tuple(grants.items())
        if k.casefold() == folded
        for v in tuple(vs)
    }


def addresses(message: Message, *headers: str) -> list[str]:
    """The addresses in ``message``'s ``headers``."""
    values = [str(value) for name in headers for value in message.get_all(name, [])]
    return [address for _, address in getaddresses(values) if address]
