"""What the identity stand-in issues, and to whom: the people who can sign in
(:class:`FakeIdentity`), the access and ID tokens Entra would mint for them or
for an app, and what each access token grants (:class:`IssuedToken`), which is
what the SMTP and Graph stand-ins check. It is apart from the endpoints in
:mod:`.identity` so that the claims, which clients and our tests read, are in
one place and can change without touching the HTTP side."""

from __future__ import annotations

import base64
import json
import secrets
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

#: Tenant id Microsoft uses for every personal (Outlook.com, Hotmail) account.
PERSONAL_TENANT_ID = "9188040d-6c67-4c5b-b112-36a304b66dad"
_NAMESPACE = uuid.UUID("5f0c3c1e-7f0e-4a43-9a1b-6c2b8f4e0d11")
#: OpenID Connect's scopes: they shape the answer, not what a token is for.
OIDC_SCOPES = frozenset({"openid", "profile", "offline_access", "email"})
_JWT_HEADER = base64.urlsafe_b64encode(b'{"typ":"JWT","alg":"RS256"}').decode()
#: The resource of SMTP.Send (and of a bare scope such as ``SMTP.Send``).
OUTLOOK = "https://outlook.office.com"
#: Audiences Exchange's SMTP accepts (the second is app-only's ``.default``).
OUTLOOK_AUDIENCES = frozenset({OUTLOOK, "https://outlook.office365.com"})


@dataclass(frozen=True)
class IssuedToken:
    """What the SMTP and Graph stand-ins learn from an access token they are shown."""

    mailbox: str  # "" for an app-only token
    audience: str  # the resource it is for, e.g. https://graph.microsoft.com
    scopes: frozenset[str]  # short names, as in its scp (or an app's roles) claim
    expires_at: float
    app_id: str = ""
    app: bool = False  # an app-only (client credentials) token


@dataclass(frozen=True)
class FakeIdentity:
    """A user who can sign in, with ids derived from the e-mail (personal
    accounts share Microsoft's consumer tenant, work ones get one per domain).
    ``email_claim=False``: ID tokens without ``email``, as Entra often sends."""

    email: str
    name: str = ""
    kind: Literal["personal", "work"] = "work"
    preferred_username: str = ""
    email_claim: bool = True

    @property
    def tid(self) -> str:
        domain = self.email.rpartition("@")[2].lower()
        uid = str(uuid.uuid5(_NAMESPACE, f"tid:{domain}"))
        return PERSONAL_TENANT_ID if self.kind == "personal" else uid

    @property
    def oid(self) -> str:
        return str(uuid.uuid5(_NAMESPACE, f"oid:{self.email.lower()}"))


def user_tokens(
    identity: FakeIdentity,
    scopes: list[str],
    *,
    client_id: str,
    flags: set[str],
    nonce: str,
) -> tuple[str, IssuedToken, dict[str, str]]:
    """A user's access token for ``scopes`` (one resource's), what it grants
    (its expiry left to the issuer), and the rest of Entra's answer but the
    refresh token: the scopes as Entra names them, ``client_info``, and an ID
    token only if ``flags`` holds openid."""
    audience = resource_of(scopes[0]) if scopes else OUTLOOK
    permissions = [scope.rpartition("/")[2] for scope in scopes]
    if identity.kind == "personal":  # Microsoft's are opaque, not JWTs
        token = "EwB" + secrets.token_urlsafe(1200)
    else:  # about Microsoft's size, which breaks naive SMTP line limits
        claims = {"aud": audience, "tid": identity.tid, "upn": identity.email}
        token = jwt(claims | {"scp": " ".join(permissions), "aio": "A" * 900})
    issued = IssuedToken(identity.email, audience, frozenset(permissions), 0)
    # Entra names Graph's scopes by their short names in its answer.
    named = scopes if audience == OUTLOOK else permissions
    client_info = b64(json.dumps({"uid": identity.oid, "utid": identity.tid}).encode())
    answer = {"scope": " ".join(named), "client_info": client_info}
    if "openid" in flags:
        answer["id_token"] = id_token(identity, client_id=client_id, nonce=nonce)
    return token, issued, answer


def id_token(identity: FakeIdentity, *, client_id: str, nonce: str) -> str:
    """The ID token Entra gives ``client_id``: who signed in, and where."""
    issuer = f"https://login.microsoftonline.com/{identity.tid}/v2.0"
    claims = {"aud": client_id, "iss": issuer, "nonce": nonce}
    claims |= {"sub": identity.oid, "oid": identity.oid, "tid": identity.tid}
    claims["name"] = identity.name
    claims["preferred_username"] = identity.preferred_username or identity.email
    if identity.email_claim:
        claims["email"] = identity.email
    return jwt(claims)


def app_token(
    *, client_id: str, tenant: str, resource: str, roles: list[str]
) -> tuple[str, IssuedToken]:
    """An app's own access token for ``resource`` in ``tenant``, carrying the
    ``roles`` granted it there, and what it grants (expiry left to the issuer)."""
    claims = {"aud": resource, "tid": tenant, "appid": client_id}
    # Like Entra: an app holding no role there gets a token without ``roles``.
    token = jwt(claims | {"idtyp": "app"} | ({"roles": roles} if roles else {}))
    return token, IssuedToken("", resource, frozenset(roles), 0, client_id, True)


def resource_scopes(scopes: Iterable[str]) -> list[str]:
    """The scopes a token is for: all but OpenID Connect's."""
    return [scope for scope in scopes if scope.lower() not in OIDC_SCOPES]


def resource_of(scope: str) -> str:
    """A scope's resource, all before its last '/'; a bare scope is Outlook's,
    which answers to two names."""
    resource = scope.rpartition("/")[0].rstrip("/").casefold() or OUTLOOK
    return OUTLOOK if resource in OUTLOOK_AUDIENCES else resource


def b64(data: bytes) -> str:
    """Base64url without padding, as JWTs and PKCE's S256 challenge write it."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def jwt(claims: dict[str, Any]) -> str:
    """A JWT look-alike: its signature is random, as nobody checks it here."""
    now = int(time.time())
    payload = json.dumps({"iat": now, "nbf": now, "exp": now + 3600, **claims})
    return f"{_JWT_HEADER}.{b64(payload.encode())}.{secrets.token_urlsafe(256)}"
