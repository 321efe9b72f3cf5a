"""Signing in to SMTP with SASL XOAUTH2, without leaving the token anywhere.

:func:`sign_in` is the whole of it: XOAUTH2 with the mailbox's token, and on
Exchange's ``535 5.7.3`` (a bad or expired token) once more with a refreshed
one, on the same connection. Refused replies are explained by
:mod:`.smtp_replies`.
"""

from __future__ import annotations

import base64
import smtplib
from typing import Protocol

from django.views.decorators.debug import sensitive_variables

from . import smtp_replies


class MailboxCredentials(Protocol):
    """Where the SMTP connection gets the mailbox's access token from."""

    mailbox: str
    #: The app's client id when it signs in as itself (an app mailbox).
    app_id: str | None

    def token(self, *, force_refresh: bool = False) -> str: ...


def xoauth2_response(mailbox: str, access_token: str) -> str:
    """The XOAUTH2 initial client response, before base64."""
    return f"user={mailbox}\x01auth=Bearer {access_token}\x01\x01"


def sign_in(smtp: smtplib.SMTP, credentials: MailboxCredentials) -> tuple[int, bytes]:
    """AUTH XOAUTH2 as ``credentials.mailbox``; return the server's 235 (or 503).

    Raises ``SMTPNotSupportedError`` when the server offers no XOAUTH2, and
    our explanation (see :func:`.smtp_replies.explain_auth`) of a refusal.
    """
    smtp.ehlo_or_helo_if_needed()
    offered = smtp.esmtp_features.get("auth", "").upper().split()
    if "XOAUTH2" not in offered:
        raise smtplib.SMTPNotSupportedError(
            f"The SMTP server {getattr(smtp, '_host', '')!s} does not offer AUTH "
            "XOAUTH2 (it offers: " + (" ".join(offered) or "nothing") + "). "
            "Use smtp.office365.com on port 587."
        )
    mailbox = credentials.mailbox
    # The token is fetched inside _authenticate(), so this frame never holds it.
    try:
        return _authenticate(smtp, credentials)
    except smtplib.SMTPAuthenticationError as error:
        if not smtp_replies.has_code(error, "5.7.3"):
            raise smtp_replies.explain_auth(
                error, mailbox, refreshed=False, app_id=credentials.app_id
            ) from None
    try:
        return _authenticate(smtp, credentials, force_refresh=True)
    except smtplib.SMTPAuthenticationError as error:
        raise smtp_replies.explain_auth(
            error, mailbox, refreshed=True, app_id=credentials.app_id
        ) from None


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
