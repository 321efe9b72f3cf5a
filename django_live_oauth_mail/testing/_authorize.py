"""Rules of the authorization endpoint: which requests and accounts to refuse,
and how the answer travels back to the app (query, fragment or form_post).
"""

from __future__ import annotations

from urllib.parse import urlencode, urlsplit

from . import _pages
from ._aad_errors import describe
from ._http import Reply
from .accounts import FakeIdentity

__all__ = ["RESPONSE_MODES", "request_problem", "respond", "tenant_problem"]

RESPONSE_MODES = ("query", "fragment", "form_post")
_REQUIRED = ("client_id", "response_type", "redirect_uri", "scope", "state")


def request_problem(
    params: dict[str, str], *, client_id: str, allowed_redirect_uris: set[str] | None
) -> str | None:
    """Why an authorization request must be refused (``None``: it's fine)."""
    for name in _REQUIRED:
        if not params.get(name):
            return describe(900144, name)
    if params["client_id"] != client_id:
        return describe(700016, params["client_id"])
    if params["response_type"] != "code":
        return (
            f"AADSTS700054: response_type '{params['response_type']}' is not "
            "enabled for the application; use 'code'."
        )
    redirect_uri = params["redirect_uri"]
    url = urlsplit(redirect_uri)
    if (
        url.scheme not in ("http", "https")
        or not url.netloc
        or url.fragment
        or (
            allowed_redirect_uris is not None
            and redirect_uri not in allowed_redirect_uris
        )
    ):
        return (
            f"AADSTS50011: The redirect URI '{redirect_uri}' specified in the "
            "request does not match the redirect URIs configured for the "
            f"application '{client_id}'."
        )
    mode = params.get("response_mode", "query")
    if mode not in RESPONSE_MODES:
        return f"{describe(9002313)} Unsupported response_mode {mode!r}."
    if (
        not params.get("code_challenge")
        or params.get("code_challenge_method") != "S256"
    ):
        return (
            "AADSTS9002325: Proof Key for Code Exchange is required: send "
            "code_challenge with code_challenge_method=S256."
        )
    if not params.get("nonce"):
        return describe(900144, "nonce")
    return None


def tenant_problem(tenant: str, identity: FakeIdentity) -> str | None:
    """Refuse accounts the authority's tenant segment would not accept."""
    tenant = tenant.lower()
    domain = identity.email.rsplit("@", 1)[1].lower()
    if tenant == "common":
        return None
    if tenant == "consumers":
        ok = identity.kind == "personal"
    elif tenant == "organizations":
        ok = identity.kind == "work"
    else:
        ok = tenant in (identity.tid.lower(), domain)
    if ok:
        return None
    return (
        f"AADSTS50020: User account '{identity.email}' ({identity.account_label}) "
        f"cannot sign in through the '{tenant}' authority."
    )


def respond(
    params: dict[str, str], answer: dict[str, str], error_code: int = 0
) -> Reply:
    """Send the authorization response back to the app's redirect URI."""
    if error_code:
        answer = {**answer, "error_description": describe(error_code)}
    redirect_uri = params["redirect_uri"]
    mode = params.get("response_mode") or "query"
    if mode == "form_post":
        return Reply.html(200, _pages.form_post_page(redirect_uri, answer))
    if mode == "fragment":
        return Reply.redirect(f"{redirect_uri}#{urlencode(answer)}")
    separator = "&" if "?" in redirect_uri else "?"
    return Reply.redirect(f"{redirect_uri}{separator}{urlencode(answer)}")
