"""The fake consent page, and what it sends back to the app. The page renders
offline; its buttons carry stable ``id``/``data-*`` hooks for browser tests."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from html import escape
from typing import Literal, Protocol
from urllib.parse import urlencode


class _Shown(Protocol):
    """What the page shows of a :class:`.tokens.FakeIdentity`."""

    @property
    def email(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def kind(self) -> Literal["personal", "work"]: ...


_STYLE = """body{font:15px/1.45 system-ui,sans-serif;background:#f2f2f2}
main{max-width:440px;margin:48px auto;background:#fff;padding:32px 40px}
button{display:block;width:100%;text-align:left;margin:8px 0;padding:10px 12px;
border:1px solid #d1d1d1;background:#fff;cursor:pointer;font:inherit}
button:hover{border-color:#0067b8}span,small{display:block;color:#605e5c}"""
_KINDS = dict(personal="Personal account (Outlook.com)", work="Work or school account")


@dataclass(frozen=True)
class AuthorizationResponse:
    """What the identity platform sends back to the app's redirect URI: pass
    ``params`` to msal's ``acquire_token_by_auth_code_flow()``, or replay ``url``
    (a query-string URL, even for ``form_post``) against a web app."""

    redirect_uri: str
    params: dict[str, str]
    response_mode: str = "query"  # or "form_post": a form posting itself

    @property
    def url(self) -> str:
        separator = "&" if "?" in self.redirect_uri else "?"
        return f"{self.redirect_uri}{separator}{urlencode(self.params)}"


class ConsentPageError(RuntimeError):
    """The platform refused the authorization request instead of redirecting."""


def consent_page(
    action: str, fields: Mapping[str, str], identities: Iterable[_Shown]
) -> str:
    """The account picker and consent prompt: each account is a submit button."""
    accounts = "".join(
        f'<button name="identity" value="{escape(i.email)}" data-identity='
        f'"{escape(i.email)}"><strong>{escape(i.name or i.email)}</strong>'
        f"<span>{escape(i.email)}</span><small>{_KINDS[i.kind]}</small></button>"
        for i in identities
    )
    scopes = "".join(f"<li>{escape(scope)}" for scope in fields["scope"].split())
    return _page(
        f"<h1>Pick an account</h1><p>App {escape(fields['client_id'])} wants to:"
        f'<ul>{scopes}</ul><form method="post" action="{escape(action)}">'
        f'{_hidden(fields)}{accounts}<button name="decision" value="decline" '
        'id="decline">Cancel / Decline</button></form>'
    )


def form_post(redirect_uri: str, fields: Mapping[str, str]) -> str:
    """``response_mode=form_post``: a form that posts itself to the app."""
    return _page(
        f'<form method="post" action="{escape(redirect_uri)}">{_hidden(fields)}'
        "<button>Continue</button></form><script>document.forms[0].submit()</script>"
    )


def _hidden(fields: Mapping[str, str]) -> str:
    inputs = '<input type="hidden" name="{}" value="{}">'
    return "".join(inputs.format(escape(k), escape(v)) for k, v in fields.items())


def _page(body: str) -> str:
    return (
        '<!DOCTYPE html><html lang="en"><meta charset="utf-8"><title>Fake Microsoft '
        f"identity platform</title><style>{_STYLE}</style><main><small>Fake Microsoft"
        f" identity platform &middot; for tests only</small>{body}</main></html>"
    )
