"""Linking a mailbox: the auth-code flow (views) and the device-code flow
(the command), each ending in a :class:`LinkedIdentity`.

msal makes the PKCE verifier, state and nonce and checks them on the way
back. A finished flow leaves the new tokens only in its own msal cache,
whose serialized form the caller stores; msal's answer, which holds them
too, is taken apart at once (:class:`_SignIn`).
"""

from __future__ import annotations

import dataclasses
import datetime
import warnings
from collections.abc import Mapping
from typing import Any

import msal
from django.views.decorators.debug import sensitive_variables

from ..conf import conf
from .applications import application
from .authority import PERSONAL_TENANT_ID
from .errors import (
    TRANSPORT_ERRORS,
    device_error,
    first_line,
    flow_error,
    unavailable,
)
from .issued import expires_at
from .throttling import refusals
from .wording import sign_in_failed

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


def start_link(redirect_uri: str, *, login_hint: str | None = None) -> dict[str, Any]:
    """Begin an auth-code flow with PKCE, state and nonce (all made by msal).

    Returns msal's flow dict; ``flow["auth_uri"]`` is where to send the user,
    ``flow["state"]`` the key to keep it under. It holds no token.
    """
    flow: dict[str, Any] = application().initiate_auth_code_flow(
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
            raise sign_in_failed("cancelled")
        raise sign_in_failed(
            "sign_in_error",
            error=error,
            description=first_line(auth_response.get("error_description")),
        )
    cache = msal.SerializableTokenCache()
    state = flow.get("state")
    with refusals.lend(f"flow {state}" if state else None) as http_cache:
        app = application(http_cache=http_cache, token_cache=cache)
        try:
            # Consent covered every transport's resource; a token is for one
            # (asking for two fails with AADSTS28000). The other is redeemed
            # later from the same refresh token, see delegated.acquire_token().
            answer = _SignIn.of(
                app.acquire_token_by_auth_code_flow(
                    flow, dict(auth_response), scopes=conf.REDEEM_SCOPES
                )
            )
        except TRANSPORT_ERRORS as error:
            raise unavailable(None, error) from None
        except (ValueError, RuntimeError):
            # msal's own checks: a state mismatch (ValueError) or an id token
            # whose nonce is not ours (RuntimeError). Either way: start again.
            raise sign_in_failed("answer_mismatch") from None
        if answer.error is not None:
            raise flow_error(answer.error, redirect_uri=flow.get("redirect_uri"))
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
        return cls(claims, expires_at(result), None)


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
        raise sign_in_failed("no_email")
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
    app = application(public=True)
    try:
        flow: dict[str, Any] = app.initiate_device_flow(scopes=conf.REDEEM_SCOPES)
    except TRANSPORT_ERRORS as error:
        raise unavailable(None, error) from None
    if "user_code" not in flow:
        raise flow_error(flow)
    return flow


@sensitive_variables()
def finish_device_link(flow: dict[str, Any]) -> LinkedIdentity:
    """Poll until the user finishes signing in (or the code expires)."""
    cache = msal.SerializableTokenCache()
    # Polling can take minutes; msal honours Retry-After between polls with
    # this call's own throttling memory.
    app = application(public=True, token_cache=cache)
    try:
        answer = _SignIn.of(app.acquire_token_by_device_flow(flow))
    except TRANSPORT_ERRORS as error:
        raise unavailable(None, error) from None
    if answer.error is not None:
        raise device_error(answer.error)
    return _identity(answer, app.get_accounts(), cache, public_client=True)
