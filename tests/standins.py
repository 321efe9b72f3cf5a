"""The stand-ins as our own suite drives them: the package's servers plus the
faults, checks and peeks only our tests need.

The package's stand-ins are what users reuse to test their own mail flows;
what follows plays Entra's, Exchange's and Graph's rarer moods for our token,
retry, session and concurrency tests, so it stays out of the package.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import contextlib
import json
import threading
import time
import weakref
from collections import deque
from collections.abc import Iterator, Mapping
from dataclasses import replace
from email import policy
from email.message import EmailMessage
from typing import Any, Literal

from aiosmtpd.smtp import Envelope
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from django_live_oauth_mail.testing import (
    FakeGraphAPI,
    FakeIdentity,
    FakeIdentityPlatform,
    ReceivedMessage,
)
from django_live_oauth_mail.testing._http import Reply, Request
from django_live_oauth_mail.testing.graph import _Refusal
from django_live_oauth_mail.testing.identity import OUTLOOK_AUDIENCES, AADError
from django_live_oauth_mail.testing.smtp import XOAuth2SMTPServer, _Session

#: What Exchange says before it closes a connection it will not serve.
UNAVAILABLE = "421 4.3.2 Service not available, closing transmission channel"
QUOTA_EXCEEDED = (
    "554 5.2.0 STOREDRV.Submission.Exception:SubmissionQuotaExceededException; "
    "Cannot submit message."
)

#: Faults at the end of DATA: the message is taken, then the 250 never comes.
TAKEN_THEN_DROPPED = "taken, then the connection dropped"
TAKEN_THEN_SILENT = "taken, then no answer"
#: The longest a silent stand-in waits for the client to give up, in seconds.
SILENCE_LIMIT = 60.0


class _FaultySession(_Session):
    """A connection that plays the faults its server has queued."""

    server: SMTPStandIn

    async def _handle_client(self) -> None:
        self.server._open.add(self)
        reply = self.server._take_fault("connect")
        if reply is None:
            return await super()._handle_client()
        with self.server._lock:
            self.server.sessions += 1  # a connection all the same
        if reply:
            await self.push(reply)
        self.hang_up()

    def hang_up(self) -> None:
        if self.transport is not None:
            self.transport.close()

    async def _call_handler_hook(self, command: str, *args: Any) -> Any:
        """aiosmtpd asks its handler here: a queued fault comes first."""
        reply = self.server._take_fault(command.lower())
        if reply in (TAKEN_THEN_DROPPED, TAKEN_THEN_SILENT):
            await super()._call_handler_hook(command, *args)  # the message is in
            if reply == TAKEN_THEN_SILENT:
                # Until the client gives up: its close cancels this wait.
                await asyncio.sleep(SILENCE_LIMIT)
            self.hang_up()
            raise asyncio.CancelledError
        if reply == "":
            self.hang_up()
            raise asyncio.CancelledError  # ends aiosmtpd's loop as a lost peer does
        if reply and reply.startswith("421"):
            self.loop.call_soon(self.hang_up)  # once the reply is out
        return reply or await super()._call_handler_hook(command, *args)


class SMTPStandIn(XOAuth2SMTPServer):
    """The SMTP stand-in with failures on demand, hang-ups, a used-up quota,
    Send As switched off, and a wait for messages that workers send."""

    _session_class = _FaultySession

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.enforce_send_as = True  # False: any mailbox may send as anyone
        #: Mailboxes whose messages get ``554 5.2.0`` (daily quota used up).
        self.submission_quota_exceeded: set[str] = set()
        self._arrived = threading.Condition()
        self._faults: dict[str, collections.deque[str]] = {}
        self._open: weakref.WeakSet[_FaultySession] = weakref.WeakSet()

    def reset(self) -> None:
        super().reset()
        with self._lock:
            self._faults.clear()

    def fail_next(
        self,
        count: int = 1,
        *,
        stage: Literal["connect", "auth", "mail", "rcpt", "data"],
        reply: str = UNAVAILABLE,
        disconnect: bool = False,
    ) -> None:
        """Answer the next ``count`` times ``stage`` is reached with ``reply``.

        ``connect`` replaces the greeting; ``data`` answers after the message
        was sent, where Exchange reports most transient failures. A ``421``
        closes the connection after it; ``disconnect=True`` drops it instead.
        """
        with self._lock:
            queue = self._faults.setdefault(stage, collections.deque())
            queue.extend(["" if disconnect else reply] * count)

    def lose_next_answer(self, count: int = 1, *, silent: bool = False) -> None:
        """Take the next ``count`` messages, then never say so.

        Each is delivered (recorded in :attr:`messages`), then the connection
        drops before the ``250``; with ``silent=True`` nothing is said until
        the client's timeout closes it.
        """
        lost = TAKEN_THEN_SILENT if silent else TAKEN_THEN_DROPPED
        with self._lock:
            self._faults.setdefault("data", collections.deque()).extend([lost] * count)

    def _take_fault(self, stage: str) -> str | None:
        """The reply queued for ``stage`` ("": hang up), or None."""
        with self._lock:
            queue = self._faults.get(stage)
            return queue.popleft() if queue else None

    def may_send_as(self, mailbox: str, sender: str) -> bool:
        return not self.enforce_send_as or super().may_send_as(mailbox, sender)

    def _submit(self, envelope: Envelope, login: tuple[str, str], number: int) -> str:
        if login[0].casefold() in {
            m.casefold() for m in self.submission_quota_exceeded
        }:
            return QUOTA_EXCEEDED
        return super()._submit(envelope, login, number)

    def deliver(self, message: ReceivedMessage) -> None:
        with self._arrived:
            super().deliver(message)
            self._arrived.notify_all()

    def wait_for_messages(self, count: int, timeout: float = 5.0) -> None:
        """Block until ``count`` messages arrived (``TimeoutError`` if not)."""
        with self._arrived:
            if not self._arrived.wait_for(lambda: len(self.messages) >= count, timeout):
                raise TimeoutError(f"expected {count} message(s) within {timeout}s")

    @property
    def open_connections(self) -> int:
        """How many client connections are open now."""
        return sum(session.transport is not None for session in list(self._open))

    def hang_up_all(self) -> int:
        """Close the client connections, as Exchange does idle ones; how many."""
        sessions = [s for s in list(self._open) if s.transport is not None]
        for session in sessions:
            session.loop.call_soon_threadsafe(session.hang_up)
        if sessions:  # wait for the loop to run those
            done = asyncio.run_coroutine_threadsafe(asyncio.sleep(0), sessions[0].loop)
            done.result(10)
        return len(sessions)


class GraphStandIn(FakeGraphAPI):
    """The Graph stand-in with throttling on demand, Graph's concurrency limit,
    mailboxes without REST, a record of requests, messages and Sent Items, and
    upload sessions that check each chunk's Content-Range."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: Mailboxes answered with 404 MailboxNotEnabledForRESTAPI.
        self.rest_disabled: set[str] = set()
        #: Every request as ``(method, path)``, without the query.
        self.requests: list[tuple[str, str]] = []
        #: What it sent (the SMTP stand-in records them too).
        self.messages: list[ReceivedMessage] = []
        #: Seconds each API call takes, so tests can make calls overlap.
        self.response_delay = 0.0
        #: The sender's copy of each message (Bcc kept), by casefolded mailbox.
        self.sent_items: dict[str, list[bytes]] = {}
        self._faults: collections.deque[Reply] = collections.deque()
        self._in_flight: dict[str, int] = {}
        self._lock = threading.Lock()
        #: Upload chunks still to be refused with 503 (a PUT to an uploadUrl).
        self.failing_uploads = 0
        #: Every upload session URL handed out (each authorizes itself).
        self.upload_urls: list[str] = []

    def reset(self) -> None:
        """Forget requests, messages, Sent Items, upload URLs and queued faults."""
        with self._lock:
            for state in (self.requests, self.messages, self._faults):
                state.clear()
            self.sent_items.clear()
            self.upload_urls.clear()
            self.failing_uploads = 0

    def fail_next(
        self,
        count: int = 1,
        *,
        status: int = 429,
        code: str = "ApplicationThrottled",
        headers: Mapping[str, str] | None = None,
    ) -> None:
        """Answer the next ``count`` authorized API calls so (not uploads).

        ``headers={"Retry-After": "1"}`` throttles as Graph does.
        """
        with self._lock:
            self._faults.extend([_Refusal(status, code, headers or {}).reply] * count)

    def dispatch(self, request: Request) -> Reply:
        self.requests.append((request.method, request.path))
        return super().dispatch(request)

    def _call(self, mailbox: str, *args: Any) -> Reply:
        with self._lock:
            fault = self._faults.popleft() if self._faults else None
        if fault is not None:
            return fault
        with self._slot(mailbox):
            time.sleep(self.response_delay)
            if mailbox.casefold() in {m.casefold() for m in self.rest_disabled}:
                raise _Refusal(404, "MailboxNotEnabledForRESTAPI")
            return super()._call(mailbox, *args)

    @contextlib.contextmanager
    def _slot(self, mailbox: str) -> Iterator[None]:
        """Graph serves 4 concurrent requests per mailbox and app; 429 beyond."""
        key = mailbox.casefold()
        with self._lock:
            if self._in_flight.get(key, 0) >= 4:
                raise _Refusal(429, "ApplicationThrottled", {"Retry-After": "1"})
            self._in_flight[key] = self._in_flight.get(key, 0) + 1
        try:
            yield
        finally:
            with self._lock:
                self._in_flight[key] -= 1

    def _deliver(self, mailbox: str, message: EmailMessage) -> ReceivedMessage:
        sent_copy = message.as_bytes(policy=policy.SMTP)  # before Bcc goes
        received = super()._deliver(mailbox, message)
        self.messages.append(received)
        self.sent_items.setdefault(mailbox.casefold(), []).append(sent_copy)
        return received

    def _open(self, mailbox: str, request: Request, draft_id: str) -> Reply:
        reply = super()._open(mailbox, request, draft_id)
        self.upload_urls.append(json.loads(reply.body)["uploadUrl"])
        return reply

    def _upload(self, request: Request) -> Reply:
        """Graph wants each chunk's Content-Range, in order, within the size."""
        with self._lock:
            failing, self.failing_uploads = (
                self.failing_uploads > 0,
                max(0, self.failing_uploads - 1),
            )
        if failing:
            raise _Refusal(503, "ServiceUnavailable")
        file = self._uploads.get(request.query.get("authtoken", ""))
        if file is not None and "authorization" not in request.headers:
            start, end = len(file.data), len(file.data) + len(request.body)
            expected = f"bytes {start}-{end - 1}/{file.size}"
            if request.headers.get("content-range") != expected or end > file.size:
                raise _Refusal(416, "ErrorInvalidRange")
        return super()._upload(request)


class _Fault(AADError):
    """A canned answer of the token endpoint: Entra's JSON error, or a page."""

    def __init__(
        self,
        status: int,
        error: str,
        code: int,
        body: str | None,
        headers: dict[str, str],
    ) -> None:
        super().__init__(error, code, status=status)
        self.body, self.headers = body, headers

    def reply(self) -> Reply:
        if self.body is None:
            reply = super().reply()
            reply.headers.update(self.headers)
            return reply
        return Reply(self.status, self.body.encode(), "text/html", dict(self.headers))


class IdentityPlatform(FakeIdentityPlatform):
    """:class:`FakeIdentityPlatform` with a log of every request, fault
    injection and token checks."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._faults: deque[_Fault] = deque()
        self._requests: list[tuple[str, str]] = []
        self._certificates: list[x509.Certificate] = []
        self._assertions: list[str] = []

    def reset(self) -> None:
        """Forget recorded requests and queued faults (identities, tokens stay)."""
        super().reset()
        self._faults.clear()
        self._requests.clear()

    @property
    def requests(self) -> list[tuple[str, str]]:
        """Every HTTP request so far, as ``(method, path)`` without the query."""
        return list(self._requests)

    def dispatch(self, request: Request) -> Reply:
        reply = super().dispatch(request)
        self._requests.append((request.method, request.path))  # once answered
        return reply

    def add_identity(self, identity: FakeIdentity) -> None:
        """Let ``identity`` sign in (instead of one with the same e-mail)."""
        self._identities[identity.email.casefold()] = identity

    def fail_next_token_requests(
        self,
        count: int = 1,
        *,
        status: int = 500,
        error: str = "temporarily_unavailable",
        error_code: int = 90033,
        body: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        """Answer the next ``count`` token requests with Entra's JSON error, or
        with ``body`` as HTML; ``headers`` such as ``{"Retry-After": "1"}``."""
        fault = _Fault(status, error, error_code, body, dict(headers or {}))
        self._faults.extend([fault] * count)

    def add_client_certificate(self, certificate_pem: str) -> None:
        """Check client assertions as Entra does: signed by this certificate's
        key (the public stand-in takes them on trust)."""
        pem = certificate_pem.encode()
        self._certificates.append(x509.load_pem_x509_certificate(pem))

    def _redeem(self, tenant: str, form: dict[str, str]) -> Any:
        if self._faults:
            raise self._faults.popleft()
        if "client_assertion" in form:
            self._assertions.append(form["client_assertion"])
            problem = assertion_problem(form["client_assertion"], self._certificates)
            if problem:
                raise AADError("invalid_client", 700027, problem, status=401)
        return super()._redeem(tenant, form)

    def issued_secrets(self) -> list[str]:
        """Every access and refresh token, code and device code it handed out,
        and every client assertion (a signed JWT) it was shown."""
        with self._lock:
            issued = [*self._access, *self._refresh, *self._codes, *self._devices]
            return issued + self._assertions

    def expire_access_tokens(self, email: str | None = None) -> None:
        """Invalidate issued access tokens server-side (clients still trust them)."""
        for token, issued in list(self._access.items()):
            if email is None or issued.mailbox.casefold() == email.casefold():
                self._access[token] = replace(issued, expires_at=0.0)

    def validate_access_token(self, token: str) -> str | None:
        """The mailbox of an unexpired user's token for Exchange's SMTP, else
        ``None``: Exchange refuses Graph's tokens and app-only ones here."""
        issued = self.introspect(token)
        if issued is None or issued.app or issued.audience not in OUTLOOK_AUDIENCES:
            return None
        return issued.mailbox


def assertion_problem(assertion: str, certificates: list[x509.Certificate]) -> str:
    """Why Entra refuses a client assertion (``""``: it doesn't). msal signs it
    RS256 and names the certificate by its SHA-1 thumbprint (``x5t``)."""
    try:
        header, claims, signature = assertion.split(".")
        x5t = _unb64(json.loads(_unb64(header))["x5t"])
        sha1 = hashes.SHA1()  # noqa: S303 - what Entra's x5t is
        keys = [c.public_key() for c in certificates if c.fingerprint(sha1) == x5t]
        if not keys or not isinstance(keys[0], rsa.RSAPublicKey):
            return "The key was not found."
        signed = f"{header}.{claims}".encode()
        keys[0].verify(_unb64(signature), signed, padding.PKCS1v15(), hashes.SHA256())
    except (ValueError, KeyError, TypeError, InvalidSignature):
        return "The signature did not match."
    return ""


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
