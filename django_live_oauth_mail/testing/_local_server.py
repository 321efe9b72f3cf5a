"""What both stand-ins share: a context-manager lifecycle and an address."""

from __future__ import annotations

from types import TracebackType
from typing import TypeVar

from .certs import TestCertificate

_Server = TypeVar("_Server", bound="LocalServer")


class LocalServer:
    """Base of the stand-ins: ``with Server(...) as server:`` starts and stops it."""

    _host: str
    _port: int
    _certificate: TestCertificate

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
