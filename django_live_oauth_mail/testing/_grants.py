"""What the fake identity platform hands out, and Entra's answers and rules.

A refusal is Entra's JSON: ``error``, ``error_codes`` and an ``AADSTSnnnn:``
description. Clients branch on the codes; the texts here are short.
"""

from __future__ import annotations

import base64
import json
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from ._http import Reply

#: The resource of SMTP.Send (and of a bare scope such as ``SMTP.Send``).
OUTLOOK = "https://outlook.office.com"
#: Audiences Exchange's SMTP accepts (the second is app-only's ``.default``).
OUTLOOK_AUDIENCES = frozenset({OUTLOOK, "https://outlook.office365.com"})
OIDC_SCOPES = frozenset({"openid", "profile", "offline_access", "email"})
_DESCRIPTIONS = {
    9002313: "Invalid request. Request is malformed or invalid.",
    9002325: "Proof Key for Code Exchange is required (S256).",
    700016: "Application with identifier '{}' was not found in the directory.",
    50034: "The user account {} does not exist in the directory.",
    7000215: "Invalid client secret provided.",
    700027: "Client assertion contains an invalid signature. [Reason - {}]",
    7000229: "The app {} is missing service principal in the tenant {}.",
    28000: "Scope {} is not valid: it contains more than one resource.",
    54005: "OAuth2 Authorization code was already redeemed.",
    500112: "The reply address does not match the authorization request's.",
    501481: "The Code_Verifier does not match the code_challenge.",
    65001: "The user or administrator has not consented to use the application.",
    65004: "User declined to consent to access the app.",
    70000: "The grant has been revoked or is invalid.",
    70016: "Authorization is pending. Continue polling.",
    700082: "The refresh token has expired due to inactivity.",
}
_JWT_HEADER = base64.urlsafe_b64encode(b'{"typ":"JWT","alg":"RS256"}').decode()


def describe(code: int, *details: str) -> str:
    """``AADSTS<code>: <description>`` (a generic one for codes not listed)."""
    text = _DESCRIPTIONS.get(code, "The request was refused (simulated).")
    return f"AADSTS{code}: " + text.format(*details, *["?"] * text.count("{}"))


class AADError(Exception):
    """An OAuth error answer: raised while redeeming, sent by the endpoint."""

    def __init__(
        self, error: str, code: int, *details: str, status: int = 400, email: str = ""
    ) -> None:
        super().__init__(describe(code, *details))
        self.error, self.code, self.status, self.email = error, code, status, email

    def reply(self) -> Reply:
        body = {"error": self.error, "error_description": str(self)}
        return Reply.json(self.status, body | {"error_codes": [self.code]})


@dataclass(frozen=True)
class IssuedToken:
    """What a resource server learns from an access token it is shown."""

    mailbox: str  # "" for an app-only token
    audience: str  # the resource it is for, e.g. https://graph.microsoft.com
    scopes: frozenset[str]  # short names, as in its scp (or an app's roles) claim
    expires_at: float
    app_id: str = ""
    app: bool = False  # an app-only (client credentials) token


@dataclass(frozen=True)
class TokenRequest:
    """One POST to the token endpoint, as recorded for assertions."""

    grant_type: str
    email: str | None  # whose grant it was, if the request got that far
    scope: str
    status: int
    tenant: str  # in the URL path: common, a tenant id...


@dataclass
class Grant:
    """An authorization code, refresh token or device code: each works once."""

    email: str  # "" while a device code waits for its user
    scopes: tuple[str, ...]
    redirect_uri: str = ""
    challenge: str = ""  # PKCE's S256 code challenge (authorization codes)
    nonce: str = ""
    used: bool = False
    revoked: int = 0  # the AADSTS code a revoked refresh token fails with


def resource_scopes(scopes: Iterable[str]) -> list[str]:
    """The scopes a token is for: all but OpenID Connect's."""
    return [scope for scope in scopes if scope.lower() not in OIDC_SCOPES]


def resource_of(scope: str) -> str:
    """A scope's resource, all before its last '/'; a bare scope is Outlook's,
    which answers to two names."""
    resource = scope.rpartition("/")[0].rstrip("/").casefold() or OUTLOOK
    return OUTLOOK if resource in OUTLOOK_AUDIENCES else resource


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def jwt(claims: dict[str, Any]) -> str:
    """A JWT look-alike: its signature is random, as nobody checks it here."""
    now = int(time.time())
    payload = json.dumps({"iat": now, "nbf": now, "exp": now + 3600, **claims})
    return f"{_JWT_HEADER}.{b64(payload.encode())}.{secrets.token_urlsafe(256)}"
