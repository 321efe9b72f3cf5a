"""Which SMTP failures are worth another try, and how long to wait first.

SMTP says it plainly: 4xx replies are temporary, 5xx are final. A dropped
connection or a timeout is temporary too. A TLS certificate failure is not,
and neither is anything about tokens: the identity platform's own throttling
(which msal replays for Retry-After seconds) would answer a quick retry anyway.
"""

from __future__ import annotations

import smtplib
import ssl

from .conf import conf
from .exceptions import LiveOAuthMailError


def is_transient(error: BaseException) -> bool:
    """True for failures that another attempt, on a new connection, may cure."""
    if isinstance(error, LiveOAuthMailError):
        return False
    if isinstance(error, smtplib.SMTPResponseException):
        return 400 <= error.smtp_code < 500
    if isinstance(error, smtplib.SMTPRecipientsRefused):
        codes = [code for code, _ in error.recipients.values()]
        return bool(codes) and all(400 <= code < 500 for code in codes)
    if isinstance(error, smtplib.SMTPServerDisconnected):
        return True
    if isinstance(error, (ssl.SSLError, smtplib.SMTPException)):
        return False
    # Connection refused or reset, timeouts, name resolution hiccups.
    return isinstance(error, OSError)


def delays() -> list[float]:
    """The pauses before each retry: SMTP_RETRY_BACKOFF, doubling each time."""
    base = conf.SMTP_RETRY_BACKOFF
    return [base * 2**attempt for attempt in range(conf.SMTP_RETRIES)]
