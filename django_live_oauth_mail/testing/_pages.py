"""Self-contained HTML pages of the fake sign-in experience.

No external CSS or JavaScript: the pages must render offline, in demos and in
headless browsers. Buttons carry stable ``id``/``data-*`` attributes so
browser tests can click them without relying on wording.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from html import escape

from .accounts import FakeIdentity

__all__ = [
    "consent_page",
    "device_login_page",
    "error_page",
    "form_post_page",
    "message_page",
]

_SCOPE_HELP = {
    "openid": "Sign you in",
    "profile": "View your basic profile",
    "email": "View your email address",
    "offline_access": "Maintain access to data you have given it access to",
    "https://outlook.office.com/SMTP.Send": "Send email as you using SMTP AUTH",
}

_STYLE = """
body{margin:0;font:15px/1.45 "Segoe UI",system-ui,sans-serif;background:#f2f2f2;
color:#1b1b1b}
main{max-width:440px;margin:48px auto;background:#fff;padding:32px 40px;
box-shadow:0 2px 6px rgba(0,0,0,.2)}
h1{font-size:24px;font-weight:600;margin:0 0 12px}
.banner{font-size:12px;color:#605e5c;text-transform:uppercase;letter-spacing:.08em}
.account{display:block;width:100%;text-align:left;margin:8px 0;padding:10px 12px;
border:1px solid #d1d1d1;background:#fff;cursor:pointer;font:inherit}
.account:hover,.account:focus{background:#f3f9fd;border-color:#0067b8}
.account.selected{border:2px solid #0067b8}
.account strong,.account span{display:block}
.account small{color:#605e5c}
ul{padding-left:20px}
.secondary{margin-top:16px;padding:8px 16px;border:1px solid #8a8886;background:#fff;
cursor:pointer;font:inherit}
.error{color:#a4262c}
input[type=text]{font:inherit;padding:6px;width:100%;box-sizing:border-box}
"""


def consent_page(
    *,
    action: str,
    hidden: Mapping[str, str],
    identities: Iterable[FakeIdentity],
    login_hint: str,
    scopes: Sequence[str],
    client_id: str,
) -> str:
    """The combined account picker and consent prompt."""
    hint = login_hint.casefold()
    buttons = (
        "".join(
            _identity_button(identity, selected=identity.email.casefold() == hint)
            for identity in identities
        )
        or "<p>No test accounts are configured.</p>"
    )
    scope_items = "".join(
        f"<li><code>{escape(scope)}</code>"
        + (f" &ndash; {escape(_SCOPE_HELP[scope])}" if scope in _SCOPE_HELP else "")
        + "</li>"
        for scope in scopes
    )
    return _document(
        "Sign in and consent",
        f"""
<h1>Pick an account</h1>
<p>App <code id="client-id">{escape(client_id)}</code> wants to:</p>
<ul id="scopes">{scope_items}</ul>
<form method="post" action="{escape(action)}" id="consent-form">
{_hidden_inputs(hidden)}
<div id="accounts">{buttons}</div>
<button type="submit" name="decision" value="decline" id="decline"
 class="secondary">Cancel / Decline</button>
</form>""",
    )


def device_login_page(
    *, action: str, identities: Iterable[FakeIdentity], message: str = ""
) -> str:
    """Where device-code users type the code shown by the app."""
    buttons = "".join(_identity_button(i, selected=False) for i in identities)
    notice = f'<p class="error" id="message">{escape(message)}</p>' if message else ""
    return _document(
        "Enter code",
        f"""
<h1>Enter code</h1>{notice}
<form method="post" action="{escape(action)}" id="device-form">
<p><label for="user_code">Code shown by the app</label>
<input type="text" name="user_code" id="user_code" autocomplete="off"></p>
<p>Sign in as:</p>
<div id="accounts">{buttons}</div>
</form>""",
    )


def error_page(description: str) -> str:
    return _document(
        "Sign-in error",
        f"""
<h1>Sorry, but we're having trouble signing you in.</h1>
<p class="error" id="error">{escape(description)}</p>""",
    )


def message_page(title: str, text: str) -> str:
    body = f'<h1>{escape(title)}</h1><p id="message">{escape(text)}</p>'
    return _document(title, body)


def form_post_page(redirect_uri: str, fields: Mapping[str, str]) -> str:
    """``response_mode=form_post``: a form that posts itself to the app."""
    return _document(
        "Working...",
        f"""
<form method="post" action="{escape(redirect_uri)}" id="response-form">
{_hidden_inputs(fields)}
<noscript><button type="submit" id="continue">Continue</button></noscript>
</form>
<script>document.getElementById("response-form").submit();</script>""",
    )


def _identity_button(identity: FakeIdentity, *, selected: bool) -> str:
    email = escape(identity.email)
    extra = ' selected" aria-current="true" autofocus data-selected="true' * selected
    return (
        f'<button type="submit" name="identity" value="{email}" '
        f'data-identity="{email}" data-kind="{identity.kind}" '
        f'class="account{extra}">'
        f"<strong>{escape(identity.name)}</strong><span>{email}</span>"
        f"<small>{escape(identity.account_label)}</small></button>"
    )


def _hidden_inputs(fields: Mapping[str, str]) -> str:
    return "\n".join(
        f'<input type="hidden" name="{escape(k)}" value="{escape(v)}">'
        for k, v in fields.items()
    )


def _document(title: str, body: str) -> str:
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{escape(title)} &ndash; fake Microsoft identity platform</title>
<style>{_STYLE}</style></head>
<body><main>
<p class="banner">Fake Microsoft identity platform &middot; for tests only</p>
{body}
</main></body></html>
"""
