"""Mint token strings shaped like Microsoft's.

Only the shape matters: the platform keeps every issued token in memory and
looks it up, so nothing here is cryptographically meaningful. Sizes do
matter, though: real access tokens are 1.5-2.5 KB, which is what breaks SMTP
servers and clients with default line limits.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
import uuid
from collections.abc import Sequence
from typing import Any

from .accounts import FakeIdentity

__all__ = [
    "MIN_ACCESS_TOKEN_LENGTH",
    "OUTLOOK",
    "RESERVED_SCOPES",
    "access_token",
    "app_access_token",
    "authorization_code",
    "client_info",
    "id_token",
    "permission_of",
    "refresh_token",
    "resource_of",
    "resource_scopes",
]

#: OpenID Connect scopes that never show up in a token response's ``scope``.
RESERVED_SCOPES = frozenset({"openid", "profile", "offline_access", "email"})

MIN_ACCESS_TOKEN_LENGTH = 1000
#: The resource of SMTP.Send (and of a bare scope such as ``SMTP.Send``).
OUTLOOK = "https://outlook.office.com"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_json(payload: dict[str, Any]) -> str:
    return b64url(json.dumps(payload, separators=(",", ":")).encode())


def resource_scopes(scopes: Sequence[str]) -> list[str]:
    """The scopes Microsoft echoes back: everything except the OIDC ones."""
    return [s for s in scopes if s.lower() not in RESERVED_SCOPES]


def resource_of(scope: str) -> str:
    """The resource (token audience) a scope belongs to: all before its last '/'.

    ``https://graph.microsoft.com/Mail.Send`` is Graph's; a bare permission
    name is Outlook's here, which is what the tests ask for.
    """
    resource, slash, _ = scope.rpartition("/")
    return resource if slash else OUTLOOK


def permission_of(scope: str) -> str:
    """The short permission name, as in the ``scp`` claim: ``Mail.Send``."""
    return scope.rpartition("/")[2]


def client_info(identity: FakeIdentity) -> str:
    """The ``client_info`` blob MSAL uses to build its home account id."""
    return b64url_json({"uid": identity.oid, "utid": identity.tid})


def authorization_code(identity: FakeIdentity) -> str:
    prefix = "M.C5" if identity.kind == "personal" else "0.A"
    return f"{prefix}{secrets.token_urlsafe(300)}"


def refresh_token(identity: FakeIdentity) -> str:
    prefix = "M.C5" if identity.kind == "personal" else "0.A"
    return f"{prefix}{secrets.token_urlsafe(540)}"


def access_token(
    identity: FakeIdentity, client_id: str, scopes: Sequence[str], lifetime: int
) -> str:
    """A unique, realistic-size access token (``EwB...`` or a JWT look-alike)."""
    if identity.kind == "personal":
        # Personal-account tokens are opaque, base64-looking blobs.
        blob = base64.b64encode(secrets.token_bytes(1100)).decode("ascii")
        return "EwB" + blob[3:]
    now = int(time.time())
    resources = {resource_of(s) for s in resource_scopes(scopes)}
    payload = {
        "aud": resources.pop() if len(resources) == 1 else OUTLOOK,
        "iss": f"https://sts.windows.net/{identity.tid}/",
        "iat": now,
        "nbf": now,
        "exp": now + lifetime,
        "acct": 0,
        "acr": "1",
        "aio": secrets.token_urlsafe(90),
        "amr": ["pwd", "mfa"],
        "app_displayname": "django-live-oauth-mail tests",
        "appid": client_id,
        "appidacr": "1",
        "idtyp": "user",
        "ipaddr": "127.0.0.1",
        "name": identity.name,
        "oid": identity.oid,
        "puid": secrets.token_hex(8).upper(),
        "rh": secrets.token_urlsafe(40),
        "scp": " ".join(permission_of(s) for s in resource_scopes(scopes)),
        "sid": secrets.token_hex(16),
        "sub": secrets.token_urlsafe(32),
        "tid": identity.tid,
        "unique_name": identity.email,
        "upn": identity.email,
        "uti": secrets.token_urlsafe(16),
        "ver": "1.0",
        "wids": ["b79fbf4d-3ef9-4689-8143-76b194e85509"],
    }
    return _jwt_look_alike(payload)


def app_access_token(
    client_id: str,
    tenant: str,
    resource: str,
    roles: Sequence[str],
    lifetime: int,
    *,
    certificate: bool,
) -> str:
    """An app-only (client credentials) v1.0 token: ``roles``, never ``scp``.

    Like Entra, ``roles`` is left out when the app holds none for ``resource``;
    ``oid``/``sub`` are the service principal's, ``appidacr`` says how the app
    authenticated (1: secret, 2: certificate).
    """
    now = int(time.time())
    issuer = f"https://sts.windows.net/{tenant}/"
    principal = str(uuid.uuid5(uuid.NAMESPACE_URL, f"sp:{tenant}:{client_id}"))
    payload: dict[str, Any] = {
        "aud": resource,
        "iss": issuer,
        "iat": now,
        "nbf": now,
        "exp": now + lifetime,
        "aio": secrets.token_urlsafe(60),
        "app_displayname": "django-live-oauth-mail tests",
        "appid": client_id,
        "appidacr": "2" if certificate else "1",
        "idp": issuer,
        "idtyp": "app",
        "oid": principal,
        "rh": secrets.token_urlsafe(40),
        "roles": list(roles),
        "sub": principal,
        "tid": tenant,
        "uti": secrets.token_urlsafe(16),
        "ver": "1.0",
    }
    if not roles:
        del payload["roles"]
    return _jwt_look_alike(payload)


def _jwt_look_alike(payload: dict[str, Any]) -> str:
    """header.payload.signature with a random "signature": never verified."""
    header = {
        "typ": "JWT",
        "nonce": secrets.token_urlsafe(32),
        "alg": "RS256",
        "x5t": "FakeIdentityPlatform",
        "kid": "FakeIdentityPlatform",
    }
    signature = b64url(secrets.token_bytes(256))
    return f"{b64url_json(header)}.{b64url_json(payload)}.{signature}"


def id_token(
    identity: FakeIdentity,
    *,
    issuer: str,
    client_id: str,
    nonce: str | None,
    lifetime: int,
    key: bytes,
) -> str:
    """An HS256 ID token with the claims MSAL and apps read (not verifiable)."""
    now = int(time.time())
    claims: dict[str, Any] = {
        "aud": client_id,
        "iss": issuer,
        "iat": now,
        "nbf": now,
        "exp": now + lifetime,
        "name": identity.name,
        "oid": identity.oid,
        "preferred_username": identity.username,
        "sub": b64url(hashlib.sha256(f"{client_id}:{identity.oid}".encode()).digest()),
        "tid": identity.tid,
        "ver": "2.0",
    }
    if identity.email_claim:
        claims["email"] = identity.email
    if nonce:
        claims["nonce"] = nonce
    header = b64url_json({"typ": "JWT", "alg": "HS256"})
    signing_input = f"{header}.{b64url_json(claims)}"
    signature = hmac.new(key, signing_input.encode("ascii"), hashlib.sha256).digest()
    return f"{signing_input}.{b64url(signature)}"
