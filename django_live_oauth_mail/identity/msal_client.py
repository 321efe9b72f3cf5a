"""Everything that talks to msal, and the only module that imports it.

Each call builds an msal application object of its own, so calls for different
mailboxes and users run side by side: no lock is held across an HTTP request.
Building one costs about half a millisecond of CPU and no request, because what is worth
sharing is shared per process: the ``requests`` session and the discovery
answers (openid-configuration, instance metadata), so discovery happens once
per process. msal's throttling memory (its ``http_cache``) is not shared: it is
kept per connect flow and per mailbox, so one user's 429 or 500 never refuses
another user's request, while a retry of the same flow, or of the same
mailbox's refresh, still waits out Retry-After.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime
import functools
import hashlib
import http.cookiejar
import json
import logging
import threading
import time
import warnings
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

import msal
import requests
from cryptography.hazmat.primitives import serialization
from django.views.decorators.debug import sensitive_variables

from ..conf import conf
from ..exceptions import (
    AppConsentRequired,
    AppCredentialsError,
    AuthorizationDeclined,
    AuthorizationFailed,
    ConfigurationError,
    ConsentRequired,
    IdentityPlatformUnavailable,
    LiveOAuthMailError,
    ReconnectRequired,
    TokenError,
)
from ..secret import Secret

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


@dataclasses.dataclass(frozen=True)
class AccessToken:
    """A usable access token for one mailbox. ``repr()`` never shows the value."""

    value: Secret[str] = dataclasses.field(repr=False)
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


def uses_instance_discovery(authority: str) -> bool:
    return (urlsplit(authority).hostname or "").lower() in MICROSOFT_LOGIN_HOSTS


# --- what the per-call applications share ------------------------------------------

# msal keeps a successful GET in its http_cache for a day
# (throttled_http_client.py); discovery answers are kept here as long.
_DISCOVERY_SECONDS = 24 * 3600


@dataclasses.dataclass(frozen=True)
class _Answer:
    """A remembered discovery answer: the parts of a response msal reads."""

    status_code: int
    text: str
    headers: Mapping[str, str]


class _HttpClient:
    """The ``http_client`` given to msal: one session, discovery kept per process.

    msal asks for the openid-configuration (and, on Microsoft's hosts, instance
    metadata) whenever an application object is built. A long-lived object
    would find the answers in its own ``http_cache``; ours live for one call,
    so the answers are kept here instead: the successful JSON ones only (a
    proxy's HTML page answered with 200 must not stick for a day). Two cold
    calls at once may both ask; nothing waits for anyone else's request.
    """

    def __init__(self, session: requests.Session) -> None:
        self.session = session
        self._answers: dict[tuple[str, str], tuple[float, _Answer]] = {}
        self._lock = threading.Lock()

    def get(self, url: str, params: Any = None, **kwargs: Any) -> Any:
        key = (url, json.dumps(params, sort_keys=True, default=str))
        with self._lock:
            kept = self._answers.get(key)
        if kept is not None and time.monotonic() < kept[0]:
            return kept[1]
        response = self.session.get(url, params=params, **kwargs)
        if 200 <= response.status_code < 300 and _is_json(response.text):
            answer = _Answer(response.status_code, response.text, response.headers)
            with self._lock:
                self._answers[key] = (time.monotonic() + _DISCOVERY_SECONDS, answer)
        return response

    def post(self, url: str, **kwargs: Any) -> Any:
        return self.session.post(url, **kwargs)

    def close(self) -> None:
        """Leave the shared session open: other calls use it (``reset()`` closes)."""


def _is_json(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


def _session(timeout: float, ca_bundle: str | None) -> requests.Session:
    session = requests.Session()
    # requests lets REQUESTS_CA_BUNDLE and CURL_CA_BUNDLE override a session's
    # `verify`, but not a per-request one; pass it per request so CA_BUNDLE wins.
    session.request = functools.partial(  # type: ignore[method-assign]
        session.request, timeout=timeout, verify=ca_bundle or True
    )
    adapter = requests.adapters.HTTPAdapter(max_retries=1)
    session.mount("https://", adapter)
    # One session serves every user's calls: keep no cookie from one for another.
    session.cookies.set_policy(http.cookiejar.DefaultCookiePolicy(allowed_domains=[]))
    return session


_http_clients: dict[tuple[float, str | None], _HttpClient] = {}
_http_clients_lock = threading.Lock()


def _http_client() -> _HttpClient:
    """The process's HTTP client for the current timeout and CA bundle."""
    key = (conf.HTTP_TIMEOUT, conf.CA_BUNDLE)
    with _http_clients_lock:
        if key not in _http_clients:
            _http_clients[key] = _HttpClient(_session(*key))
        return _http_clients[key]


def http_session() -> requests.Session:
    """The process's ``requests`` session, which Graph requests share with msal.

    One connection pool per process; the timeout is ``HTTP_TIMEOUT`` and
    certificates are checked against ``CA_BUNDLE``, as for the identity
    platform. It retries a failed connection once, but never a request that
    was sent (urllib3 retries no POST after a read error).
    """
    return _http_client().session


class _Refusals:
    """msal's throttling memory, one per connect flow or mailbox.

    msal's throttling client remembers 429, 5xx and Retry-After answers (and
    OAuth 400s, for a minute) in its ``http_cache`` and answers a repeat of the
    request from there without sending it. Its key is the URL, client id,
    scope and a hash of ``data.get("refresh_token")``; it only falls back to
    the authorization code when the body is not a dict, and msal always sends
    a dict (``_extract_data`` in throttled_http_client.py). So refreshes are
    already keyed per refresh token, but every code exchange shares one key:
    in a shared cache, one user's 429 with Retry-After: 20 refused every other
    user's link for 20 s without a request, and one 500 for 5 s.

    So each flow (by ``state``) and each mailbox (by ``home_account_id``) gets
    a cache of its own. A call takes it out while it runs (two calls never
    share one, so msal's bookkeeping in it needs no lock) and puts it back
    only if the call failed: msal only remembers refusals, and a success means
    none applies. At most ``capacity`` are kept, the oldest dropped first, as
    msal bounds its own cache at 1024 entries.
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._caches: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._lock = threading.Lock()

    @contextmanager
    def lend(self, key: str | None) -> Iterator[dict[str, Any]]:
        """The ``http_cache`` for one call about ``key`` (None: a fresh one)."""
        with self._lock:
            cache = self._caches.pop(key, None) if key else None
        cache = {} if cache is None else cache
        try:
            yield cache
        except BaseException:
            if key:
                with self._lock:
                    self._caches[key] = cache
                    while len(self._caches) > self.capacity:
                        self._caches.popitem(last=False)
            raise

    def clear(self) -> None:
        with self._lock:
            self._caches.clear()


_refusals = _Refusals(capacity=1024)


@sensitive_variables()
def _application(
    *,
    public: bool = False,
    http_cache: dict[str, Any] | None = None,
    token_cache: msal.SerializableTokenCache | None = None,
    tenant: str | None = None,
    mailbox: str | None = None,
) -> msal.ClientApplication:
    """A new application object for one call, on the current settings.

    ``tenant`` replaces the authority's path (``common``): app-only tokens
    must come from the mailbox's own tenant.
    """
    client_id, authority = conf.CLIENT_ID, conf.AUTHORITY
    if not client_id:
        raise ConfigurationError(
            "LIVE_OAUTH_MAIL['CLIENT_ID'] is not set. Copy the Application (client) "
            "ID from your app registration in the Azure portal."
        )
    # Masked (a Secret): it may sit in this frame when something below raises.
    # A missing one is a ConfigurationError before any request.
    credential = None if public else _credential()
    if urlsplit(authority).scheme != "https":
        raise ConfigurationError(
            f"LIVE_OAUTH_MAIL['AUTHORITY'] must be an https URL, not {authority!r}; "
            "msal refuses anything else."
        )
    if tenant is not None:
        authority = _tenant_authority(tenant)
    options: dict[str, Any] = {
        "authority": authority,
        "http_client": _http_client(),
        "http_cache": {} if http_cache is None else http_cache,
        "token_cache": token_cache or msal.SerializableTokenCache(),
    }
    if not uses_instance_discovery(authority):
        options["instance_discovery"] = False
    try:
        if credential is None:
            return msal.PublicClientApplication(client_id, **options)
        # Revealed only as msal's argument: no frame of ours names the value.
        return msal.ConfidentialClientApplication(
            client_id, client_credential=credential.reveal(), **options
        )
    except ValueError as error:
        if tenant is None:
            raise ConfigurationError(
                f"msal refused LIVE_OAUTH_MAIL['AUTHORITY'] {authority!r} "
                f"({_first_line(error)})."
            ) from None
        # msal's discovery found no such tenant.
        raise TokenError(
            f"The identity platform does not know tenant {tenant!r} of {mailbox} "
            f"({_first_line(error)}). Register the mailbox again with its "
            "tenant id: `manage.py live_oauth_mail add-app MAILBOX --tenant ID`.",
            mailbox=mailbox,
            error="unknown_tenant",
        ) from None
    except _TRANSPORT_ERRORS as error:
        raise IdentityPlatformUnavailable(
            f"Could not reach the identity platform at {authority} "
            f"({type(error).__name__}). Try again in a moment; if it persists, "
            "check LIVE_OAUTH_MAIL['AUTHORITY'] and the server's network access.",
            error="unreachable",
        ) from None


@sensitive_variables()
def _credential() -> Secret[str | dict[str, str]]:
    """The app's credential: its certificate when one is set, else its secret."""
    certificate = conf.CLIENT_CERTIFICATE
    if certificate is None:
        if not conf.CLIENT_SECRET:
            raise ConfigurationError(
                "LIVE_OAUTH_MAIL['CLIENT_SECRET'] is not set. Create a client "
                "secret under Certificates & secrets in your app registration, "
                "or upload a certificate there and set CLIENT_CERTIFICATE."
            )
        return Secret(conf.CLIENT_SECRET)
    return Secret(
        {
            "private_key": certificate_key(certificate.get("private_key", "")),
            "thumbprint": certificate.get("thumbprint", "").replace(":", ""),
        }
    )


@sensitive_variables()
def certificate_key(value: str) -> str:
    """The PEM itself, or read from the file ``value`` names."""
    if "-----BEGIN" in value:
        return value
    try:
        with open(value, encoding="ascii") as pem:
            return pem.read()
    except (OSError, ValueError) as error:
        raise ConfigurationError(
            "LIVE_OAUTH_MAIL['CLIENT_CERTIFICATE']['private_key'] is neither a PEM "
            f"private key nor a readable file ({type(error).__name__})."
        ) from None


def certificate_problem(certificate: Mapping[str, str]) -> str | None:
    """What is wrong with a CLIENT_CERTIFICATE, or None (for the checks)."""
    thumbprint = certificate.get("thumbprint", "").replace(":", "")
    # msal puts it in the assertion's x5t header, which is SHA-1's.
    if len(thumbprint) != 40 or not _is_hex(thumbprint):
        return (
            "'thumbprint' must be the certificate's SHA-1 thumbprint (40 hex digits)."
        )
    key = certificate_key(certificate.get("private_key", ""))
    try:
        serialization.load_pem_private_key(key.encode(), password=None)
    except (ValueError, TypeError) as error:
        return f"'private_key' is not an unencrypted PEM private key ({error})."
    return None


def _is_hex(text: str) -> bool:
    try:
        int(text, 16)
    except ValueError:
        return False
    return True


def _tenant_authority(tenant: str) -> str:
    parts = urlsplit(conf.AUTHORITY)
    return f"{parts.scheme}://{parts.netloc}/{tenant}"


def reset() -> None:
    """Forget discovery answers, sessions and throttling memory (for tests)."""
    with _http_clients_lock:
        clients = list(_http_clients.values())
        _http_clients.clear()
    for client in clients:
        client.session.close()
    _refusals.clear()
    with _app_tokens_lock:
        _app_tokens.clear()


# --- stored token caches -----------------------------------------------------------

# What msal and cached_access_token() read from each kind of cache entry with
# no default (token_cache.py search(), application.py _find_msal_accounts() and
# the refresh path), so a missing one would surface as a KeyError mid-refresh...
_REQUIRED_FIELDS = {
    "AccessToken": ("secret", "expires_on"),
    "RefreshToken": ("secret",),
    "Account": ("authority_type",),
}
# ...and what they pass to int().
_NUMERIC_FIELDS = ("expires_on", "refresh_on", "last_modification_time")


class _UnreadableCache(Exception):
    """A stored cache msal could not use; the message quotes nothing from it."""


def _load_cache(serialized: str) -> msal.SerializableTokenCache:
    """The mailbox's msal cache; raises ``_UnreadableCache`` if msal can't use it."""
    cache = msal.SerializableTokenCache()
    if not serialized:
        return cache
    try:
        state = json.loads(serialized)
    except ValueError:
        raise _UnreadableCache("it is not JSON") from None
    problem = _cache_problem(state)
    if problem:
        raise _UnreadableCache(problem)
    cache.deserialize(serialized)
    return cache


def _cache_problem(state: Any) -> str | None:
    if not isinstance(state, dict):
        return "it is not a JSON object"
    for kind, entries in state.items():
        if not isinstance(entries, dict) or not all(
            isinstance(entry, dict) for entry in entries.values()
        ):
            return "one of its sections is not a JSON object of entries"
        required = _REQUIRED_FIELDS.get(kind, ())
        for entry in entries.values():
            for field in required:
                if field not in entry:
                    return f"one of its {kind} entries has no {field!r}"
            for field in _NUMERIC_FIELDS:
                if field in entry and not _is_integer(entry[field]):
                    return f"one of its entries has a non-numeric {field!r}"
    return None


def _is_integer(value: Any) -> bool:
    try:
        int(value)
    except (TypeError, ValueError):
        return False
    return True


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
    flow: dict[str, Any] = _application().initiate_auth_code_flow(
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
    state = flow.get("state")
    with _refusals.lend(f"flow {state}" if state else None) as http_cache:
        app = _application(http_cache=http_cache, token_cache=cache)
        try:
            # Consent covered every transport's resource; a token is for one
            # (asking for two fails with AADSTS28000). The other is redeemed
            # later from the same refresh token, see acquire_token().
            answer = _SignIn.of(
                app.acquire_token_by_auth_code_flow(
                    flow, dict(auth_response), scopes=conf.REDEEM_SCOPES
                )
            )
        except _TRANSPORT_ERRORS as error:
            raise _unavailable(None, error) from None
        except (ValueError, RuntimeError):
            # msal's own checks: a state mismatch (ValueError) or an id token
            # whose nonce is not ours (RuntimeError). Either way: start again.
            raise AuthorizationFailed(
                "The sign-in response did not match this sign-in. Please start again."
            ) from None
        if answer.error is not None:
            raise _flow_error(answer.error, redirect_uri=flow.get("redirect_uri"))
        accounts = app.get_accounts()
    return _identity(answer, accounts, cache)


@dataclasses.dataclass(frozen=True)
class _SignIn:
    """msal's answer to a sign-in, taken apart at once: that dict holds the
    new access and refresh tokens, which must not stay in a frame that may be
    on a traceback (the tokens themselves live on in msal's cache)."""

    claims: Mapping[str, Any]
    expires_at: datetime.datetime | None
    #: msal's error answer (error, description, codes: no token), or None.
    error: Mapping[str, Any] | None

    @classmethod
    def of(cls, result: Mapping[str, Any]) -> _SignIn:
        if "error" in result:
            return cls({}, None, dict(result))
        claims = dict(result.get("id_token_claims") or {})
        return cls(claims, _expires_at(result), None)


@sensitive_variables()
def _identity(
    answer: _SignIn,
    accounts: list[dict[str, Any]],
    cache: msal.SerializableTokenCache,
    *,
    public_client: bool = False,
) -> LinkedIdentity:
    claims = answer.claims
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
        expires_at=answer.expires_at,
        serialized_cache=cache.serialize(),
        public_client=public_client,
    )


# --- device code flow ----------------------------------------------------------


def start_device_link() -> dict[str, Any]:
    """Begin a device-code flow; ``flow["message"]`` tells the user what to do.

    It uses a public client application (no secret), which the app
    registration must allow ("Allow public client flows"). It asks consent
    for one resource only: the code is redeemed with the scopes it was issued
    for, and a token is for one resource.
    """
    app = _application(public=True)
    try:
        flow: dict[str, Any] = app.initiate_device_flow(scopes=conf.REDEEM_SCOPES)
    except _TRANSPORT_ERRORS as error:
        raise _unavailable(None, error) from None
    if "user_code" not in flow:
        raise _flow_error(flow)
    return flow


@sensitive_variables()
def finish_device_link(flow: dict[str, Any]) -> LinkedIdentity:
    """Poll until the user finishes signing in (or the code expires)."""
    cache = msal.SerializableTokenCache()
    # Polling can take minutes; msal honours Retry-After between polls with
    # this call's own throttling memory.
    app = _application(public=True, token_cache=cache)
    try:
        answer = _SignIn.of(app.acquire_token_by_device_flow(flow))
    except _TRANSPORT_ERRORS as error:
        raise _unavailable(None, error) from None
    if answer.error is not None:
        raise _device_error(answer.error)
    return _identity(answer, app.get_accounts(), cache, public_client=True)


def _device_error(result: Mapping[str, Any]) -> LiveOAuthMailError:
    """Errors from polling a device code: declined, expired, or as the code flow."""
    if result.get("error") in {"authorization_declined", "access_denied"}:
        return AuthorizationDeclined("The sign-in was declined; no mailbox was linked.")
    if result.get("error") == "expired_token":
        return AuthorizationFailed(
            "The device code expired before the sign-in finished. Run the "
            "command again and enter the new code."
        )
    return _flow_error(result)


# --- tokens --------------------------------------------------------------------


# msal refreshes an access token with less than this left (application.py,
# "if expires_in < 5*60"); the fast path below uses the same rule.
REFRESH_MARGIN_SECONDS = 5 * 60


@sensitive_variables()
def cached_access_token(
    serialized_cache: str, home_account_id: str, scopes: list[str]
) -> AccessToken | None:
    """A still-fresh access token read from the cache, or None.

    This makes no HTTP request and needs no lock: it only reads the stored
    cache, so the backend can skip the locked refresh path in the usual case.
    A token msal would refresh (under five minutes left, or past Microsoft's
    ``refresh_in`` hint) does not count as fresh. Nor does anything in a cache
    msal could not use: this function cannot name the mailbox, so it returns
    None and leaves it to :func:`acquire_token` to say what is wrong.
    """
    if not serialized_cache:
        return None
    try:
        cache = _load_cache(serialized_cache)
    except _UnreadableCache:
        return None
    now = time.time()
    query = {"home_account_id": home_account_id, "client_id": conf.CLIENT_ID}
    targets = [scopes]
    if scopes and all(s in conf.GRAPH_SCOPES for s in scopes):
        # Entra names Graph's scopes by their short names in its answer
        # ("Mail.Send"), and msal files the token under what it answered.
        targets.append([s.rpartition("/")[2] for s in scopes])
    kind = msal.TokenCache.CredentialType.ACCESS_TOKEN
    entries = [e for t in targets for e in cache.search(kind, target=t, query=query)]
    for entry in entries:
        expires_on = int(entry["expires_on"])
        if expires_on - now < REFRESH_MARGIN_SECONDS:
            continue
        if "refresh_on" in entry and int(entry["refresh_on"]) < now:
            continue
        return AccessToken(
            value=Secret(entry["secret"]),
            expires_at=datetime.datetime.fromtimestamp(
                expires_on, datetime.timezone.utc
            ),
            refreshed=False,
        )
    return None


@sensitive_variables()
def acquire_token(
    serialized_cache: Secret[str],
    home_account_id: str,
    *,
    scopes: list[str],
    mailbox: str,
    force_refresh: bool = False,
    public_client: bool = False,
) -> AccessToken:
    """An access token for ``scopes`` (one resource), refreshing if needed.

    msal answers from the cache while the token has more than five minutes
    left; otherwise (or with ``force_refresh``) it redeems the refresh token,
    which Microsoft rotates, so the caller must persist ``serialized_cache``.
    The refresh token serves every resource the user consented to, so this
    is also how a mailbox linked for SMTP gets its first Graph token.
    """
    try:
        cache = _load_cache(serialized_cache.reveal())
    except _UnreadableCache as problem:
        # The cache was decrypted, so the keys are right (a wrong key is a
        # ConfigurationError in models.py); what it holds is not a cache msal
        # wrote. Only a new sign-in replaces it, and that is the mailbox
        # owner's to do, so this marks the mailbox like a revoked grant.
        raise ReconnectRequired(
            f"The stored sign-in for {mailbox} cannot be read ({problem}), so no "
            "token can be refreshed from it. Link the mailbox again to replace it.",
            mailbox=mailbox,
            error="unreadable_cache",
        ) from None
    key = f"mailbox {home_account_id}" if home_account_id else None
    with _refusals.lend(key) as http_cache:
        app = _application(
            public=public_client, http_cache=http_cache, token_cache=cache
        )
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
            # Taken apart at once: msal's answer holds the new tokens.
            issued = _Issued.of(
                app.acquire_token_silent_with_error(
                    scopes, account, force_refresh=force_refresh
                )
            )
        except _TRANSPORT_ERRORS as error:
            raise _unavailable(mailbox, error) from None
        if issued is None:
            raise ReconnectRequired(
                f"No refresh token is stored for {mailbox}. Link the mailbox again.",
                mailbox=mailbox,
                error="no_refresh_token",
            )
        if issued.error:
            raise token_error(issued.error, mailbox=mailbox, scopes=scopes)
    return issued.token(cache.serialize() if cache.has_state_changed else None)


@dataclasses.dataclass(frozen=True)
class _Issued:
    """msal's answer to a token request, taken apart at once: that dict holds
    the new tokens, and must not stay in a frame that may be on a traceback."""

    access_token: Secret[str] | None
    expires_at: datetime.datetime | None
    from_cache: bool
    roles: frozenset[str]
    #: msal's error answer (error, description, codes: no token), or None.
    error: Mapping[str, Any] | None

    @classmethod
    def of(cls, result: Mapping[str, Any] | None) -> _Issued | None:
        if not result or "error" in result:
            return cls(None, None, False, frozenset(), dict(result)) if result else None
        token = result["access_token"]
        cached = result.get("token_source") == "cache"
        roles = frozenset(_roles(token))
        return cls(Secret(token), _expires_at(result), cached, roles, None)

    def token(self, serialized_cache: str | None = None) -> AccessToken:
        assert self.access_token is not None
        return AccessToken(
            self.access_token, self.expires_at, not self.from_cache, serialized_cache
        )


# --- app-only tokens (client credentials) ----------------------------------------


@dataclasses.dataclass
class _AppEntry:
    """An application object whose msal cache keeps the app's token, so a busy
    process asks once per token lifetime; its lock makes threads starting
    cold ask once too."""

    lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)
    app: msal.ClientApplication | None = None


#: Per tenant, scope and credential.
_app_tokens: dict[tuple[Any, ...], _AppEntry] = {}
_app_tokens_lock = threading.Lock()


@sensitive_variables()
def acquire_app_token(
    tenant: str, scope: str, role: str, *, mailbox: str, force_refresh: bool = False
) -> AccessToken:
    """The app's own token for ``scope`` in ``tenant``; it must carry ``role``.

    No person and no refresh token: client credentials, against the
    mailbox's tenant (never ``common``). Entra issues a token even when the
    role was never granted, and the server's refusal then is vague, so the
    ``roles`` claim is checked here first.
    """
    key = (tenant, scope, conf.CLIENT_ID, conf.AUTHORITY, _credential_hash())
    with _app_tokens_lock:  # held for a lookup only: building one asks the network
        entry = _app_tokens.setdefault(key, _AppEntry())
    with entry.lock:
        if entry.app is None:
            entry.app = _application(tenant=tenant, mailbox=mailbox)
        app = entry.app
        if force_refresh:
            app.remove_tokens_for_client()
        try:
            # Taken apart at once: msal's answer holds the token.
            issued = _Issued.of(app.acquire_token_for_client([scope]))
        except _TRANSPORT_ERRORS as error:
            raise _unavailable(mailbox, error) from None
        except Exception as error:  # msal's signing (PyJWT) with a broken key
            raise ConfigurationError(
                "The app's credential could not sign a token request for "
                f"{mailbox} ({type(error).__name__}). Check "
                "LIVE_OAUTH_MAIL['CLIENT_CERTIFICATE'] (`manage.py check`)."
            ) from None
        assert issued is not None  # msal answers client credentials with a dict
        if not issued.error and role not in issued.roles:
            # Else msal would answer from its cache, without the role, until the
            # token expires, even after the administrator consented.
            app.remove_tokens_for_client()
    if issued.error:
        raise _app_error(issued.error, tenant, mailbox)
    if role not in issued.roles:
        raise AppConsentRequired(
            f"The app's token for {mailbox} lacks the {role} application "
            f"permission: admin consent was not granted in tenant {tenant}. Add "
            f"{role} under API permissions, then a tenant administrator grants "
            f"consent at {admin_consent_url(tenant)}",
            mailbox=mailbox,
            error="missing_role",
        )
    return issued.token()


@sensitive_variables()
def _credential_hash() -> str:
    """The configured credential's hash, so a new secret or certificate gets a
    new token; the settings, not the key file, which is read only to build."""
    configured = repr((conf.CLIENT_SECRET, conf.CLIENT_CERTIFICATE))
    return hashlib.sha256(configured.encode()).hexdigest()


def admin_consent_url(tenant: str) -> str:
    """Where a tenant's administrator grants the app its application permissions."""
    return f"{_tenant_authority(tenant)}/adminconsent?client_id={conf.CLIENT_ID}"


@sensitive_variables()
def _roles(token: str) -> set[str]:
    """The ``roles`` claim of a JWT access token (not verified: only read)."""
    try:
        payload = token.split(".")[1]
        claims = json.loads(
            base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
        )
        return {str(role) for role in claims.get("roles") or []}
    except (IndexError, ValueError, AttributeError):
        return set()


def _app_error(result: Mapping[str, Any], tenant: str, mailbox: str) -> TokenError:
    codes = {int(c) for c in result.get("error_codes") or [] if str(c).isdigit()}
    if 7000229 in codes:
        return AppConsentRequired(
            f"The app has no service principal in tenant {tenant}, so it cannot "
            f"send as {mailbox} ({_first_line(result.get('error_description'))}). "
            "A tenant administrator grants admin consent at "
            f"{admin_consent_url(tenant)}",
            mailbox=mailbox,
            error=str(result.get("error")),
            error_codes=sorted(codes),
        )
    return token_error(result, mailbox=mailbox)


# --- error mapping -------------------------------------------------------------

_GRANT_GONE = {70000, 70008, 700084, 50173, 50133, 50078}
_POLICY = {50076, 50079, 53003, 50158, 50072, 53000, 50074}
_CONSENT = {65001, 90094, 90095, 65004}
_APP_CREDENTIALS = {7000215, 7000222, 700016, 50012}
# Refresh tokens that ran out rather than being revoked: say which limit was
# reached and what would keep it from happening again.
_EXPIRED_REFRESH_TOKEN = {
    # Microsoft ends a refresh token unused for 90 days; tenants cannot change
    # that since configurable refresh token lifetimes were retired in 2021.
    700082: (
        "The sign-in for {who} expired because it was not used for 90 days "
        "({description}). Link the mailbox again. To keep it from expiring, send "
        "mail from it, or run `manage.py live_oauth_mail refresh`, at least once "
        "a month."
    ),
    70043: (
        "The sign-in for {who} expired because the tenant's sign-in frequency "
        "policy in Conditional Access limits how long a sign-in lasts "
        "({description}). Link the mailbox again. A tenant administrator can "
        "lengthen the sign-in frequency for this app, or exclude the app from "
        "that policy."
    ),
}


def _first_line(text: Any) -> str:
    lines = str(text or "").strip().splitlines()
    return lines[0] if lines else "no details given"


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


def token_error(
    result: Mapping[str, Any], *, mailbox: str | None, scopes: list[str] | None = None
) -> TokenError:
    """Translate msal's error dict into the exception that says what to do.

    ``scopes``: what was asked for. Missing consent to Graph's is
    :class:`ConsentRequired`: the link (and its SMTP) still works.
    """
    error = str(result.get("error") or "unknown_error")
    codes = [int(c) for c in result.get("error_codes") or [] if str(c).isdigit()]
    description = _first_line(result.get("error_description"))
    who = mailbox or "this mailbox"
    code_set = set(codes)
    if 7000218 in code_set:
        # Only a public client sends no secret: the device-code link, and the
        # refreshes of a mailbox linked so. A new secret would not help.
        return AppCredentialsError(
            "The app registration does not allow public client flows, which "
            f"linking with a device code needs ({description}). An administrator "
            "must set 'Allow public client flows' to Yes under Authentication in "
            "the app registration; users do not need to link again.",
            mailbox=mailbox,
            error=error,
            error_codes=codes,
            description=description,
        )
    if error == "invalid_client" or code_set & _APP_CREDENTIALS:
        return AppCredentialsError(
            "The app registration's credentials were refused "
            f"({description}). An administrator must create a new client secret "
            "(or upload a certificate) in the Azure portal and update "
            "LIVE_OAUTH_MAIL['CLIENT_SECRET'] (or CLIENT_CERTIFICATE); users "
            "do not need to link again.",
            mailbox=mailbox,
            error=error,
            error_codes=codes,
            description=description,
        )
    missing_consent = code_set & _CONSENT or error == "consent_required"
    graph = [s for s in scopes or () if s in conf.GRAPH_SCOPES]
    if missing_consent and graph:
        permissions = ", ".join(s.rpartition("/")[2] for s in graph)
        return ConsentRequired(
            f"{who} has not granted this app {permissions} on Microsoft Graph "
            f"({description}), which sending through Graph needs. Link the "
            "mailbox again (re-link) to grant it; until then it can send only "
            "through SMTP.",
            mailbox=mailbox,
            error=error,
            error_codes=codes,
            description=description,
        )
    if missing_consent:
        return ReconnectRequired(
            f"Consent is missing for {who} ({description}). A tenant administrator "
            "must grant admin consent to the app (Azure portal > Enterprise "
            "applications > Permissions), then link the mailbox again.",
            mailbox=mailbox,
            error=error,
            error_codes=codes,
            description=description,
        )
    expired = [_EXPIRED_REFRESH_TOKEN[c] for c in codes if c in _EXPIRED_REFRESH_TOKEN]
    if expired:
        return ReconnectRequired(
            expired[0].format(who=who, description=description),
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
    if isinstance(error, ReconnectRequired) and not (
        codes & _CONSENT or error.error == "consent_required"
    ):
        return AuthorizationFailed(
            f"Microsoft did not accept the sign-in ({description}). Please try again."
        )
    return error
