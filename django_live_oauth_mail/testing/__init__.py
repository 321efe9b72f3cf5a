"""Real local servers that stand in for Microsoft in tests.

* :class:`FakeIdentityPlatform` - an HTTPS OAuth 2.0 / OpenID Connect server
  that MSAL can talk to (authorization code + PKCE, refresh, device code,
  client credentials with a secret or a certificate).
* :class:`XOAuth2SMTPServer` - an SMTP server that behaves like
  smtp.office365.com:587 (STARTTLS, XOAUTH2, Exchange reply codes). It needs
  ``aiosmtpd``: ``pip install "django-live-oauth-mail[testing]"``.
* :class:`FakeGraphAPI` - an HTTPS server that answers Microsoft Graph's
  mail-sending calls (MIME ``sendMail``, drafts with upload sessions) and
  delivers into an :class:`XOAuth2SMTPServer`'s inbox.

All use a throwaway certificate (:func:`make_test_certificate`), so clients keep TLS
verification on. Nothing here imports Django.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._grants import TokenRequest
from ._local_server import ReceivedMessage
from .certs import (
    ClientCertificate,
    TestCertificate,
    make_client_certificate,
    make_test_certificate,
)
from .consent import AuthorizationResponse, ConsentPageError
from .graph import FakeGraphAPI
from .identity import PERSONAL_TENANT_ID, FakeIdentity, FakeIdentityPlatform
from .ports import find_free_port

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
