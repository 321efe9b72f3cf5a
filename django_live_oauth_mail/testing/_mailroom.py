"""State and Exchange Online rules of the fake SMTP server.

This module decides *what* smtp.office365.com would answer; the aiosmtpd
glue in ``_exchange_smtp`` only moves bytes. Keeping the rules free of
asyncio makes them easy to read and keeps all shared state behind one lock
(the SMTP event loop and the test thread both touch it).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from email import policy
from email.parser import BytesParser
from email.utils import getaddresses
from typing import Literal

from ._grants import OUTLOOK_AUDIENCES, IssuedToken
from .records import AuthAttempt, ReceivedMessage

__all__ = ["Fault", "Login", "Mailroom", "Stage"]

Stage = Literal["connect", "auth", "mail", "rcpt", "data"]
STAGES: tuple[Stage, ...] = ("connect", "auth", "mail", "rcpt", "data")

AUTH_OK = "235 2.7.0 Authentication successful"
AUTH_DISABLED = (
    "535 5.7.139 Authentication unsuccessful, SmtpClientAuthentication is "
    "disabled for the Tenant. Visit https://aka.ms/smtp_auth_disabled for more "
    "information."
)
AUTH_FAILED = "535 5.7.3 Authentication unsuccessful"
CANNOT_DECODE = "501 5.5.2 Cannot Decode response"
NOT_AUTHENTICATED = "530 5.7.57 Client not authenticated to send mail."
UNKNOWN_MECHANISM = "504 5.7.4 Unrecognized authentication type"
QUOTA_EXCEEDED = (
    "554 5.2.0 STOREDRV.Submission.Exception:SubmissionQuotaExceededException; "
    "Failed to process message due to a permanent exception with message "
    "[BeginDiagnosticData]Cannot submit message."
)
ACCEPTED = "250 2.0.0 OK"


@dataclass(frozen=True)
class Fault:
    reply: str
    disconnect: bool


@dataclass(frozen=True)
class Login:
    """Who a session authenticated as (kept on the aiosmtpd session)."""

    user: str
    mechanism: str


class Mailroom:
    def __init__(
        self,
        *,
        validator: Callable[[str], str | None] | None,
        introspect: Callable[[str], IssuedToken | None] | None = None,
        passwords: Mapping[str, str] | None,
        smtp_auth_disabled: Iterable[str],
        submission_quota_exceeded: Iterable[str],
        enforce_send_as: bool,
    ) -> None:
        self._validator = validator
        self._introspect = introspect
        # The rule containers below are public and live: tests may mutate
        # them while the server runs. Lookups are case-insensitive.
        self.passwords: dict[str, str] = dict(passwords or {})
        self.password_auth = passwords is not None
        self.smtp_auth_disabled: set[str] = set(smtp_auth_disabled)
        self.submission_quota_exceeded: set[str] = set(submission_quota_exceeded)
        self.enforce_send_as = enforce_send_as
        # mailbox -> addresses Exchange lets it send as (Send As permission).
        self.send_as: dict[str, set[str]] = {}
        # app client id -> mailboxes it has FullAccess to (app-only XOAUTH2).
        self.app_access: dict[str, set[str]] = {}
        self._lock = threading.Condition()
        self._faults: dict[Stage, deque[Fault]] = {stage: deque() for stage in STAGES}
        self._sessions = 0
        self._messages: list[ReceivedMessage] = []
        self._auth_attempts: list[AuthAttempt] = []

    @property
    def mechanisms(self) -> frozenset[str]:
        """AUTH mechanisms offered after STARTTLS."""
        if self.password_auth:
            return frozenset({"XOAUTH2", "LOGIN", "PLAIN"})
        return frozenset({"XOAUTH2"})

    # -- sessions and faults -------------------------------------------------

    def open_session(self) -> int:
        """Count a new client connection and return its session id."""
        with self._lock:
            self._sessions += 1
            return self._sessions

    def queue_faults(self, stage: Stage, fault: Fault, count: int) -> None:
        if stage not in STAGES:
            raise ValueError(f"stage must be one of {STAGES}, got {stage!r}")
        with self._lock:
            self._faults[stage].extend([fault] * count)

    def take_fault(self, stage: Stage) -> Fault | None:
        with self._lock:
            queue = self._faults[stage]
            return queue.popleft() if queue else None

    # -- Exchange rules --------------------------------------------------------

    def authenticate_xoauth2(
        self, user: str | None, token: str | None, session_id: int
    ) -> tuple[bool, str]:
        """Check an XOAUTH2 response; ``user=None`` means it was malformed."""
        if user is None or token is None:
            reply = CANNOT_DECODE
        elif _contains(self.smtp_auth_disabled, user):
            reply = AUTH_DISABLED
        else:
            reply = self._token_refusal(user, token) or AUTH_OK
        return self._record_auth("XOAUTH2", user, reply, session_id)

    def authenticate_password(
        self, mechanism: str, user: str, password: str, session_id: int
    ) -> tuple[bool, str]:
        expected = {k.casefold(): v for k, v in tuple(self.passwords.items())}
        if _contains(self.smtp_auth_disabled, user):
            reply = AUTH_DISABLED
        elif expected.get(user.casefold()) == password:
            reply = AUTH_OK
        else:
            reply = AUTH_FAILED
        return self._record_auth(mechanism, user, reply, session_id)

    def submit(
        self,
        *,
        mail_from: str,
        rcpt_tos: list[str],
        login: Login | None,
        data: bytes,
        session_id: int,
    ) -> str:
        """End of DATA: apply send-as and quota rules, then store the message."""
        if login is None:
            return NOT_AUTHENTICATED
        refusal = self.send_as_refusal(login.user, [mail_from, *_header_senders(data)])
        if refusal is not None:
            return refusal
        if _contains(self.submission_quota_exceeded, login.user):
            return QUOTA_EXCEEDED
        self.deliver(
            ReceivedMessage(
                mail_from=mail_from,
                rcpt_tos=list(rcpt_tos),
                authenticated_as=login.user,
                mechanism=login.mechanism,
                data=data,
                session_id=session_id,
            )
        )
        return ACCEPTED

    def send_as_refusal(self, mailbox: str, senders: Iterable[str]) -> str | None:
        """Exchange's ``554 5.2.252`` if ``mailbox`` may not send as a sender.

        A mailbox may always send as itself and as the addresses in
        :attr:`send_as`; with ``enforce_send_as`` off, as anyone. Shared by the
        SMTP and Graph stand-ins, so one grant covers both transports.
        """
        if not self.enforce_send_as:
            return None
        own = mailbox.casefold()
        granted = {
            address.casefold()
            for owner, addresses in tuple(self.send_as.items())
            if owner.casefold() == own
            for address in tuple(addresses)
        }
        for sender in senders:
            if sender.casefold() != own and sender.casefold() not in granted:
                return (
                    f"554 5.2.252 SendAsDenied; {mailbox} not allowed to send "
                    f"as {sender}; STOREDRV.Submission.Exception:"
                    "SendAsDeniedException.MapiExceptionSendAsDenied; Failed to "
                    "process message due to a permanent exception with message "
                    "[BeginDiagnosticData]Cannot submit message."
                )
        return None

    def deliver(self, message: ReceivedMessage) -> None:
        """Record an accepted message and wake :meth:`wait_for_messages`."""
        with self._lock:
            self._messages.append(message)
            self._lock.notify_all()

    def _token_refusal(self, user: str, token: str) -> str | None:
        """Exchange's ``535 5.7.3`` unless ``token`` may sign in to ``user``.

        An app-only token needs Outlook's ``SMTP.SendAsApp`` role and FullAccess
        to the mailbox (:attr:`app_access`); Exchange answers both the same.
        """
        invalid = f"{AUTH_FAILED} [token invalid, expired or for another mailbox]"
        if self._introspect is None:
            if self._validator is None:
                return None  # no validator: any bearer token is accepted
            mailbox = self._validator(token)
            return None if mailbox and _same(mailbox, user) else invalid
        issued = self._introspect(token)
        if issued is None or issued.audience not in OUTLOOK_AUDIENCES:
            return invalid
        if not issued.app:
            return None if _same(issued.mailbox, user) else invalid
        granted = {
            mailbox.casefold()
            for app, mailboxes in tuple(self.app_access.items())
            if app.casefold() == issued.app_id.casefold()
            for mailbox in tuple(mailboxes)
        }
        if "SMTP.SendAsApp" in issued.scopes and user.casefold() in granted:
            return None
        return f"{AUTH_FAILED} [app lacks SMTP.SendAsApp or FullAccess to {user}]"

    def _record_auth(
        self, mechanism: str, user: str | None, reply: str, session_id: int
    ) -> tuple[bool, str]:
        success = reply == AUTH_OK
        with self._lock:
            self._auth_attempts.append(
                AuthAttempt(mechanism, user, success, reply, session_id)
            )
        return success, reply

    # -- records -------------------------------------------------------------

    @property
    def sessions(self) -> int:
        with self._lock:
            return self._sessions

    @property
    def messages(self) -> list[ReceivedMessage]:
        with self._lock:
            return list(self._messages)

    @property
    def auth_attempts(self) -> list[AuthAttempt]:
        with self._lock:
            return list(self._auth_attempts)

    def reset(self) -> None:
        with self._lock:
            self._sessions = 0
            self._messages.clear()
            self._auth_attempts.clear()
            for queue in self._faults.values():
                queue.clear()

    def wait_for_messages(self, count: int, timeout: float) -> list[ReceivedMessage]:
        deadline = time.monotonic() + timeout
        with self._lock:
            while len(self._messages) < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(
                        f"expected {count} message(s) within {timeout}s, "
                        f"got {len(self._messages)}"
                    )
                self._lock.wait(remaining)
            return list(self._messages)


def _same(a: str, b: str) -> bool:
    return a.casefold() == b.casefold()


def _contains(addresses: set[str], address: str) -> bool:
    # tuple() copies atomically, so a concurrent add() from a test is safe.
    return address.casefold() in {a.casefold() for a in tuple(addresses)}


def _header_senders(data: bytes) -> list[str]:
    """Addresses in the ``From`` header(s); Exchange checks those too."""
    headers = BytesParser(policy=policy.compat32).parsebytes(data, headersonly=True)
    values = [str(value) for value in headers.get_all("From", [])]
    return [address for _, address in getaddresses(values) if address]
