"""What the identity stand-in issued, as the SMTP and Graph stand-ins and
tests read it."""

from __future__ import annotations

from dataclasses import dataclass

#: The resource of SMTP.Send (and of a bare scope such as ``SMTP.Send``).
OUTLOOK = "https://outlook.office.com"
#: Audiences Exchange's SMTP accepts (the second is app-only's ``.default``).
OUTLOOK_AUDIENCES = frozenset({OUTLOOK, "https://outlook.office365.com"})


@dataclass(frozen=True)
class IssuedToken:
    """What a resource server learns from an access token it is shown."""

    mailbox: str  # "" for an app-only token
    audience: str  # the resource it is for, e.g. https://graph.microsoft.com
    scopes: frozenset[str]  # short names, as in its scp (or an app's roles) claim
    expires_at: float
    app_id: str = ""
    app: bool = False  # an app-only (client credentials) token


@dataclass(frozen=True)
class TokenRequest:
    """One POST to the token endpoint, as recorded for assertions."""

    grant_type: str
    email: str | None  # whose grant it was, if the request got that far
    scope: str
    status: int
    tenant: str  # in the URL path: common, a tenant id...
