"""SASL XOAUTH2 for smtplib, with Exchange Online's replies made readable.

Django's SMTP backend calls ``connection.login(username, password)``. Our
connection classes accept a :class:`MailboxCredentials` in place of the
password and answer with ``AUTH XOAUTH2`` instead, so the backend itself
keeps Django's ``open()`` unchanged.
"""

from __future__ import annotations

import base64
import smtplib
from typing import Any, Protocol

from django.views.decorators.debug import sensitive_variables

from .exceptions import BasicAuthRejected, SMTPAuthDisabled, TokenRejected


class MailboxCredentials(Protocol):
    """Where the SMTP connection gets the mailbox's access token from."""

    mailbox: str

    def token(self, *, force_refresh: bool = False) -> str: ...


def xoauth2_response(mailbox: str, access_token: str) -> str:
    """The XOAUTH2 initial client response, before base64."""
    return f"user={mailbox}\x01auth=Bearer {access_token}\x01\x01"


def reply_bytes(value: bytes | str) -> bytes:
    return value if isinstance(value, bytes) else value.encode(errors="replace")


def reply_text(value: bytes | str) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else value


def _is_reply(error: smtplib.SMTPResponseException, enhanced_code: bytes) -> bool:
    words = reply_bytes(error.smtp_error).split(maxsplit=1)
    # Whole code only: "5.7.3" must not match "5.7.30" or "5.7.39".
    return bool(words) and words[0].rstrip(b";,") == enhanced_code


@sensitive_variables()
def _authenticate(
    smtp: smtplib.SMTP, credentials: MailboxCredentials, *, force_refresh: bool = False
) -> tuple[int, bytes]:
    """Send ``AUTH XOAUTH2`` with the mailbox's token; return the 235 (or 503) reply.

    Raises ``SMTPAuthenticationError`` for any other final reply, and a fresh
    ``SMTPServerDisconnected``, with no exception chained, if the connection
    is lost. smtplib's ``auth()``, ``docmd()``, ``putcmd()`` and ``send()``
    would each keep the line in their locals, where Django's debug page
    (``DEBUG=True`` ignores ``sensitive_variables``) and reporters such as
    Sentry show it. So the line is written from this frame, which drops the
    token and the line before any exception leaves it.
    """
    sock = smtp.sock
    if sock is None:
        raise smtplib.SMTPServerDisconnected("please run connect() first")
    mailbox = credentials.mailbox
    token: str | None = None
    response: bytes | None = None
    line: bytes | None = None
    lost: str | None = None
    try:
        # Outside the OSError handler below: a failure to get a token is the
        # identity platform's or the database's, not a lost SMTP connection.
        token = credentials.token(force_refresh=force_refresh)
        response = base64.b64encode(xoauth2_response(mailbox, token).encode())
        line = b"AUTH XOAUTH2 " + response + b"\r\n"
        if smtp.debuglevel > 0:
            debug = smtp._print_debug  # type: ignore[attr-defined]
            debug("send:", repr("AUTH XOAUTH2 <hidden>\r\n"))
        try:
            # ssl.SSLSocket.sendall() is Python code that keeps its data in a
            # local; a memoryview's repr shows none of the bytes.
            sock.sendall(memoryview(line))
            code, reply = smtp.getreply()
            if code == 334:
                # On failure Exchange may send a 334 with a JSON error; an
                # empty line asks for the final 535.
                sock.sendall(b"\r\n")
                code, reply = smtp.getreply()
        except smtplib.SMTPResponseException:
            raise  # a reply, not a lost connection (SMTPException is an OSError)
        except (OSError, smtplib.SMTPServerDisconnected) as error:
            # Only its text goes on: its traceback holds smtplib's and ssl's
            # frames.
            lost = str(error) or type(error).__name__
    finally:
        token = response = line = None
    if lost is not None:
        smtp.close()
        raise smtplib.SMTPServerDisconnected(
            f"The connection to the SMTP server was lost during AUTH for {mailbox} "
            f"({lost}). This is usually temporary: try again on a new connection. "
            "If it keeps happening, check that no proxy or firewall between this "
            "host and the server cuts off long lines; the AUTH line is several KB."
        ) from None
    # As smtplib's auth(): 503 means this session is already authenticated.
    if code in (235, 503):
        return code, reply
    raise smtplib.SMTPAuthenticationError(code, reply)


class XOAuth2Mixin:
    """Turns ``login(user, credentials)`` into ``AUTH XOAUTH2``.

    Exchange answers ``535 5.7.3`` for a bad or expired token: the token is
    refreshed once and AUTH retried on the same connection. ``535 5.7.139``
    means SMTP AUTH is off for the tenant or mailbox, which no token fixes.
    """

    @sensitive_variables()
    def login(
        self, user: str, password: Any, *, initial_response_ok: bool = True
    ) -> Any:
        if not hasattr(password, "token"):
            try:
                return super().login(  # type: ignore[misc]
                    user, password, initial_response_ok=initial_response_ok
                )
            except smtplib.SMTPAuthenticationError as error:
                raise self._explain(error, user) from None
        smtp: smtplib.SMTP = self  # type: ignore[assignment]
        smtp.ehlo_or_helo_if_needed()
        offered = smtp.esmtp_features.get("auth", "").upper().split()
        if "XOAUTH2" not in offered:
            raise smtplib.SMTPNotSupportedError(
                f"The SMTP server {getattr(smtp, '_host', '')!s} does not offer AUTH "
                "XOAUTH2 (it offers: " + (" ".join(offered) or "nothing") + "). "
                "Use smtp.office365.com on port 587."
            )
        # The token is fetched inside _authenticate(), so this frame never
        # holds it.
        try:
            return _authenticate(smtp, password)
        except smtplib.SMTPAuthenticationError as error:
            if not _is_reply(error, b"5.7.3"):
                raise self._explain(error, password.mailbox) from None
        try:
            return _authenticate(smtp, password, force_refresh=True)
        except smtplib.SMTPAuthenticationError as error:
            raise self._explain(error, password.mailbox, refreshed=True) from None

    @staticmethod
    def _explain(
        error: smtplib.SMTPAuthenticationError, mailbox: str, *, refreshed: bool = False
    ) -> smtplib.SMTPAuthenticationError:
        code, reply = error.smtp_code, error.smtp_error
        text = (
            reply.decode(errors="replace") if isinstance(reply, bytes) else str(reply)
        )
        if _is_reply(error, b"5.7.139"):
            return SMTPAuthDisabled(
                f"Exchange refused SMTP AUTH for {mailbox}: it is disabled for the "
                f"tenant or the mailbox ({code} {text}). This is not a token problem, "
                "and linking again will not help. An Exchange administrator must "
                "enable authenticated SMTP, e.g. `Set-CASMailbox -Identity "
                f"{mailbox} -SmtpClientAuthenticationDisabled $false`, or clear "
                "'Turn off SMTP AUTH protocol for your organization' in the "
                "Microsoft 365 admin center (Settings > Org settings > Mail flow).",
                mailbox=mailbox,
                smtp_code=code,
                smtp_error=reply_bytes(reply),
            )
        if _is_reply(error, b"5.7.30"):
            return BasicAuthRejected(
                f"Microsoft refused a password for {mailbox} ({code} {text}): basic "
                "authentication is switched off. Send through "
                "django_live_oauth_mail.backends.EmailBackend, which signs in with "
                "OAuth, and link the mailbox.",
                mailbox=mailbox,
                smtp_code=code,
                smtp_error=reply_bytes(reply),
            )
        if refreshed and _is_reply(error, b"5.7.3"):
            return TokenRejected(
                f"Exchange rejected a freshly refreshed token for {mailbox} ({code} "
                f"{text}). The token is not for SMTP: check that "
                "LIVE_OAUTH_MAIL['SCOPES'] holds https://outlook.office.com/SMTP.Send "
                "and that the app registration has that delegated permission, then "
                "link the mailbox again.",
                mailbox=mailbox,
                smtp_code=code,
                smtp_error=reply_bytes(reply),
            )
        return error


class XOAuth2SMTP(XOAuth2Mixin, smtplib.SMTP):
    """``smtplib.SMTP`` that can log in with XOAUTH2."""


class XOAuth2SMTP_SSL(XOAuth2Mixin, smtplib.SMTP_SSL):
    """``smtplib.SMTP_SSL`` that can log in with XOAUTH2."""
