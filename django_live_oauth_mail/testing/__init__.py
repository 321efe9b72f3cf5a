"""Real local servers that stand in for Microsoft in tests, over TLS with a
throwaway certificate (:func:`make_test_certificate`) so clients keep
verification on: :class:`FakeIdentityPlatform` (what msal talks to),
:class:`XOAuth2SMTPServer` (smtp.office365.com:587; needs ``aiosmtpd``) and
:class:`FakeGraphAPI` (Graph's ``sendMail``). Nothing here imports Django; the
socket-free helpers that do are in :mod:`.recording`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._local_server import ReceivedMessage, find_free_port
from .certs import (
    ClientCertificate,
    TestCertificate,
    make_client_certificate,
    make_test_certificate,
)
from .consent import AuthorizationResponse, ConsentPageError
from .graph import FakeGraphAPI
from .identity import FakeIdentityPlatform, TokenRequest
from .tokens import PERSONAL_TENANT_ID, FakeIdentity

if TYPE_CHECKING:
    from .smtp import AuthAttempt, XOAuth2SMTPServer

__all__ = [
    "PERSONAL_TENANT_ID",
    "AuthAttempt",
    "AuthorizationResponse",
    "ClientCertificate",
    "ConsentPageError",
    "FakeGraphAPI",
    "FakeIdentity",
    "FakeIdentityPlatform",
    "ReceivedMessage",
    "TestCertificate",
    "TokenRequest",
    "XOAuth2SMTPServer",
    "find_free_port",
    "make_client_certificate",
    "make_test_certificate",
]


def __getattr__(name: str) -> Any:
    # The SMTP server needs the optional aiosmtpd dependency: import it lazily
    # so the identity platform works without it.
    if name in ("AuthAttempt", "XOAuth2SMTPServer"):
        try:
            from . import smtp
        except ImportError as error:
            raise ImportError(
                f'{name} needs aiosmtpd: pip install "django-live-oauth-mail[testing]"'
            ) from error
        return getattr(smtp, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
