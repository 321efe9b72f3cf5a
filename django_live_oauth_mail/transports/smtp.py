"""SMTP to Exchange: connect, TLS, XOAUTH2, then Django's own envelope and MIME.

One :class:`SMTPSession` is one signed-in connection for one mailbox. The steps
are separate methods so that :mod:`.diagnostics` can report on each; the
backend only calls :meth:`SMTPTransport.open` and :meth:`SMTPSession.send`.

Once the end of a message's DATA is written, a dropped connection or a
timeout leaves it unknown whether Exchange took the message: that is
:class:`.MessageMayHaveBeenSent`, never sent again (see :class:`_AnswerAwaited`).
"""

from __future__ import annotations

import dataclasses
import datetime
import functools
import logging
import os
import smtplib
import ssl
from email import policy
from email.parser import BytesHeaderParser
from typing import TYPE_CHECKING, Any

from django.core.mail import EmailMessage
from django.core.mail.backends import smtp
from django.core.mail.utils import DNS_NAME

from .. import signals
from ..conf import conf
from ..identity.tokens import AccountCredentials
from ..models import MailAccount
from ..ownership.routing import sender_address
from . import smtp_replies, xoauth2
from .base import SMTPOptions

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer

logger = logging.getLogger(__name__)

#: Seconds to wait for the reply to QUIT when closing a session.
QUIT_TIMEOUT = 2.0


@dataclasses.dataclass(frozen=True)
class SMTPTransport:
    """Where and how to connect; shared by every session a backend opens."""

    host: str
    port: int
    timeout: float | None
    use_ssl: bool
    ssl_context: ssl.SSLContext

    def open(self, account: MailAccount) -> SMTPSession:
        session = SMTPSession(account, self)
        session.start()
        return session


def from_options(options: SMTPOptions) -> SMTPTransport:
    """The SMTP transport for Django-style options (host, port, TLS files)."""
    context = tls_context(options.ssl_certfile, options.ssl_keyfile)
    return SMTPTransport(
        options.host, options.port, options.timeout, options.use_ssl, context
    )


class SMTPSession:
    """One mailbox's SMTP connection; signed in once :meth:`sign_in` returns."""

    def __init__(self, account: MailAccount, transport: SMTPTransport) -> None:
        self.account = account
        self.transport = transport
        self.connection: _SMTP | _SMTP_SSL | None = None
        self.rested = False
        self.pid = os.getpid()
        #: When the token it signed in with expires (see :mod:`.sessions`).
        self.expires_at: datetime.datetime | None = None
        self._django: smtp.EmailBackend | None = None

    def start(self) -> None:
        """Connect, TLS and sign in; on any failure the connection is closed."""
        try:
            self.connect()
            self.secure()
            self.sign_in()
        except BaseException as error:
            self.close()
            throttled = smtp_replies.throttling(error, self.account.email)
            if throttled is not None:
                raise throttled from None
            raise

    def connect(self) -> None:
        """Open the TCP connection (TLS from the start with ``use_ssl``)."""
        t = self.transport
        options: dict[str, Any] = {"local_hostname": DNS_NAME.get_fqdn()}
        if t.timeout is not None:
            options["timeout"] = t.timeout
        if t.use_ssl:
            self.connection = _SMTP_SSL(
                t.host, t.port, context=t.ssl_context, **options
            )
        else:
            self.connection = _SMTP(t.host, t.port, **options)
        self._django = _djangos_backend(self.connection)

    def secure(self) -> None:
        """STARTTLS, unless the connection is TLS already."""
        if not self.transport.use_ssl:
            self._connected().starttls(context=self.transport.ssl_context)

    def sign_in(self) -> None:
        credentials = AccountCredentials(self.account)
        xoauth2.sign_in(self._connected(), credentials)
        self.expires_at = credentials.expires_at

    def send(self, message: EmailMessage) -> bool:
        """Send with Django's own envelope and rendering for this Django version.

        A rested session the server closed meanwhile is signed in again, and
        the message sent once more: a disconnect, or a 421 to MAIL, means it
        was not accepted. A connection lost after the end of DATA raises
        :class:`.MessageMayHaveBeenSent` instead, and nothing is sent again.
        """
        if not message.recipients():
            return False  # as Django: nothing to send, and no SMTP command
        rested, self.rested = self.rested, False
        try:
            return self._send(message)
        except (smtplib.SMTPServerDisconnected, smtplib.SMTPSenderRefused) as error:
            gone = not isinstance(error, smtplib.SMTPSenderRefused) or (
                error.smtp_code == 421
            )
            if not (rested and gone):
                raise
        self.close()
        self.start()
        return self._send(message)

    def _send(self, message: EmailMessage) -> bool:
        connection = self.connection
        if self._django is None or connection is None:
            raise smtplib.SMTPServerDisconnected("please run connect() first")
        connection.refused = {}
        try:
            sent = self._django.send_messages([message]) == 1
        except _AnswerLost as error:
            raise smtp_replies.answer_lost(
                self.account.email, error.message_id, error.reason
            ) from None
        except smtplib.SMTPResponseException as error:
            sender = sender_address(str(message.from_email or ""))
            explained = smtp_replies.explain_send(error, self.account.email, sender)
            if explained is error:
                raise
            raise explained from None
        if connection.refused:
            self._report_refused(message, connection.refused)
        return sent

    def _report_refused(
        self, message: EmailMessage, refused: dict[str, tuple[int, bytes]]
    ) -> None:
        """Some recipients were refused, the others accepted: say so, loudly."""
        replies = {
            rcpt: (code, smtp_replies.reply_text(r))
            for rcpt, (code, r) in refused.items()
        }
        logger.warning(
            "%s sent %r, but the server refused %d recipient(s): %s",
            self.account.email,
            message.subject,
            len(replies),
            smtp_replies.describe(smtplib.SMTPRecipientsRefused(refused)),
        )
        # The message was accepted: a receiver's error must not make it a failure.
        for receiver, error in signals.recipients_refused.send_robust(
            sender=MailAccount, account=self.account, message=message, refused=replies
        ):
            if isinstance(error, Exception):
                logger.error(
                    "recipients_refused receiver %r failed: %r", receiver, error
                )

    def close(self) -> None:
        connection, self.connection, self._django = self.connection, None, None
        if connection is None:
            return
        try:
            if connection.sock is not None:
                # QUIT is a courtesy: never wait the full timeout on a dead peer.
                connection.sock.settimeout(QUIT_TIMEOUT)
            connection.quit()
        except OSError:  # smtplib's errors are OSErrors too
            connection.close()

    def _connected(self) -> smtplib.SMTP:
        if self.connection is None:
            raise smtplib.SMTPServerDisconnected("please run connect() first")
        return self.connection

    def __repr__(self) -> str:
        return f"<SMTPSession {self.account.email}>"


class _RefusalsKept:
    """Keeps what ``sendmail()`` returns: the recipients it refused.

    Django's backend drops that; part of a message's recipients refused is
    still a sent message, but it must not pass unnoticed.
    """

    refused: dict[str, tuple[int, bytes]] = {}

    def sendmail(self, *args: Any, **kwargs: Any) -> dict[str, tuple[int, bytes]]:
        self.refused = super().sendmail(*args, **kwargs)  # type: ignore[misc]
        return self.refused


class _AnswerLost(smtplib.SMTPServerDisconnected):
    """The connection broke, or timed out, after the end of DATA was written."""

    def __init__(self, reason: str, message_id: str) -> None:
        super().__init__(reason)
        self.reason, self.message_id = reason, message_id


class _AnswerAwaited:
    """Tells a lost answer to the end of DATA from a failure before it.

    ``smtplib.SMTP.data()`` writes the message with its final ``.`` in one
    ``send()``, then reads the reply. A drop or a timeout after that write
    (smtplib makes both ``SMTPServerDisconnected``) may follow Exchange's
    acceptance: only the 250 was lost. SMTP has no idempotency key, so such a
    message must never be sent again. Before that write it cannot have been
    accepted, and a retry is safe.
    """

    end_of_data_written = False

    def send(self, s: ReadableBuffer | str) -> None:
        super().send(s)  # type: ignore[misc]
        if isinstance(s, bytes) and s.endswith(b"\r\n.\r\n"):
            self.end_of_data_written = True

    def data(self, msg: ReadableBuffer | str) -> tuple[int, bytes]:
        self.end_of_data_written = False
        try:
            return super().data(msg)  # type: ignore[misc, no-any-return]
        except OSError as error:  # smtplib's errors are OSErrors too
            if not self.end_of_data_written or isinstance(
                error, smtplib.SMTPResponseException
            ):
                raise
            raise _AnswerLost(smtp_replies.describe(error), _message_id(msg)) from error


def _message_id(msg: ReadableBuffer | str) -> str:
    raw = msg.encode(errors="replace") if isinstance(msg, str) else bytes(msg)
    headers = BytesHeaderParser(policy=policy.compat32).parsebytes(raw)
    return str(headers.get("Message-ID") or "(none)").strip()


class _SMTP(_AnswerAwaited, _RefusalsKept, smtplib.SMTP):
    pass


class _SMTP_SSL(_AnswerAwaited, _RefusalsKept, smtplib.SMTP_SSL):
    pass


def _djangos_backend(connection: smtplib.SMTP) -> smtp.EmailBackend:
    """Django's SMTP backend over our signed-in connection, for its sending.

    With a connection in place its ``send_messages()`` neither opens nor
    closes anything: it renders the message and sends it as this Django
    version does. The alias keeps Django 6.1 from reading or warning about
    EMAIL_* settings; older versions ignore it.
    """
    backend = smtp.EmailBackend(host="-", alias="live_oauth_mail")
    backend.connection = connection
    return backend


def tls_context(certfile: str | None, keyfile: str | None) -> ssl.SSLContext:
    """A context that verifies the server, with a client certificate if given."""
    return _context(conf.CA_BUNDLE, certfile, keyfile)


@functools.lru_cache(maxsize=8)
def _context(
    cafile: str | None, certfile: str | None, keyfile: str | None
) -> ssl.SSLContext:
    """One TLS client context per process and set of files.

    Loading the system certificates costs about 30 ms; Django's backend pays
    it on every ``send_mail()``. One object per set of files also lets warm
    sessions be shared by every backend with the same settings (see
    :mod:`.sessions`). Contexts are safe to share between threads; changed
    files are read again only after a restart.
    """
    context = ssl.create_default_context(cafile=cafile)
    if certfile or keyfile:
        context.load_cert_chain(str(certfile), keyfile)
    return context
