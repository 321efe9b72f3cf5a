"""Drive the fake consent page from test code, like a user in a browser would.

Uses ``urllib`` (standard library) and verifies the server certificate, so
tests exercise the same HTTPS path a browser does without extra dependencies.
"""

from __future__ import annotations

import ssl
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

__all__ = ["AuthorizationResponse", "ConsentPageError", "drive_consent"]


@dataclass(frozen=True)
class AuthorizationResponse:
    """What the identity platform sends back to the app's redirect URI.

    Pass ``params`` to MSAL's ``acquire_token_by_auth_code_flow()``; use
    ``url`` to replay the redirect against a web app (for ``form_post`` it
    still builds a query-string URL, which is handy for GET-based views).
    """

    redirect_uri: str
    params: dict[str, str] = field(default_factory=dict)
    response_mode: str = "query"

    @property
    def url(self) -> str:
        separator = "#" if self.response_mode == "fragment" else "?"
        if separator == "?" and "?" in self.redirect_uri:
            separator = "&"
        return f"{self.redirect_uri}{separator}{urlencode(self.params)}"

    @property
    def code(self) -> str | None:
        return self.params.get("code")

    @property
    def error(self) -> str | None:
        return self.params.get("error")


class ConsentPageError(RuntimeError):
    """The platform rendered an error page instead of redirecting."""

    def __init__(self, status: int, message: str):
        super().__init__(f"HTTP {status}: {message}")
        self.status = status
        self.message = message


def drive_consent(
    authorize_url: str, choice: Mapping[str, str], context: ssl.SSLContext
) -> AuthorizationResponse:
    """Open ``authorize_url``, submit ``choice`` and capture the redirect."""
    url = urlsplit(authorize_url)
    if url.scheme not in {"https", "http"}:
        raise ValueError(f"expected an http(s):// authorize URL, got {authorize_url!r}")
    opener = urllib.request.build_opener(
        urllib.request.HTTPSHandler(context=context), _KeepRedirects()
    )
    page = _open(opener, urllib.request.Request(authorize_url))  # noqa: S310
    form = _FormParser.parse(page.body)
    action = urlunsplit((url.scheme, url.netloc, form.action or url.path, "", ""))
    data = urlencode({**form.fields, **choice}).encode()
    post = urllib.request.Request(action, data=data, method="POST")  # noqa: S310
    reply = _open(opener, post)

    params = dict(parse_qsl(url.query))
    redirect_uri = params.get("redirect_uri", "")
    mode = params.get("response_mode") or "query"
    if reply.location is not None:
        location = urlsplit(reply.location)
        raw = location.fragment if mode == "fragment" else location.query
        own = dict(parse_qsl(urlsplit(redirect_uri).query))
        answer = {k: v for k, v in parse_qsl(raw) if own.get(k) != v}
        return AuthorizationResponse(redirect_uri, answer, mode)
    posted = _FormParser.parse(reply.body)
    return AuthorizationResponse(posted.action or redirect_uri, posted.fields, mode)


@dataclass
class _Page:
    body: str
    location: str | None


def _open(
    opener: urllib.request.OpenerDirector, request: urllib.request.Request
) -> _Page:
    try:
        with opener.open(request, timeout=10) as response:
            return _Page(response.read().decode(), None)
    except urllib.error.HTTPError as error:
        if error.code in (301, 302, 303) and error.headers.get("Location"):
            return _Page("", error.headers["Location"])
        body = error.read().decode("utf-8", "replace")
        message = _FormParser.parse(body).error or body
        raise ConsentPageError(error.code, message) from None


class _KeepRedirects(urllib.request.HTTPRedirectHandler):
    """Stop at redirects: the target is the app, which may not exist."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


class _FormParser(HTMLParser):
    """Collects the first form's action, its hidden fields and error text."""

    def __init__(self) -> None:
        super().__init__()
        self.action: str | None = None
        self.fields: dict[str, str] = {}
        self.error = ""
        self._in_error = False

    @classmethod
    def parse(cls, html: str) -> _FormParser:
        parser = cls()
        parser.feed(html)
        parser.close()
        return parser

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = {k: v or "" for k, v in attrs}
        if tag == "form" and self.action is None:
            self.action = attributes.get("action", "")
        elif tag == "input" and attributes.get("type") == "hidden":
            self.fields[attributes.get("name", "")] = attributes.get("value", "")
        self._in_error = attributes.get("id") == "error"

    def handle_data(self, data: str) -> None:
        if self._in_error:
            self.error += data
