"""The one retry policy: which failures are worth another try, and when.

Two callers apply it. An inline send tries again at once on a new connection
(:func:`delays`, :func:`next_pause`); the queue's worker defers the message
and tries again later (:func:`requeue_at`, :func:`worth_requeueing`). Both
read :func:`is_transient` first.

SMTP says it plainly: 4xx replies are temporary, 5xx are final. A dropped
connection or a timeout is temporary too, until the end of DATA was written:
after it, the transport raises :class:`.MessageMayHaveBeenSent`, which is
never retried (the message may have been accepted). A TLS certificate failure
is not temporary, and neither is anything about tokens: the identity
platform's own throttling (which msal replays for Retry-After seconds) would
answer a quick retry anyway. Graph's own replies are mapped to these errors
by its transport (a 429 is :class:`.Throttled`).

Bookkeeping writes (recording what already happened) are tried again by
:func:`write_with_retries`.
"""

from __future__ import annotations

import datetime
import logging
import random
import smtplib
import ssl
import time
from collections.abc import Callable
from typing import TypeVar

from django.db import DatabaseError

from ..conf import conf
from ..exceptions import (
    GraphError,
    IdentityPlatformUnavailable,
    LiveOAuthMailError,
    Throttled,
)
from ..transports.smtp_replies import reply_bytes

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: The longest a temporary failure defers a queued message, in seconds.
MAX_BACKOFF = 3600.0


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


def worth_requeueing(error: BaseException, started: bool) -> bool:
    """Should the queue try ``error``'s message again later?

    What :func:`is_transient` says, and outages of ours: the identity
    platform, a Graph server error (:class:`.MessageMayHaveBeenSent` is
    handled before: nothing was sent), or the database hiccuping before the
    attempt ``started`` (a lock, a restart).
    """
    if is_transient(error) or isinstance(error, IdentityPlatformUnavailable):
        return True
    if isinstance(error, GraphError) and error.status >= 500:
        return True
    return not started and isinstance(error, DatabaseError)


def requeue_at(
    error: BaseException, attempt: int, now: datetime.datetime
) -> datetime.datetime | None:
    """When a queued message that failed on ``attempt`` goes again; None: give up.

    After ``QUEUE_ATTEMPTS`` attempts it gives up. Else it waits
    ``QUEUE_BACKOFF`` seconds, doubling with each attempt up to
    :data:`MAX_BACKOFF`, or the server's ``retry_after`` if longer, plus the
    jitter of :func:`jittered`.
    """
    if attempt >= conf.QUEUE_ATTEMPTS:
        return None
    backoff = min(MAX_BACKOFF, conf.QUEUE_BACKOFF * 2 ** (attempt - 1))
    after = getattr(error, "retry_after", None) or 0.0
    return jittered(now + datetime.timedelta(seconds=max(backoff, float(after))), now)


def jittered(until: datetime.datetime, now: datetime.datetime) -> datetime.datetime:
    """Up to a tenth later, so deferred messages do not all wake at once."""
    spread = max(0.0, (until - now).total_seconds()) * 0.1
    return until + datetime.timedelta(seconds=random.uniform(0.0, spread))


def write_with_retries(
    write: Callable[[], T], what: str, *, attempts: int = 3, pause: float = 0.5
) -> T:
    """``write()``, tried again after a database error; the last error is raised.

    For bookkeeping writes that must not be lost to a brief outage (a
    restart, a lock), as django-tasks-db's ``@retry()``: each failure is
    logged as a warning saying ``what`` failed, and the pauses grow by
    ``pause`` seconds each time.
    """
    attempt = 1
    while True:
        try:
            return write()
        except DatabaseError as error:
            logger.warning("Could not %s: %s", what, error)
            if attempt >= attempts:
                raise
            time.sleep(pause * attempt)
            attempt += 1
