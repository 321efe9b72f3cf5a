"""OAuth errors (and injected faults) in the shape Microsoft Entra ID sends.

Client code branches on ``error``, ``error_codes`` and ``suberror``, so the
fakes must produce the same fields (and the ``AADSTSnnnn:`` prefix people grep
for in logs).
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Any

from ._http import Reply

__all__ = ["AADError", "TokenFault", "describe"]

_MFA = (
    "Due to a configuration change made by your administrator, or because you "
    "moved to a new location, you must {} to access 'https://outlook.office.com'."
)

_CERT_DOCS = (
    "https://learn.microsoft.com/entra/identity-platform/certificate-credentials."
)

_DESCRIPTIONS: dict[int, str] = {
    28000: (
        "Provided value for the input parameter scope is not valid because it "
        "contains more than one resource. Scope {} is not valid."
    ),
    50058: "A silent sign-in request was sent but no user is signed in.",
    50076: _MFA.format("use multi-factor authentication"),
    50079: _MFA.format("enroll in multi-factor authentication"),
    50173: (
        "The provided grant has expired due to it being revoked, a fresh auth "
        "token is needed. The user might have changed or reset their password."
    ),
    53003: (
        "Access has been blocked by Conditional Access policies. The access "
        "policy does not allow token issuance."
    ),
    54005: (
        "OAuth2 Authorization code was already redeemed, please retry with a new "
        "valid code or use an existing refresh token."
    ),
    65001: (
        "The user or administrator has not consented to use the application. "
        "Send an interactive authorization request for this user and resource."
    ),
    65004: "User declined to consent to access the app.",
    70000: (
        "The provided value for the input parameter 'refresh_token' or "
        "'assertion' is not valid. The grant has been revoked or is invalid."
    ),
    70008: (
        "The provided authorization code or refresh token has expired due to "
        "inactivity. Send a new interactive authorization request for this user "
        "and resource."
    ),
    70016: "OAuth 2.0 device flow error. Authorization is pending. Continue polling.",
    70019: "Verification code expired.",
    70003: "The app requested an unsupported grant type '{}'.",
    70011: "The provided value for the input parameter 'scope' is not valid.",
    90033: "A transient error has occurred. Please try again.",
    90100: "Request was throttled. Please retry after the Retry-After period.",
    700082: (
        "The refresh token has expired due to inactivity. The token was issued "
        "on 2000-01-01T00:00:00.0000000Z and was inactive for 90.00:00:00."
    ),
    900144: "The request body must contain the following parameter: '{}'.",
    500112: (
        "The reply address '{}' does not match the reply address '{}' provided "
        "when requesting Authorization code."
    ),
    501481: (
        "The Code_Verifier does not match the code_challenge supplied in the "
        "authorization request."
    ),
    7000215: (
        "Invalid client secret provided. Ensure the secret being sent in the "
        "request is the client secret value, not the client secret ID, for a "
        "secret added to app '{}'."
    ),
    700016: (
        "Application with identifier '{}' was not found in the directory. This "
        "can happen if the application has not been installed by the "
        "administrator of the tenant or consented to by any user in the tenant."
    ),
    9002313: "Invalid request. Request is malformed or invalid.",
    # -- client credentials (app-only) and certificate credentials --
    50027: "JWT token is invalid or malformed.",
    50059: (
        "No tenant-identifying information found in either the request or "
        "implied by any provided credentials."
    ),
    700021: (
        "Client assertion application identifier doesn't match 'client_id' "
        "parameter. Review the documentation at " + _CERT_DOCS
    ),
    700023: (
        "Client assertion audience claim does not match Realm issuer. Review "
        "the documentation at " + _CERT_DOCS
    ),
    700024: "Client assertion is not within its valid time range.",
    700027: (
        "Client assertion contains an invalid signature. [Reason - {}, "
        "Thumbprint of key used by client: '{}', Please visit the Azure Portal, "
        "Graph Explorer or directly use MS Graph to see configured keys for app "
        "Id '{}'.]"
    ),
    1002012: (
        "The provided value for scope {} is not valid. Client credential flows "
        "must have a scope value with /.default suffixed to the resource "
        "identifier (application ID URI)."
    ),
    7000218: (
        "The request body must contain the following parameter: "
        "'client_assertion' or 'client_secret'."
    ),
    7000229: (
        "The client application {} is missing service principal in the tenant "
        "{}. See instructions here: https://go.microsoft.com/fwlink/?linkid=2225119"
    ),
    9001023: (
        "The grant type is not supported over the /common or /consumers "
        "endpoints. Please use the /organizations or tenant-specific endpoint."
    ),
}

#: Microsoft's hint about what kind of user interaction could fix the error.
_SUBERRORS: dict[int, str] = {
    50076: "basic_action",
    50079: "basic_action",
    53003: "message_only",
    65001: "consent_required",
}


def describe(code: int, *details: str) -> str:
    """``AADSTS<code>: <message>`` for a known code (generic text otherwise)."""
    template = _DESCRIPTIONS.get(code, "The request failed (simulated error).")
    padding = ("?",) * template.count("{}")  # str.format ignores extra arguments
    return f"AADSTS{code}: {template.format(*details, *padding)}"


class AADError(Exception):
    """An OAuth error response; raise it from an endpoint to answer with it."""

    def __init__(
        self,
        error: str,
        code: int,
        *details: str,
        status: int = 400,
        email: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.error = error
        self.code = code
        self.description = describe(code, *details)
        self.status = status
        self.email = email
        self.headers = dict(headers or {})
        super().__init__(self.description)

    def body(self, correlation_id: str | None = None) -> dict[str, Any]:
        """The JSON body, with the trace details Microsoft appends."""
        trace_id = str(uuid.uuid4())
        correlation_id = correlation_id or str(uuid.uuid4())
        timestamp = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")
        body: dict[str, Any] = {
            "error": self.error,
            "error_description": (
                f"{self.description} Trace ID: {trace_id} "
                f"Correlation ID: {correlation_id} Timestamp: {timestamp}"
            ),
            "error_codes": [self.code],
            "timestamp": timestamp,
            "trace_id": trace_id,
            "correlation_id": correlation_id,
            "error_uri": f"https://login.microsoftonline.com/error?code={self.code}",
        }
        if self.code in _SUBERRORS:
            body["suberror"] = _SUBERRORS[self.code]
        return body


@dataclass(frozen=True)
class TokenFault:
    """A queued failure for the token endpoint (see ``fail_next_token_requests``)."""

    status: int
    error: str | None
    error_code: int | None
    body: str | None
    headers: dict[str, str]

    def reply(self, client_id: str, correlation_id: str | None) -> Reply:
        if self.body is not None:
            kind = "text/html" if self.body.lstrip().startswith("<") else "text/plain"
            content_type = f"{kind}; charset=utf-8"
            return Reply(self.status, self.body.encode(), content_type, self.headers)
        error, code = _fault_defaults(self.status)
        fault = AADError(
            self.error or error, self.error_code or code, client_id, status=self.status
        )
        return Reply.json(self.status, fault.body(correlation_id), self.headers)


def _fault_defaults(status: int) -> tuple[str, int]:
    if status == 401:
        return "invalid_client", 7000215
    if status == 400:
        return "invalid_grant", 70000
    if status == 429:
        return "temporarily_unavailable", 90100
    if status >= 500:
        return "temporarily_unavailable", 90033
    return "invalid_request", 9002313
