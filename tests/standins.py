"""The stand-ins as our own suite uses them: the package's servers plus the
fault injection and the checks only these tests need.

The package's stand-ins are what users reuse to test their own mail flows;
what follows plays Exchange's and Graph's rarer moods for our retry, session
and concurrency tests, so it stays out of the package.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import threading
import time
import weakref
from collections.abc import Iterator, Mapping
from email import policy
from email.message import EmailMessage
from typing import Any, Literal

from aiosmtpd.smtp import Envelope

from django_live_oauth_mail.testing import FakeGraphAPI, ReceivedMessage
from django_live_oauth_mail.testing._http import Reply, Request
from django_live_oauth_mail.testing.graph import _Refusal
from django_live_oauth_mail.testing.smtp import XOAuth2SMTPServer, _Session

#: What Exchange says before it closes a connection it will not serve.
UNAVAILABLE = "421 4.3.2 Service not available, closing transmission channel"
QUOTA_EXCEEDED = (
    "554 5.2.0 STOREDRV.Submission.Exception:SubmissionQuotaExceededException; "
    "Cannot submit message."
)


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

    def reset(self) -> None:
        super().reset()
        with self._lock:
            for state in (self.requests, self.messages, self._faults):
                state.clear()
            self.sent_items.clear()

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

    def _upload(self, request: Request) -> Reply:
        """Graph wants each chunk's Content-Range, in order, within the size."""
        file = self._uploads.get(request.query.get("authtoken", ""))
        if file is not None and "authorization" not in request.headers:
            start, end = len(file.data), len(file.data) + len(request.body)
            expected = f"bytes {start}-{end - 1}/{file.size}"
            if request.headers.get("content-range") != expected or end > file.size:
                raise _Refusal(416, "ErrorInvalidRange")
        return super()._upload(request)
