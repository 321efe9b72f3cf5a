"""Everything that talks to msal, and the only module that imports it.

One msal application object is kept per process for each configuration, with a
shared ``http_cache``, so discovery happens once and a send with a fresh token
makes no HTTP request. msal keeps one token cache per application, while we
keep one per mailbox; each call therefore lends the mailbox's cache to the
shared application under a lock, and takes it back afterwards.
"""

from __future__ import annotations

import dataclasses
import datetime
import functools
import json
import logging
import threading
import time
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

import msal
import requests
from django.views.decorators.debug import sensitive_variables

from .conf import conf
from .exceptions import (
    AppCredentialsError,
    AuthorizationDeclined,
    AuthorizationFailed,
    ConfigurationError,
    IdentityPlatformUnavailable,
    LiveOAuthMailError,
    ReconnectRequired,
    TokenError,
)

logger = logging.getLogger(__name__)

# msal warns on every response_mode other than form_post. We default to query
# on purpose: the code is bound to our PKCE verifier and client secret, so a
# leaked code is useless, and a top-level GET carries the SameSite=Lax session
# cookie that a cross-site form_post does not. RESPONSE_MODE can choose either.
warnings.filterwarnings(
    "ignore",
    message="response_mode='form_post' is recommended",
    category=UserWarning,
    module=r"msal\.",
)

PERSONAL_TENANT_ID = "9188040d-6c67-4c5b-b112-36a304b66dad"

# Hosts for which msal's instance discovery is meaningful. Any other host
# (a sovereign proxy, our test stand-in) must be used with discovery off.
MICROSOFT_LOGIN_HOSTS = frozenset(
    {
        "login.microsoftonline.com",
        "login.microsoft.com",
        "login.windows.net",
        "login.microsoftonline.us",
        "login.partner.microsoftonline.cn",
        "login.chinacloudapi.cn",
    }
)

# msal reports transport trouble with these (requests is msal's own dependency):
# its throttling client raises MsalServiceError for a 5xx, requests raises for
# connection trouble, and a non-JSON body (an HTML error page) fails to parse.
_TRANSPORT_ERRORS = (
    msal.exceptions.MsalServiceError,
    requests.RequestException,
    json.JSONDecodeError,
)

# Shared by every application in the process: discovery answers and msal's
# throttling memory. It never holds tokens (msal documents this).
_http_cache: dict[str, Any] = {}


class _SecretStr(str):
    """A str that keeps its value out of ``repr()`` (and so out of debug pages)."""

    def __repr__(self) -> str:
        return "'<redacted>'"


@dataclasses.dataclass(frozen=True)
class AccessToken:
    """A usable access token for one mailbox. ``repr()`` never shows the value."""

    value: str = dataclasses.field(repr=False)
    expires_at: datetime.datetime | None
    refreshed: bool
    # The mailbox's serialized msal cache when this call changed it, else None.
    serialized_cache: str | None = dataclasses.field(repr=False, default=None)


@dataclasses.dataclass(frozen=True)
class LinkedIdentity:
    """What a finished connect flow tells us about the mailbox."""

    email: str
    display_name: str
    tenant_id: str
    home_account_id: str
    is_personal: bool
    expires_at: datetime.datetime | None
    serialized_cache: str = dataclasses.field(repr=False)
    public_client: bool = False


@dataclasses.dataclass
class _App:
    app: msal.ClientApplication
    lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)

    @contextmanager
    def using(self, cache: msal.SerializableTokenCache) -> Iterator[Any]:
        with self.lock:
            self.app.token_cache = cache
            try:
                yield self.app
            finally:
                self.app.token_cache = msal.SerializableTokenCache()


_apps: dict[tuple[Any, ...], _App] = {}
_apps_lock = threading.Lock()


def uses_instance_discovery(authority: str) -> bool:
    return (urlsplit(authority).hostname or "").lower() in MICROSOFT_LOGIN_HOSTS


def _http_client(timeout: float, ca_bundle: str | None) -> requests.Session:
    session = requests.Session()
    # requests lets REQUESTS_CA_BUNDLE and CURL_CA_BUNDLE override a session's
    # `verify`, but not a per-request one; pass it per request so CA_BUNDLE wins.
    session.request = functools.partial(  # type: ignore[method-assign]
        session.request, timeout=timeout, verify=ca_bundle or True
    )
    adapter = requests.adapters.HTTPAdapter(max_retries=1)
    session.mount("https://", adapter)
    return session


def _get_app(*, public: bool = False) -> _App:
    """The shared application object for the current settings (built once)."""
    key = (
        public,
        conf.CLIENT_ID,
        conf.CLIENT_SECRET,
        conf.AUTHORITY,
        conf.CA_BUNDLE,
        conf.HTTP_TIMEOUT,
    )
    with _apps_lock:
        if key in _apps:
            return _apps[key]
    # Built outside the lock: it makes the discovery request.
    app = _build_app(public=public)
    with _apps_lock:
        return _apps.setdefault(key, _App(app))


def _build_app(*, public: bool) -> msal.ClientApplication:
    client_id, secret, authority = conf.CLIENT_ID, conf.CLIENT_SECRET, conf.AUTHORITY
    if not client_id:
        raise ConfigurationError(
            "LIVE_OAUTH_MAIL['CLIENT_ID'] is not set. Copy the Application (client) "
            "ID from your app registration in the Azure portal."
        )
    if not public and not secret:
        raise ConfigurationError(
            "LIVE_OAUTH_MAIL['CLIENT_SECRET'] is not set. Create a client secret "
            "under Certificates & secrets in your app registration."
        )
    if urlsplit(authority).scheme != "https":
        raise ConfigurationError(
            f"LIVE_OAUTH_MAIL['AUTHORITY'] must be an https URL, not {authority!r}; "
            "msal refuses anything else."
        )
    options: dict[str, Any] = {
        "authority": authority,
        "http_client": _http_client(conf.HTTP_TIMEOUT, conf.CA_BUNDLE),
        "http_cache": _http_cache,
        "token_cache": msal.SerializableTokenCache(),
    }
    if not uses_instance_discovery(authority):
        options["instance_discovery"] = False
    try:
        if public:
            return msal.PublicClientApplication(client_id, **options)
        return msal.ConfidentialClientApplication(
            client_id, client_credential=secret, **options
        )
    except _TRANSPORT_ERRORS as error:
        raise IdentityPlatformUnavailable(
            f"Could not reach the identity platform at {authority} "
            f"({type(error).__name__}). Try again in a moment; if it persists, "
            "check LIVE_OAUTH_MAIL['AUTHORITY'] and the server's network access.",
            error="unreachable",
        ) from None


def reset() -> None:
    """Forget every application object and the shared HTTP cache (for tests)."""
    with _apps_lock:
        _apps.clear()
        _http_cache.clear()


def _load_cache(serialized: str) -> msal.SerializableTokenCache:
    cache = msal.SerializableTokenCache()
    if serialized:
        cache.deserialize(serialized)
    return cache


def _expires_at(result: Mapping[str, Any]) -> datetime.datetime | None:
    expires_in = result.get("expires_in")
    if expires_in is None:
        return None
    return datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(
        seconds=int(expires_in)
    )


# --- connect flow --------------------------------------------------------------


def start_link(redirect_uri: str, *, login_hint: str | None = None) -> dict[str, Any]:
    """Begin an auth-code flow with PKCE, state and nonce (all made by msal).

    Returns msal's flow dict; ``flow["auth_uri"]`` is where to send the user,
    ``flow["state"]`` the key to keep it under. It holds no token.
    """
    entry = _get_app()
    with entry.using(msal.SerializableTokenCache()) as app:
        flow: dict[str, Any] = app.initiate_auth_code_flow(
            conf.LOGIN_SCOPES,
            redirect_uri=redirect_uri,
            login_hint=login_hint,
            response_mode=conf.RESPONSE_MODE,
            prompt="select_account" if not login_hint else None,
        )
    return flow


@sensitive_variables()
def finish_link(
    flow: dict[str, Any], auth_response: Mapping[str, str]
) -> LinkedIdentity:
    """Exchange the authorization code and describe the mailbox it is for."""
    if auth_response.get("error"):
        error = auth_response["error"]
        if error == "access_denied":
            raise AuthorizationDeclined(
                "You cancelled the sign-in, so no mailbox was linked. You can "
                "try again whenever you like."
            )
        raise AuthorizationFailed(
            f"Microsoft sign-in ended with an error ({error}): "
            f"{_first_line(auth_response.get('error_description'))}"
        )
    cache = msal.SerializableTokenCache()
    entry = _get_app()
    with entry.using(cache) as app:
        try:
            result = app.acquire_token_by_auth_code_flow(
                flow, dict(auth_response), scopes=conf.LOGIN_SCOPES
            )
        except _TRANSPORT_ERRORS as error:
            raise _unavailable(None, error) from None
        except (ValueError, RuntimeError):
            # msal's own checks: a state mismatch (ValueError) or an id token
            # whose nonce is not ours (RuntimeError). Either way: start again.
            raise AuthorizationFailed(
                "The sign-in response did not match this sign-in. Please start again."
            ) from None
        accounts = app.get_accounts() if "error" not in result else []
    if "error" in result:
        raise _flow_error(result, redirect_uri=flow.get("redirect_uri"))
    return _identity(result, accounts, cache)


@sensitive_variables()
def _identity(
    result: Mapping[str, Any],
    accounts: list[dict[str, Any]],
    cache: msal.SerializableTokenCache,
    *,
    public_client: bool = False,
) -> LinkedIdentity:
    claims = result.get("id_token_claims") or {}
    email = claims.get("email") or claims.get("preferred_username") or ""
    if not accounts or "@" not in email:
        raise AuthorizationFailed(
            "Microsoft did not say which mailbox you signed in with (no email or "
            "preferred_username claim). Make sure the app registration grants the "
            "'email' delegated permission, then link again."
        )
    tenant_id = str(claims.get("tid") or "")
    return LinkedIdentity(
        email=email.strip().lower(),
        display_name=str(claims.get("name") or ""),
        tenant_id=tenant_id,
        home_account_id=accounts[0]["home_account_id"],
        is_personal=tenant_id == PERSONAL_TENANT_ID,
        expires_at=_expires_at(result),
        serialized_cache=cache.serialize(),
        public_client=public_client,
    )


# --- device code flow ----------------------------------------------------------


def start_device_link() -> dict[str, Any]:
    """Begin a device-code flow; ``flow["message"]`` tells the user what to do.

    It uses a public client application (no secret), which the app
    registration must allow ("Allow public client flows").
    """
    entry = _get_app(public=True)
    with entry.using(msal.SerializableTokenCache()) as app:
        try:
            flow: dict[str, Any] = app.initiate_device_flow(scopes=conf.LOGIN_SCOPES)
        except _TRANSPORT_ERRORS as error:
            raise _unavailable(None, error) from None
    if "user_code" not in flow:
        raise _flow_error(flow)
    return flow


@sensitive_variables()
def finish_device_link(flow: dict[str, Any]) -> LinkedIdentity:
    """Poll until the user finishes signing in (or the code expires)."""
    cache = msal.SerializableTokenCache()
    # Polling can take minutes, so this uses an application object of its own
    # rather than holding the shared one's lock all that time; the shared
    # http_cache still spares it the discovery requests.
    app = _build_app(public=True)
    app.token_cache = cache
    try:
        result = app.acquire_token_by_device_flow(flow)
    except _TRANSPORT_ERRORS as error:
        raise _unavailable(None, error) from None
    if "error" in result:
        if result.get("error") in {"authorization_declined", "access_denied"}:
            raise AuthorizationDeclined(
                "The sign-in was declined; no mailbox was linked."
            )
        if result.get("error") == "expired_token":
            raise AuthorizationFailed(
                "The device code expired before the sign-in finished. Run the "
                "command again and enter the new code."
            )
        raise _flow_error(result)
    return _identity(result, app.get_accounts(), cache, public_client=True)


# --- tokens --------------------------------------------------------------------


# msal refreshes an access token with less than this left (application.py,
# "if expires_in < 5*60"); the fast path below uses the same rule.
REFRESH_MARGIN_SECONDS = 5 * 60


@sensitive_variables()
def cached_access_token(
    serialized_cache: str, home_account_id: str
) -> AccessToken | None:
    """A still-fresh access token read from the cache, or None.

    This makes no HTTP request and needs no lock: it only reads the stored
    cache, so the backend can skip the locked refresh path in the usual case.
    A token msal would refresh (under five minutes left, or past Microsoft's
    ``refresh_in`` hint) does not count as fresh.
    """
    if not serialized_cache:
        return None
    cache = _load_cache(serialized_cache)
    now = time.time()
    entries = cache.search(
        msal.TokenCache.CredentialType.ACCESS_TOKEN,
        target=conf.SCOPES,
        query={"home_account_id": home_account_id, "client_id": conf.CLIENT_ID},
    )
    for entry in entries:
        expires_on = int(entry["expires_on"])
        if expires_on - now < REFRESH_MARGIN_SECONDS:
            continue
        if "refresh_on" in entry and int(entry["refresh_on"]) < now:
            continue
        return AccessToken(
            value=_SecretStr(entry["secret"]),
            expires_at=datetime.datetime.fromtimestamp(
                expires_on, datetime.timezone.utc
            ),
            refreshed=False,
        )
    return None


@sensitive_variables()
def acquire_token(
    serialized_cache: str,
    home_account_id: str,
    *,
    mailbox: str,
    force_refresh: bool = False,
    public_client: bool = False,
) -> AccessToken:
    """An access token for SMTP from the mailbox's cache, refreshing if needed.

    msal answers from the cache while the token has more than five minutes
    left; otherwise (or with ``force_refresh``) it redeems the refresh token,
    which Microsoft rotates, so the caller must persist ``serialized_cache``.
    """
    cache = _load_cache(serialized_cache)
    entry = _get_app(public=public_client)
    with entry.using(cache) as app:
        account = next(
            (a for a in app.get_accounts() if a["home_account_id"] == home_account_id),
            None,
        )
        if account is None:
            raise ReconnectRequired(
                f"No sign-in is stored for {mailbox}. Link the mailbox again.",
                mailbox=mailbox,
                error="no_account",
            )
        try:
            result = app.acquire_token_silent_with_error(
                conf.SCOPES, account, force_refresh=force_refresh
            )
        except _TRANSPORT_ERRORS as error:
            raise _unavailable(mailbox, error) from None
    if not result:
        raise ReconnectRequired(
            f"No refresh token is stored for {mailbox}. Link the mailbox again.",
            mailbox=mailbox,
            error="no_refresh_token",
        )
    if "error" in result:
        raise token_error(result, mailbox=mailbox)
    return AccessToken(
        value=_SecretStr(result["access_token"]),
        expires_at=_expires_at(result),
        refreshed=result.get("token_source") != "cache",
        serialized_cache=cache.serialize() if cache.has_state_changed else None,
    )


# --- error mapping -------------------------------------------------------------

_GRANT_GONE = {70000, 70008, 700082, 700084, 50173, 50133, 50078}
_POLICY = {50076, 50079, 53003, 50158, 50072, 53000, 50074}
_CONSENT = {65001, 90094, 90095, 65004}
_APP_CREDENTIALS = {7000215, 7000222, 7000218, 700016, 50012}


def _first_line(text: Any) -> str:
    return str(text or "").strip().splitlines()[0] if text else "no details given"


def _unavailable(
    mailbox: str | None, error: BaseException
) -> IdentityPlatformUnavailable:
    response = getattr(error, "response", None)
    status = getattr(response, "status_code", None)
    what = f"HTTP {status}" if status else type(error).__name__
    return IdentityPlatformUnavailable(
        f"The Microsoft identity platform is not answering properly ({what}). "
        "This is temporary and not the mailbox's fault: try again in a moment.",
        mailbox=mailbox,
        error="unavailable",
    )


def token_error(result: Mapping[str, Any], *, mailbox: str | None) -> TokenError:
    """Translate msal's error dict into the exception that says what to do."""
    error = str(result.get("error") or "unknown_error")
    codes = [int(c) for c in result.get("error_codes") or [] if str(c).isdigit()]
    description = _first_line(result.get("error_description"))
    who = mailbox or "this mailbox"
    code_set = set(codes)
    if error == "invalid_client" or code_set & _APP_CREDENTIALS:
        return AppCredentialsError(
            "The app registration's credentials were refused "
            f"({description}). An administrator must create a new client secret in "
            "the Azure portal and update LIVE_OAUTH_MAIL['CLIENT_SECRET']; users "
            "do not need to link again.",
            mailbox=mailbox,
            error=error,
            error_codes=codes,
            description=description,
        )
    if code_set & _CONSENT or error == "consent_required":
        return ReconnectRequired(
            f"Consent is missing for {who} ({description}). A tenant administrator "
            "must grant admin consent to the app (Azure portal > Enterprise "
            "applications > Permissions), then link the mailbox again.",
            mailbox=mailbox,
            error=error,
            error_codes=codes,
            description=description,
        )
    if code_set & _POLICY or error == "interaction_required":
        return ReconnectRequired(
            f"{who} must sign in again because of an organisation policy "
            f"(multi-factor authentication or Conditional Access: {description}). "
            "Link the mailbox again.",
            mailbox=mailbox,
            error=error,
            error_codes=codes,
            description=description,
        )
    if error == "invalid_grant" or code_set & _GRANT_GONE:
        return ReconnectRequired(
            f"The sign-in for {who} has expired or was revoked ({description}). "
            "Link the mailbox again.",
            mailbox=mailbox,
            error=error,
            error_codes=codes,
            description=description,
        )
    if error in {"temporarily_unavailable", "server_error"}:
        return IdentityPlatformUnavailable(
            f"The Microsoft identity platform is temporarily unavailable "
            f"({description}). Try again in a moment.",
            mailbox=mailbox,
            error=error,
            error_codes=codes,
            description=description,
        )
    return TokenError(
        f"Microsoft refused to issue a token for {who}: {error} ({description}).",
        mailbox=mailbox,
        error=error,
        error_codes=codes,
        description=description,
    )


def _flow_error(
    result: Mapping[str, Any], *, redirect_uri: str | None = None
) -> LiveOAuthMailError:
    """Errors from the code exchange, seen only in the connect views."""
    codes = {int(c) for c in result.get("error_codes") or [] if str(c).isdigit()}
    description = _first_line(result.get("error_description"))
    if 50020 in codes:
        return AuthorizationFailed(
            "This kind of account cannot sign in with the configured authority "
            f"({description}). To accept personal Outlook.com accounts, set "
            "LIVE_OAUTH_MAIL['AUTHORITY'] to https://login.microsoftonline.com/common "
            "(or /consumers)."
        )
    if 50011 in codes:
        return AuthorizationFailed(
            f"The redirect URI {redirect_uri or '(unknown)'} is not registered for "
            f"this app ({description}). Add exactly that URI under Authentication > "
            "Redirect URIs in the app registration, or set "
            "LIVE_OAUTH_MAIL['REDIRECT_URI'] to one that is registered."
        )
    error = token_error(result, mailbox=None)
    if isinstance(error, ReconnectRequired) and not codes & _CONSENT:
        return AuthorizationFailed(
            f"Microsoft did not accept the sign-in ({description}). Please try again."
        )
    return error
