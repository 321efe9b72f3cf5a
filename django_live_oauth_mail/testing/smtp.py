"""A local SMTP server that behaves like smtp.office365.com:587, for tests
(STARTTLS, XOAUTH2, Exchange Online's refusals). It needs ``aiosmtpd``."""

from __future__ import annotations

import base64
import binascii
import collections
import logging
import re
import socket
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from email import policy
from email.parser import BytesParser
from typing import Any, cast

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, Session

from ._local_server import LocalServer, ReceivedMessage, addresses, casefolded, granted
from .certs import TestCertificate
from .identity import FakeIdentityPlatform
from .tokens import OUTLOOK_AUDIENCES

_STOREDRV = "STOREDRV.Submission.Exception:{}; Cannot submit message."
#: Exchange Online's replies: its codes, its texts shortened to what matters.
REPLIES = {
    "signed_in": "235 2.7.0 Authentication successful",
    "refused": "535 5.7.3 Authentication unsuccessful",
    "smtp_auth_disabled": "535 5.7.139 Authentication unsuccessful, "
    "SmtpClientAuthentication is disabled for the Tenant.",
    "cannot_decode": "501 5.5.2 Cannot Decode response",
    "accepted": "250 2.0.0 OK",
    "send_as_denied": "554 5.2.252 SendAsDenied; {mailbox} not allowed to send as "
    "{sender}; " + _STOREDRV.format("SendAsDeniedException"),
}
#: A real XOAUTH2 line carries a 1.5-2.5 KB token; aiosmtpd allows 512 bytes.
_LINE_LIMIT = 64 * 1024
_XOAUTH2 = re.compile(r"user=([^\x01]+)\x01auth=Bearer +([^\x01]+)\x01\x01", re.I)
_SECRET = re.compile(r"[\w+/=.~-]{20,}")


def _redact(record: logging.LogRecord) -> bool:
    """Keep credentials out of aiosmtpd's ``mail.log``: it masks only an AUTH
    command's initial response, and other DEBUG records can carry a token. Also
    drops the "login_data is deprecated" warning aiosmtpd causes on each AUTH."""
    message = record.getMessage()
    record.msg, record.args = _SECRET.sub("********", message), None
    return "login_data is deprecated" not in message


@dataclass(frozen=True)
class AuthAttempt:
    """One AUTH exchange. The token or password is never kept."""

    mechanism: str
    user: str | None
    success: bool
    reply: str


class _Session(SMTP):
    """One client connection: aiosmtpd, its own handler, with Exchange's rules."""

    line_length_limit = command_size_limit = _LINE_LIMIT
    # aiosmtpd keeps this dict on the class: a subclass needs its own default.
    command_size_limits: dict[str, int] = collections.defaultdict(lambda: _LINE_LIMIT)

    def __init__(self, server: XOAuth2SMTPServer, **kwargs: Any) -> None:
        self.server, self.number = server, 0
        super().__init__(self, authenticator=self._check_password, **kwargs)

    async def _handle_client(self) -> None:
        with self.server._lock:
            self.server.sessions += 1
            self.number = self.server.sessions
        await super()._handle_client()

    async def handle_DATA(self, _: SMTP, session: Session, envelope: Envelope) -> str:
        """aiosmtpd takes in a message only for a handler with this hook."""
        login = cast("tuple[str, str]", session.auth_data)  # what _sign_in set
        return self.server._submit(envelope, login, self.number)

    async def auth_XOAUTH2(self, _: SMTP, args: list[str]) -> AuthResult:
        """``base64("user=..^Aauth=Bearer ..^A^A")``, in the AUTH line."""
        try:
            text = base64.b64decode(args[1] if len(args) > 1 else "", validate=True)
            found = _XOAUTH2.fullmatch(text.decode())
        except (binascii.Error, UnicodeDecodeError):
            found = None
        user, token = (found[1], found[2]) if found else (None, "")
        valid = user is not None and self.server._token_signs_in(token, user)
        return self.server._sign_in("XOAUTH2", user, valid)

    def _check_password(self, *args: Any) -> AuthResult:
        # aiosmtpd passes (server, session, envelope, mechanism, LoginPassword).
        mechanism, login = args[3:]
        user, password = login.login.decode(), login.password.decode()
        valid = self.server._passwords.get(user.casefold()) == password
        return self.server._sign_in(mechanism, user, valid)


class XOAuth2SMTPServer(LocalServer):
    """Exchange-like SMTP submission on a background thread.

    XOAUTH2 takes tokens ``platform`` issued for Outlook: a mailbox's own, or
    an app's with ``SMTP.SendAsApp`` for the mailboxes in :attr:`app_access`.
    ``passwords`` adds AUTH PLAIN and LOGIN. The rules are live and ignore the
    case of addresses; the records are lists that :meth:`reset` empties.
    """

    _session_class = _Session

    def __init__(
        self,
        platform: FakeIdentityPlatform,
        *,
        host: str = "127.0.0.1",
        port: int | None = None,
        certificate: TestCertificate | None = None,
        passwords: Mapping[str, str] | None = None,
    ) -> None:
        self._platform = platform
        self._passwords = {k.casefold(): v for k, v in (passwords or {}).items()}
        #: Mailboxes whose sign-in gets ``535 5.7.139`` (SMTP AUTH turned off).
        self.smtp_auth_disabled: set[str] = set()
        #: Send As grants, mailbox -> addresses; other senders get ``554 5.2.252``.
        self.send_as: dict[str, set[str]] = {}
        #: App client id -> mailboxes it has FullAccess to (app-only XOAUTH2).
        self.app_access: dict[str, set[str]] = {}
        self._bind_address(host, port, certificate)
        self._lock = threading.Lock()
        self.messages: list[ReceivedMessage] = []
        self.auth_attempts: list[AuthAttempt] = []
        self.sessions = 0  # connections accepted since start or reset()

    def _serve(self, sock: socket.socket) -> Callable[[], None]:
        logging.getLogger("mail.log").addFilter(_redact)  # added once at most
        # Clients inherit it; else each EHLO reply waits ~40 ms for a delayed ACK.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        controller = _Controller(
            self,
            sock,
            server_hostname="smtp.office365.test",
            ident="Microsoft ESMTP MAIL Service ready (stand-in for tests)",
            tls_context=self.certificate.server_context(),
            require_starttls=True,
            auth_required=True,
            auth_exclude_mechanism=[] if self._passwords else ["LOGIN", "PLAIN"],
            data_size_limit=157_286_400,  # what Exchange Online advertises
        )
        controller.start()
        return controller.stop

    def reset(self) -> None:
        """Forget messages, AUTH attempts and the session count."""
        with self._lock:
            self.sessions = 0
            self.messages.clear()
            self.auth_attempts.clear()

    def may_send_as(self, mailbox: str, sender: str) -> bool:
        """Whether Exchange lets ``mailbox`` send as ``sender`` (Send As)."""
        allowed = {mailbox.casefold()} | granted(self.send_as, mailbox)
        return sender.casefold() in allowed

    def deliver(self, message: ReceivedMessage) -> None:
        """Record an accepted message (the Graph stand-in delivers here too)."""
        self.messages.append(message)

    def _sign_in(self, mechanism: str, user: str | None, valid: bool) -> AuthResult:
        """Exchange's answer to valid (or not) credentials for ``user``."""
        if user is None:
            reply = REPLIES["cannot_decode"]
        elif user.casefold() in casefolded(self.smtp_auth_disabled):
            reply = REPLIES["smtp_auth_disabled"]
        else:
            reply = REPLIES["signed_in" if valid else "refused"]
        ok = reply == REPLIES["signed_in"]
        self.auth_attempts.append(AuthAttempt(mechanism, user, ok, reply))
        login = (user, mechanism) if ok else None
        return AuthResult(success=ok, handled=False, auth_data=login, message=reply)

    def _token_signs_in(self, token: str, user: str) -> bool:
        issued = self._platform.introspect(token)
        if issued is None or issued.audience not in OUTLOOK_AUDIENCES:
            return False
        if not issued.app:
            return issued.mailbox.casefold() == user.casefold()
        mailboxes = granted(self.app_access, issued.app_id)
        return "SMTP.SendAsApp" in issued.scopes and user.casefold() in mailboxes

    def _submit(self, envelope: Envelope, login: tuple[str, str], number: int) -> str:
        """End of DATA: Exchange checks Send As for the envelope and the From."""
        mailbox, mechanism = login
        data, mail_from = envelope.original_content or b"", envelope.mail_from or ""
        headers = BytesParser(policy=policy.compat32).parsebytes(data, True)
        for sender in [mail_from, *addresses(headers, "From")]:
            if not self.may_send_as(mailbox, sender):
                return REPLIES["send_as_denied"].format(mailbox=mailbox, sender=sender)
        rcpts = list(envelope.rcpt_tos)
        message = ReceivedMessage(mail_from, rcpts, mailbox, mechanism, data, number)
        self.deliver(message)
        return REPLIES["accepted"]


class _Controller(Controller):
    """Serves on a bound socket: aiosmtpd cannot bind port 0 and say which it got."""

    def __init__(self, server: XOAuth2SMTPServer, sock: socket.socket, **kw: Any):
        host, port = sock.getsockname()[:2]
        super().__init__(None, hostname=host, port=port, **kw)
        self._server, self._sock = server, sock

    def factory(self) -> _Session:
        return self._server._session_class(self._server, **self.SMTP_kwargs)

    def _create_server(self) -> Any:
        return self.loop.create_server(self._factory_invoker, sock=self._sock)

    def _trigger_server(self) -> None:
        # Instead of aiosmtpd's probe connection, which would count as a session.
        self.loop.call_soon_threadsafe(self._factory_invoker)
