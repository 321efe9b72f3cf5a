"""Which SMTP failures are worth another try, and how long to wait first.

SMTP says it plainly: 4xx replies are temporary, 5xx are final. A dropped
connection or a timeout is temporary too, until the end of DATA was written:
after it, the transport raises :class:`.MessageMayHaveBeenSent`, which is
never retried (the message may have been accepted). A TLS certificate failure
is not temporary, and neither is anything about tokens: the identity
platform's own throttling (which msal replays for Retry-After seconds) would
answer a quick retry anyway.
"""

from __future__ import annotations

import smtplib
import ssl

from ..conf import conf
from ..exceptions import LiveOAuthMailError, Throttled
from ..transports.smtp_replies import reply_bytes


def is_transient(error: BaseException) -> bool:
    """True for failures that another attempt, on a new connection, may cure."""
    if isinstance(error, Throttled):
        return True
    if isinstance(error, LiveOAuthMailError):
        return False
    if isinstance(error, smtplib.SMTPResponseException):
        return 400 <= error.smtp_code < 500
    if isinstance(error, smtplib.SMTPRecipientsRefused):
        replies = list(error.recipients.values())
        # 452 4.5.3: too many recipients for one message. Sending the same
        # message again gets the same answer: it is the message, not the load.
        return bool(replies) and all(
            400 <= code < 500 and b"4.5.3" not in reply_bytes(reply)
            for code, reply in replies
        )
    if isinstance(error, smtplib.SMTPServerDisconnected):
        return True
    if isinstance(error, (ssl.SSLError, smtplib.SMTPException)):
        return False
    # Connection refused or reset, timeouts, name resolution hiccups.
    return isinstance(error, OSError)


def leaves_session_usable(error: BaseException) -> bool:
    """Is the session still signed in and in step after ``error``?

    Only after a clean refusal of one message (smtplib sends RSET after it),
    or an address Django refused before any command. Anything else (a dropped
    connection, a failed sign-in, a timeout or interruption part-way) and the
    session is closed rather than lent out again.
    """
    if isinstance(error, (smtplib.SMTPRecipientsRefused, ValueError)):
        return True
    return (
        isinstance(error, smtplib.SMTPResponseException)
        and not isinstance(
            error, (smtplib.SMTPAuthenticationError, smtplib.SMTPConnectError)
        )
        and error.smtp_code >= 500
        and error.smtp_code != 530  # "authentication required": not signed in
    )


def delays() -> list[float]:
    """The pauses before each retry: SMTP_RETRY_BACKOFF, doubling each time."""
    base = conf.SMTP_RETRY_BACKOFF
    return [base * 2**attempt for attempt in range(conf.SMTP_RETRIES)]


def next_pause(
    error: BaseException, pauses: list[float], waited: float, max_wait: float
) -> float | None:
    """Seconds to wait before trying again after ``error``; None: give up.

    Takes the next of ``pauses`` (see :func:`delays`). A throttled attempt
    waits at least the server's ``retry_after``, and never beyond
    ``max_wait`` seconds of such waiting in all (``MAX_INLINE_WAIT``; the
    queue's workers wait none and defer instead).
    """
    if not is_transient(error) or not pauses:
        return None
    after = getattr(error, "retry_after", None)
    pause = max(pauses.pop(0), float(after or 0))
    if isinstance(error, Throttled) and (max_wait <= 0 or waited + pause > max_wait):
        return None
    return pause
