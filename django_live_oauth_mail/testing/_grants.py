"""Bookkeeping of everything the fake identity platform has handed out.

Authorization codes, refresh tokens, access tokens, device codes and user
consent live here, behind one lock, together with the checks Microsoft makes
when they are redeemed. Redemption failures raise :class:`AADError`.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, replace

from ._aad_errors import AADError
from ._tokens import OUTLOOK, permission_of, resource_of, resource_scopes

__all__ = [
    "AuthorizationCode",
    "DeviceCode",
    "GrantStore",
    "IssuedToken",
    "RefreshGrant",
]

#: Audiences Exchange's SMTP accepts (the second is app-only's ``.default``).
OUTLOOK_AUDIENCES = frozenset({OUTLOOK, "https://outlook.office365.com"})


@dataclass
class AuthorizationCode:
    email: str
    client_id: str
    redirect_uri: str
    code_challenge: str
    scopes: tuple[str, ...]
    nonce: str
    expires_at: float
    redeemed: bool = False


@dataclass
class RefreshGrant:
    email: str
    client_id: str
    scopes: tuple[str, ...]
    rotated: bool = False
    revoked_code: int | None = None


@dataclass(frozen=True)
class IssuedToken:
    """What a resource server learns from an access token it is shown."""

    mailbox: str
    #: The resource it is for, e.g. ``https://graph.microsoft.com``.
    audience: str
    #: Short permission names, as in the ``scp`` (or an app's ``roles``) claim.
    scopes: frozenset[str]
    expires_at: float
    tenant: str = ""
    app_id: str = ""
    #: An app-only (client credentials) token: ``mailbox`` is ``""``.
    app: bool = False


@dataclass
class DeviceCode:
    user_code: str
    client_id: str
    scopes: tuple[str, ...]
    expires_at: float
    email: str | None = None


class GrantStore:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._codes: dict[str, AuthorizationCode] = {}
        self._refresh: dict[str, RefreshGrant] = {}
        self._access: dict[str, IssuedToken] = {}
        self._devices: dict[str, DeviceCode] = {}
        self._consents: dict[tuple[str, str], set[str]] = {}
        # tenant -> the app's roles there, as (resource, role); present once
        # an administrator consented (which creates the service principal).
        self._app_roles: dict[str, set[tuple[str, str]]] = {}

    # -- authorization codes -------------------------------------------------

    def add_code(self, code: str, entry: AuthorizationCode) -> None:
        with self._lock:
            self._codes[code] = entry

    def redeem_code(
        self, code: str, *, client_id: str, redirect_uri: str, verifier: str
    ) -> AuthorizationCode:
        """Check a code redemption (single use, unexpired, same client, PKCE)."""
        with self._lock:
            entry = self._codes.get(code)
            if entry is None:
                raise AADError("invalid_grant", 9002313)
            email = entry.email
            if entry.redeemed:
                raise AADError("invalid_grant", 54005, email=email)
            if entry.expires_at <= time.time():
                raise AADError("invalid_grant", 70008, email=email)
            if entry.client_id != client_id:
                raise AADError("invalid_grant", 70000, email=email)
            if redirect_uri != entry.redirect_uri:
                raise AADError(
                    "invalid_grant",
                    500112,
                    redirect_uri,
                    entry.redirect_uri,
                    email=email,
                )
            if not secrets.compare_digest(_s256(verifier), entry.code_challenge):
                raise AADError("invalid_grant", 501481, email=email)
            entry.redeemed = True
            return entry

    # -- refresh tokens ------------------------------------------------------

    def add_refresh_token(self, token: str, grant: RefreshGrant) -> None:
        with self._lock:
            self._refresh[token] = grant

    def rotate_refresh_token(self, token: str, client_id: str) -> RefreshGrant:
        """Use up ``token``: each refresh token works exactly once."""
        with self._lock:
            grant = self._refresh.get(token)
            if grant is None:
                raise AADError("invalid_grant", 9002313)
            if grant.revoked_code is not None:
                raise AADError("invalid_grant", grant.revoked_code, email=grant.email)
            if grant.rotated or grant.client_id != client_id:
                raise AADError("invalid_grant", 70000, email=grant.email)
            grant.rotated = True
            return grant

    def revoke(self, email: str, error_code: int) -> None:
        with self._lock:
            for grant in self._refresh.values():
                if _same(grant.email, email):
                    grant.revoked_code = error_code

    # -- access tokens -------------------------------------------------------

    def add_access_token(self, token: str, issued: IssuedToken) -> None:
        with self._lock:
            self._access[token] = issued

    def introspect(self, token: str) -> IssuedToken | None:
        """The unexpired token's grant, or None."""
        with self._lock:
            issued = self._access.get(token)
        return issued if issued and issued.expires_at > time.time() else None

    def mailbox_for(self, token: str) -> str | None:
        """The mailbox of an unexpired token for Exchange's SMTP, or None."""
        issued = self.introspect(token)
        if issued is None or issued.app or issued.audience not in OUTLOOK_AUDIENCES:
            return None
        return issued.mailbox

    def expire_access_tokens(self, email: str | None) -> None:
        with self._lock:
            for token, issued in self._access.items():
                if email is None or _same(issued.mailbox, email):
                    self._access[token] = replace(issued, expires_at=0.0)

    # -- device codes --------------------------------------------------------

    def add_device_code(self, device_code: str, entry: DeviceCode) -> None:
        with self._lock:
            self._devices[device_code] = entry

    def approve_device_code(self, user_code: str | None, email: str) -> None:
        """Sign ``email`` in for ``user_code`` (``None``: the newest pending one)."""
        wanted = None if user_code is None else user_code.strip().upper()
        now = time.time()
        with self._lock:
            pending = [
                entry
                for entry in self._devices.values()
                if entry.email is None
                and entry.expires_at > now
                and wanted in (None, entry.user_code)
            ]
            if not pending:
                raise LookupError(f"no pending device code matches {user_code!r}")
            pending[-1].email = email

    def redeem_device_code(self, device_code: str, client_id: str) -> DeviceCode:
        with self._lock:
            entry = self._devices.get(device_code)
            if entry is None:
                raise AADError("bad_verification_code", 9002313)
            if entry.expires_at <= time.time():
                raise AADError("expired_token", 70019)
            if entry.client_id != client_id:
                raise AADError("invalid_grant", 70000)
            if entry.email is None:
                raise AADError("authorization_pending", 70016)
            del self._devices[device_code]
            return entry

    # -- consent ---------------------------------------------------------------

    def grant_consent(self, email: str, client_id: str, scopes: Iterable[str]) -> None:
        with self._lock:
            granted = self._consents.setdefault((email.casefold(), client_id), set())
            granted.update(resource_scopes(list(scopes)))

    def has_consent(self, email: str, client_id: str, scopes: Iterable[str]) -> bool:
        with self._lock:
            granted = self._consents.get((email.casefold(), client_id), set())
            return set(resource_scopes(list(scopes))) <= granted

    def withdraw_consent(self, email: str, client_id: str, scopes: set[str]) -> None:
        with self._lock:
            granted = self._consents.get((email.casefold(), client_id), set())
            granted -= scopes or set(granted)

    def consented(self, email: str, client_id: str, resource: str) -> list[str]:
        """Every scope of ``resource`` consented to: Entra puts all in a token."""
        with self._lock:
            granted = self._consents.get((email.casefold(), client_id), set())
            return sorted(s for s in granted if resource_of(s) == resource)

    # -- admin consent (app-only) ---------------------------------------------

    def admin_consent(self, tenant: str, roles: Iterable[str]) -> None:
        granted = {(_resource_key(resource_of(r)), permission_of(r)) for r in roles}
        with self._lock:
            self._app_roles.setdefault(tenant.casefold(), set()).update(granted)

    def app_roles(self, tenant: str, resource: str) -> list[str] | None:
        """The app's roles for ``resource``; ``None`` without a service principal."""
        with self._lock:
            granted = self._app_roles.get(tenant.casefold())
            if granted is None:
                return None
            key = _resource_key(resource)
            return sorted(role for res, role in granted if res == key)


def _resource_key(resource: str) -> str:
    """One name per resource: Outlook answers to both of its URLs."""
    resource = resource.rstrip("/").casefold()
    return OUTLOOK if resource in OUTLOOK_AUDIENCES else resource


def _s256(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode("ascii", "replace")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def _same(a: str, b: str) -> bool:
    return a.casefold() == b.casefold()
