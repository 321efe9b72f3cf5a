"""What both stand-ins share: a context-manager lifecycle and an address."""

from __future__ import annotations

from types import TracebackType
from typing import TypeVar

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
        self._host = host
        self._auto_port = port is None
        self._port = find_free_port(host) if port is None else port
        if certificate is None:
            names = DEFAULT_HOSTNAMES
            if host not in names:
                names = (host, *names)
            certificate = make_test_certificate(names)
        self._certificate = certificate

    def start(self: _Server) -> _Server:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self: _Server) -> _Server:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
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
