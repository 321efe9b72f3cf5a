"""What a worker does with one queued message: check, pace, send, record.

1. A message no longer waiting is left alone, so a task delivered twice sends
   once. Messages stuck in ``sending`` past ``SENDING_TIMEOUT`` become
   ``unknown`` (:func:`.outbox.mark_stuck`), checked at most once every
   :data:`STUCK_CHECK_INTERVAL` seconds by each worker process, not per
   message (see :func:`mark_stuck_now_and_then`).
2. Routing runs again for the stored acting user: it must still pick the same
   mailbox, still active, or the message fails saying why. A deactivated
   acting user is routed as no one: their own mailbox no longer sends for them.
3. An SMTP mailbox lends each worker process one of its session slots
   (:mod:`.session_leases`). A worker with no warm session takes one before
   it connects; one with a warm session holds one and renews it in step 4.
4. Signed in, and holding the mailbox's row lock (``lock_for_sending``), one
   transaction renews the slot, asks :mod:`.pacing` whether it may go now,
   and marks it ``sending``. If not now, it is deferred (never slept on),
   and :func:`deliver` returns when to run again: the sending task
   (:mod:`.tasks`) schedules it, so the worker never imports that task.
5. It is sent through the sending engine (:mod:`..sending.engine`), which
   keeps sessions warm and retries on a new connection as an inline send
   does; a throttled or temporary failure defers it with backoff and jitter,
   a lasting one fails it with the transport's actionable message. What is
   temporary, and for how long, :mod:`..sending.retry` decides.

Delivery is at least once: a message Microsoft accepted just before the
worker died shows as ``unknown``, for a person to decide. Every attempt sends
the same bytes with the same Message-ID.
"""

from __future__ import annotations

import datetime
import logging
import threading
import time

from django.core.mail import EmailMessage
from django.db import DatabaseError, router, transaction
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

from ..conf import conf
from ..exceptions import (
    AccountNotFound,
    LiveOAuthMailError,
    MessageMayHaveBeenSent,
    ReconnectRequired,
    SenderNotAllowed,
    Throttled,
)
from ..identity.tokens import needs_linking
from ..models import MailAccount, OutboundMessage
from ..ownership import routing
from ..ownership.acting import sending_as
from ..sending import retry
from ..sending.delivery import Delivery
from ..sending.engine import Sender, transports_from_settings
from ..sending.sessions import POOL
from ..transports.rendering import RenderedMessage
from . import outbox, pacing, session_leases

logger = logging.getLogger(__name__)

#: Seconds between one worker process's checks for stuck messages.
STUCK_CHECK_INTERVAL = 60.0

_stuck_check = threading.Lock()
_next_stuck_check = 0.0  # time.monotonic() of this process's next check

Status = OutboundMessage.Status


def deliver(pk: int, *, paced: bool) -> datetime.datetime | None:
    """Send (or defer, or fail) the queued message ``pk``; when to run again.

    ``paced``: the task engine can run a task later, which pacing, session
    slots and retries need. Returns the time a deferred message may go, for
    the caller to schedule, or None when nothing is left to run.
    """
    mark_stuck_now_and_then()
    message = (
        OutboundMessage.objects.select_related("account", "acting_user")
        .filter(pk=pk)
        .first()
    )
    if message is None or message.status not in OutboundMessage.WAITING:
        return None
    try:
        account = _still_routes(message)
    except LiveOAuthMailError as error:
        outbox.failed(message, error)
        return None
    # A throttled server is never waited out here: the message is deferred.
    sender = Sender(transports_from_settings(), max_throttle_wait=0.0)
    try:
        # An SMTP session slot is taken before connecting. A worker whose
        # session is warm holds one already: it renews it as it paces.
        slot = paced and account.protocol == "smtp"
        if slot and not _warm(sender, account):
            free_at = session_leases.take(account)
            if free_at is not None:
                return _wait_for_slot(message, account, free_at)
            slot = False  # just taken: nothing to renew
        # Signed in before the pace is checked, so that what the pace counts
        # reaches Exchange at once, not after a connection and a sign-in.
        sender.session(account)
        started, run_after = _claim(message, account, paced, renew_slot=slot)
        if not started:
            return run_after
        # Decrypted only now: a deferred message never is, and one that
        # cannot be decrypted fails below, saying which key is missing.
        rendered = _rendered(message)
        delivery = Delivery([rendered])
        if sender.send(account, rendered):
            delivery.accepted(account, rendered)
    except Exception as error:
        return _record_failure(message, account, error, paced)
    finally:
        sender.release_all()
    delivery.record_use()
    _record_sent(message)
    return None


def mark_stuck_now_and_then() -> None:
    """Have stuck messages become ``unknown``, if this process has not lately.

    :func:`.outbox.mark_stuck` reads every mailbox's ``sending`` rows, a state
    only a killed worker leaves for long: run per delivery, it would cost as
    much as the deliveries. Once every :data:`STUCK_CHECK_INTERVAL` seconds
    per process, a stuck message becomes ``unknown`` at most that long after
    ``SENDING_TIMEOUT`` while workers run; ``outbox status`` and ``outbox
    resume`` check at once.
    """
    global _next_stuck_check
    now = time.monotonic()
    with _stuck_check:
        if now < _next_stuck_check:
            return
        _next_stuck_check = now + STUCK_CHECK_INTERVAL
    outbox.mark_stuck()


def _still_routes(message: OutboundMessage) -> MailAccount:
    """The mailbox that sends it now, which must be the one it was queued for."""
    account = message.account
    if account is None:
        raise AccountNotFound(
            f"The mailbox {message.mailbox} was deleted before this message was "
            "sent. Link it again and retry the message.",
            mailbox=message.mailbox,
        )
    if not account.is_active:
        raise needs_linking(account)
    if message.explicit:
        return account
    # A deactivated user owns nothing: their mail is routed as no one's, as if
    # they had unlinked the mailbox (a shared one still sends it).
    acting = message.acting_user
    deactivated = acting is not None and not getattr(acting, "is_active", True)
    # As the stored acting user, or as no one: never whoever runs the task.
    with sending_as(None if deactivated else message.acting_user_id):
        batches, refused = routing.route([EmailMessage(from_email=message.from_email)])
    chosen = batches[0][0] if batches else None
    if deactivated and (chosen is None or chosen.pk != account.pk):
        raise SenderNotAllowed(
            f"This message was queued by user pk {message.acting_user_id} to go "
            f"out through {account.email}, and that user has been deactivated "
            "since, so the mailbox no longer sends for them. Nothing was sent; "
            "reactivate the user and retry it, or send it from another mailbox.",
            mailbox=account.email,
        )
    for _, error in refused:
        raise error
    assert chosen is not None  # route() refused it, or chose a mailbox
    if chosen.pk != account.pk:  # the link, not the address: another may share it
        other = (
            f"another link of {chosen.email} (mailbox pk {chosen.pk})"
            if chosen.email == account.email
            else chosen.email
        )
        raise SenderNotAllowed(
            f"This message was queued to go out through {account.email} (mailbox "
            f"pk {account.pk}), but {other} would send it now (the mailboxes or "
            "their sharing changed). Nothing was sent; retry it to send it as "
            "things are now.",
            mailbox=account.email,
        )
    return account


def _warm(sender: Sender, account: MailAccount) -> bool:
    """Would signing in reuse an idle session (so open no new connection)?"""
    transport = sender.transport_for(account)
    return conf.SESSION_REUSE and POOL.has_idle(transport, account)


def _wait_for_slot(
    message: OutboundMessage, account: MailAccount, free_at: datetime.datetime
) -> datetime.datetime | None:
    """Defer the message while other workers hold every SMTP session slot."""
    now = timezone.now()
    # Soon: a worker that holds a slot may take the task next time.
    soon = now + datetime.timedelta(seconds=max(conf.QUEUE_BACKOFF, 1.0))
    return _defer(
        message,
        retry.jittered(min(free_at, soon), now),
        f"{conf.SESSIONS_PER_MAILBOX} other worker(s) hold SMTP sessions to "
        f"{account.email} (SESSIONS_PER_MAILBOX; Exchange allows 3): waiting "
        "for one of them.",
    )


def _defer(
    message: OutboundMessage,
    until: datetime.datetime,
    reason: str,
    *,
    attempts: int | None = None,
) -> datetime.datetime | None:
    """Defer the message; ``until``, to run again then, unless it was not ours."""
    moved = outbox.defer(message, until, reason, attempts=attempts)
    return until if moved else None


def _claim(
    message: OutboundMessage, account: MailAccount, paced: bool, renew_slot: bool
) -> tuple[bool, datetime.datetime | None]:
    """Renew the session slot, pace, and mark it ``sending``, in one transaction.

    Returns whether it started, else when to run again (neither, when it
    failed or someone else moved it first).
    """
    using = router.db_for_write(OutboundMessage)
    with transaction.atomic(using=using):
        if paced:
            # Workers pace one mailbox one at a time, under its row lock.
            MailAccount.objects.using(using).lock_for_sending(account.pk)
        if renew_slot:
            free_at = session_leases.take_locked(account, using)
            if free_at is not None:
                return False, _wait_for_slot(message, account, free_at)
        now = timezone.now()
        budget = pacing.daily_budget(account)
        if message.recipient_count > budget:
            outbox.failed(
                message,
                LiveOAuthMailError(
                    f"This message has {message.recipient_count} recipients, more "
                    f"than the {budget} {account.email} may "
                    "send to in a day. Split it into smaller messages.",
                    mailbox=account.email,
                ),
            )
            return False, None
        wait = pacing.wait_for(account, message, now) if paced else None
        if wait is not None:
            return False, _defer(message, wait.until, wait.reason)
        return outbox.start(message, now), None


@sensitive_variables()
def _rendered(message: OutboundMessage) -> RenderedMessage:
    return RenderedMessage(
        message.read_message(),
        from_email=message.from_email,
        recipients=message.recipient_list,
        subject=message.subject,
    )


def _record_sent(message: OutboundMessage) -> None:
    """Record an accepted message; it must never look unsent (or be retried)."""
    try:
        retry.write_with_retries(
            lambda: outbox.sent(message), f"record message {message.pk} as sent"
        )
    except DatabaseError:
        # Left as it is, it becomes unknown after SENDING_TIMEOUT, never failed.
        logger.error(
            "Message %s was sent, but could not be recorded so; it will show as "
            "unknown.",
            message.pk,
        )


def _record_failure(
    message: OutboundMessage, account: MailAccount, error: Exception, paced: bool
) -> datetime.datetime | None:
    """Defer, fail, or mark unknown, by what failed; bugs are raised too.

    Returns when to run again, if it was deferred.
    """
    started = message.status == Status.SENDING  # else before the attempt began
    if isinstance(error, MessageMayHaveBeenSent):
        outbox.failed(message, error, status=Status.UNKNOWN)
    elif isinstance(error, ReconnectRequired):
        outbox.failed(message, error)
        outbox.fail_waiting(account, error)
    elif retry.worth_requeueing(error, started) and paced:
        return _retry_later(message, error, attempt=message.attempts + (not started))
    else:
        outbox.failed(message, error)
        if not isinstance(error, (OSError, LiveOAuthMailError)):
            raise error
    return None


def _retry_later(
    message: OutboundMessage, error: Exception, attempt: int
) -> datetime.datetime | None:
    """Defer after a temporary failure as :mod:`.retry` says, or give up.

    Returns when to run again, if it was deferred.
    """
    until = retry.requeue_at(error, attempt, timezone.now())
    if until is None:
        outbox.failed(
            message,
            LiveOAuthMailError(
                f"Gave up after {attempt} attempts: {error}", mailbox=message.mailbox
            ),
        )
        return None
    kind = "Throttled" if isinstance(error, Throttled) else "Temporary failure"
    return _defer(
        message,
        until,
        f"{kind} (attempt {attempt} of {conf.QUEUE_ATTEMPTS}): {error}",
        attempts=attempt,
    )
