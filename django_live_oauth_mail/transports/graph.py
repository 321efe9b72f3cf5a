"""Microsoft Graph: send Django's message as MIME through ``/me/sendMail``.

For mailboxes whose SMTP AUTH is switched off. The message goes as Django
rendered it (base64 MIME, ``Content-Type: text/plain``), so alternatives,
attachments, headers and Message-ID survive. Graph reads the recipients from
the MIME headers, so envelope recipients the headers do not show (Django's
bcc) are added as a Bcc header, which Exchange strips before delivery.
Graph saves a copy to Sent Items, as SMTP submission does. A message whose
request would pass Graph's 4 MB limit goes through :mod:`.graph_upload`.

There is no connection to keep signed in: a session is the mailbox and the
process's shared HTTP connection pool, and each request carries the
mailbox's Graph token (from the stored cache: no query, no token request).
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import datetime
import os
import threading
from collections.abc import Iterator
from email.utils import getaddresses
from typing import Any
from urllib.parse import quote

import requests
import requests.auth
import urllib3.exceptions
from django.core.mail import EmailMessage
from django.utils.encoding import punycode
from django.views.decorators.debug import sensitive_variables

from ..conf import conf
from ..http import http_session
from ..identity.tokens import get_access_token
from ..models import MailAccount
from ..ownership.routing import sender_address
from ..secret import Secret
from . import graph_replies, graph_upload
from .base import SMTPOptions
from .rendering import check_addresses

#: Graph refuses requests over about 4 MB (413); the body is the base64 MIME.
MAX_REQUEST_BYTES = 4 * 1024 * 1024 - 64 * 1024
#: Graph serves 4 requests at once per app and mailbox; more get 429.
CONCURRENT_REQUESTS = 4


@dataclasses.dataclass(frozen=True)
class GraphTransport:
    """Which Graph to talk to; shared by every session a backend opens."""

    endpoint: str

    def open(self, account: MailAccount) -> GraphSession:
        return GraphSession(account, self)


def from_options(options: SMTPOptions) -> GraphTransport:
    """Graph at ``GRAPH_ENDPOINT``; the SMTP options do not apply."""
    return GraphTransport(conf.GRAPH_ENDPOINT)


class GraphSession:
    """One mailbox's way to Graph; see the module docstring."""

    def __init__(self, account: MailAccount, transport: GraphTransport) -> None:
        self.account = account
        self.transport = transport
        self.rested = False
        self.pid = os.getpid()
        # A person's token acts as them (/me); the app's names the mailbox.
        self.base = (
            f"/users/{quote(account.email, safe='@')}" if account.is_app else "/me"
        )
        #: No token is held between requests: nothing to expire.
        self.expires_at: datetime.datetime | None = None

    def send(self, message: EmailMessage) -> bool:
        """POST the MIME to sendMail; True once Graph answers ``202 Accepted``."""
        if not message.recipients():
            return False  # as Django: nothing to send
        # Graph reads the recipients from the MIME headers, Bcc included: an
        # address that hides a second one (a line end, two in one) must be
        # refused as Django's SMTP backend refuses it, before anything goes.
        check_addresses(message)
        self.rested = False
        body = base64.b64encode(mime_for_graph(message))
        sender = sender_address(str(message.from_email or ""))
        if len(body) > MAX_REQUEST_BYTES:
            graph_upload.send_large(
                self, message, sender, limit=MAX_REQUEST_BYTES, render=mime_for_graph
            )
            return True
        self.request("POST", f"{self.base}/sendMail", sender, sends=True, data=body)
        return True

    def request(
        self, method: str, path: str, sender: str | None, *, sends: bool, **kwargs: Any
    ) -> requests.Response:
        """One Graph call as this mailbox; raise our explanation of a refusal.

        ``sends``: a lost answer may mean the message went out. A 401 is
        tried once more with a refreshed token: it was not accepted.
        """
        url = f"{self.transport.endpoint}/v1.0{path}"
        with _slot(self.account.email):
            for refreshed in (False, True):
                response = self._call(method, url, kwargs, refreshed, sends)
                if response.status_code != 401:
                    break
        if response.status_code < 400:
            return response
        raise graph_replies.refusal(
            response,
            mailbox=self.account.email,
            sender=sender,
            refreshed=True,
            sends=sends,
            app_id=conf.CLIENT_ID if self.account.is_app else None,
        )

    @sensitive_variables()
    def _call(
        self,
        method: str,
        url: str,
        options: dict[str, Any],
        refresh: bool,
        sends: bool,
    ) -> requests.Response:
        token = get_access_token(self.account, force_refresh=refresh, protocol="graph")
        headers = {"Content-Type": "text/plain"} if "data" in options else {}
        with _explained_transport_errors(self.account.email, sends):
            return http_session().request(
                method, url, headers=headers, auth=BearerAuth(token.value), **options
            )

    def close(self) -> None:
        """Nothing to end: the HTTP connections are the process's."""

    def __repr__(self) -> str:
        return f"<GraphSession {self.account.email}>"


class BearerAuth(requests.auth.AuthBase):
    """Puts the token on a request as it is sent; holds it masked until then."""

    def __init__(self, token: Secret[str]) -> None:
        self.token = token

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = "Bearer " + self.token.reveal()
        return request

    def __repr__(self) -> str:
        return "<BearerAuth ********>"


def mime_for_graph(message: EmailMessage) -> bytes:
    """Django's MIME, with a Bcc header for recipients no header shows.

    Addresses are compared, and added, as Django puts them in headers (an
    international domain in punycode), so a To recipient is never also Bcc.
    """
    mime = message.message()
    headers = [str(v) for name in ("To", "Cc") for v in mime.get_all(name) or []]
    shown = {address.casefold() for _, address in getaddresses(headers)}
    envelope = [_as_in_headers(r) for r in message.recipients()]
    hidden = [address for address in envelope if address.casefold() not in shown]
    if hidden:
        mime["Bcc"] = ", ".join(hidden)  # removed by Exchange: no names needed
    return bytes(mime.as_bytes())


def _as_in_headers(recipient: str) -> str:
    """The bare address, its domain in punycode as Django writes headers."""
    address = getaddresses([recipient])[0][1]
    local, at, domain = address.rpartition("@")
    return f"{local}{at}{punycode(domain)}" if at else address


_slots: dict[str, threading.BoundedSemaphore] = {}
_slots_lock = threading.Lock()


def _forget_slots_after_fork() -> None:
    """A child must not inherit slots (or the lock) its parent's threads hold."""
    global _slots_lock
    _slots.clear()
    _slots_lock = threading.Lock()


if hasattr(os, "register_at_fork"):  # POSIX
    os.register_at_fork(after_in_child=_forget_slots_after_fork)


@contextlib.contextmanager
def _slot(mailbox: str) -> Iterator[None]:
    """Hold one of the mailbox's concurrent Graph requests in this process."""
    with _slots_lock:
        slot = _slots.setdefault(
            mailbox, threading.BoundedSemaphore(CONCURRENT_REQUESTS)
        )
    with slot:
        yield


@contextlib.contextmanager
def _explained_transport_errors(mailbox: str, sends: bool) -> Iterator[None]:
    """Tell a request that never left from one whose answer was lost.

    One that never connected is an ``OSError`` the backend retries. One
    whose answer was lost may have sent the message, and is never repeated.
    requests' own errors never go on: they keep the request, bearer token
    included (``error.request.headers``), and pickling keeps it too.
    """
    try:
        yield
    except requests.exceptions.SSLError as error:
        if "certificate verify failed" not in str(error).lower():
            raise graph_replies.lost(mailbox, error, sends) from None
        raise graph_replies.untrusted(mailbox, error) from None
    except requests.RequestException as error:
        if _never_sent(error):
            raise graph_replies.unreached(mailbox, error) from None
        raise graph_replies.lost(mailbox, error, sends) from None


def _never_sent(error: requests.RequestException) -> bool:
    if isinstance(error, requests.ConnectTimeout):
        return True
    reason = getattr(error.args[0] if error.args else None, "reason", None)
    return isinstance(reason, urllib3.exceptions.NewConnectionError)
