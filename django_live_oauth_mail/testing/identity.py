"""A local stand-in for the Microsoft identity platform (v2.0 endpoints).

It speaks enough OAuth 2.0 / OpenID Connect for the real ``msal`` library to
run the authorization code flow (with PKCE), refresh-token rotation, the
device code flow and client credentials (app-only, with a secret or a
certificate) against it over HTTPS, and it lets tests break things on
purpose: revoked grants, failing token endpoints, expired access tokens.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

from cryptography import x509

from . import _authorize, _pages, _tokens
from ._aad_errors import AADError, TokenFault
from ._client_assertion import JWT_BEARER, check_client_assertion
from ._grants import (
    OUTLOOK_AUDIENCES,
    AuthorizationCode,
    DeviceCode,
    GrantStore,
    IssuedToken,
    RefreshGrant,
)
from ._http import HTTPSServer, Reply, Request
from ._local_server import LocalServer
from .accounts import PERSONAL_TENANT_ID, FakeIdentity
from .certs import TestCertificate
from .consent import AuthorizationResponse, drive_consent
from .ports import listen

__all__ = [
    "PERSONAL_TENANT_ID",
    "AuthorizationResponse",
    "FakeIdentity",
    "FakeIdentityPlatform",
    "IssuedToken",
    "TokenRequest",
]

logger = logging.getLogger("django_live_oauth_mail.testing.identity")

DEVICE_CODE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
#: Client credentials need a tenant; these authorities name none (AADSTS code).
_TENANTLESS = {"common": 9001023, "consumers": 9001023, "organizations": 50059}
_USER_CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
_CLAIMS = ["sub", "iss", "aud", "exp", "iat", "nbf", "nonce", "name", "oid", "tid"]
_CLAIMS += ["preferred_username", "email", "ver"]


@dataclass(frozen=True)
class TokenRequest:
    """One POST to the token endpoint, as recorded for assertions."""

    grant_type: str
    email: str | None
    client_id: str
    scope: str
    status: int
    #: The tenant in the URL path (``common``, a tenant id...).
    tenant: str


class FakeIdentityPlatform(LocalServer):
    """An HTTPS server mimicking ``login.microsoftonline.com`` for tests.

    Point MSAL at :attr:`authority` with ``instance_discovery=False`` and an
    HTTP client that trusts :attr:`ca_bundle`. Use :meth:`approve` or
    :meth:`decline` to answer the consent page, :meth:`approve_device_code`
    for the device code flow, and the ``revoke``/``fail_next_token_requests``/
    ``expire_access_tokens`` controls to simulate trouble. Tokens are kept in
    memory only and are never logged.
    """

    def __init__(
        self,
        identities: Sequence[FakeIdentity] = (),
        *,
        client_id: str = "test-client-id",
        client_secret: str = "test-client-secret",  # noqa: S107 - a test fake
        host: str = "127.0.0.1",
        port: int | None = None,
        tenant: str = "common",
        access_token_lifetime: int = 3600,
        certificate: TestCertificate | None = None,
        pages_over_http: bool = False,
        pages_port: int | None = None,
    ) -> None:
        """``pages_over_http`` serves the sign-in pages a person's browser sees
        (authorize, device login) from a second, plain-HTTP port, so a demo
        shows no certificate warning. msal only ever talks to the HTTPS port:
        discovery and the token endpoint stay on TLS, as msal requires.
        """
        self.client_id = client_id
        self.client_secret = client_secret
        self.tenant = tenant
        #: Seconds until new access tokens expire; change it at any time.
        self.access_token_lifetime = access_token_lifetime
        #: Seconds an authorization code stays redeemable.
        self.authorization_code_lifetime = 600
        #: Polling interval announced to device code clients (MSAL sleeps it).
        self.device_code_interval = 5
        #: When set, ``redirect_uri`` must be one of these (else AADSTS50011).
        self.allowed_redirect_uris: set[str] | None = None
        self._bind_address(host, port, certificate)
        self._signing_key = secrets.token_bytes(32)
        self._server: HTTPSServer | None = None
        self._pages_over_http = pages_over_http
        self._pages_port = pages_port
        self._pages_server: HTTPSServer | None = None

        self._lock = threading.Lock()
        self._identities: dict[str, FakeIdentity] = {}
        self._grants = GrantStore()
        self._faults: deque[TokenFault] = deque()
        self._requests: list[tuple[str, str]] = []
        self._token_requests: list[TokenRequest] = []
        self._client_certificates: list[x509.Certificate] = []
        for identity in identities:
            self.add_identity(identity)

    # -- lifecycle ---------------------------------------------------------

    def start(self) -> FakeIdentityPlatform:
        """Start serving on a background thread (returns ``self``)."""
        if self._server is not None:
            raise RuntimeError("FakeIdentityPlatform is already running")
        sock = listen(self._host, self._port, may_move=self._auto_port)
        self._port = sock.getsockname()[1]
        self._server = HTTPSServer(self, sock, self._certificate.server_context())
        if self._pages_over_http:
            pages = listen(
                self._host, self._pages_port or 0, may_move=not self._pages_port
            )
            self._pages_port = pages.getsockname()[1]
            self._pages_server = HTTPSServer(self, pages, None)
        logger.debug("fake identity platform listening on %s", self.base_url)
        return self

    def stop(self) -> None:
        """Stop serving and drop open connections (state is kept)."""
        if self._server is not None:
            self._server.close()
            self._server = None
        if self._pages_server is not None:
            self._pages_server.close()
            self._pages_server = None

    # -- addresses ---------------------------------------------------------

    @property
    def base_url(self) -> str:
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"https://{host}:{self._port}"

    @property
    def pages_url(self) -> str:
        """Base URL of the browser-facing pages (plain HTTP if so configured)."""
        if not self._pages_over_http or self._pages_port is None:
            return self.base_url
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"http://{host}:{self._pages_port}"

    @property
    def authority(self) -> str:
        """What to pass as MSAL's ``authority``."""
        return f"{self.base_url}/{self.tenant}"

    # -- identities --------------------------------------------------------

    @property
    def identities(self) -> dict[str, FakeIdentity]:
        with self._lock:
            return dict(self._identities)

    def add_identity(self, identity: FakeIdentity) -> None:
        with self._lock:
            for email in list(self._identities):
                if email.casefold() == identity.email.casefold():
                    del self._identities[email]
            self._identities[identity.email] = identity

    def _find(self, email: str) -> FakeIdentity | None:
        with self._lock:
            for identity in self._identities.values():
                if identity.email.casefold() == email.casefold():
                    return identity
        return None

    # -- recorded traffic --------------------------------------------------

    @property
    def requests(self) -> list[tuple[str, str]]:
        """Every HTTP request so far, as ``(method, path)`` without query."""
        with self._lock:
            return list(self._requests)

    @property
    def token_requests(self) -> list[TokenRequest]:
        """Every POST to the token endpoint, including failed and faulted ones."""
        with self._lock:
            return list(self._token_requests)

    def reset(self) -> None:
        """Forget recorded requests and queued faults (identities and tokens stay)."""
        with self._lock:
            self._requests.clear()
            self._token_requests.clear()
            self._faults.clear()

    # -- test controls -----------------------------------------------------

    def approve(self, authorize_url: str, email: str) -> AuthorizationResponse:
        """Sign in as ``email`` on the consent page and accept."""
        return drive_consent(
            authorize_url, {"identity": email}, self._certificate.client_context()
        )

    def decline(self, authorize_url: str) -> AuthorizationResponse:
        """Press "Cancel / Decline" on the consent page."""
        return drive_consent(
            authorize_url, {"decision": "decline"}, self._certificate.client_context()
        )

    def approve_device_code(self, user_code: str | None, email: str) -> None:
        """Sign in ``email`` for a pending device code (``None``: the newest one)."""
        identity = self._find(email)
        if identity is None:
            raise KeyError(f"no identity {email!r} on this FakeIdentityPlatform")
        self._grants.approve_device_code(user_code, identity.email)

    def revoke(self, email: str, *, error_code: int = 70000) -> None:
        """Make the identity's refresh tokens fail with ``AADSTS<error_code>``.

        70000 is a revoked/invalid grant, 700082 an expired one, 50076/50079/
        53003 need MFA or hit Conditional Access (they carry a ``suberror``).
        """
        self._grants.revoke(email, error_code)

    def fail_next_token_requests(
        self,
        count: int = 1,
        *,
        status: int = 500,
        error: str | None = None,
        error_code: int | None = None,
        body: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        """Answer the next ``count`` token requests with an error.

        Without ``body`` the answer is Microsoft-style JSON (``error`` and
        ``error_code`` default from the status); with it, ``body`` is sent
        verbatim, as HTML if it starts with ``<``. Add ``headers`` such as
        ``{"Retry-After": "1"}`` for throttling.
        """
        fault = TokenFault(status, error, error_code, body, dict(headers or {}))
        with self._lock:
            self._faults.extend([fault] * count)

    def withdraw_consent(self, email: str, *scopes: str) -> None:
        """Take back consent to ``scopes`` (all if none are named).

        Refreshing for them then fails with ``AADSTS65001``, as after an
        administrator removed a permission, or for a link made before the
        app asked for it.
        """
        self._grants.withdraw_consent(email, self.client_id, set(scopes))

    def expire_access_tokens(self, email: str | None = None) -> None:
        """Invalidate issued access tokens server-side (clients still trust them)."""
        self._grants.expire_access_tokens(email)

    def add_client_certificate(self, certificate_pem: str) -> None:
        """Register a certificate credential (the app may also keep its secret)."""
        certificate = x509.load_pem_x509_certificate(certificate_pem.encode())
        with self._lock:
            self._client_certificates.append(certificate)

    def admin_consent(self, tenant: str, *roles: str) -> None:
        """An administrator of ``tenant`` consents to the app's application roles.

        This creates the app's service principal there, without which client
        credentials fail with ``AADSTS7000229``. Roles are named like scopes,
        ``{resource}/{role}``: ``https://outlook.office365.com/SMTP.SendAsApp``,
        ``{graph.endpoint}/Mail.Send`` (a bare name is Outlook's). App-only
        tokens for a resource without roles carry no ``roles`` claim.
        """
        self._grants.admin_consent(tenant, roles)

    def validate_access_token(self, token: str) -> str | None:
        """The mailbox an unexpired token for Exchange's SMTP is for, or ``None``.

        A token for another resource (Graph) is ``None`` too, as Exchange
        refuses it, and so is an app-only token (see :meth:`introspect`).
        """
        return self._grants.mailbox_for(token)

    def introspect(self, token: str) -> IssuedToken | None:
        """Mailbox, audience and permissions of an unexpired token, or ``None``."""
        return self._grants.introspect(token)

    # -- HTTP dispatch -----------------------------------------------------

    def dispatch(self, request: Request) -> Reply:
        with self._lock:
            self._requests.append((request.method, request.path))
        parts = request.path.strip("/").split("/")
        if parts == ["devicelogin"]:
            return self._device_login(request)
        endpoint = self._routes().get((request.method, "/".join(parts[1:])))
        if len(parts) < 2 or not parts[0] or endpoint is None:
            return Reply.json(404, {"error": "not_found", "path": request.path})
        return endpoint(parts[0], request)

    def _routes(self) -> dict[tuple[str, str], Callable[[str, Request], Reply]]:
        return {
            ("GET", "v2.0/.well-known/openid-configuration"): self._openid_config,
            ("GET", "discovery/v2.0/keys"): lambda _tenant, _request: Reply.json(
                200, {"keys": []}
            ),
            ("GET", "oauth2/v2.0/authorize"): self._authorize,
            ("POST", "oauth2/v2.0/authorize"): self._authorize,
            ("POST", "oauth2/v2.0/token"): self._token,
            ("POST", "oauth2/v2.0/devicecode"): self._device_authorization,
            ("GET", "oauth2/v2.0/logout"): self._logout,
        }

    def _openid_config(self, tenant: str, request: Request) -> Reply:
        # Like Microsoft: multi-tenant authorities publish a placeholder issuer.
        issuer_tenant = {
            "common": "{tenantid}",
            "organizations": "{tenantid}",
            "consumers": PERSONAL_TENANT_ID,
        }.get(tenant.lower(), tenant)
        prefix = f"{self.base_url}/{tenant}"
        return Reply.json(
            200,
            {
                "issuer": f"{self.base_url}/{issuer_tenant}/v2.0",
                "authorization_endpoint": (
                    f"{self.pages_url}/{tenant}/oauth2/v2.0/authorize"
                ),
                "token_endpoint": f"{prefix}/oauth2/v2.0/token",
                "device_authorization_endpoint": f"{prefix}/oauth2/v2.0/devicecode",
                "end_session_endpoint": f"{prefix}/oauth2/v2.0/logout",
                "jwks_uri": f"{prefix}/discovery/v2.0/keys",
                "token_endpoint_auth_methods_supported": [
                    "client_secret_post",
                    "private_key_jwt",
                ],
                "response_modes_supported": list(_authorize.RESPONSE_MODES),
                "response_types_supported": ["code"],
                "subject_types_supported": ["pairwise"],
                "id_token_signing_alg_values_supported": ["HS256"],
                "scopes_supported": ["openid", "profile", "email", "offline_access"],
                "claims_supported": _CLAIMS,
                "code_challenge_methods_supported": ["S256"],
                "request_uri_parameter_supported": False,
                "http_logout_supported": True,
                "frontchannel_logout_supported": True,
                "tenant_region_scope": None,
                "cloud_instance_name": "microsoftonline.com",
            },
        )

    # -- authorization endpoint ----------------------------------------------

    def _authorize(self, tenant: str, request: Request) -> Reply:
        params = request.query if request.method == "GET" else request.form
        problem = _authorize.request_problem(
            params,
            client_id=self.client_id,
            allowed_redirect_uris=self.allowed_redirect_uris,
        )
        if problem:
            return Reply.html(400, _pages.error_page(problem))
        state = params["state"]
        if request.method == "GET":
            if params.get("prompt") == "none":  # no UI allowed, and no session
                answer = {"error": "login_required", "state": state}
                return _authorize.respond(params, answer, 50058)
            page = _pages.consent_page(
                action=request.path,
                hidden=params,
                identities=self.identities.values(),
                login_hint=params.get("login_hint", ""),
                scopes=params["scope"].split(),
                client_id=self.client_id,
            )
            return Reply.html(200, page)
        if params.get("decision") == "decline":
            answer = {"error": "access_denied", "state": state}
            return _authorize.respond(params, answer, 65004)
        identity = self._find(params.get("identity", ""))
        if identity is None:
            unknown = params.get("identity", "")
            return Reply.html(
                400,
                _pages.error_page(
                    f"AADSTS50034: The user account {unknown!r} does not exist in "
                    "the directory. Pick one of the configured test accounts."
                ),
            )
        problem = _authorize.tenant_problem(tenant, identity)
        if problem:
            return Reply.html(400, _pages.error_page(problem))
        code = _tokens.authorization_code(identity)
        self._grants.add_code(
            code,
            AuthorizationCode(
                email=identity.email,
                client_id=params["client_id"],
                redirect_uri=params["redirect_uri"],
                code_challenge=params["code_challenge"],
                scopes=tuple(params["scope"].split()),
                nonce=params["nonce"],
                expires_at=time.time() + self.authorization_code_lifetime,
            ),
        )
        answer = {"code": code, "state": state}
        if params.get("client_info") == "1":
            answer["client_info"] = _tokens.client_info(identity)
        return _authorize.respond(params, answer)

    def _logout(self, tenant: str, request: Request) -> Reply:
        target = request.query.get("post_logout_redirect_uri")
        if target:
            return Reply.redirect(target)
        return Reply.html(200, _pages.message_page("Signed out", "You signed out."))

    # -- token endpoint --------------------------------------------------------

    def _token(self, tenant: str, request: Request) -> Reply:
        form = request.form
        correlation_id = request.headers.get("client-request-id")
        email: str | None = None
        with self._lock:
            fault = self._faults.popleft() if self._faults else None
        if fault is not None:
            reply = fault.reply(self.client_id, correlation_id)
        else:
            try:
                email, payload = self._redeem(tenant, form)
                reply = Reply.json(200, payload)
            except AADError as error:
                email = error.email
                body = error.body(correlation_id)
                reply = Reply.json(error.status, body, error.headers)
        grant_type = form.get("grant_type", "")
        logger.debug("token request grant_type=%s status=%s", grant_type, reply.status)
        record = TokenRequest(
            grant_type,
            email,
            form.get("client_id", ""),
            form.get("scope", ""),
            reply.status,
            tenant,
        )
        with self._lock:
            self._token_requests.append(record)
        return reply

    def _redeem(
        self, tenant: str, form: dict[str, str]
    ) -> tuple[str | None, dict[str, Any]]:
        """Check the client, redeem the grant and mint the token response.

        Returns the signed-in user's e-mail (``None`` for app-only tokens).
        """
        client_id = form.get("client_id") or _missing("client_id")
        if client_id != self.client_id:
            raise AADError("unauthorized_client", 700016, client_id)
        credential = self._client_credential(tenant, form)
        grant_type = form.get("grant_type") or _missing("grant_type")
        if grant_type == "client_credentials":
            return None, self._client_credentials(tenant, form, credential)
        requested = form.get("scope", "").split()
        nonce = ""
        if grant_type == "authorization_code":
            code = self._grants.redeem_code(
                form.get("code") or _missing("code"),
                client_id=client_id,
                redirect_uri=form.get("redirect_uri", ""),
                verifier=form.get("code_verifier") or _missing("code_verifier"),
            )
            email, granted, nonce = code.email, code.scopes, code.nonce
            self._grants.grant_consent(email, client_id, granted)
        elif grant_type == "refresh_token":
            token = form.get("refresh_token") or _missing("refresh_token")
            refresh = self._grants.rotate_refresh_token(token, client_id)
            email, granted = refresh.email, refresh.scopes
            if not self._grants.has_consent(email, client_id, requested):
                raise AADError("invalid_grant", 65001, email=email)
        elif grant_type == DEVICE_CODE_GRANT:
            device_code = form.get("device_code") or _missing("device_code")
            device = self._grants.redeem_device_code(device_code, client_id)
            email, granted = str(device.email), device.scopes
            self._grants.grant_consent(email, client_id, granted)
        else:
            raise AADError("unsupported_grant_type", 70003, grant_type)
        identity = self._find(email)
        if identity is None:  # pragma: no cover - identities are never removed
            raise AADError("invalid_grant", 70000, email=email)
        resources = {_tokens.resource_of(s) for s in _tokens.resource_scopes(requested)}
        if not resources:
            resources = {
                _tokens.resource_of(s) for s in _tokens.resource_scopes(granted)
            }
        if len(resources) > 1:
            # Like Entra: a token is for one resource; ask for each separately.
            raise AADError("invalid_request", 28000, " ".join(requested), email=email)
        # Like Entra: the token carries every scope consented for its resource.
        resource = resources.pop() if resources else _tokens.OUTLOOK
        asked = requested or list(granted)
        scopes = [*self._grants.consented(email, client_id, resource), *asked]
        scopes = list(dict.fromkeys(scopes))
        return identity.email, self._issue(identity, scopes, nonce, form)

    def _client_credential(self, tenant: str, form: dict[str, str]) -> str | None:
        """Check the client's secret or certificate assertion: which one it was.

        ``None``: neither, a public client (device code flow, desktop apps).
        """
        client_id = form["client_id"]
        if form.get("client_assertion_type") == JWT_BEARER:
            with self._lock:
                certificates = list(self._client_certificates)
            check_client_assertion(
                form.get("client_assertion") or _missing("client_assertion"),
                client_id=client_id,
                audience=f"{self.base_url}/{tenant}/oauth2/v2.0/token",
                certificates=certificates,
            )
            return "certificate"
        secret = form.get("client_secret")
        if secret is None:
            return None
        if not secrets.compare_digest(secret, self.client_secret):
            raise AADError("invalid_client", 7000215, client_id, status=401)
        return "secret"

    def _client_credentials(
        self, tenant: str, form: dict[str, str], credential: str | None
    ) -> dict[str, Any]:
        """An app-only token for ``{resource}/.default``, with the app's roles."""
        client_id, tenant = form["client_id"], tenant.lower()
        if credential is None:
            raise AADError("invalid_client", 7000218, status=401)
        if tenant in _TENANTLESS:
            raise AADError("invalid_request", _TENANTLESS[tenant])
        requested = _tokens.resource_scopes(form.get("scope", "").split())
        if not requested:
            _missing("scope")
        for scope in requested:
            if not scope.endswith("/.default"):
                raise AADError("invalid_scope", 1002012, scope)
        resources = {_tokens.resource_of(scope) for scope in requested}
        if len(resources) > 1:
            raise AADError("invalid_request", 28000, " ".join(requested))
        resource = resources.pop()
        roles = self._grants.app_roles(tenant, resource)
        if roles is None:
            raise AADError("invalid_client", 7000229, client_id, tenant, status=401)
        lifetime = self.access_token_lifetime
        access_token = _tokens.app_access_token(
            client_id,
            tenant,
            resource,
            roles,
            lifetime,
            certificate=credential == "certificate",
        )
        self._grants.add_access_token(
            access_token,
            IssuedToken(
                mailbox="",
                audience=resource,
                scopes=frozenset(roles),
                expires_at=time.time() + lifetime,
                tenant=tenant,
                app_id=client_id,
                app=True,
            ),
        )
        return {
            "token_type": "Bearer",
            "expires_in": lifetime,
            "ext_expires_in": lifetime,
            "access_token": access_token,
        }

    def _issue(
        self,
        identity: FakeIdentity,
        scopes: list[str],
        nonce: str,
        form: dict[str, str],
    ) -> dict[str, Any]:
        client_id = form["client_id"]
        lifetime = self.access_token_lifetime
        access_token = _tokens.access_token(identity, client_id, scopes, lifetime)
        granted = _tokens.resource_scopes(scopes)
        audience = _tokens.resource_of(granted[0]) if granted else _tokens.OUTLOOK
        self._grants.add_access_token(
            access_token,
            IssuedToken(
                mailbox=identity.email,
                audience=audience,
                scopes=frozenset(_tokens.permission_of(s) for s in granted),
                expires_at=time.time() + lifetime,
                tenant=identity.tid,
                app_id=client_id,
            ),
        )
        # Like Entra, which names Graph's scopes (any but Outlook's, here) by
        # their short names in its answer.
        named = granted
        if audience not in OUTLOOK_AUDIENCES:
            named = [_tokens.permission_of(s) for s in granted]
        payload: dict[str, Any] = {
            "token_type": "Bearer",
            "scope": " ".join(named),
            "expires_in": lifetime,
            "ext_expires_in": lifetime,
            "access_token": access_token,
        }
        lowered = {scope.lower() for scope in scopes}
        if "offline_access" in lowered:  # like Microsoft: no refresh token otherwise
            refresh_token = _tokens.refresh_token(identity)
            grant = RefreshGrant(identity.email, client_id, tuple(scopes))
            self._grants.add_refresh_token(refresh_token, grant)
            payload["refresh_token"] = refresh_token
        if "openid" in lowered:
            payload["id_token"] = _tokens.id_token(
                identity,
                issuer=f"{self.base_url}/{identity.tid}/v2.0",
                client_id=client_id,
                nonce=nonce,
                lifetime=3600,
                key=self._signing_key,
            )
        if form.get("client_info") == "1":
            payload["client_info"] = _tokens.client_info(identity)
        return payload

    # -- device code flow ------------------------------------------------------

    def _device_authorization(self, tenant: str, request: Request) -> Reply:
        form = request.form
        client_id = form.get("client_id", "")
        if client_id != self.client_id:
            error = AADError("unauthorized_client", 700016, client_id)
            return Reply.json(error.status, error.body())
        if not form.get("scope"):
            error = AADError("invalid_request", 900144, "scope")
            return Reply.json(error.status, error.body())
        device_code = secrets.token_urlsafe(96)
        user_code = "".join(secrets.choice(_USER_CODE_ALPHABET) for _ in range(9))
        entry = DeviceCode(
            user_code, client_id, tuple(form["scope"].split()), time.time() + 900
        )
        self._grants.add_device_code(device_code, entry)
        verification_uri = f"{self.pages_url}/devicelogin"
        return Reply.json(
            200,
            {
                "user_code": user_code,
                "device_code": device_code,
                "verification_uri": verification_uri,
                "expires_in": 900,
                "interval": self.device_code_interval,
                "message": (
                    "To sign in, use a web browser to open the page "
                    f"{verification_uri} and enter the code {user_code} to "
                    "authenticate."
                ),
            },
        )

    def _device_login(self, request: Request) -> Reply:
        """The page behind ``verification_uri``: enter the code, pick an account."""
        identities = self.identities.values()
        if request.method == "GET":
            page = _pages.device_login_page(action=request.path, identities=identities)
            return Reply.html(200, page)
        try:
            self.approve_device_code(
                request.form.get("user_code", ""), request.form.get("identity", "")
            )
        except LookupError:
            page = _pages.device_login_page(
                action=request.path,
                identities=identities,
                message="That code didn't work. Check the code and try again.",
            )
            return Reply.html(400, page)
        return Reply.html(
            200,
            _pages.message_page(
                "You're signed in", "You can close this window and return to the app."
            ),
        )


def _missing(parameter: str) -> NoReturn:
    raise AADError("invalid_request", 900144, parameter)
