"""A local stand-in for the Microsoft identity platform's v2.0 endpoints: msal
runs the auth code flow (PKCE), refresh, the device code flow and client
credentials against it over HTTPS. This module is its HTTP side and its state
(who consented to what, which app roles an admin granted, what was asked);
the rules a grant must pass and Entra's refusals are in :mod:`.grants`, the
tokens it mints in :mod:`.tokens`. What it issued (:class:`IssuedToken`) is
what the SMTP and Graph stand-ins accept. The names tests imported from here
before that split are re-exported, so their imports keep working."""

from __future__ import annotations

import secrets
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from ._http import HTTPSServer, Reply, Request
from ._local_server import LocalServer, listen
from .certs import TestCertificate
from .consent import AuthorizationResponse, ConsentPageError, consent_page, form_post
from .grants import AADError, Grant, describe, use
from .tokens import (
    OIDC_SCOPES,
    OUTLOOK,
    OUTLOOK_AUDIENCES,
    PERSONAL_TENANT_ID,
    FakeIdentity,
    IssuedToken,
    app_token,
    resource_of,
    resource_scopes,
    user_tokens,
)

__all__ = [
    "OUTLOOK",
    "OUTLOOK_AUDIENCES",
    "PERSONAL_TENANT_ID",
    "AADError",
    "FakeIdentity",
    "FakeIdentityPlatform",
    "IssuedToken",
    "TokenRequest",
]

_DEVICE_CODE = "urn:ietf:params:oauth:grant-type:device_code"


@dataclass(frozen=True)
class TokenRequest:
    """One POST to the token endpoint, as recorded for assertions."""

    grant_type: str
    email: str | None  # whose grant it was, if the request got that far
    scope: str
    status: int
    tenant: str  # in the URL path: common, a tenant id...


class FakeIdentityPlatform(LocalServer):
    """An HTTPS server mimicking ``login.microsoftonline.com`` for tests: point
    msal at :attr:`authority` with ``instance_discovery=False`` and an HTTP
    client that trusts :attr:`ca_bundle`; answer the consent page with
    :meth:`approve` or :meth:`decline`. With ``pages_port`` (0: a free one)
    that page is plain HTTP too, so a demo's browser shows no certificate
    warning; msal still talks only to the HTTPS port."""

    def __init__(
        self,
        identities: Sequence[FakeIdentity] = (),
        *,
        client_id: str = "test-client-id",
        client_secret: str = "test-client-secret",  # noqa: S107 - a test fake
        host: str = "127.0.0.1",
        port: int | None = None,
        certificate: TestCertificate | None = None,
        pages_port: int | None = None,
    ) -> None:
        self.client_id, self.client_secret = client_id, client_secret
        self.access_token_lifetime = 3600  # seconds; change it at any time
        self.device_code_interval = 5  # seconds msal waits between polls
        self._bind_address(host, port, certificate)
        self._pages_port = pages_port
        self._identities = {i.email.casefold(): i for i in identities}
        self._lock = threading.Lock()  # so that each grant works once
        self._codes: dict[str, Grant] = {}
        self._refresh: dict[str, Grant] = {}
        self._devices: dict[str, Grant] = {}
        self._access: dict[str, IssuedToken] = {}
        self._consents: dict[str, set[str]] = {}  # by user: scopes consented to
        self._app_roles: dict[str, set[tuple[str, str]]] = {}  # by tenant
        self._token_requests: list[TokenRequest] = []

    def _serve(self, sock: socket.socket) -> Callable[[], None]:
        if self._pages_port is not None:
            pages = listen(self.host, self._pages_port)
            self._pages_port = pages.getsockname()[1]
            self._stops.append(HTTPSServer(self, pages, None).close)
        return HTTPSServer(self, sock, self.certificate.server_context()).close

    @property
    def base_url(self) -> str:
        return f"https://{self.host}:{self.port}"

    @property
    def pages_url(self) -> str:
        """Where the consent page is."""
        pages = f"http://{self.host}:{self._pages_port}"
        return pages if self._pages_port else self.base_url

    @property
    def authority(self) -> str:
        """What to pass as msal's ``authority``."""
        return f"{self.base_url}/common"

    @property
    def token_requests(self) -> list[TokenRequest]:
        """Every POST to the token endpoint since :meth:`reset`, refused ones too."""
        return list(self._token_requests)

    def reset(self) -> None:
        """Forget recorded requests (identities and tokens stay)."""
        self._token_requests.clear()

    def approve(self, authorize_url: str, email: str) -> AuthorizationResponse:
        """Sign in as ``email`` on the consent page and accept."""
        return self._answer(_query(authorize_url) | {"identity": email})

    def decline(self, authorize_url: str) -> AuthorizationResponse:
        """Press "Cancel / Decline" on the consent page."""
        return self._answer(_query(authorize_url) | {"decision": "decline"})

    def approve_device_code(self, email: str) -> None:
        """Sign in ``email`` for the newest pending device code."""
        email = self._identities[email.casefold()].email
        with self._lock:
            pending = [grant for grant in self._devices.values() if not grant.email]
            if not pending:
                raise LookupError("no device code is pending")
            pending[-1].email = email

    def revoke(self, email: str, *, error_code: int = 70000) -> None:
        """Make the user's refresh tokens fail with ``AADSTS<error_code>``
        (70000 revoked, 700082 expired, 50076 multi-factor needed...)."""
        for grant in list(self._refresh.values()):
            if grant.email.casefold() == email.casefold():
                grant.revoked = error_code

    def withdraw_consent(self, email: str, *scopes: str) -> None:
        """Take back consent to ``scopes`` (all if none are named): refreshing
        for them fails with AADSTS65001, as for a link older than the scope."""
        granted = self._consents.setdefault(email.casefold(), set())
        granted -= set(scopes) or set(granted)

    def admin_consent(self, tenant: str, *roles: str) -> None:
        """An administrator of ``tenant`` grants the app roles such as
        ``https://outlook.office365.com/SMTP.SendAsApp`` (a bare one is
        Outlook's), creating the app's service principal there: without one,
        client credentials fail with AADSTS7000229."""
        granted = {(resource_of(role), role.rpartition("/")[2]) for role in roles}
        self._app_roles.setdefault(tenant.casefold(), set()).update(granted)

    def introspect(self, token: str) -> IssuedToken | None:
        """Mailbox, audience and permissions of an unexpired token, or ``None``."""
        issued = self._access.get(token)
        return issued if issued and issued.expires_at > time.time() else None

    def dispatch(self, request: Request) -> Reply:
        tenant, _, endpoint = request.path.strip("/").partition("/")
        route = {
            "v2.0/.well-known/openid-configuration": self._configuration,
            "oauth2/v2.0/authorize": self._authorize,
            "oauth2/v2.0/token": self._token,
            "oauth2/v2.0/devicecode": self._device_code,
        }.get(endpoint)
        return route(tenant, request) if route else Reply(404, b"not found")

    def _configuration(self, tenant: str, request: Request) -> Reply:
        endpoints = f"{self.base_url}/{tenant}/oauth2/v2.0"
        config = {"device_authorization_endpoint": f"{endpoints}/devicecode"}
        config["token_endpoint"] = f"{endpoints}/token"
        authorize = f"{self.pages_url}/{tenant}/oauth2/v2.0/authorize"
        return Reply.json(200, config | {"authorization_endpoint": authorize})

    def _authorize(self, tenant: str, request: Request) -> Reply:
        """GET shows the consent page; its buttons POST the person's choice."""
        try:
            if request.method == "GET":
                self._check(request.query)
                people = self._identities.values()
                page = consent_page(request.path, request.query, people)
                return Reply.html(200, page)
            answer = self._answer(request.form)
        except ConsentPageError as error:
            return Reply(400, str(error).encode())
        if answer.response_mode == "form_post":
            return Reply.html(200, form_post(answer.redirect_uri, answer.params))
        return Reply(302, headers={"Location": answer.url})

    def _check(self, params: dict[str, str]) -> None:
        """Refuse an authorization request from an unknown app, or without PKCE."""
        if params.get("client_id") != self.client_id:
            raise ConsentPageError(
                describe(700016, "unknown app", params.get("client_id", ""))
            )
        if params.get("code_challenge_method") != "S256":
            raise ConsentPageError(describe(9002325, "PKCE with S256 is required"))

    def _answer(self, params: dict[str, str]) -> AuthorizationResponse:
        """What the consent page sends back: a code, or the refusal to consent."""
        self._check(params)
        answer, redirect_uri = {"state": params["state"]}, params["redirect_uri"]
        identity = self._identities.get(params.get("identity", "").casefold())
        if params.get("decision") == "decline":
            answer |= {
                "error": "access_denied",
                "error_description": describe(65004, "the user declined consent"),
            }
        elif identity is None:
            raise ConsentPageError(
                describe(50034, "no such user", params.get("identity", ""))
            )
        else:
            answer["code"] = code = secrets.token_urlsafe(64)
            scopes, nonce = tuple(params["scope"].split()), params.get("nonce", "")
            grant = Grant(identity.email, scopes, redirect_uri, nonce=nonce)
            grant.challenge = params["code_challenge"]
            self._codes[code] = grant
        mode = params.get("response_mode") or "query"
        return AuthorizationResponse(redirect_uri, answer, mode)

    def _device_code(self, tenant: str, request: Request) -> Reply:
        device_code, user_code = secrets.token_urlsafe(32), secrets.token_hex(4)
        scopes = tuple(request.form.get("scope", "").split())
        self._devices[device_code] = Grant("", scopes)
        message = f"To sign in, enter the code {user_code} (approve_device_code())."
        answer: dict[str, Any] = {"device_code": device_code, "user_code": user_code}
        answer |= {"message": message, "expires_in": 900}
        answer["verification_uri"] = f"{self.base_url}/devicelogin"
        return Reply.json(200, answer | {"interval": self.device_code_interval})

    def _token(self, tenant: str, request: Request) -> Reply:
        form = request.form
        try:
            email, payload = self._redeem(tenant.casefold(), form)
            reply = Reply.json(200, payload)
        except AADError as error:
            email, reply = error.email or None, error.reply()
        grant_type, scope = form.get("grant_type", ""), form.get("scope", "")
        record = TokenRequest(grant_type, email, scope, reply.status, tenant)
        self._token_requests.append(record)
        return reply

    def _redeem(
        self, tenant: str, form: dict[str, str]
    ) -> tuple[str | None, dict[str, Any]]:
        """Check the app and its grant: whose it was (None: the app's own
        token) and the answer."""
        if form.get("client_id") != self.client_id:
            raise AADError("unauthorized_client", 700016, form.get("client_id", ""))
        # A certificate's assertion is taken on trust; a public client has no secret.
        if form.get("client_secret", self.client_secret) != self.client_secret:
            raise AADError("invalid_client", 7000215, status=401)
        grant_type, asked = form.get("grant_type", ""), form.get("scope", "").split()
        if grant_type == "client_credentials":
            return None, self._app_token(tenant, asked)
        store, key = {
            "authorization_code": (self._codes, "code"),
            "refresh_token": (self._refresh, "refresh_token"),
            _DEVICE_CODE: (self._devices, "device_code"),
        }.get(grant_type, ({}, ""))
        grant = self._use(store, form.get(key, ""), form)
        asked = asked or list(grant.scopes)
        wanted = resource_scopes(asked) or resource_scopes(grant.scopes)
        resources = {resource_of(scope) for scope in wanted}
        consented = self._consents.setdefault(grant.email.casefold(), set())
        if store is not self._refresh:
            consented.update(resource_scopes(grant.scopes))
        elif not set(wanted) <= consented:
            raise AADError("invalid_grant", 65001, email=grant.email)
        if len(resources) > 1:  # Entra issues a token for one resource only
            raise AADError("invalid_request", 28000, " ".join(asked), email=grant.email)
        # Like Entra: a token carries every scope consented for its resource.
        scopes = {s for s in consented if resource_of(s) in resources} | set(wanted)
        identity = self._identities[grant.email.casefold()]
        flags = {scope.lower() for scope in asked} & OIDC_SCOPES
        return identity.email, self._issue(identity, sorted(scopes), flags, grant.nonce)

    def _use(self, store: dict[str, Grant], key: str, form: dict[str, str]) -> Grant:
        """Use up a code, refresh token or device code, after Entra's checks."""
        reused = 54005 if store is self._codes else 70000
        with self._lock:
            return use(store.get(key), form, reused=reused)

    def _app_token(self, tenant: str, scopes: list[str]) -> dict[str, Any]:
        """The app's own token for ``{resource}/.default``, with its roles there."""
        granted = self._app_roles.get(tenant)
        if granted is None:
            raise AADError(
                "invalid_client", 7000229, self.client_id, tenant, status=401
            )
        resource = resource_of("".join(scopes[:1]))
        roles = sorted(role for where, role in granted if where == resource)
        token, issued = app_token(
            client_id=self.client_id, tenant=tenant, resource=resource, roles=roles
        )
        return self._remember(token, issued)

    def _issue(
        self, identity: FakeIdentity, scopes: list[str], flags: set[str], nonce: str
    ) -> dict[str, Any]:
        """A user's tokens, as Entra answers: a refresh token only for
        offline_access, an ID token only for openid."""
        token, issued, answer = user_tokens(
            identity, scopes, client_id=self.client_id, flags=flags, nonce=nonce
        )
        payload = self._remember(token, issued) | answer
        if "offline_access" in flags:
            payload["refresh_token"] = refresh = secrets.token_urlsafe(400)
            self._refresh[refresh] = Grant(identity.email, (*scopes, *flags))
        return payload

    def _remember(self, token: str, issued: IssuedToken) -> dict[str, Any]:
        """Keep ``token`` until it expires; the answer's common part."""
        lifetime = self.access_token_lifetime
        self._access[token] = replace(issued, expires_at=time.time() + lifetime)
        return {"token_type": "Bearer", "expires_in": lifetime, "access_token": token}


def _query(url: str) -> dict[str, str]:
    return dict(parse_qsl(urlsplit(url).query))
