"""Send one message step by step, reporting where and why it fails.

Used by ``manage.py live_oauth_mail test`` and the admin's test action. It
reuses the backend's connection class and TLS context, so what it checks is
what ``send_mail()`` does.
"""

from __future__ import annotations

import dataclasses
import smtplib
from collections.abc import Callable
from typing import Any

from django.core.mail import EmailMessage
from django.core.mail.utils import DNS_NAME

from .backends import EmailBackend
from .exceptions import LiveOAuthMailError
from .models import MailAccount
from .tokens import AccountCredentials, get_access_token
from .xoauth2 import reply_text


@dataclasses.dataclass
class Step:
    """One stage of the test: its name, whether it worked, and what was said."""

    name: str
    ok: bool
    detail: str


def _reply(error: BaseException) -> str:
    if isinstance(error, smtplib.SMTPResponseException) and not isinstance(
        error, LiveOAuthMailError
    ):
        return f"{error.smtp_code} {reply_text(error.smtp_error)}"
    if isinstance(error, smtplib.SMTPRecipientsRefused):
        return "; ".join(
            f"{rcpt}: {code} {reply_text(msg)}"
            for rcpt, (code, msg) in error.recipients.items()
        )
    return str(error) or type(error).__name__


def send_test_message(
    account: MailAccount,
    to: str,
    *,
    report: Callable[[Step], None] = lambda step: None,
) -> list[Step]:
    """Try token, TCP, STARTTLS, AUTH, then MAIL/RCPT/DATA; stop at a failure."""
    steps: list[Step] = []

    def record(name: str, ok: bool, detail: str) -> bool:
        step = Step(name, ok, detail)
        steps.append(step)
        report(step)
        return ok

    # Only for its settings, connection class and TLS context. The alias keeps
    # Django 6.1 from warning about a backend built outside MAILERS; older
    # versions ignore it.
    backend = EmailBackend(account=account, alias="live_oauth_mail_test")
    timeout: dict[str, Any] = {}
    if backend.timeout is not None:
        timeout["timeout"] = backend.timeout
    try:
        token = get_access_token(account)
    except LiveOAuthMailError as error:
        record("token", False, str(error))
        return steps
    expiry = (
        f"valid until {token.expires_at:%Y-%m-%d %H:%M} UTC"
        if token.expires_at
        else "valid"
    )
    record("token", True, f"{'refreshed, ' if token.refreshed else ''}{expiry}")

    try:
        connection = backend.connection_class(
            backend.host,
            backend.port,
            local_hostname=DNS_NAME.get_fqdn(),
            **timeout,
        )
    except OSError as error:
        record("tcp", False, f"{backend.host}:{backend.port}: {_reply(error)}")
        return steps
    record("tcp", True, f"connected to {backend.host}:{backend.port}")
    try:
        try:
            connection.starttls(context=backend.ssl_context)
        except (OSError, smtplib.SMTPException) as error:
            record("starttls", False, _reply(error))
            return steps
        record("starttls", True, "TLS established")
        try:
            credentials: Any = AccountCredentials(account)
            connection.login(account.email, credentials)
        except (OSError, LiveOAuthMailError) as error:
            record("auth", False, _reply(error))
            return steps
        record("auth", True, f"AUTH XOAUTH2 as {account.email}")
        message = EmailMessage(
            "django-live-oauth-mail test message",
            f"Sent through {account.email} to check that sending works.",
            account.email,
            [to],
        )
        try:
            connection.sendmail(account.email, [to], message.message().as_bytes())
        except (OSError, smtplib.SMTPException) as error:
            record("send", False, _reply(error))
            return steps
        record("send", True, f"accepted for {to}")
    finally:
        try:
            connection.quit()
        except (OSError, smtplib.SMTPException):
            connection.close()
    return steps
