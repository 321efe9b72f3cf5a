"""The identity stand-in as our own suite drives it: the public one plus the
faults, checks and peeks only our tests need, so the package keeps just what
users testing their own flows use."""

from __future__ import annotations

import base64
import json
from collections import deque
from dataclasses import replace
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from django_live_oauth_mail.testing import FakeIdentity, FakeIdentityPlatform
from django_live_oauth_mail.testing._grants import OUTLOOK_AUDIENCES
from django_live_oauth_mail.testing._http import Reply, Request
from django_live_oauth_mail.testing.identity import AADError


class _Fault(AADError):
    """A canned answer of the token endpoint: Entra's JSON error, or a page."""

    def __init__(
        self,
        status: int,
        error: str,
        code: int,
        body: str | None,
        headers: dict[str, str],
    ) -> None:
        super().__init__(error, code, status=status)
        self.body, self.headers = body, headers

    def reply(self) -> Reply:
        if self.body is None:
            reply = super().reply()
            reply.headers.update(self.headers)
            return reply
        return Reply(self.status, self.body.encode(), "text/html", dict(self.headers))


class IdentityPlatform(FakeIdentityPlatform):
    """:class:`FakeIdentityPlatform` with a log of every request, fault
    injection and token checks."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._faults: deque[_Fault] = deque()
        self._requests: list[tuple[str, str]] = []
        self._certificates: list[x509.Certificate] = []

    def reset(self) -> None:
        """Forget recorded requests and queued faults (identities, tokens stay)."""
        super().reset()
        self._faults.clear()
        self._requests.clear()

    @property
    def requests(self) -> list[tuple[str, str]]:
        """Every HTTP request so far, as ``(method, path)`` without the query."""
        return list(self._requests)

    def dispatch(self, request: Request) -> Reply:
        reply = super().dispatch(request)
        self._requests.append((request.method, request.path))  # once answered
        return reply

    def add_identity(self, identity: FakeIdentity) -> None:
        """Let ``identity`` sign in (instead of one with the same e-mail)."""
        self._identities[identity.email.casefold()] = identity

    def fail_next_token_requests(
        self,
        count: int = 1,
        *,
        status: int = 500,
        error: str = "temporarily_unavailable",
        error_code: int = 90033,
        body: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        """Answer the next ``count`` token requests with Entra's JSON error, or
        with ``body`` as HTML; ``headers`` such as ``{"Retry-After": "1"}``."""
        fault = _Fault(status, error, error_code, body, dict(headers or {}))
        self._faults.extend([fault] * count)

    def add_client_certificate(self, certificate_pem: str) -> None:
        """Check client assertions as Entra does: signed by this certificate's
        key (the public stand-in takes them on trust)."""
        pem = certificate_pem.encode()
        self._certificates.append(x509.load_pem_x509_certificate(pem))

    def _redeem(self, tenant: str, form: dict[str, str]) -> Any:
        if self._faults:
            raise self._faults.popleft()
        if "client_assertion" in form:
            problem = assertion_problem(form["client_assertion"], self._certificates)
            if problem:
                raise AADError("invalid_client", 700027, problem, status=401)
        return super()._redeem(tenant, form)

    def expire_access_tokens(self, email: str | None = None) -> None:
        """Invalidate issued access tokens server-side (clients still trust them)."""
        for token, issued in list(self._access.items()):
            if email is None or issued.mailbox.casefold() == email.casefold():
                self._access[token] = replace(issued, expires_at=0.0)

    def validate_access_token(self, token: str) -> str | None:
        """The mailbox of an unexpired user's token for Exchange's SMTP, else
        ``None``: Exchange refuses Graph's tokens and app-only ones here."""
        issued = self.introspect(token)
        if issued is None or issued.app or issued.audience not in OUTLOOK_AUDIENCES:
            return None
        return issued.mailbox


def assertion_problem(assertion: str, certificates: list[x509.Certificate]) -> str:
    """Why Entra refuses a client assertion (``""``: it doesn't). msal signs it
    RS256 and names the certificate by its SHA-1 thumbprint (``x5t``)."""
    try:
        header, claims, signature = assertion.split(".")
        x5t = _unb64(json.loads(_unb64(header))["x5t"])
        sha1 = hashes.SHA1()  # noqa: S303 - what Entra's x5t is
        keys = [c.public_key() for c in certificates if c.fingerprint(sha1) == x5t]
        if not keys or not isinstance(keys[0], rsa.RSAPublicKey):
            return "The key was not found."
        signed = f"{header}.{claims}".encode()
        keys[0].verify(_unb64(signature), signed, padding.PKCS1v15(), hashes.SHA256())
    except (ValueError, KeyError, TypeError, InvalidSignature):
        return "The signature did not match."
    return ""


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
