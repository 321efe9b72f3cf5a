"""Send one message step by step, reporting where and why it fails.

Used by ``manage.py live_oauth_mail test`` and the admin's test action. It
takes the SMTP session's steps one at a time, with the backend's settings, so
what it checks is what ``send_mail()`` does.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from django.core.mail import EmailMessage

from .backends import EmailBackend
from .conf import Protocol as MicrosoftProtocol
from .exceptions import LiveOAuthMailError
from .identity.tokens import get_access_token
from .models import MailAccount
from .transports.smtp import SMTPSession
from .transports.smtp_replies import describe


@dataclasses.dataclass
class Step:
    """One stage of the test: its name, whether it worked, and what was said."""

    name: str
    ok: bool
    detail: str


def send_test_message(
    account: MailAccount,
    to: str,
    *,
    report: Callable[[Step], None] = lambda step: None,
) -> list[Step]:
    """Try token, TCP, TLS, AUTH, then MAIL/RCPT/DATA; stop at a failure.

    A mailbox that sends through Graph is tried as it sends: its Graph token,
    then ``sendMail``.
    """
    steps: list[Step] = []

    def record(name: str, ok: bool, detail: str) -> bool:
        step = Step(name, ok, detail)
        steps.append(step)
        report(step)
        return ok

    # Only for its settings. The alias keeps Django 6.1 from warning about a
    # backend built outside MAILERS; older versions ignore it.
    backend = EmailBackend(account=account, alias="live_oauth_mail_test")
    transport = backend.transport
    try:
        protocol: MicrosoftProtocol = "graph" if account.protocol == "graph" else "smtp"
        token = get_access_token(account, protocol=protocol)
    except LiveOAuthMailError as error:
        record("token", False, str(error))
        return steps
    expiry = (
        f"valid until {token.expires_at:%Y-%m-%d %H:%M} UTC"
        if token.expires_at
        else "valid"
    )
    record("token", True, f"{'refreshed, ' if token.refreshed else ''}{expiry}")

    message = EmailMessage(
        "django-live-oauth-mail test message",
        f"Sent through {account.email} to check that sending works.",
        account.email,
        [to],
    )
    if account.protocol == "graph":
        graph = backend.graph.open(account)
        try:
            graph.send(message)
        except (OSError, LiveOAuthMailError) as error:
            record("graph", False, describe(error))
        else:
            record("graph", True, f"Microsoft Graph accepted it for {to}")
        return steps
    where = f"{transport.host}:{transport.port}"
    session = SMTPSession(account, transport)
    stages: list[tuple[str, Callable[[], object], str]] = [
        ("tcp", session.connect, f"connected to {where}"),
        (
            "tls" if transport.use_ssl else "starttls",
            session.secure,
            "TLS from the start (use_ssl)" if transport.use_ssl else "TLS established",
        ),
        ("auth", session.sign_in, f"AUTH XOAUTH2 as {account.email}"),
        ("send", lambda: session.send(message), f"accepted for {to}"),
    ]
    try:
        for name, step, done in stages:
            try:
                step()
            except (OSError, LiveOAuthMailError) as error:
                detail = describe(error)
                record(name, False, f"{where}: {detail}" if name == "tcp" else detail)
                return steps
            record(name, True, done)
    finally:
        session.close()
    return steps
