"""What the identity platform's refusals mean: which row of the wording applies.

msal hands back the platform's answer as a dict (``error``, ``error_codes``,
``error_description``) or raises for transport trouble. These functions read
it and pick the :mod:`.wording` row that tells the caller what to do, so the
same AADSTS code always gets the same advice, wherever it arrives.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import msal
import requests

from ..conf import conf
from ..exceptions import LiveOAuthMailError, ReconnectRequired, TokenError
from .authority import admin_consent_url
from .wording import refusal, sign_in_failed

# msal reports transport trouble with these (requests is msal's own dependency):
# its throttling client raises MsalServiceError for a 5xx, requests raises for
# connection trouble, and a non-JSON body (an HTML error page) fails to parse.
TRANSPORT_ERRORS = (
    msal.exceptions.MsalServiceError,
    requests.RequestException,
    json.JSONDecodeError,
)

_GRANT_GONE = {70000, 70008, 700084, 50173, 50133, 50078}
_POLICY = {50076, 50079, 53003, 50158, 50072, 53000, 50074}
_CONSENT = {65001, 90094, 90095, 65004}
_APP_CREDENTIALS = {7000215, 7000222, 700016, 50012}
# Refresh tokens that ran out rather than being revoked: each limit has its own
# row, which says what would keep it from happening again.
_EXPIRED_REFRESH_TOKEN = {700082: "unused_for_90_days", 70043: "sign_in_frequency"}


def first_line(text: Any) -> str:
    """The first line of an error's text: Entra's next lines are its trace
    and correlation ids and a timestamp, which help no one reading the message."""
    lines = str(text or "").strip().splitlines()
    return lines[0] if lines else "no details given"


def _codes(result: Mapping[str, Any]) -> list[int]:
    return [int(c) for c in result.get("error_codes") or [] if str(c).isdigit()]


def unavailable(mailbox: str | None, error: BaseException) -> TokenError:
    """A ``TRANSPORT_ERRORS`` failure as :class:`IdentityPlatformUnavailable`,
    named by its HTTP status or its kind only: the error may quote a request."""
    response = getattr(error, "response", None)
    status = getattr(response, "status_code", None)
    failure = f"HTTP {status}" if status else type(error).__name__
    return refusal("unavailable", mailbox=mailbox, failure=failure)


def token_error(
    result: Mapping[str, Any], *, mailbox: str | None, scopes: list[str] | None = None
) -> TokenError:
    """Translate msal's error dict into the exception that says what to do.

    ``scopes``: what was asked for. Missing consent to Graph's is
    :class:`ConsentRequired`: the link (and its SMTP) still works.
    """
    error = str(result.get("error") or "unknown_error")
    codes = _codes(result)
    graph = [s for s in scopes or () if s in conf.GRAPH_SCOPES]
    return refusal(
        _refusal_reason(error, codes, asked_for_graph=bool(graph)),
        mailbox=mailbox,
        error=error,
        error_codes=codes,
        description=first_line(result.get("error_description")),
        permissions=", ".join(s.rpartition("/")[2] for s in graph),
    )


def _refusal_reason(error: str, codes: list[int], *, asked_for_graph: bool) -> str:
    """The ``TOKEN_REFUSALS`` row for a refusal: the first test that holds."""
    code_set = set(codes)
    if 7000218 in code_set:
        return "public_client_flows_disabled"
    if error == "invalid_client" or code_set & _APP_CREDENTIALS:
        return "app_credentials_refused"
    if code_set & _CONSENT or error == "consent_required":
        return "graph_consent_missing" if asked_for_graph else "consent_missing"
    expired = [_EXPIRED_REFRESH_TOKEN[c] for c in codes if c in _EXPIRED_REFRESH_TOKEN]
    if expired:
        return expired[0]
    if code_set & _POLICY or error == "interaction_required":
        return "policy"
    if error == "invalid_grant" or code_set & _GRANT_GONE:
        return "grant_gone"
    if error in {"temporarily_unavailable", "server_error"}:
        return "temporarily_unavailable"
    return "refused"


def app_error(result: Mapping[str, Any], tenant: str, mailbox: str) -> TokenError:
    """A refused app-only token request: as :func:`token_error`, except that a
    tenant without the app's service principal needs an administrator's consent."""
    codes = {int(c) for c in result.get("error_codes") or [] if str(c).isdigit()}
    if 7000229 in codes:
        return refusal(
            "no_service_principal",
            mailbox=mailbox,
            error=str(result.get("error")),
            error_codes=sorted(codes),
            tenant=tenant,
            detail=first_line(result.get("error_description")),
            consent_url=admin_consent_url(tenant),
        )
    return token_error(result, mailbox=mailbox)


def flow_error(
    result: Mapping[str, Any], *, redirect_uri: str | None = None
) -> LiveOAuthMailError:
    """Errors from the code exchange, seen only in the connect views."""
    codes = set(_codes(result))
    description = first_line(result.get("error_description"))
    if 50020 in codes:
        return sign_in_failed("account_kind_refused", description=description)
    if 50011 in codes:
        return sign_in_failed(
            "redirect_uri_unregistered",
            redirect_uri=redirect_uri or "(unknown)",
            description=description,
        )
    error = token_error(result, mailbox=None)
    if isinstance(error, ReconnectRequired) and not (
        codes & _CONSENT or error.error == "consent_required"
    ):
        return sign_in_failed("not_accepted", description=description)
    return error


def device_error(result: Mapping[str, Any]) -> LiveOAuthMailError:
    """Errors from polling a device code: declined, expired, or as the code flow."""
    if result.get("error") in {"authorization_declined", "access_denied"}:
        return sign_in_failed("device_declined")
    if result.get("error") == "expired_token":
        return sign_in_failed("device_code_expired")
    return flow_error(result)
